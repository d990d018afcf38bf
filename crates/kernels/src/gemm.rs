//! GEMM on strided views: f32 through this crate's own blocked product (`blocked`) with an
//! AVX-512 or AVX2 register tile (`tile`, compiled in `avx512` and `avx2`), f32 and f64
//! products below a 16 x 16 x 16 one through chains of fused multiply-adds (`small`) on the
//! same CPUs, everything else through `matrixmultiply` (or, with the `gemm` feature, every
//! product through the `gemm` crate); split across rayon's threads only when the product is
//! large enough to pay for it.

use rayon::prelude::*;

#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
mod avx2;
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
mod avx512;
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
mod blocked;
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
mod small;
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
mod tile;

/// Multiply-adds below this count run on the calling thread: a sleeping worker takes longer
/// to wake than the rest of the product.
const PARALLEL_FLOPS: usize = 1 << 22;

/// The same when the caller keeps a worker awake ([`crate::parallel::keeps_workers_awake`]):
/// handing it half of a product then costs little more than the call.
const PARALLEL_FLOPS_AWAKE: usize = 1 << 20;

/// Whether a product of `macs` multiply-adds is split across rayon's threads.
fn split(macs: usize) -> bool {
    rayon::current_num_threads() >= 2
        && (macs >= PARALLEL_FLOPS
            || (macs >= PARALLEL_FLOPS_AWAKE && crate::parallel::keeps_workers_awake()))
}

/// A matrix view: `rows x cols` elements of `data` at `offset + i * rs + j * cs`.
///
/// ```
/// use tapegrad_kernels::gemm::View;
/// // Column 1 of a row-major 2x3 matrix, as a 2x1 view.
/// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let col = View { data: &data, offset: 1, rows: 2, cols: 1, rs: 3, cs: 1 };
/// assert_eq!(col.data[col.offset + col.rs], 5.0);
/// ```
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    /// The elements the view reads.
    pub data: &'a [T],
    /// Position of element (0, 0) in `data`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

impl<'a, T> View<'a, T> {
    /// A row-major matrix.
    ///
    /// ```
    /// use tapegrad_kernels::gemm::View;
    /// let v = View::row_major(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
    /// assert_eq!((v.rows, v.cols, v.rs, v.cs), (2, 3, 3, 1));
    /// ```
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        View { data, offset: 0, rows, cols, rs: cols, cs: 1 }
    }

    /// The transposed view (no copy).
    ///
    /// ```
    /// use tapegrad_kernels::gemm::View;
    /// let v = View::row_major(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).t();
    /// assert_eq!((v.rows, v.cols, v.rs, v.cs), (3, 2, 1, 3));
    /// ```
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Whether every element the view reaches lies in `data` (the sums are checked, so that
    /// no wrapped offset can pass).
    fn in_bounds(&self) -> bool {
        let last = || {
            let rows = (self.rows - 1).checked_mul(self.rs)?;
            let cols = (self.cols - 1).checked_mul(self.cs)?;
            self.offset.checked_add(rows)?.checked_add(cols)
        };
        self.rows == 0 || self.cols == 0 || last().is_some_and(|last| last < self.data.len())
    }
}

