//! Reductions: sums and means over all elements or along a dimension.

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Result, Tensor, ensure_float, kernels, map_float_storage, or_panic, record};

use crate::dims::resolve;

/// Sum of `x` down to `target` (a shape with size-1 dims where `x` is reduced), as a value.
fn sum_value(x: &Tensor, target: &[usize]) -> Tensor {
    let storage = map_float_storage!(&x.storage(), v => kernels::sum_to(v, x.layout(), target));
    Tensor::from_storage(storage, Layout::contiguous(target))
}

#[track_caller]
pub(crate) fn sum(x: &Tensor) -> Tensor {
    or_panic(ensure_float("sum", x, Location::caller()));
    let shape = x.shape().to_vec();
    record("sum", Location::caller(), &[x], sum_value(x, &[]), || {
        Backward::new(move |ctx| smallvec![Some(ctx.grad().broadcast_to(&shape))])
    })
}

#[track_caller]
pub(crate) fn mean(x: &Tensor) -> Tensor {
    or_panic(ensure_float("mean", x, Location::caller()));
    let n = x.numel() as f64;
    let shape = x.shape().to_vec();
    let value = sum_value(x, &[]).div_scalar(n);
    record("mean", Location::caller(), &[x], value, || {
        Backward::new(move |ctx| smallvec![Some(ctx.grad().div_scalar(n).broadcast_to(&shape))])
    })
}

#[track_caller]
pub(crate) fn sum_dim(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce_dim("sum_dim", x, dim, keepdim, 1.0, Location::caller())
}

#[track_caller]
pub(crate) fn mean_dim(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    let d = resolve("mean_dim", x, dim, location)?;
    let n = x.shape().get(d).copied().unwrap_or(1) as f64;
    reduce_dim("mean_dim", x, dim, keepdim, 1.0 / n, location)
}

/// Sum along `dim`, times `scale`, keeping or dropping the reduced dimension.
fn reduce_dim(
    op: &'static str,
    x: &Tensor,
    dim: isize,
    keepdim: bool,
    scale: f64,
    location: &'static Location<'static>,
) -> Result<Tensor> {
    ensure_float(op, x, location)?;
    let d = resolve(op, x, dim, location)?;
    let in_shape = x.shape().to_vec();
    if in_shape.is_empty() {
        // A scalar has nothing to reduce over; PyTorch returns it unchanged.
        return Ok(x.mul_scalar(scale));
    }
    let mut kept = in_shape.clone();
    kept[d] = 1;
    let mut value = sum_value(x, &kept);
    if scale != 1.0 {
        value = value.mul_scalar(scale);
    }
    let out_shape: Vec<usize> = if keepdim {
        kept.clone()
    } else {
        in_shape.iter().enumerate().filter(|&(i, _)| i != d).map(|(_, &n)| n).collect()
    };
    let value = Tensor::from_storage(value.storage(), Layout::contiguous(&out_shape));
    Ok(record(op, location, &[x], value, || {
        Backward::new(move |ctx| {
            let g = crate::shape::reshape_to(ctx.grad(), &kept);
            let g = if scale != 1.0 { g.mul_scalar(scale) } else { g };
            smallvec![Some(g.broadcast_to(&in_shape))]
        })
    }))
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
    let (mut values, mut indices) = (Vec::with_capacity(rows.len() / n), Vec::with_capacity(rows.len() / n));
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
    let out_shape = if x.dim() == 0 || dim.is_none() { vec![] } else { reduced_shape(x0.shape(), d, keepdim) };
    let (rows, n) = rows_along(&x0.detach(), d);
    let inner: usize = x0.shape()[d + 1..].iter().product();
    let (values, indices, weights) = match &rows {
        tapegrad_tape::Storage::F32(v) => {
            let (a, i, w) = extrema(v, (n, inner), max, route);
            (tapegrad_tape::Storage::from_vec(a), i, w)
        }
        tapegrad_tape::Storage::F64(v) => {
            let (a, i, w) = extrema(v, (n, inner), max, route);
            (tapegrad_tape::Storage::from_vec(a), i, w)
        }
        tapegrad_tape::Storage::I64(_) => unreachable!("float dtype checked"),
    };
    let values = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let in_shape = x.shape().to_vec();
    let kept = reduced_shape(x0.shape(), d, true);
    let values = record(op, location, &[x], values, || {
        let weights = Tensor::from_vec(weights, x0.shape()).to_dtype(x.dtype());
        Backward::new(move |ctx| {
            let g = crate::shape::reshape_to(ctx.grad(), &kept);
            let g = match route {
                Route::Chosen => crate::binary::select_grad(&weights, &g),
                Route::Even => crate::binary::select_scaled(&g, &weights),
                Route::EvenProduct => &g * &weights,
            };
            smallvec![Some(crate::shape::reshape_to(&g, &in_shape))]
        })
    });
    Ok((values, Tensor::from_vec(indices, &out_shape)))
}

