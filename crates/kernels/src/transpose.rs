//! Matrix transposition, for the convolution kernels that compute a product with pixels as
//! rows and store it as channel planes (or the reverse).
//!
//! Element by element, a transposition writes (or reads) one stream per column; on f32 with
//! AVX-512, 16 x 16 tiles go through registers instead: sixteen loads, four rounds of
//! two-source permutes and sixteen stores move 256 elements.

/// Element types with a transposition.
pub trait Transpose: Copy {
    /// `dst[c * rows + r] = src[r * cols + c]` for `r < rows`, `c < cols`.
    fn transpose(src: &[Self], rows: usize, cols: usize, dst: &mut [Self]) {
        transpose_scalar(src, (0, rows), (0, cols), rows, cols, dst);
    }
}

impl Transpose for f64 {}

impl Transpose for f32 {
    fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
        assert!(
            src.len() >= rows * cols && dst.len() >= rows * cols,
            "transpose: slices too short"
        );
        #[cfg(target_arch = "x86_64")]
        if crate::simd::avx512_enabled() {
            let (tiled_rows, tiled_cols) = (rows / 16 * 16, cols / 16 * 16);
            for r in (0..tiled_rows).step_by(16) {
                for c in (0..tiled_cols).step_by(16) {
                    // SAFETY: the CPU has AVX-512F; the tile's rows r..r + 16 and columns
                    // c..c + 16 lie inside both matrices (checked lengths above).
                    unsafe {
                        tile16(
                            src.as_ptr().add(r * cols + c),
                            cols,
                            dst.as_mut_ptr().add(c * rows + r),
                            rows,
                        )
                    };
                }
            }
            // The edges the tiles leave: the last columns of every row, then the last rows.
            transpose_scalar(src, (0, tiled_rows), (tiled_cols, cols), rows, cols, dst);
            transpose_scalar(src, (tiled_rows, rows), (0, cols), rows, cols, dst);
            return;
        }
        transpose_scalar(src, (0, rows), (0, cols), rows, cols, dst);
    }
}

/// The element-by-element transposition of rows `r0..r1` and columns `c0..c1`.
fn transpose_scalar<T: Copy>(
    src: &[T],
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
    rows: usize,
    cols: usize,
    dst: &mut [T],
) {
    for r in r0..r1 {
        for c in c0..c1 {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
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
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            f32::transpose(&src, rows, cols, &mut dst);
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
