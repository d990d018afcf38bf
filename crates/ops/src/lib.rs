//! The differentiable operations of tapegrad.
//!
//! Operations are methods of the [`TensorOps`] extension trait (in tapegrad's prelude) and
//! functions of [`functional`] (PyTorch's `torch.nn.functional`), named as in PyTorch. Each
//! computes its value with a kernel of tapegrad-kernels and records a backward rule
//! written with the same operations, so that every rule can itself be differentiated.
//!
//! ```
//! use tapegrad_ops::TensorOps;
//! use tapegrad_tape::Tensor;
//! let w = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]).requires_grad();
//! let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]);
//! let loss = w.matmul(&x).tanh().sum();
//! loss.backward();
//! assert_eq!(w.grad().unwrap().shape(), &[2, 2]);
//! ```

#![forbid(unsafe_code)]

mod binary;
mod conv;
mod dims;
mod elementwise;
pub mod functional;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod shape;
mod unary;

pub use conv::{Conv2dOptions, set_winograd_enabled, winograd_enabled};
pub use functional::Reduction;
use tapegrad_tape::{Result, Tensor, or_panic};

/// What [`TensorOps::pow`] accepts as an exponent: a number or a tensor.
///
/// ```
/// use tapegrad_ops::TensorOps;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::full(&[2], 3.0);
/// assert_eq!(x.pow(2.0).to_vec::<f32>(), vec![9.0, 9.0]);
/// assert_eq!(x.pow(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![9.0, 9.0]);
/// ```
pub trait Exponent {
    /// `base` raised to this exponent.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
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
        Ok(unary::pow_scalar(base, self))
    }
}

impl Exponent for &Tensor {
    #[track_caller]
    fn raise(self, base: &Tensor) -> Result<Tensor> {
        unary::pow_tensor(base, self)
    }
}

/// Tensors joined along an existing dimension (PyTorch's `torch.cat`).
///
/// ```
/// use tapegrad_tape::Tensor;
/// let c = tapegrad_ops::cat(&[&Tensor::zeros(&[2, 1]), &Tensor::ones(&[2, 2])], 1);
/// assert_eq!(c.to_vec::<f32>(), vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
/// ```
#[track_caller]
pub fn cat(tensors: &[&Tensor], dim: isize) -> Tensor {
    or_panic(shape::cat(tensors, dim))
}

/// [`cat`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(tapegrad_ops::try_cat(&[&Tensor::zeros(&[2]), &Tensor::zeros(&[2, 1])], 0).is_err());
/// ```
#[track_caller]
pub fn try_cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    shape::cat(tensors, dim)
}

/// Tensors of one shape joined along a new dimension (PyTorch's `torch.stack`).
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert_eq!(tapegrad_ops::stack(&[&Tensor::zeros(&[3]), &Tensor::ones(&[3])], 0).shape(), &[2, 3]);
/// ```
#[track_caller]
pub fn stack(tensors: &[&Tensor], dim: isize) -> Tensor {
    or_panic(shape::stack(tensors, dim))
}

/// [`stack`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(tapegrad_ops::try_stack(&[&Tensor::zeros(&[3]), &Tensor::ones(&[2])], 0).is_err());
/// ```
#[track_caller]
pub fn try_stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    shape::stack(tensors, dim)
}

/// `cond ? a : b`, elementwise with broadcasting (PyTorch's `torch.where`). `cond` is a mask
/// (non-zero means true, e.g. from [`TensorOps::gt`]); the gradient flows to `a` and `b`.
///
/// ```
/// use tapegrad_ops::{TensorOps, where_};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![-1.0f32, 2.0], &[2]);
/// let y = where_(&x.gt(&Tensor::zeros(&[1])), &x, &Tensor::zeros(&[1]));
/// assert_eq!(y.to_vec::<f32>(), vec![0.0, 2.0]);
/// ```
#[track_caller]
pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    or_panic(binary::where_(cond, a, b))
}

/// [`where_`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(tapegrad_ops::try_where(&Tensor::ones(&[3]), &Tensor::ones(&[2]), &Tensor::ones(&[2])).is_err());
/// ```
#[track_caller]
pub fn try_where(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary::where_(cond, a, b)
}

