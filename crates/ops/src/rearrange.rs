//! Rearrangements composed of views and copies: `roll` (PyTorch's `torch.roll`),
//! `repeat_interleave` (keys and values shared by several heads of grouped-query
//! attention), `movedim`, and the sub-pixel shuffles of super-resolution networks
//! (`pixel_shuffle`, `pixel_unshuffle`). Each is made of recorded `narrow`, `cat`,
//! `reshape`, `expand` and `permute`, so their gradients are those ops' rearrangements run
//! backwards, to any order.

use std::panic::Location;

use tapegrad_tape::layout::checked_size;
use tapegrad_tape::{Error, Result, Tensor};

use crate::ShapeOps;
use crate::dims::resolve;
use crate::shape::{reshape_to, try_cat};

/// `x` shifted circularly by `shifts[i]` along `dims[i]` (elements leaving one end come
/// back at the other); with no `dims`, over the flattened tensor, keeping its shape.
#[track_caller]
pub(crate) fn roll(x: &Tensor, shifts: &[isize], dims: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    if dims.is_empty() {
        if shifts.len() != 1 {
            return Err(Error::InvalidArgument {
                op: "roll",
                message: format!("without dims, one shift is needed, got {}", shifts.len()),
                location,
            });
        }
        let flat = reshape_to(x, &[x.numel()]);
        let rolled = roll(&flat, shifts, &[0])?;
        return Ok(reshape_to(&rolled, x.shape()));
    }
    if shifts.len() != dims.len() {
        return Err(Error::InvalidArgument {
            op: "roll",
            message: format!("{} shifts for {} dims: one each", shifts.len(), dims.len()),
            location,
        });
    }
    let mut y = x.clone();
    for (&shift, &dim) in shifts.iter().zip(dims) {
        let d = resolve("roll", x, dim, location)?;
        let n = x.shape().get(d).copied().unwrap_or(1);
        if n == 0 {
            continue;
        }
        let s = shift.rem_euclid(n as isize) as usize;
        if s == 0 {
            continue;
        }
        let (tail, head) = (y.try_narrow(dim, n - s, s)?, y.try_narrow(dim, 0, n - s)?);
        y = try_cat(&[&tail, &head], dim)?;
    }
    Ok(y)
}

/// Each element of `x` repeated `repeats` times in a row along `dim` (`[a, b]` twice is
/// `[a, a, b, b]`), where `repeat` would tile the whole (`[a, b, a, b]`). A new axis after
/// `dim` is broadcast to `repeats` and merged into it; the gradient sums that axis away.
#[track_caller]
pub(crate) fn repeat_interleave(x: &Tensor, repeats: usize, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("repeat_interleave", x, dim, location)?;
    let size = x.shape()[d];
    let mut out = x.shape().to_vec();
    out[d] = checked_size(
        "repeat_interleave",
        &format!("size {size} of dimension {d} repeated {repeats} times"),
        size.checked_mul(repeats),
        location,
    )?;
    let mut spread = x.shape().to_vec();
    spread.insert(d + 1, repeats);
    let mut split = x.shape().to_vec();
    split.insert(d + 1, 1);
    let repeated = reshape_to(x, &split).broadcast_to(&spread);
    Ok(reshape_to(&repeated, &out))
}

/// `x` with dimension `source` moved to position `destination`, the others keeping their
/// order: a permuted view.
#[track_caller]
pub(crate) fn movedim(x: &Tensor, source: isize, destination: isize) -> Result<Tensor> {
    let location = Location::caller();
    let from = resolve("movedim", x, source, location)?;
    let to = resolve("movedim", x, destination, location)?;
    let mut order: Vec<isize> = (0..x.dim() as isize).filter(|&d| d != from as isize).collect();
    order.insert(to, from as isize);
    x.try_permute(&order)
}

/// `[*, C r², H, W]` to `[*, C, H r, W r]` (`unshuffle` false), or back.
#[track_caller]
pub(crate) fn pixel_shuffle(x: &Tensor, r: usize, unshuffle: bool) -> Result<Tensor> {
    let op = if unshuffle { "pixel_unshuffle" } else { "pixel_shuffle" };
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op, message, location };
    let rank = x.dim();
    if rank < 3 {
        return Err(invalid(format!("needs at least 3 dimensions, got shape {:?}", x.shape())));
    }
    if r == 0 {
        return Err(invalid("the factor must be positive".into()));
    }
    let batch = &x.shape()[..rank - 3];
    let [c, h, w] = [x.shape()[rank - 3], x.shape()[rank - 2], x.shape()[rank - 1]];
    let b = batch.len();
    // The factor's two dimensions travel between the channels and the rows and columns.
    let (split, order, out): (Vec<usize>, Vec<usize>, Vec<usize>) = if unshuffle {
        if h % r != 0 || w % r != 0 {
            return Err(invalid(format!(
                "height {h} and width {w} must be multiples of the factor {r} (shape {:?})",
                x.shape()
            )));
        }
        let split = [batch, &[c, h / r, r, w / r, r]].concat();
        // [*, C, H, r, W, r] -> [*, C, r, r, H, W]
        let order = [&(0..b).collect::<Vec<_>>()[..], &[b, b + 2, b + 4, b + 1, b + 3]].concat();
        (split, order, [batch, &[c * r * r, h / r, w / r]].concat())
    } else {
        if c % (r * r) != 0 {
            return Err(invalid(format!(
                "channels {c} must be a multiple of the factor squared, {} (shape {:?})",
                r * r,
                x.shape()
            )));
        }
        let split = [batch, &[c / (r * r), r, r, h, w]].concat();
        // [*, C, r, r, H, W] -> [*, C, H, r, W, r]
        let order = [&(0..b).collect::<Vec<_>>()[..], &[b, b + 3, b + 1, b + 4, b + 2]].concat();
        (split, order, [batch, &[c / (r * r), h * r, w * r]].concat())
    };
    let order: Vec<isize> = order.into_iter().map(|d| d as isize).collect();
    let moved = reshape_to(x, &split).try_permute(&order)?;
    Ok(reshape_to(&moved, &out))
}
