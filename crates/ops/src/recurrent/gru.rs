//! A GRU layer's recurrence over a whole sequence as one recorded op (`gru_recurrence`),
//! with the kernels of `tapegrad_kernels::recurrent` (each batch block's time loop on its own
//! thread, the recurrent weight's gradient as one product). Under `create_graph` the rule,
//! and in forward mode the tangent rule, are written step by step with recorded ops, so the
//! recurrence is differentiable to any order either way.

use std::panic::Location;

use tapegrad_kernels::parallel::zeroed;
use tapegrad_kernels::recurrent::{
    GruTape, Recurrence, RecurrentWeights, TimeMajor, gru_sequence_backward, gru_sequence_forward,
    gru_sequence_weight_grads,
};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::{
    Backward, BackwardCtx, Element, InputGrads, Result, Storage, TangentCtx, Tensor,
    is_grad_enabled, record_with_tangent,
};

use super::sequence::{slice, stacked_or_zeros, time_major_view};
use super::single_state::{checked_shape, input_grads, previous_state, zero_grads};
use crate::index::slicing::select;
use crate::matmul::linear;
use crate::shape::narrow;
use crate::unary::{sigmoid_op, tanh};

/// The hidden state of every step, `[T, B, H]`, from the input projections `xi`
/// (`[T, B, 3 H]`, input bias included, PyTorch's gate order r, z, n), the initial state
/// `h0` (`[B, H]`) and the recurrent weight and bias `w_hh` (`[3 H, H]`), `b_hh` (`[3 H]`).
#[track_caller]
pub(crate) fn gru_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    (w_hh, b_hh): (&Tensor, &Tensor),
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "gru_recurrence";
    let shape = checked_shape(op, 3, [xi, h0, w_hh, b_hh], location)?;
    let Recurrence { steps, batch, hidden: h } = shape;
    tapegrad_tape::layout::try_numel(op, &[steps, batch, 4 * h], location)?;
    let xs = xi.contiguous_storage();
    let hs = h0.contiguous_storage();
    let (ws, bs) = (w_hh.contiguous_storage(), b_hh.contiguous_storage());
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        (xs, hs, ws, bs): (&Storage, &Storage, &Storage, &Storage),
    ) -> (Storage, Storage) {
        let Recurrence { steps, batch, hidden: h } = shape;
        let xi =
            TimeMajor { data: slice::<T>(xs), step_stride: batch * 3 * h, batch_stride: 3 * h };
        let weights = RecurrentWeights { w_hh: slice(ws), b_hh: slice(bs) };
        // Zeroed by rayon's threads: large, and filled step by step after.
        let mut out = zeroed(batch * steps * h);
        let mut acts = zeroed(batch * steps * 4 * h);
        gru_sequence_forward(shape, xi, weights, slice(hs), &mut out, &mut acts);
        (Storage::from_vec(out), Storage::from_vec(acts))
    }
    let parts = (&xs, &hs, &ws, &bs);
    let (out, acts) = match xs {
        Storage::F32(_) => run::<f32>(shape, parts),
        _ => run::<f64>(shape, parts),
    };
    let value = time_major_view(out, shape, h);
    let acts = Tensor::from_storage(acts, Layout::contiguous(&[batch, steps, 4 * h]));
    let make_backward = || {
        Backward::new(move |ctx| {
            if is_grad_enabled() {
                backward_composed(ctx, shape)
            } else {
                backward_fused(ctx, shape)
            }
        })
        .save(xi)
        .save(h0)
        .save(w_hh)
        .save(b_hh)
        .save(&acts)
        .save_output()
    };
    Ok(record_with_tangent(op, location, &[xi, h0, w_hh, b_hh], value, make_backward, |ctx| {
        tangent_composed(ctx, shape)
    }))
}

