//! Reductions: sums and means over all elements or along a dimension.

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Result, Tensor, kernels, map_storage, record};

use crate::dims::resolve;

/// Sum of `x` down to `target` (a shape with size-1 dims where `x` is reduced), as a value.
fn sum_value(x: &Tensor, target: &[usize]) -> Tensor {
    let storage = map_storage!(&x.storage(), v => kernels::sum_to(v, x.layout(), target));
    Tensor::from_storage(storage, Layout::contiguous(target))
}

#[track_caller]
pub(crate) fn sum(x: &Tensor) -> Tensor {
    let shape = x.shape().to_vec();
    record("sum", Location::caller(), &[x], sum_value(x, &[]), || {
        Backward::new(move |ctx| smallvec![Some(ctx.grad().broadcast_to(&shape))])
    })
}

#[track_caller]
pub(crate) fn mean(x: &Tensor) -> Tensor {
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
