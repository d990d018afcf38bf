//! Products too small to repay the blocked product's copies into panels (the per-sample
//! 3 x 3 transforms of a batch, a matrix-vector product per sample, a layer of a few units
//! in f64): every element of C is one chain of fused multiply-adds along the shared
//! dimension, read from A and B where they lie, with a block of C's chains interleaved so
//! that each add's latency hides behind the others'.
//!
//! The chains run in blocks of [`KC`] steps from zero and end as the register tile's sums do
//! (`acc + beta c` fused, or `acc + bias`; later blocks add to what the first wrote), so an
//! f32 element has the bits the blocked product would give it.

use std::mem::MaybeUninit;

use super::blocked::KC;

/// Fused multiply-add, which compiles to one instruction inside a function built with FMA.
pub(super) trait Fused: crate::Real {
    /// `self * a + b` with one rounding.
    fn fused(self, a: Self, b: Self) -> Self;
}

impl Fused for f32 {
    #[inline(always)]
    fn fused(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

impl Fused for f64 {
    #[inline(always)]
    fn fused(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
}

/// `c = a b + beta c` (or `a b + bias` with a bias row and beta zero; C is not read when
/// beta is zero) for an `m x k` A and a `k x n` B at the given strides, into C with rows
/// `ldc` apart and adjacent columns.
///
/// # Safety
/// The CPU must have AVX2 and FMA; every element the strides reach from `a` and `b` must be
/// valid, C's elements valid for writes (and reads when beta is not zero) and accessed by no
/// one else during the call; `bias` is null or points to `n` floats.
pub(super) unsafe fn product<T: Fused>(
    shape: (usize, usize, usize),
    a: (*const T, isize, isize),
    b: (*const T, isize, isize),
    scale: (T, *const T),
    c: (*mut T, isize),
) {
    debug_assert!(std::arch::is_x86_feature_detected!("fma"));
    // SAFETY: forwarded from the caller.
    unsafe { product_fma(shape, a, b, scale, c) }
}

/// Elements of B a product may copy row-major (on the stack): all of B in any product that
/// takes this kernel with four rows or more (fewer than 4,096 multiply-adds).
const COPIED_B: usize = 1024;

/// [`product`], compiled with FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn product_fma<T: Fused>(
    shape: (usize, usize, usize),
    a: (*const T, isize, isize),
    b: (*const T, isize, isize),
    scale: (T, *const T),
    c: (*mut T, isize),
) {
    let (m, k, n) = shape;
    // A B whose rows are not adjacent (`Wᵀ` or `yᵀ` of a gradient) is copied row-major first
    // when several rows of A will read it: the copy costs an element once, where the
    // strided reads would keep the chains in scalars.
    let mut copy = [const { MaybeUninit::<T>::uninit() }; COPIED_B];
    let b = if b.2 != 1 && m >= 4 && n >= 4 && k * n <= COPIED_B {
        for p in 0..k {
            for j in 0..n {
                // SAFETY: element (p, j) of B (the caller's guarantee); the copy holds `k x n`.
                unsafe {
                    copy.get_unchecked_mut(p * n + j)
                        .write(*b.0.offset(p as isize * b.1 + j as isize * b.2))
                };
            }
        }
        (copy.as_ptr().cast::<T>(), n as isize, 1)
    } else {
        b
    };
    let csb = b.2;
    // Blocks of `R x W` chains, few enough that their sums and operands stay in registers.
    // Where B's rows are adjacent, blocks of eight (then four) columns read them as one run,
    // which the compiler turns into vector loads and multiply-adds (each lane its own
    // chain).
    // SAFETY: forwarded from the caller.
    unsafe {
        if n == 1 && m <= 4 {
            blocks::<T, 4, 1, false>(shape, a, b, scale, c, (0, 1));
        } else if n == 1 {
            blocks::<T, 8, 1, false>(shape, a, b, scale, c, (0, 1));
        } else if m == 1 {
            let wide = if csb == 1 { n / 8 * 8 } else { 0 };
            blocks::<T, 1, 8, true>(shape, a, b, scale, c, (0, wide));
            blocks::<T, 1, 8, false>(shape, a, b, scale, c, (wide, n));
        } else {
            let wide = if csb == 1 { n / 8 * 8 } else { 0 };
            let half = if csb == 1 && n - wide >= 4 { wide + 4 } else { wide };
            blocks::<T, 4, 8, true>(shape, a, b, scale, c, (0, wide));
            blocks::<T, 4, 4, true>(shape, a, b, scale, c, (wide, half));
            blocks::<T, 4, 2, false>(shape, a, b, scale, c, (half, n));
        }
    }
}

/// Columns `first..end` of C in blocks of `R` rows and `W` columns. A block at C's edge
/// runs its missing rows and columns on copies of the last ones (so every chain in the
/// block reads valid elements and the loops keep their fixed bounds), and writes only its
/// own. With `ADJACENT` (B's columns one apart, and `end - first` a multiple of `W`), a
/// block's columns are read as one run.
///
/// # Safety
/// As [`product`]; `first..end` lies inside C's columns.
#[inline(always)]
unsafe fn blocks<T: Fused, const R: usize, const W: usize, const ADJACENT: bool>(
    (m, k, _): (usize, usize, usize),
    (a, rsa, csa): (*const T, isize, isize),
    (b, rsb, csb): (*const T, isize, isize),
    (beta, bias): (T, *const T),
    (c, ldc): (*mut T, isize),
    (first, end): (usize, usize),
) {
    if m == 0 || first >= end {
        return;
    }
    let csb = if ADJACENT { 1 } else { csb };
    // Plain loops rather than `step_by`, whose bookkeeping cost as much as a 3 x 3
    // product's arithmetic.
    let mut i0 = 0;
    while i0 < m {
        let rows: [isize; R] = std::array::from_fn(|r| (i0 + r).min(m - 1) as isize * rsa);
        let mut j0 = first;
        while j0 < end {
            let columns: [isize; W] = std::array::from_fn(|j| (j0 + j).min(end - 1) as isize * csb);
            // At least one block, so that an empty shared dimension still writes C.
            let mut p0 = 0;
            loop {
                let steps = KC.min(k - p0);
                let a = a.wrapping_offset(p0 as isize * csa);
                let b = b.wrapping_offset(p0 as isize * rsb);
                // SAFETY: the chains read rows below `m` and columns below `end` of the block
                // of the shared dimension from `p0`, inside A and B (the caller's guarantee).
                let sums = unsafe { chains::<T, R, W>(steps, (a, rows, csa), (b, columns, rsb)) };
                // Later blocks add to what the first wrote (the bias with it).
                let (beta, bias) = if p0 == 0 { (beta, bias) } else { (T::ONE, std::ptr::null()) };
                for (r, row) in sums.iter().enumerate().take(m - i0) {
                    for (j, &sum) in row.iter().enumerate().take(end - j0) {
                        // SAFETY: element (i0 + r, j0 + j) lies inside C, j0 + j inside the
                        // bias row; C is read only when beta is not zero.
                        unsafe {
                            let at = c.offset((i0 + r) as isize * ldc + (j0 + j) as isize);
                            let value = if beta != T::ZERO {
                                beta.fused(*at, sum)
                            } else if bias.is_null() {
                                sum
                            } else {
                                sum + *bias.add(j0 + j)
                            };
                            at.write(value);
                        }
                    }
                }
                p0 += KC;
                if p0 >= k {
                    break;
                }
            }
            j0 += W;
        }
        i0 += R;
    }
}

/// `steps` multiply-adds for each of `R x W` chains, from zero: chain `(r, j)` runs along
/// the A row at `a + rows[r]` (steps `csa` apart) and the B column at `b + columns[j]`
/// (steps `rsb` apart).
///
/// # Safety
/// Every row and column named must hold `steps` readable elements at those strides.
#[inline(always)]
unsafe fn chains<T: Fused, const R: usize, const W: usize>(
    steps: usize,
    (a, rows, csa): (*const T, [isize; R], isize),
    (b, columns, rsb): (*const T, [isize; W], isize),
) -> [[T; W]; R] {
    let mut sums = [[T::ZERO; W]; R];
    for p in 0..steps as isize {
        // SAFETY: step p of each row and column (the caller's guarantee).
        let x: [T; R] = std::array::from_fn(|r| unsafe { *a.offset(rows[r] + p * csa) });
        // SAFETY: as above.
        let y: [T; W] = std::array::from_fn(|j| unsafe { *b.offset(columns[j] + p * rsb) });
        for r in 0..R {
            for j in 0..W {
                sums[r][j] = x[r].fused(y[j], sums[r][j]);
            }
        }
    }
    sums
}
