//! The singular value decomposition ([`Svd`]) by one-sided Jacobi rotations: each rotation
//! makes two columns orthogonal, and sweeps over all pairs repeat until every pair is
//! orthogonal to within rounding. The method is accurate to the last bits of the small
//! singular values as well as the large ones, and its rotations run along contiguous rows:
//! the matrix whose columns rotate is kept transposed. A tall matrix is first reduced to
//! its square `R` by [`Qr`], so the sweeps work on `n x n` whatever `m` is.

use super::{Qr, dot, identity, norm, power_of_two_scale, rotate_rows};

/// Sweeps after which the rotations stop even if some pair is still above the threshold
/// (a handful is usual: the off-diagonal part shrinks quadratically once it is small).
const MAX_SWEEPS: usize = 64;

/// The singular value decomposition `A = U diag(s) Vᵀ` (LAPACK's `gesvd`, PyTorch's
/// `torch.linalg.svd`): `s` descending and non-negative, `U` and `V` with orthonormal
/// columns. A pair of singular vectors' common sign is not unique; these are the ones the
/// rotations arrive at.
///
/// ```
/// use tapegrad_kernels::linalg::Svd;
/// // [[3, 0], [4, 5]] has singular values √45 and √5.
/// let svd = Svd::of(&[3.0, 0.0, 4.0, 5.0], 2, 2, false, true);
/// assert!((svd.s[0] - 45f64.sqrt()).abs() < 1e-14 && (svd.s[1] - 5f64.sqrt()).abs() < 1e-14);
/// // U diag(s) Vᵀ is A again: its first entry.
/// let a00 = svd.u[0] * svd.s[0] * svd.vt[0] + svd.u[1] * svd.s[1] * svd.vt[2];
/// assert!((a00 - 3.0).abs() < 1e-14);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Svd {
    /// `U`, row-major `m x k` (`m x m` for the full decomposition); empty unless asked for.
    pub u: Vec<f64>,
    /// The `k = min(m, n)` singular values, descending.
    pub s: Vec<f64>,
    /// `Vᵀ`, row-major `k x n` (`n x n` for the full decomposition); empty unless asked for.
    pub vt: Vec<f64>,
}

impl Svd {
    /// The singular values of the row-major `m x n` matrix `a` and, with `vectors`, its
    /// singular vectors: `min(m, n)` of each side, or with `full` a whole orthonormal
    /// basis on both (the ones past `min(m, n)` completing it). NaN or an infinity in `a`
    /// gives NaN throughout.
    ///
    /// ```
    /// use tapegrad_kernels::linalg::Svd;
    /// let svd = Svd::of(&[0.0, 2.0, 0.0], 3, 1, true, true); // a column (0, 2, 0)
    /// assert_eq!((svd.s, svd.u.len(), svd.vt.len()), (vec![2.0], 9, 1));
    /// ```
    pub fn of(a: &[f64], m: usize, n: usize, full: bool, vectors: bool) -> Svd {
        assert_eq!(a.len(), m * n, "svd: {} elements for a {m} x {n} matrix", a.len());
        if m * n == 0 {
            // No singular value; a full decomposition's bases are the identities.
            let basis = |size| if vectors && full { identity(size) } else { Vec::new() };
            return Svd { u: basis(m), s: Vec::new(), vt: basis(n) };
        }
        if m < n {
            // Aᵀ = V S Uᵀ: the tall case, its sides exchanged.
            let mut at = vec![0.0; m * n];
            transpose(a, m, n, &mut at);
            let tall = Svd::of(&at, n, m, full, vectors);
            if !vectors {
                return tall;
            }
            let (u_columns, v_rows) = if full { (m, n) } else { (m, m) };
            let mut u = vec![0.0; tall.vt.len()];
            transpose(&tall.vt, u_columns, m, &mut u);
            let mut vt = vec![0.0; tall.u.len()];
            transpose(&tall.u, n, v_rows, &mut vt);
            return Svd { u, s: tall.s, vt };
        }
        if a.iter().any(|x| !x.is_finite()) {
            let (u_len, vt_len) =
                if vectors { (m * if full { m } else { n }, n * n) } else { (0, 0) };
            let nan = |len| vec![f64::NAN; len];
            return Svd { u: nan(u_len), s: nan(n), vt: nan(vt_len) };
        }
        // Entries far from 1 are scaled by a power of two (exactly), so that the columns'
        // sums of squares neither overflow nor underflow.
        let scale = power_of_two_scale(a);
        let scaled: Vec<f64>;
        let a = if scale == 1.0 {
            a
        } else {
            scaled = a.iter().map(|x| x * scale).collect();
            &scaled
        };
        // Work on the square R of A = Q R when A is tall; its columns (rows of `w`) rotate.
        let qr = (m > n).then(|| Qr::factor(a, m, n));
        let mut w = vec![0.0; n * n];
        match &qr {
            Some(qr) => w = qr.r_transposed(n),
            None => transpose(a, n, n, &mut w),
        }
        let mut vt = if vectors { identity(n) } else { Vec::new() };
        crate::simd::run_widest(OneSided { w: &mut w, vt: &mut vt, n });
        let lengths: Vec<f64> = w.chunks_exact(n.max(1)).map(norm).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| lengths[j].total_cmp(&lengths[i]));
        let s: Vec<f64> = order.iter().map(|&i| lengths[i] / scale).collect();
        if !vectors {
            return Svd { u: Vec::new(), s, vt: Vec::new() };
        }
        // R's left vectors (as rows): its rotated columns over their lengths, the ones of
        // zero length completed to an orthonormal basis.
        let mut ub = vec![0.0; n * n];
        let mut missing = Vec::new();
        for (row, &from) in ub.chunks_exact_mut(n).zip(&order) {
            if lengths[from] > 0.0 {
                let column = &w[from * n..(from + 1) * n];
                row.iter_mut().zip(column).for_each(|(u, &x)| *u = x / lengths[from]);
            } else {
                missing.push(true);
                continue;
            }
            missing.push(false);
        }
        complete_basis(&mut ub, n, &missing);
        let vt: Vec<f64> = order.iter().flat_map(|&i| vt[i * n..(i + 1) * n].to_vec()).collect();
        let u = match qr {
            None => {
                let mut u = vec![0.0; n * n];
                transpose(&ub, n, n, &mut u);
                u
            }
            Some(qr) => {
                // U = Q [[U_R, 0], [0, I]]: Q's first n columns times U_R, then the rest of Q.
                let columns = if full { m } else { n };
                let q = qr.q(columns);
                let mut u = vec![0.0; m * columns];
                for (u_row, q_row) in u.chunks_exact_mut(columns).zip(q.chunks_exact(columns)) {
                    for (j, ub_row) in ub.chunks_exact(n).enumerate() {
                        u_row[j] = dot(&q_row[..n], ub_row);
                    }
                    u_row[n..].copy_from_slice(&q_row[n..]);
                }
                u
            }
        };
        Svd { u, s, vt }
    }
}

