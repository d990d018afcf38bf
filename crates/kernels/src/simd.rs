//! Loops compiled for the widest vectors the CPU has, chosen at run time.
//!
//! The release build targets baseline x86-64 (four f32 lanes, no fused multiply-add). A loop
//! run through [`with_widest_vectors`] or [`run_widest`] is compiled twice more: with
//! AVX-512 enabled (sixteen lanes) and with AVX2 and FMA (eight lanes: Intel since Haswell,
//! AMD since Zen, though not every low-end part), and runs in the widest copy the CPU has;
//! element functions written without calls (such as a polynomial `tanh`) vectorise too.
//! Rust never contracts `a * b + c` into one rounding, and an explicit `mul_add` rounds once
//! in every copy (in the baseline copy through a library call per operation, slow but
//! exact), so all copies give identical bits.

use std::mem::MaybeUninit;
use std::sync::Arc;

/// Whether the AVX-512 paths run: the CPU has AVX-512F, and the environment variable
/// `TAPEGRAD_NO_AVX512` is not set. Setting it runs every kernel of this crate as on a CPU
/// without AVX-512 (the AVX2 copies of [`run_widest`] where the CPU has AVX2, the baseline
/// elsewhere), to measure and test those paths on a machine that has it (matrix products
/// keep `matrixmultiply`'s own choice).
/// Read once per process.
///
/// ```
/// let on = tapegrad_kernels::simd::avx512_enabled();
/// assert_eq!(on, tapegrad_kernels::simd::avx512_enabled()); // fixed for the process
/// ```
pub fn avx512_enabled() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::env::var_os("TAPEGRAD_NO_AVX512").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// In debug builds, checks that an AVX-512 kernel is entered only while the AVX-512 paths
/// are on. With `TAPEGRAD_NO_AVX512` set, test runs stand for a CPU without AVX-512, where
/// such a kernel would stop at its first instruction; on a CPU that has it, it would run
/// unnoticed. Called at the entry of the AVX-512 kernels that dispatch reaches (not of
/// those tests call directly to compare instruction sets).
#[inline(always)]
pub(crate) fn debug_assert_avx512_on() {
    debug_assert!(avx512_enabled(), "an AVX-512 kernel ran with the AVX-512 paths switched off");
}

/// [`debug_assert_avx512_on`] for the AVX2 paths (`TAPEGRAD_NO_AVX2`).
#[inline(always)]
pub(crate) fn debug_assert_avx2_on() {
    debug_assert!(avx2_enabled(), "an AVX2 kernel ran with the AVX2 paths switched off");
}

