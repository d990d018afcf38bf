//! Elementwise functions of one tensor and their backward rules.
//!
//! Every rule is written with recorded operations on the saved input or output, so that
//! under `create_graph` it is differentiated again; masks for piecewise functions are
//! constants (their derivative is zero almost everywhere).
//!
//! **How a rule is written.** The canonical form, which every op uses unless a benchmark
//! showed the need for more, is a closure over the [`BackwardCtx`](tapegrad_tape::BackwardCtx)
//! that returns one optional gradient per input, computed with tensor operations, plus the
//! values it needs saved at record time. `exp` (below) is the whole pattern:
//!
//! ```text
//! Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.output())]).save_output()
//! ```
//!
//! One named variant serves the hottest rules only (tanh, sigmoid, relu; the measurement is
//! in docs/BENCHMARKS.md): `fused_rule` computes the same product in one pass, in place
//! when nothing else sees the incoming gradient, when no graph is being recorded, and
//! returns `None` otherwise so that the rule falls back to the canonical form. There, under
//! `create_graph`, tanh's and sigmoid's rules are each one recorded op of the gradient and
//! the output (`output_rule`, PyTorch's `tanh_backward`), whose own rules are recorded ops
//! again: a gradient penalty through a tanh network differentiates a few passes per layer
//! rather than a dozen. GELU and SiLU, whose derivatives cost as much as their values,
//! compute both in one pass when recorded on a large contiguous input and save the
//! derivative, so that their fused rule is one multiplication (`unary_saving_derivative`).
//!
//! The methods are at the end of the file: [`UnaryOps`], with [`Exponent`] for `pow`.

use std::f64::consts::FRAC_2_SQRT_PI;
use std::marker::PhantomData;
use std::panic::Location;

use tapegrad_kernels::fast_math::{exp_f32, exp_m1_f32};
use tapegrad_kernels::simd::ElementFn;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::layout::same_shape;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, BackwardCtx, Element, Result, Storage, Tensor, ensure_float, kernels, or_panic,
    record_with_tangent, will_record,
};

use crate::binary::{select_grad, try_where};
use crate::derivative::{Derivatives, derivative_op};
use crate::elementwise::{
    BinaryFn, Special, UnaryFn, binary_fn, fused_rule, grad_value, mask, unary, unary_fn,
    unary_with,
};
use crate::options::setters;

unary_fn!(Exp, |x| x.exp_vectorisable());
unary_fn!(Log, |x| x.ln_vectorisable());
unary_fn!(Log1p, |x| x.ln_1p_vectorisable());
unary_fn!(Tanh, |x| x.tanh_vectorisable());
unary_fn!(Sigmoid, |x| sigmoid(x));
// `x < 0 ? 0 : x`, not `x > 0 ? x : 0`: NaN stays NaN and -0 stays -0 (PyTorch's values),
// and it is still one `max` instruction (which returns its second operand on NaN).
unary_fn!(Relu, |x| if x < T::ZERO { T::ZERO } else { x });
unary_fn!(Abs, |x| x.abs());
unary_fn!(Sign, |x| if x > T::ZERO {
    T::ONE
} else if x < T::ZERO {
    -T::ONE
} else {
    T::ZERO
});
unary_fn!(Sqrt, |x| x.sqrt());
unary_fn!(Rsqrt, |x| T::ONE / x.sqrt());
unary_fn!(Square, |x| x * x);
unary_fn!(Reciprocal, |x| T::ONE / x);
unary_fn!(Sin, |x| x.sin());
unary_fn!(Cos, |x| x.cos());
unary_fn!(SinInRange, |x| x.sin_in_range());
unary_fn!(CosInRange, |x| x.cos_in_range());
unary_fn!(Erf, |x| x.erf());
unary_fn!(Silu, |x| x * sigmoid(x));
unary_fn!(GeluErf, |x| x * x.normal_cdf());
binary_fn!(TanhGrad, |g, y| g * (T::ONE - y * y));
binary_fn!(SigmoidGrad, |g, y| g * (y * (T::ONE - y)));
// PyTorch's `threshold_backward(g, y, 0)`: `y <= 0 ? 0 : g`, so NaN passes the gradient.
binary_fn!(ReluGrad, |g, x| if x <= T::ZERO { T::ZERO } else { g });
// d/dx x s(x) = s (1 + x (1 - s)).
binary_fn!(SiluGrad, |g, x| {
    let s = sigmoid(x);
    g * (s * (T::ONE + x * (T::ONE - s)))
});
// d/dx x Phi(x) = Phi(x) + x phi(x).
binary_fn!(GeluErfGrad, |g, x| g * x.gelu_derivative());
// Within the vectorised functions' domain (only used there).
binary_fn!(SinGrad, |g, x| g * x.cos_in_range());
binary_fn!(CosGrad, |g, x| -(g * x.sin_in_range()));
// The gradient times a derivative saved by the forward pass.
binary_fn!(TimesDerivative, |g, d| g * d);

/// `F` and its derivative `G(1, x)` of one element (`G(g, x) = g F'(x)`, the product
/// taken last, so `G(g, x)` and `g` times the derivative are the same bits): two inlined
/// functions whose common work (GELU's normal tail, SiLU's sigmoid) the compiler does once.
struct WithDerivative<F, G>(PhantomData<fn() -> (F, G)>);

// By hand: a derive would ask `F: Copy` and `G: Copy` of the marker types.
impl<F, G> Clone for WithDerivative<F, G> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F, G> Copy for WithDerivative<F, G> {}

impl<F: UnaryFn, G: BinaryFn, T: Special> ElementFn<T, (T, T)> for WithDerivative<F, G> {
    #[inline(always)]
    fn call(&self, x: T) -> (T, T) {
        (F::apply(x), G::apply(T::ONE, x))
    }
}

// y = x/2 (1 + tanh u), u = c (x + k x^3): dy/dx = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3k x^2).
binary_fn!(GeluTanhGrad, |g, x| {
    let (half, c, k) =
        (T::from_f64(0.5), T::from_f64((2.0 / std::f64::consts::PI).sqrt()), T::from_f64(0.044715));
    let t = (c * (x + k * x * x * x)).tanh_vectorisable();
    let du = c * (T::ONE + T::from_f64(3.0) * k * x * x);
    g * (half * (T::ONE + t) + half * x * (T::ONE - t * t) * du)
});

