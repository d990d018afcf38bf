//! The rest of the elementwise mathematics of `torch`: trigonometric and hyperbolic
//! functions and their inverses, `expm1`, `exp2`, `log2`, `log10`, the rounding family
//! (`sign`, `floor`, `ceil`, `round`, `trunc`, `frac`), two functions of two tensors,
//! `atan2` and `logaddexp`, and the methods of the gamma family, whose values and rules are
//! in `special.rs` (`lgamma`, `digamma`, `polygamma`).
//!
//! Values come from the standard library's functions of each dtype, but for f32 `atan2`'s
//! (a vectorised form in `tapegrad_kernels::fast_math`). Each rule is written with recorded
//! ops, so every derivative is differentiable again (`atan2`'s plain backward also has a
//! one-pass form with the same arithmetic); the rounding functions are piecewise constant,
//! and their gradient is zero everywhere, as in PyTorch.

use std::f64::consts::{LN_2, LN_10};
use std::panic::Location;

use tapegrad_tape::arith::broadcast_pair;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Result, Storage, Tensor, ensure_float, or_panic, record_with_tangent,
};

use crate::binary::{try_where, zip_value};
use crate::elementwise::{binary_fn, unary_with};
use crate::unary::sigmoid_op;
use crate::{BinaryOps, UnaryOps};

/// `f` of `x` with the rule `g * derivative(x)`, where `derivative` is written with
/// recorded ops on the saved input.
#[track_caller]
fn with_derivative(
    op: &'static str,
    x: &Tensor,
    f32f: fn(f32) -> f32,
    f64f: fn(f64) -> f64,
    derivative: fn(&Tensor) -> Tensor,
) -> Tensor {
    unary_with(op, x, f32f, f64f, || {
        Backward::new(move |ctx| smallvec![Some(ctx.grad() * &derivative(ctx.saved(0)))]).save(x)
    })
}

/// `f` of `x` with the rule `g * derivative(y)`, in terms of the output `y`.
#[track_caller]
fn with_output_derivative(
    op: &'static str,
    x: &Tensor,
    f32f: fn(f32) -> f32,
    f64f: fn(f64) -> f64,
    derivative: fn(&Tensor) -> Tensor,
) -> Tensor {
    unary_with(op, x, f32f, f64f, || {
        Backward::new(move |ctx| smallvec![Some(ctx.grad() * &derivative(ctx.output()))])
            .save_output()
    })
}

/// A piecewise-constant function of `x`: its gradient is zero (PyTorch's `zeros_like`).
#[track_caller]
fn piecewise_constant(
    op: &'static str,
    x: &Tensor,
    f32f: fn(f32) -> f32,
    f64f: fn(f64) -> f64,
) -> Tensor {
    unary_with(op, x, f32f, f64f, || Backward::new(|ctx| smallvec![Some(ctx.grad().zeros_like())]))
}

/// `1 - x^2`, the common factor of the inverse sine's, cosine's and hyperbolic tangent's
/// derivatives.
fn one_minus_square(x: &Tensor) -> Tensor {
    x.square().rsub_scalar(1.0)
}

/// `+1`, `-1` or `0` (also for `-0` and NaN, as PyTorch's `sign`).
fn sign_of<T: PartialOrd + Copy>(x: T, zero: T, one: T, minus_one: T) -> T {
    if x > zero {
        one
    } else if x < zero {
        minus_one
    } else {
        zero
    }
}

/// `value(a, b)` over the broadcast of `a` and `b` with partial derivatives
/// `partials(a, b)` (each of the broadcast shape, written with recorded ops), summed back to
/// each input's shape; `fused(g, a, b)`, where it gives them, is the plain backward's one
/// pass.
#[track_caller]
fn binary_with_partials(
    op: &'static str,
    (a, b): (&Tensor, &Tensor),
    value: fn(&Tensor, &Tensor, &[usize]) -> Tensor,
    partials: fn(&Tensor, &Tensor) -> (Tensor, Tensor),
    fused: fn(&Tensor, &Tensor, &Tensor) -> Option<(Tensor, Tensor)>,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float(op, a, location)?;
    ensure_float(op, b, location)?;
    let shape = broadcast_pair(op, a, b, location)?;
    let value = value(a, b, &shape);
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            if let Some((da, db)) = fused(g, a, b) {
                return smallvec![
                    ctx.needs_input_grad(0).then_some(da),
                    ctx.needs_input_grad(1).then_some(db),
                ];
            }
            let (da, db) = partials(a, b);
            smallvec![
                ctx.needs_input_grad(0).then(|| (g * &da).sum_to_shape(a.shape())),
                ctx.needs_input_grad(1).then(|| (g * &db).sum_to_shape(b.shape())),
            ]
        })
        .save(a)
        .save(b)
    };
    Ok(record_with_tangent(op, location, &[a, b], value, make_backward, |ctx| {
        let (da, db) = partials(a, b);
        ctx.sum(|i, v| v * if i == 0 { &da } else { &db })
    }))
}

