//! Activation functions beyond the classic ones of [`UnaryOps`](crate::UnaryOps): the
//! piecewise-linear family of mobile networks (hardtanh, relu6, hardsigmoid, hardswish),
//! the self-normalising and smooth ones (selu, celu, mish), logsigmoid, softsign,
//! tanhshrink, and the two with a second operand, GLU and PReLU.
//!
//! Each is either one recorded op with a rule written in recorded ops (so that it is
//! differentiated again under `create_graph`), or composed of recorded ops where PyTorch
//! composes it too (softsign, tanhshrink, glu, prelu). At kinks the gradient is PyTorch's
//! one-sided choice; at NaN it is PyTorch's scalar rule (its vectorised loops sometimes give
//! NaN instead).

use std::panic::Location;

use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, or_panic};

use crate::binary::{select_grad, try_where};
use crate::elementwise::{binary_fn, fused_rule, fused_rule_with, mask, unary, unary_fn};
use crate::unary::{
    clamp_named, elu_scaled, sigmoid, sigmoid_op, softplus_op, tanh, unary_saving_derivative,
};
use crate::{BinaryOps, ShapeOps, UnaryOps};

/// SELU's `alpha` and `scale` (Klambauer et al., as PyTorch spells them).
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

// x tanh(softplus(x)), and its derivative t + x s (1 - t^2) with t = tanh(softplus(x)),
// s = sigmoid(x) (softplus' = sigmoid).
unary_fn!(Mish, |x| x * x.softplus_vectorisable().tanh_vectorisable());
binary_fn!(MishGrad, |g, x| {
    let t = x.softplus_vectorisable().tanh_vectorisable();
    g * (t + x * sigmoid(x) * (T::ONE - t * t))
});
// ln sigmoid(x) = -softplus(-x) = min(x, 0) - ln(1 + e^-|x|), PyTorch's formula.
unary_fn!(LogSigmoid, |x| -(-x).softplus_vectorisable());
binary_fn!(LogSigmoidGrad, |g, x| g * sigmoid(-x));

#[track_caller]
fn mish(x: &Tensor) -> Tensor {
    unary_saving_derivative::<Mish, MishGrad>("mish", x, |ctx, _| {
        let x = ctx.saved(0);
        // softplus without its linear region, whose second derivative would be 0.
        let t = tanh(&softplus_op(x, 1.0, f64::INFINITY));
        let d = &t + &(&(x * &sigmoid_op(x)) * &(&t * &t).rsub_scalar(1.0));
        ctx.grad() * &d
    })
}

#[track_caller]
fn logsigmoid(x: &Tensor) -> Tensor {
    unary::<LogSigmoid>("logsigmoid", x, || {
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            let g = x
                .read_storage(|x, layout| fused_rule::<LogSigmoidGrad>(ctx, (x, layout)))
                .unwrap_or_else(|| ctx.grad() * &sigmoid_op(&-x));
            smallvec![Some(g)]
        })
        .save(x)
    })
}

/// `min(max(v, 0), 6)` with NaN kept (as PyTorch's `std::min`/`std::max`, unlike
/// `f32::max`, which drops it).
#[inline(always)]
fn relu6_value<T: tapegrad_tape::Element>(v: T) -> T {
    let six = T::from_f64(6.0);
    let v = if v < T::ZERO { T::ZERO } else { v };
    if v > six { six } else { v }
}

/// `min(max(x + 3, 0), 6) / 6`, PyTorch's formula; the gradient `g / 6` strictly inside
/// (-3, 3) and 0 elsewhere, NaN included (PyTorch's f64 rule multiplies by 1/6 rounded to
/// f32; this is the exact sixth).
#[track_caller]
fn hardsigmoid(x: &Tensor) -> Tensor {
    let f32f = |v: f32| relu6_value(v + 3.0) / 6.0;
    let f64f = |v: f64| relu6_value(v + 3.0) / 6.0;
    crate::elementwise::unary_with("hardsigmoid", x, f32f, f64f, || {
        Backward::new(|ctx| {
            let x = ctx.saved(0);
            let fused = fused_rule_with(
                ctx,
                x,
                |g, v| if (v > -3.0) & (v < 3.0) { g / 6.0 } else { 0.0 },
                |g, v| if (v > -3.0) & (v < 3.0) { g / 6.0 } else { 0.0 },
            );
            if let Some(grad) = fused {
                return smallvec![Some(grad)];
            }
            let inside = mask(x, |v| (v > -3.0) & (v < 3.0));
            smallvec![Some(select_grad(&inside, ctx.grad()).div_scalar(6.0))]
        })
        .save(x)
    })
}

