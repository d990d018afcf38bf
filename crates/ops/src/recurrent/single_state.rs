//! What the single-state recurrences, the GRU's and the Elman RNN's, share: the check of
//! their inputs, and for their recorded rules the state each step read and the weight
//! gradients from the per-step gradients of the hidden projections.

use std::panic::Location;

use tapegrad_kernels::recurrent::Recurrence;
use tapegrad_tape::{BackwardCtx, Error, InputGrads, Result, Tensor, ensure_float};

use crate::index::slicing::select;
use crate::shape::{narrow, reshape_to};

/// The sizes of a recurrence of `gates` gates from its inputs `xi` `[T, B, G H]`, `h0`
/// `[B, H]`, `w_hh` `[G H, H]` and `b_hh` `[G H]` (all floating point, of one dtype), or an
/// error naming `op` and what was wrong.
pub(super) fn checked_shape(
    op: &'static str,
    gates: usize,
    [xi, h0, w_hh, b_hh]: [&Tensor; 4],
    location: &'static Location<'static>,
) -> Result<Recurrence> {
    for t in [xi, h0, w_hh, b_hh] {
        ensure_float(op, t, location)?;
        if t.dtype() != xi.dtype() {
            return Err(Error::DType { op, lhs: xi.dtype(), rhs: t.dtype(), location });
        }
    }
    match (xi.shape(), h0.shape(), w_hh.shape(), b_hh.shape()) {
        (&[steps, batch, g], &[hb, hidden], &[wr, wc], &[bl])
            if g == gates * hidden
                && hb == batch
                && (wr, wc) == (gates * hidden, hidden)
                && bl == gates * hidden =>
        {
            Ok(Recurrence { steps, batch, hidden })
        }
        _ => {
            let gh = if gates == 1 { "H".to_string() } else { format!("{gates}H") };
            Err(Error::Shape {
                op,
                message: format!(
                    "expects xi [T, B, {gh}], h0 [B, H], w_hh [{gh}, H] and b_hh [{gh}], got \
                     {:?}, {:?}, {:?} and {:?}",
                    xi.shape(),
                    h0.shape(),
                    w_hh.shape(),
                    b_hh.shape()
                ),
                location,
            })
        }
    }
}

/// The state step `t` read, `h_{t-1}`: the saved initial state or the op's own output
/// `[T, B, H]` (recorded, so that rules built on it differentiate through the op).
pub(super) fn previous_state(out: &Tensor, h0: &Tensor, t: usize) -> Tensor {
    if t == 0 { h0.clone() } else { select(out, 0, t as isize - 1).expect("step in range") }
}

/// The gradients of `(xi, h0, w_hh, b_hh)` as a rule returns them, from the per-step
/// gradients of the input projections and of the hidden projections (`[B, G H]` each, in
/// step order; `None` for the latter where they equal the former, as in an Elman cell) and
/// that of `h0`: `dw_hh = Σ_t dghᵀ h_{t-1}` as one product, `db_hh = Σ dgh`.
pub(super) fn input_grads(
    ctx: &BackwardCtx<'_>,
    (dxis, dghs): (&[Tensor], Option<&[Tensor]>),
    dh0: Tensor,
) -> InputGrads {
    let (h0, out) = (ctx.saved(1), ctx.output());
    let (steps, batch, h) = (out.shape()[0], h0.shape()[0], h0.shape()[1]);
    let stacked = |parts: &[Tensor]| {
        let refs: Vec<&Tensor> = parts.iter().collect();
        crate::stack(&refs, 0)
    };
    let dxi = stacked(dxis);
    let dgh = dghs.map_or_else(|| dxi.clone(), stacked);
    let flat = reshape_to(&dgh, &[steps * batch, dgh.shape()[2]]);
    // h_{t-1} of every step, [T B, H].
    let first = crate::shape::unsqueeze(h0, 0).expect("rank 2");
    let h_prev = if steps > 1 {
        crate::cat(&[&first, &narrow(out, 0, 0, steps - 1).expect("in range")], 0)
    } else {
        first
    };
    let h_prev = reshape_to(&h_prev.contiguous(), &[steps * batch, h]);
    let dw = crate::matmul::matmul(&crate::shape::transpose(&flat, 0, 1).expect("2-D"), &h_prev)
        .expect("shapes agree");
    let db = crate::reduce::sum_dim(&flat, 0, false).expect("2-D");
    [dxi, dh0, dw, db]
        .into_iter()
        .enumerate()
        .map(|(i, g)| ctx.needs_input_grad(i).then_some(g))
        .collect()
}

/// Zero gradients for every input, as a rule returns them (a sequence of no steps).
pub(super) fn zero_grads(ctx: &BackwardCtx<'_>, inputs: usize) -> InputGrads {
    (0..inputs).map(|i| ctx.needs_input_grad(i).then(|| ctx.saved(i).zeros_like())).collect()
}