/// The GEMM kernels for one element type: this crate's own on CPUs with AVX-512 or AVX2 for
/// f32 and for small f64 products, otherwise `matrixmultiply`'s (or, with the `gemm`
/// feature, the `gemm` crate's). Callers
/// use [`gemm_serial`], [`gemm_into`], [`gemm_new`] and the batched forms, which check the
/// views.
///
/// ```
/// use tapegrad_kernels::gemm::Gemm;
/// let (a, b, mut c) = ([2.0f32], [3.0f32], [1.0f32]);
/// // SAFETY: each pointer addresses the one element the 1x1x1 product touches.
/// unsafe { f32::raw(1, 1, 1, a.as_ptr(), 1, 1, b.as_ptr(), 1, 1, 1.0, c.as_mut_ptr(), 1, 1) };
/// assert_eq!(c, [7.0]); // 2 * 3 + 1 * 1
/// ```
pub trait Gemm: crate::Real {
    /// `c = a b + beta c` with raw strides, on the calling thread, through the fastest
    /// kernel for the type and CPU. When `beta` is zero, C is not read.
    ///
    /// # Safety
    /// Every element the strides reach from `a`, `b` and `c` must be valid, and `c`'s
    /// elements must not be accessed by anyone else during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn raw(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// `b` copied into the panels that [`Gemm::raw`]'s own kernel reads, for products that
    /// reuse it ([`PackedB`]); `None` where this type or CPU has no own kernel.
    fn pack_b(b: &View<'_, Self>) -> Option<Panels>;

    /// [`Gemm::raw`] with B already in `panels` (made by [`Gemm::pack_b`]): `c = a b + beta
    /// c` for an `m x k` A (`k` the panels' rows), into a C whose elements in a row are
    /// adjacent and whose rows are `ldc` apart. Same bits as `raw` through the own kernel.
    ///
    /// # Safety
    /// As [`Gemm::raw`] for A and C.
    unsafe fn raw_packed(
        m: usize,
        a: (*const Self, isize, isize),
        panels: &Panels,
        beta: Self,
        c: (*mut Self, isize),
    );

    /// `c = a b (+ bias)` into a C that need not hold initialised values (every element is
    /// written, none read): `bias`, if given, is a row of `n` elements added to every row,
    /// with the same bits as a C that held it before `raw` with `beta` one. C's elements in
    /// a row are adjacent, its rows `ldc` apart; `k` must not be zero.
    ///
    /// # Safety
    /// As [`Gemm::raw`] for A, B and C; `bias`, if given, points to `n` readable elements.
    unsafe fn raw_fresh(
        shape: (usize, usize, usize),
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        bias: Option<*const Self>,
        c: (*mut Self, isize),
    );

    /// The kernel that [`Gemm::raw`] and [`Gemm::raw_fresh`] run for products of fewer than
    /// a 16 x 16 x 16 product's multiply-adds, where this crate has one for the type and
    /// CPU, for callers that run many such products inside one switch of the
    /// floating-point mode (the batched forms).
    #[doc(hidden)]
    fn small_kernel() -> Option<OwnKernel<Self>>;

    /// [`Gemm::raw`] through the library alone (`matrixmultiply`, or the `gemm` crate with
    /// the `gemm` feature).
    ///
    /// # Safety
    /// As [`Gemm::raw`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn library(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

/// Products smaller than this many multiply-adds (a 16 x 16 x 16 product) skip the blocked
/// product (copying into panels would cost more than it saves) for the chains of
/// [`small`], or the library where the CPU has no own kernel.
const OWN_KERNEL_FLOPS: usize = 16 * 16 * 16;

macro_rules! impl_gemm {
    ($t:ty, $matrixmultiply:path, $own:expr, $small:expr, $pack:path, $packed:path) => {
        impl Gemm for $t {
            fn pack_b(b: &View<'_, $t>) -> Option<Panels> {
                $pack(b)
            }

            unsafe fn raw_packed(
                m: usize,
                a: (*const $t, isize, isize),
                panels: &Panels,
                beta: $t,
                c: (*mut $t, isize),
            ) {
                // SAFETY: forwarded from the caller.
                crate::subnormal::flushing(|| unsafe { $packed(m, a, panels, beta, c) })
            }

            unsafe fn raw(
                m: usize,
                k: usize,
                n: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                beta: $t,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                let own: Option<OwnKernel<$t>> =
                    if m * n * k >= OWN_KERNEL_FLOPS { $own } else { Self::small_kernel() };
                if let Some(own) = own
                    && csc == 1
                {
                    let no_bias = std::ptr::null();
                    // SAFETY: forwarded from the caller; `$own` and `$small` chose kernels
                    // the CPU has.
                    return crate::subnormal::flushing(|| unsafe {
                        own((m, k, n), (a, rsa, csa), (b, rsb, csb), (beta, no_bias), (c, rsc))
                    });
                }
                // SAFETY: forwarded from the caller.
                unsafe { Self::library(m, k, n, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }

            unsafe fn raw_fresh(
                (m, k, n): (usize, usize, usize),
                (a, rsa, csa): (*const $t, isize, isize),
                (b, rsb, csb): (*const $t, isize, isize),
                bias: Option<*const $t>,
                (c, ldc): (*mut $t, isize),
            ) {
                let own: Option<OwnKernel<$t>> =
                    if m * n * k >= OWN_KERNEL_FLOPS { $own } else { Self::small_kernel() };
                if let Some(own) = own {
                    let zero = <$t as crate::Real>::ZERO;
                    let bias = bias.unwrap_or(std::ptr::null());
                    // SAFETY: forwarded from the caller; the own kernel writes every element
                    // of C and reads none when beta is zero.
                    return crate::subnormal::flushing(|| unsafe {
                        own((m, k, n), (a, rsa, csa), (b, rsb, csb), (zero, bias), (c, ldc))
                    });
                }
                // SAFETY: forwarded from the caller. The libraries write C without reading it
                // when beta is zero (documented by both); with a bias, C first holds it.
                unsafe {
                    let beta = match bias {
                        Some(bias) => {
                            for i in 0..m {
                                std::ptr::copy_nonoverlapping(bias, c.offset(i as isize * ldc), n);
                            }
                            <$t as crate::Real>::ONE
                        }
                        None => <$t as crate::Real>::ZERO,
                    };
                    Self::library(m, k, n, a, rsa, csa, b, rsb, csb, beta, c, ldc, 1)
                }
            }

            fn small_kernel() -> Option<OwnKernel<$t>> {
                $small
            }

            unsafe fn library(
                m: usize,
                k: usize,
                n: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                beta: $t,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                // gemm computes dst = alpha dst + beta (lhs rhs), strides column first. Our
                // callers split large products across threads themselves: measured here,
                // gemm's own rayon split was no faster and made small steps noisier.
                #[cfg(feature = "gemm")]
                // SAFETY: forwarded from the caller.
                crate::subnormal::flushing(|| unsafe {
                    let serial = gemm::Parallelism::None;
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c,
                        csc,
                        rsc,
                        beta != 0.0,
                        a,
                        csa,
                        rsa,
                        b,
                        csb,
                        rsb,
                        beta,
                        1.0,
                        false,
                        false,
                        false,
                        serial,
                    )
                });
                #[cfg(not(feature = "gemm"))]
                // SAFETY: forwarded from the caller.
                crate::subnormal::flushing(|| unsafe {
                    $matrixmultiply(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
                });
            }
        }
    };
}

/// A product with [`Gemm::raw`]'s arguments: `raw` itself or `library`.
type Kernel<T> = unsafe fn(
    usize,
    usize,
    usize,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// An own kernel: `c = a b + beta c` on `(m, k, n)`, A and B with their strides, `beta`
/// with a bias row (null for none; only with `beta` zero: `c = a b + bias`), C with its row
/// stride (columns adjacent).
type OwnKernel<T> = unsafe fn(
    (usize, usize, usize),
    (*const T, isize, isize),
    (*const T, isize, isize),
    (T, *const T),
    (*mut T, isize),
);

// With the `gemm` feature every product goes to the gemm crate, whose kernels measured a
// few percent ahead of the own one on large square products (docs/BENCHMARKS.md).
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
impl_gemm!(f32, matrixmultiply::sgemm, own_f32(), small_product(), pack_f32, packed_f32);
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
impl_gemm!(f64, matrixmultiply::dgemm, None, small_product(), no_panels, no_packed_product);
#[cfg(any(not(target_arch = "x86_64"), feature = "gemm"))]
impl_gemm!(f32, matrixmultiply::sgemm, None, None, no_panels, no_packed_product);
#[cfg(any(not(target_arch = "x86_64"), feature = "gemm"))]
impl_gemm!(f64, matrixmultiply::dgemm, None, None, no_panels, no_packed_product);

/// A matrix copied into the own kernel's panel order (made by [`Gemm::pack_b`], held by
/// [`PackedB`]).
///
/// ```
/// use tapegrad_kernels::gemm::{Gemm, View};
/// let b = vec![1.0f32; 64 * 64];
/// // Panels where f32 products take the own kernel (AVX-512 or AVX2, without the `gemm`
/// // feature).
/// let _maybe = f32::pack_b(&View::row_major(&b, 64, 64));
/// assert!(f64::pack_b(&View::row_major(&[1.0; 4], 2, 2)).is_none()); // no own f64 kernel
/// ```
#[non_exhaustive]
pub struct Panels {
    #[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
    inner: blocked::Panels,
    /// The register tile the panels were laid out for.
    #[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
    tile: OwnTile,
}

/// The register tiles of the own f32 product.
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnTile {
    Avx512,
    Avx2,
}

/// The own f32 product's tile on this CPU: AVX-512's unless switched off, else AVX2's
/// (`None` without either: `matrixmultiply` takes every product).
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
fn own_tile() -> Option<OwnTile> {
    if crate::simd::avx512_enabled() {
        Some(OwnTile::Avx512)
    } else if crate::simd::avx2_enabled() {
        Some(OwnTile::Avx2)
    } else {
        None
    }
}

/// The own kernel for products below [`OWN_KERNEL_FLOPS`], where the CPU has one of the
/// own tiles (so FMA): [`small`]'s chains, in f32 and f64.
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
fn small_product<T: small::Fused>() -> Option<OwnKernel<T>> {
    own_tile().map(|_| small::product::<T> as OwnKernel<T>)
}

/// The own f32 product this CPU runs.
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
fn own_f32() -> Option<OwnKernel<f32>> {
    Some(match own_tile()? {
        OwnTile::Avx512 => blocked::sgemm::<avx512::Avx512>,
        OwnTile::Avx2 => blocked::sgemm::<avx2::Avx2>,
    })
}

#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
fn pack_f32(b: &View<'_, f32>) -> Option<Panels> {
    // No copy of a B that repeats its elements (a stride of zero: the copy would be larger
    // than B, possibly past what fits in memory); the plain product reads it in place.
    let tile = own_tile()?;
    if b.rs == 0 || b.cs == 0 || !b.in_bounds() {
        return None;
    }
    let origin = (b.data.get(b.offset..)?.as_ptr(), b.rs as isize, b.cs as isize);
    let shape = (b.rows, b.cols);
    // SAFETY: the CPU has the tile's instruction set; the view lies inside its data
    // (checked above).
    let inner = unsafe {
        match tile {
            OwnTile::Avx512 => blocked::pack_whole::<avx512::Avx512>(shape, origin),
            OwnTile::Avx2 => blocked::pack_whole::<avx2::Avx2>(shape, origin),
        }
    }?;
    Some(Panels { inner, tile })
}

/// # Safety
/// As [`Gemm::raw_packed`].
#[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
unsafe fn packed_f32(
    m: usize,
    a: (*const f32, isize, isize),
    panels: &Panels,
    beta: f32,
    c: (*mut f32, isize),
) {
    // SAFETY: panels exist only where the CPU has their tile's instruction set
    // (`pack_f32`), and go to the kernel they were laid out for; the rest is the caller's
    // guarantee.
    unsafe {
        match panels.tile {
            OwnTile::Avx512 => {
                blocked::sgemm_packed::<avx512::Avx512>(m, a, &panels.inner, beta, c)
            }
            OwnTile::Avx2 => blocked::sgemm_packed::<avx2::Avx2>(m, a, &panels.inner, beta, c),
        }
    }
}

fn no_panels<T>(_: &View<'_, T>) -> Option<Panels> {
    None
}

/// # Safety
/// Never called: there are no panels for these types.
unsafe fn no_packed_product<T>(
    _: usize,
    _: (*const T, isize, isize),
    _: &Panels,
    _: T,
    _: (*mut T, isize),
) {
    unreachable!("products from panels exist only where pack_b made panels")
}

/// A right-hand operand copied once into the order the own kernel reads, for a run of
/// products that share it (an LSTM's recurrent weight at every time step): each product
/// through [`gemm_serial_packed`] then skips the copy, with the same result bits as
/// [`gemm_serial`]. Where the type or CPU has no own kernel it only holds the view.
///
/// ```
/// use tapegrad_kernels::gemm::{PackedB, View, gemm_serial, gemm_serial_packed};
/// let w: Vec<f32> = (0..64 * 48).map(|i| (i % 7) as f32 - 3.0).collect();
/// let x: Vec<f32> = (0..16 * 48).map(|i| (i % 5) as f32).collect();
/// let w_t = View::row_major(&w, 64, 48).t(); // x wᵀ
/// let packed = PackedB::new(w_t);
/// let (mut once, mut reused) = (vec![0.0; 16 * 64], vec![0.0; 16 * 64]);
/// gemm_serial(View::row_major(&x, 16, 48), w_t, &mut once, false);
/// gemm_serial_packed(View::row_major(&x, 16, 48), &packed, &mut reused, false);
/// assert_eq!(once, reused);
/// ```
pub struct PackedB<'a, T> {
    view: View<'a, T>,
    panels: Option<Panels>,
}

impl<'a, T: Gemm> PackedB<'a, T> {
    /// Copies `b` into panels where the own kernel would read them.
    ///
    /// ```
    /// use tapegrad_kernels::gemm::{PackedB, View};
    /// let w = vec![0.5f32; 128 * 512];
    /// let w_t = PackedB::new(View::row_major(&w, 512, 128).t()); // reused by every step
    /// # let _ = w_t;
    /// ```
    ///
    /// # Panics
    /// If the view reaches outside its data.
    pub fn new(b: View<'a, T>) -> Self {
        assert!(b.in_bounds(), "gemm: operand shapes");
        PackedB { view: b, panels: T::pack_b(&b) }
    }
}

/// [`gemm_serial`] with a right-hand operand copied once by [`PackedB`].
///
/// ```
/// use tapegrad_kernels::gemm::{PackedB, View, gemm_serial_packed};
/// let b = [1.0f64, 2.0, 3.0, 4.0];
/// let packed = PackedB::new(View::row_major(&b, 2, 2));
/// let mut c = [1.0; 4];
/// gemm_serial_packed(View::row_major(&b, 2, 2), &packed, &mut c, true);
/// assert_eq!(c, [8.0, 11.0, 16.0, 23.0]); // 1 + b b
/// ```
///
/// # Panics
/// If the shapes do not fit or a view reaches outside its data.
pub fn gemm_serial_packed<T: Gemm>(
    a: View<'_, T>,
    b: &PackedB<'_, T>,
    c: &mut [T],
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.view.cols);
    match &b.panels {
        // The same choice as `Gemm::raw`: panels exist only where the own kernel runs.
        Some(panels) if m * n * k >= OWN_KERNEL_FLOPS => {
            assert!(
                a.cols == b.view.rows && m.checked_mul(n) == Some(c.len()) && a.in_bounds(),
                "gemm: operand shapes"
            );
            let beta = if accumulate { T::ONE } else { T::ZERO };
            let a = (a.data[a.offset..].as_ptr(), a.rs as isize, a.cs as isize);
            // SAFETY: A lies inside its data (asserted), C is exclusively borrowed with
            // m x n elements, rows n apart.
            unsafe { T::raw_packed(m, a, panels, beta, (c.as_mut_ptr(), n as isize)) }
        }
        _ => gemm_serial(a, b.view, c, accumulate),
    }
}

/// A pointer that may cross into rayon's workers: each worker writes a disjoint block.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used for disjoint writes inside `gemm_into`, `fresh_into` and
// `gemm_batched_new`, each of which outlives the workers it hands the pointer to.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer; a method so closures capture the whole (Send) wrapper.
    fn get(self) -> *mut T {
        self.0
    }
}

/// One GEMM call on a block: `rows x cols` of C at `c` (row stride `ldc`), from A and B
/// starting at the given storage offsets.
///
/// # Safety
/// The block must lie inside the operands (checked by the callers' assertions) and `c`'s
/// block must not be accessed by anyone else during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn block<T: Gemm>(
    kernel: Kernel<T>,
    a: &View<'_, T>,
    b: &View<'_, T>,
    (rows, cols): (usize, usize),
    (a_off, b_off): (usize, usize),
    c: *mut T,
    ldc: usize,
    beta: T,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        kernel(
            rows,
            a.cols,
            cols,
            a.data.as_ptr().add(a_off),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr().add(b_off),
            b.rs as isize,
            b.cs as isize,
            beta,
            c,
            ldc as isize,
            1,
        )
    }
}