/// One-sided Jacobi sweeps: rotates pairs of `w`'s rows (the matrix's columns) until each
/// pair is orthogonal to within rounding, with the rotations gathered into `vt`'s rows
/// when it is not empty.
struct OneSided<'a> {
    w: &'a mut [f64],
    vt: &'a mut [f64],
    n: usize,
}

impl crate::simd::WidestLoop for OneSided<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let OneSided { w, vt, n } = self;
        for _ in 0..MAX_SWEEPS {
            let mut rotated = false;
            // The columns' squared lengths, taken afresh each sweep and kept up to date by
            // each rotation (which moves `t gamma` from one to the other).
            let mut squares: Vec<f64> = w.chunks_exact(n).map(|row| dot(row, row)).collect();
            for p in 0..n {
                for q in p + 1..n {
                    let gamma = dot(&w[p * n..(p + 1) * n], &w[q * n..(q + 1) * n]);
                    let (alpha, beta) = (squares[p], squares[q]);
                    if gamma.abs() <= f64::EPSILON * alpha.sqrt() * beta.sqrt() || gamma == 0.0 {
                        continue;
                    }
                    rotated = true;
                    let t = tangent((beta - alpha) / (2.0 * gamma));
                    (squares[p], squares[q]) = (alpha - t * gamma, beta + t * gamma);
                    let c = 1.0 / (1.0 + t * t).sqrt();
                    rotate_rows(w, n, p, q, c, t * c);
                    if !vt.is_empty() {
                        rotate_rows(vt, n, p, q, c, t * c);
                    }
                }
            }
            if !rotated {
                break;
            }
        }
    }
}

/// The tangent of the smaller rotation angle `φ` with `cot 2φ = theta` (Rutishauser's
/// form, which keeps the rotation small when the pair is nearly done).
#[inline(always)]
fn tangent(theta: f64) -> f64 {
    if theta.abs() > 1e150 {
        // theta² would overflow; the root is 1 / (2 theta) to all digits here.
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    }
}

/// Fills the rows of `rows` (`n` of `n`) marked `missing` so that all are orthonormal,
/// the others being so already: each from the unit vector least inside the ones present,
/// orthogonalized against them twice.
fn complete_basis(rows: &mut [f64], n: usize, missing: &[bool]) {
    let mut present: Vec<usize> = (0..n).filter(|&i| !missing[i]).collect();
    for slot in (0..n).filter(|&i| missing[i]) {
        let outside = |axis: usize| -> f64 {
            1.0 - present.iter().map(|&r| rows[r * n + axis].powi(2)).sum::<f64>()
        };
        let axis = (0..n).max_by(|&a, &b| outside(a).total_cmp(&outside(b))).expect("n > 0");
        let mut x = vec![0.0; n];
        x[axis] = 1.0;
        for _ in 0..2 {
            for &r in &present {
                let row = &rows[r * n..(r + 1) * n];
                let along = dot(row, &x);
                x.iter_mut().zip(row).for_each(|(xi, &ri)| *xi -= along * ri);
            }
        }
        let length = norm(&x);
        rows[slot * n..(slot + 1) * n].iter_mut().zip(&x).for_each(|(r, &xi)| *r = xi / length);
        present.push(slot);
    }
}

