//! Shape operations: views and copies that rearrange elements without arithmetic.

use std::panic::Location;

use tapegrad_tape::layout::{checked_numel, checked_size, numel, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Tensor, record};

use crate::dims::resolve;

/// `x` with a new shape of the same element count (a view when `x` is contiguous).
#[track_caller]
pub(crate) fn reshape_to(x: &Tensor, shape: &[usize]) -> Tensor {
    if x.shape() == shape {
        return x.clone();
    }
    let base = x.contiguous();
    let layout = base.layout().reshaped(shape).expect("reshape_to: element counts agree");
    let value = Tensor::from_storage(base.storage(), layout);
    let from = x.shape().to_vec();
    record("reshape", Location::caller(), &[&base], value, || {
        Backward::new(move |ctx| smallvec![Some(reshape_to(ctx.grad(), &from))])
    })
}

#[track_caller]
pub(crate) fn reshape(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    let bad = |message: String| Error::Shape { op: "reshape", message, location };
    let inferred: Vec<usize> = shape.iter().enumerate().filter(|&(_, &d)| d == -1).map(|(i, _)| i).collect();
    if inferred.len() > 1 || shape.iter().any(|&d| d < -1) {
        return Err(bad(format!("invalid shape {shape:?}: at most one -1 and no other negative sizes")));
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let sizes: Vec<usize> = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).collect();
    let known = checked_numel(&sizes).ok_or_else(|| {
        bad(format!(
            "shape {shape:?} has too many elements for input of shape {:?} (the product of its sizes overflows)",
            x.shape()
        ))
    })?;
    if let Some(&i) = inferred.first() {
        if known == 0 || !x.numel().is_multiple_of(known) {
            return Err(bad(format!("shape {shape:?} is invalid for input of shape {:?}", x.shape())));
        }
        out[i] = x.numel() / known;
    }
    if numel(&out) != x.numel() {
        return Err(bad(format!(
            "shape {shape:?} is invalid for input of shape {:?} ({} elements)",
            x.shape(),
            x.numel()
        )));
    }
    Ok(reshape_to(x, &out))
}

#[track_caller]
pub(crate) fn transpose(x: &Tensor, a: isize, b: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Ok(x.clone());
    }
    let a = resolve("transpose", x, a, location)?;
    let b = resolve("transpose", x, b, location)?;
    if a == b {
        return Ok(x.clone());
    }
    let value = Tensor::from_storage(x.storage(), x.layout().transpose(a, b));
    Ok(record("transpose", location, &[x], value, || {
        Backward::new(move |ctx| {
            let g = transpose(ctx.grad(), a as isize, b as isize).expect("dims checked in forward");
            smallvec![Some(g)]
        })
    }))
}

fn index_error(op: &'static str, message: String, location: &'static Location<'static>) -> Error {
    Error::InvalidArgument { op, message, location }
}

/// The dimensions reordered so that result dimension `i` is input dimension `dims[i]`.
#[track_caller]
pub(crate) fn permute(x: &Tensor, dims: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    let not_a_permutation = || Error::Shape {
        op: "permute",
        message: format!("{dims:?} is not a permutation of the {} dimensions of shape {:?}", x.dim(), x.shape()),
        location,
    };
    if dims.len() != x.dim() {
        return Err(not_a_permutation());
    }
    let resolved: Vec<usize> = dims.iter().map(|&d| resolve("permute", x, d, location)).collect::<Result<_>>()?;
    let mut seen = vec![false; x.dim()];
    for &d in &resolved {
        seen[d] = true;
    }
    if seen.iter().any(|s| !s) {
        return Err(not_a_permutation());
    }
    let value = Tensor::from_storage(x.storage(), x.layout().permute(&resolved));
    let mut inverse = vec![0isize; resolved.len()];
    for (i, &d) in resolved.iter().enumerate() {
        inverse[d] = i as isize;
    }
    Ok(record("permute", location, &[x], value, || {
        Backward::new(move |ctx| smallvec![Some(permute(ctx.grad(), &inverse).expect("inverse permutation"))])
    }))
}