/// Max (or min) along `dim` and its indices: NaN wins, the first NaN or the first of equal
/// values is chosen, and the gradient goes to the chosen element only (0 elsewhere, even
/// for an infinite incoming gradient), as in PyTorch.
#[track_caller]
pub(crate) fn max_dim(x: &Tensor, dim: isize, keepdim: bool, max: bool) -> Result<(Tensor, Tensor)> {
    let op = if max { "max_dim" } else { "min_dim" };
    reduce_extremum(op, x, Some(dim), keepdim, max, Route::Chosen, Location::caller())
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

#[track_caller]
pub(crate) fn logsumexp(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    tapegrad_tape::ensure_float("logsumexp", x, location)?;
    let x0 = if x.dim() == 0 { crate::shape::reshape_to(x, &[1]) } else { x.clone() };
    let d = resolve("logsumexp", &x0, dim, location)?;
    let (rows, n) = rows_along(&x0, d);
    fn lse<T: tapegrad_tape::Element>(v: &[T], n: usize) -> Vec<T> {
        if n == 0 {
            return vec![];
        }
        v.chunks(n)
            .map(|row| {
                let m = row.iter().copied().fold(T::from_f64(f64::NEG_INFINITY), |a, b| a.max_nan(b));
                if !m.is_finite() {
                    // All -inf gives -inf; any +inf or NaN is the answer itself.
                    return m;
                }
                m + row.iter().map(|&v| (v - m).exp()).sum::<T>().ln()
            })
            .collect()
    }
    let kept = reduced_shape(x0.shape(), d, true);
    let out_shape = if x.dim() == 0 { vec![] } else { reduced_shape(x0.shape(), d, keepdim) };
    let storage = map_float_storage!(&rows, v => lse(v, n));
    let storage = if n == 0 {
        // The log of an empty sum.
        tapegrad_tape::Tensor::full_dtype(&out_shape, f64::NEG_INFINITY, x.dtype()).storage()
    } else {
        storage
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&out_shape));
    let in_shape = x.shape().to_vec();
    Ok(record("logsumexp", location, &[x], value, || {
        Backward::new(move |ctx| {
            // d lse / dx = softmax(x) = exp(x - lse)
            let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.output());
            let y = crate::shape::reshape_to(y, &kept);
            let g = crate::shape::reshape_to(g, &kept);
            let x = crate::shape::reshape_to(x, &kept_full(&in_shape));
            let soft = crate::unary::exp(&(&x - &y));
            smallvec![Some(crate::shape::reshape_to(&(&g * &soft), &in_shape))]
        })
        .save(x)
        .save_output()
    }))
}

/// A 0-d shape promoted to `[1]`, so that dimension arithmetic has something to index.
fn kept_full(shape: &[usize]) -> Vec<usize> {
    if shape.is_empty() { vec![1] } else { shape.to_vec() }
}

#[track_caller]
pub(crate) fn var(x: &Tensor, dim: Option<isize>, correction: f64, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    tapegrad_tape::ensure_float("var", x, location)?;
    match dim {
        None => {
            let n = x.numel() as f64;
            let centered = x - &mean(x);
            Ok(sum(&crate::unary::square(&centered)).div_scalar((n - correction).max(0.0)))
        }
        Some(dim) => {
            let d = resolve("var", x, dim, location)?;
            let n = x.shape().get(d).copied().unwrap_or(1) as f64;
            let centered = x - &mean_dim(x, dim, true)?;
            let s = sum_dim(&crate::unary::square(&centered), dim, keepdim)?;
            Ok(s.div_scalar((n - correction).max(0.0)))
        }
    }
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
        return Ok(record("norm", location, &[x], y.detach(), || {
            Backward::new(move |ctx| {
                let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.output());
                let safe = crate::elementwise::mask(y, |v| v != 0.0);
                let inv = &safe / &(y + &safe.rsub_scalar(1.0));
                let scale = &(g * &inv);
                let scale = match dim {
                    // A 0-d input reduces to 0-d whatever keepdim says: nothing to restore.
                    Some(d) if !keepdim && x.dim() > 0 => crate::shape::unsqueeze(scale, d).expect("dim valid"),
                    _ => scale.clone(),
                };
                smallvec![Some(x * &scale)]
            })
            .save(x)
            .save_output()
        }));
    }
    if p == 1.0 {
        return reduce(&crate::unary::abs(x));
    }
    if p.is_infinite() {
        // max |x| (min for -inf), the gradient split evenly among the tied elements, as
        // PyTorch (multiplied, as its rule is: an infinite gradient gives NaN elsewhere).
        let a = crate::unary::abs(x);
        return Ok(reduce_extremum("norm", &a, dim, keepdim, p > 0.0, Route::EvenProduct, location)?.0);
    }
    Ok(crate::unary::pow_scalar(&reduce(&crate::unary::pow_scalar(&crate::unary::abs(x), p))?, 1.0 / p))
}
