//! The QR factorization by Householder reflections (LAPACK's `geqrf` and `orgqr`), with
//! LAPACK's choice of reflector, so `Q` and `R` are the ones PyTorch returns. The matrix is
//! worked on transposed: each column of `A` is a contiguous row, so a reflection of one
//! column is a dot product and an update along contiguous memory. Columns go in blocks:
//! each block's reflections are gathered into one (`I - V T Vᵀ`, the compact WY form) and
//! applied to the columns after it, and to `Q`, as two matrix products.

use super::{dot, norm};
use crate::gemm::{View, gemm_new};
use crate::transpose::Transpose;

/// Reflections gathered into one before they reach the other columns.
const BLOCK: usize = 32;

/// `A = Q R` of an `m x n` matrix: `Q` with orthonormal columns, `R` upper-triangular,
/// from `min(m, n)` Householder reflections.
///
/// ```
/// use tapegrad_kernels::linalg::Qr;
/// let qr = Qr::factor(&[3.0, 1.0, 4.0, 2.0], 2, 2); // [[3, 1], [4, 2]]
/// let (q, r) = (qr.q(2), qr.r(2));
/// // LAPACK's reflector makes R's diagonal -|column|: R = [[-5, -2.2], [0, 0.4]].
/// assert!((r[0] + 5.0).abs() < 1e-12 && r[2] == 0.0 && (r[3] - 0.4).abs() < 1e-12);
/// // Q R is A again.
/// let a00 = q[0] * r[0];
/// assert!((a00 - 3.0).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Qr {
    /// `Aᵀ` reflected, `n` rows of `m`: row `j` holds `R`'s column `j` up to the diagonal
    /// and, after it, reflection `j`'s vector (whose leading 1 is not stored).
    reflected: Vec<f64>,
    /// Each reflection's scale: `H_j = I - tau_j v_j v_jᵀ`.
    tau: Vec<f64>,
    m: usize,
    n: usize,
}

impl Qr {
    /// Factors the row-major `m x n` matrix `a`.
    ///
    /// ```
    /// let qr = tapegrad_kernels::linalg::Qr::factor(&[0.0, 0.0], 2, 1); // a zero column
    /// assert_eq!(qr.r(1), vec![0.0]);
    /// ```
    pub fn factor(a: &[f64], m: usize, n: usize) -> Qr {
        assert_eq!(a.len(), m * n, "qr: {} elements for a {m} x {n} matrix", a.len());
        let mut reflected = vec![0.0; m * n];
        f64::transpose(a, m, n, &mut reflected);
        let k = m.min(n);
        let mut tau = vec![0.0; k];
        for start in (0..k).step_by(BLOCK) {
            let end = (start + BLOCK).min(k);
            crate::simd::run_widest(Panel {
                reflected: &mut reflected,
                tau: &mut tau,
                m,
                start,
                end,
            });
            if end < n {
                let block = Block::gather(&reflected, &tau, m, start, end);
                // The later columns: Cᵀ (I - V T Vᵀ), the block's reflections applied in order.
                block.apply(&mut reflected[end * m..], n - end, m, false);
            }
        }
        Qr { reflected, tau, m, n }
    }

    /// `R`'s first `rows` rows (`min(m, n)` for the reduced factorization, `m` for the
    /// complete one, whose rows past `n` are zero), row-major `rows x n`.
    ///
    /// ```
    /// let qr = tapegrad_kernels::linalg::Qr::factor(&[0.0, 2.0, 0.0], 3, 1);
    /// assert_eq!((qr.r(1), qr.r(3)), (vec![-2.0], vec![-2.0, 0.0, 0.0]));
    /// ```
    pub fn r(&self, rows: usize) -> Vec<f64> {
        assert!(rows <= self.m, "qr: R has at most {} rows, not {rows}", self.m);
        let (m, n) = (self.m, self.n);
        let mut r = vec![0.0; rows * n];
        for (j, column) in self.reflected.chunks_exact(m.max(1)).enumerate().take(n) {
            for i in 0..rows.min(j + 1) {
                r[i * n + j] = column[i];
            }
        }
        r
    }

