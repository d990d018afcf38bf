//! An LSTM layer's recurrence over a whole sequence as one recorded op
//! (`lstm_recurrence`): from the input projections of every step to the states of every
//! step, with the kernels of `tapegrad_kernels::recurrent` (each batch block's time loop on
//! its own thread, the recurrent weight's gradient as one product). Under `create_graph`
//! the rule, and in forward mode the tangent rule, are written step by step with recorded
//! ops, so the recurrence is differentiable to any order either way.

use std::panic::Location;

use tapegrad_kernels::parallel::zeroed;
use tapegrad_kernels::recurrent::{
    Recurrence, RecurrentWeights, SequenceTape, TimeMajor, lstm_sequence_backward,
    lstm_sequence_forward, lstm_sequence_weight_grads,
};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::{
    Backward, BackwardCtx, Element, Error, InputGrads, Result, Storage, TangentCtx, Tensor,
    ensure_float, is_grad_enabled, record_with_tangent,
};

use super::{backward_recorded, tangent_recorded};
use crate::matmul::linear;
use crate::shape::{narrow, reshape_to};

/// `[T, B, ·]` values that live batch-major (`[B, T, ·]` in memory) as a time-major view.
pub(super) fn time_major_view(storage: Storage, shape: Recurrence, width: usize) -> Tensor {
    let Recurrence { steps, batch, .. } = shape;
    Tensor::from_storage(storage, Layout::contiguous(&[batch, steps, width]).permute(&[1, 0, 2]))
}

pub(super) fn slice<T: Element>(s: &Storage) -> &[T] {
    s.as_slice::<T>().expect("dtype checked")
}

/// The per-step tangents of a recorded tangent rule stacked into `[T, B, ·]`, or zeros
/// shaped as the op's output `out` for a sequence of no steps.
pub(super) fn stacked_or_zeros(steps: &[Tensor], out: &Tensor) -> Tensor {
    if steps.is_empty() {
        return out.zeros_like();
    }
    let refs: Vec<&Tensor> = steps.iter().collect();
    crate::stack(&refs, 0)
}

/// The outputs `[h_t, c_t]` of every step, `[T, B, 2 H]`, from the input projections `xi`
/// (`[T, B, 4 H]`, input bias included), the initial states `h0`, `c0` (`[B, H]`) and the
/// recurrent weight and bias `w_hh` (`[4 H, H]`), `b_hh` (`[4 H]`).
#[track_caller]
pub(crate) fn lstm_recurrence(
    xi: &Tensor,
    (h0, c0): (&Tensor, &Tensor),
    (w_hh, b_hh): (&Tensor, &Tensor),
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "lstm_recurrence";
    for t in [xi, h0, c0, w_hh, b_hh] {
        ensure_float(op, t, location)?;
        if t.dtype() != xi.dtype() {
            return Err(Error::DType { op, lhs: xi.dtype(), rhs: t.dtype(), location });
        }
    }
    let shape = match (xi.shape(), h0.shape(), c0.shape(), w_hh.shape(), b_hh.shape()) {
        (&[steps, batch, g], &[hb, hidden], c, &[wr, wc], &[bl])
            if g == 4 * hidden
                && hb == batch
                && c == [batch, hidden]
                && (wr, wc) == (4 * hidden, hidden)
                && bl == 4 * hidden =>
        {
            Recurrence { steps, batch, hidden }
        }
        _ => {
            return Err(Error::Shape {
                op,
                message: format!(
                    "expects xi [T, B, 4H], h0 and c0 [B, H], w_hh [4H, H] and b_hh [4H], got \
                     {:?}, {:?}, {:?}, {:?} and {:?}",
                    xi.shape(),
                    h0.shape(),
                    c0.shape(),
                    w_hh.shape(),
                    b_hh.shape()
                ),
                location,
            });
        }
    };
    let Recurrence { steps, batch, hidden: h } = shape;
    tapegrad_tape::layout::try_numel(op, &[steps, batch, 5 * h], location)?;
    let xs = xi.contiguous_storage();
    let (hs, cs) = (h0.contiguous_storage(), c0.contiguous_storage());
    let (ws, bs) = (w_hh.contiguous_storage(), b_hh.contiguous_storage());
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        (xs, hs, cs, ws, bs): (&Storage, &Storage, &Storage, &Storage, &Storage),
    ) -> (Storage, Storage) {
        let Recurrence { steps, batch, hidden: h } = shape;
        let xi =
            TimeMajor { data: slice::<T>(xs), step_stride: batch * 4 * h, batch_stride: 4 * h };
        let weights = RecurrentWeights { w_hh: slice(ws), b_hh: slice(bs) };
        // Zeroed by rayon's threads: large, and filled step by step after.
        let mut hc = zeroed(batch * steps * 2 * h);
        let mut acts = zeroed(batch * steps * 5 * h);
        lstm_sequence_forward(shape, xi, weights, (slice(hs), slice(cs)), &mut hc, &mut acts);
        (Storage::from_vec(hc), Storage::from_vec(acts))
    }
    let parts = (&xs, &hs, &cs, &ws, &bs);
    let (hc, acts) = match xs {
        Storage::F32(_) => run::<f32>(shape, parts),
        _ => run::<f64>(shape, parts),
    };
    let value = time_major_view(hc, shape, 2 * h);
    let acts = Tensor::from_storage(acts, Layout::contiguous(&[batch, steps, 5 * h]));
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
        .save(c0)
        .save(w_hh)
        .save(b_hh)
        .save(&acts)
        .save_output()
    };
    Ok(record_with_tangent(op, location, &[xi, h0, c0, w_hh, b_hh], value, make_backward, |ctx| {
        tangent_composed(ctx, shape)
    }))
}