/// Whether the AVX2 paths run where AVX-512 does not: the CPU has AVX2 and FMA, and the
/// environment variable `TAPEGRAD_NO_AVX2` is not set (setting it too, with
/// `TAPEGRAD_NO_AVX512`, runs the baseline copies, to test them on a machine that has
/// both). Read once per process.
///
/// ```
/// let on = tapegrad_kernels::simd::avx2_enabled();
/// assert_eq!(on, tapegrad_kernels::simd::avx2_enabled()); // fixed for the process
/// ```
pub fn avx2_enabled() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::env::var_os("TAPEGRAD_NO_AVX2").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `f`, compiled for AVX-512 or else AVX2 when the CPU has it (the closure is inlined
/// into a function built with the wider instruction set), and as the baseline build
/// otherwise. For short
/// loops; the compiler may leave a larger closure out of line, in the baseline code, so
/// larger bodies go through [`run_widest`].
///
/// ```
/// let mut v = vec![1.0f32; 64];
/// tapegrad_kernels::simd::with_widest_vectors(|| v.iter_mut().for_each(|x| *x *= 2.0));
/// assert!(v.iter().all(|&x| x == 2.0));
/// ```
#[inline(always)]
pub fn with_widest_vectors<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx512_enabled() {
        // SAFETY: the CPU has AVX-512F (`avx512_enabled` checks), the only requirement of
        // `avx512`.
        return unsafe { avx512(f) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_enabled() {
        // SAFETY: the CPU has AVX2 and FMA (`avx2_enabled` checks), the requirements of
        // `avx2`.
        return unsafe { avx2(f) };
    }
    f()
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    debug_assert_avx2_on();
    f()
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    debug_assert_avx512_on();
    f()
}

/// A function of one element that the vector loops call. Every `Copy` `Fn` is one; a type
/// whose `call` is `#[inline(always)]` is certain to be inlined into the loop, where a call
/// through a function value may be left out of line for a large body (then every element
/// pays a call and the loop runs scalar).
///
/// `Copy` because each loop calls a copy of the function held in registers: called through
/// a reference, what it captured (a bound, a coefficient) is reloaded after every store the
/// compiler cannot prove apart from it, and where that load sits in a branch, as a gather
/// per vector (measured in docs/BENCHMARKS.md).
///
/// ```
/// use tapegrad_kernels::simd::{ElementFn, map_to_vec};
/// #[derive(Clone, Copy)]
/// struct Halve;
/// impl ElementFn<f32, f32> for Halve {
///     #[inline(always)]
///     fn call(&self, x: f32) -> f32 {
///         x * 0.5
///     }
/// }
/// assert_eq!(map_to_vec(&[2.0f32, 4.0], &Halve), vec![1.0, 2.0]);
/// assert_eq!(map_to_vec(&[2.0f32], &|x: f32| x + 1.0), vec![3.0]); // closures work too
/// ```
pub trait ElementFn<T, U>: Copy + Sync + Send {
    /// `f(x)`.
    fn call(&self, x: T) -> U;
}

impl<T, U, F: Fn(T) -> U + Copy + Sync + Send> ElementFn<T, U> for F {
    #[inline(always)]
    fn call(&self, x: T) -> U {
        self(x)
    }
}

/// A function of two elements that the vector loops call (see [`ElementFn`]).
///
/// ```
/// use tapegrad_kernels::simd::{ElementFn2, zip_to_vec};
/// #[derive(Clone, Copy)]
/// struct Mul;
/// impl ElementFn2<f64, f64, f64> for Mul {
///     #[inline(always)]
///     fn call(&self, x: f64, y: f64) -> f64 {
///         x * y
///     }
/// }
/// assert_eq!(zip_to_vec(&[2.0, 3.0], &[4.0, 5.0], &Mul), vec![8.0, 15.0]);
/// ```
pub trait ElementFn2<T, U, V>: Copy + Sync + Send {
    /// `f(x, y)`.
    fn call(&self, x: T, y: U) -> V;
}

impl<T, U, V, F: Fn(T, U) -> V + Copy + Sync + Send> ElementFn2<T, U, V> for F {
    #[inline(always)]
    fn call(&self, x: T, y: U) -> V {
        self(x, y)
    }
}

/// A loop body that [`run_widest`] compiles once per instruction set. Implement `run` with
/// `#[inline(always)]`, and mark what it calls the same way: code left out of line keeps the
/// baseline instructions.
///
/// ```
/// use tapegrad_kernels::simd::{WidestLoop, run_widest};
/// struct Scale<'a>(&'a mut [f32], f32);
/// impl WidestLoop for Scale<'_> {
///     type Output = ();
///     #[inline(always)]
///     fn run(self) {
///         self.0.iter_mut().for_each(|v| *v *= self.1);
///     }
/// }
/// let mut v = vec![1.0f32; 100];
/// run_widest(Scale(&mut v, 3.0));
/// assert!(v.iter().all(|&x| x == 3.0));
/// ```
pub trait WidestLoop {
    /// What the loop returns.
    type Output;
    /// The loop.
    fn run(self) -> Self::Output;
}

/// Runs `body`, compiled for AVX-512 or else AVX2 when the CPU has it and for the baseline
/// otherwise:
/// the form of [`with_widest_vectors`] for bodies too large for the compiler to inline a
/// closure (a method marked `#[inline(always)]` is inlined where a closure may not be).
///
/// ```
/// use tapegrad_kernels::simd::{WidestLoop, run_widest};
/// struct Sum<'a>(&'a [f64]);
/// impl WidestLoop for Sum<'_> {
///     type Output = f64;
///     #[inline(always)]
///     fn run(self) -> f64 {
///         self.0.iter().sum()
///     }
/// }
/// assert_eq!(run_widest(Sum(&[1.0, 2.0, 3.5])), 6.5);
/// ```
#[inline]
pub fn run_widest<L: WidestLoop>(body: L) -> L::Output {
    #[cfg(target_arch = "x86_64")]
    if avx512_enabled() {
        // SAFETY: the CPU has AVX-512F (`avx512_enabled` checks), the only requirement of
        // `run_avx512`.
        return unsafe { run_avx512(body) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_enabled() {
        // SAFETY: the CPU has AVX2 and FMA (`avx2_enabled` checks), the requirements of
        // `run_avx2`.
        return unsafe { run_avx2(body) };
    }
    body.run()
}

/// [`WidestLoop::run`] compiled with AVX2 and FMA enabled.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<L: WidestLoop>(body: L) -> L::Output {
    debug_assert_avx2_on();
    body.run()
}

/// [`WidestLoop::run`] compiled with AVX-512 enabled.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<L: WidestLoop>(body: L) -> L::Output {
    debug_assert_avx512_on();
    body.run()
}

/// `dst[i] = f(src[i])` for every slot of `dst` (which must not be longer than `src`), with
/// the widest vectors the CPU has.
///
/// ```
/// use std::mem::MaybeUninit;
/// let mut dst = [MaybeUninit::<f64>::uninit(); 3];
/// tapegrad_kernels::simd::map_widest(&[1.0f32, 2.0, 3.0], &mut dst, &|x| x as f64 * 0.5);
/// assert_eq!(dst.map(|d| unsafe { d.assume_init() }), [0.5, 1.0, 1.5]);
/// ```
#[inline]
pub fn map_widest<T: Copy, U>(src: &[T], dst: &mut [MaybeUninit<U>], f: &impl ElementFn<T, U>) {
    struct Map<'a, T, U, F>(&'a [T], &'a mut [MaybeUninit<U>], &'a F);
    impl<T: Copy, U, F: ElementFn<T, U>> WidestLoop for Map<'_, T, U, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let f = *self.2;
            for (d, &x) in self.1.iter_mut().zip(self.0) {
                d.write(f.call(x));
            }
        }
    }
    run_widest(Map(src, dst, f))
}