    /// `Q`'s first `columns` columns (`min(m, n)` for the reduced factorization, `m` for the
    /// complete one), row-major `m x columns`: the reflections applied to the identity's
    /// columns, the last block first.
    ///
    /// ```
    /// let q = tapegrad_kernels::linalg::Qr::factor(&[0.0, 2.0, 0.0], 3, 1).q(3);
    /// // One reflection swapping and negating the first two coordinates; Q R = [0, 2, 0].
    /// assert_eq!(q, vec![0.0, -1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    /// ```
    pub fn q(&self, columns: usize) -> Vec<f64> {
        let m = self.m;
        assert!(columns <= m, "qr: Q has at most {m} columns, not {columns}");
        // Qᵀ, a row per column of Q, starting as the identity's.
        let mut qt = vec![0.0; columns * m];
        (0..columns).for_each(|c| qt[c * m + c] = 1.0);
        let k = self.tau.len();
        let starts: Vec<usize> = (0..k).step_by(BLOCK).collect();
        for &start in starts.iter().rev() {
            let end = (start + BLOCK).min(k);
            // Columns of Q before `start` are still the identity's: these reflections only
            // touch rows from `start` on, where those columns are zero.
            if columns > start {
                let block = Block::gather(&self.reflected, &self.tau, m, start, end);
                block.apply(&mut qt[start * m..], columns - start, m, true);
            }
        }
        let mut q = vec![0.0; m * columns];
        f64::transpose(&qt, columns, m, &mut q);
        q
    }

    /// `Rᵀ` of [`Qr::r`]`(rows)`, row-major `n x rows`: each row is `R`'s column as the
    /// factorization holds it, so this is a copy without a transposition.
    ///
    /// ```
    /// let qr = tapegrad_kernels::linalg::Qr::factor(&[0.0, 2.0, 0.0], 3, 1);
    /// assert_eq!(qr.r_transposed(3), vec![-2.0, 0.0, 0.0]);
    /// ```
    pub fn r_transposed(&self, rows: usize) -> Vec<f64> {
        assert!(rows <= self.m, "qr: R has at most {} rows, not {rows}", self.m);
        let mut rt = vec![0.0; self.n * rows];
        for (j, (out, column)) in rt
            .chunks_exact_mut(rows.max(1))
            .zip(self.reflected.chunks_exact(self.m.max(1)))
            .enumerate()
        {
            let upto = rows.min(j + 1);
            out[..upto].copy_from_slice(&column[..upto]);
        }
        rt
    }
}

/// Reflects columns `start..end` one at a time (each applied to the block's later columns
/// only), in the widest vectors.
struct Panel<'a> {
    reflected: &'a mut [f64],
    tau: &'a mut [f64],
    m: usize,
    start: usize,
    end: usize,
}

impl crate::simd::WidestLoop for Panel<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Panel { reflected, tau, m, start, end } = self;
        for j in start..end {
            let (done, later) = reflected.split_at_mut((j + 1) * m);
            let column = &mut done[j * m + j..];
            tau[j] = make_reflector(column);
            let v = &*column;
            for other in later.chunks_exact_mut(m).take(end - j - 1) {
                reflect(v, tau[j], &mut other[j..]);
            }
        }
    }
}

/// Turns `x` into `H x = (beta, 0, ..., 0)` with LAPACK's `dlarfg` choice
/// (`beta = -sign(x_0) |x|`): stores `beta` in `x[0]` and the reflection's vector, without
/// its leading 1, in `x[1..]`; returns `tau`. A column already zero below its head needs no
/// reflection (`tau = 0`).
#[inline(always)]
pub(super) fn make_reflector(x: &mut [f64]) -> f64 {
    let (head, tail) = x.split_first_mut().expect("a reflection of at least one element");
    let tail_norm = norm(tail);
    if tail_norm == 0.0 {
        return 0.0;
    }
    let alpha = *head;
    let beta = -alpha.hypot(tail_norm).copysign(alpha);
    let scale = 1.0 / (alpha - beta);
    tail.iter_mut().for_each(|t| *t *= scale);
    *head = beta;
    (beta - alpha) / beta
}

/// `y = (I - tau v vᵀ) y` for the reflection `v` whose leading 1 is not stored.
#[inline(always)]
fn reflect(v: &[f64], tau: f64, y: &mut [f64]) {
    if tau == 0.0 {
        return;
    }
    let (head, tail) = y.split_first_mut().expect("as long as the reflection");
    let w = tau * (*head + dot(&v[1..], tail));
    *head -= w;
    tail.iter_mut().zip(&v[1..]).for_each(|(t, &vi)| *t -= w * vi);
}

/// The reflections `start..end` as one: `H_start ... H_(end-1) = I - V T Vᵀ`, with `V`'s
/// columns the reflections' vectors (rows `start..m`) and `T` upper-triangular (LAPACK's
/// `dlarft`).
struct Block {
    /// `Vᵀ`: a row per reflection, `height = m - start` long, its 1 and zeros written out.
    vt: Vec<f64>,
    t: Vec<f64>,
    width: usize,
    height: usize,
    start: usize,
}

