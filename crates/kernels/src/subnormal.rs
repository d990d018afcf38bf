//! Subnormal numbers read and written as zero inside the multiply-add kernels.
//!
//! On Intel cores a vector multiply or multiply-add whose operand or result is subnormal
//! (smaller in magnitude than 2^-126 in f32, 2^-1022 in f64) leaves the fast path for a
//! microcode assist of about a hundred cycles. Training makes such numbers as a matter of
//! course: once a language model grows confident, its softmax over the vocabulary (and its
//! attention over masked positions) underflows into that range, and the gradients that
//! then flow through the matrix products are full of them. A causal transformer language
//! model's steps took three to four times as long from that point on (docs/BENCHMARKS.md).
//!
//! So the matrix products, the attention kernel and the convolutions run with the x86
//! control bits that read subnormal operands as zero (DAZ) and write subnormal results as
//! zero (FTZ), set on the thread that runs them for the length of the kernel and restored
//! after it, so that the thread's own arithmetic outside the kernels keeps the default
//! mode. (XLA and TensorFlow flush subnormal numbers on their CPU threads for whole
//! computations; here it is kept to the kernels where they cost.) A product then differs
//! from the IEEE one where an operand is subnormal (the term it would have added is smaller
//! than 2^-126, or 2^-1022 in f64, times the other factor) or where a partial sum or the
//! result falls below the smallest normal number (it becomes zero).
//! [`set_flush_denormal`] (PyTorch's name) turns it off for the whole process. Elsewhere
//! than x86-64 the kernels run with the default arithmetic.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the multiply-add kernels flush subnormal numbers (on unless turned off).
static FLUSH: AtomicBool = AtomicBool::new(true);

/// Whether the matrix products, attention and convolutions treat subnormal numbers as zero
/// (operands and results; see the module documentation), which is the default, for every
/// thread of the process. Returns whether this build can switch it: `true` on x86-64,
/// `false` (and no change) elsewhere, where the kernels never flush.
///
/// Unlike PyTorch, whose default keeps subnormal numbers and whose `True` flushes every
/// operation of the calling thread, tapegrad flushes by default, inside the kernels where
/// subnormal numbers are costly, and only there.
///
/// ```
/// use tapegrad_kernels::subnormal::set_flush_denormal;
/// let supported = set_flush_denormal(false); // IEEE subnormal results in products
/// assert_eq!(supported, cfg!(target_arch = "x86_64"));
/// set_flush_denormal(true); // the default again
/// ```
pub fn set_flush_denormal(mode: bool) -> bool {
    if cfg!(target_arch = "x86_64") {
        FLUSH.store(mode, Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// Runs `kernel` with subnormal operands and results read and written as zero on the
/// calling thread (when [`set_flush_denormal`] has not turned that off), restoring the
/// thread's previous mode afterwards, also when `kernel` panics.
///
/// The compiler does not model the mode (Rust's documentation of `_mm_setcsr` calls
/// changing these bits undefined behaviour for that reason): it assumes IEEE arithmetic,
/// and once code is inlined it may move operations across the switches. So `kernel` runs
/// inside a function that is never inlined, a call the switches stay on either side of;
/// what is left is that the optimiser may evaluate an operation on constants in IEEE
/// arithmetic, which gives the IEEE value instead of zero. The wrapped kernels compute no
/// address or length from a floating-point value, so no assumption of theirs rests on
/// the mode.
#[inline]
pub(crate) fn flushing<R>(kernel: impl FnOnce() -> R) -> R {
    let mode = FLUSH.load(Ordering::Relaxed).then(control::Flushing::start);
    let result = out_of_line(kernel);
    drop(mode);
    result
}

/// Calls `kernel` behind a call boundary the optimiser cannot see through.
#[inline(never)]
fn out_of_line<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}

#[cfg(target_arch = "x86_64")]
mod control {
    /// MXCSR's flush-to-zero bit (subnormal results written as zero).
    const FTZ: u32 = 1 << 15;
    /// MXCSR's denormals-are-zero bit (subnormal operands read as zero).
    const DAZ: u32 = 1 << 6;
    /// MXCSR's sticky exception flags, which the kernel's arithmetic may raise.
    const FLAGS: u32 = 0x3f;

    /// The thread's floating-point control word while a kernel flushes: the word before, put
    /// back when dropped.
    pub(super) struct Flushing {
        before: u32,
    }

    impl Flushing {
        #[inline]
        pub(super) fn start() -> Self {
            let before = read();
            let flushing = before | FTZ | DAZ;
            if flushing != before {
                write(flushing);
            }
            Flushing { before }
        }
    }

    impl Drop for Flushing {
        /// Puts the thread's control bits back, keeping the exception flags the kernel
        /// raised (as the kernel would have raised them in the thread's own mode).
        #[inline]
        fn drop(&mut self) {
            let now = read();
            if (now ^ self.before) & !FLAGS != 0 {
                write((self.before & !FLAGS) | (now & FLAGS));
            }
        }
    }

    fn read() -> u32 {
        let mut word = 0u32;
        // SAFETY: stores the 32-bit control word into `word`, which is valid for writes;
        // SSE (and so MXCSR) is part of every x86-64 CPU.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut word, options(nostack, preserves_flags))
        };
        word
    }

    fn write(word: u32) {
        // SAFETY: loads a control word made from the thread's own by setting FTZ and DAZ
        // (or the thread's own word back): both are valid modes that raise no exception.
        // The asm is not marked pure, so the compiler keeps it in place around the calls.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &word, options(nostack, preserves_flags))
        };
    }

    /// The thread's control bits (without the exception flags).
    #[cfg(test)]
    pub(super) fn mode() -> u32 {
        read() & !FLAGS
    }

    /// Whether both flushing bits are set.
    #[cfg(test)]
    pub(super) fn flushing(mode: u32) -> bool {
        mode & (FTZ | DAZ) == FTZ | DAZ
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod control {
    pub(super) struct Flushing;

    impl Flushing {
        pub(super) fn start() -> Self {
            Flushing
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Half the smallest normal f32: a subnormal number.
    const TINY: f32 = f32::MIN_POSITIVE / 2.0;

    fn product(x: f32, y: f32) -> f32 {
        std::hint::black_box(x) * std::hint::black_box(y)
    }

    #[test]
    fn kernels_flush_and_the_thread_keeps_its_mode() {
        let before = control::mode();
        let (inside, mode_inside) = flushing(|| (product(TINY, 1.0), control::mode()));
        assert_eq!(inside, 0.0, "a subnormal operand reads as zero inside");
        assert!(control::flushing(mode_inside));
        assert_eq!(control::mode(), before, "the thread's mode is restored");
        if !control::flushing(before) {
            assert_eq!(product(TINY, 1.0), TINY, "outside, subnormal numbers stay");
        }
        assert_eq!(flushing(|| product(f32::MIN_POSITIVE, 0.25)), 0.0, "results flush too");
        let nested = flushing(|| flushing(|| product(TINY, 1.0)) + product(TINY, 1.0));
        assert_eq!((nested, control::mode()), (0.0, before), "nested kernels");
    }

    #[test]
    fn a_panicking_kernel_restores_the_mode() {
        let before = control::mode();
        let caught = std::panic::catch_unwind(|| flushing(|| panic!("inside a kernel")));
        assert!(caught.is_err());
        assert_eq!(control::mode(), before);
    }
}