unary_fn!(GeluTanh, |x| {
    let c = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
    let half = T::from_f64(0.5);
    half * x * (T::ONE + (c * (x + T::from_f64(0.044715) * x * x * x)).tanh_vectorisable())
});

/// A logistic function that never overflows: `exp` is only taken of non-positive values.
#[inline(always)]
pub(crate) fn sigmoid<T: Element>(x: T) -> T {
    // Branch-free so that it vectorises: `e^-|x|` in (0, 1], then the half that applies.
    let e = (-x.abs()).exp_vectorisable();
    let positive = T::ONE / (T::ONE + e);
    if x >= T::ZERO { positive } else { e * positive }
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
#[inline(always)]
pub(crate) fn softplus<T: Element>(x: T) -> T {
    x.softplus_vectorisable()
}

#[track_caller]
pub(crate) fn exp(x: &Tensor) -> Tensor {
    unary::<Exp>("exp", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.output())]).save_output()
    })
}

#[track_caller]
pub(crate) fn log(x: &Tensor) -> Tensor {
    unary::<Log>("log", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() / ctx.saved(0))]).save(x)
    })
}

#[track_caller]
pub(crate) fn log1p(x: &Tensor) -> Tensor {
    unary::<Log1p>("log1p", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() / &ctx.saved(0).add_scalar(1.0))]).save(x)
    })
}

#[track_caller]
pub(crate) fn tanh(x: &Tensor) -> Tensor {
    unary::<Tanh>("tanh", x, || {
        // 1 - tanh^2, in terms of the output so double backward goes through it.
        Backward::new(|ctx| {
            let g = fused_rule::<TanhGrad>(ctx, ctx.output_parts()).unwrap_or_else(|| {
                // ∂/∂y g (1 - y²) = -2 g y
                output_rule::<TanhGrad>("tanh_backward", ctx.grad(), ctx.output(), |g, y| {
                    (g * y).mul_scalar(-2.0)
                })
            });
            smallvec![Some(g)]
        })
        .save_output()
    })
}

/// `F(g, y)`: the backward rule of an elementwise op in terms of its output `y` (`F` is
/// linear in the incoming gradient `g`), as one recorded op of `g` and `y`, as PyTorch's
/// `tanh_backward` is. Under `create_graph` its own rule is then `F(gg, y)` and
/// `gg * dfdy(g, y)`, a few passes, where the formula as separate ops (`g * (1 - y * y)`)
/// recorded three and its rules took eight more. `dfdy` is `∂F/∂y`, written with recorded
/// ops so that every further order goes through it too.
#[track_caller]
fn output_rule<F: BinaryFn>(
    op: &'static str,
    g: &Tensor,
    y: &Tensor,
    dfdy: fn(&Tensor, &Tensor) -> Tensor,
) -> Tensor {
    let location = Location::caller();
    let value = if same_shape(g.shape(), y.shape()) {
        y.read_storage(|y, layout| grad_value::<F>(g, (y, layout)))
    } else {
        None
    };
    let Some(value) = value else {
        // A gradient that only broadcasts to the output (the sweep passes the output's
        // shape): `F` is linear in it.
        return g * &output_rule::<F>(op, &y.ones_like(), y, dfdy);
    };
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, y, gg) = (ctx.saved(0), ctx.saved(1), ctx.grad());
            smallvec![
                ctx.needs_input_grad(0).then(|| output_rule::<F>(op, gg, y, dfdy)),
                ctx.needs_input_grad(1).then(|| gg * &dfdy(g, y)),
            ]
        })
        .save(g)
        .save(y)
    };
    record_with_tangent(op, location, &[g, y], value, make_backward, |ctx| {
        ctx.sum(|i, v| if i == 0 { output_rule::<F>(op, v, y, dfdy) } else { v * &dfdy(g, y) })
    })
}

#[track_caller]
pub(crate) fn sigmoid_op(x: &Tensor) -> Tensor {
    unary::<Sigmoid>("sigmoid", x, || {
        Backward::new(|ctx| {
            let g = fused_rule::<SigmoidGrad>(ctx, ctx.output_parts()).unwrap_or_else(|| {
                // ∂/∂y g y (1 - y) = g (1 - 2y)
                output_rule::<SigmoidGrad>("sigmoid_backward", ctx.grad(), ctx.output(), |g, y| {
                    g * &y.mul_scalar(-2.0).add_scalar(1.0)
                })
            });
            smallvec![Some(g)]
        })
        .save_output()
    })
}

/// `max(x, 0)` as PyTorch: NaN stays NaN (a diverging model shows), -0 stays -0, and the
/// gradient is `x <= 0 ? 0 : g` (NaN passes it), selected, so an infinite incoming gradient
/// gives 0, not NaN, where `x <= 0`.
#[track_caller]
pub(crate) fn relu(x: &Tensor) -> Tensor {
    unary::<Relu>("relu", x, || {
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            let g = x
                .read_storage(|x, layout| fused_rule::<ReluGrad>(ctx, (x, layout)))
                .unwrap_or_else(|| select_grad(&mask(x, |v| v > 0.0 || v.is_nan()), ctx.grad()));
            smallvec![Some(g)]
        })
        .save(x)
    })
}

/// `x > 0 ? x : slope x`; NaN stays NaN, and its gradient is `slope g`, as in PyTorch
/// (`x > 0 ? g : slope g`).
#[track_caller]
pub(crate) fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    let s32 = slope as f32;
    unary_with(
        "leaky_relu",
        x,
        move |v| if v > 0.0 { v } else { v * s32 },
        move |v| if v > 0.0 { v } else { v * slope },
        || {
            Backward::new(move |ctx| {
                let x = ctx.saved(0);
                let fused = crate::elementwise::fused_rule_with(
                    ctx,
                    x,
                    move |g, v| if v > 0.0 { g } else { g * s32 },
                    move |g, v| if v > 0.0 { g } else { g * slope },
                );
                if let Some(grad) = fused {
                    return smallvec![Some(grad)];
                }
                let factor = crate::elementwise::map_with(
                    x,
                    move |v| if v > 0.0 { 1.0 } else { s32 },
                    move |v| if v > 0.0 { 1.0 } else { slope },
                );
                smallvec![Some(ctx.grad() * &factor)]
            })
            .save(x)
        },
    )
}

