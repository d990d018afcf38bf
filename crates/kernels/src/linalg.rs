//! Dense linear algebra on one matrix at a time, in f64 (an f32 tensor's matrices are
//! widened first: the work is cubic in the size, the conversion quadratic): the Cholesky
//! factor of a symmetric positive-definite matrix, the solution of a triangular system,
//! the LU factorization with partial pivoting behind general solves, inverses and
//! determinants, the QR factorization by Householder reflections ([`Qr`]), the symmetric
//! eigendecomposition ([`SymmetricEigen`]) and the singular value decomposition ([`Svd`]). Rows are
//! row-major and contiguous; a system's right-hand sides are the columns of `B`, updated a
//! row at a time so the inner loops run along contiguous rows. The Cholesky factor, the LU
//! factors and the triangular solves go in blocks of 64 rows or columns, whose interactions
//! with the ones finished before are one matrix product each (on the threads); a
//! factorization's panel is worked on transposed, so that its updates run along contiguous
//! rows in the widest vectors. A solve with many right-hand sides gives each thread a group
//! of columns.

use crate::gemm::{View, gemm_into, gemm_new, gemm_serial};
use rayon::prelude::*;

mod qr;
mod svd;
mod symmetric;
pub use qr::Qr;
pub use svd::Svd;
pub use symmetric::SymmetricEigen;

/// Rows (and columns) handled at a time: the work between blocks is a matrix product.
const BLOCK: usize = 64;

/// Right-hand sides below which a group is not worth a thread of its own: the substitution
/// runs along rows of this many.
const MIN_GROUP_COLUMNS: usize = 32;

/// `each` of every matrix of `len` elements in `matrices`, in order: on the threads, a
/// matrix at a time, when there are several and their `cost` (about one matrix's
/// multiply-adds) together is worth it. A matrix's result does not depend on which thread
/// computed it.
///
/// ```
/// use tapegrad_kernels::linalg::map_matrices;
/// let traces = map_matrices(&[1.0, 0.0, 0.0, 2.0, 3.0, 1.0, 1.0, 4.0], 4, 8, |m| m[0] + m[3]);
/// assert_eq!(traces, vec![3.0, 7.0]);
/// ```
pub fn map_matrices<R: Send>(
    matrices: &[f64],
    len: usize,
    cost: usize,
    each: impl Fn(&[f64]) -> R + Sync + Send,
) -> Vec<R> {
    assert!(len > 0, "map_matrices: matrices of no elements");
    let count = matrices.len() / len;
    if count > 1 && crate::parallel::start_parallel(count.saturating_mul(cost)) {
        matrices.par_chunks_exact(len).map(each).collect()
    } else {
        matrices.chunks_exact(len).map(each).collect()
    }
}

/// `each(i, matrix)` for the `i`-th matrix of `len` elements in `matrices`, which it
/// overwrites: on the threads under the same rule as [`map_matrices`].
///
/// ```
/// use tapegrad_kernels::linalg::for_each_matrix;
/// let mut m = [1.0, 2.0, 3.0, 4.0];
/// for_each_matrix(&mut m, 2, 2, |i, v| v.iter_mut().for_each(|x| *x *= i as f64));
/// assert_eq!(m, [0.0, 0.0, 3.0, 4.0]);
/// ```
pub fn for_each_matrix(
    matrices: &mut [f64],
    len: usize,
    cost: usize,
    each: impl Fn(usize, &mut [f64]) + Sync + Send,
) {
    assert!(len > 0, "for_each_matrix: matrices of no elements");
    let count = matrices.len() / len;
    if count > 1 && crate::parallel::start_parallel(count.saturating_mul(cost)) {
        matrices.par_chunks_exact_mut(len).enumerate().for_each(|(i, m)| each(i, m));
    } else {
        matrices.chunks_exact_mut(len).enumerate().for_each(|(i, m)| each(i, m));
    }
}

/// A dot product in four running sums, so that it fills the vectors.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4.remainder().iter().zip(b4.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a4.zip(b4) {
        for lane in 0..4 {
            sums[lane] += x[lane] * y[lane];
        }
    }
    (sums[0] + sums[1]) + (sums[2] + sums[3]) + tail
}