/// `(first[i], second[i]) = f(src[i])` for every element of `src` (all three of one
/// length), with the widest vectors the CPU has: a function with two results, such as a
/// value and its derivative sharing their work.
///
/// ```
/// use std::mem::MaybeUninit;
/// let (mut a, mut b) = ([MaybeUninit::<f64>::uninit(); 2], [MaybeUninit::<f64>::uninit(); 2]);
/// tapegrad_kernels::simd::map_pairs_widest(&[1.0, 3.0], &mut a, &mut b, &|x: f64| (x * x, 2.0 * x));
/// assert_eq!(a.map(|v| unsafe { v.assume_init() }), [1.0, 9.0]);
/// assert_eq!(b.map(|v| unsafe { v.assume_init() }), [2.0, 6.0]);
/// ```
///
/// # Panics
/// If the three slices differ in length.
#[inline]
pub fn map_pairs_widest<T: Copy, U, V>(
    src: &[T],
    first: &mut [MaybeUninit<U>],
    second: &mut [MaybeUninit<V>],
    f: &impl ElementFn<T, (U, V)>,
) {
    assert!(
        first.len() == src.len() && second.len() == src.len(),
        "map_pairs_widest: {} inputs for {} and {} outputs",
        src.len(),
        first.len(),
        second.len()
    );
    struct MapPairs<'a, T, U, V, F>(
        &'a [T],
        &'a mut [MaybeUninit<U>],
        &'a mut [MaybeUninit<V>],
        &'a F,
    );
    impl<T: Copy, U, V, F: ElementFn<T, (U, V)>> WidestLoop for MapPairs<'_, T, U, V, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let f = *self.3;
            for ((a, b), &x) in self.1.iter_mut().zip(self.2.iter_mut()).zip(self.0) {
                let (u, v) = f.call(x);
                a.write(u);
                b.write(v);
            }
        }
    }
    run_widest(MapPairs(src, first, second, f))
}

