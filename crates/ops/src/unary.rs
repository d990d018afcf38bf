//! Elementwise functions of one tensor and their backward rules.
//!
//! Every rule is written with recorded operations on the saved input or output, so that
//! under `create_graph` it is differentiated again; masks for piecewise functions are
//! constants (their derivative is zero almost everywhere).

use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};
use std::panic::Location;

use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Element, Result, Tensor, ensure_float, record};

use crate::elementwise::{fused_rule, grad_fn, mask, unary, unary_fn, unary_with};

unary_fn!(Exp, |x| x.exp());
unary_fn!(Log, |x| x.ln());
unary_fn!(Log1p, |x| x.ln_1p());
unary_fn!(Tanh, |x| x.tanh_simd());
unary_fn!(Sigmoid, |x| sigmoid(x));
unary_fn!(Relu, |x| if x > T::ZERO { x } else { T::ZERO });
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
unary_fn!(Erf, |x| x.erf());
unary_fn!(Silu, |x| x * sigmoid(x));
unary_fn!(GeluErf, |x| {
    let half = T::from_f64(0.5);
    half * x * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
});
grad_fn!(TanhGrad, |g, y| g * (T::ONE - y * y));
grad_fn!(SigmoidGrad, |g, y| g * (y * (T::ONE - y)));
grad_fn!(ReluGrad, |g, x| if x > T::ZERO { g } else { T::ZERO });

unary_fn!(GeluTanh, |x| {
    let c = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
    let half = T::from_f64(0.5);
    half * x * (T::ONE + (c * (x + T::from_f64(0.044715) * x * x * x)).tanh())
});

/// A logistic function that never overflows: `exp` is only taken of non-positive values.
#[inline(always)]
pub(crate) fn sigmoid<T: Element>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
#[inline(always)]
pub(crate) fn softplus<T: Element>(x: T) -> T {
    let m = if x > T::ZERO { x } else { T::ZERO };
    m + (-x.abs()).exp().ln_1p()
}

#[track_caller]
pub(crate) fn exp(x: &Tensor) -> Tensor {
    unary::<Exp>("exp", x, || Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.output())]).save_output())
}

#[track_caller]
pub(crate) fn log(x: &Tensor) -> Tensor {
    unary::<Log>("log", x, || Backward::new(|ctx| smallvec![Some(ctx.grad() / ctx.saved(0))]).save(x))
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
                let y = ctx.output();
                ctx.grad() * &(y * y).rsub_scalar(1.0)
            });
            smallvec![Some(g)]
        })
        .save_output()
    })
}

#[track_caller]
pub(crate) fn sigmoid_op(x: &Tensor) -> Tensor {
    unary::<Sigmoid>("sigmoid", x, || {
        Backward::new(|ctx| {
            let g = fused_rule::<SigmoidGrad>(ctx, ctx.output_parts()).unwrap_or_else(|| {
                let y = ctx.output();
                ctx.grad() * &(y * &y.rsub_scalar(1.0))
            });
            smallvec![Some(g)]
        })
        .save_output()
    })
}

#[track_caller]
pub(crate) fn relu(x: &Tensor) -> Tensor {
    unary::<Relu>("relu", x, || {
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            let g = fused_rule::<ReluGrad>(ctx, (&x.storage(), x.layout()))
                .unwrap_or_else(|| ctx.grad() * &mask(x, |v| v > 0.0));
            smallvec![Some(g)]
        })
        .save(x)
    })
}

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

#[track_caller]
pub(crate) fn elu(x: &Tensor, alpha: f64) -> Tensor {
    let a32 = alpha as f32;
    unary_with(
        "elu",
        x,
        move |v| if v > 0.0 { v } else { a32 * v.exp_m1() },
        move |v| if v > 0.0 { v } else { alpha * v.exp_m1() },
        || {
            // d/dx = 1 for x > 0, alpha e^x otherwise.
            Backward::new(move |ctx| {
                let x = ctx.saved(0);
                let pos = mask(x, |v| v > 0.0);
                let neg = &exp(x) * &pos.rsub_scalar(1.0).mul_scalar(alpha);
                smallvec![Some(ctx.grad() * &(&pos + &neg))]
            })
            .save(x)
        },
    )
}

#[track_caller]
pub(crate) fn abs(x: &Tensor) -> Tensor {
    unary::<Abs>("abs", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() * &crate::elementwise::map::<Sign>(ctx.saved(0)))]).save(x)
    })
}

#[track_caller]
pub(crate) fn sqrt(x: &Tensor) -> Tensor {
    unary::<Sqrt>("sqrt", x, || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() / &ctx.output().mul_scalar(2.0))]).save_output()
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

