//! One counter for everything that watches or changes the sweep and the recording of ops
//! (anomaly guards, gradient hooks, traces, checkpointed segments): while it is zero,
//! `record` and each step of the sweep pay one load and one branch for all of them.

use std::sync::atomic::{AtomicUsize, Ordering};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether any instrument is alive on any thread.
#[inline(always)]
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

pub(crate) fn add(n: usize) {
    ACTIVE.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn remove(n: usize) {
    ACTIVE.fetch_sub(n, Ordering::Relaxed);
}
