//! tapegrad-kernels: the ground floor of tapegrad. Loops over slices and layouts, compiled
//! for the widest vectors the CPU has, split across threads, and the memory tricks the hot
//! paths need. It knows no `Tensor` and no tape, and it is the only crate of tapegrad with
//! `unsafe` code: each block carries a SAFETY comment and a test that runs it.
//!
//! A reader learning how autodiff works can skip this crate: the tape and the operations
//! call it through plain, named functions.
//!
//! ```
//! use tapegrad_kernels::{layout::Layout, strided::map};
//! assert_eq!(map(&[1.0f32, 2.0], &Layout::contiguous(&[2]), |x| x * 3.0), vec![3.0, 6.0]);
//! ```

pub mod allocator;
pub mod in_place;
pub mod layout;
pub mod simd;
pub mod strided;

/// Element types the reductions sum: addition with a zero.
///
/// ```
/// use tapegrad_kernels::Summable;
/// fn total<T: Summable>(x: &[T]) -> T { x.iter().fold(T::zero(), |s, &v| s + v) }
/// assert_eq!(total(&[1.5f64, 2.0]), 3.5);
/// ```
pub trait Summable:
    Copy + Send + Sync + 'static + std::ops::Add<Output = Self> + std::ops::AddAssign + std::iter::Sum
{
    /// Zero (a function, so as not to collide with the `ZERO` of richer element traits).
    fn zero() -> Self;
}

impl Summable for f32 {
    fn zero() -> Self {
        0.0
    }
}

impl Summable for f64 {
    fn zero() -> Self {
        0.0
    }
}