impl Block {
    fn gather(reflected: &[f64], tau: &[f64], m: usize, start: usize, end: usize) -> Block {
        let (width, height) = (end - start, m - start);
        let mut vt = vec![0.0; width * height];
        for (i, row) in vt.chunks_exact_mut(height).enumerate() {
            row[i] = 1.0;
            let column = &reflected[(start + i) * m..(start + i + 1) * m];
            row[i + 1..].copy_from_slice(&column[start + i + 1..]);
        }
        // T's column i: -tau_i T[..i, ..i] (V[:, ..i]ᵀ v_i), then tau_i on the diagonal.
        let mut t = vec![0.0; width * width];
        for i in 0..width {
            let tau_i = tau[start + i];
            let vi = &vt[i * height..(i + 1) * height];
            let z: Vec<f64> =
                (0..i).map(|l| dot(&vt[l * height + i..(l + 1) * height], &vi[i..])).collect();
            for r in 0..i {
                let sum: f64 = (r..i).map(|c| t[r * width + c] * z[c]).sum();
                t[r * width + i] = -tau_i * sum;
            }
            t[i * width + i] = tau_i;
        }
        Block { vt, t, width, height, start }
    }

    /// Replaces each of the `rows` rows (of `m`, from column `start` on) of `target` with
    /// `row (I - V T Vᵀ)`, or `row (I - V Tᵀ Vᵀ)` with `transposed`. On rows that are
    /// columns, that is `Hᵀ C` (reflecting `A`'s later columns) or `H Q` (forming `Q`).
    fn apply(&self, target: &mut [f64], rows: usize, m: usize, transposed: bool) {
        let Block { ref vt, ref t, width, height, start } = *self;
        let part = View { data: &*target, offset: start, rows, cols: height, rs: m, cs: 1 };
        let v =
            View { data: vt.as_slice(), offset: 0, rows: height, cols: width, rs: 1, cs: height };
        let w = gemm_new(part, v, None);
        let t_view = if transposed {
            View { data: t.as_slice(), offset: 0, rows: width, cols: width, rs: 1, cs: width }
        } else {
            View::row_major(t.as_slice(), width, width)
        };
        let wt = gemm_new(View::row_major(&w, rows, width), t_view, None);
        let update =
            gemm_new(View::row_major(&wt, rows, width), View::row_major(vt, width, height), None);
        for (row, change) in target.chunks_mut(m).zip(update.chunks_exact(height)).take(rows) {
            row[start..].iter_mut().zip(change).for_each(|(x, d)| *x -= d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::tests::product;

    /// A matrix whose entries look random but are the same on every run.
    fn matrix(m: usize, n: usize, seed: f64) -> Vec<f64> {
        (0..m * n).map(|i| ((i as f64 + seed) * 0.7548776662).sin() * 2.0).collect()
    }

    fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
        (0..m * n).map(|i| a[(i % m) * n + i / m]).collect()
    }

    fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(worst <= tol, "{what}: off by {worst}");
    }

    #[test]
    fn q_is_orthonormal_r_upper_and_their_product_is_a_in_both_modes() {
        // Sizes on either side of a block of 32 reflections, tall, wide and square.
        for (m, n) in [(1, 1), (5, 3), (3, 5), (32, 32), (33, 31), (70, 33), (33, 70), (100, 100)] {
            let a = matrix(m, n, (m * 7 + n) as f64);
            let qr = Qr::factor(&a, m, n);
            let k = m.min(n);
            for columns in [k, m] {
                let (q, r) = (qr.q(columns), qr.r(columns));
                let what = format!("{m} x {n}, {columns} columns of Q");
                assert_eq!(qr.r_transposed(columns), transpose(&r, columns, n), "{what}");
                assert_close(&product(&q, &r, m, columns, n), &a, 1e-12, &what);
                let gram = product(&transpose(&q, m, columns), &q, columns, m, columns);
                let identity: Vec<f64> =
                    (0..columns * columns).map(|i| f64::from(i % (columns + 1) == 0)).collect();
                assert_close(&gram, &identity, 1e-13, &what);
                for i in 0..columns {
                    assert!(r[i * n..i * n + i.min(n)].iter().all(|&x| x == 0.0), "{what}");
                }
            }
        }
    }

    #[test]
    fn the_reflections_are_lapacks_and_a_zero_column_needs_none() {
        // dlarfg: R's diagonal is -sign(head) times the column's length.
        let qr = Qr::factor(&[-3.0, 4.0], 2, 1);
        assert_eq!(qr.r(1), vec![5.0]);
        assert_close(&qr.q(1), &[-0.6, 0.8], 1e-15, "Q");
        // A zero first column: no reflection, and the second column is reflected as usual.
        let a = [0.0, 1.0, 0.0, 2.0];
        let qr = Qr::factor(&a, 2, 2);
        assert_eq!(qr.tau[0], 0.0);
        assert_close(&product(&qr.q(2), &qr.r(2), 2, 2, 2), &a, 1e-15, "Q R");
        // Columns whose sums of squares would overflow, or underflow, keep their length.
        for scale in [1e200, 1e-200] {
            let r = Qr::factor(&[3.0 * scale, 4.0 * scale], 2, 1).r(1)[0];
            assert!((r / scale + 5.0).abs() < 1e-15, "{r}");
        }
    }
}