#[track_caller]
pub(crate) fn unsqueeze(x: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let d = crate::dims::resolve_rank("unsqueeze", x.shape(), dim, x.dim() + 1, location)?;
    let mut shape = x.shape().to_vec();
    shape.insert(d, 1);
    Ok(reshape_to(x, &shape))
}

#[track_caller]
pub(crate) fn squeeze(x: &Tensor, dim: Option<isize>) -> Result<Tensor> {
    let location = Location::caller();
    let shape: Vec<usize> = match dim {
        None => x.shape().iter().copied().filter(|&n| n != 1).collect(),
        Some(dim) => {
            if x.dim() == 0 {
                return Ok(x.clone());
            }
            let d = resolve("squeeze", x, dim, location)?;
            let mut s = x.shape().to_vec();
            if s[d] == 1 {
                s.remove(d);
            }
            s
        }
    };
    Ok(reshape_to(x, &shape))
}

#[track_caller]
pub(crate) fn flatten(x: &Tensor, start: isize, end: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Ok(reshape_to(x, &[1]));
    }
    let s = resolve("flatten", x, start, location)?;
    let e = resolve("flatten", x, end, location)?;
    if s > e {
        return Err(index_error("flatten", format!("start dim {start} comes after end dim {end}"), location));
    }
    let shape = x.shape();
    let merged: usize = shape[s..=e].iter().product();
    let out: Vec<usize> = shape[..s].iter().copied().chain([merged]).chain(shape[e + 1..].iter().copied()).collect();
    Ok(reshape_to(x, &out))
}

/// `len` elements of dimension `dim` from `start`: a view.
#[track_caller]
pub(crate) fn narrow(x: &Tensor, dim: isize, start: usize, len: usize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(index_error("narrow", "cannot be applied to a zero-dimensional tensor".into(), location));
    }
    let d = resolve("narrow", x, dim, location)?;
    let n = x.shape()[d];
    if start.checked_add(len).is_none_or(|end| end > n) {
        return Err(index_error(
            "narrow",
            format!("{len} elements from {start} are outside dimension {d} of size {n} (shape {:?})", x.shape()),
            location,
        ));
    }
    let value = Tensor::from_storage(x.storage(), x.layout().narrow(d, start, len));
    Ok(record("narrow", location, &[x], value, || {
        Backward::new(move |ctx| smallvec![Some(pad_dim(ctx.grad(), d, start, n - start - len, 0.0))])
    }))
}

/// `x` with `before` and `after` elements of `value` added around dimension `d`.
#[track_caller]
pub(crate) fn pad_dim(x: &Tensor, d: usize, before: usize, after: usize, value: f64) -> Tensor {
    if before == 0 && after == 0 {
        return x.clone();
    }
    let location = Location::caller();
    let mut shape = x.shape().to_vec();
    let n = shape[d];
    shape[d] = before + n + after;
    let out = Tensor::full_dtype(&shape, value, x.dtype());
    let out = copy_into(&out, x, d, before);
    record("pad", location, &[x], out, || {
        Backward::new(move |ctx| smallvec![Some(narrow(ctx.grad(), d as isize, before, n).expect("in range"))])
    })
}

