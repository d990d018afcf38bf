//! Element types: the run-time [`DType`] tag and the [`Element`] trait kernels are generic over.

use std::fmt;

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
        })
    }
}

/// A floating-point element type that tensors can hold (`f32` or `f64`).
///
/// Kernels are written once, generic over `Element`; the run-time dtype picks the
/// instantiation with one `match` per op.
///
/// ```
/// use tapegrad_tape::Element;
/// fn double<T: Element>(x: T) -> T { x + x }
/// assert_eq!(double(1.5f32), 3.0);
/// assert_eq!(<f64 as Element>::from_f64(0.25), 0.25);
/// ```
pub trait Element:
    crate::storage::StorageElement
    + Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + fmt::Debug
    + fmt::Display
    + fmt::LowerExp
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::iter::Sum
{
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from `f64`, rounding to nearest.
    fn from_f64(v: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + self)`, accurate near zero.
    fn ln_1p(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `self^e` for a real exponent.
    fn powf(self, e: Self) -> Self;
    /// `self^n` for an integer exponent.
    fn powi(self, n: i32) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// The larger of two values (NaN-propagating like PyTorch's `maximum`).
    fn max_nan(self, other: Self) -> Self;
    /// The smaller of two values (NaN-propagating).
    fn min_nan(self, other: Self) -> Self;
    /// Whether the value is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Whether the value is NaN.
    fn is_nan(self) -> bool;
    /// Multiply-add `self * a + b`, fused where the hardware allows.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

macro_rules! impl_element {
    ($t:ty, $tag:expr) => {
        impl Element for $t {
            const DTYPE: DType = $tag;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
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
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
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
