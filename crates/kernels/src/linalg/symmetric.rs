//! The eigendecomposition of a symmetric matrix ([`SymmetricEigen`]), as LAPACK's `syev`:
//! Householder reflections reduce the matrix to a tridiagonal one with the same
//! eigenvalues (`A = Q T Qᵀ`), implicit QL steps with Wilkinson's shift diagonalize `T`,
//! and each step's plane rotations, applied to `Q`, turn it into the eigenvectors. Every
//! reflection and rotation runs along contiguous rows: the reflected block is symmetric,
//! and the rotated vectors are kept as rows (`Qᵀ`).

use super::qr::make_reflector;
use super::{dot, identity, power_of_two_scale, rotate_rows};
use crate::transpose::Transpose;
use rayon::prelude::*;

/// QL steps allowed per eigenvalue before the decomposition gives up (two or three is
/// usual: the step converges cubically).
const MAX_STEPS: usize = 60;

/// The eigendecomposition `A = V diag(values) Vᵀ` of a symmetric matrix (LAPACK's `syev`,
/// PyTorch's `torch.linalg.eigh`): the eigenvalues ascending, each eigenvector a column
/// of the orthogonal `V`. Only the lower triangle of `A` is read. An eigenvector's sign is
/// not unique; these are the ones the rotations arrive at.
///
/// ```
/// use tapegrad_kernels::linalg::SymmetricEigen;
/// let eigen = SymmetricEigen::of(&[2.0, 1.0, 1.0, 2.0], 2, true);
/// assert!((eigen.values[0] - 1.0).abs() < 1e-15 && (eigen.values[1] - 3.0).abs() < 1e-15);
/// // The eigenvector of 3 is (1, 1) / √2, up to its sign.
/// assert!((eigen.vectors[1].abs() - 0.5f64.sqrt()).abs() < 1e-15);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetricEigen {
    /// The `n` eigenvalues, ascending.
    pub values: Vec<f64>,
    /// `V`, row-major `n x n` (column `j` belongs to `values[j]`); empty unless asked for.
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    /// The eigenvalues of the row-major `n x n` matrix `a` read from its lower triangle,
    /// and with `vectors` its eigenvectors. A matrix with NaN or an infinity gives NaN
    /// throughout.
    ///
    /// ```
    /// use tapegrad_kernels::linalg::SymmetricEigen;
    /// // The upper triangle is not read.
    /// let eigen = SymmetricEigen::of(&[1.0, 99.0, 0.0, 2.0], 2, false);
    /// assert_eq!((eigen.values, eigen.vectors.len()), (vec![1.0, 2.0], 0));
    /// ```
    pub fn of(a: &[f64], n: usize, vectors: bool) -> SymmetricEigen {
        assert_eq!(a.len(), n * n, "eigh: {} elements for a {n} x {n} matrix", a.len());
        let nan = |len| vec![f64::NAN; len];
        let vectors_len = if vectors { n * n } else { 0 };
        if a.iter().enumerate().any(|(i, x)| i % n.max(1) <= i / n.max(1) && !x.is_finite()) {
            return SymmetricEigen { values: nan(n), vectors: nan(vectors_len) };
        }
        // The lower triangle is all the reduction reads and writes; entries far from 1 are
        // scaled by a power of two (exactly), so that the steps' sums neither overflow nor
        // underflow.
        let mut s = vec![0.0; n * n];
        for i in 0..n {
            s[i * n..i * n + i + 1].copy_from_slice(&a[i * n..i * n + i + 1]);
        }
        let scale = power_of_two_scale(&s);
        if scale != 1.0 {
            s.iter_mut().for_each(|x| *x *= scale);
        }
        let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
        let mut tau = vec![0.0; n.saturating_sub(2)];
        crate::simd::run_widest(Tridiagonalize { s: &mut s, tau: &mut tau, d: &mut d, e: &mut e });
        // Qᵀ, whose rows become the eigenvectors as the rotations reach them.
        let mut zt = if vectors { reflections_transposed(&s, &tau, n) } else { Vec::new() };
        let ql = Ql { d: &mut d, e: &mut e, zt: vectors.then_some(zt.as_mut_slice()) };
        if !ql.run() {
            return SymmetricEigen { values: nan(n), vectors: nan(vectors_len) };
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
        let mut v = vec![0.0; vectors_len];
        if vectors {
            for (column, &from) in order.iter().enumerate() {
                for (i, &x) in zt[from * n..(from + 1) * n].iter().enumerate() {
                    v[i * n + column] = x;
                }
            }
        }
        SymmetricEigen { values: order.iter().map(|&i| d[i] / scale).collect(), vectors: v }
    }
}

