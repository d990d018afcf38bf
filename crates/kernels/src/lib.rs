//! tapegrad-kernels: the ground floor of tapegrad. Loops over slices and layouts, compiled
//! for the widest vectors the CPU has, split across threads, matrix products, convolutions
//! and pooling, and the memory tricks the hot paths need. It knows no `Tensor` and no tape,
//! and it is the only crate of tapegrad with `unsafe` code: each block carries a SAFETY
//! comment and a test that runs it.
//!
//! A reader learning how autodiff works can skip this crate: the tape and the operations
//! call it through plain, named functions on slices.
//!
//! | module | what it holds |
//! |---|---|
//! | [`layout`] | shapes, strides, offsets; checked element counts |
//! | [`strided`] | maps, broadcasting zips and reductions over strided views (transposed views gathered in tiles); joining blocks (`cat`) |
//! | [`simd`] | compiling a loop for the widest vectors the CPU has |
//! | [`cache`] | the sizes of a core's L1 and L2 data caches, which some kernels block for |
//! | [`parallel`] | when work is worth splitting across threads; a worker kept awake between kernels; large buffers zeroed by the threads, or cleared chunk by chunk just before their writers run |
//! | [`gemm`] | matrix products on strided views (an own AVX-512 or AVX2 f32 kernel, else a library) |
//! | `implicit_gemm` (private) | the AVX-512 or AVX2 product that gathers its operands |
//! | [`conv`] | the three convolution primitives (im2col, implicit GEMM, Winograd, direct depthwise sums), the forward one with a fused bias |
//! | [`pool`] | max pooling |
//! | [`random`] | Bernoulli masks (dropout's) in independently seeded blocks |
//! | [`order`] | the positions that sort each row, or only its first few (`sort`, `topk`), by integer keys |
//! | [`pad`] | constant padding of every dimension in one pass |
//! | [`flip`] | a tensor reversed along any of its dimensions, in one pass |
//! | [`triangle`] | the lower or upper triangle of each matrix in a batch (`tril`, `triu`) |
//! | [`columns`] | scans and reductions down the columns of `[outer, n, inner]` blocks, in strips, for a dimension that is not last (`cumsum`, `prod_dim`) |
//! | [`product`] | the product of each row, and its gradient (`prod`, `prod_dim`) |
//! | [`mask`] | the elements a boolean mask marks, picked out in order and put back (`masked_select` and its gradient) |
//! | [`rows`] | rows picked by index and added back by index (`index_select` along any dimension, `embedding`), split across threads by output rows |
//! | [`ctc`] | the CTC loss and its gradient, by forward and backward variables rescaled at every step |
//! | [`grid_sample`] | images sampled at arbitrary points (bilinear or nearest), and the gradients to the images and the points |
//! | [`batch_norm`] | batch normalisation's statistics, output and gradient |
//! | [`layer_norm`] | layer normalisation's row statistics, output and gradient |
//! | [`linalg`] | the Cholesky factor, triangular solves and LU with partial pivoting, one f64 matrix at a time (`torch.linalg`'s `cholesky`, `solve_triangular`, `solve`, `inv`, `det`, `slogdet`) |
//! | [`group_norm`] | group normalisation, from the loops of the two above |
//! | `transpose` (private) | tiled transposition at any strides, for the convolutions and transposed views |
//! | [`fast_math`] | vectorisable `exp`, `expm1`, `ln`, `tanh`, `sin`, `cos`, `atan2`, the normal distribution and density, GELU's derivative, for f32 |
//! | [`subnormal`] | subnormal numbers read and written as zero inside the matrix products, attention and convolutions (each one costs an Intel core a microcode assist) |
//! | [`in_place`], [`allocator`] | reusing buffers, uninitialised allocation, malloc tuning |
//!
//! ```
//! use tapegrad_kernels::{layout::Layout, strided::map};
//! assert_eq!(map(&[1.0f32, 2.0], &Layout::contiguous(&[2]), |x| x * 3.0), vec![3.0, 6.0]);
//! ```

pub mod allocator;
pub mod attention;
pub mod batch_norm;
pub mod cache;
pub mod columns;
pub mod conv;
pub mod ctc;
pub mod extremum;
pub mod fast_math;
pub mod flip;
pub mod gemm;
pub mod grid_sample;
pub mod group_norm;
mod implicit_gemm;
pub mod in_place;
pub mod layer_norm;
pub mod layout;
pub mod linalg;
pub mod mask;
pub mod order;
pub mod pad;
pub mod parallel;
pub mod pool;
pub mod product;
pub mod random;
pub mod recurrent;
pub mod rows;
mod scratch;
mod short_copy;
pub mod simd;
pub mod softmax;
pub mod strided;
pub mod subnormal;
mod transpose;
pub mod triangle;
#[cfg(target_arch = "x86_64")]
mod vectors;

