//! Operations driven by int64 index tensors: `index_select`, `index_add`, `gather`,
//! `scatter_add`, and the index checks they (and `embedding`, `nll_loss`) share; basic
//! indexing by positions and ranges (`select`, `i`) is in `index/slicing.rs`.
//!
//! The methods are at the end of the file: [`IndexOps`].

use std::panic::Location;

use tapegrad_kernels::mask;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::layout::numel;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Tensor, or_panic, record_with_tangent};

use crate::dims::{blocks, resolve};
use crate::shape::{invalid_argument, pad};

pub(crate) mod slicing;

pub use slicing::{Indices, TensorIndex, step_by};

/// The values of an int64 index tensor, each checked to lie in `0..bound`. Negative values
/// are errors, as in PyTorch's index_select, gather, scatter_add, index_add and embedding
/// (only advanced indexing counts from the end there).
pub(crate) fn index_values(
    op: &'static str,
    index: &Tensor,
    bound: usize,
    location: &'static Location<'static>,
) -> Result<Vec<usize>> {
    if index.dtype() != tapegrad_tape::DType::I64 {
        return Err(invalid_argument(
            op,
            format!(
                "indices must be an int64 tensor, got {}; convert with to_dtype(DType::I64)",
                index.dtype()
            ),
            location,
        ));
    }
    let storage = index.contiguous_storage();
    let values = storage.as_slice::<i64>().expect("an int64 tensor holds i64");
    tapegrad_kernels::rows::checked_positions(values, bound).map_err(|k| {
        check_index(op, values[k], k, index.shape(), bound, location).expect_err("out of range")
    })
}

/// `value` as an index into a dimension of `size`, or an error naming the index, its
/// position `flat` (row-major) in an index tensor of shape `index_shape`, and the valid range.
pub(crate) fn check_index(
    op: &'static str,
    value: i64,
    flat: usize,
    index_shape: &[usize],
    size: usize,
    location: &'static Location<'static>,
) -> Result<usize> {
    match usize::try_from(value) {
        Ok(i) if i < size => Ok(i),
        _ => {
            let mut position = vec![0; index_shape.len()];
            let mut rest = flat;
            for (p, &n) in position.iter_mut().zip(index_shape).rev() {
                *p = rest % n.max(1);
                rest /= n.max(1);
            }
            let valid = match size {
                0 => "the dimension is empty".to_string(),
                _ => format!(
                    "valid indices are 0..={}, and negative ones do not count from the end",
                    size - 1
                ),
            };
            Err(invalid_argument(
                op,
                format!(
                    "index {value} at position {position:?} is out of range for a dimension of \
                    size {size} ({valid})"
                ),
                location,
            ))
        }
    }
}

/// Rows of `x` along `dim` picked by a 1-D int64 `index`.
#[track_caller]
pub(crate) fn index_select(x: &Tensor, dim: isize, index: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "index_select",
            "needs a tensor of at least one dimension".into(),
            location,
        ));
    }
    let d = resolve("index_select", x, dim, location)?;
    if index.dim() > 1 {
        return Err(invalid_argument(
            "index_select",
            format!("index must be 1-D, got shape {:?}", index.shape()),
            location,
        ));
    }
    let idx = index_values("index_select", index, x.shape()[d], location)?;
    let mut shape = x.shape().to_vec();
    shape[d] = idx.len();
    let (outer, n, inner) = blocks(x.shape(), d);
    let src = x.contiguous_storage();
    // Whole rows of `inner` elements picked from each of `outer` blocks, split across threads.
    let storage = tapegrad_tape::map_storage!(&src, v => {
        tapegrad_kernels::rows::select_rows(v, &idx, (outer, n, inner))
    });
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape));
    let make_backward = || {
        let (index, in_shape, idx) = (index.clone(), x.shape().to_vec(), idx.clone());
        Backward::new(move |ctx| {
            if !tapegrad_tape::is_grad_enabled() {
                // A plain backward: the rows added straight into zeros (index_add would
                // first copy the zeros, which it must treat as a caller's tensor).
                let g = ctx.grad().contiguous_storage();
                let sum = tapegrad_tape::map_float_storage!(&g, g => {
                    tapegrad_kernels::rows::add_rows_to_zeros(g, &idx, (outer, n, inner))
                });
                let layout = tapegrad_tape::layout::Layout::contiguous(&in_shape);
                return smallvec![Some(Tensor::from_storage(sum, layout))];
            }
            let zeros = Tensor::zeros_dtype(&in_shape, ctx.grad().dtype());
            smallvec![Some(
                index_add(&zeros, d as isize, &index, ctx.grad()).expect("shapes agree")
            )]
        })
    };
    Ok(record_with_tangent("index_select", location, &[x], value, make_backward, |ctx| {
        ctx.map(|v| index_select(v, d as isize, index).expect("valid indices"))
    }))
}