/// The Euclidean length of `x`, scaled by its largest entry where the plain sum of squares
/// would overflow or lose its digits to underflow (as LAPACK's `dnrm2`).
#[inline(always)]
fn norm(x: &[f64]) -> f64 {
    let squares = dot(x, x);
    if squares.is_nan() || (squares.is_finite() && squares >= f64::MIN_POSITIVE / f64::EPSILON) {
        return squares.sqrt();
    }
    let largest = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if largest == 0.0 || largest.is_infinite() {
        return largest;
    }
    let scale = 1.0 / largest;
    largest * x.iter().map(|v| (v * scale) * (v * scale)).sum::<f64>().sqrt()
}

/// Rows `p` and `q` (of `n`) of `x` replaced by `c x_p - s x_q` and `s x_p + c x_q`.
#[inline(always)]
fn rotate_rows(x: &mut [f64], n: usize, p: usize, q: usize, c: f64, s: f64) {
    let (head, tail) = x.split_at_mut(q * n);
    let (xp, xq) = (&mut head[p * n..(p + 1) * n], &mut tail[..n]);
    for (a, b) in xp.iter_mut().zip(xq.iter_mut()) {
        let (g, h) = (*a, *b);
        (*a, *b) = (c * g - s * h, s * g + c * h);
    }
}

/// The `n x n` identity, row-major.
fn identity(n: usize) -> Vec<f64> {
    let mut x = vec![0.0; n * n];
    (0..n).for_each(|i| x[i * n + i] = 1.0);
    x
}

/// A power of two that brings the largest entry of `a` near 1 when it is beyond 1e±100,
/// else 1.
fn power_of_two_scale(a: &[f64]) -> f64 {
    let largest = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if largest == 0.0 || (1e-100..=1e100).contains(&largest) {
        return 1.0;
    }
    // Clamped so that the scale itself is finite even for a subnormal largest entry.
    2f64.powi(-(largest.log2().round() as i32).clamp(-1000, 1000))
}

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
        factor_panel(&mut l, n, start, end)?;
    }
    Ok(l)
}

/// Finishes columns `start..end` of the factor, rows `start..` of which hold what is left of
/// `A` once the earlier columns are taken out. The panel is worked on transposed, so that
/// each column's share in the columns after it is subtracted along contiguous rows, in the
/// widest vectors the CPU has.
fn factor_panel(
    l: &mut [f64],
    n: usize,
    start: usize,
    end: usize,
) -> Result<(), NotPositiveDefinite> {
    let (width, height) = (end - start, n - start);
    let mut panel = vec![0.0; width * height];
    for (i, row) in l[start * n..].chunks_exact(n).enumerate() {
        for (j, &x) in row[start..(start + i + 1).min(end)].iter().enumerate() {
            panel[j * height + i] = x;
        }
    }
    crate::simd::run_widest(RightLooking { panel: &mut panel, width, height })
        .map_err(|column| NotPositiveDefinite { order: start + column + 1 })?;
    for (i, row) in l[start * n..].chunks_exact_mut(n).enumerate() {
        for (j, x) in row[start..(start + i + 1).min(end)].iter_mut().enumerate() {
            *x = panel[j * height + i];
        }
    }
    Ok(())
}

/// The Cholesky factor of a panel held transposed (`width` rows of `height`, row `j` the
/// factor's column `j` from the diagonal's row down), one column at a time: its pivot, its
/// scaling, and its share taken out of the columns to its right. Fails with the column whose
/// pivot is not positive (or NaN).
struct RightLooking<'a> {
    panel: &'a mut [f64],
    width: usize,
    height: usize,
}

