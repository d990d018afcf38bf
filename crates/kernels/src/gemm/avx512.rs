//! The f32 matrix product on CPUs with AVX-512, in the usual blocked form: a block of B is
//! copied into panels of [`NR`] columns and a block of A into panels of [`MR`] rows, each in
//! the order the inner kernel reads it, and the kernel keeps an `MR x NR` tile of C in
//! registers (24 of the 32 vector registers) while it runs along the shared dimension. A
//! row-major A is not copied: the kernel broadcasts from its rows where they are.
//!
//! Why not `matrixmultiply` for everything: it copies a row-major A, and a column-major B,
//! one element at a time, and those are the layouts of `x Wᵀ` and `dy W`, the products of
//! every linear layer forward and backward. Here every other layout but a general strided
//! one is copied sixteen elements at a time, through 16 x 16 register transposes where the
//! copy turns rows into columns.

use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::transpose::transpose16;

/// Rows of C in the register tile: each step of the kernel broadcasts one element of A per
/// row.
const MR: usize = 12;
/// Columns of C in the register tile: two vectors of sixteen.
const NR: usize = 32;
/// Length of the shared dimension per block: a panel of B (`KC x NR`, 32 KiB) stays in the
/// first-level cache while the panels of A pass it.
const KC: usize = 256;
/// Rows of A per block (a multiple of `MR`): the copied block stays in the second-level
/// cache.
const MC: usize = 120;
/// Columns of B per block: the copied block (1 MiB) stays in the second-level cache.
const NC: usize = 1024;

/// A cache line of floats: the copy buffers are made of these so the kernel's vector loads
/// of B are aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

thread_local! {
    /// The copies of A's and B's blocks, kept per thread between products.
    static BUFFERS: RefCell<(Vec<Line>, Vec<Line>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A pointer to at least `len` floats of `buffer`, grown if needed.
fn floats(buffer: &mut Vec<Line>, len: usize) -> *mut f32 {
    let lines = len.div_ceil(16);
    if buffer.len() < lines {
        buffer.resize(lines, Line([0.0; 16]));
    }
    buffer.as_mut_ptr().cast()
}

/// The mask of the first `count` of sixteen lanes.
fn first_lanes(count: usize) -> __mmask16 {
    if count >= 16 { 0xffff } else { (1u16 << count) - 1 }
}

/// `c = a b + beta c` for an `m x k` A and a `k x n` B at the given strides (in elements),
/// into a C whose rows are `ldc` apart and whose elements in a row are adjacent. When
/// `beta` is zero, C is not read.
///
/// # Safety
/// The CPU must have AVX-512F; every element the strides reach from `a`, `b` and `c` must
/// be valid, and `c`'s elements must not be accessed by anyone else during the call.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    beta: f32,
    c: (*mut f32, isize),
) {
    crate::simd::debug_assert_avx512_on();
    // SAFETY: forwarded from the caller.
    unsafe { product((m, k, n), a, Right::Strided(b), beta, c) }
}

/// [`sgemm`] with B already in panels ([`pack_whole`]): the same blocks, kernel and order of
/// sums, so the same bits, without the copy.
///
/// # Safety
/// As [`sgemm`] for A and C; A has `panels.k` columns.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgemm_packed(
    m: usize,
    a: (*const f32, isize, isize),
    panels: &Panels,
    beta: f32,
    c: (*mut f32, isize),
) {
    crate::simd::debug_assert_avx512_on();
    // SAFETY: forwarded from the caller.
    unsafe { product((m, panels.k, panels.n), a, Right::Packed(panels), beta, c) }
}

/// A whole `k x n` B copied into panels, block by block in the order [`product`] visits
/// them: block `(jc, pc)` (columns from `jc`, shared dimension from `pc`) at
/// [`block_offset`].
pub(super) struct Panels {
    k: usize,
    n: usize,
    data: Vec<Line>,
}