/// `x min(max(x + 3, 0), 6) / 6`, PyTorch's formula, with PyTorch's gradient: 0 up to -3,
/// `g (x / 3 + 1/2)` inside (-3, 3), `g` from 3 on and at NaN.
#[track_caller]
fn hardswish(x: &Tensor) -> Tensor {
    let f32f = |v: f32| v * relu6_value(v + 3.0) / 6.0;
    let f64f = |v: f64| v * relu6_value(v + 3.0) / 6.0;
    crate::elementwise::unary_with("hardswish", x, f32f, f64f, || {
        Backward::new(|ctx| {
            let (g, x) = (ctx.grad(), ctx.saved(0));
            let fused = fused_rule_with(
                ctx,
                x,
                |g, v| {
                    let slope = if (v > -3.0) & (v < 3.0) { g * (v / 3.0 + 0.5) } else { 0.0 };
                    if (v >= 3.0) | v.is_nan() { g } else { slope }
                },
                |g, v| {
                    let slope = if (v > -3.0) & (v < 3.0) { g * (v / 3.0 + 0.5) } else { 0.0 };
                    if (v >= 3.0) | v.is_nan() { g } else { slope }
                },
            );
            if let Some(grad) = fused {
                return smallvec![Some(grad)];
            }
            let inside = mask(x, |v| (v > -3.0) & (v < 3.0));
            let upper = mask(x, |v| (v >= 3.0) | v.is_nan());
            // Selected, not multiplied by masks: x / 3 is infinite outside at +-inf.
            let slope = g * &x.div_scalar(3.0).add_scalar(0.5);
            smallvec![Some(
                try_where(&inside, &slope, &select_grad(&upper, g)).expect("same shape")
            )]
        })
        .save(x)
    })
}

/// `a sigmoid(b)` for the halves `a`, `b` of `x` along `dim`.
#[track_caller]
fn glu(x: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let d = crate::dims::resolve("glu", x, dim, location)?;
    let size = x.shape().get(d).copied().unwrap_or(1);
    if x.dim() == 0 || size % 2 != 0 {
        return Err(Error::InvalidArgument {
            op: "glu",
            message: format!(
                "halves dimension {dim} of shape {:?}, whose size must be even",
                x.shape()
            ),
            location,
        });
    }
    // The halves as plain views (nothing recorded): the op is recorded once, on `x`.
    let halves = x.detach().try_chunk(2, dim)?;
    let value = crate::elementwise::zip::<Glu>(&halves[0], &halves[1], halves[0].shape());
    let (outer, _, _) = crate::dims::blocks(x.shape(), d);
    let half = x.numel() / 2 / outer.max(1);
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, x) = (ctx.grad(), ctx.saved(0));
            if let Some(grad) = glu_fused(g, x, half) {
                return smallvec![Some(grad)];
            }
            let halves = x.chunk(2, d as isize);
            let (a, s) = (&halves[0], sigmoid_op(&halves[1]));
            let ds = &s * &s.rsub_scalar(1.0);
            let grads = [g * &s, &(g * a) * &ds];
            smallvec![Some(crate::shape::cat(&[&grads[0], &grads[1]], d as isize))]
        })
        .save(x)
    };
    Ok(tapegrad_tape::record_with_tangent("glu", location, &[x], value, make_backward, |ctx| {
        ctx.map(|t| {
            let (halves, tangents) = (x.chunk(2, d as isize), t.chunk(2, d as isize));
            let s = sigmoid_op(&halves[1]);
            let ds = &s * &s.rsub_scalar(1.0);
            &(&tangents[0] * &s) + &(&(&tangents[1] * &halves[0]) * &ds)
        })
    }))
}