impl crate::simd::WidestLoop for RightLooking<'_> {
    type Output = Result<(), usize>;

    #[inline(always)]
    fn run(self) -> Result<(), usize> {
        let RightLooking { panel, width, height } = self;
        for j in 0..width {
            let (done, rest) = panel.split_at_mut((j + 1) * height);
            let column = &mut done[j * height..];
            let pivot = column[j];
            // NaN stops here too.
            if pivot <= 0.0 || pivot.is_nan() {
                return Err(j);
            }
            let pivot = pivot.sqrt();
            column[j] = pivot;
            column[j + 1..].iter_mut().for_each(|x| *x /= pivot);
            let column = &*column;
            for (offset, later) in rest.chunks_exact_mut(height).enumerate() {
                let r = j + 1 + offset;
                let share = column[r];
                for (x, &c) in later[r..].iter_mut().zip(&column[r..]) {
                    *x -= share * c;
                }
            }
        }
        Ok(())
    }
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
    // Each column of B is a system of its own: on several threads, each solves a group.
    let threads = rayon::current_num_threads();
    let groups = threads.min(k / MIN_GROUP_COLUMNS);
    if groups > 1 && crate::parallel::start_parallel(n * n * k / 2) {
        let bounds = |g: usize| (g * k / groups, (g + 1) * k / groups);
        let solved: Vec<Vec<f64>> = (0..groups)
            .into_par_iter()
            .map(|g| {
                let (first, last) = bounds(g);
                let mut group: Vec<f64> =
                    b.chunks_exact(k).flat_map(|row| row[first..last].iter().copied()).collect();
                solve_in_blocks(a, &mut group, n, last - first, upper, unit_diagonal, false);
                group
            })
            .collect();
        for (g, group) in solved.iter().enumerate() {
            let (first, last) = bounds(g);
            for (row, part) in b.chunks_exact_mut(k).zip(group.chunks_exact(last - first)) {
                row[first..last].copy_from_slice(part);
            }
        }
        return;
    }
    solve_in_blocks(a, b, n, k, upper, unit_diagonal, true);
}

/// [`solve_triangular`] with the lengths checked, in blocks of rows: on the calling thread,
/// its products split across threads when `parallel_products`.
fn solve_in_blocks(
    a: &[f64],
    b: &mut [f64],
    n: usize,
    k: usize,
    upper: bool,
    unit_diagonal: bool,
    parallel_products: bool,
) {
    if n <= BLOCK {
        return solve_block(a, b, n, k, 0, n, upper, unit_diagonal);
    }
    let mut blocks: Vec<(usize, usize)> =
        (0..n).step_by(BLOCK).map(|start| (start, (start + BLOCK).min(n))).collect();
    if upper {
        blocks.reverse();
    }
    let mut update = Vec::new();
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
            let solved = View::row_major(solved, count, k);
            update.resize(rows.len(), 0.0);
            if parallel_products {
                gemm_into(coefficients, solved, &mut update, false);
            } else {
                gemm_serial(coefficients, solved, &mut update, false);
            }
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
    crate::simd::run_widest(Substitution { a, rows, n, k, start, end, upper, unit_diagonal });
}

/// [`solve_block`]'s loops, compiled for the widest vectors.
struct Substitution<'a> {
    a: &'a [f64],
    rows: &'a mut [f64],
    n: usize,
    k: usize,
    start: usize,
    end: usize,
    upper: bool,
    unit_diagonal: bool,
}

impl crate::simd::WidestLoop for Substitution<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Substitution { a, rows, n, k, start, end, upper, unit_diagonal } = self;
        let count = end - start;
        for step in 0..count {
            // Row i of X: (what is left of row i of B - sum of A[i][j] times row j of X) /
            // A[i][i], over the block's rows j solved before it (after it, for an upper A).
            let local = if upper { count - 1 - step } else { step };
            let i = start + local;
            let (row, solved, first) = if upper {
                let (head, tail) = rows.split_at_mut((local + 1) * k);
                (&mut head[local * k..], &*tail, i + 1)
            } else {
                let (head, tail) = rows.split_at_mut(local * k);
                (&mut tail[..k], &*head, start)
            };
            let coefficients = &a[i * n + first..i * n + first + solved.len() / k];
            subtract_combination(row, coefficients, solved, k);
            if !unit_diagonal {
                let pivot = a[i * n + i];
                row.iter_mut().for_each(|x| *x /= pivot);
            }
        }
    }
}