/// Where block `(jc, pc)` of a `k x n` B starts among its panels: the blocks of earlier
/// column ranges are `NC` wide, and each block is `kc` steps of its width rounded up to
/// whole panels.
fn block_offset((k, n): (usize, usize), jc: usize, pc: usize) -> usize {
    jc * k + pc * NC.min(n - jc).next_multiple_of(NR)
}

/// Copies a whole `k x n` B into panels, for products that reuse it; `None` for an empty B
/// or one whose panels' size (`k` rows of `n` rounded up to whole panels) overflows.
///
/// # Safety
/// The CPU must have AVX-512F; every element the strides reach from `b` must be valid.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_whole(
    (k, n): (usize, usize),
    (b, rsb, csb): (*const f32, isize, isize),
) -> Option<Panels> {
    crate::simd::debug_assert_avx512_on();
    let floats = n.checked_next_multiple_of(NR)?.checked_mul(k).filter(|&f| f > 0)?;
    let mut data = vec![Line([0.0; 16]); floats.div_ceil(16)];
    let dst = data.as_mut_ptr().cast::<f32>();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // SAFETY: the block lies inside B; its panels end at or before the next block's
            // offset, inside `data` (k x n rounded up to whole panels).
            unsafe {
                let block = b.offset(pc as isize * rsb + jc as isize * csb);
                pack_b((kc, nc), (block, rsb, csb), dst.add(block_offset((k, n), jc, pc)))
            };
        }
    }
    Some(Panels { k, n, data })
}

/// B as a product reads it: strided, copied block by block, or already in panels.
enum Right<'a> {
    Strided((*const f32, isize, isize)),
    Packed(&'a Panels),
}

/// The blocked product behind [`sgemm`] and [`sgemm_packed`].
///
/// # Safety
/// As [`sgemm`].
#[target_feature(enable = "avx512f")]
unsafe fn product(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (*const f32, isize, isize),
    right: Right<'_>,
    beta: f32,
    (c, ldc): (*mut f32, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: forwarded from the caller.
        return unsafe { scale((m, n), beta, c, ldc) };
    }
    BUFFERS.with(|buffers| {
        // A product never runs inside another on the same thread; should it, it copies into
        // buffers of its own.
        let mut own = (Vec::new(), Vec::new());
        let mut borrowed = buffers.try_borrow_mut();
        let (a_buffer, b_buffer) = match borrowed.as_deref_mut() {
            Ok(pair) => pair,
            Err(_) => &mut own,
        };
        // An A whose rows are adjacent along the shared dimension (the activations of
        // `x Wᵀ` and `dy W`) is read where it is: its copy would be a transposition, and
        // the kernel reads a tile's twelve rows from the first-level cache either way.
        let in_place = csa == 1 && rsa > 0;
        let a_pack = floats(a_buffer, MC.min(m.next_multiple_of(MR)) * KC);
        let b_pack = match right {
            Right::Strided(_) => floats(b_buffer, KC * NC.min(n.next_multiple_of(NR))),
            Right::Packed(_) => std::ptr::null_mut(),
        };
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                // Later blocks of the shared dimension add to what the first wrote.
                let beta = if pc == 0 { beta } else { 1.0 };
                let b_panels: *const f32 = match right {
                    Right::Strided((b, rsb, csb)) => {
                        // SAFETY: the block lies inside B (the caller's guarantee for the
                        // whole product); the buffer holds `kc x nc` floats rounded up to
                        // whole panels.
                        unsafe {
                            let block = b.offset(pc as isize * rsb + jc as isize * csb);
                            pack_b((kc, nc), (block, rsb, csb), b_pack)
                        };
                        b_pack
                    }
                    // SAFETY: `pack_whole` wrote this block there.
                    Right::Packed(panels) => unsafe {
                        panels.data.as_ptr().cast::<f32>().add(block_offset((k, n), jc, pc))
                    },
                };
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let block = a.wrapping_offset(ic as isize * rsa + pc as isize * csa);
                    if !in_place {
                        // SAFETY: as for B.
                        unsafe { pack_a((mc, kc), (block, rsa, csa), a_pack) };
                    }
                    for ir in (0..mc).step_by(MR) {
                        for jr in (0..nc).step_by(NR) {
                            let tile = Tile {
                                rows: MR.min(mc - ir),
                                cols: NR.min(nc - jr),
                                c: c.wrapping_offset((ic + ir) as isize * ldc + (jc + jr) as isize),
                                ldc,
                                beta,
                            };
                            let a_panel = if in_place {
                                (block.wrapping_offset(ir as isize * rsa), Some(rsa))
                            } else {
                                (a_pack.wrapping_add(ir * kc).cast_const(), None)
                            };
                            // SAFETY: the panels were written above with `kc` steps each
                            // (or A's rows are read in place: the tile's rows of the block
                            // lie inside A); the tile's rows and columns lie inside C.
                            unsafe { run_kernel(kc, a_panel, b_panels.add(jr * kc), tile) };
                        }
                    }
                }
            }
        }
    })
}