/// `c = a b` (or `c += a b` with `accumulate`) into a row-major `c` of `a.rows x b.cols`,
/// on the calling thread.
///
/// ```
/// use tapegrad_kernels::gemm::{View, gemm_serial};
/// let a = [1.0f64, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let mut c = [1.0; 4];
/// gemm_serial(View::row_major(&a, 2, 2), View::row_major(&a, 2, 2).t(), &mut c, true);
/// assert_eq!(c, [6.0, 12.0, 12.0, 26.0]); // 1 + a aᵀ
/// ```
///
/// # Panics
/// If the shapes do not fit or a view reaches outside its data.
pub fn gemm_serial<T: Gemm>(a: View<'_, T>, b: View<'_, T>, c: &mut [T], accumulate: bool) {
    serial(T::raw, a, b, c, accumulate)
}

/// [`gemm_serial`] through the given kernel ([`Gemm::raw`] or [`Gemm::library`]).
fn serial<T: Gemm>(
    kernel: Kernel<T>,
    a: View<'_, T>,
    b: View<'_, T>,
    c: &mut [T],
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        a.cols == b.rows && m.checked_mul(n) == Some(c.len()) && a.in_bounds() && b.in_bounds(),
        "gemm: operand shapes"
    );
    if m * n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::ZERO);
        }
        return;
    }
    let beta = if accumulate { T::ONE } else { T::ZERO };
    // SAFETY: bounds asserted above; `c` is exclusively borrowed.
    unsafe { block(kernel, &a, &b, (m, n), (a.offset, b.offset), c.as_mut_ptr(), n, beta) }
}

/// [`gemm_serial`] through the library alone (`matrixmultiply`, or the `gemm` crate with
/// the `gemm` feature), never this crate's own kernel: what the benchmark compares
/// that kernel with.
///
/// ```
/// use tapegrad_kernels::gemm::{View, library_gemm_serial};
/// let a = [1.0f32, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let mut c = [0.0; 4];
/// library_gemm_serial(View::row_major(&a, 2, 2), View::row_major(&a, 2, 2), &mut c);
/// assert_eq!(c, [7.0, 10.0, 15.0, 22.0]);
/// ```
///
/// # Panics
/// If the shapes do not fit or a view reaches outside its data.
pub fn library_gemm_serial<T: Gemm>(a: View<'_, T>, b: View<'_, T>, c: &mut [T]) {
    serial(T::library, a, b, c, false)
}

/// [`gemm_serial`], split into row or column blocks across threads when large.
///
/// ```
/// use tapegrad_kernels::gemm::{View, gemm_into};
/// let (n, ones) = (256, vec![1.0f32; 256 * 256]);
/// let mut c = vec![0.0; n * n];
/// gemm_into(View::row_major(&ones, n, n), View::row_major(&ones, n, n), &mut c, false);
/// assert!(c.iter().all(|&v| v == n as f32));
/// ```
///
/// # Panics
/// If the shapes do not fit or a view reaches outside its data.
pub fn gemm_into<T: Gemm>(a: View<'_, T>, b: View<'_, T>, c: &mut [T], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if !split(m * n * k) {
        return gemm_serial(a, b, c, accumulate);
    }
    assert!(
        a.cols == b.rows && m.checked_mul(n) == Some(c.len()) && a.in_bounds() && b.in_bounds(),
        "gemm: operand shapes"
    );
    let beta = if accumulate { T::ONE } else { T::ZERO };
    let c_ptr = SendPtr(c.as_mut_ptr());
    split_blocks((m, n), |shape, (row, col)| {
        let offsets = (a.offset + row * a.rs, b.offset + col * b.cs);
        // SAFETY: blocks of C are disjoint; A and B are only read; bounds asserted above.
        unsafe { block(T::raw, &a, &b, shape, offsets, c_ptr.get().add(row * n + col), n, beta) }
    });
}