/// `x` with `source`'s rows added at the rows `index` names along `dim` (repeats add up).
#[track_caller]
pub(crate) fn index_add(x: &Tensor, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "index_add",
            "needs a tensor of at least one dimension".into(),
            location,
        ));
    }
    let d = resolve("index_add", x, dim, location)?;
    let idx = index_values("index_add", index, x.shape()[d], location)?;
    let mut expected = x.shape().to_vec();
    expected[d] = idx.len();
    if source.shape() != expected.as_slice() || source.dtype() != x.dtype() {
        return Err(Error::Shape {
            op: "index_add",
            message: format!("source has shape {:?}, expected {expected:?}", source.shape()),
            location,
        });
    }
    let shape = x.shape().to_vec();
    let dims = blocks(&shape, d);
    let mut storage = x.contiguous_storage();
    let src = source.contiguous_storage();
    use tapegrad_kernels::rows::add_rows;
    match &src {
        tapegrad_tape::Storage::F32(s) => {
            add_rows(storage.make_mut::<f32>().expect("f32"), s, &idx, dims)
        }
        tapegrad_tape::Storage::F64(s) => {
            add_rows(storage.make_mut::<f64>().expect("f64"), s, &idx, dims)
        }
        tapegrad_tape::Storage::I64(_) | tapegrad_tape::Storage::Bool(_) => {
            return Err(invalid_argument("index_add", "needs float tensors".into(), location));
        }
    }
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape));
    let make_backward = || {
        let index = index.clone();
        Backward::new(move |ctx| {
            let g = ctx.grad();
            smallvec![
                ctx.needs_input_grad(0).then(|| g.clone()),
                ctx.needs_input_grad(1)
                    .then(|| index_select(g, d as isize, &index).expect("valid indices")),
            ]
        })
    };
    Ok(record_with_tangent("index_add", location, &[x, source], value, make_backward, |ctx| {
        ctx.sum(|i, v| match i {
            0 => v.clone(),
            _ => index_add(&x.zeros_like(), d as isize, index, v).expect("shapes agree"),
        })
    }))
}

/// Where `gather` reads and `scatter_add` writes in a contiguous tensor, for every element
/// of an index of the same rank.
enum Positions {
    /// The flat offset of each element of the index, in its row-major order.
    Offsets(Vec<usize>),
    /// Whole rows: the index repeats one 1-D index `idx` along `d` over every other
    /// dimension, whose sizes are the tensor's (message passing's
    /// `idx.unsqueeze(1).expand(-1, n)`), so gather is `index_select` and scatter_add is
    /// `index_add`, as `(outer, n, inner)` blocks of rows.
    Rows { idx: Vec<usize>, dims: (usize, usize, usize) },
    /// An index whose sizes outside `d` are the tensor's: element `(o, j, i)` of the index
    /// (`o` over the dimensions before `d`, `i` over those after) points at `(o, idx, i)` of
    /// the tensor as `(outer, n, inner)`.
    Along { idx: Vec<usize>, dims: (usize, usize, usize) },
}

impl Positions {
    /// Checks `index` against a tensor of `shape` along `d` and finds where each element
    /// points.
    fn of(
        op: &'static str,
        shape: &[usize],
        index: &Tensor,
        d: usize,
        location: &'static Location<'static>,
    ) -> Result<Positions> {
        if index.dim() != shape.len()
            || index.shape().iter().zip(shape).enumerate().any(|(k, (&i, &s))| k != d && i > s)
        {
            return Err(Error::Shape {
                op,
                message: format!(
                    "index of shape {:?} does not fit a tensor of shape {shape:?} (same rank, \
                     no larger outside dimension {d})",
                    index.shape()
                ),
                location,
            });
        }
        let ishape = index.shape().to_vec();
        let fits = !shape.is_empty()
            && ishape.iter().zip(shape).enumerate().all(|(k, (&i, &s))| k == d || i == s);
        if !fits {
            return Self::offsets(op, shape, index, d, location);
        }
        let (outer, n, inner) = blocks(shape, d);
        let strides = index.layout().strides();
        let repeated = (0..ishape.len()).all(|k| k == d || strides[k] == 0 || ishape[k] == 1);
        if repeated {
            // The 1-D index: the first element along every dimension but `d`.
            let layout = index.layout();
            let line = tapegrad_tape::layout::Layout::from_parts(
                &[ishape[d]],
                &[strides[d]],
                layout.offset(),
            );
            let line = Tensor::from_storage(index.storage(), line);
            // Out-of-range values are named at their place in the whole index below.
            if let Ok(idx) = index_values(op, &line, n, location) {
                return Ok(Positions::Rows { idx, dims: (outer, n, inner) });
            }
        }
        let idx = index_values(op, index, n, location)?;
        Ok(Positions::Along { idx, dims: (outer, n, inner) })
    }

