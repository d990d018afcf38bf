//! Element types: the run-time [`DType`] tag and the [`Element`] trait kernels are generic over.

use std::fmt;

pub use tapegrad_kernels::{Float, Real};

/// The element type of a tensor, chosen at run time as in PyTorch.
///
/// ```
/// use tapegrad_tape::{DType, Tensor};
/// let t = Tensor::zeros(&[2]);
/// assert_eq!(t.dtype(), DType::F32);
/// assert_eq!(t.to_dtype(DType::F64).dtype(), DType::F64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float, the default (PyTorch's `torch.float32`).
    F32,
    /// 64-bit IEEE float, what numerical gradient checks need.
    F64,
    /// 64-bit signed integer: class labels and indices (`argmax`, `gather`, `cross_entropy`
    /// targets). Integer tensors never require gradients.
    I64,
    /// Booleans: what comparisons give, and what `where_`, `masked_fill` and
    /// `masked_select` take. Never requires gradients.
    Bool,
}

impl DType {
    /// Bytes per element.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::DType::F64.size_in_bytes(), 8);
    /// ```
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type (one that can carry gradients).
    ///
    /// ```
    /// use tapegrad_tape::DType;
    /// assert!(DType::F32.is_float() && !DType::I64.is_float());
    /// ```
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::Bool => "bool",
        })
    }
}

/// A floating-point element type that tensors can hold (`f32` or `f64`).
///
/// Kernels are written once, generic over `Element`; the run-time dtype picks the
/// instantiation with one `match` per op. Its arithmetic (`+`, `ZERO`, `ONE`, `is_nan`)
/// comes from tapegrad-kernels' [`Real`], and [`Float`] lets it call every kernel there.
///
/// ```
/// use tapegrad_tape::Element;
/// fn double<T: Element>(x: T) -> T {
///     x + x
/// }
/// assert_eq!(double(1.5f32), 3.0);
/// assert_eq!(<f64 as Element>::from_f64(0.25), 0.25);
/// ```
pub trait Element: crate::storage::StorageElement + Float + fmt::Display + fmt::LowerExp {
    /// The run-time tag of this type.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Element};
    /// assert_eq!((<f32 as Element>::DTYPE, <f64 as Element>::DTYPE), (DType::F32, DType::F64));
    /// ```
    const DTYPE: DType;

    /// Converts from `f64`, rounding to nearest.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f32 as Element>::from_f64(0.1), 0.1f32); // the nearest f32
    /// ```
    fn from_f64(v: f64) -> Self;

    /// Converts to `f64` exactly.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(0.5f32.to_f64(), 0.5);
    /// assert_ne!(0.1f32.to_f64(), 0.1); // keeps the f32 value, no rounding to the decimal
    /// ```
    fn to_f64(self) -> f64;

    /// `e^self`.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::exp(0.0), 1.0);
    /// ```
    fn exp(self) -> Self;

    /// Natural logarithm.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::ln(1.0), 0.0);
    /// assert_eq!(<f64 as Element>::ln(0.0), f64::NEG_INFINITY);
    /// ```
    fn ln(self) -> Self;

    /// `ln(1 + self)`, accurate near zero.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::ln_1p(1e-20), 1e-20);
    /// assert_eq!(<f64 as Element>::ln(1.0 + 1e-20), 0.0); // 1 + 1e-20 rounds to 1
    /// ```
    fn ln_1p(self) -> Self;

    /// Hyperbolic tangent.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f32 as Element>::tanh(0.0), 0.0);
    /// assert_eq!(<f32 as Element>::tanh(20.0), 1.0); // saturates
    /// ```
    fn tanh(self) -> Self;

    /// Square root.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::sqrt(9.0), 3.0);
    /// assert!(<f64 as Element>::sqrt(-1.0).is_nan());
    /// ```
    fn sqrt(self) -> Self;

    /// `self^e` for a real exponent.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::powf(4.0, 0.5), 2.0);
    /// assert_eq!(<f32 as Element>::powf(2.0, -1.0), 0.5);
    /// ```
    fn powf(self, e: Self) -> Self;

    /// `self^n` for an integer exponent.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f32 as Element>::powi(2.0, 3), 8.0);
    /// assert_eq!(<f32 as Element>::powi(2.0, -2), 0.25);
    /// ```
    fn powi(self, n: i32) -> Self;

    /// Absolute value.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f32 as Element>::abs(-1.5), 1.5);
    /// ```
    fn abs(self) -> Self;

    /// Sine.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::sin(0.0), 0.0);
    /// assert!((<f64 as Element>::sin(std::f64::consts::FRAC_PI_2) - 1.0).abs() < 1e-15);
    /// ```
    fn sin(self) -> Self;

    /// Cosine.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f64 as Element>::cos(0.0), 1.0);
    /// assert!((<f64 as Element>::cos(std::f64::consts::PI) + 1.0).abs() < 1e-15);
    /// ```
    fn cos(self) -> Self;

    /// The larger of two values (NaN-propagating like PyTorch's `maximum`).
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(1.0f32.max_nan(2.0), 2.0);
    /// assert!(2.0f32.max_nan(f32::NAN).is_nan()); // unlike f32::max, which returns 2
    /// ```
    fn max_nan(self, other: Self) -> Self;

    /// The smaller of two values (NaN-propagating).
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(1.0f64.min_nan(2.0), 1.0);
    /// assert!(f64::NAN.min_nan(1.0).is_nan());
    /// ```
    fn min_nan(self, other: Self) -> Self;

    /// Whether the value is neither infinite nor NaN.
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert!(<f64 as Element>::is_finite(1e300));
    /// assert!(!<f64 as Element>::is_finite(f64::INFINITY) && !<f64 as Element>::is_finite(f64::NAN));
    /// ```
    fn is_finite(self) -> bool;

    /// Multiply-add `self * a + b`, as a plain multiply then add (rounded twice, not fused:
    /// this vectorises, where `f32::mul_add` without FMA in the target features is a libm call).
    ///
    /// ```
    /// use tapegrad_tape::Element;
    /// assert_eq!(<f32 as Element>::mul_add(2.0, 3.0, 1.0), 7.0);
    /// let x = 1.0 + f64::EPSILON; // x * x is 1 + 2 eps + eps², which rounds to 1 + 2 eps
    /// assert_eq!(<f64 as Element>::mul_add(x, x, -(x * x)), 0.0); // a fused multiply-add gives eps²
    /// ```
    fn mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! impl_element {
    ($t:ty, $tag:expr) => {
        impl Element for $t {
            const DTYPE: DType = $tag;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn powi(self, n: i32) -> Self {
                <$t>::powi(self, n)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn max_nan(self, other: Self) -> Self {
                if self.is_nan() || self > other { self } else { other }
            }
            #[inline(always)]
            fn min_nan(self, other: Self) -> Self {
                if self.is_nan() || self < other { self } else { other }
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                // A plain multiply-add vectorises; `f32::mul_add` without FMA in the target
                // features becomes a libm call per element.
                self * a + b
            }
        }
    };
}

impl_element!(f32, DType::F32);
impl_element!(f64, DType::F64);