/// `(first[i], second[i]) = f((a[i], b[i], c[i]))` for every element, with the widest
/// vectors the CPU has: a binary op's two partial gradients from the incoming gradient and
/// both operands, in one pass.
///
/// ```
/// use std::mem::MaybeUninit;
/// let (mut d, mut e) = ([MaybeUninit::<f64>::uninit(); 2], [MaybeUninit::<f64>::uninit(); 2]);
/// let grads_of_product = |(g, a, b): (f64, f64, f64)| (g * b, g * a);
/// tapegrad_kernels::simd::zip3_pairs_widest(
///     (&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0]), &mut d, &mut e, &grads_of_product);
/// assert_eq!(d.map(|v| unsafe { v.assume_init() }), [5.0, 12.0]);
/// assert_eq!(e.map(|v| unsafe { v.assume_init() }), [3.0, 8.0]);
/// ```
///
/// # Panics
/// If the five slices differ in length.
#[inline]
pub fn zip3_pairs_widest<T: Copy, U, V>(
    (a, b, c): (&[T], &[T], &[T]),
    first: &mut [MaybeUninit<U>],
    second: &mut [MaybeUninit<V>],
    f: &impl ElementFn<(T, T, T), (U, V)>,
) {
    let n = a.len();
    assert!(
        [b.len(), c.len(), first.len(), second.len()].iter().all(|&m| m == n),
        "zip3_pairs_widest: inputs of {n}, {} and {} for outputs of {} and {}",
        b.len(),
        c.len(),
        first.len(),
        second.len()
    );
    struct Zip3Pairs<'a, T, U, V, F>(
        (&'a [T], &'a [T], &'a [T]),
        &'a mut [MaybeUninit<U>],
        &'a mut [MaybeUninit<V>],
        &'a F,
    );
    impl<T: Copy, U, V, F: ElementFn<(T, T, T), (U, V)>> WidestLoop for Zip3Pairs<'_, T, U, V, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let (f, (a, b, c)) = (*self.3, self.0);
            let outputs = self.1.iter_mut().zip(self.2.iter_mut());
            for ((d, e), ((&x, &y), &z)) in outputs.zip(a.iter().zip(b).zip(c)) {
                let (u, v) = f.call((x, y, z));
                d.write(u);
                e.write(v);
            }
        }
    }
    run_widest(Zip3Pairs((a, b, c), first, second, f))
}

/// `x = f(x)` for every element of `data`, with the widest vectors the CPU has (see
/// [`map_widest`]). Wider vectors also mean fewer of the slow microcode steps some CPUs take
/// per instruction on subnormal floats.
///
/// ```
/// let mut v = [1.0f32, 2.0, 3.0];
/// tapegrad_kernels::simd::map_in_place_widest(&mut v, &|x| x * 2.0);
/// assert_eq!(v, [2.0, 4.0, 6.0]);
/// ```
#[inline]
pub fn map_in_place_widest<T: Copy>(data: &mut [T], f: &impl ElementFn<T, T>) {
    struct MapInPlace<'a, T, F>(&'a mut [T], &'a F);
    impl<T: Copy, F: ElementFn<T, T>> WidestLoop for MapInPlace<'_, T, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let f = *self.1;
            for x in self.0.iter_mut() {
                *x = f.call(*x);
            }
        }
    }
    run_widest(MapInPlace(data, f))
}

/// `dst[i] = f(a[i], b[i])` with the widest vectors the CPU has (see [`map_widest`]).
///
/// ```
/// use std::mem::MaybeUninit;
/// let mut dst = [MaybeUninit::<f32>::uninit(); 2];
/// tapegrad_kernels::simd::zip_widest(&[1.0f32, 2.0], &[3.0f32, 4.0], &mut dst, &|x, y| x * y);
/// assert_eq!(dst.map(|d| unsafe { d.assume_init() }), [3.0, 8.0]);
/// ```
#[inline]
pub fn zip_widest<T: Copy, U: Copy, V>(
    a: &[T],
    b: &[U],
    dst: &mut [MaybeUninit<V>],
    f: &impl ElementFn2<T, U, V>,
) {
    struct Zip<'a, T, U, V, F>(&'a [T], &'a [U], &'a mut [MaybeUninit<V>], &'a F);
    impl<T: Copy, U: Copy, V, F: ElementFn2<T, U, V>> WidestLoop for Zip<'_, T, U, V, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let f = *self.3;
            for ((d, &x), &y) in self.2.iter_mut().zip(self.0).zip(self.1) {
                d.write(f.call(x, y));
            }
        }
    }
    run_widest(Zip(a, b, dst, f))
}

