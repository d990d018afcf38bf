//! Reductions: sums and means over all elements or along a dimension.
//!
//! The methods are at the end of the file: [`ReduceOps`].

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Error, Result, Storage, Tensor, ensure_float, kernels, map_float_storage, or_panic,
    record_with_tangent,
};

use crate::dims::{blocks, resolve};
use crate::tangent::by_groups;

mod cumprod;
mod cumsum;
mod prod;

/// Sum of `x` down to `target` (a shape with size-1 dims where `x` is reduced), as a value.
fn sum_value(x: &Tensor, target: &[usize]) -> Tensor {
    let storage = map_float_storage!(&x.storage(), v => kernels::sum_to(v, x.layout(), target));
    Tensor::from_storage(storage, Layout::contiguous(target))
}

#[track_caller]
pub(crate) fn sum(x: &Tensor) -> Tensor {
    or_panic(ensure_float("sum", x, Location::caller()));
    record_with_tangent(
        "sum",
        Location::caller(),
        &[x],
        sum_value(x, &[]),
        || {
            let shape = x.shape().to_vec();
            Backward::new(move |ctx| smallvec![Some(ctx.grad().broadcast_to(&shape))])
        },
        |ctx| ctx.map(sum),
    )
}

#[track_caller]
pub(crate) fn mean(x: &Tensor) -> Tensor {
    or_panic(ensure_float("mean", x, Location::caller()));
    let n = x.numel() as f64;
    let value = sum_value(x, &[]).div_scalar(n);
    record_with_tangent(
        "mean",
        Location::caller(),
        &[x],
        value,
        || {
            let shape = x.shape().to_vec();
            Backward::new(move |ctx| smallvec![Some(ctx.grad().div_scalar(n).broadcast_to(&shape))])
        },
        |ctx| ctx.map(mean),
    )
}

#[track_caller]
pub(crate) fn sum_dim(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce_dims("sum_dim", x, &[dim], keepdim, Scale::One, Location::caller())
}

#[track_caller]
pub(crate) fn mean_dim(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce_dims("mean_dim", x, &[dim], keepdim, Scale::Mean, Location::caller())
}

#[track_caller]
pub(crate) fn sum_dims(x: &Tensor, dims: &[isize], keepdim: bool) -> Result<Tensor> {
    reduce_dims("sum_dims", x, dims, keepdim, Scale::One, Location::caller())
}

#[track_caller]
pub(crate) fn mean_dims(x: &Tensor, dims: &[isize], keepdim: bool) -> Result<Tensor> {
    reduce_dims("mean_dims", x, dims, keepdim, Scale::Mean, Location::caller())
}

/// What a sum along dimensions is multiplied by.
#[derive(Clone, Copy)]
enum Scale {
    One,
    /// One over the number of elements summed: the mean.
    Mean,
}

/// The dimensions `dims` of `x` resolved, each once; at least one.
fn resolve_dims(
    op: &'static str,
    x: &Tensor,
    dims: &[isize],
    location: &'static Location<'static>,
) -> Result<Vec<usize>> {
    if dims.is_empty() {
        return Err(Error::InvalidArgument {
            op,
            message: "no dimensions given (to reduce over all of them, call it without dims)"
                .into(),
            location,
        });
    }
    let mut resolved = Vec::with_capacity(dims.len());
    for &dim in dims {
        let d = resolve(op, x, dim, location)?;
        if resolved.contains(&d) {
            return Err(Error::InvalidArgument {
                op,
                message: format!("dimension {d} appears twice in {dims:?}"),
                location,
            });
        }
        resolved.push(d);
    }
    Ok(resolved)
}

/// Sum along `dims`, times `scale`, keeping or dropping the reduced dimensions.
fn reduce_dims(
    op: &'static str,
    x: &Tensor,
    dims: &[isize],
    keepdim: bool,
    scale: Scale,
    location: &'static Location<'static>,
) -> Result<Tensor> {
    ensure_float(op, x, location)?;
    let reduced = resolve_dims(op, x, dims, location)?;
    let in_shape = x.shape().to_vec();
    let count: usize = reduced.iter().map(|&d| in_shape.get(d).copied().unwrap_or(1)).product();
    let scale = match scale {
        Scale::One => 1.0,
        Scale::Mean => 1.0 / count as f64,
    };
    if in_shape.is_empty() {
        // A scalar has nothing to reduce over; PyTorch returns it unchanged.
        return Ok(x.mul_scalar(scale));
    }
    let mut kept = in_shape.clone();
    for &d in &reduced {
        kept[d] = 1;
    }
    let mut value = sum_value(x, &kept);
    if scale != 1.0 {
        value = value.mul_scalar(scale);
    }
    let dims = dims.to_vec();
    let out_shape: Vec<usize> = if keepdim {
        kept.clone()
    } else {
        let dropped = in_shape.iter().enumerate().filter(|(i, _)| !reduced.contains(i));
        dropped.map(|(_, &n)| n).collect()
    };
    let value = Tensor::from_storage(value.storage(), Layout::contiguous(&out_shape));
    Ok(record_with_tangent(
        op,
        location,
        &[x],
        value,
        || {
            let (kept, in_shape) = (kept.clone(), in_shape.clone());
            Backward::new(move |ctx| {
                let g = crate::shape::reshape_to(ctx.grad(), &kept);
                let g = if scale != 1.0 { g.mul_scalar(scale) } else { g };
                smallvec![Some(g.broadcast_to(&in_shape))]
            })
        },
        move |ctx| {
            ctx.map(|v| {
                let summed = reduce_dims(op, v, &dims, keepdim, Scale::One, location);
                let summed = summed.expect("checked");
                if scale != 1.0 { summed.mul_scalar(scale) } else { summed }
            })
        },
    ))
}

/// The elements of `x` with dimension `d` moved last, contiguous: one row per output
/// position, in the row-major order of the reduced shape. Returns the storage and the row
/// length.
pub(crate) fn rows_along(x: &Tensor, d: usize) -> (tapegrad_tape::Storage, usize) {
    let rank = x.dim();
    let order: Vec<usize> = (0..rank).filter(|&i| i != d).chain([d]).collect();
    let view = Tensor::from_storage(x.storage(), x.layout().permute(&order));
    (view.contiguous_storage(), x.shape()[d])
}

