//! The own f32 product's AVX-512 register tile and copies (the blocking is
//! [`super::blocked`]'s, the tile [`super::tile`]'s): a `12 x 32` tile of C in 24 of the 32
//! vector registers, and copies sixteen floats at a time, through 16 x 16 register
//! transposes where a copy turns rows into columns; for a product into a few columns (or,
//! transposed, into a few rows), A's rows transposed in registers straight into the sums
//! (`narrow_rows`).

use std::arch::x86_64::*;

use super::blocked::{Lines, Microkernel, Tile, copy_strided};
use super::tile::register_tile;
use crate::transpose::transpose16;

/// Rows of C in the register tile: each step of the kernel broadcasts one element of A per
/// row.
const MR: usize = 12;
/// Columns of C in the register tile: two vectors of sixteen.
const NR: usize = 32;

/// The AVX-512 kernel of the blocked product.
pub(super) struct Avx512;

impl Microkernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;

    unsafe fn tile(kc: usize, a: (*const f32, Option<isize>), b: *const f32, tile: Tile) {
        crate::simd::debug_assert_avx512_on();
        // SAFETY: forwarded from the caller.
        unsafe { run_kernel(kc, a, b, tile) }
    }

    unsafe fn few_rows(
        shape: (usize, usize, usize),
        a: (*const f32, isize, isize),
        b: (*const f32, isize),
        scale: (f32, *const f32),
        c: (*mut f32, isize),
    ) {
        crate::simd::debug_assert_avx512_on();
        // SAFETY: forwarded from the caller.
        unsafe { few_rows(shape, a, b, scale, c) }
    }

    unsafe fn pack_b(block: (usize, usize), b: (*const f32, isize, isize), dst: *mut f32) {
        // SAFETY: forwarded from the caller.
        unsafe { pack_b(block, b, dst) }
    }

    unsafe fn pack_a(block: (usize, usize), a: (*const f32, isize, isize), dst: *mut f32) {
        // SAFETY: forwarded from the caller.
        unsafe { pack_a(block, a, dst) }
    }

    unsafe fn narrow(
        (m, k, n): (usize, usize, usize),
        (a, rsa, csa): (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        ct: (*mut f32, isize),
        add_to_first: bool,
    ) -> bool {
        if csa != 1 || rsa <= 0 {
            return false;
        }
        let run = match n {
            1 => narrow_rows::<1>,
            2 => narrow_rows::<2>,
            3 => narrow_rows::<3>,
            4 => narrow_rows::<4>,
            5 => narrow_rows::<5>,
            6 => narrow_rows::<6>,
            7 => narrow_rows::<7>,
            8 => narrow_rows::<8>,
            _ => return false,
        };
        // SAFETY: forwarded from the caller; A's rows are `rsa` apart with adjacent steps.
        unsafe { run((m, k), (a, rsa), b, ct, add_to_first) };
        true
    }
}