/// `x > 0 ? x : alpha (e^x - 1)`; NaN stays NaN, with gradient `g` (PyTorch's rule
/// `x <= 0 ? g alpha e^x : g`), and `g` at +inf.
#[track_caller]
pub(crate) fn elu(x: &Tensor, alpha: f64) -> Tensor {
    elu_scaled("elu", x, alpha, 1.0, 1.0)
}

/// PyTorch's `elu(x, alpha, scale, input_scale)`, which SELU and CELU are too:
/// `x > 0 ? scale x : scale alpha (e^(input_scale x) - 1)`; NaN stays NaN, with gradient
/// `scale g` (PyTorch's scalar rule), and `scale g` at +inf.
#[track_caller]
pub(crate) fn elu_scaled(
    op: &'static str,
    x: &Tensor,
    alpha: f64,
    scale: f64,
    input_scale: f64,
) -> Tensor {
    // PyTorch's coefficients: the negative branch is `expm1(input_scale x) (alpha scale)`.
    let negative = alpha * scale;
    let (n32, s32, i32_) = (negative as f32, scale as f32, input_scale as f32);
    unary_with(
        op,
        x,
        move |v| if v > 0.0 { v * s32 } else { exp_m1_f32(v * i32_) * n32 },
        move |v| if v > 0.0 { v * scale } else { (v * input_scale).exp_m1() * negative },
        || {
            // `x <= 0 ? g input_scale alpha scale e^(input_scale x) : scale g` (so NaN passes
            // the gradient): selected, with the exponential taken of the non-positive part
            // only, so +inf gives `scale g`, not 0 * e^inf = NaN, also under double backward.
            let slope = input_scale * negative;
            let (slope32, scale32, input32) = (slope as f32, scale as f32, input_scale as f32);
            Backward::new(move |ctx| {
                let (g, x) = (ctx.grad(), ctx.saved(0));
                let fused = crate::elementwise::fused_rule_with(
                    ctx,
                    x,
                    move |g, v| {
                        let pos = (v > 0.0) | v.is_nan();
                        let e = exp_f32(if pos { 0.0 } else { v * input32 });
                        if pos { g * scale32 } else { g * (e * slope32) }
                    },
                    move |g, v| {
                        let pos = (v > 0.0) | v.is_nan();
                        let e = (if pos { 0.0 } else { v * input_scale }).exp();
                        if pos { g * scale } else { g * (e * slope) }
                    },
                );
                if let Some(grad) = fused {
                    return smallvec![Some(grad)];
                }
                let derivatives = EluDerivatives { scale, input_scale, slope };
                smallvec![Some(derivative_op("elu_backward", g, x, derivatives, None))]
            })
            .save(x)
        },
    )
}

/// The derivatives of PyTorch's `elu(x, alpha, scale, input_scale)`, with `slope = alpha
/// scale input_scale`: `F' = scale` and `F'' = 0` where `x > 0` (or NaN), else `F' = slope
/// e^(input_scale x)` and `F'' = input_scale F'`. The exponential is taken of the
/// non-positive part only, so +inf gives `scale g`, not 0 * e^inf = NaN.
#[derive(Clone, Copy)]
struct EluDerivatives {
    scale: f64,
    input_scale: f64,
    slope: f64,
}

impl EluDerivatives {
    /// Whether `x` takes the linear branch, and `slope e^(input_scale x)` off it.
    #[inline(always)]
    fn branch<T: Special>(self, x: T) -> (bool, T) {
        let linear = (x > T::ZERO) | x.is_nan();
        let exponent = if linear { T::ZERO } else { x * T::from_f64(self.input_scale) };
        (linear, exponent.exp_vectorisable() * T::from_f64(self.slope))
    }
}

impl Derivatives for EluDerivatives {
    #[inline(always)]
    fn first<T: Special>(self, g: T, x: T) -> T {
        let (linear, curve) = self.branch(x);
        if linear { g * T::from_f64(self.scale) } else { g * curve }
    }
    #[inline(always)]
    fn second<T: Special>(self, g: T, x: T) -> T {
        let (linear, curve) = self.branch(x);
        if linear { T::ZERO } else { g * (curve * T::from_f64(self.input_scale)) }
    }
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor {
        let linear = mask(x, |v| v > 0.0 || v.is_nan());
        let zero = Tensor::zeros_dtype(&[], x.dtype());
        let negative_part = try_where(&linear, &zero, x).expect("same shape");
        let curve = exp(&negative_part.mul_scalar(self.input_scale));
        let inside = g * &curve.mul_scalar(self.slope * self.input_scale);
        try_where(&linear, &zero, &inside).expect("same shape")
    }
}

#[track_caller]
pub(crate) fn abs(x: &Tensor) -> Tensor {
    unary::<Abs>("abs", x, || {
        Backward::new(|ctx| {
            smallvec![Some(ctx.grad() * &crate::elementwise::map::<Sign>(ctx.saved(0)))]
        })
        .save(x)
    })
}

#[track_caller]
pub(crate) fn sqrt(x: &Tensor) -> Tensor {
    unary::<Sqrt>("sqrt", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() / &ctx.output().mul_scalar(2.0))])
            .save_output()
    })
}

#[track_caller]
pub(crate) fn rsqrt(x: &Tensor) -> Tensor {
    unary::<Rsqrt>("rsqrt", x, || {
        // d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
        Backward::new(|ctx| {
            let y = ctx.output();
            smallvec![Some(ctx.grad() * &(&(y * y) * y).mul_scalar(-0.5))]
        })
        .save_output()
    })
}

#[track_caller]
pub(crate) fn square(x: &Tensor) -> Tensor {
    unary::<Square>("square", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() * &ctx.saved(0).mul_scalar(2.0))]).save(x)
    })
}

#[track_caller]
pub(crate) fn reciprocal(x: &Tensor) -> Tensor {
    unary::<Reciprocal>("reciprocal", x, || {
        Backward::new(|ctx| {
            let y = ctx.output();
            smallvec![Some(-(ctx.grad() * &(y * y)))]
        })
        .save_output()
    })
}

/// `sin(x)`. Within the vectorised functions' domain the sine and cosine of an element share
/// their reduction and series, so a recorded op keeps the derivative from the forward pass
/// and a plain backward is one product.
#[track_caller]
pub(crate) fn sin(x: &Tensor) -> Tensor {
    let composed = |ctx: &BackwardCtx<'_>, _: Option<&Tensor>| ctx.grad() * &cos(ctx.saved(0));
    if within_sin_cos_bound(x) {
        return unary_saving_derivative::<SinInRange, SinGrad>("sin", x, composed);
    }
    unary::<Sin>("sin", x, || {
        Backward::new(move |ctx| smallvec![Some(composed(ctx, None))]).save(x)
    })
}