/// `x`'s shape with dimension `d` set to 1 (`keepdim`) or removed.
pub(crate) fn reduced_shape(shape: &[usize], d: usize, keepdim: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdim {
        out[d] = 1;
    } else {
        out.remove(d);
    }
    out
}

/// Position of the largest (`max`) or smallest element of a row; NaN wins, and among equal
/// values the first, as in PyTorch.
fn arg_extremum<T: tapegrad_tape::Element>(row: &[T], max: bool) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        let b = row[best];
        if b.is_nan() {
            break;
        }
        if v.is_nan() || (max && v > b) || (!max && v < b) {
            best = i;
        }
    }
    best
}

/// How a max/min reduction passes its gradient back.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// All of it to the element whose index is returned (`torch.max(x, dim)`), selected.
    Chosen,
    /// Split evenly among every element equal to the result, or among the NaNs when it is
    /// NaN (PyTorch's `evenly_distribute_backward`, for `torch.max(x)`), selected.
    Even,
    /// As `Even`, but multiplied by the weights rather than selected, so an infinite
    /// incoming gradient gives NaN at the others (PyTorch's rule for the infinity norm).
    EvenProduct,
}

/// The extremum of every row along `d` of a buffer laid out by [`rows_along`]: its value
/// (read from the row: a product with a one-hot mask would turn a losing infinity into
/// NaN), its index, and each element's weight in the gradient, written in the row-major
/// order of the tensor whose dimension `d` of size `n` has `inner` elements after it.
fn extrema<T: tapegrad_tape::Element>(
    rows: &[T],
    (n, inner): (usize, usize),
    max: bool,
    route: Route,
) -> (Vec<T>, Vec<i64>, Vec<f64>) {
    let mut weights = vec![0.0; rows.len()];
    let (mut values, mut indices) =
        (Vec::with_capacity(rows.len() / n), Vec::with_capacity(rows.len() / n));
    for (r, row) in rows.chunks_exact(n).enumerate() {
        let best = arg_extremum(row, max);
        let v = row[best];
        let at = |i: usize| ((r / inner) * n + i) * inner + r % inner;
        if route == Route::Chosen {
            weights[at(best)] = 1.0;
        } else {
            let tied = |e: T| if v.is_nan() { e.is_nan() } else { e == v };
            let share = 1.0 / row.iter().filter(|&&e| tied(e)).count() as f64;
            for (i, _) in row.iter().enumerate().filter(|&(_, &e)| tied(e)) {
                weights[at(i)] = share;
            }
        }
        values.push(v);
        indices.push(best as i64);
    }
    (values, indices, weights)
}

/// The max (or min) of `x` along `dim` (or over all elements, as a 0-d tensor), with the
/// int64 indices PyTorch returns (the first NaN, else the first extremum), recorded under
/// `op` with the gradient routed as `route` says.
fn reduce_extremum(
    op: &'static str,
    x: &Tensor,
    dim: Option<isize>,
    keepdim: bool,
    max: bool,
    route: Route,
    location: &'static Location<'static>,
) -> Result<(Tensor, Tensor)> {
    tapegrad_tape::ensure_float(op, x, location)?;
    let x0 = match dim {
        Some(_) if x.dim() > 0 => x.clone(),
        _ => crate::shape::reshape_to(x, &[x.numel()]),
    };
    let d = match dim {
        Some(dim) => resolve(op, &x0, dim, location)?,
        None => 0,
    };
    if x0.shape()[d] == 0 {
        return Err(tapegrad_tape::Error::Shape {
            op,
            message: format!("cannot reduce over an empty dimension {d} of shape {:?}", x0.shape()),
            location,
        });
    }
    let out_shape =
        if x.dim() == 0 || dim.is_none() { vec![] } else { reduced_shape(x0.shape(), d, keepdim) };
    let (rows, n) = rows_along(&x0.detach(), d);
    let (_, _, inner) = blocks(x0.shape(), d);
    let (values, indices, weights) = match &rows {
        tapegrad_tape::Storage::F32(v) => {
            let (a, i, w) = extrema(v, (n, inner), max, route);
            (tapegrad_tape::Storage::from_vec(a), i, w)
        }
        tapegrad_tape::Storage::F64(v) => {
            let (a, i, w) = extrema(v, (n, inner), max, route);
            (tapegrad_tape::Storage::from_vec(a), i, w)
        }
        tapegrad_tape::Storage::I64(_) | tapegrad_tape::Storage::Bool(_) => {
            unreachable!("float dtype checked")
        }
    };
    let values = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let in_shape = x.shape().to_vec();
    let kept = reduced_shape(x0.shape(), d, true);
    let group_sum = |t: &Tensor| match dim {
        Some(dim) if x.dim() > 0 => sum_dim(t, dim, keepdim).expect("checked"),
        _ => sum(t),
    };
    let values = record_with_tangent(
        op,
        location,
        &[x],
        values,
        || {
            let weights = Tensor::from_vec(weights.clone(), x0.shape()).to_dtype(x.dtype());
            let (kept, in_shape) = (kept.clone(), in_shape.clone());
            Backward::new(move |ctx| {
                let g = crate::shape::reshape_to(ctx.grad(), &kept);
                let g = match route {
                    Route::Chosen => crate::binary::select_grad(&weights, &g),
                    Route::Even => crate::binary::select_scaled(&g, &weights),
                    Route::EvenProduct => &g * &weights,
                };
                smallvec![Some(crate::shape::reshape_to(&g, &in_shape))]
            })
        },
        |ctx| by_groups(ctx, group_sum),
    );
    Ok((values, Tensor::from_vec(indices, &out_shape)))
}