/// A copy of `dst` with `src` written at offset `at` of dimension `d` (nothing recorded).
fn copy_into(dst: &Tensor, src: &Tensor, d: usize, at: usize) -> Tensor {
    if dst.numel() == 0 || src.numel() == 0 {
        // Nothing to copy; the block sizes below could overflow for huge empty shapes.
        return dst.clone();
    }
    let shape = dst.shape().to_vec();
    let inner: usize = shape[d + 1..].iter().product();
    let outer: usize = shape[..d].iter().product();
    let (n_dst, n_src) = (shape[d], src.shape()[d]);
    fn copy<T: tapegrad_tape::StorageElement>(
        dst: &mut [T],
        src: &[T],
        outer: usize,
        block_dst: usize,
        block_src: usize,
        at: usize,
    ) {
        for o in 0..outer {
            dst[o * block_dst + at..o * block_dst + at + block_src]
                .copy_from_slice(&src[o * block_src..(o + 1) * block_src]);
        }
    }
    let mut storage = dst.contiguous_storage();
    let src_storage = src.contiguous_storage();
    let (bd, bs, off) = (n_dst * inner, n_src * inner, at * inner);
    match (&mut storage, &src_storage) {
        (tapegrad_tape::Storage::F32(_), tapegrad_tape::Storage::F32(s)) => {
            copy(storage.make_mut::<f32>().expect("f32"), s, outer, bd, bs, off)
        }
        (tapegrad_tape::Storage::F64(_), tapegrad_tape::Storage::F64(s)) => {
            copy(storage.make_mut::<f64>().expect("f64"), s, outer, bd, bs, off)
        }
        (tapegrad_tape::Storage::I64(_), tapegrad_tape::Storage::I64(s)) => {
            copy(storage.make_mut::<i64>().expect("i64"), s, outer, bd, bs, off)
        }
        _ => unreachable!("dtypes checked by the caller"),
    }
    Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape))
}

/// PyTorch's `F.pad` with a constant: `pads` pairs `(before, after)` starting from the last
/// dimension.
#[track_caller]
pub(crate) fn pad(x: &Tensor, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
    let location = Location::caller();
    if pads.len() > x.dim() {
        return Err(index_error(
            "pad",
            format!("{} padding pairs for a tensor of {} dimensions", pads.len(), x.dim()),
            location,
        ));
    }
    let mut shape = x.shape().to_vec();
    for (i, &(before, after)) in pads.iter().enumerate() {
        let n = &mut shape[x.dim() - 1 - i];
        let what = format!("size {n} padded by {before} and {after}");
        *n = checked_size("pad", &what, n.checked_add(before).and_then(|m| m.checked_add(after)), location)?;
    }
    try_numel("pad", &shape, location)?;
    let mut out = x.clone();
    for (i, &(before, after)) in pads.iter().enumerate() {
        out = pad_dim(&out, x.dim() - 1 - i, before, after, value);
    }
    Ok(out)
}

/// Tensors joined along `dim`; all shapes must agree elsewhere.
#[track_caller]
pub(crate) fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let Some(first) = tensors.first() else {
        return Err(index_error("cat", "needs at least one tensor".into(), location));
    };
    if first.dim() == 0 {
        return Err(index_error("cat", "zero-dimensional tensors cannot be concatenated".into(), location));
    }
    let d = resolve("cat", first, dim, location)?;
    let mut shape = first.shape().to_vec();
    shape[d] = 0;
    for (i, t) in tensors.iter().enumerate() {
        let compatible = t.dim() == first.dim()
            && t.shape().iter().zip(first.shape()).enumerate().all(|(k, (a, b))| k == d || a == b);
        if !compatible {
            return Err(Error::Shape {
                op: "cat",
                message: format!(
                    "tensor {i} has shape {:?}, which does not match {:?} outside dimension {d}",
                    t.shape(),
                    first.shape()
                ),
                location,
            });
        }
        if t.dtype() != first.dtype() {
            return Err(Error::DType { op: "cat", lhs: first.dtype(), rhs: t.dtype(), location });
        }
        let joined = shape[d].checked_add(t.shape()[d]);
        shape[d] = checked_size("cat", &format!("dimension {d} of the joined tensors"), joined, location)?;
    }
    try_numel("cat", &shape, location)?;
    let mut out = Tensor::zeros_dtype(&shape, first.dtype());
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut at = 0;
    for t in tensors {
        out = copy_into(&out, &t.detach(), d, at);
        sizes.push((at, t.shape()[d]));
        at += t.shape()[d];
    }
    Ok(record("cat", location, tensors, out, || {
        Backward::new(move |ctx| {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &(start, len))| {
                    ctx.needs_input_grad(i).then(|| narrow(ctx.grad(), d as isize, start, len).expect("in range"))
                })
                .collect()
        })
    }))
}