    /// The offsets of an index smaller than the tensor outside `d`, coordinate by coordinate.
    fn offsets(
        op: &'static str,
        shape: &[usize],
        index: &Tensor,
        d: usize,
        location: &'static Location<'static>,
    ) -> Result<Positions> {
        // A zero-dimensional tensor indexes as one of size 1, as in PyTorch.
        let values = index_values(op, index, shape.get(d).copied().unwrap_or(1), location)?;
        let ishape = index.shape().to_vec();
        let strides = tapegrad_tape::layout::contiguous_strides(shape);
        let mut coord = vec![0usize; ishape.len()];
        let mut offsets = Vec::with_capacity(values.len());
        for &v in &values {
            let off: usize = coord
                .iter()
                .enumerate()
                .map(|(k, &c)| if k == d { v } else { c } * strides[k])
                .sum();
            offsets.push(off);
            for k in (0..coord.len()).rev() {
                coord[k] += 1;
                if coord[k] < ishape[k] {
                    break;
                }
                coord[k] = 0;
            }
        }
        Ok(Positions::Offsets(offsets))
    }

    /// The elements of `src` at these positions, in the index's order.
    fn gather<T: Copy + Send + Sync>(&self, src: &[T]) -> Vec<T> {
        match self {
            Positions::Offsets(offsets) => offsets.iter().map(|&o| src[o]).collect(),
            Positions::Rows { idx, dims } => tapegrad_kernels::rows::select_rows(src, idx, *dims),
            Positions::Along { idx, dims } => tapegrad_kernels::rows::gather_along(src, idx, *dims),
        }
    }

    /// `src` (one value per element of the index) added at these positions into `dst`, in
    /// the index's order.
    fn add_into<T: tapegrad_tape::Element>(&self, dst: &mut [T], src: &[T]) {
        match self {
            Positions::Offsets(offsets) => {
                for (&o, &v) in offsets.iter().zip(src) {
                    dst[o] += v;
                }
            }
            Positions::Rows { idx, dims } => tapegrad_kernels::rows::add_rows(dst, src, idx, *dims),
            Positions::Along { idx, dims } => {
                tapegrad_kernels::rows::add_along(dst, src, idx, *dims)
            }
        }
    }

    /// [`Positions::add_into`] zeros of `len` elements.
    fn add_to_zeros<T: tapegrad_tape::Element>(&self, src: &[T], len: usize) -> Vec<T> {
        match self {
            Positions::Rows { idx, dims } => {
                return tapegrad_kernels::rows::add_rows_to_zeros(src, idx, *dims);
            }
            Positions::Along { idx, dims } => {
                return tapegrad_kernels::rows::add_along_to_zeros(src, idx, *dims);
            }
            Positions::Offsets(_) => {}
        }
        let mut sum = tapegrad_kernels::parallel::zeroed(len);
        self.add_into(&mut sum, src);
        sum
    }
}

/// `out[i][j] = x[i][index[i][j]]` along `dim` (PyTorch's `gather`).
#[track_caller]
pub(crate) fn gather(x: &Tensor, dim: isize, index: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("gather", x, dim, location)?;
    let positions = std::sync::Arc::new(Positions::of("gather", x.shape(), index, d, location)?);
    let src = x.contiguous_storage();
    let storage = tapegrad_tape::map_storage!(&src, v => positions.gather(v));
    let value =
        Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(index.shape()));
    let make_backward = || {
        let (index, in_shape, positions) = (index.clone(), x.shape().to_vec(), positions.clone());
        Backward::new(move |ctx| {
            if !tapegrad_tape::is_grad_enabled() {
                // A plain backward: each value added at its position into zeros.
                let g = ctx.grad().contiguous_storage();
                let sum = tapegrad_tape::map_float_storage!(&g, g => {
                    positions.add_to_zeros(g, numel(&in_shape))
                });
                let layout = tapegrad_tape::layout::Layout::contiguous(&in_shape);
                return smallvec![Some(Tensor::from_storage(sum, layout))];
            }
            let zeros = Tensor::zeros_dtype(&in_shape, ctx.grad().dtype());
            smallvec![Some(
                scatter_add(&zeros, d as isize, &index, ctx.grad()).expect("shapes agree")
            )]
        })
    };
    Ok(record_with_tangent("gather", location, &[x], value, make_backward, |ctx| {
        ctx.map(|v| gather(v, d as isize, index).expect("valid indices"))
    }))
}