binary_fn!(Atan2, |y, x| y.angle(x));

/// `atan2`'s partials `(x, -y) / (x^2 + y^2)`, 0 at the origin (as PyTorch).
fn atan2_partials(y: &Tensor, x: &Tensor) -> (Tensor, Tensor) {
    let r2 = &y.square() + &x.square();
    let zero = Tensor::zeros_dtype(&[], r2.dtype());
    let at_origin = r2.eq(&zero);
    // Division by 1 at the origin, then selection: no infinity enters the rule.
    let safe = try_where(&at_origin, &r2.ones_like(), &r2).expect("same shape");
    let inverse = try_where(&at_origin, &zero, &safe.reciprocal()).expect("same shape");
    (x * &inverse, -(y * &inverse))
}

/// `g` times [`atan2_partials`], element for element the same arithmetic, in one pass over
/// `g`, `y` and `x`: for a backward that records nothing, with the three of one shape and
/// dtype.
fn atan2_fused(g: &Tensor, y: &Tensor, x: &Tensor) -> Option<(Tensor, Tensor)> {
    use tapegrad_kernels::strided::zip3_pairs;
    #[inline(always)]
    fn grads<T: tapegrad_tape::Element>((g, y, x): (T, T, T)) -> (T, T) {
        let r2 = y * y + x * x;
        let inverse = if r2 == T::ZERO { T::ZERO } else { T::ONE / r2 };
        (g * (x * inverse), g * -(y * inverse))
    }
    let shape = g.shape();
    if tapegrad_tape::is_grad_enabled() || y.shape() != shape || x.shape() != shape {
        return None;
    }
    let (gs, ys, xs) = (g.contiguous_storage(), y.contiguous_storage(), x.contiguous_storage());
    let (dy, dx) = match (&gs, &ys, &xs) {
        (Storage::F32(g), Storage::F32(y), Storage::F32(x)) => {
            let (dy, dx) = zip3_pairs(g, y, x, grads::<f32>);
            (Storage::from_vec(dy), Storage::from_vec(dx))
        }
        (Storage::F64(g), Storage::F64(y), Storage::F64(x)) => {
            let (dy, dx) = zip3_pairs(g, y, x, grads::<f64>);
            (Storage::from_vec(dy), Storage::from_vec(dx))
        }
        _ => return None,
    };
    let tensor = |s| Tensor::from_storage(s, Layout::contiguous(shape));
    Some((tensor(dy), tensor(dx)))
}

/// `logaddexp`'s partials: the weights `sigmoid(a - b)` and `sigmoid(b - a)`.
fn logaddexp_partials(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    (sigmoid_op(&(a - b)), sigmoid_op(&(b - a)))
}

fn logaddexp32(a: f32, b: f32) -> f32 {
    logaddexp64(a as f64, b as f64) as f32
}

fn logaddexp64(a: f64, b: f64) -> f64 {
    if a == b && a.is_infinite() {
        // Both -inf (or both +inf): the formula below would give NaN.
        return a;
    }
    a.max(b) + (-(a - b).abs()).exp().ln_1p()
}

/// Trigonometric, hyperbolic, exponential and rounding functions (PyTorch's names), and
/// `atan2` and `logaddexp` of two broadcast tensors. In the prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![0.5f64], &[1]).requires_grad();
/// x.atan().sum().backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0 / 1.25]); // 1 / (1 + x^2)
/// ```
pub trait MathOps {
    /// Tangent (`torch.tan`); derivative `1 + tan^2`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![std::f64::consts::FRAC_PI_4], &[1]).tan();
    /// assert!((y.item() - 1.0).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn tan(&self) -> Tensor;