/// `out` (`n x m`) = `a`ᵀ for the row-major `m x n` `a`.
fn transpose(a: &[f64], m: usize, n: usize, out: &mut [f64]) {
    for i in 0..m {
        for j in 0..n {
            out[j * m + i] = a[i * n + j];
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
        let mut out = vec![0.0; m * n];
        transpose(a, m, n, &mut out);
        out
    }

    fn worst(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    }

    /// `xᵀ x` is the `columns x columns` identity, for `x` of `rows x columns`.
    fn assert_orthonormal_columns(x: &[f64], rows: usize, columns: usize, what: &str) {
        let gram = product(&transposed(x, rows, columns), x, columns, rows, columns);
        let off = worst(&gram, &identity(columns));
        assert!(off < 1e-13, "{what}: columns off orthonormal by {off}");
    }

    #[test]
    fn singular_vectors_rebuild_the_matrix_in_both_shapes_and_modes() {
        for (m, n) in [(1, 1), (1, 4), (4, 1), (3, 3), (5, 3), (3, 5), (40, 17), (17, 40), (33, 33)]
        {
            let a = matrix(m, n, (3 * m + n) as f64);
            let k = m.min(n);
            for full in [false, true] {
                let what = format!("{m} x {n}, full {full}");
                let svd = Svd::of(&a, m, n, full, true);
                let (u_columns, v_rows) = if full { (m, n) } else { (k, k) };
                assert_eq!((svd.u.len(), svd.vt.len()), (m * u_columns, v_rows * n), "{what}");
                assert!(svd.s.windows(2).all(|w| w[0] >= w[1]) && svd.s[k - 1] >= 0.0);
                assert_orthonormal_columns(&svd.u, m, u_columns, &what);
                assert_orthonormal_columns(&transposed(&svd.vt, v_rows, n), n, v_rows, &what);
                // U[:, :k] diag(s) Vᵀ[:k, :] = A.
                let mut us = vec![0.0; m * k];
                for i in 0..m {
                    for j in 0..k {
                        us[i * k + j] = svd.u[i * u_columns + j] * svd.s[j];
                    }
                }
                let rebuilt = product(&us, &svd.vt[..k * n], m, k, n);
                assert!(
                    worst(&rebuilt, &a) < 1e-13,
                    "{what}: U S Vᵀ off by {}",
                    worst(&rebuilt, &a)
                );
                let values = Svd::of(&a, m, n, full, false);
                assert!(values.u.is_empty() && worst(&values.s, &svd.s) < 1e-13, "{what}");
            }
        }
    }

    #[test]
    fn a_rank_deficient_matrix_gets_a_whole_basis() {
        // Rank one: u vᵀ with u = (1, 2, 2) / 3 and v = (0, 3, 4) / 5, times 10.
        let (u, v) = ([1.0, 2.0, 2.0].map(|x| x / 3.0), [0.0, 3.0, 4.0].map(|x| x / 5.0));
        let a: Vec<f64> = (0..9).map(|i| 10.0 * u[i / 3] * v[i % 3]).collect();
        let svd = Svd::of(&a, 3, 3, false, true);
        assert!(
            (svd.s[0] - 10.0).abs() < 1e-14 && svd.s[1].abs() < 1e-14 && svd.s[2].abs() < 1e-14
        );
        assert_orthonormal_columns(&svd.u, 3, 3, "U");
        assert_orthonormal_columns(&transposed(&svd.vt, 3, 3), 3, 3, "V");
        // No entries: no singular value, and identities for the full bases.
        let empty = Svd::of(&[], 0, 3, true, true);
        assert_eq!((empty.s.len(), empty.u.len(), empty.vt), (0, 0, identity(3)));
        assert_eq!(Svd::of(&[], 2, 0, false, true).u.len(), 0);
        // The zero matrix: singular values 0 and identity-like bases.
        let zero = Svd::of(&[0.0; 6], 2, 3, true, true);
        assert_eq!(zero.s, vec![0.0, 0.0]);
        assert_orthonormal_columns(&zero.u, 2, 2, "U of zero");
        assert_orthonormal_columns(&transposed(&zero.vt, 3, 3), 3, 3, "V of zero");
    }

    #[test]
    fn singular_values_keep_their_digits_at_the_ends_of_the_range() {
        // diag(big, small) rotated: neither the squares' overflow nor their underflow may
        // lose a value.
        let (c, s) = (0.6, 0.8);
        for (big, small) in [(1e200, 1e170), (1e-170, 1e-200), (1.0, 1e-20)] {
            let a = [c * big, -s * small, s * big, c * small];
            let svd = Svd::of(&a, 2, 2, false, false);
            assert!((svd.s[0] / big - 1.0).abs() < 1e-15, "{:?}", svd.s);
            assert!((svd.s[1] / small - 1.0).abs() < 1e-14, "{:?}", svd.s);
        }
        // Subnormal entries alone (their own precision is about 44 bits).
        let s = Svd::of(&[3e-310, 4e-310], 1, 2, false, false).s;
        assert!((s[0] / 5e-310 - 1.0).abs() < 1e-12, "{s:?}");
    }
}
