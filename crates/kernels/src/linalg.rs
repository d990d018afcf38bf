//! Dense linear algebra on one matrix at a time, in f64 (an f32 tensor's matrices are
//! widened first: the work is cubic in the size, the conversion quadratic): the Cholesky
//! factor of a symmetric positive-definite matrix and the solution of a triangular
//! system, what Gaussian-process likelihoods and whitening are made of. Rows are
//! row-major and contiguous; a system's right-hand sides are the columns of `B`, updated a
//! row at a time so the inner loops run along contiguous rows.

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
        for j in 0..=i {
            let (row_i, row_j) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let dot: f64 = row_i.iter().zip(row_j).map(|(x, y)| x * y).sum();
            let s = a[i * n + j] - dot;
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
    let mut solve_row = |i: usize, solved: &mut dyn Iterator<Item = usize>| {
        // Row i of X: (row i of B - sum of A[i][j] times row j of X) / A[i][i].
        for j in solved {
            let coefficient = a[i * n + j];
            let (row_i, row_j) = if i < j {
                let (head, tail) = b.split_at_mut(j * k);
                (&mut head[i * k..i * k + k], &tail[..k])
            } else {
                let (head, tail) = b.split_at_mut(i * k);
                (&mut tail[..k], &head[j * k..j * k + k])
            };
            for (x, &y) in row_i.iter_mut().zip(row_j) {
                *x -= coefficient * y;
            }
        }
        if !unit_diagonal {
            let pivot = a[i * n + i];
            b[i * k..i * k + k].iter_mut().for_each(|x| *x /= pivot);
        }
    };
    if upper {
        for i in (0..n).rev() {
            solve_row(i, &mut (i + 1..n));
        }
    } else {
        for i in 0..n {
            solve_row(i, &mut (0..i));
        }
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

    #[test]
    fn the_factor_times_its_transpose_gives_back_the_matrix() {
        let n = 5;
        // A = M Mᵀ + n I, positive definite.
        let m: Vec<f64> = (0..n * n).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let mt: Vec<f64> = (0..n * n).map(|i| m[(i % n) * n + i / n]).collect();
        let mut a = product(&m, &mt, n, n, n);
        (0..n).for_each(|i| a[i * n + i] += n as f64);
        let l = cholesky(&a, n).unwrap();
        assert!((0..n).all(|i| (i + 1..n).all(|j| l[i * n + j] == 0.0)), "lower triangular");
        let lt: Vec<f64> = (0..n * n).map(|i| l[(i % n) * n + i / n]).collect();
        let back = product(&l, &lt, n, n, n);
        assert!(back.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-12 * y.abs().max(1.0)));
        // Only the lower triangle is read.
        let mut scribbled = a.clone();
        scribbled[1] = f64::NAN;
        assert_eq!(cholesky(&scribbled, n).unwrap(), l);
    }

    #[test]
    fn a_matrix_that_is_not_positive_definite_names_its_minor() {
        assert_eq!(cholesky(&[-1.0], 1), Err(NotPositiveDefinite { order: 1 }));
        let a = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, f64::NAN];
        assert_eq!(cholesky(&a, 3), Err(NotPositiveDefinite { order: 3 }));
        assert_eq!(cholesky(&[], 0), Ok(vec![]));
    }

    #[test]
    fn triangular_solves_invert_the_product() {
        let n = 4;
        let k = 3;
        let lower: Vec<f64> = (0..n * n)
            .map(|i| match (i / n, i % n) {
                (r, c) if r == c => 2.0 + r as f64,
                (r, c) if c < r => (r + 2 * c) as f64 / 5.0 - 0.4,
                _ => 0.0,
            })
            .collect();
        let upper: Vec<f64> = (0..n * n).map(|i| lower[(i % n) * n + i / n]).collect();
        let x: Vec<f64> = (0..n * k).map(|i| (i as f64 - 5.0) / 2.0).collect();
        for (a, is_upper) in [(&lower, false), (&upper, true)] {
            let mut b = product(a, &x, n, n, k);
            solve_triangular(a, &mut b, n, k, is_upper, false);
            assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-12), "{b:?}");
            // With a unit diagonal the stored diagonal is not read.
            let mut unit = a.clone();
            (0..n).for_each(|i| unit[i * n + i] = 1.0);
            let mut b = product(&unit, &x, n, n, k);
            let mut ignored = a.clone();
            (0..n).for_each(|i| ignored[i * n + i] = f64::NAN);
            solve_triangular(&ignored, &mut b, n, k, is_upper, true);
            assert!(b.iter().zip(&x).all(|(p, q)| (p - q).abs() < 1e-12), "{b:?}");
        }
    }
}