/// `row -= sum of coefficients[j] times row j of solved` (rows of `k`), subtracted in the
/// order of `j` but four rows a pass, so that `row` is loaded and stored a quarter as often.
#[inline(always)]
fn subtract_combination(row: &mut [f64], coefficients: &[f64], solved: &[f64], k: usize) {
    let quads = coefficients.len() / 4;
    for (c, four) in coefficients.chunks_exact(4).zip(solved.chunks_exact(4 * k)) {
        let (r0, rest) = four.split_at(k);
        let (r1, rest) = rest.split_at(k);
        let (r2, r3) = rest.split_at(k);
        for ((((x, &y0), &y1), &y2), &y3) in row.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *x = *x - c[0] * y0 - c[1] * y1 - c[2] * y2 - c[3] * y3;
        }
    }
    for (&c, other) in coefficients[4 * quads..].iter().zip(solved[4 * quads * k..].chunks_exact(k))
    {
        for (x, &y) in row.iter_mut().zip(other) {
            *x -= c * y;
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
        let mut right = Vec::new();
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            // The panel's columns choose the pivots; its row swaps then reach the columns
            // on either side.
            for (j, pivot) in (start..end).zip(factor_lu_panel(&mut f, n, start, end)) {
                if pivot != j {
                    for c in (0..start).chain(end..n) {
                        f.swap(j * n + c, pivot * n + c);
                    }
                    rows.swap(j, pivot);
                    odd_swaps = !odd_swaps;
                }
            }
            if end == n {
                break;
            }
            // The block's rows of U right of the panel: L11⁻¹ A12.
            let width = n - end;
            right.clear();
            for row in f[start * n..end * n].chunks_exact(n) {
                right.extend_from_slice(&row[end..]);
            }
            solve_block(&f, &mut right, n, width, start, end, false, true);
            for (row, solved) in
                f[start * n..end * n].chunks_exact_mut(n).zip(right.chunks_exact(width))
            {
                row[end..].copy_from_slice(solved);
            }
            // The rows below lose the panel's share, as one matrix product: L21 U12.
            let lower = View {
                data: &f,
                offset: end * n + start,
                rows: width,
                cols: end - start,
                rs: n,
                cs: 1,
            };
            let update = gemm_new(lower, View::row_major(&right, end - start, width), None);
            for (row, products) in f[end * n..].chunks_exact_mut(n).zip(update.chunks_exact(width))
            {
                row[end..].iter_mut().zip(products).for_each(|(x, p)| *x -= p);
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

    /// Overwrites the `n x k` matrix `b` with `A⁻ᵀ b` from the same factors (`Aᵀ = Uᵀ Lᵀ P`):
    /// the two triangular solves transposed, then the rows put back in `A`'s order.
    ///
    /// ```
    /// use tapegrad_kernels::linalg::Lu;
    /// let lu = Lu::factor(&[0.0, 2.0, 3.0, 4.0], 2);
    /// let mut b = [6.0, 10.0]; // Aᵀ x = b for x = [1, 2]
    /// lu.solve_transposed(&mut b, 1);
    /// assert_eq!(b, [1.0, 2.0]);
    /// ```
    pub fn solve_transposed(&self, b: &mut [f64], k: usize) {
        let n = self.n;
        assert_eq!(b.len(), n * k, "lu solve: {} elements for {n} x {k} right sides", b.len());
        let transposed: Vec<f64> = (0..n * n).map(|i| self.factors[(i % n) * n + i / n]).collect();
        solve_triangular(&transposed, b, n, k, false, false);
        solve_triangular(&transposed, b, n, k, true, true);
        let mut x = vec![0.0; n * k];
        for (solved, &row) in b.chunks_exact(k.max(1)).zip(&self.rows) {
            x[row * k..row * k + k].copy_from_slice(solved);
        }
        b.copy_from_slice(&x);
    }
}

/// Factors columns `start..end` of `f` (rows `start..` of which hold what is left of `A`
/// once the earlier panels are taken out) with partial pivoting, swapping rows only within
/// the panel: returns each column's pivot row, for the caller to swap the other columns.
/// Worked on transposed, as [`factor_panel`].
fn factor_lu_panel(f: &mut [f64], n: usize, start: usize, end: usize) -> Vec<usize> {
    let (width, height) = (end - start, n - start);
    let mut panel = vec![0.0; width * height];
    for (i, row) in f[start * n..].chunks_exact(n).enumerate() {
        for (j, &x) in row[start..end].iter().enumerate() {
            panel[j * height + i] = x;
        }
    }
    let pivots = crate::simd::run_widest(LuPanel { panel: &mut panel, width, height });
    for (i, row) in f[start * n..].chunks_exact_mut(n).enumerate() {
        for (j, x) in row[start..end].iter_mut().enumerate() {
            *x = panel[j * height + i];
        }
    }
    pivots.into_iter().map(|local| start + local).collect()
}

/// The LU factors of a panel held transposed (`width` rows of `height`, row `j` the panel's
/// column `j` from its first row down), a column at a time: the pivot (the largest magnitude
/// at or below the diagonal; NaN never wins) swapped up, the multipliers, and the column's
/// share taken out of the columns to its right. Returns each column's pivot row.
struct LuPanel<'a> {
    panel: &'a mut [f64],
    width: usize,
    height: usize,
}

impl crate::simd::WidestLoop for LuPanel<'_> {
    type Output = Vec<usize>;

    #[inline(always)]
    fn run(self) -> Vec<usize> {
        let LuPanel { panel, width, height } = self;
        let mut pivots = Vec::with_capacity(width);
        for j in 0..width {
            let column = &panel[j * height..(j + 1) * height];
            let pivot = (j..height)
                .fold(j, |best, i| if column[i].abs() > column[best].abs() { i } else { best });
            if pivot != j {
                for row in panel.chunks_exact_mut(height) {
                    row.swap(j, pivot);
                }
            }
            pivots.push(pivot);
            let (done, rest) = panel.split_at_mut((j + 1) * height);
            let column = &mut done[j * height..];
            let diagonal = column[j];
            if diagonal == 0.0 {
                continue; // the column is zero below: nothing to eliminate
            }
            column[j + 1..].iter_mut().for_each(|x| *x /= diagonal);
            let multipliers = &column[j + 1..];
            for later in rest.chunks_exact_mut(height) {
                let u = later[j];
                for (x, &m) in later[j + 1..].iter_mut().zip(multipliers) {
                    *x -= m * u;
                }
            }
        }
        pivots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `n x k` product of the `n x m` matrix `a` and the `m x k` matrix `b`, by the book.
    pub(super) fn product(a: &[f64], b: &[f64], n: usize, m: usize, k: usize) -> Vec<f64> {
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

    fn transpose(a: &[f64], n: usize) -> Vec<f64> {
        (0..n * n).map(|i| a[(i % n) * n + i / n]).collect()
    }

    /// A matrix whose rows must be swapped in every panel: the diagonal is small next to
    /// the rest of its column.
    fn needs_pivots(n: usize) -> Vec<f64> {
        (0..n * n)
            .map(|i| match (i / n, i % n) {
                (r, c) if r == c => 1e-3 * (1 + r % 3) as f64,
                (r, c) => ((r * 7 + c * 13) % 17) as f64 / 4.0 - 2.0,
            })
            .collect()
    }

    #[test]
    fn blocked_lu_reproduces_the_permuted_matrix_and_solves_both_ways() {
        for n in SIZES {
            let a = needs_pivots(n);
            let lu = Lu::factor(&a, n);
            assert!(lu.rows.iter().enumerate().any(|(i, &r)| i != r), "n {n}: no pivoting");
            let f = &lu.factors;
            let lower: Vec<f64> = (0..n * n)
                .map(|i| match (i / n, i % n) {
                    (r, c) if r == c => 1.0,
                    (r, c) if c < r => f[i],
                    _ => 0.0,
                })
                .collect();
            let upper: Vec<f64> =
                (0..n * n).map(|i| if i % n >= i / n { f[i] } else { 0.0 }).collect();
            let back = product(&lower, &upper, n, n, n);
            for (i, &r) in lu.rows.iter().enumerate() {
                for c in 0..n {
                    let (got, want) = (back[i * n + c], a[r * n + c]);
                    assert!((got - want).abs() < 1e-10, "n {n}: (PA)[{i}][{c}] {got} vs {want}");
                }
            }
            // Partial pivoting keeps every multiplier at most 1 in magnitude.
            assert!(lower.iter().all(|x| x.abs() <= 1.0), "n {n}");
            let k = 3;
            let x: Vec<f64> = (0..n * k).map(|i| ((i % 11) as f64 - 5.0) / 3.0).collect();
            let mut b = product(&a, &x, n, n, k);
            lu.solve(&mut b, k);
            assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-9), "n {n}");
            let mut b = product(&transpose(&a, n), &x, n, n, k);
            lu.solve_transposed(&mut b, k);
            assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-9), "n {n}");
        }
    }

    #[test]
    fn factors_and_solves_are_the_same_at_every_thread_count() {
        let (n, k) = (150, 200);
        let a = needs_pivots(n);
        let spd = positive_definite(n);
        let b: Vec<f64> = (0..n * k).map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let lu = Lu::factor(&a, n);
                let mut x = b.clone();
                lu.solve(&mut x, k);
                let l = cholesky(&spd, n).unwrap();
                let mut y = b.clone();
                solve_triangular(&l, &mut y, n, k, false, false);
                (lu.factors, x, l, y)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(one == run(threads), "{threads} threads differ from 1");
        }
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
        let mut b = product(&transpose(&a, n), &x, n, n, 2);
        lu.solve_transposed(&mut b, 2);
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
