//! Ordering along a dimension: `sort`, `argsort`, `topk`.
//!
//! The order is found on the values alone (stable, NaN above every number, as PyTorch
//! sorts), and the sorted values are then `gather`ed from the input with it, so their
//! gradient is gather's: it returns to the positions the values came from, to any order.

use std::panic::Location;

use tapegrad_kernels::order::row_orders;
use tapegrad_tape::{DType, Error, Result, Storage, Tensor, or_panic};

use crate::dims::resolve;
use crate::{IndexOps, ShapeOps};

/// The int64 indices that sort `x` along `dim`, only the first `keep` of each lane when it
/// is given (nothing recorded).
#[track_caller]
fn order(
    op: &'static str,
    x: &Tensor,
    dim: isize,
    descending: bool,
    keep: Option<usize>,
) -> Result<Tensor> {
    let location = Location::caller();
    if x.dtype() == DType::Bool {
        return Err(Error::InvalidArgument {
            op,
            message: "cannot order a bool tensor; convert it with `to_dtype` first".into(),
            location,
        });
    }
    if x.dim() == 0 {
        return Ok(Tensor::zeros_dtype(&[], DType::I64));
    }
    let d = resolve(op, x, dim, location)?;
    let last = x.dim() - 1;
    // The sorted dimension last and contiguous: one row per lane.
    let lanes = x.detach().try_transpose(d as isize, last as isize)?.contiguous();
    let len = x.shape()[d];
    let range = lanes.layout().offset()..lanes.layout().offset() + lanes.numel();
    let keep = keep.unwrap_or(len);
    let positions = match &lanes.storage() {
        Storage::I64(v) => row_orders(&v[range], len, keep, descending),
        Storage::F32(v) => row_orders(&v[range], len, keep, descending),
        Storage::F64(v) => row_orders(&v[range], len, keep, descending),
        Storage::Bool(_) => unreachable!("bool rejected above"),
    };
    let mut kept = lanes.shape().to_vec();
    kept[last] = keep;
    let indices = Tensor::from_vec(positions, &kept);
    Ok(indices.try_transpose(d as isize, last as isize)?.contiguous())
}

#[track_caller]
fn sort(x: &Tensor, dim: isize, descending: bool) -> Result<(Tensor, Tensor)> {
    let indices = order("sort", x, dim, descending, None)?;
    let values = if x.dim() == 0 { x.clone() } else { x.try_gather(dim, &indices)? };
    Ok((values, indices))
}

#[track_caller]
fn topk(x: &Tensor, k: usize, dim: isize, largest: bool) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let size = if x.dim() == 0 { 1 } else { x.shape()[resolve("topk", x, dim, location)?] };
    if k > size {
        return Err(Error::InvalidArgument {
            op: "topk",
            message: format!(
                "k = {k} is larger than dimension {dim} (size {size}) of shape {:?}",
                x.shape()
            ),
            location,
        });
    }
    let indices = order("topk", x, dim, largest, Some(k))?;
    if x.dim() == 0 {
        return Ok((x.clone(), indices));
    }
    Ok((x.try_gather(dim, &indices)?, indices))
}

/// Sorting and selecting the largest or smallest elements along a dimension (PyTorch's
/// `sort`, `argsort`, `topk`). In the prelude.
///
/// Values come with their int64 positions along the dimension; NaN sorts above every
/// number, and equal elements keep their order. The values' gradient goes back to the
/// positions they came from.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0], &[3]).requires_grad();
/// let (top, at) = x.topk(2, -1);
/// assert_eq!((top.to_vec::<f64>(), at.to_vec::<i64>()), (vec![3.0, 2.0], vec![0, 2]));
/// top.sum().backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0, 0.0, 1.0]);
/// ```
pub trait SortOps {
    /// The elements sorted along `dim` (ascending, or descending), and where each came from.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f32, f32::NAN, -1.0, 2.0], &[4]);
    /// let (values, indices) = x.sort(0, false);
    /// assert_eq!(indices.to_vec::<i64>(), vec![2, 0, 3, 1]); // NaN last, ties in order
    /// assert_eq!(values.to_vec::<f32>()[..3], [-1.0, 2.0, 2.0]);
    /// ```
    #[track_caller]
    fn sort(&self, dim: isize, descending: bool) -> (Tensor, Tensor) {
        or_panic(self.try_sort(dim, descending))
    }

    /// [`SortOps::sort`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_sort(2, false).is_err());
    /// ```
    #[track_caller]
    fn try_sort(&self, dim: isize, descending: bool) -> Result<(Tensor, Tensor)>;

    /// The int64 positions that sort the elements along `dim` (PyTorch's `argsort`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 0.0], &[2, 2]);
    /// assert_eq!(x.argsort(1, true).to_vec::<i64>(), vec![1, 0, 0, 1]);
    /// ```
    #[track_caller]
    fn argsort(&self, dim: isize, descending: bool) -> Tensor {
        or_panic(self.try_argsort(dim, descending))
    }

    /// [`SortOps::argsort`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_argsort(-2, false).is_err());
    /// ```
    #[track_caller]
    fn try_argsort(&self, dim: isize, descending: bool) -> Result<Tensor>;

    /// The `k` largest elements along `dim`, largest first, and their positions (PyTorch's
    /// `topk` with `largest=True, sorted=True`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let logits = Tensor::from_vec(vec![0.1f32, 0.7, 0.2, 0.9, 0.3, 0.0], &[2, 3]);
    /// let (_, best) = logits.topk(1, 1);
    /// assert_eq!(best.to_vec::<i64>(), vec![1, 0]);
    /// ```
    #[track_caller]
    fn topk(&self, k: usize, dim: isize) -> (Tensor, Tensor) {
        self.topk_with(k, dim, true)
    }

    /// [`SortOps::topk`] with its keyword `largest` (false: the `k` smallest, smallest
    /// first).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![4.0f32, 1.0, 3.0, 2.0], &[4]);
    /// assert_eq!(x.topk_with(2, 0, false).0.to_vec::<f32>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    fn topk_with(&self, k: usize, dim: isize, largest: bool) -> (Tensor, Tensor) {
        or_panic(self.try_topk_with(k, dim, largest))
    }

    /// [`SortOps::topk_with`], returning an error instead of panicking (`k` larger than the
    /// dimension).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::zeros(&[2, 3]).try_topk_with(4, 1, true).unwrap_err();
    /// assert!(err.to_string().contains("k = 4 is larger than dimension 1 (size 3)"));
    /// ```
    #[track_caller]
    fn try_topk_with(&self, k: usize, dim: isize, largest: bool) -> Result<(Tensor, Tensor)>;
}

impl SortOps for Tensor {
    #[track_caller]
    fn try_sort(&self, dim: isize, descending: bool) -> Result<(Tensor, Tensor)> {
        sort(self, dim, descending)
    }
    #[track_caller]
    fn try_argsort(&self, dim: isize, descending: bool) -> Result<Tensor> {
        order("argsort", self, dim, descending, None)
    }
    #[track_caller]
    fn try_topk_with(&self, k: usize, dim: isize, largest: bool) -> Result<(Tensor, Tensor)> {
        topk(self, k, dim, largest)
    }
}