/// `c = beta c` (zero when `beta` is zero, whatever C held), for a product with an empty
/// shared dimension.
///
/// # Safety
/// As [`sgemm`]'s C.
unsafe fn scale((m, n): (usize, usize), beta: f32, c: *mut f32, ldc: isize) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) lies inside C.
            unsafe {
                let at = c.offset(i as isize * ldc + j as isize);
                *at = if beta == 0.0 { 0.0 } else { beta * *at };
            }
        }
    }
}

/// Where the kernel writes: a `rows x cols` corner (at most `MR x NR`) of C at `c`.
struct Tile {
    rows: usize,
    cols: usize,
    c: *mut f32,
    ldc: isize,
    beta: f32,
}

/// The kernel for the tile's size: a corner of C narrower or shorter than the full tile
/// (the last rows or columns of a product) takes a kernel with fewer registers rather than
/// computing zeros. `a` is an A panel (`None`) or A's rows in place, `lda` apart.
///
/// # Safety
/// As [`kernel`].
#[target_feature(enable = "avx512f")]
unsafe fn run_kernel(kc: usize, a: (*const f32, Option<isize>), b: *const f32, tile: Tile) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (a, tile.rows.div_ceil(4), tile.cols > 16) {
            ((a, None), 1, false) => kernel::<4, 1, false>(kc, (a, 0), b, tile),
            ((a, None), 2, false) => kernel::<8, 1, false>(kc, (a, 0), b, tile),
            ((a, None), _, false) => kernel::<MR, 1, false>(kc, (a, 0), b, tile),
            ((a, None), 1, true) => kernel::<4, 2, false>(kc, (a, 0), b, tile),
            ((a, None), 2, true) => kernel::<8, 2, false>(kc, (a, 0), b, tile),
            ((a, None), _, true) => kernel::<MR, 2, false>(kc, (a, 0), b, tile),
            ((a, Some(lda)), 1, false) => kernel::<4, 1, true>(kc, (a, lda), b, tile),
            ((a, Some(lda)), 2, false) => kernel::<8, 1, true>(kc, (a, lda), b, tile),
            ((a, Some(lda)), _, false) => kernel::<MR, 1, true>(kc, (a, lda), b, tile),
            ((a, Some(lda)), 1, true) => kernel::<4, 2, true>(kc, (a, lda), b, tile),
            ((a, Some(lda)), 2, true) => kernel::<8, 2, true>(kc, (a, lda), b, tile),
            ((a, Some(lda)), _, true) => kernel::<MR, 2, true>(kc, (a, lda), b, tile),
        }
    }
}

