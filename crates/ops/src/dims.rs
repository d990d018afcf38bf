//! Dimension arguments: PyTorch-style negative indices, checked against the rank, and the
//! blocks a dimension cuts a shape into.

use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor};

/// Resolves `dim` (negative counts from the end) for `t`, or a [`Error::Dim`] naming `op`.
pub(crate) fn resolve(
    op: &'static str,
    t: &Tensor,
    dim: isize,
    location: &'static Location<'static>,
) -> Result<usize> {
    resolve_rank(op, t.shape(), dim, t.dim(), location)
}

/// Like [`resolve`] for a rank that may differ from the shape's (e.g. `unsqueeze`).
pub(crate) fn resolve_rank(
    op: &'static str,
    shape: &[usize],
    dim: isize,
    rank: usize,
    location: &'static Location<'static>,
) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r.max(1) || (rank == 0 && d != 0) {
        return Err(Error::Dim { op, dim, shape: shape.to_vec(), location });
    }
    Ok(d as usize)
}

/// An error of the 2-d op that a 1-d op runs on its input as an image of height 1, under the
/// 1-d op's name (the messages are about the one dimension that can be wrong).
pub(crate) fn renamed<T>(op: &'static str, r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        Error::Shape { message, location, .. } => Error::Shape { op, message, location },
        Error::InvalidArgument { message, location, .. } => {
            Error::InvalidArgument { op, message, location }
        }
        other => other,
    })
}

/// `(outer, n, inner)` for dimension `d` of `shape`: the number of elements before it, along
/// it, and after it, so that a contiguous tensor of that shape is `outer` blocks of `n` rows
/// of `inner` elements.
pub(crate) fn blocks(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (shape[..d].iter().product(), shape[d], shape[d + 1..].iter().product())
}