/// `x` with `src` added at the positions `index` names along `dim` (PyTorch's
/// `scatter_add`): `out[i][index[i][j]] += src[i][j]`.
#[track_caller]
pub(crate) fn scatter_add(x: &Tensor, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("scatter_add", x, dim, location)?;
    let positions = Positions::of("scatter_add", x.shape(), index, d, location)?;
    if src.dim() != index.dim() || src.shape().iter().zip(index.shape()).any(|(s, i)| s < i) {
        return Err(Error::Shape {
            op: "scatter_add",
            message: format!(
                "src of shape {:?} is smaller than index of shape {:?}",
                src.shape(),
                index.shape()
            ),
            location,
        });
    }
    if src.dtype() != x.dtype() {
        return Err(Error::DType { op: "scatter_add", lhs: x.dtype(), rhs: src.dtype(), location });
    }
    // Only the part of src that the index covers takes part.
    let mut src_view = src.detach();
    for (k, &n) in index.shape().iter().enumerate() {
        src_view = Tensor::from_storage(src_view.storage(), src_view.layout().narrow(k, 0, n));
    }
    let values = src_view.contiguous_storage();
    let mut storage = x.contiguous_storage();
    match &values {
        tapegrad_tape::Storage::F32(s) => {
            positions.add_into(storage.make_mut::<f32>().expect("f32"), s)
        }
        tapegrad_tape::Storage::F64(s) => {
            positions.add_into(storage.make_mut::<f64>().expect("f64"), s)
        }
        tapegrad_tape::Storage::I64(_) | tapegrad_tape::Storage::Bool(_) => {
            return Err(invalid_argument("scatter_add", "needs float tensors".into(), location));
        }
    }
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(x.shape()));
    let make_backward = || {
        let (index, src_shape) = (index.clone(), src.shape().to_vec());
        Backward::new(move |ctx| {
            let g = ctx.grad();
            smallvec![
                ctx.needs_input_grad(0).then(|| g.clone()),
                ctx.needs_input_grad(1).then(|| {
                    let picked = gather(g, d as isize, &index).expect("valid indices");
                    let pads: Vec<(usize, usize)> = src_shape
                        .iter()
                        .zip(index.shape())
                        .rev()
                        .map(|(&s, &i)| (0, s - i))
                        .collect();
                    pad(&picked, &pads, 0.0).expect("rank agrees")
                }),
            ]
        })
    };
    Ok(record_with_tangent("scatter_add", location, &[x, src], value, make_backward, |ctx| {
        ctx.sum(|i, v| match i {
            0 => v.clone(),
            _ => scatter_add(&x.zeros_like(), d as isize, index, v).expect("shapes agree"),
        })
    }))
}

/// An error unless `mask` is a bool tensor.
fn check_mask(op: &'static str, mask: &Tensor, location: &'static Location<'static>) -> Result<()> {
    if mask.dtype() != tapegrad_tape::DType::Bool {
        return Err(invalid_argument(
            op,
            format!(
                "the mask must be a bool tensor (from a comparison), got {}; convert with \
                 `to_dtype(DType::Bool)`",
                mask.dtype()
            ),
            location,
        ));
    }
    Ok(())
}

#[track_caller]
pub(crate) fn masked_fill(x: &Tensor, mask: &Tensor, value: f64) -> Result<Tensor> {
    let location = Location::caller();
    check_mask("masked_fill", mask, location)?;
    let joint = tapegrad_tape::layout::broadcast_shapes(x.shape(), mask.shape());
    if joint.as_deref() != Some(x.shape()) {
        return Err(Error::Shape {
            op: "masked_fill",
            message: format!(
                "mask shape {:?} does not broadcast to the tensor's shape {:?}",
                mask.shape(),
                x.shape()
            ),
            location,
        });
    }
    let fill = Tensor::full_dtype(&[], value, x.dtype());
    crate::binary::try_where(mask, &fill, x)
}

#[track_caller]
pub(crate) fn masked_select(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    check_mask("masked_select", mask, location)?;
    let shape =
        tapegrad_tape::layout::broadcast_shapes(x.shape(), mask.shape()).ok_or_else(|| {
            Error::Shape {
                op: "masked_select",
                message: format!(
                    "mask shape {:?} does not broadcast with the tensor's shape {:?}",
                    mask.shape(),
                    x.shape()
                ),
                location,
            }
        })?;
    let mask = mask.broadcast_to(&shape).contiguous();
    Ok(select_marked(&x.broadcast_to(&shape), &mask, location))
}

/// The elements of `x` that `mask` (a contiguous bool tensor of `x`'s shape) marks, in
/// order, as one recorded op; its gradient is [`scatter_marked`]'s, and the other way round,
/// so every order of derivative is one pass.
fn select_marked(x: &Tensor, mask: &Tensor, location: &'static Location<'static>) -> Tensor {
    let marks = mask.contiguous_storage();
    let marks = marks.as_slice::<bool>().expect("a bool mask, checked by the caller");
    let picked = tapegrad_tape::map_storage!(&x.contiguous_storage(), v => mask::select(v, marks));
    let count = picked.len();
    record_with_tangent(
        "masked_select",
        location,
        &[x],
        Tensor::from_storage(picked, Layout::contiguous(&[count])),
        || {
            let mask = mask.clone();
            Backward::new(move |ctx| smallvec![Some(scatter_marked(ctx.grad(), &mask, location))])
        },
        |ctx| ctx.map(|v| select_marked(v, mask, location)),
    )
}