/// Reduces the symmetric `s` (`n x n`, its lower triangle) to tridiagonal form: the
/// diagonal into `d`, the subdiagonal into `e` (its last entry 0). Reflection `k` maps
/// column `k` below the diagonal to `(e_k, 0, ..., 0)`; its vector (without the leading 1)
/// is kept in row `k` past the diagonal, and its scale in `tau[k]`.
struct Tridiagonalize<'a> {
    s: &'a mut [f64],
    tau: &'a mut [f64],
    d: &'a mut [f64],
    e: &'a mut [f64],
}

impl crate::simd::WidestLoop for Tridiagonalize<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Tridiagonalize { s, tau, d, e } = self;
        let n = d.len();
        for k in 0..n.saturating_sub(2) {
            d[k] = s[k * n + k];
            let rows = n - k - 1;
            let (head, trailing) = s.split_at_mut((k + 1) * n);
            // Column k below the diagonal, reflected in row k's unused upper part.
            let x = &mut head[k * n + k + 1..(k + 1) * n];
            x.iter_mut().enumerate().for_each(|(i, xi)| *xi = trailing[i * n + k]);
            tau[k] = make_reflector(x);
            e[k] = x[0];
            if tau[k] == 0.0 {
                continue;
            }
            // The trailing block B becomes H B H = B - v wᵀ - w vᵀ, with p = tau B v and
            // w = p - (tau pᵀv / 2) v; B's lower triangle, a row at a time, gives B v
            // (its part left of the diagonal counts twice: as itself and as its mirror).
            let mut v = x.to_vec();
            v[0] = 1.0;
            let lower_row = |i: usize| i * n + k + 1..i * n + k + 2 + i;
            let mut w = vec![0.0; rows];
            for i in 0..rows {
                let (left, diagonal) = trailing[lower_row(i)].split_at(i);
                w[i] += dot(left, &v[..i]) + diagonal[0] * v[i];
                let vi = v[i];
                w[..i].iter_mut().zip(left).for_each(|(wj, &b)| *wj += vi * b);
            }
            w.iter_mut().for_each(|wi| *wi *= tau[k]);
            let along = -0.5 * tau[k] * dot(&w, &v);
            w.iter_mut().zip(&v).for_each(|(wi, &vi)| *wi += along * vi);
            for i in 0..rows {
                let (vi, wi) = (v[i], w[i]);
                let row = &mut trailing[lower_row(i)];
                row.iter_mut().zip(v.iter().zip(&w)).for_each(|(x, (&vj, &wj))| {
                    *x -= vi * wj + wi * vj;
                });
            }
        }
        if n >= 2 {
            d[n - 2] = s[(n - 2) * n + n - 2];
            e[n - 2] = s[(n - 1) * n + n - 2];
        }
        if n >= 1 {
            d[n - 1] = s[n * n - 1];
        }
    }
}

/// `Qᵀ` for `Q = H_0 H_1 ... H_(n-3)`, the reflections [`Tridiagonalize`] left in `s`:
/// applied to the identity last first, so each touches only the block it changes.
fn reflections_transposed(s: &[f64], tau: &[f64], n: usize) -> Vec<f64> {
    crate::simd::run_widest(Reflections { s, tau, n })
}

/// The loop of [`reflections_transposed`], in the widest vectors.
struct Reflections<'a> {
    s: &'a [f64],
    tau: &'a [f64],
    n: usize,
}

impl crate::simd::WidestLoop for Reflections<'_> {
    type Output = Vec<f64>;

    #[inline(always)]
    fn run(self) -> Vec<f64> {
        let Reflections { s, tau, n } = self;
        let mut q = identity(n);
        for k in (0..tau.len()).rev() {
            if tau[k] == 0.0 {
                continue;
            }
            let start = k + 1;
            let mut v = s[k * n + start..(k + 1) * n].to_vec();
            v[0] = 1.0;
            // Q's block of rows and columns from `start`: minus tau v (vᵀ block).
            let mut along = vec![0.0; n - start];
            for (i, &vi) in v.iter().enumerate() {
                let row = &q[(start + i) * n + start..(start + i + 1) * n];
                along.iter_mut().zip(row).for_each(|(a, &x)| *a += vi * x);
            }
            for (i, &vi) in v.iter().enumerate() {
                let row = &mut q[(start + i) * n + start..(start + i + 1) * n];
                row.iter_mut().zip(&along).for_each(|(x, &a)| *x -= tau[k] * vi * a);
            }
        }
        let mut qt = vec![0.0; n * n];
        f64::transpose(&q, n, n, &mut qt);
        qt
    }
}

