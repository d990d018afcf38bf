//! Matrix transposition, for the convolution kernels that compute a product with pixels as
//! rows and store it as channel planes (or the reverse).
//!
//! Element by element, a transposition writes (or reads) one stream per column; on f32 with
//! AVX-512, 16 x 16 tiles go through registers instead: sixteen loads, four rounds of
//! two-source permutes and sixteen stores move 256 elements (with AVX2, 8 x 8 tiles in
//! three rounds).

use std::mem::MaybeUninit;

/// Element types with a transposition.
pub trait Transpose: Copy {
    /// `dst[c * rows + r] = src[r * cols + c]` for `r < rows`, `c < cols`.
    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        assert!(
            src.len() >= rows * cols && dst.len() >= rows * cols,
            "transpose: slices too short"
        );
        let dst = as_uninit(dst);
        let (from, to) =
            (RowMajorAt { start: 0, row_stride: cols }, RowMajorAt { start: 0, row_stride: rows });
        transpose_into(src, from, rows, cols, dst, to);
    }
}

impl Transpose for f64 {}

impl Transpose for f32 {}

/// `dst` as slots to overwrite: `MaybeUninit<T>` has `T`'s layout, and only initialised
/// values are written through the result (safe code cannot do otherwise), so `dst` stays
/// initialised.
pub(crate) fn as_uninit<T>(dst: &mut [T]) -> &mut [MaybeUninit<T>] {
    // SAFETY: same layout; writes through the result store initialised values only.
    unsafe { &mut *(dst as *mut [T] as *mut [MaybeUninit<T>]) }
}

/// Where a matrix lies in a slice: row `r` starts at `start + r * row_stride`, and the
/// elements of a row are adjacent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowMajorAt {
    /// Where row 0 starts.
    pub(crate) start: usize,
    /// Elements from the start of one row to the start of the next.
    pub(crate) row_stride: usize,
}

/// Writes the transpose of the `rows x cols` matrix at `from` in `src` as the `cols x rows`
/// matrix at `to` in `dst`: `dst[to.start + c * to.row_stride + r] = src[from.start +
/// r * from.row_stride + c]`. Any element type: four-byte elements (f32, i32) move through
/// vector registers in square tiles where the CPU has AVX2 or AVX-512, others in small
/// blocks that keep both streams in cache.
///
/// ```ignore
/// // The 2 x 3 matrix at offset 1 of `src` (rows 4 apart), written at offset 0 of `dst`.
/// let src = [0, 1, 2, 3, 0, 4, 5, 6];
/// let mut dst = [MaybeUninit::new(0); 6];
/// let from = RowMajorAt { start: 1, row_stride: 4 };
/// transpose_into(&src, from, 2, 3, &mut dst, RowMajorAt { start: 0, row_stride: 2 });
/// let dst: Vec<i32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
/// assert_eq!(dst, [1, 4, 2, 5, 3, 6]);
/// ```
///
/// # Panics
/// If either matrix reaches past the end of its slice.
pub(crate) fn transpose_into<T: Copy>(
    src: &[T],
    from: RowMajorAt,
    rows: usize,
    cols: usize,
    dst: &mut [MaybeUninit<T>],
    to: RowMajorAt,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        from.start + (rows - 1) * from.row_stride + cols <= src.len(),
        "transpose: the {rows} x {cols} source matrix at {from:?} reaches past {} elements",
        src.len()
    );
    assert!(
        to.start + (cols - 1) * to.row_stride + rows <= dst.len(),
        "transpose: the {cols} x {rows} destination at {to:?} reaches past {} elements",
        dst.len()
    );
    let (src, dst) = (src[from.start..].as_ptr(), dst[to.start..].as_mut_ptr().cast::<T>());
    let (ss, ds) = (from.row_stride, to.row_stride);
    #[cfg(target_arch = "x86_64")]
    if size_of::<T>() == size_of::<f32>() {
        // Four-byte elements are moved as f32 bit patterns: loads, permutes and stores
        // never interpret them.
        let (src, dst) = (src.cast::<f32>(), dst.cast::<f32>());
        if crate::simd::avx512_enabled() {
            // SAFETY: the CPU has AVX-512F; both matrices lie in their slices (checked).
            return unsafe { tiled(src, ss, rows, cols, dst, ds, 16, tile16) };
        }
        if crate::simd::avx2_enabled() {
            // SAFETY: the CPU has AVX2; both matrices lie in their slices (checked).
            return unsafe { tiled(src, ss, rows, cols, dst, ds, 8, tile8) };
        }
    }
    // SAFETY: both matrices lie in their slices (checked above).
    unsafe { blocked(src, ss, (0, rows), (0, cols), dst, ds) }
}