    /// Inverse sine (`torch.asin`): NaN outside `[-1, 1]`; derivative `1 / sqrt(1 - x^2)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).asin().to_vec::<f64>();
    /// assert_eq!(y[0], std::f64::consts::FRAC_PI_2);
    /// assert!(y[1].is_nan());
    /// ```
    #[track_caller]
    fn asin(&self) -> Tensor;

    /// Inverse cosine (`torch.acos`): NaN outside `[-1, 1]`; derivative `-1 / sqrt(1 - x^2)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1.0f32], &[1]).acos().item(), 0.0);
    /// ```
    #[track_caller]
    fn acos(&self) -> Tensor;

    /// Inverse tangent (`torch.atan`); derivative `1 / (1 + x^2)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64], &[1]).atan().item();
    /// assert!((y - std::f64::consts::FRAC_PI_4).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn atan(&self) -> Tensor;

    /// The angle of the point `(other, self)` in `(-pi, pi]` (`torch.atan2(self, other)`:
    /// `self` is the y coordinate), the two broadcast. Its gradient is 0 at the origin, as in
    /// PyTorch.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
    /// let x = Tensor::from_vec(vec![-1.0f64], &[1]);
    /// let angles = y.atan2(&x).to_vec::<f64>();
    /// assert!((angles[0] - 0.75 * std::f64::consts::PI).abs() < 1e-15);
    /// assert!((angles[1] + 0.75 * std::f64::consts::PI).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn atan2(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_atan2(other))
    }

    /// [`atan2`](MathOps::atan2), with an error for shapes that do not broadcast or a
    /// non-float tensor.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_atan2(&Tensor::zeros(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_atan2(&self, other: &Tensor) -> Result<Tensor>;

    /// Hyperbolic sine (`torch.sinh`); derivative `cosh`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1.0f64], &[1]).sinh().item(), 1f64.sinh());
    /// ```
    #[track_caller]
    fn sinh(&self) -> Tensor;

    /// Hyperbolic cosine (`torch.cosh`); derivative `sinh`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![0.0f32], &[1]).cosh().item(), 1.0);
    /// ```
    #[track_caller]
    fn cosh(&self) -> Tensor;

    /// Inverse hyperbolic sine (`torch.asinh`); derivative `1 / sqrt(x^2 + 1)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![2.0f64], &[1]).asinh().item(), 2f64.asinh());
    /// ```
    #[track_caller]
    fn asinh(&self) -> Tensor;

    /// Inverse hyperbolic cosine (`torch.acosh`): NaN below 1; derivative
    /// `1 / sqrt(x^2 - 1)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1.0f32], &[1]).acosh().item(), 0.0);
    /// ```
    #[track_caller]
    fn acosh(&self) -> Tensor;

    /// Inverse hyperbolic tangent (`torch.atanh`): infinite at ±1, NaN beyond; derivative
    /// `1 / (1 - x^2)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![0.5f64, 1.0], &[2]).atanh().to_vec::<f64>();
    /// assert_eq!(y, vec![0.5f64.atanh(), f64::INFINITY]);
    /// ```
    #[track_caller]
    fn atanh(&self) -> Tensor;

    /// `e^x - 1`, accurate for small `x` (`torch.expm1`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1e-10f64], &[1]).expm1().item(), 1e-10f64.exp_m1());
    /// ```
    #[track_caller]
    fn expm1(&self) -> Tensor;

    /// `2^x` (`torch.exp2`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![3.0f32, -1.0], &[2]).exp2().to_vec::<f32>(), vec![8.0, 0.5]);
    /// ```
    #[track_caller]
    fn exp2(&self) -> Tensor;

    /// Base-2 logarithm (`torch.log2`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![8.0f64], &[1]).log2().item(), 3.0);
    /// ```
    #[track_caller]
    fn log2(&self) -> Tensor;

    /// Base-10 logarithm (`torch.log10`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![1000.0f64], &[1]).log10().item(), 3.0);
    /// ```
    #[track_caller]
    fn log10(&self) -> Tensor;

    /// `ln(e^self + e^other)` without overflow, the two broadcast (`torch.logaddexp`);
    /// its gradient weights are `sigmoid(self - other)` and `sigmoid(other - self)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1000.0f64, 0.0], &[2]);
    /// let b = Tensor::from_vec(vec![1000.0f64, 0.0], &[2]);
    /// let y = a.logaddexp(&b).to_vec::<f64>();
    /// assert_eq!(y, vec![1000.0 + 2f64.ln(), 2f64.ln()]);
    /// ```
    #[track_caller]
    fn logaddexp(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_logaddexp(other))
    }

    /// [`logaddexp`](MathOps::logaddexp), with an error for shapes that do not broadcast or
    /// a non-float tensor.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_logaddexp(&Tensor::zeros(&[2])).is_err());
    /// ```
    #[track_caller]
    fn try_logaddexp(&self, other: &Tensor) -> Result<Tensor>;

    /// `+1`, `-1` or `0` by the sign of each element (0 for ±0 and NaN, as PyTorch's
    /// `torch.sign`); gradient 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.5f32, 0.0, 3.0, f32::NAN], &[4]);
    /// assert_eq!(x.sign().to_vec::<f32>(), vec![-1.0, 0.0, 1.0, 0.0]);
    /// ```
    #[track_caller]
    fn sign(&self) -> Tensor;

    /// The largest integer not above each element (`torch.floor`); gradient 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![-1.5f32, 1.5], &[2]).floor().to_vec::<f32>(), vec![-2.0, 1.0]);
    /// ```
    #[track_caller]
    fn floor(&self) -> Tensor;

    /// The smallest integer not below each element (`torch.ceil`); gradient 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![-1.5f32, 1.5], &[2]).ceil().to_vec::<f32>(), vec![-1.0, 2.0]);
    /// ```
    #[track_caller]
    fn ceil(&self) -> Tensor;

    /// The nearest integer, halves to even (`torch.round`); gradient 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![0.5f64, 1.5, 2.5, -2.5, 2.6], &[5]);
    /// assert_eq!(x.round().to_vec::<f64>(), vec![0.0, 2.0, 2.0, -2.0, 3.0]);
    /// ```
    #[track_caller]
    fn round(&self) -> Tensor;

    /// The integer part, towards zero (`torch.trunc`); gradient 0.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![-1.7f32, 1.7], &[2]).trunc().to_vec::<f32>(), vec![-1.0, 1.0]);
    /// ```
    #[track_caller]
    fn trunc(&self) -> Tensor;

    /// The fractional part `x - trunc(x)`, with the sign of `x` (`torch.frac`); gradient 1.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![-1.75f32, 2.5], &[2]).frac().to_vec::<f32>(), vec![-0.75, 0.5]);
    /// ```
    #[track_caller]
    fn frac(&self) -> Tensor;

    /// `ln |Gamma(x)|` (`torch.lgamma`): `+inf` at the poles (0 and the negative
    /// integers); derivative [`MathOps::digamma`].
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![5.0f64, 0.5], &[2]).lgamma().to_vec::<f64>();
    /// assert!((x[0] - 24f64.ln()).abs() < 1e-14); // Gamma(5) = 4!
    /// assert!((x[1] - std::f64::consts::PI.sqrt().ln()).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn lgamma(&self) -> Tensor;

    /// The digamma function `psi(x)`, the derivative of `ln |Gamma(x)|`
    /// (`torch.digamma`): `-inf` at `+0`, `+inf` at `-0`, NaN at the negative integers;
    /// derivative `polygamma(1, x)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let psi = Tensor::from_vec(vec![1.0f64], &[1]).digamma().item();
    /// assert!((psi + 0.5772156649015329).abs() < 1e-15); // minus Euler's constant
    /// ```
    #[track_caller]
    fn digamma(&self) -> Tensor;

    /// The `n`-th derivative of the digamma function (`torch.polygamma(n, x)`;
    /// `polygamma(0)` is `digamma`, `polygamma(1)` the trigamma function): `+inf` at the
    /// poles for odd `n`, `-inf` for even `n`; derivative `polygamma(n + 1, x)`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let trigamma = Tensor::from_vec(vec![1.0f64], &[1]).polygamma(1).item();
    /// assert!((trigamma - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn polygamma(&self, n: u32) -> Tensor;
}