/// Declares the unary methods of [`TensorOps`]. Each gets a doctest that applies it to the
/// `f64` inputs given in brackets and compares every result with the scalar formula after
/// `=>`, written in terms of one input `x`.
macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident($inputs:expr) => |$x:ident| $expected:expr;)*) => {
        $(
            $(#[$doc])*
            ///
            /// ```
            /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
            #[doc = concat!("let xs: Vec<f64> = vec!", stringify!($inputs), ";")]
            #[doc = concat!(
                "let ys = Tensor::from_vec(xs.clone(), &[xs.len()]).", stringify!($name), "().to_vec::<f64>();"
            )]
            #[doc = concat!("for (&", stringify!($x), ", &y) in xs.iter().zip(&ys) {")]
            #[doc = concat!(
                "    assert!((y - ", stringify!($expected), ").abs() < 1e-12, ",
                "\"", stringify!($name), "({", stringify!($x), "}) = {y}\");"
            )]
            /// }
            /// ```
            #[track_caller]
            fn $name(&self) -> Tensor;
        )*
    };
}

macro_rules! unary_impls {
    ($($name:ident => $f:path;)*) => {
        $( #[track_caller] fn $name(&self) -> Tensor { $f(self) } )*
    };
}

/// The operations of tapegrad as methods on [`Tensor`], named as in PyTorch.
///
/// Every method panics on bad arguments with a message that names the operation, the
/// shapes and the caller's line; `try_` forms return [`tapegrad_tape::Result`] instead.
/// Dimensions are `isize`: negative values count from the end.
///
/// ```
/// use tapegrad_ops::TensorOps;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// assert_eq!(x.sum_dim(0, false).to_vec::<f64>(), vec![4.0, 6.0]);
/// assert!(x.try_sum_dim(2, false).is_err());
/// ```
pub trait TensorOps {
    unary_methods! {
        /// `e^x`. `Tensor::zeros(&[1]).exp()` is 1.
        exp([-1.0, 0.0, 2.5]) => |x| x.exp();
        /// Natural logarithm (`-inf` at 0, NaN below, as in IEEE arithmetic).
        log([0.5, 1.0, 4.0]) => |x| x.ln();
        /// `ln(1 + x)`, accurate for small `x`.
        log1p([-0.5, 1e-10, 3.0]) => |x| x.ln_1p();
        /// Square root.
        sqrt([0.0, 2.0, 9.0]) => |x| x.sqrt();
        /// `1 / sqrt(x)`.
        rsqrt([0.25, 2.0, 9.0]) => |x| 1.0 / x.sqrt();
        /// `x^2`.
        square([-3.0, 0.5, 2.0]) => |x| x * x;
        /// `1 / x`.
        reciprocal([-4.0, 0.5, 3.0]) => |x| 1.0 / x;
        /// Sine.
        sin([-1.0, 0.0, 3.0]) => |x| x.sin();
        /// Cosine.
        cos([-1.0, 0.0, 3.0]) => |x| x.cos();
        /// Absolute value (gradient 0 at 0, as in PyTorch).
        abs([-2.0, 0.0, 1.5]) => |x| x.abs();
        /// Hyperbolic tangent.
        tanh([-20.0, 0.5, 3.0]) => |x| x.tanh();
        /// `1 / (1 + e^-x)`, computed without overflow.
        sigmoid([-800.0, 0.0, 3.0]) => |x| 1.0 / (1.0 + (-x).exp());
        /// `max(x, 0)` (gradient 0 at 0); NaN stays NaN and passes the gradient, as in PyTorch.
        relu([-1.0, 0.0, 2.0]) => |x| x.max(0.0);
        /// The error function.
        erf([-1.0, 0.0, 0.5]) => |x| libm::erf(x);
        /// `x sigmoid(x)` (also called swish).
        silu([-2.0, 0.0, 1.5]) => |x| x / (1.0 + (-x).exp());
    }

    /// `x` where positive, `slope x` elsewhere.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], -2.0).leaky_relu(0.1).item(), -0.2f32 as f64);
    /// ```
    #[track_caller]
    fn leaky_relu(&self, slope: f64) -> Tensor;

    /// `x` where positive, `alpha (e^x - 1)` elsewhere.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::full(&[1], -50.0).elu(1.0).item() + 1.0 < 1e-6);
    /// ```
    #[track_caller]
    fn elu(&self, alpha: f64) -> Tensor;

    /// GELU, exact: `x Phi(x)` with the normal CDF `Phi` (PyTorch's default).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1]).gelu().item(), 0.0);
    /// ```
    #[track_caller]
    fn gelu(&self) -> Tensor;

    /// GELU with the tanh approximation (PyTorch's `approximate="tanh"`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::full_dtype(&[1], 1.0, tapegrad_tape::DType::F64);
    /// assert!((x.gelu_tanh().item() - x.gelu().item()).abs() < 1e-3);
    /// ```
    #[track_caller]
    fn gelu_tanh(&self) -> Tensor;

    /// `ln(1 + e^x)`, computed without overflow (PyTorch's `softplus` with beta 1,
    /// threshold 20).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 1e4).softplus().item(), 1e4);
    /// ```
    #[track_caller]
    fn softplus(&self) -> Tensor;

    /// Values limited to `[min, max]`; either bound may be `None`. NaN stays NaN; the
    /// gradient is 0 at NaN and at a bound (as in PyTorch 2.15).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5, 2.0], &[3]);
    /// assert_eq!(x.clamp(Some(-1.0), Some(1.0)).to_vec::<f32>(), vec![-1.0, 0.5, 1.0]);
    /// ```
    #[track_caller]
    fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor;

    /// `x` raised to a number or, with broadcasting, to a tensor of exponents.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 4.0).pow(0.5).item(), 2.0);
    /// ```
    #[track_caller]
    fn pow<E: Exponent>(&self, exponent: E) -> Tensor {
        or_panic(self.try_pow(exponent))
    }

    /// [`TensorOps::pow`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_pow(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_pow<E: Exponent>(&self, exponent: E) -> Result<Tensor>;

    /// The larger of two tensors, elementwise with broadcasting (ties split the gradient;
    /// with a NaN, the result is NaN and both get all of it).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 5.0], &[2]);
    /// assert_eq!(a.maximum(&Tensor::full(&[1], 3.0)).to_vec::<f32>(), vec![3.0, 5.0]);
    /// ```
    #[track_caller]
    fn maximum(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_maximum(other))
    }

    /// [`TensorOps::maximum`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_maximum(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_maximum(&self, other: &Tensor) -> Result<Tensor>;

    /// The smaller of two tensors, elementwise with broadcasting.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 5.0], &[2]);
    /// assert_eq!(a.minimum(&Tensor::full(&[1], 3.0)).to_vec::<f32>(), vec![1.0, 3.0]);
    /// ```
    #[track_caller]
    fn minimum(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_minimum(other))
    }

    /// [`TensorOps::minimum`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_minimum(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_minimum(&self, other: &Tensor) -> Result<Tensor>;

    /// `self == other` as a 0/1 mask in the operands' dtype, with no gradient.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(a.eq(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![0.0, 1.0]);
    /// ```
    #[track_caller]
    fn eq(&self, other: &Tensor) -> Tensor;
    /// `self != other` as a 0/1 mask.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.ne(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![1.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    fn ne(&self, other: &Tensor) -> Tensor;
    /// `self > other` as a 0/1 mask.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.gt(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![0.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    fn gt(&self, other: &Tensor) -> Tensor;
    /// `self >= other` as a 0/1 mask.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.ge(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![0.0, 1.0, 1.0]);
    /// ```
    #[track_caller]
    fn ge(&self, other: &Tensor) -> Tensor;
    /// `self < other` as a 0/1 mask.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.lt(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![1.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    fn lt(&self, other: &Tensor) -> Tensor;
    /// `self <= other` as a 0/1 mask.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.le(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![1.0, 1.0, 0.0]);
    /// ```
    #[track_caller]
    fn le(&self, other: &Tensor) -> Tensor;

    /// The sum of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).sum().item(), 6.0);
    /// ```
    #[track_caller]
    fn sum(&self) -> Tensor;

    /// The mean of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 4.0, 1.0).mean().item(), 1.5);
    /// ```
    #[track_caller]
    fn mean(&self) -> Tensor;

    /// The sum along `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).sum_dim(-1, true).shape(), &[2, 1]);
    /// ```
    #[track_caller]
    fn sum_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_sum_dim(dim, keepdim))
    }

    /// [`TensorOps::sum_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert!(x.try_sum_dim(-2, false).is_ok());
    /// assert!(x.try_sum_dim(2, false).is_err()); // x has dimensions -2..=1
    /// ```
    #[track_caller]
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The mean along `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2]);
    /// assert_eq!(x.mean_dim(1, false).to_vec::<f32>(), vec![2.0]);
    /// ```
    #[track_caller]
    fn mean_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_mean_dim(dim, keepdim))
    }

    /// [`TensorOps::mean_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_mean_dim(-3, false).is_err());
    /// ```
    #[track_caller]
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The variance of all elements with Bessel's `correction` (1 gives the unbiased
    /// estimate, PyTorch's default; 0 the population variance).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.var(1.0).item(), 5.0 / 3.0);
    /// ```
    #[track_caller]
    fn var(&self, correction: f64) -> Tensor;

    /// The variance along `dim` with Bessel's `correction`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[2, 2]);
    /// assert_eq!(x.var_dim(1, 0.0, false).to_vec::<f64>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    fn var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Tensor {
        or_panic(self.try_var_dim(dim, correction, keepdim))
    }

    /// [`TensorOps::var_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_var_dim(2, 1.0, false).is_err());
    /// ```
    #[track_caller]
    fn try_var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Result<Tensor>;

    /// The largest element (NaN if any element is NaN); the elements equal to it (or the
    /// NaNs) share the gradient evenly.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 5.0, 1.0).max().item(), 4.0);
    /// ```
    #[track_caller]
    fn max(&self) -> Tensor;

    /// The smallest element.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(2.0, 5.0, 1.0).min().item(), 2.0);
    /// ```
    #[track_caller]
    fn min(&self) -> Tensor;

    /// The largest values along `dim` and their int64 indices (the first NaN, else the first
    /// on ties); the gradient flows to the chosen elements.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 7.0, 3.0, 2.0], &[2, 2]);
    /// let (values, indices) = x.max_dim(1, false);
    /// assert_eq!((values.to_vec::<f32>(), indices.to_vec::<i64>()), (vec![7.0, 3.0], vec![1, 0]));
    /// ```
    #[track_caller]
    fn max_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor) {
        or_panic(self.try_max_dim(dim, keepdim))
    }

    /// [`TensorOps::max_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_max_dim(2, false).is_err());
    /// ```
    #[track_caller]
    fn try_max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)>;

    /// The smallest values along `dim` and their indices.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let (v, i) = Tensor::from_vec(vec![4.0f32, 2.0], &[2]).min_dim(0, false);
    /// assert_eq!((v.item(), i.to_vec::<i64>()), (2.0, vec![1]));
    /// ```
    #[track_caller]
    fn min_dim(&self, dim: isize, keepdim: bool) -> (Tensor, Tensor) {
        or_panic(self.try_min_dim(dim, keepdim))
    }

    /// [`TensorOps::min_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_min_dim(-3, false).is_err());
    /// ```
    #[track_caller]
    fn try_min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)>;

    /// The int64 index of the largest element along `dim`, or of the flattened tensor
    /// when `dim` is `None`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![0.1f32, 0.7, 0.2, 0.9, 0.0, 0.1], &[2, 3]);
    /// assert_eq!(x.argmax(Some(1), false).to_vec::<i64>(), vec![1, 0]);
    /// assert_eq!(x.argmax(None, false).to_vec::<i64>(), vec![3]);
    /// ```
    #[track_caller]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> Tensor;

    /// The int64 index of the smallest element along `dim` (or overall).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![3.0f32, -1.0], &[2]).argmin(None, false).to_vec::<i64>(), vec![1]);
    /// ```
    #[track_caller]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> Tensor;

    /// `ln(sum(e^x))` along `dim`, computed stably (finite for logits of ±1e4).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1e4f32, 1e4], &[2]);
    /// assert!((x.logsumexp(0, false).item() - (1e4 + 2f64.ln())).abs() < 1e-2);
    /// ```
    #[track_caller]
    fn logsumexp(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_logsumexp(dim, keepdim))
    }

    /// [`TensorOps::logsumexp`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_logsumexp(1, false).is_err());
    /// ```
    #[track_caller]
    fn try_logsumexp(&self, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// The `p`-norm of all elements (`p = 2` for Euclidean, `f64::INFINITY` for the max).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::from_vec(vec![3.0f32, 4.0], &[2]).norm(2.0).item(), 5.0);
    /// ```
    #[track_caller]
    fn norm(&self, p: f64) -> Tensor;

    /// The `p`-norm along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f32, 4.0, 0.0, 1.0], &[2, 2]);
    /// assert_eq!(x.norm_dim(1.0, 1, false).to_vec::<f32>(), vec![7.0, 1.0]);
    /// ```
    #[track_caller]
    fn norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_norm_dim(p, dim, keepdim))
    }

    /// [`TensorOps::norm_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_norm_dim(2.0, 1, false).is_err());
    /// ```
    #[track_caller]
    fn try_norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Result<Tensor>;

    /// Softmax along `dim`, computed stably.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![1e4f32, -1e4], &[2]).softmax(0);
    /// assert_eq!(p.to_vec::<f32>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    fn softmax(&self, dim: isize) -> Tensor {
        or_panic(self.try_softmax(dim))
    }

    /// [`TensorOps::softmax`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_softmax(1).is_err());
    /// ```
    #[track_caller]
    fn try_softmax(&self, dim: isize) -> Result<Tensor>;

    /// Log-softmax along `dim`, computed stably.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![1e4f32, -1e4], &[2]).log_softmax(0);
    /// assert_eq!(p.to_vec::<f32>(), vec![0.0, -2e4]);
    /// ```
    #[track_caller]
    fn log_softmax(&self, dim: isize) -> Tensor {
        or_panic(self.try_log_softmax(dim))
    }

    /// [`TensorOps::log_softmax`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_log_softmax(-2).is_err());
    /// ```
    #[track_caller]
    fn try_log_softmax(&self, dim: isize) -> Result<Tensor>;

    /// The matrix product with PyTorch's `matmul` semantics: vector-vector (dot),
    /// matrix-vector, matrix-matrix, and batched with broadcast batch dimensions.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::ones(&[5, 2, 3]);
    /// assert_eq!(a.matmul(&Tensor::ones(&[3, 4])).shape(), &[5, 2, 4]);
    /// assert_eq!(Tensor::ones(&[3]).matmul(&Tensor::ones(&[3])).item(), 3.0);
    /// ```
    #[track_caller]
    fn matmul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_matmul(rhs))
    }

    /// [`TensorOps::matmul`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let err = Tensor::ones(&[2, 3]).try_matmul(&Tensor::ones(&[2, 3])).unwrap_err();
    /// assert!(err.to_string().contains("[2, 3] and [2, 3]"));
    /// ```
    #[track_caller]
    fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor>;

    /// The same elements in a new shape; one size may be `-1` to be inferred. A view when
    /// the tensor is contiguous.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 6]).reshape(&[3, -1]).shape(), &[3, 4]);
    /// ```
    #[track_caller]
    fn reshape(&self, shape: &[isize]) -> Tensor {
        or_panic(self.try_reshape(shape))
    }

    /// [`TensorOps::reshape`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2, 3]);
    /// assert!(x.try_reshape(&[4, -1]).is_err()); // 6 elements do not fill rows of 4
    /// assert!(x.try_reshape(&[-1, -1]).is_err()); // only one size may be inferred
    /// ```
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> Result<Tensor>;

    /// Dimensions `start..=end` merged into one.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).flatten(1, -1).shape(), &[2, 12]);
    /// ```
    #[track_caller]
    fn flatten(&self, start: isize, end: isize) -> Tensor {
        or_panic(self.try_flatten(start, end))
    }

    /// [`TensorOps::flatten`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3, 4]).try_flatten(2, 1).is_err()); // start after end
    /// ```
    #[track_caller]
    fn try_flatten(&self, start: isize, end: isize) -> Result<Tensor>;

    /// All size-1 dimensions removed.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1, 3, 1]).squeeze().shape(), &[3]);
    /// ```
    #[track_caller]
    fn squeeze(&self) -> Tensor;

    /// Dimension `dim` removed if it has size 1.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1, 3, 1]).squeeze_dim(0).shape(), &[3, 1]);
    /// ```
    #[track_caller]
    fn squeeze_dim(&self, dim: isize) -> Tensor {
        or_panic(self.try_squeeze_dim(dim))
    }

    /// [`TensorOps::squeeze_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[1, 3]).try_squeeze_dim(2).is_err());
    /// ```
    #[track_caller]
    fn try_squeeze_dim(&self, dim: isize) -> Result<Tensor>;

    /// A size-1 dimension inserted at `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[3]).unsqueeze(-1).shape(), &[3, 1]);
    /// ```
    #[track_caller]
    fn unsqueeze(&self, dim: isize) -> Tensor {
        or_panic(self.try_unsqueeze(dim))
    }

    /// [`TensorOps::unsqueeze`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3]);
    /// assert_eq!(x.try_unsqueeze(1).unwrap().shape(), &[3, 1]); // one past the last is allowed
    /// assert!(x.try_unsqueeze(2).is_err());
    /// ```
    #[track_caller]
    fn try_unsqueeze(&self, dim: isize) -> Result<Tensor>;

    /// The view with dimensions `a` and `b` swapped (no copy).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).transpose(0, -1).shape(), &[4, 3, 2]);
    /// ```
    #[track_caller]
    fn transpose(&self, a: isize, b: isize) -> Tensor {
        or_panic(self.try_transpose(a, b))
    }

    /// [`TensorOps::transpose`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_transpose(0, 2).is_err());
    /// ```
    #[track_caller]
    fn try_transpose(&self, a: isize, b: isize) -> Result<Tensor>;

    /// The transpose of a matrix (PyTorch's `t()`); vectors are returned unchanged.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3]).t().shape(), &[3, 2]);
    /// ```
    #[track_caller]
    fn t(&self) -> Tensor {
        self.transpose(0, -1)
    }

    /// The view whose dimension `i` is this tensor's dimension `dims[i]`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).permute(&[2, 0, 1]).shape(), &[4, 2, 3]);
    /// ```
    #[track_caller]
    fn permute(&self, dims: &[isize]) -> Tensor {
        or_panic(self.try_permute(dims))
    }

    /// [`TensorOps::permute`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_permute(&[0, 0]).is_err()); // not a permutation
    /// ```
    #[track_caller]
    fn try_permute(&self, dims: &[isize]) -> Result<Tensor>;

    /// The view broadcast to `shape`, where `-1` keeps a dimension (PyTorch's `expand`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[3, 1]).expand(&[-1, 4]).shape(), &[3, 4]);
    /// ```
    #[track_caller]
    fn expand(&self, shape: &[isize]) -> Tensor;

    /// `len` elements of `dim` from `start`, as a view.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]);
    /// assert_eq!(x.narrow(1, 1, 2).to_vec::<f32>(), vec![1.0, 2.0, 4.0, 5.0]);
    /// ```
    #[track_caller]
    fn narrow(&self, dim: isize, start: usize, len: usize) -> Tensor {
        or_panic(self.try_narrow(dim, start, len))
    }

    /// [`TensorOps::narrow`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_narrow(0, 2, 3).is_err()); // runs past the end
    /// ```
    #[track_caller]
    fn try_narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor>;

    /// Elements `start..end` of `dim` taking every `step`-th (Python's `x[start:end:step]`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 6.0, 1.0).slice(0, 1, 6, 2).to_vec::<f32>(), vec![1.0, 3.0, 5.0]);
    /// ```
    #[track_caller]
    fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Tensor {
        or_panic(self.try_slice(dim, start, end, step))
    }

    /// [`TensorOps::slice`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 4.0, 1.0);
    /// assert_eq!(x.try_slice(0, 2, 99, 1).unwrap().to_vec::<f32>(), vec![2.0, 3.0]); // end is clamped
    /// assert!(x.try_slice(0, 0, 4, 0).is_err()); // step 0
    /// ```
    #[track_caller]
    fn try_slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor>;

    /// Pieces of `size` along `dim` (the last may be smaller), as views.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let parts = Tensor::zeros(&[5, 2]).split(2, 0);
    /// assert_eq!(parts.iter().map(|p| p.shape()[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
    /// ```
    #[track_caller]
    fn split(&self, size: usize, dim: isize) -> Vec<Tensor> {
        or_panic(self.try_split(size, dim))
    }

    /// [`TensorOps::split`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_split(0, 0).is_err());
    /// ```
    #[track_caller]
    fn try_split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>>;

    /// `chunks` pieces of (nearly) equal size along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[6]).chunk(3, 0).len(), 3);
    /// ```
    #[track_caller]
    fn chunk(&self, chunks: usize, dim: isize) -> Vec<Tensor> {
        or_panic(self.try_chunk(chunks, dim))
    }

    /// [`TensorOps::chunk`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_chunk(0, 0).is_err());
    /// ```
    #[track_caller]
    fn try_chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>>;

    /// Rows along `dim` picked by a 1-D int64 `index` (repeats allowed). Panics, as
    /// PyTorch raises, on an index outside `0..size` (negative ones do not count from the
    /// end). Unlike PyTorch, a zero-dimensional `self` is an error rather than a tensor of
    /// size 1.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[3, 2]);
    /// let rows = x.index_select(0, &Tensor::from_vec(vec![2i64, 0], &[2]));
    /// assert_eq!(rows.to_vec::<f32>(), vec![4.0, 5.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    fn index_select(&self, dim: isize, index: &Tensor) -> Tensor {
        or_panic(self.try_index_select(dim, index))
    }

    /// [`TensorOps::index_select`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3, 2]);
    /// assert!(x.try_index_select(0, &Tensor::from_vec(vec![3i64], &[1])).is_err()); // out of range
    /// assert!(x.try_index_select(0, &Tensor::from_vec(vec![0.0f32], &[1])).is_err()); // not int64
    /// ```
    #[track_caller]
    fn try_index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor>;

    /// This tensor with `source`'s rows added at the rows `index` names along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3]).index_add(0, &Tensor::from_vec(vec![1i64, 1], &[2]), &Tensor::ones(&[2]));
    /// assert_eq!(x.to_vec::<f32>(), vec![0.0, 2.0, 0.0]);
    /// ```
    #[track_caller]
    fn index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Tensor {
        or_panic(self.try_index_add(dim, index, source))
    }

    /// [`TensorOps::index_add`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![0i64], &[1]);
    /// assert!(Tensor::zeros(&[3]).try_index_add(0, &index, &Tensor::ones(&[2])).is_err()); // one index, two rows
    /// ```
    #[track_caller]
    fn try_index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor>;

    /// `out[i][j] = self[i][index[i][j]]` along `dim` (PyTorch's `gather`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// let picked = x.gather(1, &Tensor::from_vec(vec![1i64, 0], &[2, 1]));
    /// assert_eq!(picked.to_vec::<f32>(), vec![2.0, 3.0]);
    /// ```
    #[track_caller]
    fn gather(&self, dim: isize, index: &Tensor) -> Tensor {
        or_panic(self.try_gather(dim, index))
    }

    /// [`TensorOps::gather`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![5i64], &[1, 1]);
    /// assert!(Tensor::zeros(&[2, 2]).try_gather(1, &index).is_err()); // out of range
    /// ```
    #[track_caller]
    fn try_gather(&self, dim: isize, index: &Tensor) -> Result<Tensor>;

    /// This tensor with `src` added at `index` along `dim`: `out[i][index[i][j]] += src[i][j]`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let out = Tensor::zeros(&[1, 3]).scatter_add(1, &Tensor::from_vec(vec![2i64, 2], &[1, 2]), &Tensor::ones(&[1, 2]));
    /// assert_eq!(out.to_vec::<f32>(), vec![0.0, 0.0, 2.0]);
    /// ```
    #[track_caller]
    fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Tensor {
        or_panic(self.try_scatter_add(dim, index, src))
    }

    /// [`TensorOps::scatter_add`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let index = Tensor::from_vec(vec![0i64, 1], &[1, 2]);
    /// let src = Tensor::ones(&[1, 1]); // smaller than the index
    /// assert!(Tensor::zeros(&[1, 3]).try_scatter_add(1, &index, &src).is_err());
    /// ```
    #[track_caller]
    fn try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor>;

    /// Constant padding: `pads[i] = (before, after)` for the `i`-th dimension from the end
    /// (PyTorch's `F.pad` order).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 2]).pad(&[(1, 1), (0, 2)], 0.0).shape(), &[4, 4]);
    /// ```
    #[track_caller]
    fn pad(&self, pads: &[(usize, usize)], value: f64) -> Tensor {
        or_panic(self.try_pad(pads, value))
    }

    /// [`TensorOps::pad`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_pad(&[(1, 1), (1, 1)], 0.0).is_err()); // more pads than dimensions
    /// ```
    #[track_caller]
    fn try_pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor>;

    /// This tensor tiled `reps[i]` times along each dimension (PyTorch's `repeat`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(x.repeat(&[2, 2]).to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    fn repeat(&self, reps: &[usize]) -> Tensor {
        or_panic(self.try_repeat(reps))
    }

    /// [`TensorOps::repeat`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 2]).try_repeat(&[2]).is_err()); // fewer reps than dimensions
    /// ```
    #[track_caller]
    fn try_repeat(&self, reps: &[usize]) -> Result<Tensor>;
}

