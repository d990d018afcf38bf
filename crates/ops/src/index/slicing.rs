//! PyTorch's basic indexing, `x[1, :, -1]` and `x[::2, 1:-1]`, as `x.i((1, .., -1))` and
//! `x.i((step_by(.., 2), 1..-1))`: integers select (and drop the dimension), ranges slice,
//! negative positions count from the end, out-of-range slice bounds are clamped as in
//! Python. Built from `narrow`, `squeeze` and `slice`, so it is differentiable to any order.

use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};
use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor};

use crate::dims::resolve;
use crate::shape::{invalid_argument, narrow, slice, squeeze};

/// One position of an index: a single element (the dimension is dropped) or a slice.
///
/// ```
/// use tapegrad_ops::TensorIndex;
/// assert_eq!(TensorIndex::from(-1), TensorIndex::Select(-1));
/// assert_eq!(
///     TensorIndex::from(1..),
///     TensorIndex::Slice { start: Some(1), end: None, step: 1 }
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorIndex {
    /// One position; negative counts from the end.
    Select(isize),
    /// `start..end` every `step`; `None` is the edge, negatives count from the end.
    Slice {
        /// First position (default 0).
        start: Option<isize>,
        /// One past the last position (default the size).
        end: Option<isize>,
        /// Distance between picked positions (at least 1).
        step: usize,
    },
}

/// A slice taking every `step`-th position of `range` (Python's `start:end:step`).
///
/// ```
/// use tapegrad_ops::{prelude::*, step_by};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 6.0, 1.0);
/// assert_eq!(x.i(step_by(.., 2)).to_vec::<f32>(), vec![0.0, 2.0, 4.0]); // x[::2]
/// assert_eq!(x.i(step_by(1..-1, 3)).to_vec::<f32>(), vec![1.0, 4.0]); // x[1:-1:3]
/// ```
pub fn step_by(range: impl Into<TensorIndex>, step: usize) -> TensorIndex {
    match range.into() {
        TensorIndex::Slice { start, end, .. } => TensorIndex::Slice { start, end, step },
        // A single position stays one position.
        select => select,
    }
}

/// The positions of an index, one per leading dimension (the rest are taken whole).
/// Built from one [`TensorIndex`] or a tuple of up to six.
///
/// ```
/// use tapegrad_ops::{Indices, TensorIndex};
/// let i: Indices = (.., -1).into();
/// assert_eq!(i.0[1], TensorIndex::Select(-1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indices(pub Vec<TensorIndex>);

fn slice_of(start: Option<isize>, end: Option<isize>) -> TensorIndex {
    TensorIndex::Slice { start, end, step: 1 }
}

impl From<RangeFull> for TensorIndex {
    fn from(_: RangeFull) -> Self {
        slice_of(None, None)
    }
}

macro_rules! index_from_integers {
    ($($t:ty),*) => {$(
        impl From<$t> for TensorIndex {
            fn from(i: $t) -> Self {
                TensorIndex::Select(i as isize)
            }
        }
        impl From<Range<$t>> for TensorIndex {
            fn from(r: Range<$t>) -> Self {
                slice_of(Some(r.start as isize), Some(r.end as isize))
            }
        }
        impl From<RangeFrom<$t>> for TensorIndex {
            fn from(r: RangeFrom<$t>) -> Self {
                slice_of(Some(r.start as isize), None)
            }
        }
        impl From<RangeTo<$t>> for TensorIndex {
            fn from(r: RangeTo<$t>) -> Self {
                slice_of(None, Some(r.end as isize))
            }
        }
        impl From<RangeInclusive<$t>> for TensorIndex {
            fn from(r: RangeInclusive<$t>) -> Self {
                let end = *r.end() as isize;
                // `a..=-1` runs to the end.
                slice_of(Some(*r.start() as isize), if end == -1 { None } else { Some(end + 1) })
            }
        }
        impl From<RangeToInclusive<$t>> for TensorIndex {
            fn from(r: RangeToInclusive<$t>) -> Self {
                let end = r.end as isize;
                slice_of(None, if end == -1 { None } else { Some(end + 1) })
            }
        }
    )*};
}

index_from_integers!(i32, i64, isize, usize);

impl<T: Into<TensorIndex>> From<T> for Indices {
    fn from(i: T) -> Self {
        Indices(vec![i.into()])
    }
}

macro_rules! indices_from_tuples {
    ($(($($name:ident),+)),*) => {$(
        impl<$($name: Into<TensorIndex>),+> From<($($name,)+)> for Indices {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Indices(vec![$($name.into()),+])
            }
        }
    )*};
}

indices_from_tuples!((A, B), (A, B, C), (A, B, C, D), (A, B, C, D, E), (A, B, C, D, E, F));

/// A position `i` (negative from the end) of a dimension of `size`, checked.
fn position(
    op: &'static str,
    i: isize,
    size: usize,
    dim: usize,
    location: &'static Location<'static>,
) -> Result<usize> {
    let p = if i < 0 { i + size as isize } else { i };
    if p < 0 || p >= size as isize {
        return Err(Error::InvalidArgument {
            op,
            message: format!("index {i} is out of range for dimension {dim} of size {size}"),
            location,
        });
    }
    Ok(p as usize)
}

/// A Python slice bound, clamped to `0..=size`.
fn bound(i: Option<isize>, default: usize, size: usize) -> usize {
    match i {
        None => default,
        Some(i) if i < 0 => (i + size as isize).max(0) as usize,
        Some(i) => (i as usize).min(size),
    }
}

/// `x.select(dim, index)`: the slice at `index` along `dim`, that dimension dropped.
#[track_caller]
pub(crate) fn select(x: &Tensor, dim: isize, index: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "select",
            "cannot index a zero-dimensional tensor".into(),
            location,
        ));
    }
    let d = resolve("select", x, dim, location)?;
    let p = position("select", index, x.shape()[d], d, location)?;
    squeeze(&narrow(x, d as isize, p, 1)?, Some(d as isize))
}

/// `x.i(indices)`.
#[track_caller]
pub(crate) fn index(x: &Tensor, indices: Indices) -> Result<Tensor> {
    let location = Location::caller();
    if indices.0.len() > x.dim() {
        return Err(invalid_argument(
            "i",
            format!("{} indices for a tensor of shape {:?}", indices.0.len(), x.shape()),
            location,
        ));
    }
    let mut out = x.clone();
    // The output dimension the next index applies to (selections drop theirs).
    let mut d = 0;
    for (source_dim, item) in indices.0.into_iter().enumerate() {
        let size = out.shape()[d];
        match item {
            TensorIndex::Select(i) => {
                let p = position("i", i, size, source_dim, location)?;
                out = squeeze(&narrow(&out, d as isize, p, 1)?, Some(d as isize))?;
            }
            TensorIndex::Slice { start, end, step } => {
                if step == 0 {
                    return Err(invalid_argument(
                        "i",
                        format!("the step of the slice at dimension {source_dim} is 0"),
                        location,
                    ));
                }
                let end = bound(end, size, size);
                let start = bound(start, 0, size).min(end);
                if (start, end, step) != (0, size, 1) {
                    out = slice(&out, d as isize, start, end, step)?;
                }
                d += 1;
            }
        }
    }
    Ok(out)
}
