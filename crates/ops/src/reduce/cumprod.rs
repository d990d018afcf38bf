//! Running products along a dimension (`cumprod`). The gradient is written with recorded
//! ops (running sums, products, and `cumprod` itself), so derivatives of every order follow.
//!
//! Without zeros, `y_j = x_0 ... x_j` gives `dL/dx_k = (Σ_{j≥k} g_j y_j) / x_k`. A zero
//! makes every later product zero: the elements before a row's first zero keep that
//! formula (its sums only see the non-zero products before the zero); the first zero's own
//! derivative is `Σ_{j≥z} g_j Π_{i≤j, i≠z} x_i`, the same sums over the running products of
//! the row with that zero replaced by one; elements after it get zero (each of their
//! products keeps the first zero as a factor). PyTorch's rule gives the same values.

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Result, Tensor, ensure_float, map_float_storage, record_with_tangent,
};

use super::cumsum::scan;
use super::rows_along;
use crate::dims::resolve;
use crate::elementwise::mask;

/// Running products of `x` along `d` (resolved), not recorded.
fn products(x: &Tensor, d: usize) -> Tensor {
    let rank = x.dim();
    let (rows, n) = rows_along(x, d);
    let moved: Vec<usize> =
        (0..rank).filter(|&i| i != d).chain([d]).map(|i| x.shape()[i]).collect();
    let back: Vec<usize> = (0..rank)
        .map(|k| match k.cmp(&d) {
            std::cmp::Ordering::Less => k,
            std::cmp::Ordering::Equal => rank - 1,
            std::cmp::Ordering::Greater => k - 1,
        })
        .collect();
    Tensor::from_storage(
        map_float_storage!(&rows, v => tapegrad_kernels::strided::running_products(v, n)),
        Layout::contiguous(&moved).permute(&back),
    )
}

/// Where each row's zeros are, as constant 0/1 masks: the elements `before` the first zero
/// of their row, that zero itself (`first`), and those `after` it.
struct Zeros {
    before: Tensor,
    first: Tensor,
    after: Tensor,
}

/// [`Zeros`] of `x` along `d`; `None` when `x` has no zero.
fn zeros(x: &Tensor, d: usize, location: &'static Location<'static>) -> Option<Zeros> {
    let is_zero = mask(&x.detach(), |v| v == 0.0);
    if crate::reduce::sum(&is_zero).item() == 0.0 {
        return None;
    }
    let seen = scan(&is_zero, d, false, location);
    let before = mask(&seen, |v| v == 0.0);
    let first = &is_zero * &mask(&seen, |v| v == 1.0);
    let after = &before.rsub_scalar(1.0) - &first;
    Some(Zeros { before, first, after })
}

/// `x` with the elements from each row's first zero on set to one (a constant there), so
/// it divides safely where `before` is one.
fn divisor(x: &Tensor, before: &Tensor) -> Tensor {
    &(x * before) + &before.rsub_scalar(1.0)
}

/// `x` with each row's first zero replaced by a constant one, and its running products
/// (recorded).
fn first_zero_as_one(
    x: &Tensor,
    first: &Tensor,
    d: usize,
    at: &'static Location<'static>,
) -> (Tensor, Tensor) {
    let x1 = &(x * &first.rsub_scalar(1.0)) + first;
    let y1 = record(&x1, d, at);
    (x1, y1)
}

/// The value of each row's first zero (recorded: zero, with a derivative), at that zero
/// and every later element.
fn zero_value(x: &Tensor, first: &Tensor, d: usize, at: &'static Location<'static>) -> Tensor {
    scan(&(x * first), d, false, at)
}

/// `dL/dx` for the output gradient `g` of `y = cumprod(x)` along `d`.
fn gradient(
    g: &Tensor,
    x: &Tensor,
    y: &Tensor,
    d: usize,
    at: &'static Location<'static>,
) -> Tensor {
    let from_back = |t: &Tensor| scan(t, d, true, at);
    let Some(Zeros { before, first, after }) = zeros(x, d, at) else {
        return &from_back(&(g * y)) / x;
    };
    let early = &(&from_back(&(g * y)) / &divisor(x, &before)) * &before;
    let (x1, y1) = first_zero_as_one(x, &first, d, at);
    let at_zero = &from_back(&(g * &y1)) * &first;
    // After the first zero each derivative is that zero times the derivative for the row
    // with the zero set to one: zero in value, but not in its own derivative (second
    // order) with respect to the zero.
    let later = &(&zero_value(x, &first, d, at) * &gradient(g, &x1, &y1, d, at)) * &after;
    &(&early + &at_zero) + &later
}

/// `J v` for the tangent `v` of `x`: `dy_j = Σ_{k≤j} v_k Π_{i≤j, i≠k} x_i`, split at each
/// row's first zero `z` as the gradient is: from `z` on, `v_z` times the products without
/// `x_z`, plus `x_z` times the tangent of the row with `x_z` set to one and `v_z` to zero.
fn tangent(v: &Tensor, x: &Tensor, y: &Tensor, d: usize, at: &'static Location<'static>) -> Tensor {
    let running = |t: &Tensor| scan(t, d, false, at);
    let Some(Zeros { before, first, .. }) = zeros(x, d, at) else {
        return y * &running(&(v / x));
    };
    let early = &(y * &running(&(&(v / &divisor(x, &before)) * &before))) * &before;
    let (x1, y1) = first_zero_as_one(x, &first, d, at);
    let v1 = v * &first.rsub_scalar(1.0);
    let from_zero = &(&y1 * &running(&(v * &first)))
        + &(&zero_value(x, &first, d, at) * &tangent(&v1, &x1, &y1, d, at));
    &early + &(&from_zero * &before.rsub_scalar(1.0))
}

/// `cumprod` of `x` along `d` (resolved), recorded.
fn record(x: &Tensor, d: usize, location: &'static Location<'static>) -> Tensor {
    record_with_tangent(
        "cumprod",
        location,
        &[x],
        products(x, d),
        || {
            Backward::new(move |ctx| {
                let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.output());
                smallvec![Some(gradient(g, x, y, d, location))]
            })
            .save(x)
            .save_output()
        },
        |ctx| {
            let v = ctx.tangent(0).expect("the only input carries the tangent");
            tangent(v, ctx.input(0), ctx.output(), d, location)
        },
    )
}

/// PyTorch's `torch.cumprod(x, dim)`.
#[track_caller]
pub(crate) fn cumprod(x: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("cumprod", x, location)?;
    let d = resolve("cumprod", x, dim, location)?;
    if x.dim() == 0 {
        return Ok(crate::shape::reshape_to(x, &[]));
    }
    Ok(record(x, d, location))
}