/// The register tile of `ROWS x 16 HALVES` (at most `MR x NR`): `kc` steps, each one row of
/// a B panel (one or two vectors) times one column of A (a broadcast per row), then
/// `c = acc + beta c` on the tile's corner of C. A is an A panel (`IN_PLACE` false: step
/// `p` of row `i` at `a[p * MR + i]`) or A's own rows (`IN_PLACE`: at `a[i * lda + p]`).
///
/// # Safety
/// The CPU must have AVX-512F; `a` holds `kc x MR` floats (a panel) or the tile's rows of
/// `kc` floats `lda` apart (in place), and `b` `kc x NR` (64-byte aligned); the tile's
/// corner (at most `ROWS x 16 HALVES`) lies inside C, accessed by no one else.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const ROWS: usize, const HALVES: usize, const IN_PLACE: bool>(
    kc: usize,
    (a, lda): (*const f32, isize),
    b: *const f32,
    tile: Tile,
) {
    // Rows of an A read in place: past the tile's last row, that row again (computed,
    // never stored).
    let rows_at: [isize; ROWS] = std::array::from_fn(|i| i.min(tile.rows - 1) as isize * lda);
    let mut acc = [[_mm512_setzero_ps(); HALVES]; ROWS];
    for p in 0..kc {
        // SAFETY: step p of both panels lies inside them; B's rows are 128 bytes apart from
        // an aligned start.
        unsafe {
            let b_row: [__m512; HALVES] =
                std::array::from_fn(|half| _mm512_load_ps(b.add(p * NR + 16 * half)));
            // Constant trip counts: the loops unroll and `acc` stays in registers.
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = if IN_PLACE {
                    _mm512_set1_ps(*a.add(p).offset(rows_at[i]))
                } else {
                    _mm512_set1_ps(*a.add(p * MR + i))
                };
                for (sum, &bv) in row.iter_mut().zip(&b_row) {
                    *sum = _mm512_fmadd_ps(ai, bv, *sum);
                }
            }
        }
    }
    let Tile { rows, cols, c, ldc, beta } = tile;
    let masks = [first_lanes(cols), first_lanes(cols.saturating_sub(16))];
    let beta_v = _mm512_set1_ps(beta);
    for (i, row) in acc.iter().enumerate() {
        if i == rows {
            break;
        }
        for (half, &sum) in row.iter().enumerate() {
            let mask = masks[half];
            // SAFETY: the masked lanes are the tile's columns inside C; masked-off lanes are
            // neither read nor written.
            unsafe {
                let at = c.offset(i as isize * ldc + 16 * half as isize);
                let value = if beta == 0.0 {
                    sum
                } else {
                    _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask, at), sum)
                };
                _mm512_mask_storeu_ps(at, mask, value);
            }
        }
    }
}

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

/// The rows of A or columns of B that one panel copies: line `i < count` starts at
/// `first + i * across`.
#[derive(Clone, Copy)]
struct Lines {
    first: *const f32,
    across: isize,
    count: usize,
}

impl Lines {
    /// Where line `i` starts (computed without a promise to stay inside the operand: only
    /// lines below `count` are read).
    fn start(self, i: usize) -> *const f32 {
        self.first.wrapping_offset(i as isize * self.across)
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

/// Copies `kc` steps of lines whose steps are `along` apart, one element at a time: step
/// `p` of line `i` goes to `dst[p * width + i]` for `i < width` (lines past `count` zero).
///
/// # Safety
/// Each line below `count` must hold `kc` readable floats `along` apart; `dst` must hold
/// `kc x width` floats.
unsafe fn copy_strided(kc: usize, lines: Lines, along: isize, dst: *mut f32, width: usize) {
    for p in 0..kc {
        for i in 0..width {
            let value = if i < lines.count {
                // SAFETY: step p of line i.
                unsafe { *lines.start(i).offset(p as isize * along) }
            } else {
                0.0
            };
            // SAFETY: inside the destination.
            unsafe { *dst.add(p * width + i) = value };
        }
    }
}