/// `cos(x)`, as [`sin`].
#[track_caller]
pub(crate) fn cos(x: &Tensor) -> Tensor {
    let composed = |ctx: &BackwardCtx<'_>, _: Option<&Tensor>| -(ctx.grad() * &sin(ctx.saved(0)));
    if within_sin_cos_bound(x) {
        return unary_saving_derivative::<CosInRange, CosGrad>("cos", x, composed);
    }
    unary::<Cos>("cos", x, || {
        Backward::new(move |ctx| smallvec![Some(composed(ctx, None))]).save(x)
    })
}

/// Whether `x` is a contiguous f32 tensor whose every value lies within the vectorised sine's
/// and cosine's domain (`|v| <= SIN_COS_BOUND`, NaN included); f64 and other tensors take the
/// standard library's functions.
fn within_sin_cos_bound(x: &Tensor) -> bool {
    let layout = x.layout();
    if !layout.is_contiguous() {
        return false;
    }
    let range = layout.offset()..layout.offset() + layout.numel();
    match x.storage() {
        Storage::F32(v) => tapegrad_kernels::fast_math::within_sin_cos_bound(&v[range]),
        _ => false,
    }
}

/// The error function (PyTorch's `torch.erf`).
#[track_caller]
pub(crate) fn erf(x: &Tensor) -> Tensor {
    unary::<Erf>("erf", x, || {
        // d erf = 2/sqrt(pi) e^(-x^2)
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            smallvec![Some(ctx.grad() * &exp(&-square(x)).mul_scalar(FRAC_2_SQRT_PI))]
        })
        .save(x)
    })
}

#[track_caller]
pub(crate) fn silu(x: &Tensor) -> Tensor {
    unary_saving_derivative::<Silu, SiluGrad>("silu", x, |ctx, derivative| {
        derivative_op("silu_backward", ctx.grad(), ctx.saved(0), SiluDerivatives, derivative)
    })
}

/// SiLU's derivatives: `F' = s (1 + x (1 - s))`, `F'' = s (1 - s) (2 + x (1 - 2 s))`.
#[derive(Clone, Copy)]
struct SiluDerivatives;

impl Derivatives for SiluDerivatives {
    #[inline(always)]
    fn first<T: Special>(self, g: T, x: T) -> T {
        SiluGrad::apply(g, x)
    }
    #[inline(always)]
    fn second<T: Special>(self, g: T, x: T) -> T {
        let s = sigmoid(x);
        let two = T::from_f64(2.0);
        g * (s * (T::ONE - s) * (two + x * (T::ONE - two * s)))
    }
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor {
        let s = sigmoid_op(x);
        let slope = &s * &s.rsub_scalar(1.0);
        let bend = (x * &s.mul_scalar(-2.0).add_scalar(1.0)).add_scalar(2.0);
        g * &(&slope * &bend)
    }
}

/// GELU, exact (`x Phi(x)`) or with PyTorch's tanh approximation.
#[track_caller]
pub(crate) fn gelu(x: &Tensor, tanh_approximation: bool) -> Tensor {
    if tanh_approximation {
        // y = x/2 (1 + tanh u), u = c (x + k x^3):
        // dy/dx = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3k x^2)
        return unary_saving_derivative::<GeluTanh, GeluTanhGrad>(
            "gelu_tanh",
            x,
            |ctx, derivative| {
                derivative_op(
                    "gelu_backward",
                    ctx.grad(),
                    ctx.saved(0),
                    GeluTanhDerivatives,
                    derivative,
                )
            },
        );
    }
    unary_saving_derivative::<GeluErf, GeluErfGrad>("gelu", x, |ctx, derivative| {
        derivative_op("gelu_backward", ctx.grad(), ctx.saved(0), GeluErfDerivatives, derivative)
    })
}

/// `1 / sqrt(2 pi)`, the standard normal density at 0.
const NORMAL_DENSITY_AT_0: f64 = 0.398_942_280_401_432_7;

/// Exact GELU's derivatives: `F' = Phi(x) + x phi(x)`, `F'' = phi(x) (2 - x^2)`.
#[derive(Clone, Copy)]
struct GeluErfDerivatives;

impl Derivatives for GeluErfDerivatives {
    #[inline(always)]
    fn first<T: Special>(self, g: T, x: T) -> T {
        GeluErfGrad::apply(g, x)
    }
    #[inline(always)]
    fn second<T: Special>(self, g: T, x: T) -> T {
        let x2 = x * x;
        let density =
            (T::from_f64(-0.5) * x2).exp_vectorisable() * T::from_f64(NORMAL_DENSITY_AT_0);
        g * (density * (T::from_f64(2.0) - x2))
    }
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor {
        let x2 = square(x);
        let density = exp(&x2.mul_scalar(-0.5)).mul_scalar(NORMAL_DENSITY_AT_0);
        g * &(&density * &x2.rsub_scalar(2.0))
    }
}

/// The tanh form's derivatives. With `t = tanh u`, `u = c (x + k x^3)`, `u' = c (1 + 3 k
/// x^2)` and `u'' = 6 c k x`: `F' = (1 + t) / 2 + x (1 - t^2) u' / 2`, `F'' = (1 - t^2) (u' +
/// x (u'' - 2 t u'^2) / 2)`.
#[derive(Clone, Copy)]
struct GeluTanhDerivatives;

/// The tanh form's `c` and `k`.
const GELU_TANH_C: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_K: f64 = 0.044715;