impl TensorOps for Tensor {
    unary_impls! {
        exp => unary::exp;
        log => unary::log;
        log1p => unary::log1p;
        sqrt => unary::sqrt;
        rsqrt => unary::rsqrt;
        square => unary::square;
        reciprocal => unary::reciprocal;
        sin => unary::sin;
        cos => unary::cos;
        abs => unary::abs;
        tanh => unary::tanh;
        sigmoid => unary::sigmoid_op;
        relu => unary::relu;
        erf => unary::erf;
        silu => unary::silu;
    }
    #[track_caller]
    fn leaky_relu(&self, slope: f64) -> Tensor {
        unary::leaky_relu(self, slope)
    }
    #[track_caller]
    fn elu(&self, alpha: f64) -> Tensor {
        unary::elu(self, alpha)
    }
    #[track_caller]
    fn gelu(&self) -> Tensor {
        unary::gelu(self, false)
    }
    #[track_caller]
    fn gelu_tanh(&self) -> Tensor {
        unary::gelu(self, true)
    }
    #[track_caller]
    fn softplus(&self) -> Tensor {
        unary::softplus_op(self, 1.0, 20.0)
    }
    #[track_caller]
    fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor {
        unary::clamp(self, min, max)
    }
    #[track_caller]
    fn try_pow<E: Exponent>(&self, exponent: E) -> Result<Tensor> {
        exponent.raise(self)
    }
    #[track_caller]
    fn try_maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary::extremum(self, other, true)
    }
    #[track_caller]
    fn try_minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary::extremum(self, other, false)
    }
    #[track_caller]
    fn eq(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("eq", self, other, |a, b| a == b))
    }
    #[track_caller]
    fn ne(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("ne", self, other, |a, b| a != b))
    }
    #[track_caller]
    fn gt(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("gt", self, other, |a, b| a > b))
    }
    #[track_caller]
    fn ge(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("ge", self, other, |a, b| a >= b))
    }
    #[track_caller]
    fn lt(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("lt", self, other, |a, b| a < b))
    }
    #[track_caller]
    fn le(&self, other: &Tensor) -> Tensor {
        or_panic(binary::compare("le", self, other, |a, b| a <= b))
    }
    #[track_caller]
    fn sum(&self) -> Tensor {
        reduce::sum(self)
    }
    #[track_caller]
    fn mean(&self) -> Tensor {
        reduce::mean(self)
    }
    #[track_caller]
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        reduce::sum_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        reduce::mean_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn var(&self, correction: f64) -> Tensor {
        or_panic(reduce::var(self, None, correction, false))
    }
    #[track_caller]
    fn try_var_dim(&self, dim: isize, correction: f64, keepdim: bool) -> Result<Tensor> {
        reduce::var(self, Some(dim), correction, keepdim)
    }
    #[track_caller]
    fn max(&self) -> Tensor {
        or_panic(reduce::max_all(self, true))
    }
    #[track_caller]
    fn min(&self) -> Tensor {
        or_panic(reduce::max_all(self, false))
    }
    #[track_caller]
    fn try_max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        reduce::max_dim(self, dim, keepdim, true)
    }
    #[track_caller]
    fn try_min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        reduce::max_dim(self, dim, keepdim, false)
    }
    #[track_caller]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> Tensor {
        or_panic(reduce::argmax(self, dim, keepdim, true))
    }
    #[track_caller]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> Tensor {
        or_panic(reduce::argmax(self, dim, keepdim, false))
    }
    #[track_caller]
    fn try_logsumexp(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        reduce::logsumexp(self, dim, keepdim)
    }
    #[track_caller]
    fn norm(&self, p: f64) -> Tensor {
        or_panic(reduce::norm(self, p, None, false))
    }
    #[track_caller]
    fn try_norm_dim(&self, p: f64, dim: isize, keepdim: bool) -> Result<Tensor> {
        reduce::norm(self, p, Some(dim), keepdim)
    }
    #[track_caller]
    fn try_softmax(&self, dim: isize) -> Result<Tensor> {
        functional::softmax_op(self, dim, false)
    }
    #[track_caller]
    fn try_log_softmax(&self, dim: isize) -> Result<Tensor> {
        functional::softmax_op(self, dim, true)
    }
    #[track_caller]
    fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        matmul::matmul(self, rhs)
    }
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> Result<Tensor> {
        shape::reshape(self, shape)
    }
    #[track_caller]
    fn try_flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        shape::flatten(self, start, end)
    }
    #[track_caller]
    fn squeeze(&self) -> Tensor {
        or_panic(shape::squeeze(self, None))
    }
    #[track_caller]
    fn try_squeeze_dim(&self, dim: isize) -> Result<Tensor> {
        shape::squeeze(self, Some(dim))
    }
    #[track_caller]
    fn try_unsqueeze(&self, dim: isize) -> Result<Tensor> {
        shape::unsqueeze(self, dim)
    }
    #[track_caller]
    fn try_transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        shape::transpose(self, a, b)
    }
    #[track_caller]
    fn try_permute(&self, dims: &[isize]) -> Result<Tensor> {
        shape::permute(self, dims)
    }
    #[track_caller]
    fn expand(&self, shape: &[isize]) -> Tensor {
        let lead = shape.len().saturating_sub(self.dim());
        let target: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, &s)| if s < 0 && i >= lead { self.shape()[i - lead] } else { s.max(0) as usize })
            .collect();
        self.broadcast_to(&target)
    }
    #[track_caller]
    fn try_narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        shape::narrow(self, dim, start, len)
    }
    #[track_caller]
    fn try_slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        shape::slice(self, dim, start, end, step)
    }
    #[track_caller]
    fn try_split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>> {
        shape::split(self, size, dim)
    }
    #[track_caller]
    fn try_chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        shape::chunk(self, chunks, dim)
    }
    #[track_caller]
    fn try_index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        shape::index_select(self, dim, index)
    }
    #[track_caller]
    fn try_index_add(&self, dim: isize, index: &Tensor, source: &Tensor) -> Result<Tensor> {
        shape::index_add(self, dim, index, source)
    }
    #[track_caller]
    fn try_gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        shape::gather(self, dim, index)
    }
    #[track_caller]
    fn try_scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        shape::scatter_add(self, dim, index, src)
    }
    #[track_caller]
    fn try_pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
        shape::pad(self, pads, value)
    }
    #[track_caller]
    fn try_repeat(&self, reps: &[usize]) -> Result<Tensor> {
        shape::repeat(self, reps)
    }
}
