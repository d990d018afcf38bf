//! Forward-mode rules shared by several ops (see `tapegrad_tape::TangentCtx` for the
//! shapes a rule takes).

use tapegrad_tape::{TangentCtx, Tensor};

/// The tangent of an op whose every output element depends on its own group of input
/// elements (a reduction along a dimension, a per-sample loss): each output's row of the
/// Jacobian is nonzero on its group only, so the backward rule applied to ones gives all
/// rows at once, and `J v` is that times the tangent, summed over each group by `reduce`
/// (the op's own reduction, to the output's shape).
pub(crate) fn by_groups(ctx: &TangentCtx<'_>, reduce: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let rows = ctx.vjp(&ctx.output().ones_like());
    ctx.sum(|i, v| {
        let row =
            rows[i].as_ref().expect("the backward rule gives each input with a tangent a gradient");
        reduce(&(row * v))
    })
}