/// Max (or min) along `dim` and its indices: NaN wins, the first NaN or the first of equal
/// values is chosen, and the gradient goes to the chosen element only (0 elsewhere, even
/// for an infinite incoming gradient), as in PyTorch.
#[track_caller]
pub(crate) fn max_dim(
    x: &Tensor,
    dim: isize,
    keepdim: bool,
    max: bool,
) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let op = if max { "max_dim" } else { "min_dim" };
    if x.dim() == 0 {
        return reduce_extremum(op, x, Some(dim), keepdim, max, Route::Chosen, location);
    }
    tapegrad_tape::ensure_float(op, x, location)?;
    let d = resolve(op, x, dim, location)?;
    let shape = x.shape();
    if shape[d] == 0 {
        return Err(tapegrad_tape::Error::Shape {
            op,
            message: format!("cannot reduce over an empty dimension {d} of shape {shape:?}"),
            location,
        });
    }
    let sizes = blocks(shape, d);
    let (values, positions) = match &x.contiguous_storage() {
        Storage::F32(v) => {
            let (values, at) = tapegrad_kernels::extremum::extremum_along(v, sizes, max);
            (Storage::from_vec(values), at)
        }
        Storage::F64(v) => {
            let (values, at) = tapegrad_kernels::extremum::extremum_along(v, sizes, max);
            (Storage::from_vec(values), at)
        }
        Storage::I64(_) | Storage::Bool(_) => unreachable!("float dtype checked"),
    };
    let out_shape = reduced_shape(shape, d, keepdim);
    let kept = reduced_shape(shape, d, true);
    let values = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let chosen = positions.clone();
    let positions = Tensor::from_vec(positions, &out_shape);
    let di = d as isize;
    let values = record_with_tangent(
        op,
        location,
        &[x],
        values,
        || {
            let (kept, in_shape, chosen) = (kept.clone(), shape.to_vec(), chosen.clone());
            let at = crate::shape::reshape_to(&positions, &kept);
            // All of the gradient to the chosen element, 0 elsewhere: added into zeros, not
            // multiplied by a mask, so an infinite gradient leaves the others at 0.
            Backward::new(move |ctx| {
                if !tapegrad_tape::is_grad_enabled() {
                    // A plain backward: each value written at its chosen element.
                    let (_, n, inner) = sizes;
                    let g = ctx.grad().contiguous_storage();
                    let grad = map_float_storage!(&g, g => {
                        let mut grad = vec![0.0; tapegrad_tape::layout::numel(&in_shape)];
                        for (p, (&at, &v)) in chosen.iter().zip(g.iter()).enumerate() {
                            grad[(p / inner * n + at as usize) * inner + p % inner] = v;
                        }
                        grad
                    });
                    let layout = Layout::contiguous(&in_shape);
                    return smallvec![Some(Tensor::from_storage(grad, layout))];
                }
                let g = crate::shape::reshape_to(ctx.grad(), &kept);
                let zeros = Tensor::zeros_dtype(&in_shape, g.dtype());
                smallvec![Some(
                    crate::index::scatter_add(&zeros, di, &at, &g).expect("indices in range")
                )]
            })
        },
        |ctx| by_groups(ctx, |t| sum_dim(t, di, keepdim).expect("checked")),
    );
    Ok((values, positions))
}

#[track_caller]
pub(crate) fn argmax(x: &Tensor, dim: Option<isize>, keepdim: bool, max: bool) -> Result<Tensor> {
    let location = Location::caller();
    let op = if max { "argmax" } else { "argmin" };
    tapegrad_tape::ensure_float(op, x, location)?;
    match dim {
        Some(dim) => Ok(max_dim(&x.detach(), dim, keepdim, max)?.1),
        None => {
            if x.numel() == 0 {
                return Err(tapegrad_tape::Error::Shape {
                    op,
                    message: "cannot take the arg-extremum of an empty tensor".into(),
                    location,
                });
            }
            let flat = crate::shape::reshape_to(&x.detach(), &[x.numel()]);
            let i = max_dim(&flat, 0, false, max)?.1;
            Ok(if keepdim { crate::shape::reshape_to(&i, &vec![1; x.dim()]) } else { i })
        }
    }
}

/// The largest (smallest) element, NaN if any is. The gradient is split evenly among the
/// elements equal to it (among the NaNs if it is NaN), as PyTorch does.
#[track_caller]
pub(crate) fn max_all(x: &Tensor, max: bool) -> Result<Tensor> {
    let op = if max { "max" } else { "min" };
    Ok(reduce_extremum(op, x, None, false, max, Route::Even, Location::caller())?.0)
}

/// The largest (smallest) elements over `dims` (`torch.amax` / `amin`). The gradient is split
/// evenly among the elements equal to each result, and NaN over a group whose result is NaN
/// (PyTorch's rule: no element equals NaN). Several
/// dimensions are moved last and merged, so that one row reduction serves every case.
#[track_caller]
pub(crate) fn amax(x: &Tensor, dims: &[isize], keepdim: bool, max: bool) -> Result<Tensor> {
    let location = Location::caller();
    let op = if max { "amax" } else { "amin" };
    ensure_float(op, x, location)?;
    if x.dim() == 0 {
        // Checked on a detached view: nothing here needs recording.
        resolve_dims(op, &crate::shape::reshape_to(&x.detach(), &[1]), dims, location)?;
        let row = crate::shape::reshape_to(x, &[1]);
        return Ok(crate::shape::reshape_to(&amax_along(op, &row, 0, false, max, location), &[]));
    }
    let mut reduced = resolve_dims(op, x, dims, location)?;
    let shape = x.shape();
    if let Some(&d) = reduced.iter().find(|&&d| shape[d] == 0) {
        return Err(tapegrad_tape::Error::Shape {
            op,
            message: format!("cannot reduce over an empty dimension {d} of shape {shape:?}"),
            location,
        });
    }
    if let [d] = reduced[..] {
        return Ok(amax_along(op, x, d, keepdim, max, location));
    }
    reduced.sort_unstable();
    let kept: Vec<usize> = (0..x.dim()).filter(|d| !reduced.contains(d)).collect();
    let order: Vec<isize> = kept.iter().chain(&reduced).map(|&d| d as isize).collect();
    let mut merged: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    merged.push(reduced.iter().map(|&d| shape[d]).product());
    let rows = crate::shape::reshape_to(&crate::ShapeOps::permute(x, &order), &merged);
    let values = amax_along(op, &rows, merged.len() - 1, false, max, location);
    if !keepdim {
        return Ok(values);
    }
    let kept_shape: Vec<usize> =
        shape.iter().enumerate().map(|(d, &n)| if reduced.contains(&d) { 1 } else { n }).collect();
    Ok(crate::shape::reshape_to(&values, &kept_shape))
}