/// The rule in a plain backward: the kernels.
fn backward_fused(ctx: &BackwardCtx<'_>, shape: Recurrence) -> InputGrads {
    let Recurrence { batch, hidden: h, .. } = shape;
    let saved = |i: usize| ctx.saved(i).contiguous_storage();
    let (h0, w_hh, acts) = (saved(1), saved(2), saved(4));
    // The output's values are batch-major as the forward wrote them.
    let (out, _) = ctx.output_parts();
    let grad = ctx.grad().contiguous_storage();
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        (out, acts, h0, w_hh, grad): (&Storage, &Storage, &Storage, &Storage, &Storage),
    ) -> [Storage; 4] {
        let Recurrence { steps, batch, hidden: h } = shape;
        let tape = GruTape { h: slice(out), acts: slice(acts), h0: slice(h0) };
        let d_out = TimeMajor { data: slice::<T>(grad), step_stride: batch * h, batch_stride: h };
        let (mut dxi, mut dgh) = (zeroed(batch * steps * 3 * h), zeroed(batch * steps * 3 * h));
        let mut dh0 = vec![T::ZERO; batch * h];
        gru_sequence_backward(shape, tape, slice(w_hh), d_out, &mut dxi, &mut dgh, &mut dh0);
        let (mut dw, mut db) = (vec![T::ZERO; 3 * h * h], vec![T::ZERO; 3 * h]);
        gru_sequence_weight_grads(shape, tape, &dgh, &mut dw, &mut db);
        [dxi, dh0, dw, db].map(Storage::from_vec)
    }
    let parts = (out, &acts, &h0, &w_hh, &grad);
    let [dxi, dh0, dw, db] = match grad {
        Storage::F32(_) => run::<f32>(shape, parts),
        _ => run::<f64>(shape, parts),
    };
    let grads = [
        time_major_view(dxi, shape, 3 * h),
        Tensor::from_storage(dh0, Layout::contiguous(&[batch, h])),
        Tensor::from_storage(dw, Layout::contiguous(&[3 * h, h])),
        Tensor::from_storage(db, Layout::contiguous(&[3 * h])),
    ];
    grads.into_iter().enumerate().map(|(i, g)| ctx.needs_input_grad(i).then_some(g)).collect()
}

/// Step `t`'s gates, recorded: `r`, `z`, `n` and the hidden projection's `n` block `gh_n`.
struct Gates {
    r: Tensor,
    z: Tensor,
    n: Tensor,
    gh_n: Tensor,
}

fn gates_at(xi: &Tensor, h_prev: &Tensor, (w_hh, b_hh): (&Tensor, &Tensor), t: usize) -> Gates {
    let hidden = h_prev.shape()[1];
    let part = |g: &Tensor, k: usize| narrow(g, 1, k * hidden, hidden).expect("shape checked");
    let xt = select(xi, 0, t as isize).expect("step in range");
    let gh = linear(h_prev, w_hh, Some(b_hh)).expect("shapes checked");
    let r = sigmoid_op(&(&part(&xt, 0) + &part(&gh, 0)));
    let z = sigmoid_op(&(&part(&xt, 1) + &part(&gh, 1)));
    let gh_n = part(&gh, 2);
    let n = tanh(&(&part(&xt, 2) + &(&r * &gh_n)));
    Gates { r, z, n, gh_n }
}

