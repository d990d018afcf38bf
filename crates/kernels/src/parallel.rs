//! When to split work across threads, and keeping a worker awake between parallel kernels.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use std::time::{Duration, Instant};

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

/// [`worth_it`], for a kernel that goes parallel on the answer: when it does, a worker is
/// also kept awake for the kernels after it ([`keep_warm`]).
///
/// ```
/// use tapegrad_kernels::parallel::{THRESHOLD, start_parallel};
/// assert!(!start_parallel(THRESHOLD - 1));
/// ```
#[inline]
pub fn start_parallel(work: usize) -> bool {
    let parallel = worth_it(work);
    if parallel {
        let _ = keep_warm();
    }
    parallel
}

/// A vector of `len` zeros, written by rayon's threads when it is long: for outputs that a
/// parallel kernel then fills, whose zeroing would otherwise run on the calling thread alone
/// first (the allocator keeps freed blocks, so large ones come back dirty and are cleared by
/// `memset`).
///
/// ```
/// use tapegrad_kernels::parallel::{THRESHOLD, zeroed};
/// let v: Vec<f32> = zeroed(3 * THRESHOLD + 5);
/// assert!(v.len() == 3 * THRESHOLD + 5 && v.iter().all(|&x| x == 0.0));
/// ```
pub fn zeroed<T: crate::Real>(len: usize) -> Vec<T> {
    if !start_parallel(len) {
        return vec![T::ZERO; len];
    }
    let mut v: Vec<T> = Vec::with_capacity(len);
    zeroed_slots(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the first `len` elements (within the capacity) were all written above.
    unsafe { v.set_len(len) };
    v
}

/// `slots` filled with zeros by rayon's threads when they are many (see [`zeroed`]), as
/// initialised elements.
pub(crate) fn zeroed_slots<T: crate::Real>(slots: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    if start_parallel(slots.len()) {
        slots.par_chunks_mut(THRESHOLD).for_each(|chunk| {
            cleared(chunk, T::ZERO);
        });
    } else {
        cleared(slots, T::ZERO);
    }
    // SAFETY: every slot was just written; `MaybeUninit<T>` has `T`'s layout.
    unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast::<T>(), slots.len()) }
}

/// A vector of `len` elements that `write(index, chunk)` fills chunk by chunk (chunks of
/// `chunk` elements, the last one shorter), by rayon's threads when it is long, at least
/// `min_per_task` chunks to a task. Each chunk is cleared right before its writer runs,
/// while it is in cache, instead of the whole vector in a pass of its own first: for
/// outputs written block by block (softmax rows, pooled planes).
///
/// ```
/// use tapegrad_kernels::parallel::written_in_chunks;
/// // Three chunks of two (and one of one): each holds its index.
/// let v: Vec<f64> = written_in_chunks(7, 2, 1, |i, chunk| chunk.fill(i as f64));
/// assert_eq!(v, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0]);
/// ```
///
/// # Panics
/// If `chunk` is zero while `len` is not.
pub fn written_in_chunks<T: crate::Real>(
    len: usize,
    chunk: usize,
    min_per_task: usize,
    write: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return v;
    }
    assert!(chunk > 0, "written_in_chunks: chunks of zero elements");
    let fill = |(index, part): (usize, &mut [std::mem::MaybeUninit<T>])| {
        write(index, cleared(part, T::ZERO));
    };
    let spare = &mut v.spare_capacity_mut()[..len];
    if len > chunk && start_parallel(len) {
        spare.par_chunks_mut(chunk).enumerate().with_min_len(min_per_task.max(1)).for_each(fill);
    } else {
        spare.chunks_mut(chunk).enumerate().for_each(fill);
    }
    // SAFETY: the chunks cover the first `len` elements, each initialised before its writer
    // ran (a panicking writer unwinds before this, leaving the vector empty).
    unsafe { v.set_len(len) };
    v
}

/// `slots` filled with `value`, as initialised elements: a chunk of an output cleared by
/// the task about to write it.
pub(crate) fn cleared<V: Copy>(slots: &mut [std::mem::MaybeUninit<V>], value: V) -> &mut [V] {
    slots.fill(std::mem::MaybeUninit::new(value));
    // SAFETY: every slot was just written; `MaybeUninit<V>` has `V`'s layout.
    unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast::<V>(), slots.len()) }
}

/// Whether a spinning task is running (or queued) on the pool.
static SPINNING: AtomicBool = AtomicBool::new(false);

/// How long, in microseconds, the spinning task waits for more work before it lets its
/// worker sleep. (200 µs woke the worker twice as often in the LSTM, transformer and ResNet
/// workloads: docs/BENCHMARKS.md.)
const DEFAULT_SPIN_MICROS: u64 = 1000;

/// The spin time in force ([`set_spin_time`]).
static SPIN_MICROS: AtomicU64 = AtomicU64::new(DEFAULT_SPIN_MICROS);

/// A spinning task ends at the latest after this many spin times from its start, whatever
/// it finds to do: the next kernel queues a new one.
const MAX_SPINS: u32 = 10;