impl Derivatives for GeluTanhDerivatives {
    #[inline(always)]
    fn first<T: Special>(self, g: T, x: T) -> T {
        GeluTanhGrad::apply(g, x)
    }
    #[inline(always)]
    fn second<T: Special>(self, g: T, x: T) -> T {
        let (c, k, half) = (T::from_f64(GELU_TANH_C), T::from_f64(GELU_TANH_K), T::from_f64(0.5));
        let x2 = x * x;
        let t = (c * (x + k * x2 * x)).tanh_vectorisable();
        let du = c * (T::ONE + T::from_f64(3.0) * k * x2);
        let ddu = T::from_f64(6.0) * c * k * x;
        g * ((T::ONE - t * t) * (du + half * x * (ddu - T::from_f64(2.0) * t * du * du)))
    }
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor {
        let (c, k) = (GELU_TANH_C, GELU_TANH_K);
        let x2 = square(x);
        let t = tanh(&(x + &(&x2 * x).mul_scalar(k)).mul_scalar(c));
        let du = x2.mul_scalar(3.0 * k).add_scalar(1.0).mul_scalar(c);
        let ddu = x.mul_scalar(6.0 * c * k);
        let bend = &ddu - &(&(&t * &du) * &du).mul_scalar(2.0);
        let inner = &du + &(x * &bend).mul_scalar(0.5);
        g * &(&square(&t).rsub_scalar(1.0) * &inner)
    }
}

/// Records `F` on `x` (saving `x`) with a rule that multiplies the gradient by `F`'s
/// derivative, `G(g, x) = g F'(x)`, in one fused pass without `create_graph`, and is
/// `composed` (recorded ops, given the saved derivative if there is one) with it. Recorded
/// on a large contiguous input, the forward
/// pass computes the derivative beside the value and saves it, so backward multiplies
/// instead of evaluating a function as costly as `F` again (GELU, SiLU); otherwise the
/// rule evaluates `G`.
#[track_caller]
pub(crate) fn unary_saving_derivative<F: UnaryFn, G: BinaryFn>(
    op: &'static str,
    x: &Tensor,
    composed: impl Fn(&BackwardCtx<'_>, Option<&Tensor>) -> Tensor + Copy + Send + Sync + 'static,
) -> Tensor {
    let location = Location::caller();
    if let Some((y, derivative)) = value_and_derivative::<F, G>(x) {
        let make = || {
            Backward::new(move |ctx| {
                let d = ctx.saved(1);
                if let Some(g) =
                    d.read_storage(|d, layout| fused_rule::<TimesDerivative>(ctx, (d, layout)))
                {
                    return smallvec![Some(g)];
                }
                smallvec![Some(composed(ctx, Some(d)))]
            })
            .save(x)
            .save(&derivative)
        };
        return record_with_tangent(op, location, &[x], y, make, |ctx| ctx.elementwise());
    }
    unary::<F>(op, x, || {
        Backward::new(move |ctx| {
            let x = ctx.saved(0);
            if let Some(g) = x.read_storage(|x, layout| fused_rule::<G>(ctx, (x, layout))) {
                return smallvec![Some(g)];
            }
            smallvec![Some(composed(ctx, None))]
        })
        .save(x)
    })
}

/// Below this many elements a rule evaluates the derivative again instead of keeping one
/// from the forward pass: for small tensors a second buffer and saved tensor cost more than
/// the evaluation.
const SAVES_DERIVATIVE_FROM: usize = 4096;

/// `F(x)` and its derivative `G(1, x)` from one pass over `x`, when the op will be recorded
/// and `x` is a large contiguous float tensor; `None` otherwise.
fn value_and_derivative<F: UnaryFn, G: BinaryFn>(x: &Tensor) -> Option<(Tensor, Tensor)> {
    let layout = x.layout();
    let n = layout.numel();
    if n < SAVES_DERIVATIVE_FROM || !layout.is_contiguous() || !will_record(&[x]) {
        return None;
    }
    let range = layout.offset()..layout.offset() + n;
    let both = WithDerivative::<F, G>(PhantomData);
    let (y, derivative) = match x.storage() {
        Storage::F32(v) => kernels::map_pairs_into_storage(&v[range], both),
        Storage::F64(v) => kernels::map_pairs_into_storage(&v[range], both),
        Storage::I64(_) | Storage::Bool(_) => return None,
    };
    let shape = Layout::contiguous(x.shape());
    Some((Tensor::from_storage(y, shape.clone()), Tensor::from_storage(derivative, shape)))
}

/// `ln(1 + e^(beta x)) / beta`, linear above `threshold` as in PyTorch.
#[track_caller]
pub(crate) fn softplus_op(x: &Tensor, beta: f64, threshold: f64) -> Tensor {
    let (b32, t32) = (beta as f32, threshold as f32);
    unary_with(
        "softplus",
        x,
        move |v| if v * b32 > t32 { v } else { softplus(v * b32) / b32 },
        move |v| if v * beta > threshold { v } else { softplus(v * beta) / beta },
        || {
            Backward::new(move |ctx| {
                let x = ctx.saved(0);
                let fused = crate::elementwise::fused_rule_with(
                    ctx,
                    x,
                    move |g, v| if v * b32 > t32 { g } else { g * sigmoid(v * b32) },
                    move |g, v| if v * beta > threshold { g } else { g * sigmoid(v * beta) },
                );
                if let Some(grad) = fused {
                    return smallvec![Some(grad)];
                }
                let derivatives = SoftplusDerivatives { beta, threshold };
                smallvec![Some(derivative_op(
                    "softplus_backward",
                    ctx.grad(),
                    x,
                    derivatives,
                    None
                ))]
            })
            .save(x)
        },
    )
}

/// Softplus's derivatives, with `s = sigmoid(beta x)`: `F' = s` and `F'' = beta s (1 - s)`,
/// and `1` and `0` in the linear region (`beta x > threshold`).
#[derive(Clone, Copy)]
struct SoftplusDerivatives {
    beta: f64,
    threshold: f64,
}

impl Derivatives for SoftplusDerivatives {
    #[inline(always)]
    fn first<T: Special>(self, g: T, x: T) -> T {
        let bx = x * T::from_f64(self.beta);
        if bx > T::from_f64(self.threshold) { g } else { g * sigmoid(bx) }
    }
    #[inline(always)]
    fn second<T: Special>(self, g: T, x: T) -> T {
        let beta = T::from_f64(self.beta);
        let bx = x * beta;
        let s = sigmoid(bx);
        let curve = g * (beta * s * (T::ONE - s));
        if bx > T::from_f64(self.threshold) { T::ZERO } else { curve }
    }
    fn second_recorded(self, g: &Tensor, x: &Tensor) -> Tensor {
        let (beta, threshold) = (self.beta, self.threshold);
        let curved = mask(x, move |v| v * beta <= threshold || v.is_nan());
        let s = sigmoid_op(&x.mul_scalar(beta));
        let curve = (&s * &s.rsub_scalar(1.0)).mul_scalar(beta);
        g * &(&curve * &curved)
    }
}

/// `x` limited to `[min, max]` (either bound optional), PyTorch's `min(max(x, min), max)`:
/// NaN stays NaN, a value equal to a bound is kept (so -0 stays -0 under `min = 0`), and
/// crossed bounds give `max`. The gradient passes only strictly inside the bounds (0 at a
/// bound and at NaN), as PyTorch 2.15 computes it, and is selected rather than multiplied
/// by a mask (0, not NaN, outside for an infinite incoming gradient).
#[track_caller]
pub(crate) fn clamp(x: &Tensor, min: Option<f64>, max: Option<f64>) -> Tensor {
    clamp_named("clamp", x, min, max)
}

/// [`clamp`] recorded under another name (`hardtanh`, `relu6`: the same function).
#[track_caller]
pub(crate) fn clamp_named(
    op: &'static str,
    x: &Tensor,
    min: Option<f64>,
    max: Option<f64>,
) -> Tensor {
    let lo = min.unwrap_or(f64::NEG_INFINITY);
    let hi = max.unwrap_or(f64::INFINITY);
    let (lo32, hi32) = (lo as f32, hi as f32);
    unary_with(
        op,
        x,
        move |v| {
            let v = if v < lo32 { lo32 } else { v };
            if v > hi32 { hi32 } else { v }
        },
        move |v| {
            let v = if v < lo { lo } else { v };
            if v > hi { hi } else { v }
        },
        || {
            // The gradient passes strictly inside the bounds and not at NaN (PyTorch's rule,
            // and its vectorised hardtanh's); a missing bound is no test at all (+inf passes
            // `min` alone). f32 values are compared with the f32 bounds the forward clamped
            // to. The tests join comparisons with `&` and `|`, never `&&` and `||`: a
            // short-circuit became a branch per element, mispredicted on every other one.
            let (has_lo, has_hi) = (min.is_some(), max.is_some());
            Backward::new(move |ctx| {
                let x = ctx.saved(0);
                let fused = crate::elementwise::fused_rule_with(
                    ctx,
                    x,
                    move |g, v| {
                        let inside = (!has_lo | (v > lo32)) & (!has_hi | (v < hi32));
                        if inside { g } else { 0.0 }
                    },
                    move |g, v| {
                        let inside = (!has_lo | (v > lo)) & (!has_hi | (v < hi));
                        if inside { g } else { 0.0 }
                    },
                );
                if let Some(grad) = fused {
                    return smallvec![Some(grad)];
                }
                let inside = crate::elementwise::mask_with(
                    x,
                    move |v| (!has_lo | (v > lo32)) & (!has_hi | (v < hi32)),
                    move |v| (!has_lo | (v > lo)) & (!has_hi | (v < hi)),
                );
                smallvec![Some(select_grad(&inside, ctx.grad()))]
            })
            .save(x)
        },
    )
}

/// `v^p` (`p` also as `T`, `p_t`) with PyTorch's special cases, whose values differ from
/// `powf`'s (which would also cost a libm call per element): 2, 3 and -2 as products
/// (`v * v * v` rounds twice), -1 as a reciprocal, 1/2 and -1/2 as `sqrt` and `1 / sqrt`
/// (NaN, not inf, at -inf; -0 and -inf, not 0 and inf, at -0).
#[inline(always)]
fn power<T: Element>(v: T, p: f64, p_t: T) -> T {
    if p == 2.0 {
        v * v
    } else if p == 3.0 {
        v * v * v
    } else if p == -1.0 {
        T::ONE / v
    } else if p == -2.0 {
        T::ONE / (v * v)
    } else if p == 0.5 {
        v.sqrt()
    } else if p == -0.5 {
        T::ONE / v.sqrt()
    } else {
        v.powf(p_t)
    }
}

#[track_caller]
pub(crate) fn pow_scalar(x: &Tensor, p: f64) -> Tensor {
    let p32 = p as f32;
    let f32f = move |v: f32| power(v, p, p32);
    let f64f = move |v: f64| power(v, p, p);
    unary_with("pow", x, f32f, f64f, || {
        Backward::new(move |ctx| {
            let g = ctx.grad();
            let grad = if p == 0.0 {
                g.zeros_like()
            } else if p == 1.0 {
                g.clone()
            } else {
                g * &pow_scalar(ctx.saved(0), p - 1.0).mul_scalar(p)
            };
            smallvec![Some(grad)]
        })
        .save(x)
    })
}

#[track_caller]
pub(crate) fn pow_tensor(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let shape = tapegrad_tape::arith::broadcast_pair("pow", a, b, location)?;
    ensure_float("pow", a, location)?;
    let value = crate::binary::zip_value(a, b, &shape, f32::powf, f64::powf);
    let make_backward = || {
        Backward::new(|ctx| {
            let (g, a, b, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1), ctx.output());
            smallvec![
                ctx.needs_input_grad(0).then(|| pow_base_term(g, a, b).sum_to_shape(a.shape())),
                ctx.needs_input_grad(1)
                    .then(|| pow_exponent_term(g, a, b, y).sum_to_shape(b.shape())),
            ]
        })
        .save(a)
        .save(b)
        .save_output()
    };
    Ok(record_with_tangent("pow", location, &[a, b], value, make_backward, |ctx| {
        let y = ctx.output();
        ctx.sum(|i, v| if i == 0 { pow_base_term(v, a, b) } else { pow_exponent_term(v, a, b, y) })
    }))
}