/// `amax`/`amin` along one non-empty dimension: the values by the extremum kernel (NaN
/// wins), and PyTorch's gradient, `g / count * (x == value)` with `count` the ties in each
/// row (so a row whose value is NaN gets NaN throughout), as recorded ops.
fn amax_along(
    op: &'static str,
    x: &Tensor,
    d: usize,
    keepdim: bool,
    max: bool,
    location: &'static Location<'static>,
) -> Tensor {
    let shape = x.shape();
    let sizes = blocks(shape, d);
    let values = map_float_storage!(&x.contiguous_storage(), v => {
        tapegrad_kernels::extremum::extremum_along(v, sizes, max).0
    });
    let out_shape = reduced_shape(shape, d, keepdim);
    let value = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let (di, kept) = (d as isize, reduced_shape(shape, d, true));
    record_with_tangent(
        op,
        location,
        &[x],
        value,
        || {
            let kept = kept.clone();
            Backward::new(move |ctx| {
                let (x, value) = (ctx.saved(0), crate::shape::reshape_to(ctx.output(), &kept));
                let ties = crate::binary::compare("eq", x, &value, |a, b| a == b)
                    .expect("value broadcasts to x")
                    .to_dtype(x.dtype());
                let count = sum_dim(&ties, di, true).expect("checked");
                let g = crate::shape::reshape_to(ctx.grad(), &kept);
                smallvec![Some(&(&g / &count) * &ties)]
            })
            .save(x)
            .save_output()
        },
        |ctx| by_groups(ctx, |t| sum_dim(t, di, keepdim).expect("checked")),
    )
}

#[track_caller]
pub(crate) fn logsumexp(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    use tapegrad_kernels::softmax::{logsumexp as lse_rows, logsumexp_backward};
    let location = Location::caller();
    tapegrad_tape::ensure_float("logsumexp", x, location)?;
    let x0 = if x.dim() == 0 { crate::shape::reshape_to(x, &[1]) } else { x.clone() };
    let d = resolve("logsumexp", &x0, dim, location)?;
    let shape = x0.shape();
    let sizes = blocks(shape, d);
    let kept = reduced_shape(shape, d, true);
    let out_shape = if x.dim() == 0 { vec![] } else { reduced_shape(shape, d, keepdim) };
    let storage = if sizes.1 == 0 {
        // The log of an empty sum.
        tapegrad_tape::Tensor::full_dtype(&out_shape, f64::NEG_INFINITY, x.dtype()).storage()
    } else {
        map_float_storage!(&x0.contiguous_storage(), v => lse_rows(v, sizes))
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&out_shape));
    let in_shape = x.shape().to_vec();
    let group_sum = |t: &Tensor| {
        let t = if t.dim() == 0 { crate::shape::reshape_to(t, &[1]) } else { t.clone() };
        crate::shape::reshape_to(&sum_dim(&t, d as isize, true).expect("checked"), &out_shape)
    };
    Ok(record_with_tangent(
        "logsumexp",
        location,
        &[x],
        value,
        || {
            let (kept, in_shape) = (kept.clone(), in_shape.clone());
            Backward::new(move |ctx| {
                let (g, x) = (ctx.grad(), ctx.saved(0));
                if !tapegrad_tape::is_grad_enabled() && sizes.1 > 0 {
                    // A plain backward: g e^(x - lse) in one pass over x.
                    let (lse, layout) = ctx.output_parts();
                    let part = layout.offset()..layout.offset() + layout.numel();
                    let (x, g) = (x.contiguous_storage(), g.contiguous_storage());
                    let dx = match (&x, lse, &g) {
                        (Storage::F32(x), Storage::F32(l), Storage::F32(g)) => {
                            Storage::from_vec(logsumexp_backward(x, &l[part], g, sizes))
                        }
                        (Storage::F64(x), Storage::F64(l), Storage::F64(g)) => {
                            Storage::from_vec(logsumexp_backward(x, &l[part], g, sizes))
                        }
                        _ => unreachable!("float dtypes checked in forward"),
                    };
                    return smallvec![Some(Tensor::from_storage(
                        dx,
                        Layout::contiguous(&in_shape)
                    ))];
                }
                // d lse / dx = softmax(x) = exp(x - lse)
                let y = crate::shape::reshape_to(ctx.output(), &kept);
                let g = crate::shape::reshape_to(g, &kept);
                let x = crate::shape::reshape_to(x, &kept_full(&in_shape));
                let soft = crate::unary::exp(&(&x - &y));
                smallvec![Some(crate::shape::reshape_to(&(&g * &soft), &in_shape))]
            })
            .save(x)
            .save_output()
        },
        |ctx| by_groups(ctx, group_sum),
    ))
}

/// A 0-d shape promoted to `[1]`, so that dimension arithmetic has something to index.
fn kept_full(shape: &[usize]) -> Vec<usize> {
    if shape.is_empty() { vec![1] } else { shape.to_vec() }
}