/// The transposition in `side x side` tiles moved by `tile`, and the edges they leave
/// element by element.
///
/// # Safety
/// The CPU must run `tile`, which must move one `side x side` tile; the source rows
/// (`rows` of `cols`, `ss` apart) and destination rows (`cols` of `rows`, `ds` apart) must
/// lie in valid memory.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn tiled(
    src: *const f32,
    ss: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    ds: usize,
    side: usize,
    tile: unsafe fn(*const f32, usize, *mut f32, usize),
) {
    let (tiled_rows, tiled_cols) = (rows / side * side, cols / side * side);
    // SAFETY: the CPU runs `tile`; the tile's rows r..r + side and columns c..c + side lie
    // inside both matrices (the caller's promise).
    let one =
        |r: usize, c: usize| unsafe { tile(src.add(r * ss + c), ss, dst.add(c * ds + r), ds) };
    // The longer rows, of the source or of the destination, are walked one band of `side`
    // rows at a time from start to end: `side` sequential streams through memory that the
    // hardware prefetcher follows, where the other order would touch every long row in turn.
    if rows > cols {
        for c in (0..tiled_cols).step_by(side) {
            for r in (0..tiled_rows).step_by(side) {
                one(r, c);
            }
        }
    } else {
        for r in (0..tiled_rows).step_by(side) {
            for c in (0..tiled_cols).step_by(side) {
                one(r, c);
            }
        }
    }
    // The edges the tiles leave: the last columns of every row, then the last rows.
    // SAFETY: sub-matrices of the caller's.
    unsafe {
        blocked(src, ss, (0, tiled_rows), (tiled_cols, cols), dst, ds);
        blocked(src, ss, (tiled_rows, rows), (0, cols), dst, ds);
    }
}

/// The transposition of rows `r0..r1` and columns `c0..c1`, element by element in 8 x 8
/// blocks (so that each block's eight destination rows stay in cache while it is written).
///
/// # Safety
/// The source rows (`ss` apart) and destination rows (`ds` apart) of the block must lie in
/// valid memory.
unsafe fn blocked<T: Copy>(
    src: *const T,
    ss: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
    dst: *mut T,
    ds: usize,
) {
    const B: usize = 8;
    for rb in (r0..r1).step_by(B) {
        for cb in (c0..c1).step_by(B) {
            for r in rb..(rb + B).min(r1) {
                for c in cb..(cb + B).min(c1) {
                    // SAFETY: inside both matrices (the caller's promise).
                    unsafe { *dst.add(c * ds + r) = *src.add(r * ss + c) };
                }
            }
        }
    }
}

/// One 8 x 8 tile through AVX registers: row `i` of the tile at `src + i * src_stride`,
/// column `i` written to `dst + i * dst_stride`.
///
/// # Safety
/// The CPU must have AVX2, and the 8 rows of 8 elements at both ends must be valid.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile8(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees 8 readable rows of 8 values at src.
    let rows: [__m256; 8] =
        std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * src_stride)) });
    for (i, column) in transpose8(rows).iter().enumerate() {
        // SAFETY: the caller guarantees 8 writable rows of 8 values at dst.
        unsafe { _mm256_storeu_ps(dst.add(i * dst_stride), *column) };
    }
}

/// The transpose of eight vectors of eight floats: `out[j]` lane `i` is `rows[i]` lane `j`.
/// Pairs of rows are interleaved element by element, then pairs of pairs two elements at a
/// time, then the 128-bit halves swapped.
///
/// ```ignore
/// let t = transpose8(rows); // t[j][i] == rows[i][j]
/// ```
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn transpose8(rows: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    // Rows a..h: [a0 b0 a1 b1 | a4 b4 a5 b5], [a2 b2 a3 b3 | a6 b6 a7 b7], ...
    let pairs: [__m256; 8] = std::array::from_fn(|i| {
        let (x, y) = (rows[i / 2 * 2], rows[i / 2 * 2 + 1]);
        if i % 2 == 0 { _mm256_unpacklo_ps(x, y) } else { _mm256_unpackhi_ps(x, y) }
    });
    // [a0 b0 c0 d0 | a4 b4 c4 d4] for columns 0 and 4, and so on, from pairs of pairs.
    let quads: [__m256; 8] = std::array::from_fn(|i| {
        let (block, which) = (i / 4, i % 4);
        let (x, y) = (pairs[block * 4 + which / 2], pairs[block * 4 + which / 2 + 2]);
        if which % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(x, y)
        } else {
            _mm256_shuffle_ps::<0xEE>(x, y)
        }
    });
    std::array::from_fn(|j| {
        let (low, high) = (quads[j % 4], quads[j % 4 + 4]);
        if j < 4 {
            _mm256_permute2f128_ps::<0x20>(low, high)
        } else {
            _mm256_permute2f128_ps::<0x31>(low, high)
        }
    })
}