/// `g ∂(a^b)/∂a` in the broadcast shape: `g b a^(b-1)`, and 0 where b = 0 (PyTorch's rule:
/// also at a = 0, where the product would be 0 * inf = NaN).
fn pow_base_term(g: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    let d = g * &(b * &pow_tensor(a, &b.sub_scalar(1.0)).expect("shapes checked"));
    select_grad(&mask(b, |v| v != 0.0), &d)
}

/// `g ∂(a^b)/∂b = g a^b ln a` in the broadcast shape of `y = a^b`, taken as 0 where a = 0
/// and b >= 0 (PyTorch's rule; for b < 0 or NaN it is inf * -inf = -inf or NaN there, as
/// in PyTorch). The log is taken of 1 at the zeroed positions, so that no NaN leaks in
/// under double backward.
fn pow_exponent_term(g: &Tensor, a: &Tensor, b: &Tensor, y: &Tensor) -> Tensor {
    let zeroed = crate::binary::zip_value(
        a,
        b,
        y.shape(),
        |p, q| (p == 0.0 && q >= 0.0) as u8 as f32,
        |p, q| (p == 0.0 && q >= 0.0) as u8 as f64,
    );
    let one = Tensor::ones_dtype(&[], a.dtype());
    let zero = Tensor::zeros_dtype(&[], a.dtype());
    let safe_a = try_where(&zeroed, &one, a).expect("shapes checked");
    let d = try_where(&zeroed, &zero, &(y * &log(&safe_a))).expect("shapes checked");
    g * &d
}