binary_fn!(Glu, |a, b| a * sigmoid(b));

/// GLU's gradient in one pass over the incoming gradient and the input, written into both
/// halves (`g s` and `g a s (1 - s)` for `s = sigmoid(b)`, the recorded rule's arithmetic),
/// for a backward that records nothing; `None` otherwise.
fn glu_fused(g: &Tensor, x: &Tensor, half: usize) -> Option<Tensor> {
    use tapegrad_kernels::strided::zip3_pairs_into_halves;
    #[inline(always)]
    fn grads<T: tapegrad_tape::Element>((g, a, b): (T, T, T)) -> (T, T) {
        let s = sigmoid(b);
        (g * s, (g * a) * (s * (T::ONE - s)))
    }
    if tapegrad_tape::is_grad_enabled() || g.dtype() != x.dtype() || half == 0 {
        return None;
    }
    let grad = match (&g.contiguous_storage(), &x.contiguous_storage()) {
        (Storage::F32(g), Storage::F32(x)) => {
            Storage::from_vec(zip3_pairs_into_halves(g, x, half, grads::<f32>))
        }
        (Storage::F64(g), Storage::F64(x)) => {
            Storage::from_vec(zip3_pairs_into_halves(g, x, half, grads::<f64>))
        }
        _ => return None,
    };
    Some(Tensor::from_storage(grad, tapegrad_tape::layout::Layout::contiguous(x.shape())))
}

/// `x > 0 ? x : w x` with one weight per channel (dimension 1) or one for all.
#[track_caller]
fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let channels = if x.dim() >= 2 { x.shape()[1] } else { 1 };
    let n = weight.numel();
    if weight.dim() > 1 || (n != 1 && n != channels) {
        return Err(Error::Shape {
            op: "prelu",
            message: format!(
                "weight of shape {:?} must hold 1 value or one per channel ({channels}, \
                 dimension 1 of the input's shape {:?})",
                weight.shape(),
                x.shape()
            ),
            location,
        });
    }
    // The weight along dimension 1, broadcast over the rest.
    let mut shape = vec![1isize; x.dim()];
    if n > 1 {
        shape[1] = n as isize;
    }
    let w = weight.try_reshape(&shape)?;
    let positive = x.gt(&Tensor::zeros_dtype(&[], x.dtype()));
    // The negative part with zeros where x > 0, so that an infinite x gives the weight a
    // zero gradient there rather than 0 * inf.
    let zero = Tensor::zeros_dtype(&[], x.dtype());
    let negative = try_where(&positive, &zero, x)?;
    try_where(&positive, x, &w.try_mul(&negative)?)
}

#[track_caller]
fn check_bounds(op: &'static str, min: f64, max: f64) -> Result<()> {
    if min > max || min.is_nan() || max.is_nan() {
        return Err(Error::InvalidArgument {
            op,
            message: format!("min_val {min} must not be greater than max_val {max}"),
            location: Location::caller(),
        });
    }
    Ok(())
}

/// Activation functions as tensor methods (PyTorch's `torch.nn.functional` names). In the
/// prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![-4.0f64, 0.0, 1.5, 8.0], &[4]).requires_grad();
/// let y = x.hardswish().sum();
/// y.backward();
/// // 0 below -3, x / 3 + 1/2 inside, 1 above 3
/// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.5, 1.0, 1.0]);
/// ```
pub trait ActivationOps {
    /// `x` clamped to [-1, 1] (PyTorch's `F.hardtanh`); the gradient passes strictly
    /// inside.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 3.0], &[3]);
    /// assert_eq!(x.hardtanh().to_vec::<f32>(), vec![-1.0, 0.5, 1.0]);
    /// ```
    #[track_caller]
    fn hardtanh(&self) -> Tensor {
        self.hardtanh_with(-1.0, 1.0)
    }

    /// [`ActivationOps::hardtanh`] with its keywords `min_val` and `max_val`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 3.0], &[3]);
    /// assert_eq!(x.hardtanh_with(0.0, 2.0).to_vec::<f32>(), vec![0.0, 0.5, 2.0]);
    /// ```
    #[track_caller]
    fn hardtanh_with(&self, min_val: f64, max_val: f64) -> Tensor {
        or_panic(self.try_hardtanh_with(min_val, max_val))
    }