#[track_caller]
pub(crate) fn var(
    x: &Tensor,
    dims: Option<&[isize]>,
    correction: f64,
    keepdim: bool,
) -> Result<Tensor> {
    let location = Location::caller();
    tapegrad_tape::ensure_float("var", x, location)?;
    match dims {
        None => {
            let n = x.numel() as f64;
            let centered = x - &mean(x);
            Ok(sum(&crate::unary::square(&centered)).div_scalar((n - correction).max(0.0)))
        }
        Some(dims) => {
            let reduced = resolve_dims("var", x, dims, location)?;
            let n: usize =
                reduced.iter().map(|&d| x.shape().get(d).copied().unwrap_or(1)).product();
            let (mean_op, sum_op) =
                if dims.len() == 1 { ("mean_dim", "sum_dim") } else { ("mean_dims", "sum_dims") };
            let centered = x - &reduce_dims(mean_op, x, dims, true, Scale::Mean, location)?;
            let squares = crate::unary::square(&centered);
            let s = reduce_dims(sum_op, &squares, dims, keepdim, Scale::One, location)?;
            Ok(s.div_scalar((n as f64 - correction).max(0.0)))
        }
    }
}

/// The standard deviation from a recorded variance `v`: `sqrt(v)`, with PyTorch's
/// gradient `g / (2 sqrt(v))` made 0 where the deviation is 0 (a constant sample), not inf.
#[track_caller]
pub(crate) fn std_from_var(v: &Tensor) -> Tensor {
    let value = crate::unary::sqrt(&v.detach());
    let make_backward = || {
        Backward::new(|ctx| {
            let (g, y) = (ctx.grad(), ctx.output());
            let safe = crate::elementwise::mask(y, |v| v != 0.0);
            let inv = &safe / &(y + &safe.rsub_scalar(1.0)).mul_scalar(2.0);
            smallvec![Some(g * &inv)]
        })
        .save_output()
    };
    record_with_tangent("std", Location::caller(), &[v], value, make_backward, |ctx| {
        ctx.elementwise()
    })
}

#[track_caller]
pub(crate) fn norm(x: &Tensor, p: f64, dim: Option<isize>, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    tapegrad_tape::ensure_float("norm", x, location)?;
    if let Some(d) = dim {
        // Checked here: an error from inside the closure below would name this file.
        resolve("norm", x, d, location)?;
    }
    let reduce = |t: &Tensor| -> Result<Tensor> {
        match dim {
            None => Ok(sum(t)),
            Some(d) => sum_dim(t, d, keepdim),
        }
    };
    if p == 2.0 {
        // sqrt(sum x^2) with a gradient of 0 (not NaN) at the origin, as PyTorch gives.
        let s = reduce(&crate::unary::square(x))?;
        let y = crate::unary::sqrt(&s);
        let group_sum = |t: &Tensor| reduce(t).expect("checked");
        return Ok(record_with_tangent(
            "norm",
            location,
            &[x],
            y.detach(),
            || {
                Backward::new(move |ctx| {
                    let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.output());
                    let safe = crate::elementwise::mask(y, |v| v != 0.0);
                    let inv = &safe / &(y + &safe.rsub_scalar(1.0));
                    let scale = &(g * &inv);
                    let scale = match dim {
                        // A 0-d input reduces to 0-d whatever keepdim says: nothing to restore.
                        Some(d) if !keepdim && x.dim() > 0 => {
                            crate::shape::unsqueeze(scale, d).expect("dim valid")
                        }
                        _ => scale.clone(),
                    };
                    smallvec![Some(x * &scale)]
                })
                .save(x)
                .save_output()
            },
            |ctx| by_groups(ctx, group_sum),
        ));
    }
    if p == 1.0 {
        return reduce(&crate::unary::abs(x));
    }
    if p.is_infinite() {
        // max |x| (min for -inf), the gradient split evenly among the tied elements, as
        // PyTorch (multiplied, as its rule is: an infinite gradient gives NaN elsewhere).
        let a = crate::unary::abs(x);
        return Ok(reduce_extremum(
            "norm",
            &a,
            dim,
            keepdim,
            p > 0.0,
            Route::EvenProduct,
            location,
        )?
        .0);
    }
    // (sum |x|^p)^(1/p), with PyTorch's gradient `sign(x) |x|^(p-1) / norm^(p-1)`, 0 at the
    // origin and at zero elements (the composed form gives 0 * inf there).
    let value = crate::unary::pow_scalar(
        &reduce(&crate::unary::pow_scalar(&crate::unary::abs(x), p))?,
        1.0 / p,
    );
    let group_sum = |t: &Tensor| reduce(t).expect("checked");
    Ok(record_with_tangent(
        "norm",
        location,
        &[x],
        value.detach(),
        || {
            Backward::new(move |ctx| {
                let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.output());
                let zero = Tensor::zeros_dtype(&[], x.dtype());
                let nonzero = crate::elementwise::mask(x, |v| v != 0.0);
                let sign = crate::elementwise::map::<crate::unary::Sign>(x);
                let safe_x = &crate::unary::abs(x) + &nonzero.rsub_scalar(1.0);
                let weight = &sign * &crate::unary::pow_scalar(&safe_x, p - 1.0);
                let positive = crate::elementwise::mask(y, |v| v != 0.0);
                let safe_y = y + &positive.rsub_scalar(1.0);
                let inverse = crate::unary::pow_scalar(&safe_y, 1.0 - p);
                let inverse = crate::binary::try_where(&positive, &inverse, &zero).expect("shape");
                let scale = &(g * &inverse);
                let scale = match dim {
                    Some(d) if !keepdim && x.dim() > 0 => {
                        crate::shape::unsqueeze(scale, d).expect("dim valid")
                    }
                    _ => scale.clone(),
                };
                smallvec![Some(&weight * &scale)]
            })
            .save(x)
            .save_output()
        },
        |ctx| by_groups(ctx, group_sum),
    ))
}

/// Reductions (sums, means, variance, extrema, norms, log-sum-exp) and the softmaxes, as
/// methods. In the prelude. Dimensions are `isize`: negative values count from the end.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// assert_eq!(x.sum_dim(0, false).to_vec::<f64>(), vec![4.0, 6.0]);
/// assert_eq!(x.mean().item(), 2.5);
/// assert!(x.try_sum_dim(2, false).is_err());
/// ```
pub trait ReduceOps {
    /// The sum of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).sum().item(), 6.0);
    /// ```
    #[track_caller]
    fn sum(&self) -> Tensor;