/// [`Microkernel::narrow`] for `N` columns: sixteen rows of A at a time, each block of
/// sixteen steps loaded as rows and transposed in registers, so that step `p` is a vector of
/// the sixteen rows' elements; it is multiplied by `b[p, j]` into column `j`'s sums, one
/// multiply-add per step in order, restarted for each block of `KC` steps and added to the
/// total after it (the first block's to what `ct` holds, with `add_to_first`), as the
/// register tile sums `Cᵀ = Bᵀ Aᵀ` (the factors of each product swap, which changes no
/// rounding).
///
/// # Safety
/// The CPU must have AVX-512F; A's `m` rows of `k` floats are `lda` apart; B's `k x N`
/// elements at its strides are readable; `ct` holds `N` rows of `m` floats `ldct` apart.
#[target_feature(enable = "avx512f")]
unsafe fn narrow_rows<const N: usize>(
    (m, k): (usize, usize),
    (a, lda): (*const f32, isize),
    (b, rsb, csb): (*const f32, isize, isize),
    (ct, ldct): (*mut f32, isize),
    add_to_first: bool,
) {
    for i0 in (0..m).step_by(16) {
        let rows = (m - i0).min(16);
        let out: [*mut f32; N] =
            std::array::from_fn(|j| ct.wrapping_offset(j as isize * ldct + i0 as isize));
        let mut total = [_mm512_setzero_ps(); N];
        if add_to_first {
            for (t, at) in total.iter_mut().zip(out) {
                // SAFETY: row j of Cᵀ, columns i0.. (masked to the rows left).
                *t = unsafe { _mm512_maskz_loadu_ps(first_lanes(rows), at) };
            }
        }
        for pc in (0..k).step_by(super::blocked::KC) {
            let end = (pc + super::blocked::KC).min(k);
            let mut sums = [_mm512_setzero_ps(); N];
            for p0 in (pc..end).step_by(16) {
                let steps = (end - p0).min(16);
                let mask = first_lanes(steps);
                let lines: [__m512; 16] = std::array::from_fn(|r| {
                    if r < rows {
                        // SAFETY: steps p0.. of row i0 + r (masked to the steps left).
                        unsafe {
                            let row = a.offset((i0 + r) as isize * lda + p0 as isize);
                            _mm512_maskz_loadu_ps(mask, row)
                        }
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                for (q, step) in transpose16(lines).iter().take(steps).enumerate() {
                    let p = (p0 + q) as isize;
                    for (j, sum) in sums.iter_mut().enumerate() {
                        // SAFETY: element (p, j) of B.
                        let factor = unsafe { *b.offset(p * rsb + j as isize * csb) };
                        *sum = _mm512_fmadd_ps(*step, _mm512_set1_ps(factor), *sum);
                    }
                }
            }
            for (t, s) in total.iter_mut().zip(sums) {
                *t = if pc == 0 && !add_to_first { s } else { _mm512_add_ps(s, *t) };
            }
        }
        for (t, at) in total.into_iter().zip(out) {
            // SAFETY: row j of Cᵀ, columns i0.. (masked to the rows left).
            unsafe { _mm512_mask_storeu_ps(at, first_lanes(rows), t) };
        }
    }
}

/// The mask of the first `count` of sixteen lanes.
fn first_lanes(count: usize) -> __mmask16 {
    if count >= 16 { 0xffff } else { (1u16 << count) - 1 }
}

register_tile!("avx512f", avx512_f32, 4);

/// Copies a `kc x nc` block of B into panels of `NR` columns, each `kc` rows of `NR`
/// adjacent floats, columns past `nc` zero.
///
/// # Safety
/// The CPU must have AVX-512F; the block must lie inside B and `dst` hold
/// `kc x nc.next_multiple_of(NR)` floats, 64-byte aligned.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b((kc, nc): (usize, usize), (b, rs, cs): (*const f32, isize, isize), dst: *mut f32) {
    for jr in (0..nc).step_by(NR) {
        let cols = NR.min(nc - jr);
        // SAFETY: panel jr / NR starts `jr * kc` floats into dst.
        let panel = unsafe { dst.add(jr * kc) };
        let first_column = b.wrapping_offset(jr as isize * cs);
        if cs == 1 {
            // Rows of B are rows of the panel: two (masked) vectors per step.
            let masks = [first_lanes(cols), first_lanes(cols.saturating_sub(16))];
            for p in 0..kc {
                for (half, &mask) in masks.iter().enumerate() {
                    // The second half of a narrow last panel starts past the block (its
                    // mask is empty): a wrapping offset, since no element there is read.
                    let src = first_column.wrapping_offset(p as isize * rs + 16 * half as isize);
                    // SAFETY: the masked lanes are the block's columns jr.. of row p; a masked
                    // load touches only those.
                    unsafe {
                        _mm512_store_ps(
                            panel.add(p * NR + 16 * half),
                            _mm512_maskz_loadu_ps(mask, src),
                        );
                    }
                }
            }
        } else if rs == 1 {
            // Columns of B are adjacent along the shared dimension: each half of the panel
            // is sixteen such lines.
            for half in 0..2 {
                let lines = Lines {
                    first: first_column.wrapping_offset(16 * half as isize * cs),
                    across: cs,
                    count: cols.saturating_sub(16 * half).min(16),
                };
                // SAFETY: the lines are the block's columns; this half of the panel has `kc`
                // steps of sixteen floats, NR apart.
                unsafe { copy_transposed(kc, lines, panel.add(16 * half), NR, 0xffff) };
            }
        } else {
            let lines = Lines { first: first_column, across: cs, count: cols };
            // SAFETY: the lines are the block's columns; the panel has `kc` steps of NR.
            unsafe { copy_strided(kc, lines, rs, panel, NR) };
        }
    }
}

/// Copies an `mc x kc` block of A into panels of `MR` rows, each `kc` steps of `MR`
/// adjacent floats, rows past `mc` zero.
///
/// # Safety
/// The CPU must have AVX-512F; the block must lie inside A and `dst` hold
/// `mc.next_multiple_of(MR) x kc` floats.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a((mc, kc): (usize, usize), (a, rs, cs): (*const f32, isize, isize), dst: *mut f32) {
    let panel_lanes = first_lanes(MR);
    for ir in (0..mc).step_by(MR) {
        let rows = MR.min(mc - ir);
        // SAFETY: panel ir / MR starts `ir * kc` floats into dst.
        let panel = unsafe { dst.add(ir * kc) };
        let lines = Lines { first: a.wrapping_offset(ir as isize * rs), across: rs, count: rows };
        if rs == 1 {
            // Columns of A are the panel's steps: one masked vector each.
            let mask = first_lanes(rows);
            for p in 0..kc {
                // SAFETY: rows ir.. of column p of the block (masked); step p of the panel.
                unsafe {
                    let column = _mm512_maskz_loadu_ps(mask, lines.first.offset(p as isize * cs));
                    _mm512_mask_storeu_ps(panel.add(p * MR), panel_lanes, column);
                }
            }
        } else if cs == 1 {
            // SAFETY: the lines are the block's rows, adjacent along the shared dimension;
            // the panel has `kc` steps of MR.
            unsafe { copy_transposed(kc, lines, panel, MR, panel_lanes) };
        } else {
            // SAFETY: the lines are the block's rows; the panel has `kc` steps of MR.
            unsafe { copy_strided(kc, lines, cs, panel, MR) };
        }
    }
}

/// Copies `kc` steps of at most sixteen lines whose steps are adjacent, sixteen steps at a
/// time through a register transpose: step `p` of line `i` goes to lane `i` of
/// `dst + p * stride` (lanes outside `lanes` untouched, lines past `count` zero).
///
/// # Safety
/// The CPU must have AVX-512F; each line below `count` must hold `kc` readable floats;
/// `dst + p * stride` must hold the lanes of `lanes` for every step `p < kc`.
#[target_feature(enable = "avx512f")]
unsafe fn copy_transposed(kc: usize, lines: Lines, dst: *mut f32, stride: usize, lanes: __mmask16) {
    for p0 in (0..kc).step_by(16) {
        let steps = (kc - p0).min(16);
        let mask = first_lanes(steps);
        let vectors: [__m512; 16] = std::array::from_fn(|i| {
            if i < lines.count {
                // SAFETY: steps p0.. of line i (masked to the steps left).
                unsafe { _mm512_maskz_loadu_ps(mask, lines.start(i).add(p0)) }
            } else {
                _mm512_setzero_ps()
            }
        });
        for (q, step) in transpose16(vectors).iter().take(steps).enumerate() {
            // SAFETY: step p0 + q of the destination, the caller's lanes.
            unsafe { _mm512_mask_storeu_ps(dst.add((p0 + q) * stride), lanes, *step) };
        }
    }
}