/// One 16 x 16 tile: row `i` of the tile at `src + i * src_stride`, column `i` written to
/// `dst + i * dst_stride`.
///
/// # Safety
/// The CPU must have AVX-512F, and the 16 rows of 16 elements at both ends must be valid.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    crate::simd::debug_assert_avx512_on();
    // SAFETY: the caller guarantees 16 readable rows of 16 values at src.
    let rows: [__m512; 16] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
    for (i, row) in transpose16(rows).iter().enumerate() {
        // SAFETY: the caller guarantees 16 writable rows of 16 values at dst.
        unsafe { _mm512_storeu_ps(dst.add(i * dst_stride), *row) };
    }
}

/// The transpose of a 16 x 16 tile held in registers: row `i` of the result is column `i`
/// of `rows`.
///
/// Each round pairs rows `r` and `r + h` (h = 8, 4, 2, 1) and interleaves their blocks of
/// `h` elements: the first takes the even blocks of both, the second the odd ones. After
/// the four rounds row `i` holds column `i` (the 2 x 2 case is one round: [a0 b0], [a1 b1]).
///
/// ```ignore
/// let t = transpose16(rows); // t[j][i] == rows[i][j]
/// ```
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn transpose16(
    mut rows: [std::arch::x86_64::__m512; 16],
) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    /// Lane `j` of the result takes block `j / h` of the pair: from the first row when the
    /// block is even, the second (indices 16..) when odd; `odd` picks the odd source blocks.
    const fn indices(h: usize, odd: bool) -> [i32; 16] {
        let mut out = [0i32; 16];
        let mut j = 0;
        while j < 16 {
            let (block, within) = (j / h, j % h);
            let source = (block & !1) + odd as usize;
            out[j] = (source * h + within + if block % 2 == 1 { 16 } else { 0 }) as i32;
            j += 1;
        }
        out
    }
    // Every row index is a constant, so the sixteen rows stay in registers.
    macro_rules! round {
        ($rows:ident, $h:literal: $(($a:literal, $b:literal))*) => {{
            const EVEN: [i32; 16] = indices($h, false);
            const ODD: [i32; 16] = indices($h, true);
            // SAFETY: reading 16 i32 from a 16-element array.
            let (even, odd) = unsafe { (_mm512_loadu_si512(EVEN.as_ptr().cast()), _mm512_loadu_si512(ODD.as_ptr().cast())) };
            $(
                let (a, b) = ($rows[$a], $rows[$b]);
                $rows[$a] = _mm512_permutex2var_ps(a, even, b);
                $rows[$b] = _mm512_permutex2var_ps(a, odd, b);
            )*
        }};
    }
    round!(rows, 8: (0, 8) (1, 9) (2, 10) (3, 11) (4, 12) (5, 13) (6, 14) (7, 15));
    round!(rows, 4: (0, 4) (1, 5) (2, 6) (3, 7) (8, 12) (9, 13) (10, 14) (11, 15));
    round!(rows, 2: (0, 2) (1, 3) (4, 6) (5, 7) (8, 10) (9, 11) (12, 14) (13, 15));
    round!(rows, 1: (0, 1) (2, 3) (4, 5) (6, 7) (8, 9) (10, 11) (12, 13) (14, 15));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiled and edge paths against the definition, over shapes with and without edges.
    #[test]
    fn transposes_match_the_definition() {
        for (rows, cols) in [
            (1, 1),
            (16, 16),
            (32, 16),
            (16, 48),
            (196, 32),
            (196, 16),
            (16, 784),
            (17, 33),
            (5, 40),
            (40, 5),
            (8, 8),
            (9, 24),
            (14, 10),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            f32::transpose(&src, rows, cols, &mut dst);
            // The AVX2 tiles too, whichever path the CPU takes above.
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                let mut by_eights = vec![f32::NAN; rows * cols];
                // SAFETY: the CPU has AVX2; both slices hold rows * cols elements.
                unsafe {
                    tiled(src.as_ptr(), cols, rows, cols, by_eights.as_mut_ptr(), rows, 8, tile8)
                };
                assert_eq!(by_eights, dst, "8 x 8 tiles, {rows}x{cols}");
            }
            let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
            let mut dst64 = vec![f64::NAN; rows * cols];
            f64::transpose(&src64, rows, cols, &mut dst64);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "f32 {rows}x{cols} at ({r}, {c})"
                    );
                    assert_eq!(
                        dst64[c * rows + r],
                        src64[r * cols + c],
                        "f64 {rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