impl MathOps for Tensor {
    fn tan(&self) -> Tensor {
        // 1 + tan^2, in terms of the output.
        with_output_derivative("tan", self, f32::tan, f64::tan, |y| y.square().add_scalar(1.0))
    }

    fn asin(&self) -> Tensor {
        with_derivative("asin", self, f32::asin, f64::asin, |x| one_minus_square(x).rsqrt())
    }

    fn acos(&self) -> Tensor {
        with_derivative("acos", self, f32::acos, f64::acos, |x| -one_minus_square(x).rsqrt())
    }

    fn atan(&self) -> Tensor {
        with_derivative("atan", self, f32::atan, f64::atan, |x| {
            x.square().add_scalar(1.0).reciprocal()
        })
    }

    fn try_atan2(&self, other: &Tensor) -> Result<Tensor> {
        binary_with_partials(
            "atan2",
            (self, other),
            crate::elementwise::zip::<Atan2>,
            atan2_partials,
            atan2_fused,
        )
    }

    fn sinh(&self) -> Tensor {
        with_derivative("sinh", self, f32::sinh, f64::sinh, |x| x.cosh())
    }

    fn cosh(&self) -> Tensor {
        with_derivative("cosh", self, f32::cosh, f64::cosh, |x| x.sinh())
    }