    /// [`ActivationOps::hardtanh_with`], with an error for `min_val > max_val`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::zeros(&[2]).try_hardtanh_with(1.0, -1.0).unwrap_err();
    /// assert!(err.to_string().contains("min_val 1 must not be greater than max_val -1"));
    /// ```
    #[track_caller]
    fn try_hardtanh_with(&self, min_val: f64, max_val: f64) -> Result<Tensor>;

    /// `min(max(x, 0), 6)` (PyTorch's `F.relu6`, hardtanh on [0, 6]).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 9.0], &[3]);
    /// assert_eq!(x.relu6().to_vec::<f32>(), vec![0.0, 0.5, 6.0]);
    /// ```
    #[track_caller]
    fn relu6(&self) -> Tensor;

    /// `min(max(x + 3, 0), 6) / 6`, a piecewise-linear logistic function (PyTorch's
    /// `F.hardsigmoid`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-4.0f64, 0.0, 1.5, 3.0], &[4]);
    /// assert_eq!(x.hardsigmoid().to_vec::<f64>(), vec![0.0, 0.5, 0.75, 1.0]);
    /// ```
    #[track_caller]
    fn hardsigmoid(&self) -> Tensor;

    /// `x hardsigmoid(x)`, MobileNetV3's activation (PyTorch's `F.hardswish`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-4.0f64, 0.0, 1.5, 3.0], &[4]);
    /// assert_eq!(x.hardswish().to_vec::<f64>(), vec![-0.0, 0.0, 1.125, 3.0]);
    /// ```
    #[track_caller]
    fn hardswish(&self) -> Tensor;

    /// `x tanh(softplus(x))` (PyTorch's `F.mish`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64], &[1]).mish().item();
    /// assert!((y - (1.0f64.exp().ln_1p()).tanh()).abs() < 1e-15);
    /// ```
    #[track_caller]
    fn mish(&self) -> Tensor;

    /// The scaled ELU of self-normalising networks (PyTorch's `F.selu`):
    /// `scale (x > 0 ? x : alpha (e^x - 1))` with PyTorch's constants.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64, -50.0], &[2]).selu().to_vec::<f64>();
    /// assert_eq!(y[0], 1.0507009873554805);
    /// assert!((y[1] + 1.0507009873554805 * 1.6732632423543772).abs() < 1e-12);
    /// ```
    #[track_caller]
    fn selu(&self) -> Tensor;

    /// `x > 0 ? x : alpha (e^(x / alpha) - 1)` with `alpha` 1 (PyTorch's `F.celu`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!((Tensor::full(&[1], -50.0).celu().item() + 1.0).abs() < 1e-6);
    /// ```
    #[track_caller]
    fn celu(&self) -> Tensor {
        self.celu_with(1.0)
    }

    /// [`ActivationOps::celu`] with its keyword `alpha`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!((Tensor::full(&[1], -50.0).celu_with(2.0).item() + 2.0).abs() < 1e-6);
    /// ```
    #[track_caller]
    fn celu_with(&self, alpha: f64) -> Tensor {
        or_panic(self.try_celu_with(alpha))
    }

    /// [`ActivationOps::celu_with`], with an error for `alpha = 0`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[1]).try_celu_with(0.0).is_err());
    /// ```
    #[track_caller]
    fn try_celu_with(&self, alpha: f64) -> Result<Tensor>;

    /// `ln sigmoid(x)`, computed without overflow (PyTorch's `F.logsigmoid`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![0.0f64, -800.0], &[2]).logsigmoid().to_vec::<f64>();
    /// assert_eq!(y, vec![-(2f64.ln()), -800.0]);
    /// ```
    #[track_caller]
    fn logsigmoid(&self) -> Tensor;

    /// `x / (1 + |x|)` (PyTorch's `F.softsign`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-3.0f32, 1.0], &[2]);
    /// assert_eq!(x.softsign().to_vec::<f32>(), vec![-0.75, 0.5]);
    /// ```
    #[track_caller]
    fn softsign(&self) -> Tensor;