/// What [`UnaryOps::pow`] accepts as an exponent: a number or a tensor.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::full(&[2], 3.0);
/// assert_eq!(x.pow(2.0).to_vec::<f32>(), vec![9.0, 9.0]);
/// assert_eq!(x.pow(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![9.0, 9.0]);
/// ```
pub trait Exponent {
    /// `base` raised to this exponent.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// use tapegrad_ops::Exponent;
    /// let base = Tensor::from_vec(vec![2.0f32, 3.0], &[2]);
    /// assert_eq!(2.0f64.raise(&base).unwrap().to_vec::<f32>(), vec![4.0, 9.0]);
    /// assert_eq!((&base).raise(&base).unwrap().to_vec::<f32>(), vec![4.0, 27.0]);
    /// ```
    #[track_caller]
    fn raise(self, base: &Tensor) -> Result<Tensor>;
}

impl Exponent for f64 {
    #[track_caller]
    fn raise(self, base: &Tensor) -> Result<Tensor> {
        Ok(pow_scalar(base, self))
    }
}

impl Exponent for &Tensor {
    #[track_caller]
    fn raise(self, base: &Tensor) -> Result<Tensor> {
        pow_tensor(base, self)
    }
}

/// GELU's `approximate` keyword.
///
/// ```
/// assert_eq!(tapegrad_ops::GeluApproximate::default(), tapegrad_ops::GeluApproximate::None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApproximate {
    /// The exact `x Phi(x)` (PyTorch's `"none"`).
    #[default]
    None,
    /// The tanh approximation (PyTorch's `"tanh"`).
    Tanh,
}

/// Softplus's keywords: `beta` (1) and `threshold` (20).
///
/// ```
/// let o = tapegrad_ops::SoftplusOptions::default();
/// assert_eq!((o.beta, o.threshold), (1.0, 20.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftplusOptions {
    /// The sharpness: `ln(1 + e^(beta x)) / beta`.
    pub beta: f64,
    /// Above `beta x > threshold` the function is `x`.
    pub threshold: f64,
}

impl Default for SoftplusOptions {
    fn default() -> Self {
        SoftplusOptions { beta: 1.0, threshold: 20.0 }
    }
}

setters!(SoftplusOptions {
    /// Sets `beta`.
    beta(f64) => beta, example 2.0 => o.beta == 2.0;
    /// Sets `threshold`.
    threshold(f64) => threshold, example 5.0 => o.threshold == 5.0;
});

/// Elementwise functions of one tensor, as methods (PyTorch's names). In the prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3]).requires_grad();
/// let y = x.relu().exp().sum(); // e^0 + e^0 + e^2
/// y.backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.0, 2f64.exp()]); // relu'(0) = 0
/// ```
pub trait UnaryOps {
    /// `e^x`. `Tensor::zeros(&[1]).exp()` is 1.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-1.0f64, 0.0, 2.5];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).exp().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.exp()).abs() < 1e-12, "exp({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn exp(&self) -> Tensor;

    /// Natural logarithm (`-inf` at 0, NaN below, as in IEEE arithmetic).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [0.5f64, 1.0, 4.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).log().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.ln()).abs() < 1e-12, "log({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn log(&self) -> Tensor;

    /// `ln(1 + x)`, accurate for small `x`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-0.5f64, 1e-10, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).log1p().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.ln_1p()).abs() < 1e-12, "log1p({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn log1p(&self) -> Tensor;

    /// Square root.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [0.0f64, 2.0, 9.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).sqrt().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.sqrt()).abs() < 1e-12, "sqrt({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn sqrt(&self) -> Tensor;

    /// `1 / sqrt(x)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [0.25f64, 2.0, 9.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).rsqrt().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - 1.0 / x.sqrt()).abs() < 1e-12, "rsqrt({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn rsqrt(&self) -> Tensor;

    /// `x^2`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-3.0f64, 0.5, 2.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).square().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x * x).abs() < 1e-12, "square({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn square(&self) -> Tensor;

    /// `1 / x`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-4.0f64, 0.5, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).reciprocal().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - 1.0 / x).abs() < 1e-12, "reciprocal({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn reciprocal(&self) -> Tensor;

    /// Sine.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-1.0f64, 0.0, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).sin().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.sin()).abs() < 1e-12, "sin({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn sin(&self) -> Tensor;

    /// Cosine.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-1.0f64, 0.0, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).cos().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.cos()).abs() < 1e-12, "cos({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn cos(&self) -> Tensor;

    /// Absolute value (gradient 0 at 0, as in PyTorch).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-2.0f64, 0.0, 1.5];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).abs().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.abs()).abs() < 1e-12, "abs({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn abs(&self) -> Tensor;

    /// Hyperbolic tangent.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-20.0f64, 0.5, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).tanh().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.tanh()).abs() < 1e-12, "tanh({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn tanh(&self) -> Tensor;

    /// `1 / (1 + e^-x)`, computed without overflow.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-800.0f64, 0.0, 3.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).sigmoid().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - 1.0 / (1.0 + (-x).exp())).abs() < 1e-12, "sigmoid({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn sigmoid(&self) -> Tensor;

    /// `max(x, 0)` (gradient 0 at 0); NaN stays NaN and passes the gradient, as in PyTorch.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-1.0f64, 0.0, 2.0];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).relu().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x.max(0.0)).abs() < 1e-12, "relu({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn relu(&self) -> Tensor;

    /// The error function.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-1.0f64, 0.0, 0.5];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).erf().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - libm::erf(x)).abs() < 1e-12, "erf({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn erf(&self) -> Tensor;