/// The values of `picked` put back, in order, where `mask` marks, zeros elsewhere: the
/// gradient of [`select_marked`] (PyTorch's `masked_scatter` into zeros).
fn scatter_marked(picked: &Tensor, mask: &Tensor, location: &'static Location<'static>) -> Tensor {
    let marks = mask.contiguous_storage();
    let marks = marks.as_slice::<bool>().expect("a bool mask, checked by the caller");
    let placed = tapegrad_tape::map_float_storage!(
        &picked.contiguous_storage(),
        v => mask::scatter(v, marks)
    );
    record_with_tangent(
        "masked_scatter",
        location,
        &[picked],
        Tensor::from_storage(placed, Layout::contiguous(mask.shape())),
        || {
            let mask = mask.clone();
            Backward::new(move |ctx| smallvec![Some(select_marked(ctx.grad(), &mask, location))])
        },
        |ctx| ctx.map(|v| scatter_marked(v, mask, location)),
    )
}

/// Operations driven by int64 index tensors: picking (`index_select`, `gather`) and
/// adding into positions (`index_add`, `scatter_add`), as methods. In the prelude.
/// Negative indices are errors, as in these PyTorch functions.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::{DType, Tensor};
/// let x = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3]);
/// let i = Tensor::from_vec(vec![2i64, 0], &[2]);
/// assert_eq!(x.index_select(0, &i).to_vec::<f32>(), vec![30.0, 10.0]);
/// assert_eq!(i.dtype(), DType::I64);
/// ```
pub trait IndexOps {
    /// Rows along `dim` picked by a 1-D int64 `index` (repeats allowed). Panics, as
    /// PyTorch raises, on an index outside `0..size` (negative ones do not count from the
    /// end). Unlike PyTorch, a zero-dimensional `self` is an error rather than a tensor of
    /// size 1.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[3, 2]);
    /// let rows = x.index_select(0, &Tensor::from_vec(vec![2i64, 0], &[2]));
    /// assert_eq!(rows.to_vec::<f32>(), vec![4.0, 5.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    fn index_select(&self, dim: isize, index: &Tensor) -> Tensor {
        or_panic(self.try_index_select(dim, index))
    }

    /// [`IndexOps::index_select`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3, 2]);
    /// assert!(x.try_index_select(0, &Tensor::from_vec(vec![3i64], &[1])).is_err()); // out of range
    /// assert!(x.try_index_select(0, &Tensor::from_vec(vec![0.0f32], &[1])).is_err()); // not int64
    /// ```
    #[track_caller]
    fn try_index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor>;

    /// This tensor with `source`'s rows added at the rows `index` names along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3]).index_add(
    ///     0,
    ///     &Tensor::from_vec(vec![1i64, 1], &[2]),
    ///     &Tensor::ones(&[2]),
    /// );
    /// assert_eq!(x.to_vec::<f32>(), vec![0.0, 2.0, 0.0]);
    /// ```
    #[track_caller]
    fn index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Tensor {
        or_panic(self.try_index_add(dim, index, source))
    }

    /// [`IndexOps::index_add`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![0i64], &[1]);
    /// assert!(Tensor::zeros(&[3]).try_index_add(0, &index, &Tensor::ones(&[2])).is_err()); // one index, two rows
    /// ```
    #[track_caller]
    fn try_index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor>;

    /// `out[i][j] = self[i][index[i][j]]` along `dim` (PyTorch's `gather`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// let picked = x.gather(1, &Tensor::from_vec(vec![1i64, 0], &[2, 1]));
    /// assert_eq!(picked.to_vec::<f32>(), vec![2.0, 3.0]);
    /// ```
    #[track_caller]
    fn gather(&self, dim: isize, index: &Tensor) -> Tensor {
        or_panic(self.try_gather(dim, index))
    }

    /// [`IndexOps::gather`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![5i64], &[1, 1]);
    /// assert!(Tensor::zeros(&[2, 2]).try_gather(1, &index).is_err()); // out of range
    /// ```
    #[track_caller]
    fn try_gather(&self, dim: isize, index: &Tensor) -> Result<Tensor>;

    /// This tensor with `src` added at `index` along `dim`: `out[i][index[i][j]] += src[i][j]`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let out = Tensor::zeros(&[1, 3]).scatter_add(
    ///     1,
    ///     &Tensor::from_vec(vec![2i64, 2], &[1, 2]),
    ///     &Tensor::ones(&[1, 2]),
    /// );
    /// assert_eq!(out.to_vec::<f32>(), vec![0.0, 0.0, 2.0]);
    /// ```
    #[track_caller]
    fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor {
        or_panic(self.try_scatter_add(dim, index, src))
    }

    /// [`IndexOps::scatter_add`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![0i64, 1], &[1, 2]);
    /// let src = Tensor::ones(&[1, 1]); // smaller than the index
    /// assert!(Tensor::zeros(&[1, 3]).try_scatter_add(1, &index, &src).is_err());
    /// ```
    #[track_caller]
    fn try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor>;

    /// The slice at position `index` along `dim`, that dimension dropped (PyTorch's
    /// `select`, `x[:, index]` for dim 1); a negative `index` counts from the end.
    /// Differentiable; a view of `self`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let h = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]); // [batch, time]
    /// assert_eq!(h.select(1, -1).to_vec::<f32>(), vec![2.0, 5.0]); // h[:, -1]
    /// assert_eq!(h.select(0, 0).shape(), &[3]);
    /// ```
    #[track_caller]
    fn select(&self, dim: isize, index: isize) -> Tensor {
        or_panic(self.try_select(dim, index))
    }

    /// [`IndexOps::select`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::zeros(&[2, 3]).try_select(1, 3).unwrap_err();
    /// assert!(err.to_string().contains("index 3 is out of range for dimension 1 of size 3"));
    /// ```
    #[track_caller]
    fn try_select(&self, dim: isize, index: isize) -> Result<Tensor>;

    /// PyTorch's basic indexing in one call: one entry per leading dimension, an integer
    /// selects (dropping the dimension), a range slices (`..`, `a..b`, `a..`, `..b`,
    /// `a..=b`, negative bounds from the end, clamped like Python's), [`step_by`] adds a
    /// step. Differentiable to any order.
    ///
    /// ```
    /// use tapegrad_ops::{prelude::*, step_by};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 24.0, 1.0).reshape(&[2, 3, 4]);
    /// assert_eq!(x.i((.., -1)).shape(), &[2, 4]); // x[:, -1]
    /// assert_eq!(x.i((1, 1..)).to_vec::<f32>()[..4], [16.0, 17.0, 18.0, 19.0]); // x[1, 1:]
    /// assert_eq!(x.i((0, 0, step_by(.., 2))).to_vec::<f32>(), vec![0.0, 2.0]); // x[0, 0, ::2]
    /// assert_eq!(x.i((0, 0, -1)).item(), 3.0); // x[0, 0, -1]: a 0-d tensor
    /// assert_eq!(x.i((.., ..-1, 1..=2)).shape(), &[2, 2, 2]); // x[:, :-1, 1:3]
    /// ```
    #[track_caller]
    fn i(&self, indices: impl Into<Indices>) -> Tensor {
        or_panic(self.try_i(indices))
    }

    /// [`IndexOps::i`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2, 3]);
    /// assert!(x.try_i((0, 0, 0)).is_err()); // three indices for two dimensions
    /// assert!(x.try_i((.., -4)).is_err()); // out of range
    /// assert_eq!(x.try_i((.., 5..)).unwrap().shape(), &[2, 0]); // slices clamp, as in Python
    /// ```
    #[track_caller]
    fn try_i(&self, indices: impl Into<Indices>) -> Result<Tensor>;
    /// This tensor with `value` where the bool `mask` (broadcast to this shape) is true
    /// (PyTorch's `masked_fill`); the gradient flows to the elements kept.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let scores = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// let causal = Tensor::from_vec(vec![false, true], &[2]); // broadcast over rows
    /// let masked = scores.masked_fill(&causal, f64::NEG_INFINITY);
    /// assert_eq!(masked.to_vec::<f32>(), vec![1.0, f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY]);
    /// ```
    #[track_caller]
    fn masked_fill(&self, mask: &Tensor, value: f64) -> Tensor {
        or_panic(self.try_masked_fill(mask, value))
    }

    /// [`IndexOps::masked_fill`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2]);
    /// assert!(x.try_masked_fill(&Tensor::ones(&[2]), 1.0).is_err()); // a float mask
    /// assert!(x.try_masked_fill(&Tensor::from_vec(vec![true; 4], &[2, 2]), 1.0).is_err()); // grows x
    /// ```
    #[track_caller]
    fn try_masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor>;

    /// The elements where the bool `mask` is true, as a 1-D tensor (PyTorch's
    /// `masked_select`; `self` and `mask` broadcast together). Differentiable.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, -4.0], &[2, 2]);
    /// let positive = x.gt(&Tensor::zeros(&[1]));
    /// assert_eq!(x.masked_select(&positive).to_vec::<f32>(), vec![1.0, 3.0]);
    /// ```
    #[track_caller]
    fn masked_select(&self, mask: &Tensor) -> Tensor {
        or_panic(self.try_masked_select(mask))
    }

    /// [`IndexOps::masked_select`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_masked_select(&Tensor::from_vec(vec![true; 3], &[3])).is_err());
    /// ```
    #[track_caller]
    fn try_masked_select(&self, mask: &Tensor) -> Result<Tensor>;

    /// The lower triangle of the last two dimensions: elements with `column - row <=
    /// diagonal` kept, the rest 0 (PyTorch's `tril`; `diagonal` 0 is the main diagonal,
    /// negative below it). The gradient flows to the elements kept.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[3, 3]);
    /// assert_eq!(x.tril(0).to_vec::<f32>(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    /// assert_eq!(x.tril(-1).sum().item(), 3.0);
    /// ```
    #[track_caller]
    fn tril(&self, diagonal: i64) -> Tensor {
        or_panic(self.try_tril(diagonal))
    }

    /// [`IndexOps::tril`], returning an error instead of panicking (fewer than two
    /// dimensions).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_tril(0).is_err());
    /// ```
    #[track_caller]
    fn try_tril(&self, diagonal: i64) -> Result<Tensor>;

    /// The upper triangle of the last two dimensions: elements with `column - row >=
    /// diagonal` kept, the rest 0 (PyTorch's `triu`). A causal attention mask is
    /// `Tensor::ones(&[t, t]).triu(1)` (1 above the diagonal).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert_eq!(x.triu(1).to_vec::<f32>(), vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    fn triu(&self, diagonal: i64) -> Tensor {
        or_panic(self.try_triu(diagonal))
    }

    /// [`IndexOps::triu`], returning an error instead of panicking (fewer than two
    /// dimensions).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[]).try_triu(0).is_err());
    /// ```
    #[track_caller]
    fn try_triu(&self, diagonal: i64) -> Result<Tensor>;

    /// The diagonal of dimensions `dim1` and `dim2`, `offset` above (positive) or below
    /// the main one, as a last dimension (PyTorch's `diagonal(offset, dim1, dim2)`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 12.0, 1.0).reshape(&[3, 4]);
    /// assert_eq!(x.diagonal(0, 0, 1).to_vec::<f32>(), vec![0.0, 5.0, 10.0]);
    /// assert_eq!(x.diagonal(2, 0, 1).to_vec::<f32>(), vec![2.0, 7.0]);
    /// assert_eq!(x.diagonal(-1, 0, 1).to_vec::<f32>(), vec![4.0, 9.0]);
    /// ```
    #[track_caller]
    fn diagonal(&self, offset: i64, dim1: isize, dim2: isize) -> Tensor {
        or_panic(self.try_diagonal(offset, dim1, dim2))
    }

    /// [`IndexOps::diagonal`], returning an error for dimensions out of range or equal.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3, 3]).try_diagonal(0, 1, -1).is_err()); // the same dimension
    /// ```
    #[track_caller]
    fn try_diagonal(&self, offset: i64, dim1: isize, dim2: isize) -> Result<Tensor>;

    /// The sum of a matrix's main diagonal, a 0-d tensor (PyTorch's `trace`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 9.0, 1.0).reshape(&[3, 3]);
    /// assert_eq!(x.trace().item(), 12.0);
    /// ```
    #[track_caller]
    fn trace(&self) -> Tensor {
        or_panic(self.try_trace())
    }

    /// [`IndexOps::trace`], returning an error for a tensor that is not a matrix.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 2, 2]).try_trace().is_err());
    /// ```
    #[track_caller]
    fn try_trace(&self) -> Result<Tensor>;

    /// The `n`-th forward difference along `dim`: `x[i + 1] - x[i]`, `n` times (PyTorch's
    /// `diff(n, dim)`, without `prepend`/`append`: concatenate them first with `cat`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 4.0, 9.0, 16.0], &[4]);
    /// assert_eq!(x.diff(1, -1).to_vec::<f32>(), vec![3.0, 5.0, 7.0]);
    /// assert_eq!(x.diff(2, 0).to_vec::<f32>(), vec![2.0, 2.0]);
    /// ```
    #[track_caller]
    fn diff(&self, n: usize, dim: isize) -> Tensor {
        or_panic(self.try_diff(n, dim))
    }

    /// [`IndexOps::diff`], returning an error for a dimension out of range or a 0-d tensor.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_diff(1, 1).is_err());
    /// ```
    #[track_caller]
    fn try_diff(&self, n: usize, dim: isize) -> Result<Tensor>;
}

