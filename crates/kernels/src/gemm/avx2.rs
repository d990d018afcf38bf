//! The own f32 product's AVX2 register tile and copies (the blocking is
//! [`super::blocked`]'s, the tile [`super::tile`]'s), for CPUs without AVX-512: a `6 x 16`
//! tile of C in 12 of the 16 vector registers (two for a row of B, one for a broadcast of
//! A), and copies eight floats at a time, through 8 x 8 register transposes where a copy
//! turns rows into columns.
//!
//! AVX2's masked loads and stores are many times slower than plain ones on AMD cores, so
//! the partial panels of the copies go element by element instead.

use std::arch::x86_64::*;

use super::blocked::{Lines, Microkernel, Tile, copy_strided};
use super::tile::register_tile;
use crate::transpose::transpose8;

/// Rows of C in the register tile.
const MR: usize = 6;
/// Columns of C in the register tile: two vectors of eight.
const NR: usize = 16;
/// Floats per vector.
const LANES: usize = 8;

/// The AVX2 kernel of the blocked product.
pub(super) struct Avx2;

impl Microkernel for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;

    unsafe fn tile(kc: usize, a: (*const f32, Option<isize>), b: *const f32, tile: Tile) {
        crate::simd::debug_assert_avx2_on();
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
        crate::simd::debug_assert_avx2_on();
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
}

register_tile!("avx2,fma", avx2_f32, 2);

/// Copies a `kc x nc` block of B into panels of `NR` columns, each `kc` rows of `NR`
/// adjacent floats, columns past `nc` zero.
///
/// # Safety
/// The CPU must have AVX2 and FMA; the block must lie inside B and `dst` hold
/// `kc x nc.next_multiple_of(NR)` floats, 64-byte aligned.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b((kc, nc): (usize, usize), (b, rs, cs): (*const f32, isize, isize), dst: *mut f32) {
    for jr in (0..nc).step_by(NR) {
        let cols = NR.min(nc - jr);
        // SAFETY: panel jr / NR starts `jr * kc` floats into dst.
        let panel = unsafe { dst.add(jr * kc) };
        let first_column = b.wrapping_offset(jr as isize * cs);
        if cs == 1 && cols == NR {
            // Rows of B are rows of the panel: two vectors per step.
            for p in 0..kc {
                // SAFETY: columns jr..jr + 16 of row p lie inside the block; step p of the
                // panel is 64-byte aligned.
                unsafe {
                    let src = first_column.offset(p as isize * rs);
                    _mm256_store_ps(panel.add(p * NR), _mm256_loadu_ps(src));
                    _mm256_store_ps(panel.add(p * NR + LANES), _mm256_loadu_ps(src.add(LANES)));
                }
            }
        } else if rs == 1 {
            // Columns of B are adjacent along the shared dimension: each half of the panel
            // is eight such lines.
            for half in 0..2 {
                let lines = Lines {
                    first: first_column.wrapping_offset((LANES * half) as isize * cs),
                    across: cs,
                    count: cols.saturating_sub(LANES * half).min(LANES),
                };
                // SAFETY: the lines are the block's columns; this half of the panel has `kc`
                // steps of eight floats, NR apart.
                unsafe { copy_transposed(kc, lines, panel.add(LANES * half), NR) };
            }
        } else {
            // A narrow last panel of a row-major B, or a generally strided one.
            let lines = Lines { first: first_column, across: cs, count: cols };
            // SAFETY: the lines are the block's columns; the panel has `kc` steps of NR.
            unsafe { copy_strided(kc, lines, rs, panel, NR) };
        }
    }
}

/// Copies an `mc x kc` block of A into panels of `MR` rows, each `kc` steps of `MR`
/// adjacent floats, rows past `mc` zero. (A row-major A is read in place, never copied.)
///
/// # Safety
/// The CPU must have AVX2 and FMA; the block must lie inside A and `dst` hold
/// `mc.next_multiple_of(MR) x kc` floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_a((mc, kc): (usize, usize), (a, rs, cs): (*const f32, isize, isize), dst: *mut f32) {
    for ir in (0..mc).step_by(MR) {
        let rows = MR.min(mc - ir);
        // SAFETY: panel ir / MR starts `ir * kc` floats into dst.
        let panel = unsafe { dst.add(ir * kc) };
        let first = a.wrapping_offset(ir as isize * rs);
        if rs == 1 && rows == MR {
            // Columns of A are the panel's steps: six adjacent floats each.
            for p in 0..kc {
                // SAFETY: rows ir..ir + 6 of column p lie inside the block; step p of the
                // panel holds six floats.
                unsafe {
                    let column = first.offset(p as isize * cs).cast::<[f32; MR]>();
                    panel.add(p * MR).cast::<[f32; MR]>().write_unaligned(column.read_unaligned());
                }
            }
        } else {
            let lines = Lines { first, across: rs, count: rows };
            // SAFETY: the lines are the block's rows; the panel has `kc` steps of MR.
            unsafe { copy_strided(kc, lines, cs, panel, MR) };
        }
    }
}

/// Copies `kc` steps of at most eight lines whose steps are adjacent, eight steps at a time
/// through a register transpose: step `p` of line `i` goes to `dst[p * stride + i]` for
/// `i < 8` (lines past `count` zero).
///
/// # Safety
/// The CPU must have AVX2 and FMA; each line below `count` must hold `kc` readable floats;
/// `dst + p * stride` must hold eight floats for every step `p < kc`.
#[target_feature(enable = "avx2,fma")]
unsafe fn copy_transposed(kc: usize, lines: Lines, dst: *mut f32, stride: usize) {
    let whole = kc / LANES * LANES;
    for p0 in (0..whole).step_by(LANES) {
        let vectors: [__m256; LANES] = std::array::from_fn(|i| {
            if i < lines.count {
                // SAFETY: steps p0..p0 + 8 of line i (p0 + 8 <= kc).
                unsafe { _mm256_loadu_ps(lines.start(i).add(p0)) }
            } else {
                _mm256_setzero_ps()
            }
        });
        for (q, step) in transpose8(vectors).iter().enumerate() {
            // SAFETY: step p0 + q of the destination.
            unsafe { _mm256_storeu_ps(dst.add((p0 + q) * stride), *step) };
        }
    }
    for p in whole..kc {
        for i in 0..LANES {
            // SAFETY: step p of line i (when it exists); step p of the destination.
            unsafe {
                *dst.add(p * stride + i) =
                    if i < lines.count { *lines.start(i).add(p) } else { 0.0 };
            }
        }
    }
}