/// The rule in a plain backward: the kernels.
fn backward_fused(ctx: &BackwardCtx<'_>, shape: Recurrence) -> InputGrads {
    let Recurrence { batch, hidden: h, .. } = shape;
    let saved = |i: usize| ctx.saved(i).contiguous_storage();
    let (h0, c0, w_hh, acts) = (saved(1), saved(2), saved(3), saved(5));
    // The output's values are batch-major as the forward wrote them.
    let (hc, _) = ctx.output_parts();
    let grad = ctx.grad().contiguous_storage();
    fn run<T: Element + tapegrad_kernels::gemm::Gemm>(
        shape: Recurrence,
        (hc, acts, h0, c0, w_hh, grad): (
            &Storage,
            &Storage,
            &Storage,
            &Storage,
            &Storage,
            &Storage,
        ),
    ) -> [Storage; 5] {
        let Recurrence { steps, batch, hidden: h } = shape;
        let tape = SequenceTape { hc: slice(hc), acts: slice(acts), h0: slice(h0), c0: slice(c0) };
        let dhc =
            TimeMajor { data: slice::<T>(grad), step_stride: batch * 2 * h, batch_stride: 2 * h };
        let mut dxi = zeroed(batch * steps * 4 * h);
        let (mut dh0, mut dc0) = (vec![T::ZERO; batch * h], vec![T::ZERO; batch * h]);
        lstm_sequence_backward(shape, tape, slice(w_hh), dhc, &mut dxi, (&mut dh0, &mut dc0));
        let (mut dw, mut db) = (vec![T::ZERO; 4 * h * h], vec![T::ZERO; 4 * h]);
        lstm_sequence_weight_grads(shape, tape, &dxi, &mut dw, &mut db);
        [dxi, dh0, dc0, dw, db].map(Storage::from_vec)
    }
    let parts = (hc, &acts, &h0, &c0, &w_hh, &grad);
    let [dxi, dh0, dc0, dw, db] = match grad {
        Storage::F32(_) => run::<f32>(shape, parts),
        _ => run::<f64>(shape, parts),
    };
    let state = |s: Storage| Tensor::from_storage(s, Layout::contiguous(&[batch, h]));
    let grads = [
        time_major_view(dxi, shape, 4 * h),
        state(dh0),
        state(dc0),
        Tensor::from_storage(dw, Layout::contiguous(&[4 * h, h])),
        Tensor::from_storage(db, Layout::contiguous(&[4 * h])),
    ];
    grads.into_iter().enumerate().map(|(i, g)| ctx.needs_input_grad(i).then_some(g)).collect()
}

/// The states step `t` read, `(h_{t-1}, c_{t-1})`, from the saved initial states and the
/// op's output (recorded, so that rules built on them differentiate through the op).
fn previous_state(
    out: &Tensor,
    (h0, c0): (&Tensor, &Tensor),
    t: usize,
    hidden: usize,
) -> (Tensor, Tensor) {
    if t == 0 {
        return (h0.clone(), c0.clone());
    }
    let prev = crate::index::slicing::select(out, 0, t as isize - 1).expect("step in range");
    (
        narrow(&prev, 1, 0, hidden).expect("in range"),
        narrow(&prev, 1, hidden, hidden).expect("in range"),
    )
}

/// Step `t`'s gate pre-activations `xi_t + b_hh + h_{t-1} W_hhᵀ`, recorded.
fn gates_at(xi: &Tensor, h_prev: &Tensor, (w_hh, b_hh): (&Tensor, &Tensor), t: usize) -> Tensor {
    let xt = crate::index::slicing::select(xi, 0, t as isize).expect("step in range");
    &xt + &linear(h_prev, w_hh, Some(b_hh)).expect("shapes checked")
}