/// `f` of every element of `src`, as a new vector, with the widest vectors the CPU has.
///
/// ```
/// assert_eq!(tapegrad_kernels::simd::map_to_vec(&[1.0f32, 4.0], &|x: f32| x.sqrt()), vec![1.0, 2.0]);
/// ```
#[inline]
pub fn map_to_vec<T: Copy, U>(src: &[T], f: &impl ElementFn<T, U>) -> Vec<U> {
    let mut out = Vec::with_capacity(src.len());
    map_widest(src, &mut out.spare_capacity_mut()[..src.len()], f);
    // SAFETY: `map_widest` wrote each of the first `src.len()` slots.
    unsafe { out.set_len(src.len()) };
    out
}

/// `f(a[i], b[i])` for slices of one length, as a new vector (see [`map_to_vec`]).
///
/// ```
/// assert_eq!(
///     tapegrad_kernels::simd::zip_to_vec(&[1.0f64, 2.0], &[3.0, 4.0], &|x, y| x + y),
///     vec![4.0, 6.0]
/// );
/// ```
#[inline]
pub fn zip_to_vec<T: Copy, U: Copy, V>(a: &[T], b: &[U], f: &impl ElementFn2<T, U, V>) -> Vec<V> {
    assert_eq!(a.len(), b.len(), "zip_to_vec: operands of different lengths");
    let mut out = Vec::with_capacity(a.len());
    zip_widest(a, b, &mut out.spare_capacity_mut()[..a.len()], f);
    // SAFETY: `zip_widest` wrote each of the first `a.len()` slots (both operands have them).
    unsafe { out.set_len(a.len()) };
    out
}

/// [`map_to_vec`] into one fresh shared allocation: no vector to move the values from, and
/// one allocation instead of the vector's and its reference count's.
///
/// ```
/// let shared = tapegrad_kernels::simd::map_to_arc(&[1.0f32, 2.0], &|x| x + 1.0);
/// assert_eq!(&shared[..], &[2.0, 3.0]);
/// ```
#[inline]
pub fn map_to_arc<T: Copy, U>(src: &[T], f: &impl ElementFn<T, U>) -> Arc<[U]> {
    let mut slice = Arc::<[U]>::new_uninit_slice(src.len());
    map_widest(src, Arc::get_mut(&mut slice).expect("a fresh allocation has no other owner"), f);
    // SAFETY: `map_widest` wrote each of the `src.len()` slots.
    unsafe { slice.assume_init() }
}

/// [`zip_to_vec`] into one fresh shared allocation (see [`map_to_arc`]).
///
/// ```
/// let shared =
///     tapegrad_kernels::simd::zip_to_arc(&[1.0f32, 2.0], &[10.0f32, 20.0], &|x, y| x * y);
/// assert_eq!(&shared[..], &[10.0, 40.0]);
/// ```
#[inline]
pub fn zip_to_arc<T: Copy, U: Copy, V>(a: &[T], b: &[U], f: &impl ElementFn2<T, U, V>) -> Arc<[V]> {
    assert_eq!(a.len(), b.len(), "zip_to_arc: operands of different lengths");
    let mut slice = Arc::<[V]>::new_uninit_slice(a.len());
    zip_widest(a, b, Arc::get_mut(&mut slice).expect("a fresh allocation has no other owner"), f);
    // SAFETY: `zip_widest` wrote each of the `a.len()` slots (both operands have them).
    unsafe { slice.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths around the vector widths, so both the vector body and the tail run.
    #[test]
    fn every_slot_is_written_at_every_length() {
        for n in [0, 1, 3, 15, 16, 17, 63, 64, 65, 1000] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| 2.0 * i as f32).collect();
            assert_eq!(map_to_vec(&a, &|x| x + 1.0), a.iter().map(|x| x + 1.0).collect::<Vec<_>>());
            assert_eq!(
                &map_to_arc(&a, &|x| x * 3.0)[..],
                &a.iter().map(|x| x * 3.0).collect::<Vec<_>>()[..]
            );
            let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            assert_eq!(zip_to_vec(&a, &b, &|x, y| x + y), sum);
            assert_eq!(&zip_to_arc(&a, &b, &|x, y| x + y)[..], &sum[..]);
        }
    }

    #[test]
    #[should_panic(expected = "different lengths")]
    fn zip_checks_its_operands() {
        zip_to_vec(&[1.0f32], &[1.0f32, 2.0], &|x, y| x + y);
    }
}
