//! Shape operations: views and copies that rearrange elements without arithmetic.

use std::panic::Location;

use tapegrad_tape::layout::numel;
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
    let known: usize = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(&i) = inferred.first() {
        if known == 0 || x.numel() % known != 0 {
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