    /// The mean of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 4.0, 1.0).mean().item(), 1.5);
    /// ```
    #[track_caller]
    fn mean(&self) -> Tensor;

    /// The sum along `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).sum_dim(-1, true).shape(), &[2, 1]);
    /// ```
    #[track_caller]
    fn sum_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_sum_dim(dim, keepdim))
    }

    /// [`ReduceOps::sum_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert!(x.try_sum_dim(-2, false).is_ok());
    /// assert!(x.try_sum_dim(2, false).is_err()); // x has dimensions -2..=1
    /// ```
    #[track_caller]
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The mean along `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2]);
    /// assert_eq!(x.mean_dim(1, false).to_vec::<f32>(), vec![2.0]);
    /// ```
    #[track_caller]
    fn mean_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_mean_dim(dim, keepdim))
    }

    /// [`ReduceOps::mean_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_mean_dim(-3, false).is_err());
    /// ```
    #[track_caller]
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The sum over the dimensions `dims` (PyTorch's `x.sum(dim=(..), keepdim)`), keeping
    /// them as size 1 if `keepdim`. Each dimension may be given once; at least one.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]);
    /// assert_eq!(x.sum_dims(&[0, -1], false).to_vec::<f32>(), vec![14.0, 22.0]);
    /// assert_eq!(x.sum_dims(&[1, 2], true).shape(), &[2, 1, 1]);
    /// ```
    #[track_caller]
    fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Tensor {
        or_panic(self.try_sum_dims(dims, keepdim))
    }

    /// [`ReduceOps::sum_dims`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert!(x.try_sum_dims(&[0, -2], false).is_err()); // dimension 0 twice
    /// assert!(x.try_sum_dims(&[], false).is_err()); // none: `sum()` reduces every one
    /// ```
    #[track_caller]
    fn try_sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor>;

    /// The mean over the dimensions `dims` (PyTorch's `x.mean(dim=(..), keepdim)`): global
    /// average pooling is `x.mean_dims(&[2, 3], false)` of an `[N, C, H, W]` batch.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 6.0], &[1, 1, 2, 2]);
    /// assert_eq!(x.mean_dims(&[2, 3], false).to_vec::<f32>(), vec![3.0]);
    /// ```
    #[track_caller]
    fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Tensor {
        or_panic(self.try_mean_dims(dims, keepdim))
    }

    /// [`ReduceOps::mean_dims`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_mean_dims(&[2], false).is_err());
    /// ```
    #[track_caller]
    fn try_mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor>;

    /// The variance of all elements with Bessel's `correction` (1 gives the unbiased
    /// estimate, PyTorch's default; 0 the population variance).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.var(1.0).item(), 5.0 / 3.0);
    /// ```
    #[track_caller]
    fn var(&self, correction: f64) -> Tensor;

    /// The variance along `dim` with Bessel's `correction`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[2, 2]);
    /// assert_eq!(x.var_dim(1, 0.0, false).to_vec::<f64>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    fn var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Tensor {
        or_panic(self.try_var_dim(dim, correction, keepdim))
    }

    /// [`ReduceOps::var_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_var_dim(2, 1.0, false).is_err());
    /// ```
    #[track_caller]
    fn try_var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Result<Tensor>;

    /// The variance over the dimensions `dims` with Bessel's `correction` (PyTorch's
    /// `x.var(dim=(..), correction, keepdim)`): a batch norm's statistics are
    /// `x.var_dims(&[0, 2, 3], 0.0, true)` of an `[N, C, H, W]` batch.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 1.0, 3.0], &[2, 1, 2]);
    /// assert_eq!(x.var_dims(&[0, 2], 0.0, false).to_vec::<f64>(), vec![1.0]);
    /// ```
    #[track_caller]
    fn var_dims(&self, dims: &[isize], correction: f64, keepdim: bool) -> Tensor {
        or_panic(self.try_var_dims(dims, correction, keepdim))
    }

    /// [`ReduceOps::var_dims`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_var_dims(&[1, 1], 1.0, false).is_err());
    /// ```
    #[track_caller]
    fn try_var_dims(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Tensor>;

    /// The standard deviation of all elements with Bessel's `correction` (PyTorch's
    /// `x.std(correction=)`): the square root of [`ReduceOps::var`], with a gradient of 0
    /// where it is 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0], &[2]);
    /// assert_eq!(x.std(0.0).item(), 1.0);
    /// ```
    #[track_caller]
    fn std(&self, correction: f64) -> Tensor {
        std_from_var(&self.var(correction))
    }

    /// The standard deviation along `dim` with Bessel's `correction`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[2, 2]);
    /// assert_eq!(x.std_dim(1, 0.0, false).to_vec::<f64>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    fn std_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Tensor {
        or_panic(self.try_std_dim(dim, correction, keepdim))
    }

    /// [`ReduceOps::std_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_std_dim(2, 1.0, false).is_err());
    /// ```
    #[track_caller]
    fn try_std_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Result<Tensor> {
        Ok(std_from_var(&self.try_var_dim(dim, correction, keepdim)?))
    }

    /// The standard deviation over the dimensions `dims` with Bessel's `correction`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 1.0, 3.0], &[2, 1, 2]);
    /// assert_eq!(x.std_dims(&[0, 2], 0.0, false).to_vec::<f64>(), vec![1.0]);
    /// ```
    #[track_caller]
    fn std_dims(&self, dims: &[isize], correction: f64, keepdim: bool) -> Tensor {
        or_panic(self.try_std_dims(dims, correction, keepdim))
    }

    /// [`ReduceOps::std_dims`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_std_dims(&[0, 0], 1.0, false).is_err());
    /// ```
    #[track_caller]
    fn try_std_dims(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Tensor> {
        Ok(std_from_var(&self.try_var_dims(dims, correction, keepdim)?))
    }

    /// The largest element (NaN if any element is NaN); the elements equal to it (or the
    /// NaNs) share the gradient evenly.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 5.0, 1.0).max().item(), 4.0);
    /// ```
    #[track_caller]
    fn max(&self) -> Tensor;

    /// The smallest element.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(2.0, 5.0, 1.0).min().item(), 2.0);
    /// ```
    #[track_caller]
    fn min(&self) -> Tensor;

    /// The largest values along `dim` and their int64 indices (the first NaN, else the first
    /// on ties); the gradient flows to the chosen elements.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 7.0, 3.0, 2.0], &[2, 2]);
    /// let (values, indices) = x.max_dim(1, false);
    /// assert_eq!((values.to_vec::<f32>(), indices.to_vec::<i64>()), (vec![7.0, 3.0], vec![1, 0]));
    /// ```
    #[track_caller]
    fn max_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor) {
        or_panic(self.try_max_dim(dim, keepdim))
    }

    /// [`ReduceOps::max_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_max_dim(2, false).is_err());
    /// ```
    #[track_caller]
    fn try_max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)>;

    /// The smallest values along `dim` and their indices.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let (v, i) = Tensor::from_vec(vec![4.0f32, 2.0], &[2]).min_dim(0, false);
    /// assert_eq!((v.item(), i.to_vec::<i64>()), (2.0, vec![1]));
    /// ```
    #[track_caller]
    fn min_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor) {
        or_panic(self.try_min_dim(dim, keepdim))
    }

    /// [`ReduceOps::min_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_min_dim(-3, false).is_err());
    /// ```
    #[track_caller]
    fn try_min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)>;

    /// The largest elements over `dims` (`torch.amax(x, dims, keepdim)`), without indices.
    /// Unlike [`max_dim`](ReduceOps::max_dim), the gradient is split evenly among the
    /// elements equal to the maximum, and is NaN over a group whose maximum is NaN, as in
    /// PyTorch.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 5.0, 5.0, 2.0, 0.0, 3.0], &[2, 3]).requires_grad();
    /// assert_eq!(x.amax(&[1], false).to_vec::<f64>(), vec![5.0, 3.0]);
    /// let top = x.amax(&[0, 1], false);
    /// assert_eq!(top.item(), 5.0);
    /// top.backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.5, 0.5, 0.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    fn amax(&self, dims: &[isize], keepdim: bool) -> Tensor {
        or_panic(self.try_amax(dims, keepdim))
    }

    /// [`ReduceOps::amax`], returning an error for no dimensions, a repeated or
    /// out-of-range one, or an empty one.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_amax(&[1, -1], false).is_err());
    /// assert!(Tensor::ones(&[2, 0]).try_amax(&[1], false).is_err());
    /// ```
    #[track_caller]
    fn try_amax(&self, dims: &[isize], keepdim: bool) -> Result<Tensor>;

    /// The smallest elements over `dims` (`torch.amin`), the gradient split evenly among
    /// ties.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![4.0f32, -1.0, 2.0, 7.0], &[2, 2]);
    /// assert_eq!(x.amin(&[0], true).to_vec::<f32>(), vec![2.0, -1.0]);
    /// assert_eq!(x.amin(&[0], true).shape(), &[1, 2]);
    /// ```
    #[track_caller]
    fn amin(&self, dims: &[isize], keepdim: bool) -> Tensor {
        or_panic(self.try_amin(dims, keepdim))
    }

    /// [`ReduceOps::amin`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_amin(&[], false).is_err());
    /// ```
    #[track_caller]
    fn try_amin(&self, dims: &[isize], keepdim: bool) -> Result<Tensor>;

    /// The int64 index of the largest element along `dim`, or of the flattened tensor
    /// when `dim` is `None`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![0.1f32, 0.7, 0.2, 0.9, 0.0, 0.1], &[2, 3]);
    /// assert_eq!(x.argmax(Some(1), false).to_vec::<i64>(), vec![1, 0]);
    /// assert_eq!(x.argmax(None, false).to_vec::<i64>(), vec![3]);
    /// ```
    #[track_caller]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> Tensor;

    /// The int64 index of the smallest element along `dim` (or overall).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(
    ///     Tensor::from_vec(vec![3.0f32, -1.0], &[2]).argmin(None, false).to_vec::<i64>(),
    ///     vec![1]
    /// );
    /// ```
    #[track_caller]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> Tensor;

    /// `ln(sum(e^x))` along `dim`, computed stably (finite for logits of ±1e4).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1e4f32, 1e4], &[2]);
    /// assert!((x.logsumexp(0, false).item() - (1e4 + 2f64.ln())).abs() < 1e-2);
    /// ```
    #[track_caller]
    fn logsumexp(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_logsumexp(dim, keepdim))
    }

    /// [`ReduceOps::logsumexp`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_logsumexp(1, false).is_err());
    /// ```
    #[track_caller]
    fn try_logsumexp(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The `p`-norm of all elements (`p = 2` for Euclidean, `f64::INFINITY` for the max).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![3.0f32, 4.0], &[2]).norm(2.0).item(), 5.0);
    /// ```
    #[track_caller]
    fn norm(&self, p: f64) -> Tensor;

    /// The `p`-norm along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f32, 4.0, 0.0, 1.0], &[2, 2]);
    /// assert_eq!(x.norm_dim(1.0, 1, false).to_vec::<f32>(), vec![7.0, 1.0]);
    /// ```
    #[track_caller]
    fn norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_norm_dim(p, dim, keepdim))
    }

    /// [`ReduceOps::norm_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_norm_dim(2.0, 1, false).is_err());
    /// ```
    #[track_caller]
    fn try_norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// Softmax along `dim`, computed stably.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![1e4f32, -1e4], &[2]).softmax(0);
    /// assert_eq!(p.to_vec::<f32>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    fn softmax(&self, dim: isize) -> Tensor {
        or_panic(self.try_softmax(dim))
    }

    /// [`ReduceOps::softmax`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_softmax(1).is_err());
    /// ```
    #[track_caller]
    fn try_softmax(&self, dim: isize) -> Result<Tensor>;

    /// Log-softmax along `dim`, computed stably.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![1e4f32, -1e4], &[2]).log_softmax(0);
    /// assert_eq!(p.to_vec::<f32>(), vec![0.0, -2e4]);
    /// ```
    #[track_caller]
    fn log_softmax(&self, dim: isize) -> Tensor {
        or_panic(self.try_log_softmax(dim))
    }

    /// [`ReduceOps::log_softmax`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_log_softmax(-2).is_err());
    /// ```
    #[track_caller]
    fn try_log_softmax(&self, dim: isize) -> Result<Tensor>;

    /// The product of all elements, as a 0-d tensor (PyTorch's `torch.prod`). Exact
    /// gradients where factors are zero too.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f64, 0.0, 3.0], &[3]).requires_grad();
    /// let p = x.prod();
    /// assert_eq!(p.item(), 0.0);
    /// p.backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![0.0, 6.0, 0.0]); // the others' product
    /// ```
    #[track_caller]
    fn prod(&self) -> Tensor {
        or_panic(self.try_prod())
    }

    /// [`ReduceOps::prod`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::from_vec(vec![1i64, 2], &[2]).try_prod().is_err()); // float tensors only
    /// assert_eq!(Tensor::zeros(&[0]).try_prod().unwrap().item(), 1.0); // the empty product
    /// ```
    #[track_caller]
    fn try_prod(&self) -> Result<Tensor>;

    /// The product along `dim` (PyTorch's `torch.prod(x, dim, keepdim)`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.prod_dim(-1, false).to_vec::<f32>(), vec![2.0, 12.0]);
    /// assert_eq!(x.prod_dim(0, true).shape(), &[1, 2]);
    /// ```
    #[track_caller]
    fn prod_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_prod_dim(dim, keepdim))
    }

    /// [`ReduceOps::prod_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 2]).try_prod_dim(2, false).is_err());
    /// ```
    #[track_caller]
    fn try_prod_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// Running sums along `dim` (PyTorch's `torch.cumsum`), accumulated in f64.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(x.cumsum(1).to_vec::<f32>(), vec![1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    /// assert_eq!(x.cumsum(0).to_vec::<f32>(), vec![1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
    /// ```
    #[track_caller]
    fn cumsum(&self, dim: isize) -> Tensor {
        or_panic(self.try_cumsum(dim))
    }

    /// [`ReduceOps::cumsum`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_cumsum(1).is_err());
    /// ```
    #[track_caller]
    fn try_cumsum(&self, dim: isize) -> Result<Tensor>;

    /// Running products along `dim` (PyTorch's `torch.cumprod`), accumulated in f64; the
    /// gradient is right where the input has zeros too.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f64, 0.0, 3.0], &[3]).requires_grad();
    /// let y = x.cumprod(0);
    /// assert_eq!(y.to_vec::<f64>(), vec![2.0, 0.0, 0.0]);
    /// y.sum().backward();
    /// // d(2 + 2 x1 + 2 x1 x2)/dx: 1 + x1 + x1 x2, 2 + 2 x2, 2 x1
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0, 8.0, 0.0]);
    /// ```
    #[track_caller]
    fn cumprod(&self, dim: isize) -> Tensor {
        or_panic(self.try_cumprod(dim))
    }

    /// [`ReduceOps::cumprod`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_cumprod(1).is_err());
    /// ```
    #[track_caller]
    fn try_cumprod(&self, dim: isize) -> Result<Tensor>;
}

