//! When to split work across threads.

/// Elements (or multiply-adds) below which a kernel stays on the calling thread: waking a
/// worker costs a few microseconds, more than small tensors take in total.
pub(crate) const THRESHOLD: usize = 1 << 16;

/// Whether `work` units justify running in parallel on rayon's pool.
pub(crate) fn worth_it(work: usize) -> bool {
    work >= THRESHOLD && rayon::current_num_threads() > 1
}