/// A plane rotation of rows `i` and `i + 1` by its cosine and sine.
type Rotation = (usize, f64, f64);

/// Vector columns rotated together: a block of all `n` rows and this many columns stays in
/// the L2 cache while a step's rotations sweep over it.
const ROTATED_COLUMNS: usize = 64;

/// Implicit QL steps with Wilkinson's shift on the tridiagonal `(d, e)` until every
/// subdiagonal entry is below the rounding of its neighbours, the eigenvalues left in `d`;
/// the steps' rotations, in order, applied to the rows of `zt` when it is given (gathered
/// until there are `n² / 2` of them, so that they cost less memory than the vectors). False
/// when an eigenvalue takes more than [`MAX_STEPS`] steps.
struct Ql<'a> {
    d: &'a mut [f64],
    e: &'a mut [f64],
    zt: Option<&'a mut [f64]>,
}

impl Ql<'_> {
    fn run(self) -> bool {
        let Ql { d, e, mut zt } = self;
        let n = d.len();
        let mut rotations: Vec<Rotation> = Vec::new();
        for l in 0..n {
            let mut steps = 0;
            loop {
                // The first negligible subdiagonal entry from `l` on ends the block.
                let mut m = l;
                while m + 1 < n && e[m].abs() > f64::EPSILON * (d[m].abs() + d[m + 1].abs()) {
                    m += 1;
                }
                if m == l {
                    break;
                }
                steps += 1;
                if steps > MAX_STEPS {
                    return false;
                }
                // The shift: the eigenvalue of the leading 2 x 2 block nearer d[l].
                let g = (d[l + 1] - d[l]) / (2.0 * e[l]);
                let mut g = d[m] - d[l] + e[l] / (g + g.hypot(1.0).copysign(g));
                let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
                let mut split = false;
                for i in (l..m).rev() {
                    let (f, b) = (s * e[i], c * e[i]);
                    let r = f.hypot(g);
                    e[i + 1] = r;
                    if r == 0.0 {
                        // An underflow split the block: go again from its new end.
                        d[i + 1] -= p;
                        e[m] = 0.0;
                        split = true;
                        break;
                    }
                    (s, c) = (f / r, g / r);
                    g = d[i + 1] - p;
                    let r = (d[i] - g) * s + 2.0 * c * b;
                    p = s * r;
                    d[i + 1] = g + p;
                    g = c * r - b;
                    if zt.is_some() {
                        rotations.push((i, c, s));
                    }
                }
                if !split {
                    d[l] -= p;
                    e[l] = g;
                    e[m] = 0.0;
                }
                if let Some(zt) = zt.as_deref_mut().filter(|_| rotations.len() >= n * n / 2) {
                    rotate_in_blocks(zt, n, &rotations);
                    rotations.clear();
                }
            }
        }
        if let Some(zt) = zt {
            rotate_in_blocks(zt, n, &rotations);
        }
        true
    }
}

/// Applies `rotations` in order to the rows of `zt` (`n x n`): a block of columns at a
/// time, copied out so that it is contiguous, the blocks on the threads when the work is
/// worth it (each column's arithmetic is the same wherever it runs).
fn rotate_in_blocks(zt: &mut [f64], n: usize, rotations: &[Rotation]) {
    if rotations.is_empty() {
        return;
    }
    let starts: Vec<usize> = (0..n).step_by(ROTATED_COLUMNS).collect();
    let rotate_block = |&start: &usize| {
        let width = ROTATED_COLUMNS.min(n - start);
        let mut block = Vec::with_capacity(n * width);
        zt.chunks_exact(n).for_each(|row| block.extend_from_slice(&row[start..start + width]));
        crate::simd::run_widest(RotateRows { block: &mut block, width, rotations });
        block
    };
    let work = rotations.len().saturating_mul(6 * n);
    let blocks: Vec<Vec<f64>> = if starts.len() > 1 && crate::parallel::start_parallel(work) {
        starts.par_iter().map(rotate_block).collect()
    } else {
        starts.iter().map(rotate_block).collect()
    };
    for (&start, block) in starts.iter().zip(&blocks) {
        let width = ROTATED_COLUMNS.min(n - start);
        for (row, part) in zt.chunks_exact_mut(n).zip(block.chunks_exact(width)) {
            row[start..start + width].copy_from_slice(part);
        }
    }
}

/// Rotations applied, in order, to the rows of a block `width` wide.
struct RotateRows<'a> {
    block: &'a mut [f64],
    width: usize,
    rotations: &'a [Rotation],
}