/// Splits an `m x n` C into one block per rayon thread along its longer side (so each
/// worker gets a tall or wide block) and calls `part(shape, (first row, first column))` for
/// each, in parallel.
fn split_blocks((m, n): (usize, usize), part: impl Fn((usize, usize), (usize, usize)) + Sync) {
    let threads = rayon::current_num_threads();
    let _ = crate::parallel::keep_warm();
    let (blocks, along_rows) =
        if m >= n { (threads.min(m), true) } else { (threads.min(n), false) };
    let len = if along_rows { m } else { n };
    (0..blocks).into_par_iter().for_each(|i| {
        let (start, end) = (i * len / blocks, (i + 1) * len / blocks);
        if start < end {
            if along_rows {
                part((end - start, n), (start, 0))
            } else {
                part((m, end - start), (0, start))
            }
        }
    });
}

/// `a b`, plus `bias` added to every row if given, as a new row-major `a.rows x b.cols`
/// matrix: the product's result is written once, without zeroing (or copying the bias
/// into) the memory first, and split across threads as in [`gemm_into`]. The bits are those
/// of [`gemm_into`] into a C that held the bias (or anything, without one).
///
/// ```
/// use tapegrad_kernels::gemm::{View, gemm_new};
/// let x = [1.0f32, 2.0, 3.0, 4.0]; // two rows of two
/// let w = [10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0]; // three rows of two: x wᵀ
/// let y = gemm_new(View::row_major(&x, 2, 2), View::row_major(&w, 3, 2).t(), Some(&[0.5, 0.0, -1.0]));
/// assert_eq!(y, [50.5, 110.0, 169.0, 110.5, 250.0, 389.0]);
/// ```
///
/// # Panics
/// If the shapes do not fit, a view reaches outside its data, or the bias is not `b.cols`
/// long.
pub fn gemm_new<T: Gemm>(a: View<'_, T>, b: View<'_, T>, bias: Option<&[T]>) -> Vec<T> {
    let len = a.rows.checked_mul(b.cols).expect("gemm: operand shapes");
    let mut c = Vec::with_capacity(len);
    // SAFETY: the buffer has room for the `len` elements `fresh_into` writes, all of them,
    // before the length is set; a panic inside leaves it empty.
    unsafe {
        fresh_into(&a, &b, bias, SendPtr(c.as_mut_ptr()), true);
        c.set_len(len);
    }
    c
}

/// Writes `a b (+ bias)` into the row-major `a.rows x b.cols` matrix at `c`, whose memory
/// need not be initialised: split across threads when `parallel` and the product is large.
///
/// # Safety
/// `c` must be valid for writes of `a.rows x b.cols` elements that no one else accesses
/// during the call.
unsafe fn fresh_into<T: Gemm>(
    a: &View<'_, T>,
    b: &View<'_, T>,
    bias: Option<&[T]>,
    c: SendPtr<T>,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        a.cols == b.rows
            && m.checked_mul(n).is_some()
            && a.in_bounds()
            && b.in_bounds()
            && bias.is_none_or(|bias| bias.len() == n),
        "gemm: operand shapes"
    );
    if m * n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: (i, j) lies inside C (the caller's guarantee).
                unsafe { c.get().add(i * n + j).write(bias.map_or(T::ZERO, |bias| bias[j])) };
            }
        }
        return;
    }
    let part = |(rows, cols): (usize, usize), (row, col): (usize, usize)| {
        // SAFETY: the block's rows of A and columns of B lie inside their data (asserted
        // above: the views are in bounds and not empty), its corner of C inside C, written by
        // this call alone; the bias has its `cols` elements from `col`.
        unsafe {
            T::raw_fresh(
                (rows, k, cols),
                (a.data.as_ptr().add(a.offset + row * a.rs), a.rs as isize, a.cs as isize),
                (b.data.as_ptr().add(b.offset + col * b.cs), b.rs as isize, b.cs as isize),
                bias.map(|bias| bias[col..].as_ptr()),
                (c.get().add(row * n + col), n as isize),
            )
        }
    };
    if parallel && split(m * n * k) { split_blocks((m, n), part) } else { part((m, n), (0, 0)) }
}

/// A batch of products `c_i = a_i b_i` into the consecutive `m x n` blocks of a row-major
/// `c`, with `views(i)` giving the operands of product `i`. Batches of small products
/// (attention's per-head matrices) run on rayon's threads, one product per task; large
/// products split themselves as in [`gemm_into`].
///
/// ```
/// use tapegrad_kernels::gemm::{View, gemm_batched};
/// let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [10.0f32, 100.0]); // two 1x2 rows, one 2x1 column
/// let mut c = [0.0f32; 2];
/// gemm_batched(2, |i| (View::row_major(&a[2 * i..2 * i + 2], 1, 2), View::row_major(&b, 2, 1)), &mut c);
/// assert_eq!(c, [210.0, 430.0]);
/// ```
///
/// # Panics
/// If `c` does not split into `count` blocks the products fill, or an operand's view
/// reaches outside its data.
pub fn gemm_batched<'a, T: Gemm>(
    count: usize,
    views: impl Fn(usize) -> (View<'a, T>, View<'a, T>) + Sync,
    c: &mut [T],
) {
    if count == 0 {
        return;
    }
    assert_eq!(c.len() % count, 0, "gemm_batched: output size");
    let block = c.len() / count;
    if block == 0 {
        return;
    }
    let (a0, b0) = views(0);
    let shape = (a0.rows, a0.cols, b0.cols);
    if a0.rows * b0.cols == block {
        // SAFETY: `c` holds `count` blocks of `block` elements, exclusively borrowed, and
        // `small_batch` writes blocks of product 0's `m x n`, which is `block`.
        if unsafe { small_batch(count, &views, shape, SendPtr(c.as_mut_ptr())) } {
            return;
        }
    }
    if batch_in_parallel(count, a0.rows * a0.cols * b0.cols) {
        let _ = crate::parallel::keep_warm();
        c.par_chunks_mut(block).enumerate().for_each(|(i, ci)| {
            let (a, b) = views(i);
            gemm_serial(a, b, ci, false);
        });
    } else {
        for (i, ci) in c.chunks_mut(block).enumerate() {
            let (a, b) = views(i);
            gemm_into(a, b, ci, false);
        }
    }
}