use std::fmt;

/// The arithmetic every kernel needs of an element type (f32 and f64).
///
/// ```
/// use tapegrad_kernels::Real;
/// fn total<T: Real>(x: &[T]) -> T {
///     x.iter().fold(T::ZERO, |s, &v| s + v)
/// }
/// assert_eq!(total(&[1.5f64, 2.0]), 3.5);
/// assert!(<f32 as Real>::is_nan(f32::NAN));
/// ```
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + Default
    + PartialOrd
    + fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::iter::Sum
{
    /// Zero.
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(<f32 as Real>::ZERO, 0.0);
    /// ```
    const ZERO: Self;

    /// One.
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(<f64 as Real>::ONE, 1.0);
    /// ```
    const ONE: Self;

    /// Whether the value is NaN.
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert!(<f64 as Real>::is_nan(f64::NAN));
    /// assert!(!<f64 as Real>::is_nan(f64::INFINITY));
    /// ```
    fn is_nan(self) -> bool;

    /// A count of elements as this type (rounded to nearest when it has more digits).
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(<f32 as Real>::from_count(3), 3.0);
    /// ```
    fn from_count(n: usize) -> Self;

    /// The value as an f64 (exact), for sums kept in double precision.
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(0.5f32.widen(), 0.5);
    /// ```
    fn widen(self) -> f64;

    /// An f64 as this type (rounded to nearest when it has more digits).
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(<f32 as Real>::round_from(0.1), 0.1f32);
    /// ```
    fn round_from(v: f64) -> Self;

    /// The largest whole number not above the value (one instruction where the CPU has
    /// SSE4.1, as in the copies `simd::run_widest` makes; a library call in the baseline).
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!(Real::floor(-0.5f32), -1.0);
    /// ```
    fn floor(self) -> Self;

    /// The nearest whole number, halves to the even one.
    ///
    /// ```
    /// use tapegrad_kernels::Real;
    /// assert_eq!((Real::round_ties_even(2.5f64), Real::round_ties_even(3.5f64)), (2.0, 4.0));
    /// ```
    fn round_ties_even(self) -> Self;
}

macro_rules! impl_real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn from_count(n: usize) -> Self {
                n as $t
            }
            #[inline(always)]
            fn widen(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn round_from(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn round_ties_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
        }
    };
}

impl_real!(f32);
impl_real!(f64);

/// Every kernel of this crate for one element type: what the tape's element types (f32 and
/// f64) implement, so that generic code over them can call any kernel.
///
/// ```
/// use tapegrad_kernels::{
///     Float,
///     gemm::{View, gemm_into},
/// };
/// fn square<T: Float>(a: &[T], n: usize) -> Vec<T> {
///     let mut c = vec![T::ZERO; n * n];
///     gemm_into(View::row_major(a, n, n), View::row_major(a, n, n), &mut c, false);
///     c
/// }
/// assert_eq!(square(&[1.0f32, 1.0, 0.0, 1.0], 2), vec![1.0, 2.0, 0.0, 1.0]);
/// ```
pub trait Float:
    Real
    + gemm::Gemm
    + implicit_gemm::ImplicitGemm
    + pool::MaxPool2x2
    + fast_math::Tanh
    + fast_math::Exp
    + fast_math::ExpM1
    + fast_math::Ln
    + fast_math::SinCos
    + fast_math::Softplus
    + softmax::Softmax
{
}

impl Float for f32 {}
impl Float for f64 {}

/// Conversions the kernels' generic tests use to make data and compare it in f64.
#[cfg(test)]
pub(crate) mod testing {
    /// A repeatable stream of values in [-0.5, 0.5) from `seed` (a linear congruential
    /// generator): test data without a dependency.
    pub fn uniform(mut seed: u64) -> impl FnMut() -> f64 {
        move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        }
    }

    pub trait Convert: Copy {
        fn from_f64(v: f64) -> Self;
        fn to_f64(self) -> f64;
    }

    impl Convert for f32 {
        fn from_f64(v: f64) -> Self {
            v as f32
        }
        fn to_f64(self) -> f64 {
            self as f64
        }
    }

    impl Convert for f64 {
        fn from_f64(v: f64) -> Self {
            v
        }
        fn to_f64(self) -> f64 {
            self
        }
    }
}
