//! Running sums along a dimension (`cumsum`). The gradient of a running sum is the running
//! sum taken from the other end, which is again this op: the rule is one recorded call, so
//! derivatives of every order follow.

use std::panic::Location;

use tapegrad_kernels::columns::{MIN_COLUMNS, running_sums_down};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Result, Tensor, ensure_float, map_float_storage, record_with_tangent,
};

use super::rows_along;
use crate::dims::{blocks, resolve};

/// Running sums of `x` along `d` (resolved), from the back when `from_back`, recorded.
#[track_caller]
pub(super) fn scan(
    x: &Tensor,
    d: usize,
    from_back: bool,
    location: &'static Location<'static>,
) -> Tensor {
    let value = running_sums(x, d, from_back);
    record_with_tangent(
        "cumsum",
        location,
        &[x],
        value,
        || Backward::new(move |ctx| smallvec![Some(scan(ctx.grad(), d, !from_back, location))]),
        |ctx| ctx.map(|v| scan(v, d, from_back, location)),
    )
}

/// The running sums of `x` along `d`, unrecorded: down the columns where `d` is followed by
/// enough elements, else along rows moved last (and the result viewed back in place).
fn running_sums(x: &Tensor, d: usize, from_back: bool) -> Tensor {
    let shape = x.shape();
    let sizes @ (_, _, inner) = blocks(shape, d);
    if inner >= MIN_COLUMNS {
        return Tensor::from_storage(
            map_float_storage!(&x.contiguous_storage(), v => running_sums_down(v, sizes, from_back)),
            Layout::contiguous(shape),
        );
    }
    let rank = x.dim();
    let (rows, n) = rows_along(x, d);
    // rows_along moved `d` last; put it back.
    let moved: Vec<usize> = (0..rank).filter(|&i| i != d).chain([d]).map(|i| shape[i]).collect();
    let back: Vec<usize> = (0..rank)
        .map(|k| {
            if k < d {
                k
            } else if k == d {
                rank - 1
            } else {
                k - 1
            }
        })
        .collect();
    Tensor::from_storage(
        map_float_storage!(&rows, v => tapegrad_kernels::strided::running_sums(v, n, from_back)),
        Layout::contiguous(&moved).permute(&back),
    )
}

/// PyTorch's `torch.cumsum(x, dim)`.
#[track_caller]
pub(crate) fn cumsum(x: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("cumsum", x, location)?;
    let d = resolve("cumsum", x, dim, location)?;
    if x.dim() == 0 {
        return Ok(crate::shape::reshape_to(x, &[]));
    }
    Ok(scan(x, d, false, location))
}