    /// `x sigmoid(x)` (also called swish).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let xs = [-2.0f64, 0.0, 1.5];
    /// let ys = Tensor::from_vec(xs.to_vec(), &[3]).silu().to_vec::<f64>();
    /// for (x, y) in xs.into_iter().zip(ys) {
    ///     assert!((y - x / (1.0 + (-x).exp())).abs() < 1e-12, "silu({x}) = {y}");
    /// }
    /// ```
    #[track_caller]
    fn silu(&self) -> Tensor;

    /// `x` where positive, `slope x` elsewhere.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], -2.0).leaky_relu().item(), -0.02f32 as f64);
    /// ```
    #[track_caller]
    fn leaky_relu(&self) -> Tensor {
        self.leaky_relu_with(0.01)
    }

    /// [`UnaryOps::leaky_relu`] with its one keyword, `negative_slope`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], -2.0).leaky_relu_with(0.1).item(), -0.2f32 as f64);
    /// ```
    #[track_caller]
    fn leaky_relu_with(&self, negative_slope: f64) -> Tensor;

    /// `x` where positive, `alpha (e^x - 1)` elsewhere.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::full(&[1], -50.0).elu().item() + 1.0 < 1e-6); // alpha = 1
    /// ```
    #[track_caller]
    fn elu(&self) -> Tensor {
        self.elu_with(1.0)
    }

    /// [`UnaryOps::elu`] with its one keyword, `alpha`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::full(&[1], -50.0).elu_with(2.0).item() + 2.0 < 1e-6);
    /// ```
    #[track_caller]
    fn elu_with(&self, alpha: f64) -> Tensor;

    /// GELU, exact: `x Phi(x)` with the normal CDF `Phi` (PyTorch's default).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1]).gelu().item(), 0.0);
    /// ```
    #[track_caller]
    fn gelu(&self) -> Tensor {
        self.gelu_with(GeluApproximate::None)
    }

    /// [`UnaryOps::gelu`] with its one keyword, `approximate` (PyTorch's `"none"` or
    /// `"tanh"`).
    ///
    /// ```
    /// use tapegrad_ops::{GeluApproximate, prelude::*};
    /// let x = tapegrad_tape::Tensor::full_dtype(&[1], 1.0, tapegrad_tape::DType::F64);
    /// assert!((x.gelu_with(GeluApproximate::Tanh).item() - x.gelu().item()).abs() < 1e-3);
    /// ```
    #[track_caller]
    fn gelu_with(&self, approximate: GeluApproximate) -> Tensor;

    /// `ln(1 + e^x)`, computed without overflow (PyTorch's `softplus` with beta 1,
    /// threshold 20).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 1e4).softplus().item(), 1e4);
    /// ```
    #[track_caller]
    fn softplus(&self) -> Tensor {
        self.softplus_with(SoftplusOptions::default())
    }

    /// `ln(1 + e^(beta x)) / beta`, linear where `beta x > threshold` (PyTorch's keywords).
    ///
    /// ```
    /// use tapegrad_ops::{SoftplusOptions, prelude::*};
    /// let x = tapegrad_tape::Tensor::full_dtype(&[1], 1.0, tapegrad_tape::DType::F64);
    /// let y = x.softplus_with(SoftplusOptions::default().beta(2.0));
    /// assert!((y.item() - (1.0 + 2f64.exp()).ln() / 2.0).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn softplus_with(&self, options: SoftplusOptions) -> Tensor;

    /// Values limited to `[min, max]`; either bound may be `None`. NaN stays NaN; the
    /// gradient is 0 at NaN and at a bound (as in PyTorch 2.15).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 2.0], &[3]);
    /// assert_eq!(x.clamp(Some(-1.0), Some(1.0)).to_vec::<f32>(), vec![-1.0, 0.5, 1.0]);
    /// ```
    #[track_caller]
    fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor;

    /// `x` raised to a number or, with broadcasting, to a tensor of exponents.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 4.0).pow(0.5).item(), 2.0);
    /// ```
    #[track_caller]
    fn pow<E: Exponent>(&self, exponent: E) -> Tensor {
        or_panic(self.try_pow(exponent))
    }

    /// [`UnaryOps::pow`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_pow(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_pow<E: Exponent>(&self, exponent: E) -> Result<Tensor>;
}

impl UnaryOps for Tensor {
    #[track_caller]
    fn exp(&self) -> Tensor {
        exp(self)
    }
    #[track_caller]
    fn log(&self) -> Tensor {
        log(self)
    }
    #[track_caller]
    fn log1p(&self) -> Tensor {
        log1p(self)
    }
    #[track_caller]
    fn sqrt(&self) -> Tensor {
        sqrt(self)
    }
    #[track_caller]
    fn rsqrt(&self) -> Tensor {
        rsqrt(self)
    }
    #[track_caller]
    fn square(&self) -> Tensor {
        square(self)
    }
    #[track_caller]
    fn reciprocal(&self) -> Tensor {
        reciprocal(self)
    }
    #[track_caller]
    fn sin(&self) -> Tensor {
        sin(self)
    }
    #[track_caller]
    fn cos(&self) -> Tensor {
        cos(self)
    }
    #[track_caller]
    fn abs(&self) -> Tensor {
        abs(self)
    }
    #[track_caller]
    fn tanh(&self) -> Tensor {
        tanh(self)
    }
    #[track_caller]
    fn sigmoid(&self) -> Tensor {
        sigmoid_op(self)
    }
    #[track_caller]
    fn relu(&self) -> Tensor {
        relu(self)
    }
    #[track_caller]
    fn erf(&self) -> Tensor {
        erf(self)
    }
    #[track_caller]
    fn silu(&self) -> Tensor {
        silu(self)
    }
    #[track_caller]
    fn leaky_relu_with(&self, negative_slope: f64) -> Tensor {
        leaky_relu(self, negative_slope)
    }
    #[track_caller]
    fn elu_with(&self, alpha: f64) -> Tensor {
        elu(self, alpha)
    }
    #[track_caller]
    fn gelu_with(&self, approximate: GeluApproximate) -> Tensor {
        gelu(self, approximate == GeluApproximate::Tanh)
    }
    #[track_caller]
    fn softplus_with(&self, options: SoftplusOptions) -> Tensor {
        softplus_op(self, options.beta, options.threshold)
    }
    #[track_caller]
    fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor {
        clamp(self, min, max)
    }
    #[track_caller]
    fn try_pow<E: Exponent>(&self, exponent: E) -> Result<Tensor> {
        exponent.raise(self)
    }
}
