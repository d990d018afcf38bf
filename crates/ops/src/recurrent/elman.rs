//! An Elman RNN layer's recurrence over a whole sequence as one recorded op
//! (`rnn_recurrence`, tanh or relu), with the kernels of `tapegrad_kernels::recurrent`.
//! Under `create_graph` the rule, and in forward mode the tangent rule, are written step by
//! step with recorded ops, so the recurrence is differentiable to any order either way.

use std::panic::Location;

use tapegrad_kernels::parallel::zeroed;
use tapegrad_kernels::recurrent::{
    Activation, Recurrence, RecurrentWeights, TimeMajor, elman_sequence_backward,
    elman_sequence_forward, elman_sequence_weight_grads,
};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::{
    Backward, BackwardCtx, Element, InputGrads, Result, Storage, TangentCtx, Tensor,
    is_grad_enabled, record_with_tangent,
};

use super::sequence::{slice, stacked_or_zeros, time_major_view};
use super::single_state::{checked_shape, input_grads, previous_state, zero_grads};
use crate::binary::select_grad;
use crate::elementwise::mask;
use crate::index::slicing::select;
use crate::matmul::linear;

/// The hidden state of every step, `[T, B, H]`, from the input projections `xi`
/// (`[T, B, H]`, input bias included), the initial state `h0` (`[B, H]`) and the recurrent
/// weight and bias `w_hh` (`[H, H]`), `b_hh` (`[H]`): `h_t = act(xi_t + b_hh + h_{t-1} W_hhᵀ)`.
#[track_caller]
pub(crate) fn rnn_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    (w_hh, b_hh): (&Tensor, &Tensor),
    activation: Activation,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = match activation {
        Activation::Tanh => "rnn_tanh_recurrence",
        Activation::Relu => "rnn_relu_recurrence",
    };
    let shape = checked_shape(op, 1, [xi, h0, w_hh, b_hh], location)?;
    let Recurrence { steps, batch, hidden: h } = shape;
    let xs = xi.contiguous_storage();
    let hs = h0.contiguous_storage();
    let (ws, bs) = (w_hh.contiguous_storage(), b_hh.contiguous_storage());
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        activation: Activation,
        (xs, hs, ws, bs): (&Storage, &Storage, &Storage, &Storage),
    ) -> Storage {
        let Recurrence { steps, batch, hidden: h } = shape;
        let xi = TimeMajor { data: slice::<T>(xs), step_stride: batch * h, batch_stride: h };
        let weights = RecurrentWeights { w_hh: slice(ws), b_hh: slice(bs) };
        // Zeroed by rayon's threads: large, and filled step by step after.
        let mut out = zeroed(batch * steps * h);
        elman_sequence_forward(shape, xi, weights, activation, slice(hs), &mut out);
        Storage::from_vec(out)
    }
    let parts = (&xs, &hs, &ws, &bs);
    let out = match xs {
        Storage::F32(_) => run::<f32>(shape, activation, parts),
        _ => run::<f64>(shape, activation, parts),
    };
    debug_assert_eq!(out.len(), steps * batch * h);
    let value = time_major_view(out, shape, h);
    let make_backward = || {
        Backward::new(move |ctx| {
            if is_grad_enabled() {
                backward_composed(ctx, shape, activation)
            } else {
                backward_fused(ctx, shape, activation)
            }
        })
        .save(xi)
        .save(h0)
        .save(w_hh)
        .save(b_hh)
        .save_output()
    };
    Ok(record_with_tangent(op, location, &[xi, h0, w_hh, b_hh], value, make_backward, |ctx| {
        tangent_composed(ctx, shape, activation)
    }))
}

