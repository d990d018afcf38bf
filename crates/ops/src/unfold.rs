//! Sliding blocks: `F::unfold` (PyTorch's `F.unfold`, im2col: every block a kernel covers,
//! as a column), its adjoint `F::fold` (`F.fold`, col2im: columns summed back into an
//! image), and `x.unfold(dim, size, step)` (`Tensor.unfold`: windows along one dimension).
//!
//! Each is one index map between the padded image's pixels and the columns' entries, applied
//! by recorded ops: `unfold` pads, flattens each plane and picks its pixels with
//! `index_select`; `fold` adds the columns into zeros with `index_add` and crops the padding.
//! The rule of `index_select` is an `index_add` with the same indices and the other way
//! round, so each one's gradient is the other, to any order.

use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor};

use crate::ShapeOps;
use crate::conv::IntoPair;
use crate::dims::resolve;
use crate::index::{index_add, index_select};
use crate::options::setters;
use crate::shape::{narrow, pad, reshape_to};

/// PyTorch's keywords of `F.unfold` and `F.fold` (and `nn.Unfold`/`nn.Fold`), beside the
/// kernel size: `dilation` 1, `padding` 0 and `stride` 1 by default, each one value for
/// both spatial dimensions or a pair `(rows, columns)`.
///
/// ```
/// use tapegrad_ops::UnfoldOptions;
/// let o = UnfoldOptions::default().stride(2).padding((1, 0));
/// assert_eq!((o.stride, o.padding, o.dilation), ((2, 2), (1, 0), (1, 1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfoldOptions {
    /// Spacing between the kernel's taps.
    pub dilation: (usize, usize),
    /// Zeros added on both sides of each spatial dimension.
    pub padding: (usize, usize),
    /// Step between blocks.
    pub stride: (usize, usize),
}

impl Default for UnfoldOptions {
    fn default() -> Self {
        UnfoldOptions { dilation: (1, 1), padding: (0, 0), stride: (1, 1) }
    }
}

setters!(UnfoldOptions {
    /// Sets `dilation`.
    dilation(impl IntoPair) => dilation.into_pair(), example 2 => o.dilation == (2, 2);
    /// Sets `padding`.
    padding(impl IntoPair) => padding.into_pair(), example (1, 2) => o.padding == (1, 2);
    /// Sets `stride`.
    stride(impl IntoPair) => stride.into_pair(), example 3 => o.stride == (3, 3);
});

/// Where the blocks of a kernel lie in a padded image: the image's size, the padded size,
/// the number of blocks along each dimension.
struct Blocks {
    kernel: (usize, usize),
    padded: (usize, usize),
    count: (usize, usize),
    options: UnfoldOptions,
}

impl Blocks {
    /// The blocks of `kernel` over an image of `size`, or an error naming what does not fit.
    fn new(
        op: &'static str,
        size: (usize, usize),
        kernel: (usize, usize),
        options: UnfoldOptions,
        location: &'static Location<'static>,
    ) -> Result<Blocks> {
        let invalid = |message: String| Error::InvalidArgument { op, message, location };
        let UnfoldOptions { dilation, padding, stride } = options;
        for (name, (a, b)) in [("kernel_size", kernel), ("dilation", dilation), ("stride", stride)]
        {
            if a == 0 || b == 0 {
                return Err(invalid(format!("{name} must be positive, got ({a}, {b})")));
            }
        }
        let too_large = || {
            invalid(format!(
                "the padded image ({size:?} with padding {padding:?}) or the kernel's span \
             ({kernel:?} with dilation {dilation:?}) is too large to index"
            ))
        };
        let side = |n: usize, p: usize| p.checked_mul(2).and_then(|p| n.checked_add(p));
        let span = |k: usize, d: usize| d.checked_mul(k - 1).and_then(|s| s.checked_add(1));
        let (Some(padded_h), Some(padded_w), Some(reach_h), Some(reach_w)) = (
            side(size.0, padding.0),
            side(size.1, padding.1),
            span(kernel.0, dilation.0),
            span(kernel.1, dilation.1),
        ) else {
            return Err(too_large());
        };
        let (padded, reach) = ((padded_h, padded_w), (reach_h, reach_w));
        if padded_h.checked_mul(padded_w).is_none_or(|n| n > i64::MAX as usize) {
            return Err(too_large());
        }
        if padded.0 < reach.0 || padded.1 < reach.1 {
            return Err(invalid(format!(
                "a kernel of {kernel:?} with dilation {dilation:?} spans {reach:?}, more than the \
                 padded image's {padded:?} (size {size:?}, padding {padding:?})"
            )));
        }
        let count = ((padded.0 - reach.0) / stride.0 + 1, (padded.1 - reach.1) / stride.1 + 1);
        Ok(Blocks { kernel, padded, count, options })
    }

    /// Blocks in all: the columns' length `L`.
    fn len(&self) -> usize {
        self.count.0 * self.count.1
    }

    /// For each tap `(i, j)` of the kernel (row-major), then each block (row-major), the
    /// position of the pixel it covers in the flattened padded plane.
    fn pixel_index(&self) -> Tensor {
        let (kh, kw) = self.kernel;
        let UnfoldOptions { dilation: (dh, dw), stride: (sh, sw), .. } = self.options;
        let mut index = Vec::with_capacity(kh * kw * self.len());
        for i in 0..kh {
            for j in 0..kw {
                for bi in 0..self.count.0 {
                    let row = bi * sh + i * dh;
                    for bj in 0..self.count.1 {
                        index.push((row * self.padded.1 + bj * sw + j * dw) as i64);
                    }
                }
            }
        }
        let n = index.len();
        Tensor::from_vec(index, &[n])
    }
}