    /// `x - tanh(x)` (PyTorch's `F.tanhshrink`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec(vec![1.0f64], &[1]).tanhshrink().item();
    /// assert_eq!(y, 1.0 - 1f64.tanh());
    /// ```
    #[track_caller]
    fn tanhshrink(&self) -> Tensor;

    /// The gated linear unit: `a sigmoid(b)` for the two halves `a`, `b` of `x` along `dim`
    /// (PyTorch's `F.glu`; `dim` -1 there by default).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f64, 4.0, 0.0, 0.0], &[1, 4]);
    /// assert_eq!(x.glu(-1).to_vec::<f64>(), vec![1.0, 2.0]); // sigmoid(0) = 1/2
    /// ```
    #[track_caller]
    fn glu(&self, dim: isize) -> Tensor {
        or_panic(self.try_glu(dim))
    }

    /// [`ActivationOps::glu`], with an error for an odd-sized or missing dimension.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::zeros(&[2, 3]).try_glu(1).unwrap_err();
    /// assert!(err.to_string().contains("must be even"));
    /// ```
    #[track_caller]
    fn try_glu(&self, dim: isize) -> Result<Tensor>;

    /// `x > 0 ? x : w x` with a learned slope `w`: one value, or one per channel
    /// (dimension 1) (PyTorch's `F.prelu`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-1.0f32, 2.0, -1.0, 2.0], &[2, 2]);
    /// let w = Tensor::from_vec(vec![0.5f32, 0.25], &[2]);
    /// assert_eq!(x.prelu(&w).to_vec::<f32>(), vec![-0.5, 2.0, -0.5, 2.0]);
    /// ```
    #[track_caller]
    fn prelu(&self, weight: &Tensor) -> Tensor {
        or_panic(self.try_prelu(weight))
    }

    /// [`ActivationOps::prelu`], with an error for a weight that fits no channel count.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::zeros(&[4, 3]).try_prelu(&Tensor::ones(&[2])).unwrap_err();
    /// assert!(err.to_string().contains("one per channel (3"));
    /// ```
    #[track_caller]
    fn try_prelu(&self, weight: &Tensor) -> Result<Tensor>;
}

impl ActivationOps for Tensor {
    #[track_caller]
    fn try_hardtanh_with(&self, min_val: f64, max_val: f64) -> Result<Tensor> {
        check_bounds("hardtanh", min_val, max_val)?;
        Ok(clamp_named("hardtanh", self, Some(min_val), Some(max_val)))
    }
    #[track_caller]
    fn relu6(&self) -> Tensor {
        clamp_named("relu6", self, Some(0.0), Some(6.0))
    }
    #[track_caller]
    fn hardsigmoid(&self) -> Tensor {
        hardsigmoid(self)
    }
    #[track_caller]
    fn hardswish(&self) -> Tensor {
        hardswish(self)
    }
    #[track_caller]
    fn mish(&self) -> Tensor {
        mish(self)
    }
    #[track_caller]
    fn selu(&self) -> Tensor {
        elu_scaled("selu", self, SELU_ALPHA, SELU_SCALE, 1.0)
    }
    #[track_caller]
    fn try_celu_with(&self, alpha: f64) -> Result<Tensor> {
        if alpha == 0.0 {
            return Err(Error::InvalidArgument {
                op: "celu",
                message: "alpha must not be 0 (the input is divided by it)".into(),
                location: Location::caller(),
            });
        }
        Ok(elu_scaled("celu", self, alpha, 1.0, 1.0 / alpha))
    }
    #[track_caller]
    fn logsigmoid(&self) -> Tensor {
        logsigmoid(self)
    }
    #[track_caller]
    fn softsign(&self) -> Tensor {
        self / &self.abs().add_scalar(1.0)
    }
    #[track_caller]
    fn tanhshrink(&self) -> Tensor {
        self - &self.tanh()
    }
    #[track_caller]
    fn try_glu(&self, dim: isize) -> Result<Tensor> {
        glu(self, dim)
    }
    #[track_caller]
    fn try_prelu(&self, weight: &Tensor) -> Result<Tensor> {
        prelu(self, weight)
    }
}