/// The rule under `create_graph`: the same backward, step by step with recorded ops.
fn backward_composed(ctx: &BackwardCtx<'_>, shape: Recurrence) -> InputGrads {
    let Recurrence { steps, batch, hidden: h } = shape;
    let (xi, h0, c0, w_hh, b_hh) =
        (ctx.saved(0), ctx.saved(1), ctx.saved(2), ctx.saved(3), ctx.saved(4));
    let (out, g) = (ctx.output(), ctx.grad());
    if steps == 0 {
        let zeros = [xi, h0, c0, w_hh, b_hh].map(Tensor::zeros_like);
        return zeros
            .into_iter()
            .enumerate()
            .map(|(i, z)| ctx.needs_input_grad(i).then_some(z))
            .collect();
    }
    let mut carried: Option<Tensor> = None; // d[h_t, c_t] from step t + 1
    let mut dgates = Vec::with_capacity(steps);
    for t in (0..steps).rev() {
        let (h_prev, c_prev) = previous_state(out, (h0, c0), t, h);
        let gates = gates_at(xi, &h_prev, (w_hh, b_hh), t);
        let g_t = crate::index::slicing::select(g, 0, t as isize).expect("step in range");
        let dhc = match &carried {
            Some(c) => &g_t + c,
            None => g_t,
        };
        let (dg, dc) = backward_recorded(&gates, &c_prev, &dhc, h);
        let dh = crate::matmul::matmul(&dg, w_hh).expect("shapes agree");
        carried = Some(crate::cat(&[&dh, &dc], 1));
        dgates.push(dg);
    }
    dgates.reverse();
    let refs: Vec<&Tensor> = dgates.iter().collect();
    let dxi = crate::stack(&refs, 0);
    let flat = reshape_to(&dxi, &[steps * batch, 4 * h]);
    // h_{t-1} of every step, [T B, H].
    let h_prev = if steps > 1 {
        let later =
            narrow(&narrow(out, 0, 0, steps - 1).expect("in range"), 2, 0, h).expect("in range");
        crate::cat(&[&crate::shape::unsqueeze(h0, 0).expect("rank 2"), &later], 0)
    } else {
        crate::shape::unsqueeze(h0, 0).expect("rank 2")
    };
    let h_prev = reshape_to(&h_prev.contiguous(), &[steps * batch, h]);
    let dw = crate::matmul::matmul(&crate::shape::transpose(&flat, 0, 1).expect("2-D"), &h_prev)
        .expect("shapes agree");
    let db = crate::reduce::sum_dim(&flat, 0, false).expect("2-D");
    let carried = carried.unwrap_or_else(|| Tensor::zeros_dtype(&[batch, 2 * h], xi.dtype()));
    let dh0 = narrow(&carried, 1, 0, h).expect("in range");
    let dc0 = narrow(&carried, 1, h, h).expect("in range");
    [dxi, dh0, dc0, dw, db]
        .into_iter()
        .enumerate()
        .map(|(i, g)| ctx.needs_input_grad(i).then_some(g))
        .collect()
}

/// The tangent of every step's `[h_t, c_t]`, step by step with recorded ops: the gates'
/// tangent is `v_xi + v_b + v_h W_hhᵀ + h_{t-1} V_Wᵀ`, then the cell's.
fn tangent_composed(ctx: &TangentCtx<'_>, shape: Recurrence) -> Tensor {
    let Recurrence { steps, batch, hidden: h } = shape;
    let (xi, h0, c0, w_hh, b_hh) =
        (ctx.input(0), ctx.input(1), ctx.input(2), ctx.input(3), ctx.input(4));
    let out = ctx.output();
    let (mut dh, mut dc) = (ctx.tangent(1).cloned(), ctx.tangent(2).cloned());
    let mut tangents = Vec::with_capacity(steps);
    for t in 0..steps {
        let (h_prev, c_prev) = previous_state(out, (h0, c0), t, h);
        let gates = gates_at(xi, &h_prev, (w_hh, b_hh), t);
        let terms = [
            ctx.tangent(0)
                .map(|v| crate::index::slicing::select(v, 0, t as isize).expect("in range")),
            ctx.tangent(4).map(|v| v.broadcast_to(&[batch, 4 * h])),
            dh.as_ref().map(|v| linear(v, w_hh, None).expect("shapes checked")),
            ctx.tangent(3).map(|v| linear(&h_prev, v, None).expect("shapes checked")),
        ];
        let dgates = terms.into_iter().flatten().reduce(|a, b| &a + &b);
        let step = tangent_recorded(&gates, &c_prev, (dgates.as_ref(), dc.as_ref()), h);
        dh = Some(narrow(&step, 1, 0, h).expect("in range"));
        dc = Some(narrow(&step, 1, h, h).expect("in range"));
        tangents.push(step);
    }
    stacked_or_zeros(&tangents, out)
}