#[track_caller]
pub(crate) fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let Some(first) = tensors.first() else {
        return Err(index_error("stack", "needs at least one tensor".into(), location));
    };
    if let Some(i) = tensors.iter().position(|t| t.shape() != first.shape()) {
        return Err(Error::Shape {
            op: "stack",
            message: format!("tensor {i} has shape {:?}, tensor 0 has {:?}", tensors[i].shape(), first.shape()),
            location,
        });
    }
    let mut expanded = Vec::with_capacity(tensors.len());
    for t in tensors {
        // A loop, not a closure: the caller's location reaches unsqueeze's errors.
        expanded.push(unsqueeze(t, dim)?);
    }
    let refs: Vec<&Tensor> = expanded.iter().collect();
    cat(&refs, dim)
}

#[track_caller]
pub(crate) fn split(x: &Tensor, size: usize, dim: isize) -> Result<Vec<Tensor>> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(index_error("split", "a zero-dimensional tensor cannot be split".into(), location));
    }
    let d = resolve("split", x, dim, location)?;
    if size == 0 {
        return Err(index_error("split", "split size must be positive".into(), location));
    }
    let n = x.shape()[d];
    (0..n.div_ceil(size)).map(|i| narrow(x, d as isize, i * size, size.min(n - i * size))).collect()
}

#[track_caller]
pub(crate) fn chunk(x: &Tensor, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(index_error("chunk", "a zero-dimensional tensor cannot be chunked".into(), location));
    }
    let d = resolve("chunk", x, dim, location)?;
    if chunks == 0 {
        return Err(index_error("chunk", "number of chunks must be positive".into(), location));
    }
    split(x, x.shape()[d].div_ceil(chunks).max(1), d as isize)
}

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
        return Err(index_error(
            op,
            format!("indices must be an int64 tensor, got {}; convert with to_dtype(DType::I64)", index.dtype()),
            location,
        ));
    }
    let storage = index.contiguous_storage();
    let values = storage.as_slice::<i64>().expect("an int64 tensor holds i64");
    values.iter().enumerate().map(|(k, &value)| check_index(op, value, k, index.shape(), bound, location)).collect()
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
                _ => format!("valid indices are 0..={}, and negative ones do not count from the end", size - 1),
            };
            Err(index_error(
                op,
                format!(
                    "index {value} at position {position:?} is out of range for a dimension of size {size} ({valid})"
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
        return Err(index_error("index_select", "needs a tensor of at least one dimension".into(), location));
    }
    let d = resolve("index_select", x, dim, location)?;
    if index.dim() > 1 {
        return Err(index_error("index_select", format!("index must be 1-D, got shape {:?}", index.shape()), location));
    }
    let idx = index_values("index_select", index, x.shape()[d], location)?;
    let mut shape = x.shape().to_vec();
    shape[d] = idx.len();
    let inner: usize = shape[d + 1..].iter().product();
    let outer: usize = shape[..d].iter().product();
    let n = x.shape()[d];
    let src = x.contiguous_storage();
    let storage = tapegrad_tape::map_storage!(&src, v => {
        let mut out = Vec::with_capacity(outer * idx.len() * inner);
        for o in 0..outer {
            for &i in &idx {
                out.extend_from_slice(&v[(o * n + i) * inner..(o * n + i + 1) * inner]);
            }
        }
        out
    });
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape));
    let index = index.clone();
    let in_shape = x.shape().to_vec();
    Ok(record("index_select", location, &[x], value, || {
        Backward::new(move |ctx| {
            let zeros = Tensor::zeros_dtype(&in_shape, ctx.grad().dtype());
            smallvec![Some(index_add(&zeros, d as isize, &index, ctx.grad()).expect("shapes agree"))]
        })
    }))
}

