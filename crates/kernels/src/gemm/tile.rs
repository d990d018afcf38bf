//! The register tile of the blocked product, and the tiles of products into a few rows
//! that read B in place, written once over the vector operations of [`crate::vectors`] and
//! compiled per instruction set by [`register_tile!`].

/// Defines `run_kernel` (the tile for a corner of C: a full `MR x NR` one, or a smaller one
/// for the last rows and columns of a product rather than computing zeros) and `kernel`
/// (the tile itself) for the vector module `$ops`, compiled with `$feature`. Edge tiles
/// have `$step` or `2 $step` rows (`MR = 3 $step`) and one or two vectors.
macro_rules! register_tile {
    ($feature:literal, $ops:ident, $step:literal) => {
        /// The kernel for the tile's size. `a` is an A panel (`None`) or A's rows in place,
        /// `lda` apart.
        ///
        /// # Safety
        /// As [`kernel`].
        #[target_feature(enable = $feature)]
        unsafe fn run_kernel(
            kc: usize,
            a: (*const f32, Option<isize>),
            b: *const f32,
            tile: super::blocked::Tile,
        ) {
            const LANES: usize = crate::vectors::$ops::LANES;
            const _: () = assert!(MR == 3 * $step && NR == 2 * LANES);
            // SAFETY: forwarded from the caller.
            unsafe {
                match (a, tile.rows.div_ceil($step), tile.cols > LANES) {
                    ((a, None), 1, false) => kernel::<$step, 1, false>(kc, (a, 0), b, tile),
                    ((a, None), 2, false) => kernel::<{ 2 * $step }, 1, false>(kc, (a, 0), b, tile),
                    ((a, None), _, false) => kernel::<MR, 1, false>(kc, (a, 0), b, tile),
                    ((a, None), 1, true) => kernel::<$step, 2, false>(kc, (a, 0), b, tile),
                    ((a, None), 2, true) => kernel::<{ 2 * $step }, 2, false>(kc, (a, 0), b, tile),
                    ((a, None), _, true) => kernel::<MR, 2, false>(kc, (a, 0), b, tile),
                    ((a, Some(lda)), 1, false) => kernel::<$step, 1, true>(kc, (a, lda), b, tile),
                    ((a, Some(lda)), 2, false) => {
                        kernel::<{ 2 * $step }, 1, true>(kc, (a, lda), b, tile)
                    }
                    ((a, Some(lda)), _, false) => kernel::<MR, 1, true>(kc, (a, lda), b, tile),
                    ((a, Some(lda)), 1, true) => kernel::<$step, 2, true>(kc, (a, lda), b, tile),
                    ((a, Some(lda)), 2, true) => {
                        kernel::<{ 2 * $step }, 2, true>(kc, (a, lda), b, tile)
                    }
                    ((a, Some(lda)), _, true) => kernel::<MR, 2, true>(kc, (a, lda), b, tile),
                }
            }
        }

        /// The register tile of `ROWS x HALVES` vectors (at most `MR x NR`): `kc` steps,
        /// each one row of a B panel (one or two vectors) times one column of A (a broadcast
        /// per row), then `c = acc + beta c` (or `acc + bias` with a bias row) on the tile's
        /// corner of C. A is an A panel (`IN_PLACE` false: step `p` of row `i` at
        /// `a[p * MR + i]`) or A's own rows (`IN_PLACE`: at `a[i * lda + p]`).
        ///
        /// # Safety
        /// The CPU must have the instruction set; `a` holds `kc x MR` floats (a panel) or
        /// the tile's rows of `kc` floats `lda` apart (in place), and `b` `kc x NR`; the
        /// tile's corner lies inside C, accessed by no one else; a bias row holds the
        /// tile's columns. With beta zero and no bias, C is only written.
        #[target_feature(enable = $feature)]
        unsafe fn kernel<const ROWS: usize, const HALVES: usize, const IN_PLACE: bool>(
            kc: usize,
            (a, lda): (*const f32, isize),
            b: *const f32,
            tile: super::blocked::Tile,
        ) {
            use crate::vectors::$ops as v;
            // Rows of an A read in place: past the tile's last row, that row again
            // (computed, never stored).
            let rows_at: [isize; ROWS] =
                std::array::from_fn(|i| i.min(tile.rows - 1) as isize * lda);
            let mut acc = [[v::zero(); HALVES]; ROWS];
            for p in 0..kc {
                // SAFETY: step p of both panels lies inside them.
                unsafe {
                    let b_row: [v::Vector; HALVES] =
                        std::array::from_fn(|half| v::load(b.add(p * NR + v::LANES * half)));
                    // Constant trip counts: the loops unroll and `acc` stays in registers.
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = if IN_PLACE {
                            v::splat(*a.add(p).offset(rows_at[i]))
                        } else {
                            v::splat(*a.add(p * MR + i))
                        };
                        for (sum, &bv) in row.iter_mut().zip(&b_row) {
                            *sum = v::fmadd(ai, bv, *sum);
                        }
                    }
                }
            }
            // The sums leave their registers in loops of constant length, into a buffer the
            // stores below read: indexed by the tile's row count, a run-time number, the
            // accumulator array itself would be kept in memory, and every step of the loop
            // above would store all of it.
            let mut sums = std::mem::MaybeUninit::<[f32; MR * NR]>::uninit();
            let sums = sums.as_mut_ptr().cast::<f32>();
            for (i, row) in acc.iter().enumerate() {
                for (half, &sum) in row.iter().enumerate() {
                    // SAFETY: row i's half lies inside the buffer (ROWS <= MR, HALVES
                    // vectors <= NR).
                    unsafe { v::store(sums.add(i * NR + v::LANES * half), sum) };
                }
            }
            let super::blocked::Tile { rows, cols, c, ldc, beta, bias } = tile;
            for i in 0..rows.min(ROWS) {
                for half in 0..HALVES {
                    // SAFETY: written above.
                    let sum = unsafe { v::load(sums.add(i * NR + v::LANES * half)) };
                    let lanes = cols.saturating_sub(v::LANES * half).min(v::LANES);
                    let at = c.wrapping_offset(i as isize * ldc + (v::LANES * half) as isize);
                    let bias = super::blocked::bias_from(bias, v::LANES * half);
                    // SAFETY: the tile's first `lanes` columns of this half lie inside C
                    // (and the bias row, when there is one).
                    unsafe { finish(at, sum, (beta, bias), lanes) };
                }
            }
        }

        /// `c = sum + beta c` (or `sum + bias`, or `sum`) on the first `lanes` elements from
        /// `at` (none for zero lanes): how every sum of a block of the shared dimension
        /// reaches C. A bias row (given only where beta is zero) is added once, as it would
        /// be to a C that held it with beta one: the same bits.
        ///
        /// # Safety
        /// The CPU must have the instruction set; `lanes` (at most `LANES`) elements from
        /// `at` (and, when `bias` is not null, from `bias`) are valid and used by no one
        /// else; `at` is read only when beta is not zero.
        #[inline]
        #[target_feature(enable = $feature)]
        unsafe fn finish(
            at: *mut f32,
            sum: crate::vectors::$ops::Vector,
            (beta, bias): (f32, *const f32),
            lanes: usize,
        ) {
            use crate::vectors::$ops as v;
            // SAFETY: the caller's lanes; masked-off lanes are neither read nor written.
            // Only a partial vector takes the masked forms: AVX2's are slow on AMD cores.
            unsafe {
                if lanes == v::LANES {
                    let value = if beta != 0.0 {
                        v::fmadd(v::splat(beta), v::load(at), sum)
                    } else if bias.is_null() {
                        sum
                    } else {
                        v::add(sum, v::load(bias))
                    };
                    v::store(at, value);
                } else if lanes > 0 {
                    let mask = v::tail_mask(lanes);
                    let value = if beta != 0.0 {
                        v::fmadd(v::splat(beta), v::load_masked(at, mask), sum)
                    } else if bias.is_null() {
                        sum
                    } else {
                        v::add(sum, v::load_masked(bias, mask))
                    };
                    v::store_masked(at, mask, value);
                }
            }
        }

        /// [`super::blocked::Microkernel::few_rows`]: C's rows (one to four) as one tile
        /// per run of columns, up to `WIDE` vectors of them, whose steps are B's rows read
        /// where they are.
        ///
        /// # Safety
        /// As `few_rows`.
        #[target_feature(enable = $feature)]
        unsafe fn few_rows(
            (m, k, n): (usize, usize, usize),
            a: (*const f32, isize, isize),
            b: (*const f32, isize),
            scale: (f32, *const f32),
            c: (*mut f32, isize),
        ) {
            debug_assert!((1..=4).contains(&m), "few_rows takes one to four rows, not {m}");
            // As many sums as fit in the registers beside a row of B's vectors.
            let wide = crate::vectors::$ops::LANES == 16;
            // SAFETY: forwarded from the caller.
            unsafe {
                match (m, wide) {
                    (1, _) => rows_in_place::<1, 8>((k, n), a, b, scale, c),
                    (2, true) => rows_in_place::<2, 8>((k, n), a, b, scale, c),
                    (2, false) => rows_in_place::<2, 4>((k, n), a, b, scale, c),
                    (3, true) => rows_in_place::<3, 4>((k, n), a, b, scale, c),
                    (3, false) => rows_in_place::<3, 2>((k, n), a, b, scale, c),
                    (_, true) => rows_in_place::<4, 4>((k, n), a, b, scale, c),
                    (_, false) => rows_in_place::<4, 2>((k, n), a, b, scale, c),
                }
            }
        }

        /// `ROWS` rows of C from B's rows in place, a block of `KC` steps at a time (so that
        /// B is read block by block, each row whole): in each, runs of `WIDE` vectors of
        /// columns, then of fewer (four, two, one), then a partial vector.
        ///
        /// # Safety
        /// As `few_rows`, with `ROWS` rows.
        #[target_feature(enable = $feature)]
        unsafe fn rows_in_place<const ROWS: usize, const WIDE: usize>(
            (k, n): (usize, usize),
            (a, rsa, csa): (*const f32, isize, isize),
            (b, ldb): (*const f32, isize),
            (beta, bias): (f32, *const f32),
            (c, ldc): (*mut f32, isize),
        ) {
            use super::blocked::{KC, bias_from};
            const LANES: usize = crate::vectors::$ops::LANES;
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let a = (a.wrapping_offset(pc as isize * csa), rsa, csa);
                let b = b.wrapping_offset(pc as isize * ldb);
                // Later blocks add to what the first wrote (the bias with it).
                let (beta, bias) = if pc == 0 { (beta, bias) } else { (1.0, std::ptr::null()) };
                let mut j = 0;
                let at = |j: usize| (b.wrapping_add(j), ldb, c.wrapping_add(j), bias_from(bias, j));
                while n - j >= WIDE * LANES {
                    // SAFETY: the block's rows of B and steps of A; columns j.. of B, C (and the
                    // bias row) lie inside them, as many as the run covers.
                    unsafe { columns::<ROWS, WIDE, false>(kc, a, at(j), beta, ldc, LANES) };
                    j += WIDE * LANES;
                }
                if WIDE > 4 && n - j >= 4 * LANES {
                    // SAFETY: the block's rows of B and steps of A; columns j.. of B, C (and the
                    // bias row) lie inside them, as many as the run covers.
                    unsafe { columns::<ROWS, 4, false>(kc, a, at(j), beta, ldc, LANES) };
                    j += 4 * LANES;
                }
                if WIDE > 2 && n - j >= 2 * LANES {
                    // SAFETY: the block's rows of B and steps of A; columns j.. of B, C (and the
                    // bias row) lie inside them, as many as the run covers.
                    unsafe { columns::<ROWS, 2, false>(kc, a, at(j), beta, ldc, LANES) };
                    j += 2 * LANES;
                }
                if n - j >= LANES {
                    // SAFETY: the block's rows of B and steps of A; columns j.. of B, C (and the
                    // bias row) lie inside them, as many as the run covers.
                    unsafe { columns::<ROWS, 1, false>(kc, a, at(j), beta, ldc, LANES) };
                    j += LANES;
                }
                if j < n {
                    // SAFETY: the block's rows of B and steps of A; columns j.. of B, C (and the
                    // bias row) lie inside them, as many as the run covers.
                    unsafe { columns::<ROWS, 1, true>(kc, a, at(j), beta, ldc, n - j) };
                }
            }
        }

        /// `VECTORS` vectors of columns of `ROWS` rows of C (with `MASKED`, one vector of
        /// `lanes` columns) after one block of `kc` steps, summed as the register tile sums
        /// them: from zero, one multiply-add per step, then [`finish`]ed into C. Step `p`
        /// loads row `p` of B's columns and broadcasts `a[i, p]`.
        ///
        /// # Safety
        /// The CPU must have the instruction set; A's `ROWS x kc` elements at its strides
        /// are readable; B's `kc` rows `ldb` apart hold the columns from `b`, C's `ROWS`
        /// rows `ldc` apart those from `c` (and the bias row, when not null, those from
        /// `bias`); beta is zero where there is a bias.
        #[inline]
        #[target_feature(enable = $feature)]
        unsafe fn columns<const ROWS: usize, const VECTORS: usize, const MASKED: bool>(
            kc: usize,
            (a, rsa, csa): (*const f32, isize, isize),
            (b, ldb, c, bias): (*const f32, isize, *mut f32, *const f32),
            beta: f32,
            ldc: isize,
            lanes: usize,
        ) {
            use crate::vectors::$ops as v;
            let mask = v::tail_mask(lanes);
            let mut acc = [[v::zero(); VECTORS]; ROWS];
            for p in 0..kc {
                // SAFETY: row p of B's columns (masked to the lanes asked for); step p of
                // A's rows.
                unsafe {
                    let row = b.offset(p as isize * ldb);
                    let b_row: [v::Vector; VECTORS] = std::array::from_fn(|q| {
                        if MASKED {
                            v::load_masked(row.add(q * v::LANES), mask)
                        } else {
                            v::load(row.add(q * v::LANES))
                        }
                    });
                    for (i, sums) in acc.iter_mut().enumerate() {
                        let ai = v::splat(*a.offset(i as isize * rsa + p as isize * csa));
                        for (sum, &bv) in sums.iter_mut().zip(&b_row) {
                            *sum = v::fmadd(ai, bv, *sum);
                        }
                    }
                }
            }
            for (i, sums) in acc.iter().enumerate() {
                for (q, &sum) in sums.iter().enumerate() {
                    let at = c.wrapping_offset(i as isize * ldc + (q * v::LANES) as isize);
                    let bias = super::blocked::bias_from(bias, q * v::LANES);
                    let lanes = if MASKED { lanes } else { v::LANES };
                    // SAFETY: these columns of row i lie inside C (and the bias row).
                    unsafe { finish(at, sum, (beta, bias), lanes) };
                }
            }
        }
    };
}

pub(super) use register_tile;
