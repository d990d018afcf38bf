//! When to split work across threads.

/// Elements (or multiply-adds) below which a kernel stays on the calling thread: waking a
/// worker costs a few microseconds, more than small tensors take in total.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, parallel::THRESHOLD, strided::sum_to};
/// // Long enough to be summed in fixed blocks on rayon's threads; the result is exact.
/// let n = 2 * THRESHOLD;
/// assert_eq!(sum_to(&vec![1.0f32; n], &Layout::contiguous(&[n]), &[]), vec![n as f32]);
/// ```
pub const THRESHOLD: usize = 1 << 16;

/// Whether `work` units are enough to split into tasks (a property of the work alone, so
/// that a split, and any partial sums over it, is the same at every thread count).
///
/// ```
/// use tapegrad_kernels::parallel::{THRESHOLD, large};
/// assert!(large(THRESHOLD) && !large(THRESHOLD - 1));
/// ```
#[inline]
pub fn large(work: usize) -> bool {
    work >= THRESHOLD
}

/// Whether `work` units justify running in parallel on rayon's pool: large, and more than
/// one thread to share them with.
///
/// ```
/// use tapegrad_kernels::parallel::{THRESHOLD, worth_it};
/// assert!(!worth_it(THRESHOLD - 1));
/// ```
#[inline]
pub fn worth_it(work: usize) -> bool {
    large(work) && rayon::current_num_threads() > 1
}