/// [`gemm_batched`] into a new buffer of `count` consecutive `m x n` blocks (`m` and `n`
/// those of product 0, which every product must share): each product's result is written
/// once, without zeroing the memory first.
///
/// ```
/// use tapegrad_kernels::gemm::{View, gemm_batched_new};
/// let (a, b) = ([1.0f32, 2.0, 3.0, 4.0], [10.0f32, 100.0]); // two 1x2 rows, one 2x1 column
/// let c = gemm_batched_new(2, |i| (View::row_major(&a[2 * i..2 * i + 2], 1, 2), View::row_major(&b, 2, 1)));
/// assert_eq!(c, [210.0, 430.0]);
/// ```
///
/// # Panics
/// If a product's shapes do not fit or differ from product 0's, or a view reaches outside
/// its data.
pub fn gemm_batched_new<'a, T: Gemm>(
    count: usize,
    views: impl Fn(usize) -> (View<'a, T>, View<'a, T>) + Sync,
) -> Vec<T> {
    if count == 0 {
        return Vec::new();
    }
    let (a0, b0) = views(0);
    let (m, n) = (a0.rows, b0.cols);
    let block = m.checked_mul(n).expect("gemm_batched: output size");
    let len = block.checked_mul(count).expect("gemm_batched: output size");
    let mut c: Vec<T> = Vec::with_capacity(len);
    let c_ptr = SendPtr(c.as_mut_ptr());
    // SAFETY: the buffer has room for `count` blocks of `m x n`, written by no one else.
    if unsafe { small_batch(count, &views, (m, a0.cols, n), c_ptr) } {
        // SAFETY: every block was written in full (a panic would have left the length 0).
        unsafe { c.set_len(len) };
        return c;
    }
    let product = |i: usize, parallel: bool| {
        let (a, b) = views(i);
        assert!(a.rows == m && b.cols == n, "gemm_batched: product {i} is not {m} x {n}");
        // SAFETY: block i of the buffer (inside its capacity of `count` blocks), written by
        // this call alone.
        unsafe { fresh_into(&a, &b, None, SendPtr(c_ptr.get().add(i * block)), parallel) }
    };
    if batch_in_parallel(count, m * a0.cols * n) {
        let _ = crate::parallel::keep_warm();
        (0..count).into_par_iter().for_each(|i| product(i, false));
    } else {
        (0..count).for_each(|i| product(i, true));
    }
    // SAFETY: every block was written in full above (a panic would have left the length 0).
    unsafe { c.set_len(len) };
    c
}

/// Products per task, and per switch of the floating-point mode, in [`small_batch`].
const SMALL_PRODUCTS_PER_TASK: usize = 64;

/// What a small product costs besides its multiply-adds (finding its operands, checking
/// them, the call), counted in multiply-adds, for the choice of splitting a batch of them
/// across threads: a batch of 3 x 3 products is mostly that.
const SMALL_PRODUCT_CALL: usize = 256;

/// Writes a batch of small products (`shape` that of product 0: fewer multiply-adds than
/// [`OWN_KERNEL_FLOPS`]) into the consecutive `m x n` blocks at `c` through
/// [`Gemm::small_kernel`], in tasks of [`SMALL_PRODUCTS_PER_TASK`] products that each
/// switch the floating-point mode once: a product of a few multiply-adds costs less than
/// the switch. The products' bits are [`Gemm::raw_fresh`]'s. Returns false, having done
/// nothing, for larger products or where there is no such kernel.
///
/// # Panics
/// If a product is not `m x n`, its operands' shapes do not fit or a view reaches outside
/// its data.
///
/// # Safety
/// `c` must be valid for writes of `count` blocks of `m x n` elements that no one else
/// accesses during the call.
unsafe fn small_batch<'a, T: Gemm>(
    count: usize,
    views: &(impl Fn(usize) -> (View<'a, T>, View<'a, T>) + Sync),
    (m, k, n): (usize, usize, usize),
    c: SendPtr<T>,
) -> bool {
    let Some(kernel) = T::small_kernel().filter(|_| m * k * n < OWN_KERNEL_FLOPS) else {
        return false;
    };
    let run = |first: usize, end: usize| {
        crate::subnormal::flushing(|| {
            for i in first..end {
                let (a, b) = views(i);
                assert!(
                    a.rows == m
                        && b.cols == n
                        && a.cols == b.rows
                        && a.in_bounds()
                        && b.in_bounds(),
                    "gemm_batched: product {i} is not {m} x {n}, or its operands do not fit"
                );
                let origin = |v: &View<'_, T>| {
                    // An empty view's offset may sit at the end of its data.
                    let start = v.data.as_ptr().wrapping_add(v.offset);
                    (start, v.rs as isize, v.cs as isize)
                };
                // SAFETY: the views lie inside their data (asserted); block i of C is this
                // call's alone (the caller's guarantee); C is written, not read (beta zero).
                unsafe {
                    let block = c.get().add(i * m * n);
                    let no_bias = std::ptr::null();
                    kernel(
                        (m, a.cols, n),
                        origin(&a),
                        origin(&b),
                        (T::ZERO, no_bias),
                        (block, n as isize),
                    )
                }
            }
        })
    };
    if batch_in_parallel(count, m * k * n + SMALL_PRODUCT_CALL) {
        let _ = crate::parallel::keep_warm();
        let tasks = count.div_ceil(SMALL_PRODUCTS_PER_TASK);
        (0..tasks).into_par_iter().for_each(|t| {
            let first = t * SMALL_PRODUCTS_PER_TASK;
            run(first, count.min(first + SMALL_PRODUCTS_PER_TASK))
        });
    } else {
        run(0, count)
    }
    true
}

/// Whether a batch of `count` products of `each` multiply-adds runs one product per task
/// (small products, enough of them in all) rather than one after another, each split
/// itself when large.
fn batch_in_parallel(count: usize, each: usize) -> bool {
    count > 1
        && each < PARALLEL_FLOPS
        && count * each >= PARALLEL_FLOPS / 4
        && rayon::current_num_threads() > 1
}

#[cfg(test)]
mod tests {
    use super::{
        Gemm, PackedB, View, gemm_batched, gemm_batched_new, gemm_into, gemm_new, gemm_serial,
        gemm_serial_packed, library_gemm_serial,
    };

    fn value(i: usize) -> f32 {
        ((i * 7919 % 2003) as f32 / 1001.0) - 1.0
    }

    /// Product shapes around the usual tile and block edges, with A and B read row-major
    /// and transposed, C overwritten and accumulated: against a triple loop in f64.
    #[test]
    fn matches_a_triple_loop_across_tile_and_block_edges() {
        let sizes = [1, 5, 12, 13, 31, 32, 33, 100, 257];
        for &m in &sizes {
            for &n in &sizes {
                for &k in &[1, 16, 255, 256, 300] {
                    for (ta, tb, accumulate) in [
                        (false, false, false),
                        (true, false, true),
                        (false, true, false),
                        (true, true, true),
                    ] {
                        let a: Vec<f32> = (0..m * k).map(value).collect();
                        let b: Vec<f32> = (0..k * n).map(|i| value(i + 5)).collect();
                        let (va, vb) = (view(&a, m, k, ta), view(&b, k, n, tb));
                        let start: Vec<f32> = (0..m * n).map(|i| value(i + 9)).collect();
                        let mut c = start.clone();
                        gemm_serial(va, vb, &mut c, accumulate);
                        let mut want = reference(&va, &vb);
                        if accumulate {
                            want.iter_mut().zip(&start).for_each(|(w, &s)| *w += s as f64);
                        }
                        let what = format!("m {m} n {n} k {k} ta {ta} tb {tb} acc {accumulate}");
                        assert_close(&c, &want, k, &what);
                    }
                }
            }
        }
    }