std::thread_local! {
    /// Whether this thread drives the pool (see [`mark_driver`]).
    static DRIVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as the pool's driver: a pool thread (rayon's
/// `use_current_thread`) whose parallel kernels keep a worker awake ([`keep_warm`]).
/// `tapegrad::set_num_threads` calls it.
///
/// ```
/// tapegrad_kernels::parallel::mark_driver();
/// ```
pub fn mark_driver() {
    DRIVER.with(|d| d.set(true));
}

/// How long a pool worker stays awake looking for work after the last parallel kernel,
/// instead of going to sleep (1 ms unless set; zero turns the spinning off).
///
/// A sleeping worker must be woken through the kernel for the next parallel kernel, and
/// the caller waits for it: a cost paid per kernel that, in a model of mid-sized tensors,
/// comes back every few microseconds. OpenMP's runtimes (behind PyTorch's threads) keep
/// their threads spinning between parallel regions for the same reason. The price is one
/// busy core for at most this long after the last parallel kernel.
///
/// ```
/// use std::time::Duration;
/// use tapegrad_kernels::parallel::set_spin_time;
/// set_spin_time(Duration::from_micros(5000)); // longer, for a model with long serial gaps
/// set_spin_time(Duration::from_micros(1000)); // the default again
/// ```
pub fn set_spin_time(time: Duration) {
    SPIN_MICROS.store(time.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

/// Whether this thread's parallel kernels keep a worker awake ([`keep_warm`]): it drives
/// a pool of more than one thread, with a spin time above zero. Handing such a worker a
/// share of a kernel costs about a microsecond instead of a wake-up, so smaller kernels
/// are worth splitting.
///
/// ```
/// // A test thread is not the pool's driver.
/// assert!(!tapegrad_kernels::parallel::keeps_workers_awake());
/// ```
pub fn keeps_workers_awake() -> bool {
    SPIN_MICROS.load(Ordering::Relaxed) > 0
        && DRIVER.with(std::cell::Cell::get)
        && rayon::current_thread_index().is_some()
        && rayon::current_num_threads() >= 2
}

/// Makes sure one pool worker is awake to take the parallel kernel about to start: if no
/// spinning task is running, queues one. The task runs rayon's pending jobs as they come
/// and ends once it has found none for the spin time, or at the latest ten spin times
/// after it started. Only from the pool's driver ([`mark_driver`], the caller of
/// `tapegrad::set_num_threads`): a thread outside the pool sleeps while the pool works, and
/// a spinning worker would take the core it needs between kernels.
///
/// The driver waits for each kernel to finish before it starts the next, so when it queues
/// the task the other workers are idle, and one takes the task on its way into work. Should
/// a thread waiting inside a rayon join take it instead (a kernel called from the user's
/// own parallel code on the driver), that join waits for the task to end: the lifetime cap
/// bounds that wait. The driver drops the task at once if it runs it itself.
///
/// Returns whether it queued a task.
///
/// ```
/// use tapegrad_kernels::parallel::keep_warm;
/// // Before a parallel kernel; here the caller is not the pool's driver, so nothing is queued.
/// assert!(!keep_warm());
/// ```
pub fn keep_warm() -> bool {
    let micros = SPIN_MICROS.load(Ordering::Relaxed);
    if !keeps_workers_awake() || SPINNING.swap(true, Ordering::AcqRel) {
        return false;
    }
    let spin = Duration::from_micros(micros);
    let queued_by = std::thread::current().id();
    rayon::spawn(move || {
        if std::thread::current().id() != queued_by {
            let start = Instant::now();
            let mut last_work = start;
            while start.elapsed() < spin * MAX_SPINS {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => last_work = Instant::now(),
                    Some(rayon::Yield::Idle) if last_work.elapsed() < spin => {
                        std::hint::spin_loop()
                    }
                    _ => break,
                }
            }
        }
        SPINNING.store(false, Ordering::Release);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the spinning flag and the spin time: one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Long enough to split across threads: every chunk is written by its own writer, and
    /// whatever a writer leaves alone reads zero (the chunk was cleared before it ran).
    #[test]
    fn chunks_are_cleared_then_written_by_their_writers() {
        let (len, chunk) = (3 * THRESHOLD + 5, 1000);
        let v: Vec<f32> = written_in_chunks(len, chunk, 1, |i, part| {
            assert!(part.iter().all(|&x| x == 0.0));
            part[0] = i as f32 + 1.0;
        });
        assert_eq!(v.len(), len);
        for (i, part) in v.chunks(chunk).enumerate() {
            assert_eq!(part[0], i as f32 + 1.0);
            assert!(part[1..].iter().all(|&x| x == 0.0));
        }
        assert!(written_in_chunks::<f64>(0, 0, 1, |_, _| unreachable!()).is_empty());
    }

    /// Waits (at most a few seconds) for the spinning task to end.
    fn quiet() -> bool {
        let start = Instant::now();
        while SPINNING.load(Ordering::Acquire) {
            if start.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn a_pool_thread_keeps_a_worker_spinning_that_runs_kernels_and_then_stops() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // The test thread joins the pool and drives it, as `set_num_threads` makes the
        // main thread do.
        mark_driver();
        let pool =
            rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().unwrap();
        let queued = pool.install(|| {
            let mut queued = 0;
            for round in 0..200u64 {
                queued += keep_warm() as usize;
                // Nested joins inside the kernel while the spinning task takes jobs.
                let sum: u64 = (0..10_000u64).into_par_iter().map(|i| i * round).sum();
                assert_eq!(sum, round * 10_000 * 9_999 / 2);
            }
            queued
        });
        assert!(queued >= 1, "the driver queues a spinning task");
        assert!(quiet(), "the spinning task ends once the kernels stop");
    }

    #[test]
    fn no_spinning_but_from_the_driver_or_when_turned_off() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!keep_warm(), "the test thread is not a pool thread");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        assert!(!pool.install(keep_warm), "a pool thread that is not the driver");
        mark_driver(); // marks the test thread, not the pool's threads
        assert!(!pool.install(keep_warm), "a pool thread that is not the driver");
        /// Puts the default spin time back however the test ends.
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                set_spin_time(Duration::from_micros(DEFAULT_SPIN_MICROS));
            }
        }
        let driven =
            rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().unwrap();
        let _restore = Restore;
        set_spin_time(Duration::ZERO);
        assert!(!driven.install(keep_warm), "a spin time of zero turns it off");
    }
}
