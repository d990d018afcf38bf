//! Products of elements: `prod` over everything or along a dimension.
//!
//! The derivative of a product by one factor is the product of the others. Dividing the
//! product by the factor gives it only when no factor is zero, so the rule builds the
//! "product of the others" from where the zeros are: none (divide), one (the zero's
//! derivative is the product of the nonzero factors; the others' carry the zero itself, so
//! their second derivatives survive), or more (all zero; second derivatives across two
//! zeros are lost there, and only there).

use std::panic::Location;

use tapegrad_kernels::columns::MIN_COLUMNS;
use tapegrad_kernels::product::{
    column_product_gradient, column_products, row_product_gradient, row_products,
};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Result, Storage, Tensor, ensure_float, map_float_storage, record_with_tangent,
};

use super::{reduced_shape, rows_along};
use crate::binary::where_;
use crate::dims::{blocks, resolve};

/// The product along `d` of `x`, shaped `kept` (size 1 at `d`).
#[track_caller]
pub(crate) fn prod_along(x: &Tensor, d: usize, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    let kept = reduced_shape(x.shape(), d, true);
    let out_shape = reduced_shape(x.shape(), d, keepdim);
    let value = Tensor::from_storage(products(x, d), Layout::contiguous(&out_shape));
    let make_backward = || {
        let kept = kept.clone();
        Backward::new(move |ctx| {
            let (g, x) = (ctx.grad(), ctx.saved(0));
            if let Some(fused) = fused_gradient(g, x, d) {
                return smallvec![Some(fused)];
            }
            let g = crate::shape::reshape_to(g, &kept);
            smallvec![Some(&g * &product_of_others(x, d))]
        })
        .save(x)
    };
    Ok(record_with_tangent("prod", location, &[x], value, make_backward, |ctx| {
        crate::tangent::by_groups(ctx, |t| {
            let summed = crate::reduce::sum_dim(t, d as isize, true).expect("dimension checked");
            crate::shape::reshape_to(&summed, &out_shape)
        })
    }))
}

/// The products along `d`, in row-major order of the other dimensions: down the columns in
/// place when `d` is followed by enough elements, else along rows moved last.
fn products(x: &Tensor, d: usize) -> Storage {
    let sizes @ (outer, _, inner) = blocks(x.shape(), d);
    if inner >= MIN_COLUMNS {
        return map_float_storage!(&x.contiguous_storage(), v => column_products(v, sizes));
    }
    let (rows, n) = rows_along(x, d);
    map_float_storage!(&rows, v => row_products(v, (outer * inner, n)))
}

/// The gradient in one pass over each row or column, as `products` takes them, with the
/// recorded rule's arithmetic (`kernels::product::column_product_gradient` or
/// `row_product_gradient`), for a backward that records nothing; `None` otherwise.
fn fused_gradient(g: &Tensor, x: &Tensor, d: usize) -> Option<Tensor> {
    if tapegrad_tape::is_grad_enabled() || g.dtype() != x.dtype() {
        return None;
    }
    let sizes @ (_, _, inner) = blocks(x.shape(), d);
    if inner >= MIN_COLUMNS {
        let grad = match (&g.contiguous_storage(), &x.contiguous_storage()) {
            (Storage::F32(g), Storage::F32(x)) => {
                Storage::from_vec(column_product_gradient(g, x, sizes))
            }
            (Storage::F64(g), Storage::F64(x)) => {
                Storage::from_vec(column_product_gradient(g, x, sizes))
            }
            _ => return None,
        };
        return Some(Tensor::from_storage(grad, Layout::contiguous(x.shape())));
    }
    let (rows, n) = rows_along(x, d);
    let count = g.numel();
    let grad = match (&g.contiguous_storage(), &rows) {
        (Storage::F32(g), Storage::F32(x)) => {
            Storage::from_vec(row_product_gradient(g, x, (count, n)))
        }
        (Storage::F64(g), Storage::F64(x)) => {
            Storage::from_vec(row_product_gradient(g, x, (count, n)))
        }
        _ => return None,
    };
    // The rows hold dimension `d` last: the gradient is laid out so, and viewed back in
    // `x`'s order.
    let last = x.dim() - 1;
    let order: Vec<usize> = (0..x.dim()).filter(|&i| i != d).chain([d]).collect();
    let row_shape: Vec<usize> = order.iter().map(|&i| x.shape()[i]).collect();
    let mut back: Vec<usize> = (0..last).collect();
    back.insert(d, last);
    Some(Tensor::from_storage(grad, Layout::contiguous(&row_shape).permute(&back)))
}

/// For each element, the product of the other elements of its row along `d`, built from
/// differentiable operations (see the module documentation for the cases).
fn product_of_others(x: &Tensor, d: usize) -> Tensor {
    let equal = |a: &Tensor, b: &Tensor| {
        crate::binary::compare("eq", a, b, |a, b| a == b).expect("operands of one shape")
    };
    let zero = x.zeros_like();
    let is_zero = equal(x, &zero);
    let zeros_in_row = crate::reduce::sum_dim(&is_zero.to_dtype(x.dtype()), d as isize, true)
        .expect("dimension checked by the forward");
    let nonzero = where_(&is_zero, &x.ones_like(), x);
    let nonzero_product = prod_along(&nonzero, d, true).expect("same shape as the forward");
    // The row's zero factor itself (0 in value, but its derivative is the mask).
    let the_zero = crate::reduce::sum_dim(&(x * &is_zero.to_dtype(x.dtype())), d as isize, true)
        .expect("dimension checked by the forward");
    let no_zero = &nonzero_product / &nonzero;
    let one_zero = where_(&is_zero, &nonzero_product, &(&the_zero * &no_zero));
    let none = equal(&zeros_in_row, &zeros_in_row.zeros_like());
    let one = equal(&zeros_in_row, &zeros_in_row.ones_like());
    where_(&none, &no_zero, &where_(&one, &one_zero, &zero))
}

/// The product of all elements, as a 0-d tensor.
#[track_caller]
pub(crate) fn prod(x: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("prod", x, location)?;
    let flat = crate::shape::reshape_to(x, &[x.numel()]);
    prod_along(&flat, 0, false)
}

/// The product along `dim`.
#[track_caller]
pub(crate) fn prod_dim(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("prod_dim", x, location)?;
    if x.dim() == 0 {
        resolve("prod_dim", x, dim, location)?;
        return Ok(crate::shape::reshape_to(x, &[]));
    }
    let d = resolve("prod_dim", x, dim, location)?;
    prod_along(x, d, keepdim)
}