    /// A `rows x cols` operand over `data`: row-major, or the transpose of a row-major
    /// `cols x rows` matrix (column-major).
    fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> View<'_, f32> {
        if transposed {
            View::row_major(data, cols, rows).t()
        } else {
            View::row_major(data, rows, cols)
        }
    }

    /// The product of two views as a triple loop in f64.
    fn reference(a: &View<'_, f32>, b: &View<'_, f32>) -> Vec<f64> {
        let at =
            |v: &View<'_, f32>, r: usize, s: usize| v.data[v.offset + r * v.rs + s * v.cs] as f64;
        let mut out = Vec::with_capacity(a.rows * b.cols);
        for i in 0..a.rows {
            for j in 0..b.cols {
                out.push((0..a.cols).map(|p| at(a, i, p) * at(b, p, j)).sum());
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f64], k: usize, what: &str) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * (1.0 + k as f64),
                "{what}: element {i}: {g} vs {w}"
            );
        }
    }

    /// Views whose rows and columns are both strided (every other element of a larger
    /// matrix, at an offset), which no kernel reads as vectors, and products wider than one
    /// block of B's columns (1024) and deeper than one block of the shared dimension (256).
    #[test]
    fn strided_views_and_products_past_one_block() {
        for &(m, k, n) in &[(13, 40, 37), (30, 300, 50), (5, 20, 1100), (130, 17, 1030)] {
            let big_a: Vec<f32> = (0..4 * m * k + 8).map(value).collect();
            let big_b: Vec<f32> = (0..4 * k * n + 8).map(|i| value(i + 1)).collect();
            let a = View { data: &big_a, offset: 3, rows: m, cols: k, rs: 4 * k, cs: 2 };
            let b = View { data: &big_b, offset: 5, rows: k, cols: n, rs: 2, cs: 4 * k };
            let mut c = vec![0.0; m * n];
            gemm_serial(a, b, &mut c, false);
            assert_close(&c, &reference(&a, &b), k, &format!("strided {m}x{k}x{n}"));
            for (ta, tb) in [(false, false), (true, true), (false, true)] {
                let (a_data, b_data): (Vec<f32>, Vec<f32>) =
                    ((0..m * k).map(value).collect(), (0..k * n).map(|i| value(i + 2)).collect());
                let (a, b) = (view(&a_data, m, k, ta), view(&b_data, k, n, tb));
                let mut c = vec![0.0; m * n];
                gemm_serial(a, b, &mut c, false);
                assert_close(&c, &reference(&a, &b), k, &format!("{m}x{k}x{n} ta {ta} tb {tb}"));
            }
        }
    }

    /// A right-hand operand copied once gives the bits of a product that copies it, for
    /// every layout, past one block of each dimension, below the own kernel's size (the
    /// library path), accumulating or not, and reused for several left-hand operands.
    #[test]
    fn products_from_a_packed_operand_match_the_plain_ones() {
        let shapes = [(3, 5, 7), (16, 128, 512), (13, 300, 37), (5, 20, 1100), (250, 17, 1030)];
        for &(m, k, n) in &shapes {
            let big_b: Vec<f32> = (0..4 * k * n + 8).map(|i| value(i + 1)).collect();
            let strided = View { data: &big_b, offset: 5, rows: k, cols: n, rs: 2, cs: 4 * k };
            let b_data: Vec<f32> = (0..k * n).map(|i| value(i + 2)).collect();
            for b in [strided, view(&b_data, k, n, false), view(&b_data, k, n, true)] {
                let packed = PackedB::new(b);
                // Panels exactly where the own kernel runs: the products below compare them
                // with the plain copy, not the plain product with itself.
                let own = cfg!(all(target_arch = "x86_64", not(feature = "gemm")))
                    && (crate::simd::avx512_enabled() || crate::simd::avx2_enabled());
                assert_eq!(packed.panels.is_some(), own);
                for (round, ta) in [(0, false), (1, true), (2, false)] {
                    let a_data: Vec<f32> = (0..m * k).map(|i| value(i + round)).collect();
                    let a = view(&a_data, m, k, ta);
                    for accumulate in [false, true] {
                        let start: Vec<f32> = (0..m * n).map(|i| value(i + 9)).collect();
                        let (mut plain, mut from_panels) = (start.clone(), start);
                        gemm_serial(a, b, &mut plain, accumulate);
                        gemm_serial_packed(a, &packed, &mut from_panels, accumulate);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&plain), bits(&from_panels), "{m}x{k}x{n} ta {ta}");
                    }
                }
            }
        }
    }

    /// A B that repeats one element (zero strides) is read in place, not copied, however
    /// large it claims to be.
    #[test]
    fn a_broadcast_operand_is_not_copied() {
        let one = [2.0f32];
        let huge = View { data: &one, offset: 0, rows: 32, cols: (1 << 59) + 1, rs: 0, cs: 0 };
        assert!(PackedB::new(huge).panels.is_none());
        let small = View { data: &one, offset: 0, rows: 40, cols: 50, rs: 0, cs: 0 };
        let packed = PackedB::new(small);
        assert!(packed.panels.is_none());
        let a = vec![1.0f32; 30 * 40];
        let mut c = vec![0.0f32; 30 * 50];
        gemm_serial_packed(View::row_major(&a, 30, 40), &packed, &mut c, false);
        assert!(c.iter().all(|&v| v == 80.0));
    }

    #[test]
    #[should_panic(expected = "operand shapes")]
    fn a_packed_product_checks_its_shapes() {
        let b = [0.0f32; 64 * 64];
        let packed = PackedB::new(View::row_major(&b, 64, 64));
        let a = [0.0f32; 64 * 63];
        gemm_serial_packed(View::row_major(&a, 64, 63), &packed, &mut [0.0; 64 * 64], false);
    }

    /// `beta` other than zero and one scales C; a zero `beta` ignores what C held, NaN
    /// included (C may be uninitialised memory to the caller).
    #[test]
    fn beta_scales_c_and_zero_beta_never_reads_it() {
        let (m, k, n) = (20, 33, 40);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 4)).collect();
        let want = reference(&View::row_major(&a, m, k), &View::row_major(&b, k, n));
        for (beta, start) in [(0.0f32, f32::NAN), (0.5, 2.0), (1.0, -1.0)] {
            for own in [true, false] {
                let mut c = vec![start; m * n];
                let call = if own { <f32 as Gemm>::raw } else { <f32 as Gemm>::library };
                // SAFETY: A, B and C are row-major buffers of exactly these shapes.
                unsafe {
                    call(
                        m,
                        k,
                        n,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        beta,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                let want: Vec<f64> = want
                    .iter()
                    .map(|&w| if beta == 0.0 { w } else { w + (beta * start) as f64 })
                    .collect();
                assert_close(&c, &want, k, &format!("beta {beta}, own {own}"));
            }
        }
    }

    /// The library's product, as the benchmark calls it, gives the same values.
    #[test]
    fn the_library_product_agrees() {
        let (m, k, n) = (70, 90, 50);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 6)).collect();
        let (va, vb) = (View::row_major(&a, m, k), View::row_major(&b, k, n));
        let mut c = vec![f32::NAN; m * n];
        library_gemm_serial(va, vb, &mut c);
        assert_close(&c, &reference(&va, &vb), k, "library");
    }

    /// The AVX-512 and AVX2 tiles sum every element in the same order: the same bits, for
    /// every layout, edge tiles, blocks of the shared dimension and `beta` (run where both
    /// are on; elsewhere the tests above check the one this CPU runs against a triple loop).
    #[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
    #[test]
    fn both_register_tiles_give_the_same_bits() {
        use super::{avx2::Avx2, avx512::Avx512, blocked};
        if !(crate::simd::avx512_enabled() && crate::simd::avx2_enabled()) {
            return;
        }
        // The last two have few columns: transposed on AVX-512 (at most 8), on AVX2 only
        // the first (at most 4).
        let shapes = [
            (7, 300, 45),
            (13, 33, 17),
            (70, 256, 100),
            (5, 600, 1030),
            (70, 300, 3),
            (100, 40, 6),
        ];
        for &(m, k, n) in &shapes {
            let cases = [
                (false, false, 0.0, false),
                (true, true, 0.5, false),
                (false, true, 1.0, false),
                (true, false, 0.0, true),
            ];
            for (ta, tb, beta, with_bias) in cases {
                let a: Vec<f32> = (0..m * k).map(value).collect();
                let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
                let bias: Vec<f32> = (0..n).map(|i| value(i + 11)).collect();
                let bias = if with_bias { bias.as_ptr() } else { std::ptr::null() };
                let (va, vb) = (view(&a, m, k, ta), view(&b, k, n, tb));
                let start: Vec<f32> = (0..m * n).map(|i| value(i + 8)).collect();
                let (mut wide, mut narrow) = (start.clone(), start);
                let args = |v: &View<'_, f32>| (v.data.as_ptr(), v.rs as isize, v.cs as isize);
                // SAFETY: the CPU has both instruction sets (checked above); the views are
                // whole row-major or transposed matrices, C is m x n with rows n apart.
                unsafe {
                    let c = (wide.as_mut_ptr(), n as isize);
                    blocked::sgemm::<Avx512>((m, k, n), args(&va), args(&vb), (beta, bias), c);
                    let c = (narrow.as_mut_ptr(), n as isize);
                    blocked::sgemm::<Avx2>((m, k, n), args(&va), args(&vb), (beta, bias), c);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let what = format!("{m}x{k}x{n} ta {ta} tb {tb} beta {beta} bias {with_bias}");
                assert_eq!(bits(&wide), bits(&narrow), "{what}");
            }
        }
    }

    /// Products too small for the blocked product run as chains of their own
    /// (`gemm::small`), with the blocked product's bits: for each layout, `beta`, a bias,
    /// an empty shared dimension, one or several blocks of it, edge blocks of rows and
    /// columns, and B's rows adjacent or not.
    #[cfg(all(target_arch = "x86_64", not(feature = "gemm")))]
    #[test]
    fn small_products_have_the_bits_of_the_blocked_product() {
        use super::{avx2::Avx2, blocked, small};
        if !crate::simd::avx2_enabled() {
            return;
        }
        let shapes = [
            (1, 1, 1),
            (3, 3, 1),
            (3, 3, 3),
            (6, 128, 1),
            (1, 300, 7),
            (8, 8, 8),
            (5, 9, 13),
            (4, 600, 1),
            (2, 17, 20),
            (7, 0, 5),
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let args = |v: &View<'_, f32>| (v.data.as_ptr(), v.rs as isize, v.cs as isize);
        for &(m, k, n) in &shapes {
            assert!(m * k * n < super::OWN_KERNEL_FLOPS);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for (beta, with_bias) in [(0.0, false), (0.0, true), (1.0, false), (0.5, false)] {
                    let a: Vec<f32> = (0..m * k).map(value).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
                    let bias: Vec<f32> = (0..n).map(|i| value(i + 11)).collect();
                    let bias = if with_bias { bias.as_ptr() } else { std::ptr::null() };
                    let (va, vb) = (view(&a, m, k, ta), view(&b, k, n, tb));
                    let start: Vec<f32> = (0..m * n).map(|i| value(i + 8)).collect();
                    let (mut chains, mut blocked) = (start.clone(), start.clone());
                    // SAFETY: the CPU has AVX2 and FMA (checked above); the views are whole
                    // row-major or transposed matrices, C is m x n with rows n apart.
                    unsafe {
                        let c = (chains.as_mut_ptr(), n as isize);
                        small::product::<f32>((m, k, n), args(&va), args(&vb), (beta, bias), c);
                        let c = (blocked.as_mut_ptr(), n as isize);
                        blocked::sgemm::<Avx2>((m, k, n), args(&va), args(&vb), (beta, bias), c);
                    }
                    let what = format!("{m}x{k}x{n} ta {ta} tb {tb} beta {beta} bias {with_bias}");
                    assert_eq!(bits(&chains), bits(&blocked), "{what}");
                    let mut want = reference(&va, &vb);
                    for (i, w) in want.iter_mut().enumerate() {
                        *w += if with_bias {
                            f64::from(value(i % n + 11))
                        } else {
                            f64::from(beta) * f64::from(start[i])
                        };
                    }
                    assert_close(&chains, &want, k.max(1), &what);
                }
            }
        }
    }

    /// f64 products take the same chains where the CPU has FMA: close to a triple loop, for
    /// each layout.
    #[test]
    fn small_f64_products_agree_with_a_triple_loop() {
        for &(m, k, n) in &[(3, 3, 1), (6, 40, 3), (1, 300, 9), (9, 2, 30)] {
            for (ta, tb) in [(false, false), (true, true)] {
                let a: Vec<f64> = (0..m * k).map(|i| f64::from(value(i))).collect();
                let b: Vec<f64> = (0..k * n).map(|i| f64::from(value(i + 3))).collect();
                let va = View { data: &a, offset: 0, rows: m, cols: k, rs: k, cs: 1 };
                let vb = View { data: &b, offset: 0, rows: k, cols: n, rs: n, cs: 1 };
                let (va, vb) = (
                    if ta { View { rs: 1, cs: m, ..va } } else { va },
                    if tb { View { rs: 1, cs: k, ..vb } } else { vb },
                );
                let got = gemm_new(va, vb, None);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| a[i * va.rs + p * va.cs] * b[p * vb.rs + j * vb.cs])
                            .sum();
                        let err = (got[i * n + j] - want).abs();
                        assert!(err <= 1e-12 * (k as f64), "{m}x{k}x{n} ({i}, {j}): {err}");
                    }
                }
            }
        }
    }

    /// A batch of small products (run in tasks of several products, on two threads when
    /// there are enough) gives each product's bits alone, for strided and shared operands.
    #[test]
    fn batches_of_small_products_match_single_products() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &(count, m, k, n) in &[(5000, 3, 3, 1), (3000, 3, 3, 3), (100, 8, 8, 8), (7, 1, 40, 2)]
        {
            let a: Vec<f32> = (0..count * m * k).map(value).collect();
            let shared: Vec<f32> = (0..k * n).map(|i| value(i + 5)).collect();
            // A's matrices transposed in place; one B for every product.
            let views = |i: usize| {
                let va = View { data: &a, offset: i * m * k, rows: m, cols: k, rs: 1, cs: m };
                (va, View::row_major(&shared, k, n))
            };
            let mut want = Vec::new();
            for i in 0..count {
                let (va, vb) = views(i);
                want.extend(gemm_new(va, vb, None));
            }
            let what = format!("{count} x {m}x{k}x{n}");
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let fresh = pool.install(|| gemm_batched_new(count, views));
                assert_eq!(bits(&fresh), bits(&want), "{what}, {threads} threads");
                let mut into = vec![f32::NAN; count * m * n];
                pool.install(|| gemm_batched(count, views, &mut into));
                assert_eq!(bits(&into), bits(&want), "{what}, into C, {threads} threads");
            }
        }
    }

    /// A product into a few columns (run as `Cᵀ = Bᵀ Aᵀ`) gives the bits of the same
    /// columns of a wide product (run as it is): for each layout, fresh with and without a
    /// bias, accumulated with `beta` one, and with one or several blocks of the shared
    /// dimension.
    #[test]
    fn few_columns_have_the_bits_of_a_wide_product() {
        const WIDE: usize = 40;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &(m, k) in &[(40, 1), (100, 7), (257, 256), (64, 300)] {
            for n in [1, 2, 3, 5, 8] {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let a: Vec<f32> = (0..m * k).map(value).collect();
                    let b: Vec<f32> = (0..k * WIDE).map(|i| value(i + 3)).collect();
                    let bias: Vec<f32> = (0..WIDE).map(|i| value(i + 7)).collect();
                    let (va, wide) = (view(&a, m, k, ta), view(&b, k, WIDE, tb));
                    let few = View { cols: n, ..wide };
                    let columns = |c: &[f32], cols: usize| -> Vec<f32> {
                        c.chunks(cols).flat_map(|row| row[..n].to_vec()).collect()
                    };
                    let what = format!("{m}x{k}x{n} ta {ta} tb {tb}");
                    let got = gemm_new(va, few, None);
                    assert_close(&got, &reference(&va, &few), k, &what);
                    assert_eq!(
                        bits(&got),
                        bits(&columns(&gemm_new(va, wide, None), WIDE)),
                        "{what}"
                    );
                    assert_eq!(
                        bits(&gemm_new(va, few, Some(&bias[..n]))),
                        bits(&columns(&gemm_new(va, wide, Some(&bias)), WIDE)),
                        "{what}, bias"
                    );
                    let start: Vec<f32> = (0..m * WIDE).map(|i| value(i + 5)).collect();
                    let mut into_wide = start.clone();
                    gemm_into(va, wide, &mut into_wide, true);
                    let mut into_few = columns(&start, WIDE);
                    gemm_into(va, few, &mut into_few, true);
                    assert_eq!(bits(&into_few), bits(&columns(&into_wide, WIDE)), "{what}, +=");
                }
            }
        }
    }

    /// A product into a few rows (B's rows read in place, or its columns through register
    /// transposes) gives the bits of the same rows of a tall product (B copied into
    /// panels): for each layout, with B's rows or columns further apart than their length,
    /// fresh with and without a bias, accumulated with `beta` one, with one or several
    /// blocks of the shared dimension, and split across two threads.
    #[test]
    fn few_rows_have_the_bits_of_a_tall_product() {
        const TALL: usize = 20;
        const WIDE: usize = 310;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for k in [256, 300, 600] {
            for n in [16, 17, 33, 80, 127, 130, 300] {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let a: Vec<f32> = (0..TALL * k).map(value).collect();
                    let b: Vec<f32> = (0..k * WIDE).map(|i| value(i + 3)).collect();
                    let bias: Vec<f32> = (0..n).map(|i| value(i + 7)).collect();
                    let tall = view(&a, TALL, k, ta);
                    let vb = View { cols: n, ..view(&b, k, WIDE, tb) };
                    let start: Vec<f32> = (0..TALL * n).map(|i| value(i + 5)).collect();
                    let mut into_tall = start.clone();
                    gemm_into(tall, vb, &mut into_tall, true);
                    let want =
                        [gemm_new(tall, vb, None), gemm_new(tall, vb, Some(&bias)), into_tall];
                    for m in 1..=8 {
                        let va = View { rows: m, ..tall };
                        let what = format!("{m}x{k}x{n} ta {ta} tb {tb}");
                        let got = gemm_new(va, vb, None);
                        assert_close(&got, &reference(&va, &vb), k, &what);
                        assert_eq!(bits(&got), bits(&want[0][..m * n]), "{what}");
                        let got = gemm_new(va, vb, Some(&bias));
                        assert_eq!(bits(&got), bits(&want[1][..m * n]), "{what}, bias");
                        let mut into = start[..m * n].to_vec();
                        gemm_into(va, vb, &mut into, true);
                        assert_eq!(bits(&into), bits(&want[2][..m * n]), "{what}, +=");
                    }
                }
            }
        }
        // Large enough to be split across two threads, by columns.
        let (m, k, n) = (2, 5000, 500);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
        let (va, vb) = (View::row_major(&a, m, k), View::row_major(&b, k, n));
        let mut one = vec![0.0; m * n];
        gemm_serial(va, vb, &mut one, false);
        assert_eq!(bits(&pool.install(|| gemm_new(va, vb, None))), bits(&one));
    }

    /// Split across threads, the same values as on one thread.
    #[test]
    fn threads_do_not_change_the_result() {
        let (m, k, n) = (300, 200, 260);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
        let (mut one, mut many) = (vec![0.0; m * n], vec![0.0; m * n]);
        gemm_serial(View::row_major(&a, m, k), View::row_major(&b, k, n), &mut one, false);
        gemm_into(View::row_major(&a, m, k), View::row_major(&b, k, n), &mut many, false);
        assert_eq!(one, many);
    }

    /// An A whose rows lie a cache-set period apart is copied into panels rather than read
    /// in place: the same bits as the same A at a stride read in place, with and without
    /// a bias, accumulating or not.
    #[test]
    fn rows_a_cache_set_period_apart_give_the_same_bits() {
        let (m, k, n) = (30, 1024, 300);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
        let mut padded = vec![f32::NAN; m * (k + 1)];
        for (row, src) in padded.chunks_mut(k + 1).zip(a.chunks(k)) {
            row[..k].copy_from_slice(src);
        }
        let aligned = View::row_major(&a, m, k);
        let apart = View { data: &padded, offset: 0, rows: m, cols: k, rs: k + 1, cs: 1 };
        let vb = View::row_major(&b, k, n);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let bias: Vec<f32> = (0..n).map(|i| value(i + 7)).collect();
        assert_eq!(
            bits(&gemm_new(aligned, vb, Some(&bias))),
            bits(&gemm_new(apart, vb, Some(&bias)))
        );
        let start: Vec<f32> = (0..m * n).map(|i| value(i + 5)).collect();
        let (mut one, mut other) = (start.clone(), start);
        gemm_serial(aligned, vb, &mut one, true);
        gemm_serial(apart, vb, &mut other, true);
        assert_eq!(bits(&one), bits(&other));
    }

    /// A fresh product with a bias row has the bits of the product accumulated into a C that
    /// held the bias (and without one, of the plain product), on one thread and split
    /// across two; the memory is written, never read (it starts as garbage that would show).
    #[test]
    fn fresh_products_with_a_bias_match_accumulating_onto_it() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 16, 13),
            (13, 0, 7),
            (33, 300, 17),
            (100, 257, 31),
            (6, 600, 1030),
            (700, 80, 64),
            // Split across two threads: by rows, by columns.
            (300, 200, 260),
            (64, 300, 400),
        ] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a: Vec<f32> = (0..m * k).map(value).collect();
                let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
                let bias: Vec<f32> = (0..n).map(|i| value(i + 7)).collect();
                let (va, vb) = (view(&a, m, k, ta), view(&b, k, n, tb));
                let mut with_bias: Vec<f32> = bias.iter().copied().cycle().take(m * n).collect();
                gemm_into(va, vb, &mut with_bias, true);
                let mut plain = vec![f32::NAN; m * n];
                gemm_into(va, vb, &mut plain, false);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for threads in [1, 2] {
                    let what = format!("{m}x{k}x{n} ta {ta} tb {tb}, {threads} threads");
                    let (fresh_bias, fresh) = if threads == 1 {
                        (gemm_new(va, vb, Some(&bias)), gemm_new(va, vb, None))
                    } else {
                        pool.install(|| (gemm_new(va, vb, Some(&bias)), gemm_new(va, vb, None)))
                    };
                    assert_eq!(bits(&fresh_bias), bits(&with_bias), "{what}, bias");
                    assert_eq!(bits(&fresh), bits(&plain), "{what}");
                }
            }
        }
        // f64, through the library.
        let (a, b) = ([1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0f64, -1.0, 2.0, 0.5, 0.0, 3.0]);
        let c = gemm_new(View::row_major(&a, 2, 3), View::row_major(&b, 3, 2), Some(&[10.0, 20.0]));
        assert_eq!(c, [10.0 + 5.0, 20.0 + 9.0, 10.0 + 14.0, 20.0 + 16.5]);
    }

    #[test]
    #[should_panic(expected = "gemm: operand shapes")]
    fn a_fresh_product_checks_its_bias() {
        let a = [1.0f32; 4];
        let _ = gemm_new(View::row_major(&a, 2, 2), View::row_major(&a, 2, 2), Some(&[1.0; 3]));
    }

    /// A batch into a fresh buffer: the same bits as into a zeroed one, for small products
    /// (one per task) and large ones (each split), on two threads.
    #[test]
    fn fresh_batches_match_the_batched_products() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for &(count, m, k, n) in &[(64, 64, 32, 64), (3, 300, 200, 260), (1, 7, 0, 5), (0, 4, 4, 4)]
        {
            let a: Vec<f32> = (0..count * m * k).map(value).collect();
            let b: Vec<f32> = (0..k * n).map(|i| value(i + 3)).collect();
            let views = |i: usize| {
                let ai = View { offset: i * m * k, ..View::row_major(&a, m, k) };
                (ai, View::row_major(&b, k, n))
            };
            let mut want = vec![0.0; count * m * n];
            pool.install(|| gemm_batched(count, views, &mut want));
            let got = pool.install(|| gemm_batched_new(count, views));
            assert_eq!(got, want, "{count} x {m}x{k}x{n}");
        }
    }
}