/// The diagonal of `dim1` and `dim2`: both moved last and merged, then every `(m + 1)`-th
/// element from the diagonal's start picked with `index_select` (recorded, so it
/// differentiates to any order).
#[track_caller]
fn diagonal(x: &Tensor, offset: i64, dim1: isize, dim2: isize) -> Result<Tensor> {
    let op = "diagonal";
    let location = Location::caller();
    let (d1, d2) = (resolve(op, x, dim1, location)?, resolve(op, x, dim2, location)?);
    if d1 == d2 {
        return Err(invalid_argument(
            op,
            format!("dim1 and dim2 are both dimension {d1}"),
            location,
        ));
    }
    let shape = x.shape();
    let (n, m) = (shape[d1] as i64, shape[d2] as i64);
    let (start, len) = if offset >= 0 {
        (offset, n.min(m - offset).max(0))
    } else {
        (-offset * m, (n + offset).min(m).max(0))
    };
    let rest: Vec<usize> = (0..x.dim()).filter(|&d| d != d1 && d != d2).collect();
    let order: Vec<isize> = rest.iter().chain(&[d1, d2]).map(|&d| d as isize).collect();
    let mut merged: Vec<usize> = rest.iter().map(|&d| shape[d]).collect();
    merged.push((n * m) as usize);
    let flat = crate::shape::reshape_to(&crate::shape::permute(x, &order)?, &merged);
    let picks: Vec<i64> = (0..len).map(|i| start + i * (m + 1)).collect();
    index_select(&flat, -1, &Tensor::from_vec(picks, &[len as usize]))
}

