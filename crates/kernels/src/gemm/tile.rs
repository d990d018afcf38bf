//! The register tile of the blocked product, written once over the vector operations of
//! [`crate::vectors`] and compiled per instruction set by [`register_tile!`].

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
            let beta_v = v::splat(beta);
            for i in 0..rows.min(ROWS) {
                for half in 0..HALVES {
                    // SAFETY: written above.
                    let sum = unsafe { v::load(sums.add(i * NR + v::LANES * half)) };
                    let lanes = cols.saturating_sub(v::LANES * half).min(v::LANES);
                    // A bias row (given only where beta is zero) is added once, as it would
                    // be to a C that held it with beta one: the same bits.
                    // SAFETY: the tile's first `lanes` columns of this half lie inside C
                    // (and the bias row, when there is one); masked-off lanes are neither
                    // read nor written. Only a partial vector takes the masked forms: AVX2's
                    // are slow on AMD cores.
                    unsafe {
                        let at = c.offset(i as isize * ldc + (v::LANES * half) as isize);
                        if lanes == v::LANES {
                            let value = if beta != 0.0 {
                                v::fmadd(beta_v, v::load(at), sum)
                            } else if bias.is_null() {
                                sum
                            } else {
                                v::add(sum, v::load(bias.add(v::LANES * half)))
                            };
                            v::store(at, value);
                        } else if lanes > 0 {
                            let mask = v::tail_mask(lanes);
                            let value = if beta != 0.0 {
                                v::fmadd(beta_v, v::load_masked(at, mask), sum)
                            } else if bias.is_null() {
                                sum
                            } else {
                                v::add(sum, v::load_masked(bias.add(v::LANES * half), mask))
                            };
                            v::store_masked(at, mask, value);
                        }
                    }
                }
            }
        }
    };
}

pub(super) use register_tile;