impl ReduceOps for Tensor {
    #[track_caller]
    fn try_prod(&self) -> Result<Tensor> {
        prod::prod(self)
    }
    #[track_caller]
    fn try_prod_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        prod::prod_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_cumsum(&self, dim: isize) -> Result<Tensor> {
        cumsum::cumsum(self, dim)
    }
    #[track_caller]
    fn try_cumprod(&self, dim: isize) -> Result<Tensor> {
        cumprod::cumprod(self, dim)
    }
    #[track_caller]
    fn sum(&self) -> Tensor {
        sum(self)
    }
    #[track_caller]
    fn mean(&self) -> Tensor {
        mean(self)
    }
    #[track_caller]
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        sum_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        mean_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        sum_dims(self, dims, keepdim)
    }
    #[track_caller]
    fn try_mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        mean_dims(self, dims, keepdim)
    }
    #[track_caller]
    fn try_var_dims(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Tensor> {
        var(self, Some(dims), correction, keepdim)
    }
    #[track_caller]
    fn var(&self, correction: f64) -> Tensor {
        or_panic(var(self, None, correction, false))
    }
    #[track_caller]
    fn try_var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Result<Tensor> {
        var(self, Some(&[dim]), correction, keepdim)
    }
    #[track_caller]
    fn max(&self) -> Tensor {
        or_panic(max_all(self, true))
    }
    #[track_caller]
    fn min(&self) -> Tensor {
        or_panic(max_all(self, false))
    }
    #[track_caller]
    fn try_max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        max_dim(self, dim, keepdim, true)
    }
    #[track_caller]
    fn try_min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        max_dim(self, dim, keepdim, false)
    }
    #[track_caller]
    fn try_amax(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        amax(self, dims, keepdim, true)
    }
    #[track_caller]
    fn try_amin(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        amax(self, dims, keepdim, false)
    }
    #[track_caller]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> Tensor {
        or_panic(argmax(self, dim, keepdim, true))
    }
    #[track_caller]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> Tensor {
        or_panic(argmax(self, dim, keepdim, false))
    }
    #[track_caller]
    fn try_logsumexp(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        logsumexp(self, dim, keepdim)
    }
    #[track_caller]
    fn norm(&self, p: f64) -> Tensor {
        or_panic(norm(self, p, None, false))
    }
    #[track_caller]
    fn try_norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Result<Tensor> {
        norm(self, p, Some(dim), keepdim)
    }
    #[track_caller]
    fn try_softmax(&self, dim: isize) -> Result<Tensor> {
        crate::functional::softmax_op(self, dim, false)
    }
    #[track_caller]
    fn try_log_softmax(&self, dim: isize) -> Result<Tensor> {
        crate::functional::softmax_op(self, dim, true)
    }
}