/// `x[1:] - x[:-1]` along `dim`, `n` times.
#[track_caller]
fn diff(x: &Tensor, n: usize, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(Error::Shape {
            op: "diff",
            message: "a 0-d tensor has no dimension to take differences along".into(),
            location,
        });
    }
    let d = resolve("diff", x, dim, location)?;
    let mut y = x.clone();
    for _ in 0..n {
        let len = y.shape()[d];
        if len == 0 {
            break;
        }
        let later = crate::shape::narrow(&y, d as isize, 1, len - 1)?;
        let earlier = crate::shape::narrow(&y, d as isize, 0, len - 1)?;
        y = later.try_sub(&earlier)?;
    }
    Ok(y)
}

/// `x` with the elements outside a triangle of its last two dimensions zeroed: those with
/// `column - row > diagonal` (`lower`) or `< diagonal`.
#[track_caller]
fn triangle(x: &Tensor, diagonal: i64, lower: bool) -> Result<Tensor> {
    let op = if lower { "tril" } else { "triu" };
    let location = Location::caller();
    let rank = x.dim();
    if rank < 2 {
        return Err(Error::Shape {
            op,
            message: format!("needs at least 2 dimensions, got shape {:?}", x.shape()),
            location,
        });
    }
    Ok(keep_triangle(x, diagonal, lower, location))
}

