//! Dense linear algebra on one matrix at a time, in f64 (an f32 tensor's matrices are
//! widened first: the work is cubic in the size, the conversion quadratic): the Cholesky
//! factor of a symmetric positive-definite matrix, the solution of a triangular system,
//! and the LU factorization with partial pivoting behind general solves, inverses and
//! determinants. Rows are row-major and contiguous; a system's right-hand sides are the
//! columns of `B`, updated a row at a time so the inner loops run along contiguous rows.
//! The Cholesky factor and the triangular solves go in blocks of 64 rows, whose
//! interactions with the rows finished before are one matrix product each (the own GEMM
//! kernels, on the threads).

use crate::gemm::{View, gemm_new};

/// Rows (and columns) handled at a time: the work between blocks is a matrix product.
const BLOCK: usize = 64;

/// Where a Cholesky factorization stopped: the leading minor of this order (1-based) is
/// not positive (or is NaN).
///
/// ```
/// use tapegrad_kernels::linalg::cholesky;
/// assert_eq!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).unwrap_err().order, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPositiveDefinite {
    /// The order of the first leading minor that is not positive.
    pub order: usize,
}

/// The lower-triangular `L` with `L Lᵀ = A` of the `n x n` matrix `a`, read from its
/// lower triangle only (as LAPACK's `potrf`); the upper triangle of `L` is zero.
///
/// ```
/// use tapegrad_kernels::linalg::cholesky;
/// let l = cholesky(&[4.0, 2.0, 2.0, 5.0], 2).unwrap();
/// assert_eq!(l, vec![2.0, 0.0, 1.0, 2.0]);
/// ```
pub fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>, NotPositiveDefinite> {
    assert_eq!(a.len(), n * n, "cholesky: {} elements for a {n} x {n} matrix", a.len());
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        l[i * n..=i * n + i].copy_from_slice(&a[i * n..=i * n + i]);
    }
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        if start > 0 {
            // The block's columns, on and below the diagonal, less the products of the rows'
            // finished columns: one matrix product, most of the work.
            let rows =
                View { data: &l, offset: start * n, rows: n - start, cols: start, rs: n, cs: 1 };
            let block = View { rows: end - start, ..rows };
            let update = gemm_new(rows, block.t(), None);
            for (r, products) in update.chunks_exact(end - start).enumerate() {
                let i = start + r;
                let width = (i + 1).min(end) - start;
                for (x, p) in l[i * n + start..i * n + start + width].iter_mut().zip(products) {
                    *x -= p;
                }
            }
        }
        for i in start..n {
            for j in start..(i + 1).min(end) {
                let dot: f64 = (start..j).map(|p| l[i * n + p] * l[j * n + p]).sum();
                let s = l[i * n + j] - dot;
                if i == j {
                    // NaN stops here too.
                    if s <= 0.0 || s.is_nan() {
                        return Err(NotPositiveDefinite { order: i + 1 });
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
    }
    Ok(l)
}

/// Overwrites the `n x k` matrix `b` with `X`, the solution of `A X = B` for the `n x n`
/// triangular `a` (its `upper` or lower triangle read, the other ignored; with
/// `unit_diagonal`, its diagonal taken as ones and not read). A zero on the diagonal gives
/// infinities and NaN, as LAPACK's `trsm`.
///
/// ```
/// use tapegrad_kernels::linalg::solve_triangular;
/// let a = [2.0, 0.0, 1.0, 4.0]; // lower: [[2, 0], [1, 4]]
/// let mut b = [2.0, 9.0]; // one right-hand side
/// solve_triangular(&a, &mut b, 2, 1, false, false);
/// assert_eq!(b, [1.0, 2.0]);
/// ```
pub fn solve_triangular(
    a: &[f64],
    b: &mut [f64],
    n: usize,
    k: usize,
    upper: bool,
    unit_diagonal: bool,
) {
    assert_eq!(a.len(), n * n, "solve_triangular: {} elements for a {n} x {n} matrix", a.len());
    assert_eq!(b.len(), n * k, "solve_triangular: {} elements for {n} x {k} right sides", b.len());
    if k == 0 {
        return;
    }
    if n <= BLOCK {
        return solve_block(a, b, n, k, 0, n, upper, unit_diagonal);
    }
    let mut blocks: Vec<(usize, usize)> =
        (0..n).step_by(BLOCK).map(|start| (start, (start + BLOCK).min(n))).collect();
    if upper {
        blocks.reverse();
    }
    for (start, end) in blocks {
        // The rows solved before this block: above it for a lower A, below for an upper.
        let (solved, rows, first_solved) = if upper {
            let (head, tail) = b.split_at_mut(end * k);
            (&*tail, &mut head[start * k..], end)
        } else {
            let (head, tail) = b.split_at_mut(start * k);
            (&*head, &mut tail[..(end - start) * k], 0)
        };
        let count = solved.len() / k;
        if count > 0 {
            // Their share of the block's rows, as one matrix product.
            let coefficients = View {
                data: a,
                offset: start * n + first_solved,
                rows: end - start,
                cols: count,
                rs: n,
                cs: 1,
            };
            let update = gemm_new(coefficients, View::row_major(solved, count, k), None);
            rows.iter_mut().zip(&update).for_each(|(x, p)| *x -= p);
        }
        solve_block(a, rows, n, k, start, end, upper, unit_diagonal);
    }
}

/// Rows `start..end` of `X` from what is left of `B` there once the rows solved earlier
/// are taken out: substitution within the block's own triangle.
#[allow(clippy::too_many_arguments)]
fn solve_block(
    a: &[f64],
    rows: &mut [f64],
    n: usize,
    k: usize,
    start: usize,
    end: usize,
    upper: bool,
    unit_diagonal: bool,
) {
    let mut solve_row = |i: usize, solved: &mut dyn Iterator<Item = usize>| {
        // Row i of X: (what is left of row i of B - sum of A[i][j] times row j of X) / A[i][i].
        let local = i - start;
        for j in solved {
            let coefficient = a[i * n + j];
            let other = j - start;
            let (row_i, row_j) = if local < other {
                let (head, tail) = rows.split_at_mut(other * k);
                (&mut head[local * k..local * k + k], &tail[..k])
            } else {
                let (head, tail) = rows.split_at_mut(local * k);
                (&mut tail[..k], &head[other * k..other * k + k])
            };
            for (x, &y) in row_i.iter_mut().zip(row_j) {
                *x -= coefficient * y;
            }
        }
        if !unit_diagonal {
            let pivot = a[i * n + i];
            rows[local * k..local * k + k].iter_mut().for_each(|x| *x /= pivot);
        }
    };
    if upper {
        for i in (start..end).rev() {
            solve_row(i, &mut (i + 1..end));
        }
    } else {
        for i in start..end {
            solve_row(i, &mut (start..i));
        }
    }
}

/// `P A = L U` of a square matrix, with partial pivoting (LAPACK's `getrf`): `L` unit
/// lower-triangular and `U` upper-triangular, packed into one matrix.
///
/// ```
/// use tapegrad_kernels::linalg::Lu;
/// let lu = Lu::factor(&[0.0, 2.0, 3.0, 4.0], 2); // rows swapped: det = -6
/// assert_eq!(lu.det(), -6.0);
/// let mut b = [4.0, 11.0]; // A x = b for x = [1, 2]
/// lu.solve(&mut b, 1);
/// assert_eq!(b, [1.0, 2.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Lu {
    factors: Vec<f64>,
    /// Row `i` of `P A` is row `rows[i]` of `A`.
    rows: Vec<usize>,
    odd_swaps: bool,
    n: usize,
}

impl Lu {
    /// Factors the `n x n` matrix `a`. A singular matrix factors too, with a zero on `U`'s
    /// diagonal ([`Lu::is_singular`]).
    ///
    /// ```
    /// assert!(tapegrad_kernels::linalg::Lu::factor(&[1.0, 2.0, 2.0, 4.0], 2).is_singular());
    /// ```
    pub fn factor(a: &[f64], n: usize) -> Lu {
        assert_eq!(a.len(), n * n, "lu: {} elements for a {n} x {n} matrix", a.len());
        let mut f = a.to_vec();
        let mut rows: Vec<usize> = (0..n).collect();
        let mut odd_swaps = false;
        for j in 0..n {
            // The largest magnitude in column j at or below the diagonal (NaN never wins).
            let pivot =
                (j..n).fold(
                    j,
                    |best, i| {
                        if f[i * n + j].abs() > f[best * n + j].abs() { i } else { best }
                    },
                );
            if pivot != j {
                for c in 0..n {
                    f.swap(j * n + c, pivot * n + c);
                }
                rows.swap(j, pivot);
                odd_swaps = !odd_swaps;
            }
            let diagonal = f[j * n + j];
            if diagonal == 0.0 {
                continue; // the column is zero below: nothing to eliminate
            }
            let (upper, lower) = f.split_at_mut((j + 1) * n);
            let pivot_row = &upper[j * n + j + 1..j * n + n];
            for row in lower.chunks_exact_mut(n) {
                let factor = row[j] / diagonal;
                row[j] = factor;
                for (x, &p) in row[j + 1..].iter_mut().zip(pivot_row) {
                    *x -= factor * p;
                }
            }
        }
        Lu { factors: f, rows, odd_swaps, n }
    }

    /// Whether `U` has a zero on its diagonal: the matrix has no inverse.
    ///
    /// ```
    /// assert!(!tapegrad_kernels::linalg::Lu::factor(&[2.0], 1).is_singular());
    /// ```
    pub fn is_singular(&self) -> bool {
        (0..self.n).any(|i| self.factors[i * self.n + i] == 0.0)
    }

    /// The determinant: the product of `U`'s diagonal, negated for an odd number of swaps.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::linalg::Lu::factor(&[2.0, 1.0, 1.0, 3.0], 2).det(), 5.0);
    /// ```
    pub fn det(&self) -> f64 {
        let product: f64 = (0..self.n).map(|i| self.factors[i * self.n + i]).product();
        if self.odd_swaps { -product } else { product }
    }

    /// The determinant as a sign (-1, 0 or 1) and the logarithm of its magnitude (`-inf`
    /// for a singular matrix), which neither overflows nor underflows.
    ///
    /// ```
    /// let (sign, log) = tapegrad_kernels::linalg::Lu::factor(&[0.0, 1.0, 1.0, 0.0], 2).log_abs_det();
    /// assert_eq!((sign, log), (-1.0, 0.0));
    /// ```
    pub fn log_abs_det(&self) -> (f64, f64) {
        let mut sign = if self.odd_swaps { -1.0 } else { 1.0 };
        let mut log = 0.0;
        for i in 0..self.n {
            let d = self.factors[i * self.n + i];
            if d == 0.0 {
                return (0.0, f64::NEG_INFINITY);
            }
            sign *= d.signum();
            log += d.abs().ln();
        }
        (sign, log)
    }

    /// Overwrites the `n x k` matrix `b` with `A⁻¹ b`: the rows permuted, then the two
    /// triangular solves. A singular matrix gives infinities or NaN.
    ///
    /// ```
    /// use tapegrad_kernels::linalg::Lu;
    /// let mut b = [1.0, 0.0, 0.0, 1.0]; // the identity: b becomes the inverse
    /// Lu::factor(&[2.0, 0.0, 0.0, 4.0], 2).solve(&mut b, 2);
    /// assert_eq!(b, [0.5, 0.0, 0.0, 0.25]);
    /// ```
    pub fn solve(&self, b: &mut [f64], k: usize) {
        let n = self.n;
        assert_eq!(b.len(), n * k, "lu solve: {} elements for {n} x {k} right sides", b.len());
        let permuted: Vec<f64> =
            self.rows.iter().flat_map(|&r| b[r * k..r * k + k].iter().copied()).collect();
        b.copy_from_slice(&permuted);
        solve_triangular(&self.factors, b, n, k, false, true);
        solve_triangular(&self.factors, b, n, k, true, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(a: &[f64], b: &[f64], n: usize, m: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * k];
        for i in 0..n {
            for p in 0..m {
                for j in 0..k {
                    c[i * k + j] += a[i * m + p] * b[p * k + j];
                }
            }
        }
        c
    }

    /// `M Mᵀ + n I` for a fixed pattern `M`: positive definite.
    fn positive_definite(n: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..n * n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let mt: Vec<f64> = (0..n * n).map(|i| m[(i % n) * n + i / n]).collect();
        let mut a = product(&m, &mt, n, n, n);
        (0..n).for_each(|i| a[i * n + i] += n as f64);
        a
    }

    /// Sizes below one block, of exactly one, and of several with a partial last one.
    const SIZES: [usize; 4] = [5, 64, 65, 150];

    #[test]
    fn the_factor_times_its_transpose_gives_back_the_matrix() {
        for n in SIZES {
            let a = positive_definite(n);
            let l = cholesky(&a, n).unwrap();
            assert!((0..n).all(|i| (i + 1..n).all(|j| l[i * n + j] == 0.0)), "lower triangular");
            let lt: Vec<f64> = (0..n * n).map(|i| l[(i % n) * n + i / n]).collect();
            let back = product(&l, &lt, n, n, n);
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(back.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-12 * scale), "n {n}");
            // Only the lower triangle is read.
            let mut scribbled = a.clone();
            scribbled[1] = f64::NAN;
            assert_eq!(cholesky(&scribbled, n).unwrap(), l);
            // A negative diagonal element deep in the last block is found there.
            let mut broken = a.clone();
            broken[(n - 1) * n + n - 1] = -1.0;
            assert_eq!(cholesky(&broken, n), Err(NotPositiveDefinite { order: n }));
        }
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_names_its_minor() {
        assert_eq!(cholesky(&[-1.0], 1), Err(NotPositiveDefinite { order: 1 }));
        let a = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, f64::NAN];
        assert_eq!(cholesky(&a, 3), Err(NotPositiveDefinite { order: 3 }));
        assert_eq!(cholesky(&[], 0), Ok(vec![]));
    }

    #[test]
    fn lu_solves_and_determinants_agree_with_the_product() {
        let n = 4;
        // Row 0 starts with a zero, so the factorization must pivot.
        let a: Vec<f64> = (0..n * n)
            .map(|i| if i == 0 { 0.0 } else { ((i * 5 % 7) as f64 - 3.0) / 2.0 })
            .collect();
        let x: Vec<f64> = (0..n * 2).map(|i| i as f64 - 3.5).collect();
        let lu = Lu::factor(&a, n);
        assert!(!lu.is_singular());
        let mut b = product(&a, &x, n, n, 2);
        lu.solve(&mut b, 2);
        assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-12), "{b:?}");
        // det(A) by cofactor expansion along the first row, from 3 x 3 minors.
        let minor = |skip: usize| -> f64 {
            let m: Vec<f64> = (1..n)
                .flat_map(|r| (0..n).filter(move |&c| c != skip).map(move |c| (r, c)))
                .map(|(r, c)| a[r * n + c])
                .collect();
            m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
                + m[2] * (m[3] * m[7] - m[4] * m[6])
        };
        let det: f64 = (0..n).map(|c| if c % 2 == 0 { 1.0 } else { -1.0 } * a[c] * minor(c)).sum();
        assert!((lu.det() - det).abs() < 1e-12 * det.abs(), "{} {det}", lu.det());
        let (sign, log) = lu.log_abs_det();
        assert_eq!(sign, det.signum());
        assert!((log - det.abs().ln()).abs() < 1e-12);
        let singular = Lu::factor(&[1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 1.0, 1.0], 3);
        assert!(singular.is_singular());
        assert_eq!(singular.det(), 0.0);
        assert_eq!(singular.log_abs_det(), (0.0, f64::NEG_INFINITY));
    }

    #[test]
    fn triangular_solves_invert_the_product() {
        for n in SIZES {
            let k = 3;
            let lower: Vec<f64> = (0..n * n)
                .map(|i| match (i / n, i % n) {
                    (r, c) if r == c => 2.0 + (r % 5) as f64,
                    (r, c) if c < r => ((r + 2 * c) % 9) as f64 / (5.0 * n as f64) - 0.1 / n as f64,
                    _ => 0.0,
                })
                .collect();
            let upper: Vec<f64> = (0..n * n).map(|i| lower[(i % n) * n + i / n]).collect();
            let x: Vec<f64> = (0..n * k).map(|i| ((i % 13) as f64 - 5.0) / 2.0).collect();
            for (a, is_upper) in [(&lower, false), (&upper, true)] {
                let mut b = product(a, &x, n, n, k);
                solve_triangular(a, &mut b, n, k, is_upper, false);
                assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-12), "n {n}");
                // With a unit diagonal the stored diagonal is not read.
                let mut unit = a.clone();
                (0..n).for_each(|i| unit[i * n + i] = 1.0);
                let mut b = product(&unit, &x, n, n, k);
                let mut ignored = a.clone();
                (0..n).for_each(|i| ignored[i * n + i] = f64::NAN);
                solve_triangular(&ignored, &mut b, n, k, is_upper, true);
                assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-12), "n {n}");
                // No right-hand sides: nothing to do.
                solve_triangular(a, &mut [], n, 0, is_upper, false);
            }
            // LU solves run through the blocked triangular solves too.
            let a = positive_definite(n);
            let mut b = product(&a, &x, n, n, k);
            Lu::factor(&a, n).solve(&mut b, k);
            assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-10), "n {n}");
        }
    }
}
