//! Keeping freed tensor buffers in the process instead of handing them back to the OS.
//!
//! A training step allocates and frees the same large buffers (activations, gradients,
//! convolution scratch, attention scores) every time. glibc serves blocks above 128 KiB
//! with `mmap` and returns freed heap tops to the kernel, so each step pays for page
//! faults and for the kernel zeroing fresh pages: half the time of the CNN step of the
//! benchmark on a 2-core machine. Raising the mmap threshold alone stops at glibc's
//! ceiling of 32 MiB, and the blocks above it (the scores of attention over a long
//! sequence, a large batch of large images) were still mapped and faulted in on every
//! step: half the time of attention over 512 positions. So `mmap` is switched off for
//! blocks (glibc still maps memory when the heap cannot grow) and the trim threshold
//! raised: freed blocks stay in the heap for the next step, which is what caching
//! allocators (PyTorch's on GPUs, jemalloc's retained extents) do. The process's resident
//! size then stays at its peak.
//!
//! Applied once, on the first tensor, on Linux with glibc; setting the environment
//! variable `TAPEGRAD_SYSTEM_MALLOC` to anything leaves malloc's defaults alone.

use std::sync::Once;

static TUNE: Once = Once::new();

/// Applies the thresholds the first time it is called; later calls cost one atomic load.
///
/// ```
/// tapegrad_kernels::allocator::keep_freed_buffers();
/// ```
#[inline]
pub fn keep_freed_buffers() {
    TUNE.call_once(|| {
        if std::env::var_os("TAPEGRAD_SYSTEM_MALLOC").is_none() {
            raise_thresholds();
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_thresholds() {
    use std::ffi::c_int;
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    // From glibc's <malloc.h>.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_MAX: c_int = -4;
    const TRIM_THRESHOLD: c_int = 1 << 30;
    // SAFETY: mallopt only adjusts allocator parameters; glibc documents it as safe to
    // call at any time. A failure (return value 0) leaves the defaults, which is harmless.
    // With no mapped blocks allowed, a thread's arena that cannot hold a block hands the
    // request to the main heap, which grows with brk (or maps, if brk fails).
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_thresholds() {}