#[track_caller]
pub(crate) fn sin(x: &Tensor) -> Tensor {
    unary::<Sin>("sin", x, || Backward::new(|ctx| smallvec![Some(ctx.grad() * &cos(ctx.saved(0)))]).save(x))
}

#[track_caller]
pub(crate) fn cos(x: &Tensor) -> Tensor {
    unary::<Cos>("cos", x, || Backward::new(|ctx| smallvec![Some(-(ctx.grad() * &sin(ctx.saved(0))))]).save(x))
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
    unary::<Silu>("silu", x, || {
        // d x s(x) = s (1 + x (1 - s))
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            let s = sigmoid_op(x);
            let d = &s * &(x * &s.rsub_scalar(1.0)).add_scalar(1.0);
            smallvec![Some(ctx.grad() * &d)]
        })
        .save(x)
    })
}

/// GELU, exact (`x Phi(x)`) or with PyTorch's tanh approximation.
#[track_caller]
pub(crate) fn gelu(x: &Tensor, tanh_approximation: bool) -> Tensor {
    if tanh_approximation {
        return unary::<GeluTanh>("gelu_tanh", x, || {
            Backward::new(|ctx| {
                // y = x/2 (1 + tanh u), u = c (x + k x^3):
                // dy/dx = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3k x^2)
                let x = ctx.saved(0);
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let k = 0.044715;
                let x2 = square(x);
                let t = tanh(&(x + &(&x2 * x).mul_scalar(k)).mul_scalar(c));
                let du = x2.mul_scalar(3.0 * k).add_scalar(1.0).mul_scalar(c);
                let d =
                    &t.add_scalar(1.0).mul_scalar(0.5) + &(&(x * &square(&t).rsub_scalar(1.0)) * &du).mul_scalar(0.5);
                smallvec![Some(ctx.grad() * &d)]
            })
            .save(x)
        });
    }
    unary::<GeluErf>("gelu", x, || {
        Backward::new(|ctx| {
            // d x Phi(x) = Phi(x) + x phi(x)
            let x = ctx.saved(0);
            let cdf = erf(&x.div_scalar(SQRT_2)).add_scalar(1.0).mul_scalar(0.5);
            let pdf = exp(&square(x).mul_scalar(-0.5)).mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            smallvec![Some(ctx.grad() * &(&cdf + &(x * &pdf)))]
        })
        .save(x)
    })
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
                let linear = mask(x, move |v| v * beta > threshold);
                let s = &sigmoid_op(&x.mul_scalar(beta)) * &linear.rsub_scalar(1.0);
                smallvec![Some(ctx.grad() * &(&s + &linear))]
            })
            .save(x)
        },
    )
}

/// `x` limited to `[min, max]` (either bound optional); the gradient passes where the value
/// is inside the bounds, inclusive, as in PyTorch.
#[track_caller]
pub(crate) fn clamp(x: &Tensor, min: Option<f64>, max: Option<f64>) -> Tensor {
    let lo = min.unwrap_or(f64::NEG_INFINITY);
    let hi = max.unwrap_or(f64::INFINITY);
    let (lo32, hi32) = (lo as f32, hi as f32);
    unary_with(
        "clamp",
        x,
        move |v| if v.is_nan() { v } else { v.max(lo32).min(hi32) },
        move |v| if v.is_nan() { v } else { v.max(lo).min(hi) },
        || {
            Backward::new(move |ctx| smallvec![Some(ctx.grad() * &mask(ctx.saved(0), move |v| v >= lo && v <= hi))])
                .save(x)
        },
    )
}

#[track_caller]
pub(crate) fn pow_scalar(x: &Tensor, p: f64) -> Tensor {
    let p32 = p as f32;
    // Squaring is the common case; `powf` would cost a libm call per element.
    let square = p == 2.0;
    let f32f = move |v: f32| if square { v * v } else { v.powf(p32) };
    let f64f = move |v: f64| if square { v * v } else { v.powf(p) };
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
    Ok(record("pow", location, &[a, b], value, || {
        Backward::new(|ctx| {
            let (g, a, b, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1), ctx.output());
            let ga = ctx.needs_input_grad(0).then(|| {
                // d a^b / da = b a^(b-1)
                (g * &(b * &pow_tensor(a, &b.sub_scalar(1.0)).expect("shapes checked"))).sum_to_shape(a.shape())
            });
            let gb = ctx.needs_input_grad(1).then(|| {
                // d a^b / db = a^b ln a, taken as 0 where a = 0 (PyTorch's convention),
                // through a safe log so that no NaN leaks in.
                let keep = mask(a, |v| v != 0.0);
                let safe_a = &(a * &keep) + &keep.rsub_scalar(1.0);
                (&(g * &(y * &log(&safe_a))) * &keep).sum_to_shape(b.shape())
            });
            smallvec![ga, gb]
        })
        .save(a)
        .save(b)
        .save_output()
    }))
}