/// The rule in a plain backward: the kernels.
fn backward_fused(ctx: &BackwardCtx<'_>, shape: Recurrence, activation: Activation) -> InputGrads {
    let Recurrence { batch, hidden: h, .. } = shape;
    let (h0, w_hh) = (ctx.saved(1).contiguous_storage(), ctx.saved(2).contiguous_storage());
    // The output's values are batch-major as the forward wrote them.
    let (out, _) = ctx.output_parts();
    let grad = ctx.grad().contiguous_storage();
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        activation: Activation,
        (out, h0, w_hh, grad): (&Storage, &Storage, &Storage, &Storage),
    ) -> [Storage; 4] {
        let Recurrence { steps, batch, hidden: h } = shape;
        let d_out = TimeMajor { data: slice::<T>(grad), step_stride: batch * h, batch_stride: h };
        let (out, h0) = (slice::<T>(out), slice::<T>(h0));
        let mut dxi = zeroed(batch * steps * h);
        let mut dh0 = vec![T::ZERO; batch * h];
        elman_sequence_backward(shape, out, slice(w_hh), activation, d_out, &mut dxi, &mut dh0);
        let (mut dw, mut db) = (vec![T::ZERO; h * h], vec![T::ZERO; h]);
        elman_sequence_weight_grads(shape, (out, h0), &dxi, &mut dw, &mut db);
        [dxi, dh0, dw, db].map(Storage::from_vec)
    }
    let parts = (out, &h0, &w_hh, &grad);
    let [dxi, dh0, dw, db] = match grad {
        Storage::F32(_) => run::<f32>(shape, activation, parts),
        _ => run::<f64>(shape, activation, parts),
    };
    let grads = [
        time_major_view(dxi, shape, h),
        Tensor::from_storage(dh0, Layout::contiguous(&[batch, h])),
        Tensor::from_storage(dw, Layout::contiguous(&[h, h])),
        Tensor::from_storage(db, Layout::contiguous(&[h])),
    ];
    grads.into_iter().enumerate().map(|(i, g)| ctx.needs_input_grad(i).then_some(g)).collect()
}

/// `d act(a)` from the incoming `d` and the activation's output `y`, recorded.
fn through_activation(d: &Tensor, y: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Tanh => d * &(y * y).rsub_scalar(1.0),
        // As the relu op's rule: selected where the output is positive or NaN.
        Activation::Relu => select_grad(&mask(y, |v| v > 0.0 || v.is_nan()), d),
    }
}

/// The rule under `create_graph`: the same backward, step by step with recorded ops.
fn backward_composed(
    ctx: &BackwardCtx<'_>,
    shape: Recurrence,
    activation: Activation,
) -> InputGrads {
    let steps = shape.steps;
    let (w_hh, out, g) = (ctx.saved(2), ctx.output(), ctx.grad());
    if steps == 0 {
        return zero_grads(ctx, 4);
    }
    let mut carried: Option<Tensor> = None; // d h_t from step t + 1
    let mut das = Vec::with_capacity(steps);
    for t in (0..steps).rev() {
        let y = select(out, 0, t as isize).expect("step in range");
        let g_t = select(g, 0, t as isize).expect("step in range");
        let dh = match &carried {
            Some(c) => &g_t + c,
            None => g_t,
        };
        let da = through_activation(&dh, &y, activation);
        carried = Some(crate::matmul::matmul(&da, w_hh).expect("shapes agree"));
        das.push(da);
    }
    das.reverse();
    // The pre-activations' gradients are those of both projections.
    input_grads(ctx, (&das, None), carried.expect("at least one step"))
}

/// The tangent of every step's `h_t`, step by step with recorded ops: the pre-activation's
/// tangent is `v_xi + v_b + v_h W_hhᵀ + h_{t-1} V_Wᵀ`, then the activation's.
fn tangent_composed(ctx: &TangentCtx<'_>, shape: Recurrence, activation: Activation) -> Tensor {
    let Recurrence { steps, batch, hidden: h } = shape;
    let (h0, w_hh) = (ctx.input(1), ctx.input(2));
    let out = ctx.output();
    let mut dh = ctx.tangent(1).cloned();
    let mut tangents = Vec::with_capacity(steps);
    for t in 0..steps {
        let h_prev = previous_state(out, h0, t);
        let y = select(out, 0, t as isize).expect("step in range");
        let v_a = [
            ctx.tangent(0).map(|v| select(v, 0, t as isize).expect("in range")),
            ctx.tangent(3).map(|v| v.broadcast_to(&[batch, h])),
            dh.as_ref().map(|v| linear(v, w_hh, None).expect("shapes checked")),
            ctx.tangent(2).map(|v| linear(&h_prev, v, None).expect("shapes checked")),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| y.zeros_like());
        let step = through_activation(&v_a, &y, activation);
        dh = Some(step.clone());
        tangents.push(step);
    }
    stacked_or_zeros(&tangents, out)
}