    fn asinh(&self) -> Tensor {
        with_derivative("asinh", self, f32::asinh, f64::asinh, |x| {
            x.square().add_scalar(1.0).rsqrt()
        })
    }

    fn acosh(&self) -> Tensor {
        with_derivative("acosh", self, f32::acosh, f64::acosh, |x| {
            x.square().sub_scalar(1.0).rsqrt()
        })
    }

    fn atanh(&self) -> Tensor {
        with_derivative("atanh", self, f32::atanh, f64::atanh, |x| one_minus_square(x).reciprocal())
    }

    fn expm1(&self) -> Tensor {
        with_output_derivative("expm1", self, f32::exp_m1, f64::exp_m1, |y| y.add_scalar(1.0))
    }

    fn exp2(&self) -> Tensor {
        with_output_derivative("exp2", self, f32::exp2, f64::exp2, |y| y.mul_scalar(LN_2))
    }

    fn log2(&self) -> Tensor {
        with_derivative("log2", self, f32::log2, f64::log2, |x| x.mul_scalar(LN_2).reciprocal())
    }

    fn log10(&self) -> Tensor {
        with_derivative("log10", self, f32::log10, f64::log10, |x| x.mul_scalar(LN_10).reciprocal())
    }

    fn try_logaddexp(&self, other: &Tensor) -> Result<Tensor> {
        binary_with_partials(
            "logaddexp",
            (self, other),
            |a, b, shape| zip_value(a, b, shape, logaddexp32, logaddexp64),
            logaddexp_partials,
            |_, _, _| None,
        )
    }

    fn sign(&self) -> Tensor {
        piecewise_constant(
            "sign",
            self,
            |x| sign_of(x, 0.0, 1.0, -1.0),
            |x| sign_of(x, 0.0, 1.0, -1.0),
        )
    }

    fn floor(&self) -> Tensor {
        piecewise_constant("floor", self, f32::floor, f64::floor)
    }

    fn ceil(&self) -> Tensor {
        piecewise_constant("ceil", self, f32::ceil, f64::ceil)
    }

    fn round(&self) -> Tensor {
        piecewise_constant("round", self, f32::round_ties_even, f64::round_ties_even)
    }

    fn trunc(&self) -> Tensor {
        piecewise_constant("trunc", self, f32::trunc, f64::trunc)
    }

    fn frac(&self) -> Tensor {
        unary_with(
            "frac",
            self,
            |x| x - x.trunc(),
            |x| x - x.trunc(),
            || Backward::new(|ctx| smallvec![Some(ctx.grad().clone())]),
        )
    }

    fn lgamma(&self) -> Tensor {
        crate::special::lgamma(self)
    }

    fn digamma(&self) -> Tensor {
        crate::special::digamma_op(self)
    }

    fn polygamma(&self, n: u32) -> Tensor {
        crate::special::polygamma_op(n, self)
    }
}