/// `x` with `source`'s rows added at the rows `index` names along `dim` (repeats add up).
#[track_caller]
pub(crate) fn index_add(x: &Tensor, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(index_error("index_add", "needs a tensor of at least one dimension".into(), location));
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
    let inner: usize = shape[d + 1..].iter().product();
    let outer: usize = shape[..d].iter().product();
    let n = shape[d];
    let mut storage = x.contiguous_storage();
    let src = source.contiguous_storage();
    fn add<T: tapegrad_tape::Element>(dst: &mut [T], src: &[T], idx: &[usize], outer: usize, n: usize, inner: usize) {
        for o in 0..outer {
            for (k, &i) in idx.iter().enumerate() {
                let s = &src[(o * idx.len() + k) * inner..(o * idx.len() + k + 1) * inner];
                for (a, &b) in dst[(o * n + i) * inner..(o * n + i + 1) * inner].iter_mut().zip(s) {
                    *a += b;
                }
            }
        }
    }
    match &src {
        tapegrad_tape::Storage::F32(s) => add(storage.make_mut::<f32>().expect("f32"), s, &idx, outer, n, inner),
        tapegrad_tape::Storage::F64(s) => add(storage.make_mut::<f64>().expect("f64"), s, &idx, outer, n, inner),
        tapegrad_tape::Storage::I64(_) => {
            return Err(index_error("index_add", "needs float tensors".into(), location));
        }
    }
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape));
    let index = index.clone();
    Ok(record("index_add", location, &[x, source], value, || {
        Backward::new(move |ctx| {
            let g = ctx.grad();
            smallvec![
                ctx.needs_input_grad(0).then(|| g.clone()),
                ctx.needs_input_grad(1).then(|| index_select(g, d as isize, &index).expect("valid indices")),
            ]
        })
    }))
}

/// Storage offsets into a contiguous tensor of `shape` for every element of `index` (same
/// rank), with coordinate `d` replaced by the index value.
fn gather_offsets(
    op: &'static str,
    shape: &[usize],
    index: &Tensor,
    d: usize,
    location: &'static Location<'static>,
) -> Result<Vec<usize>> {
    if index.dim() != shape.len() || index.shape().iter().zip(shape).enumerate().any(|(k, (&i, &s))| k != d && i > s) {
        return Err(Error::Shape {
            op,
            message: format!(
                "index of shape {:?} does not fit a tensor of shape {shape:?} (same rank, no larger outside dimension {d})",
                index.shape()
            ),
            location,
        });
    }
    // A zero-dimensional tensor indexes as one of size 1, as in PyTorch.
    let values = index_values(op, index, shape.get(d).copied().unwrap_or(1), location)?;
    let strides = tapegrad_tape::layout::contiguous_strides(shape);
    let ishape = index.shape().to_vec();
    let mut coord = vec![0usize; ishape.len()];
    let mut offsets = Vec::with_capacity(values.len());
    for &v in &values {
        let off: usize = coord.iter().enumerate().map(|(k, &c)| if k == d { v } else { c } * strides[k]).sum();
        offsets.push(off);
        for k in (0..coord.len()).rev() {
            coord[k] += 1;
            if coord[k] < ishape[k] {
                break;
            }
            coord[k] = 0;
        }
    }
    Ok(offsets)
}

/// `out[i][j] = x[i][index[i][j]]` along `dim` (PyTorch's `gather`).
#[track_caller]
pub(crate) fn gather(x: &Tensor, dim: isize, index: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("gather", x, dim, location)?;
    let offsets = gather_offsets("gather", x.shape(), index, d, location)?;
    let src = x.contiguous_storage();
    let storage = tapegrad_tape::map_storage!(&src, v => offsets.iter().map(|&o| v[o]).collect::<Vec<_>>());
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(index.shape()));
    let index = index.clone();
    let in_shape = x.shape().to_vec();
    Ok(record("gather", location, &[x], value, || {
        Backward::new(move |ctx| {
            let zeros = Tensor::zeros_dtype(&in_shape, ctx.grad().dtype());
            smallvec![Some(scatter_add(&zeros, d as isize, &index, ctx.grad()).expect("shapes agree"))]
        })
    }))
}