impl crate::simd::WidestLoop for RotateRows<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for &(i, c, s) in self.rotations {
            rotate_rows(self.block, self.width, i, i + 1, c, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::tests::product;

    fn matrix(m: usize, n: usize, seed: f64) -> Vec<f64> {
        (0..m * n).map(|i| ((i as f64 + seed) * 0.7548776662).sin() * 2.0).collect()
    }

    fn transposed(a: &[f64], m: usize, n: usize) -> Vec<f64> {
        (0..m * n).map(|i| a[(i % m) * n + i / m]).collect()
    }

    fn worst(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// Checks `A V = V diag(values)`, `Vᵀ V = I` and the order, for the symmetric `a`.
    fn assert_decomposes(a: &[f64], n: usize, eigen: &SymmetricEigen, what: &str) {
        let v = &eigen.vectors;
        let gram = product(&transposed(v, n, n), v, n, n, n);
        assert!(worst(&gram, &identity(n)) < 1e-13, "{what}: V not orthonormal");
        assert!(eigen.values.windows(2).all(|w| w[0] <= w[1]), "{what}: not ascending");
        let av = product(a, v, n, n, n);
        let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs())) * n as f64;
        for (j, &lambda) in eigen.values.iter().enumerate() {
            let residual = (0..n).map(|i| (av[i * n + j] - lambda * v[i * n + j]).abs());
            let residual = residual.fold(0.0, f64::max);
            assert!(residual < 1e-14 * scale, "{what}: value {j} off by {residual}");
        }
    }

    #[test]
    fn eigenvectors_diagonalize_the_matrix_and_the_values_ascend() {
        for n in [1, 2, 3, 7, 20, 41, 100] {
            let b = matrix(n, n, n as f64);
            // A symmetric matrix, with garbage above the diagonal that must not be read.
            let mut a = product(&b, &transposed(&b, n, n), n, n, n);
            (0..n).for_each(|i| a[i * n + i] -= 3.0);
            let symmetric = a.clone();
            (0..n).for_each(|i| (i + 1..n).for_each(|j| a[i * n + j] = f64::NAN));
            let eigen = SymmetricEigen::of(&a, n, true);
            assert_decomposes(&symmetric, n, &eigen, &format!("{n} x {n}"));
            let values_only = SymmetricEigen::of(&a, n, false);
            assert!(values_only.vectors.is_empty());
            assert!(worst(&values_only.values, &eigen.values) < 1e-13 * n as f64);
        }
    }

    #[test]
    fn repeated_eigenvalues_and_matrices_already_tridiagonal_or_diagonal() {
        // The identity: every vector is an eigenvector.
        let eigen = SymmetricEigen::of(&identity(3), 3, true);
        assert_eq!((eigen.values, eigen.vectors), (vec![1.0; 3], identity(3)));
        // A projection of rank 2 in 4 dimensions: eigenvalues 0, 0, 1, 1.
        let u = [[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5]];
        let a: Vec<f64> =
            (0..16).map(|i| u.iter().map(|r| r[i / 4] * r[i % 4]).sum::<f64>()).collect();
        let eigen = SymmetricEigen::of(&a, 4, true);
        assert_decomposes(&a, 4, &eigen, "projection");
        assert!(worst(&eigen.values, &[0.0, 0.0, 1.0, 1.0]) < 1e-15);
        // The second difference matrix (tridiagonal): 2 - 2 cos(k π / 6).
        let n: usize = 5;
        let a: Vec<f64> = (0..n * n)
            .map(|i| match (i / n).abs_diff(i % n) {
                0 => 2.0,
                1 => -1.0,
                _ => 0.0,
            })
            .collect();
        let eigen = SymmetricEigen::of(&a, n, true);
        assert_decomposes(&a, n, &eigen, "second difference");
        let expected: Vec<f64> =
            (1..=n).map(|k| 2.0 - 2.0 * (k as f64 * std::f64::consts::PI / 6.0).cos()).collect();
        assert!(worst(&eigen.values, &expected) < 1e-15);
        assert!(SymmetricEigen::of(&[f64::NAN, 0.0, 0.0, 1.0], 2, true).values[1].is_nan());
        assert_eq!(SymmetricEigen::of(&[], 0, true).values, Vec::<f64>::new());
    }

    #[test]
    fn entries_far_from_one_keep_their_eigenvalues() {
        for scale in [1e-200, 1e200, f64::MAX / 4.0] {
            let a = [2.0, 1.0, 1.0, 2.0].map(|x| x * scale);
            let values = SymmetricEigen::of(&a, 2, false).values;
            assert!(
                (values[0] / scale - 1.0).abs() < 1e-15 && (values[1] / scale - 3.0).abs() < 1e-15
            );
        }
    }
}