/// The rule under `create_graph`: the same backward, step by step with recorded ops.
fn backward_composed(ctx: &BackwardCtx<'_>, shape: Recurrence) -> InputGrads {
    let steps = shape.steps;
    let (xi, h0, w_hh, b_hh) = (ctx.saved(0), ctx.saved(1), ctx.saved(2), ctx.saved(3));
    let (out, g) = (ctx.output(), ctx.grad());
    if steps == 0 {
        return zero_grads(ctx, 4);
    }
    let one_minus = |t: &Tensor| t.rsub_scalar(1.0);
    let mut carried: Option<Tensor> = None; // d h_t from step t + 1
    let (mut dxis, mut dghs) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for t in (0..steps).rev() {
        let h_prev = previous_state(out, h0, t);
        let Gates { r, z, n, gh_n } = gates_at(xi, &h_prev, (w_hh, b_hh), t);
        let g_t = select(g, 0, t as isize).expect("step in range");
        let dh = match &carried {
            Some(c) => &g_t + c,
            None => g_t,
        };
        let da_n = &(&dh * &one_minus(&z)) * &one_minus(&(&n * &n));
        let da_r = &(&da_n * &gh_n) * &(&r * &one_minus(&r));
        let da_z = &(&dh * &(&h_prev - &n)) * &(&z * &one_minus(&z));
        let dgh = crate::cat(&[&da_r, &da_z, &(&da_n * &r)], 1);
        let dh_prev = &(&dh * &z) + &crate::matmul::matmul(&dgh, w_hh).expect("shapes agree");
        carried = Some(dh_prev);
        dxis.push(crate::cat(&[&da_r, &da_z, &da_n], 1));
        dghs.push(dgh);
    }
    dxis.reverse();
    dghs.reverse();
    input_grads(ctx, (&dxis, Some(&dghs)), carried.expect("at least one step"))
}

/// The tangent of every step's `h_t`, step by step with recorded ops: the hidden
/// projection's tangent is `v_b + v_h W_hhᵀ + h_{t-1} V_Wᵀ`, then the cell's.
fn tangent_composed(ctx: &TangentCtx<'_>, shape: Recurrence) -> Tensor {
    let Recurrence { steps, batch, hidden: h } = shape;
    let (xi, h0, w_hh, b_hh) = (ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3));
    let out = ctx.output();
    let part = |g: &Tensor, k: usize| narrow(g, 1, k * h, h).expect("shape checked");
    let one_minus = |t: &Tensor| t.rsub_scalar(1.0);
    let mut dh = ctx.tangent(1).cloned();
    let mut tangents = Vec::with_capacity(steps);
    for t in 0..steps {
        let h_prev = previous_state(out, h0, t);
        let Gates { r, z, n, gh_n } = gates_at(xi, &h_prev, (w_hh, b_hh), t);
        let v_gh = [
            ctx.tangent(3).map(|v| v.broadcast_to(&[batch, 3 * h])),
            dh.as_ref().map(|v| linear(v, w_hh, None).expect("shapes checked")),
            ctx.tangent(2).map(|v| linear(&h_prev, v, None).expect("shapes checked")),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| &a + &b);
        let v_xi = ctx.tangent(0).map(|v| select(v, 0, t as isize).expect("in range"));
        // The tangents of the pre-activations of r and z, and of n's two terms.
        let sum_part = |k: usize| match (&v_xi, &v_gh) {
            (Some(x), Some(g)) => Some(&part(x, k) + &part(g, k)),
            (Some(x), None) => Some(part(x, k)),
            (None, Some(g)) => Some(part(g, k)),
            (None, None) => None,
        };
        let dr = sum_part(0).map(|v| &v * &(&r * &one_minus(&r)));
        let dz = sum_part(1).map(|v| &v * &(&z * &one_minus(&z)));
        let dn_pre = [
            v_xi.as_ref().map(|x| part(x, 2)),
            dr.as_ref().map(|dr| dr * &gh_n),
            v_gh.as_ref().map(|g| &r * &part(g, 2)),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| &a + &b);
        let dn = dn_pre.map(|v| &v * &one_minus(&(&n * &n)));
        // h' = (1 - z) n + z h: its tangent (1 - z) dn + z dh + dz (h - n).
        let step = [
            dn.map(|dn| &one_minus(&z) * &dn),
            dh.as_ref().map(|dh| &z * dh),
            dz.map(|dz| &dz * &(&h_prev - &n)),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| h_prev.zeros_like());
        dh = Some(step.clone());
        tangents.push(step);
    }
    stacked_or_zeros(&tangents, out)
}