/// `x` with `src` added at the positions `index` names along `dim` (PyTorch's
/// `scatter_add`): `out[i][index[i][j]] += src[i][j]`.
#[track_caller]
pub(crate) fn scatter_add(x: &Tensor, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("scatter_add", x, dim, location)?;
    let offsets = gather_offsets("scatter_add", x.shape(), index, d, location)?;
    if src.dim() != index.dim() || src.shape().iter().zip(index.shape()).any(|(s, i)| s < i) {
        return Err(Error::Shape {
            op: "scatter_add",
            message: format!("src of shape {:?} is smaller than index of shape {:?}", src.shape(), index.shape()),
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
    fn add<T: tapegrad_tape::Element>(dst: &mut [T], src: &[T], offsets: &[usize]) {
        for (&o, &v) in offsets.iter().zip(src) {
            dst[o] += v;
        }
    }
    match &values {
        tapegrad_tape::Storage::F32(s) => add(storage.make_mut::<f32>().expect("f32"), s, &offsets),
        tapegrad_tape::Storage::F64(s) => add(storage.make_mut::<f64>().expect("f64"), s, &offsets),
        tapegrad_tape::Storage::I64(_) => {
            return Err(index_error("scatter_add", "needs float tensors".into(), location));
        }
    }
    let value = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(x.shape()));
    let index = index.clone();
    let src_shape = src.shape().to_vec();
    Ok(record("scatter_add", location, &[x, src], value, || {
        Backward::new(move |ctx| {
            let g = ctx.grad();
            smallvec![
                ctx.needs_input_grad(0).then(|| g.clone()),
                ctx.needs_input_grad(1).then(|| {
                    let picked = gather(g, d as isize, &index).expect("valid indices");
                    let pads: Vec<(usize, usize)> =
                        src_shape.iter().zip(index.shape()).rev().map(|(&s, &i)| (0, s - i)).collect();
                    pad(&picked, &pads, 0.0).expect("rank agrees")
                }),
            ]
        })
    }))
}

/// `x` tiled `reps[i]` times along each dimension (PyTorch's `repeat`), built from
/// differentiable views so its gradient sums the tiles.
#[track_caller]
pub(crate) fn repeat(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    let location = Location::caller();
    if reps.len() < x.dim() {
        return Err(index_error(
            "repeat",
            format!("{} repeat counts for a tensor of {} dimensions", reps.len(), x.dim()),
            location,
        ));
    }
    let lead = reps.len() - x.dim();
    let shape: Vec<usize> = std::iter::repeat_n(1, lead).chain(x.shape().iter().copied()).collect();
    let interleaved: Vec<usize> = shape.iter().flat_map(|&s| [1, s]).collect();
    let target: Vec<usize> = shape.iter().zip(reps).flat_map(|(&s, &r)| [r, s]).collect();
    let out = shape
        .iter()
        .zip(reps)
        .map(|(&s, &r)| checked_size("repeat", &format!("size {s} repeated {r} times"), s.checked_mul(r), location))
        .collect::<Result<Vec<usize>>>()?;
    try_numel("repeat", &out, location)?;
    let tiled = reshape_to(x, &interleaved).broadcast_to(&target);
    Ok(reshape_to(&tiled, &out))
}

/// `x[start:end:step]` along `dim`: a view for step 1, a gather otherwise.
#[track_caller]
pub(crate) fn slice(x: &Tensor, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(index_error("slice", "cannot be applied to a zero-dimensional tensor".into(), location));
    }
    let d = resolve("slice", x, dim, location)?;
    if step == 0 {
        return Err(index_error("slice", "step must be positive".into(), location));
    }
    let n = x.shape()[d];
    let end = end.min(n);
    let start = start.min(end);
    if step == 1 {
        return narrow(x, d as isize, start, end - start);
    }
    let picks: Vec<i64> = (start..end).step_by(step).map(|i| i as i64).collect();
    let len = picks.len();
    index_select(x, d as isize, &Tensor::from_vec(picks, &[len]))
}
