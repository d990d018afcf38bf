//! When to split work across threads.

/// Elements (or multiply-adds) below which a kernel stays on the calling thread: waking a
/// worker costs a few microseconds, more than small tensors take in total.
pub(crate) const THRESHOLD: usize = 1 << 16;

/// Whether `work` units are enough to split into tasks (a property of the work alone, so
/// that a split, and any partial sums over it, is the same at every thread count).
pub(crate) fn large(work: usize) -> bool {
    work >= THRESHOLD
}

/// Whether `work` units justify running in parallel on rayon's pool.
pub(crate) fn worth_it(work: usize) -> bool {
    large(work) && rayon::current_num_threads() > 1
}