/// `x` as `[N, C, H, W]`, and whether it came without its batch dimension (`[C, H, W]`).
fn batched(
    op: &'static str,
    x: &Tensor,
    rank: usize,
    location: &'static Location<'static>,
) -> Result<(Tensor, bool)> {
    match x.dim() {
        r if r == rank => Ok((x.clone(), false)),
        r if r == rank - 1 => Ok((reshape_to(x, &[[1].as_slice(), x.shape()].concat()), true)),
        _ => Err(Error::InvalidArgument {
            op,
            message: format!(
                "needs a {}-D (batched) or {}-D (unbatched) input, got shape {:?}",
                rank,
                rank - 1,
                x.shape()
            ),
            location,
        }),
    }
}

/// `[N, C, H, W]` to `[N, C kh kw, L]`: the entries each block of the kernel covers, one
/// column per block (channel-major, then the kernel's taps).
#[track_caller]
pub(crate) fn unfold(x: &Tensor, kernel: (usize, usize), options: UnfoldOptions) -> Result<Tensor> {
    let location = Location::caller();
    let (x4, unbatched) = batched("unfold", x, 4, location)?;
    let [n, c, h, w] = [x4.shape()[0], x4.shape()[1], x4.shape()[2], x4.shape()[3]];
    let blocks = Blocks::new("unfold", (h, w), kernel, options, location)?;
    let (ph, pw) = options.padding;
    let padded = if (ph, pw) == (0, 0) { x4 } else { pad(&x4, &[(pw, pw), (ph, ph)], 0.0)? };
    let planes = reshape_to(&padded, &[n, c, blocks.padded.0 * blocks.padded.1]);
    let picked = index_select(&planes, 2, &blocks.pixel_index())?;
    let columns = [n, c * kernel.0 * kernel.1, blocks.len()];
    Ok(reshape_to(&picked, if unbatched { &columns[1..] } else { &columns }))
}

/// `[N, C kh kw, L]` to `[N, C, H, W]` for `output_size` `(H, W)`: each column added back
/// onto the pixels its block covers (the adjoint of [`unfold`]; overlapping blocks sum).
#[track_caller]
pub(crate) fn fold(
    x: &Tensor,
    output_size: (usize, usize),
    kernel: (usize, usize),
    options: UnfoldOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op: "fold", message, location };
    tapegrad_tape::ensure_float("fold", x, location)?;
    let (x3, unbatched) = batched("fold", x, 3, location)?;
    let [n, rows, len] = [x3.shape()[0], x3.shape()[1], x3.shape()[2]];
    let blocks = Blocks::new("fold", output_size, kernel, options, location)?;
    let taps = kernel.0 * kernel.1;
    if rows % taps != 0 {
        return Err(invalid(format!(
            "{rows} rows of columns cannot be split into channels of {taps} kernel taps \
             (kernel_size {kernel:?}, input shape {:?})",
            x.shape()
        )));
    }
    if len != blocks.len() {
        return Err(invalid(format!(
            "{len} columns for {} blocks ({} x {}) of kernel_size {kernel:?} over an output of \
             {output_size:?} with {options:?}",
            blocks.len(),
            blocks.count.0,
            blocks.count.1
        )));
    }
    let c = rows / taps;
    let entries = reshape_to(&x3, &[n, c, taps * len]);
    let (hp, wp) = blocks.padded;
    tapegrad_tape::layout::try_numel("fold", &[n, c, hp, wp], location)?;
    let zeros = Tensor::zeros_dtype(&[n, c, hp * wp], x.dtype());
    let summed = index_add(&zeros, 2, &blocks.pixel_index(), &entries)?;
    let image = reshape_to(&summed, &[n, c, hp, wp]);
    let (ph, pw) = options.padding;
    let cropped = if (ph, pw) == (0, 0) {
        image
    } else {
        narrow(&narrow(&image, 2, ph, output_size.0)?, 3, pw, output_size.1)?
    };
    Ok(if unbatched { reshape_to(&cropped, &cropped.shape()[1..]) } else { cropped })
}

/// Windows of `size` elements along `dim`, `step` apart: that dimension becomes the number
/// of windows and a last dimension of `size` is added (PyTorch's `Tensor.unfold`, here a
/// copy rather than a view: overlapping windows hold their elements once each).
#[track_caller]
pub(crate) fn windows(x: &Tensor, dim: isize, size: usize, step: usize) -> Result<Tensor> {
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op: "unfold", message, location };
    // A scalar has one dimension of one element for this purpose, as in PyTorch (0 or -1).
    let d = if x.dim() == 0 && dim == -1 { 0 } else { resolve("unfold", x, dim, location)? };
    let extent = x.shape().get(d).copied().unwrap_or(1);
    if step == 0 {
        return Err(invalid("step must be positive".into()));
    }
    if size > extent {
        return Err(invalid(format!(
            "windows of {size} do not fit in dimension {d} of size {extent} (shape {:?})",
            x.shape()
        )));
    }
    if x.dim() == 0 {
        // PyTorch gives the scalar's one window without a dimension for the window's number.
        let index = Tensor::from_vec(vec![0i64; size], &[size]);
        return index_select(&reshape_to(x, &[1]), 0, &index);
    }
    let count = (extent - size) / step + 1;
    let index: Vec<i64> =
        (0..count).flat_map(|k| (k * step..k * step + size).map(|i| i as i64)).collect();
    let picked = index_select(x, d as isize, &Tensor::from_vec(index, &[count * size]))?;
    let mut split = x.shape().to_vec();
    split.splice(d..=d, [count, size]);
    let split = reshape_to(&picked, &split);
    // The window's elements move from right after the window's number to the end.
    let mut order: Vec<isize> = (0..split.dim() as isize).collect();
    let within = order.remove(d + 1);
    order.push(within);
    split.try_permute(&order)
}