/// `x` with the elements outside the kept triangle of its last two dimensions zeroed, as
/// one recorded op whose gradient (and tangent) is the same triangle of the incoming one.
fn keep_triangle(
    x: &Tensor,
    diagonal: i64,
    lower: bool,
    location: &'static Location<'static>,
) -> Tensor {
    use tapegrad_kernels::triangle::{Triangle, triangle};
    let (op, which) = if lower { ("tril", Triangle::Lower) } else { ("triu", Triangle::Upper) };
    let rank = x.dim();
    let matrix = (x.shape()[rank - 2], x.shape()[rank - 1]);
    let storage = tapegrad_tape::map_storage!(&x.contiguous_storage(), v => {
        triangle(v, matrix, diagonal, which)
    });
    let out = Tensor::from_storage(storage, Layout::contiguous(x.shape()));
    record_with_tangent(
        op,
        location,
        &[x],
        out,
        || {
            Backward::new(move |ctx| {
                smallvec![Some(keep_triangle(ctx.grad(), diagonal, lower, location))]
            })
        },
        |ctx| ctx.map(|v| keep_triangle(v, diagonal, lower, location)),
    )
}

impl IndexOps for Tensor {
    #[track_caller]
    fn try_tril(&self, diagonal: i64) -> Result<Tensor> {
        triangle(self, diagonal, true)
    }
    #[track_caller]
    fn try_diagonal(&self, offset: i64, dim1: isize, dim2: isize) -> Result<Tensor> {
        diagonal(self, offset, dim1, dim2)
    }
    #[track_caller]
    fn try_trace(&self) -> Result<Tensor> {
        if self.dim() != 2 {
            return Err(Error::Shape {
                op: "trace",
                message: format!("expects a matrix, got shape {:?}", self.shape()),
                location: Location::caller(),
            });
        }
        Ok(crate::reduce::sum(&diagonal(self, 0, 0, 1)?))
    }
    #[track_caller]
    fn try_diff(&self, n: usize, dim: isize) -> Result<Tensor> {
        diff(self, n, dim)
    }
    #[track_caller]
    fn try_triu(&self, diagonal: i64) -> Result<Tensor> {
        triangle(self, diagonal, false)
    }
    #[track_caller]
    fn try_masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        masked_fill(self, mask, value)
    }
    #[track_caller]
    fn try_masked_select(&self, mask: &Tensor) -> Result<Tensor> {
        masked_select(self, mask)
    }
    #[track_caller]
    fn try_select(&self, dim: isize, index: isize) -> Result<Tensor> {
        slicing::select(self, dim, index)
    }
    #[track_caller]
    fn try_i(&self, indices: impl Into<Indices>) -> Result<Tensor> {
        slicing::index(self, indices.into())
    }
    #[track_caller]
    fn try_index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        index_select(self, dim, index)
    }
    #[track_caller]
    fn try_index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor> {
        index_add(self, dim, index, source)
    }
    #[track_caller]
    fn try_gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        gather(self, dim, index)
    }
    #[track_caller]
    fn try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        scatter_add(self, dim, index, src)
    }
}
