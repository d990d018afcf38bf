//! The backward rule of an elementwise function of its input, `g F'(x)`, as one recorded op
//! of `g` and `x` (PyTorch's `silu_backward`, `gelu_backward`, `softplus_backward`).
//!
//! Under `create_graph` (gradient penalties, Hessian-vector products, score matching, PINNs)
//! the rule's result is differentiated again. Written as separate ops (`g * s * (1 + x (1 -
//! s))` for SiLU) it recorded half a dozen full-size ops, and their rules as many again in
//! the next backward pass. As one op it is one pass forward, and its own rule is one pass
//! for `g` (the op itself, on the new incoming gradient) and two for `x` (`gg g F''(x)`,
//! fused while nothing records it). Only a third derivative composes `F''` from recorded
//! ops ([`Derivatives::second_recorded`]), so every order stays available.

use std::panic::Location;

use tapegrad_kernels::simd::ElementFn2;
use tapegrad_tape::layout::same_shape;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Tensor, is_grad_enabled, record_with_tangent};

use crate::elementwise::{Special, grad_value, zip_fresh};
use crate::unary::TimesDerivative;

/// The first two derivatives of an elementwise function `F`, elementwise and as recorded
/// ops. Parameters (softplus's `beta`) live in the implementing value.
pub(crate) trait Derivatives: Copy + Send + Sync + 'static {
    /// `g F'(x)`.
    fn first<T: Special>(self, g: T, x: T) -> T;
    /// `g F''(x)`.
    fn second<T: Special>(self, g: T, x: T) -> T;
    /// `g F''(x)` written with recorded ops, so that derivatives of every order exist.
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor;
}

/// [`Derivatives::first`] as the kernels' element function.
#[derive(Clone, Copy)]
struct First<D>(D);

impl<D: Derivatives, T: Special> ElementFn2<T, T, T> for First<D> {
    #[inline(always)]
    fn call(&self, g: T, x: T) -> T {
        self.0.first(g, x)
    }
}

/// [`Derivatives::second`] as the kernels' element function.
#[derive(Clone, Copy)]
struct Second<D>(D);

impl<D: Derivatives, T: Special> ElementFn2<T, T, T> for Second<D> {
    #[inline(always)]
    fn call(&self, g: T, x: T) -> T {
        self.0.second(g, x)
    }
}

/// `g F'(x)` recorded as the op `op` of `g` and `x`: the rule of `F` under `create_graph`.
/// `derivative` is `F'(x)` where the forward pass kept it: then the value is a product
/// (the same bits: `first` takes the product last) instead of `F'` evaluated again.
#[track_caller]
pub(crate) fn derivative_op<D: Derivatives>(
    op: &'static str,
    g: &Tensor,
    x: &Tensor,
    derivatives: D,
    derivative: Option<&Tensor>,
) -> Tensor {
    let location = Location::caller();
    let value = if !same_shape(g.shape(), x.shape()) {
        None
    } else if let Some(d) = derivative.filter(|d| same_shape(d.shape(), x.shape())) {
        d.read_storage(|d, layout| grad_value::<TimesDerivative>(g, (d, layout)))
    } else {
        x.read_storage(|x, layout| {
            zip_fresh(g, (x, layout), First(derivatives), First(derivatives))
        })
    };
    let Some(value) = value else {
        // A gradient that only broadcasts to the input (the sweep passes the output's
        // shape): the rule is linear in it.
        return g * &derivative_op(op, &x.ones_like(), x, derivatives, derivative);
    };
    let has_derivative = derivative.is_some();
    let make_backward = || {
        let backward = Backward::new(move |ctx| {
            let (g, x, gg) = (ctx.saved(0), ctx.saved(1), ctx.grad());
            let d = has_derivative.then(|| ctx.saved(2));
            smallvec![
                ctx.needs_input_grad(0).then(|| derivative_op(op, gg, x, derivatives, d)),
                ctx.needs_input_grad(1).then(|| second_derivative(&(gg * g), x, derivatives)),
            ]
        })
        .save(g)
        .save(x);
        match derivative {
            Some(d) => backward.save(d),
            None => backward,
        }
    };
    record_with_tangent(op, location, &[g, x], value, make_backward, |ctx| {
        ctx.sum(|i, v| {
            if i == 0 {
                derivative_op(op, v, x, derivatives, derivative)
            } else {
                second_derivative(&(v * g), x, derivatives)
            }
        })
    })
}

/// `h F''(x)`: one pass when nothing records it, recorded ops otherwise.
fn second_derivative<D: Derivatives>(h: &Tensor, x: &Tensor, derivatives: D) -> Tensor {
    if !is_grad_enabled() && same_shape(h.shape(), x.shape()) {
        let fused = x.read_storage(|x, layout| {
            zip_fresh(h, (x, layout), Second(derivatives), Second(derivatives))
        });
        if let Some(value) = fused {
            return value;
        }
    }
    derivatives.second_recorded(h, x)
}
