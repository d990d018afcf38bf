//! Spectral decompositions: the eigendecomposition of symmetric matrices ([`eigh`],
//! [`eigvalsh`]) and the singular value decomposition ([`svd`], [`svdvals`]), each one
//! recorded op whose output packs every factor, so its rule sees all their gradients; the
//! values from `tapegrad_kernels::linalg` (tridiagonal QL for `eigh`, one-sided Jacobi
//! rotations for `svd`). The rules are PyTorch's, written with recorded ops, so they
//! differentiate again. Like PyTorch's, they divide by the gaps between eigenvalues (or
//! squared singular values): at a repeated one the gradient through the vectors is
//! infinite or NaN, while a loss of the values alone (through [`eigvalsh`], [`svdvals`],
//! or a decomposition whose vectors get no gradient) stays finite.

use std::panic::Location;

use tapegrad_kernels::linalg as kernels;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Error, Result, Tensor, ensure_float, is_grad_enabled, or_panic, record_with_tangent,
};

use super::{from_f64, is_differentiated, square_matrices};
use crate::prelude::*;

/// The eigenvalues (ascending) and eigenvectors (the columns of `V`) of each symmetric
/// matrix, `A = V diag(L) Vᵀ` (PyTorch's `torch.linalg.eigh` with its default
/// `UPLO='L'`: only the lower triangle is read). An eigenvector's sign is not unique (as
/// in PyTorch, whose signs may differ): a loss should not depend on it. Differentiable to
/// any order and in forward mode where the eigenvalues are distinct; the gradient is the
/// symmetric one PyTorch gives.
///
/// ```
/// use tapegrad_ops::{linalg, prelude::*};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 2.0], &[2, 2]);
/// let (l, v) = linalg::eigh(&a);
/// assert!((&l - &Tensor::from_vec(vec![1.0, 3.0], &[2])).abs().max().item() < 1e-15);
/// // V diag(L) Vᵀ is A again.
/// let rebuilt = v.matmul(&(&l.unsqueeze(-1) * &v.transpose(0, 1)));
/// assert!((&rebuilt - &a).abs().max().item() < 1e-15);
/// ```
#[track_caller]
pub fn eigh(a: &Tensor) -> (Tensor, Tensor) {
    or_panic(try_eigh(a))
}

/// [`eigh`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_eigh(&Tensor::zeros(&[2, 3])).is_err()); // not square
/// ```
#[track_caller]
pub fn try_eigh(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let (_, n) = square_matrices("eigh", a, location)?;
    let out = packed_eigh(a, n);
    let packed = record_with_tangent(
        "eigh",
        location,
        &[a],
        out,
        || {
            Backward::new(move |ctx| {
                let (l, v) = unpack_eigh(ctx.output(), n);
                let (gl, gv) = unpack_eigh(ctx.grad(), n);
                // Only the eigenvalues reached the loss: PyTorch's rule without the term that
                // divides by the gaps (0 / 0 at a repeated eigenvalue).
                let ga = if is_zero(&gv) {
                    v.matmul(&(&gl.unsqueeze(-1) * &v.transpose(-2, -1)))
                } else {
                    eigh_backward(&l, &v, &gl, &gv)
                };
                smallvec![Some(ga)]
            })
            .save_output()
        },
        move |ctx| {
            let da = ctx.tangent(0).expect("a tangent for the one input");
            let (l, v) = unpack_eigh(ctx.output(), n);
            let (dl, dv) = eigh_tangent(&l, &v, da);
            crate::cat(&[&dv, &dl.unsqueeze(-2)], -2)
        },
    );
    Ok(unpack_eigh(&packed, n))
}

/// The decompositions of `a`'s `n x n` matrices, untracked: each `V`'s `n` rows above a
/// row of its eigenvalues.
fn packed_eigh(a: &Tensor, n: usize) -> Tensor {
    let batch = &a.shape()[..a.dim() - 2];
    let packed = if n == 0 {
        Vec::new()
    } else {
        let cost = 8 * n * n * n;
        kernels::map_matrices(&a.to_vec::<f64>(), n * n, cost, |matrix| {
            let eigen = kernels::SymmetricEigen::of(matrix, n, true);
            let mut packed = eigen.vectors;
            packed.extend(eigen.values);
            packed
        })
        .concat()
    };
    let shape: Vec<usize> = batch.iter().copied().chain([n + 1, n]).collect();
    from_f64(packed, &shape, a.dtype())
}

/// The eigenvalues of each symmetric matrix, ascending (PyTorch's `torch.linalg.eigvalsh`;
/// the lower triangle is read). Without a gradient to take, the eigenvectors are not
/// formed. Its gradient, `V diag(gL) Vᵀ`, is finite even at repeated eigenvalues (where
/// the vectors' term of [`eigh`]'s rule is not); its second derivative divides by the
/// gaps.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![4.0f32, 0.0, 0.0, -1.0], &[2, 2]);
/// assert_eq!(linalg::eigvalsh(&a).to_vec::<f32>(), vec![-1.0, 4.0]);
/// ```
#[track_caller]
pub fn eigvalsh(a: &Tensor) -> Tensor {
    or_panic(try_eigvalsh(a))
}

/// [`eigvalsh`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_eigvalsh(&Tensor::zeros(&[3])).is_err()); // a vector
/// ```
#[track_caller]
pub fn try_eigvalsh(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (_, n) = square_matrices("eigvalsh", a, location)?;
    if is_differentiated(a) {
        let (l, v) = unpack_eigh(&packed_eigh(a, n), n);
        let eigenvectors = |a: &Tensor| {
            let v = eigh(a).1;
            (v.clone(), v)
        };
        return Ok(record_values(
            "eigvalsh",
            location,
            a,
            l.contiguous(),
            (v.clone(), v),
            eigenvectors,
        ));
    }
    let values = if n == 0 {
        Vec::new()
    } else {
        kernels::map_matrices(&a.to_vec::<f64>(), n * n, 4 * n * n * n, |matrix| {
            kernels::SymmetricEigen::of(matrix, n, false).values
        })
        .concat()
    };
    Ok(from_f64(values, &a.shape()[..a.dim() - 1], a.dtype()))
}

/// Eigenvalues or singular values as an op of their own: `gA = X diag(g) Yᵀ` and
/// `dv = diag(Xᵀ dA Y)`, with `X` and `Y` the left and right vectors (both `V` for
/// eigenvalues, `U` and `V` for singular values), which divides by no gap. A plain backward
/// uses the vectors of the forward pass; a recorded one (and a tangent) takes them from
/// `decompose`, so that they differentiate again.
fn record_values(
    op: &'static str,
    location: &'static Location<'static>,
    a: &Tensor,
    values: Tensor,
    vectors: (Tensor, Tensor),
    decompose: fn(&Tensor) -> (Tensor, Tensor),
) -> Tensor {
    record_with_tangent(
        op,
        location,
        &[a],
        values,
        || {
            let forward = vectors.clone();
            Backward::new(move |ctx| {
                let (x, y) =
                    if is_grad_enabled() { decompose(ctx.saved(0)) } else { forward.clone() };
                let scaled = &ctx.grad().unsqueeze(-1) * &y.transpose(-2, -1);
                smallvec![Some(x.matmul(&scaled))]
            })
            .save(a)
        },
        |ctx| {
            let da = ctx.tangent(0).expect("a tangent for the one input");
            let (x, y) = decompose(ctx.input(0));
            (&x * &da.matmul(&y)).sum_dim(-2, false)
        },
    )
}

/// Whether every element of `x` is zero: a factor the loss does not use, whose part of
/// the packed gradient is the zeros that `narrow`'s rule pads with.
fn is_zero(x: &Tensor) -> bool {
    x.to_vec::<f64>().iter().all(|&v| v == 0.0)
}

/// The eigenvalues and `V` from their packed form: `V`'s `n` rows above the eigenvalues.
fn unpack_eigh(packed: &Tensor, n: usize) -> (Tensor, Tensor) {
    (packed.narrow(-2, n, 1).squeeze_dim(-2), packed.narrow(-2, 0, n))
}

/// `gA = V (skew(Vᵀ gV) / (2 E) + diag(gL)) Vᵀ` with `E_ij = L_j - L_i` (PyTorch's rule;
/// the quotient is symmetric, so is `gA`).
fn eigh_backward(l: &Tensor, v: &Tensor, gl: &Tensor, gv: &Tensor) -> Tensor {
    let vt = v.transpose(-2, -1);
    let inner = vt.matmul(gv);
    let skew = (&inner - &inner.transpose(-2, -1)).mul_scalar(0.5);
    let middle = &(&skew * &inverse_gaps(l)) + &diagonal_matrix(gl);
    v.matmul(&middle).matmul(&vt)
}

/// `dL = diag(P)` and `dV = V (P / E)` off the diagonal, for `P = Vᵀ dA V`.
fn eigh_tangent(l: &Tensor, v: &Tensor, da: &Tensor) -> (Tensor, Tensor) {
    let p = v.transpose(-2, -1).matmul(da).matmul(v);
    (p.diagonal(0, -2, -1), v.matmul(&(&p * &inverse_gaps(l))))
}

/// `F_ij = 1 / (x_j - x_i)` off the diagonal and 0 on it, for the vectors `x` `[*, k]`.
fn inverse_gaps(x: &Tensor) -> Tensor {
    let k = x.shape()[x.dim() - 1];
    let eye = Tensor::eye_dtype(k, x.dtype());
    let gaps = &(&x.unsqueeze(-2) - &x.unsqueeze(-1)) + &eye;
    &eye.rsub_scalar(1.0) / &gaps
}

/// The diagonal matrices `[*, k, k]` of the vectors `x` `[*, k]`.
fn diagonal_matrix(x: &Tensor) -> Tensor {
    &x.unsqueeze(-1) * &Tensor::eye_dtype(x.shape()[x.dim() - 1], x.dtype())
}

/// The keyword of [`svd_with`]: PyTorch's `full_matrices` (default true: `U` of `m x m`
/// and `Vᴴ` of `n x n`; false: `m x k` and `k x n`, `k = min(m, n)`).
///
/// ```
/// use tapegrad_ops::linalg::SvdOptions;
/// assert!(SvdOptions::default().is_full_matrices());
/// assert!(!SvdOptions::default().full_matrices(false).is_full_matrices());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvdOptions {
    full_matrices: bool,
}

impl Default for SvdOptions {
    fn default() -> Self {
        SvdOptions { full_matrices: true }
    }
}

impl SvdOptions {
    /// Whether `U` and `Vᴴ` are whole orthonormal bases (square) or only their first
    /// `min(m, n)` vectors.
    ///
    /// ```
    /// let options = tapegrad_ops::linalg::SvdOptions::default().full_matrices(false);
    /// assert!(!options.is_full_matrices());
    /// ```
    pub fn full_matrices(mut self, full_matrices: bool) -> Self {
        self.full_matrices = full_matrices;
        self
    }

    /// The `full_matrices` setting.
    ///
    /// ```
    /// assert!(tapegrad_ops::linalg::SvdOptions::default().is_full_matrices());
    /// ```
    pub fn is_full_matrices(&self) -> bool {
        self.full_matrices
    }
}

/// The singular value decomposition of each matrix, `A = U diag(S) Vᴴ` (PyTorch's
/// `torch.linalg.svd`, with its default `full_matrices=True`): `S` descending, `U` of
/// `m x m` and `Vᴴ` of `n x n` orthogonal. A pair of singular vectors' common sign is not
/// unique (as in PyTorch, whose signs may differ): a loss should not depend on it.
/// Differentiable to any order and in forward mode where the singular values are
/// distinct and, for a non-square matrix, not zero; as in PyTorch, the vectors past
/// `min(m, n)` of the full decomposition are constants to the rules.
///
/// ```
/// use tapegrad_ops::{linalg, prelude::*};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![3.0f64, 0.0, 4.0, 5.0, 0.0, 0.0], &[3, 2]);
/// let (u, s, vh) = linalg::svd(&a);
/// assert_eq!((u.shape(), s.shape(), vh.shape()), (&[3, 3][..], &[2][..], &[2, 2][..]));
/// assert!((&s - &Tensor::from_vec(vec![45f64.sqrt(), 5f64.sqrt()], &[2])).abs().max().item() < 1e-14);
/// // U[:, :2] diag(S) Vᴴ is A again.
/// let rebuilt = u.narrow(1, 0, 2).matmul(&(&s.unsqueeze(-1) * &vh));
/// assert!((&rebuilt - &a).abs().max().item() < 1e-14);
/// ```
#[track_caller]
pub fn svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
    or_panic(try_svd_with(a, SvdOptions::default()))
}

/// [`svd`] with PyTorch's keyword ([`SvdOptions`]).
///
/// ```
/// use tapegrad_ops::linalg::{self, SvdOptions};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::randn(&[5, 3]);
/// let (u, s, vh) = linalg::svd_with(&a, SvdOptions::default().full_matrices(false));
/// assert_eq!((u.shape(), s.shape(), vh.shape()), (&[5, 3][..], &[3][..], &[3, 3][..]));
/// ```
#[track_caller]
pub fn svd_with(a: &Tensor, options: SvdOptions) -> (Tensor, Tensor, Tensor) {
    or_panic(try_svd_with(a, options))
}

/// [`svd_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, SvdOptions};
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_svd_with(&Tensor::zeros(&[4]), SvdOptions::default()).is_err());
/// ```
#[track_caller]
pub fn try_svd_with(a: &Tensor, options: SvdOptions) -> Result<(Tensor, Tensor, Tensor)> {
    let location = Location::caller();
    let (m, n) = matrices("svd", a, location)?;
    let k = m.min(n);
    let full = options.full_matrices;
    let batch = &a.shape()[..a.dim() - 2];
    let decompositions = decompose_svd(a, m, n, full);
    let out = pack_svd(a, &decompositions, m, n, full);
    let packed = record_with_tangent(
        "svd",
        location,
        &[a],
        out,
        || {
            Backward::new(move |ctx| {
                let (u, s, v) = unpack_svd(ctx.output(), m, n);
                let (gu, gs, gv) = unpack_svd(ctx.grad(), m, n);
                // Only the singular values reached the loss: U diag(gS) Vᵀ, as PyTorch's rule
                // (the other terms divide by gaps and by the values themselves).
                let ga = if is_zero(&gu) && is_zero(&gv) {
                    u.matmul(&(&gs.unsqueeze(-1) * &v.transpose(-2, -1)))
                } else {
                    svd_backward(&u, &s, &v, &gu, &gs, &gv)
                };
                smallvec![Some(ga)]
            })
            .save_output()
        },
        move |ctx| {
            let da = ctx.tangent(0).expect("a tangent for the one input");
            let (u, s, v) = unpack_svd(ctx.output(), m, n);
            let (du, ds, dv) = svd_tangent(&u, &s, &v, da);
            crate::cat(&[&du, &dv, &ds.unsqueeze(-2)], -2)
        },
    );
    let (mut u, s, v) = unpack_svd(&packed, m, n);
    let mut vh = v.transpose(-2, -1);
    if full && m > k {
        let rest = decompositions.iter().flat_map(|svd| {
            svd.u.chunks_exact(m).flat_map(|row| row[k..].iter().copied()).collect::<Vec<_>>()
        });
        let shape: Vec<usize> = batch.iter().copied().chain([m, m - k]).collect();
        u = crate::cat(&[&u, &from_f64(rest.collect(), &shape, a.dtype())], -1);
    }
    if full && n > k {
        let rest = decompositions.iter().flat_map(|svd| svd.vt[k * n..].to_vec());
        let shape: Vec<usize> = batch.iter().copied().chain([n - k, n]).collect();
        vh = crate::cat(&[&vh, &from_f64(rest.collect(), &shape, a.dtype())], -2);
    }
    Ok((u, s, vh))
}

/// The decompositions of `a`'s `m x n` matrices, with their vectors.
fn decompose_svd(a: &Tensor, m: usize, n: usize, full: bool) -> Vec<kernels::Svd> {
    let count: usize = a.shape()[..a.dim() - 2].iter().product();
    if m * n == 0 {
        let identity = |size: usize| -> Vec<f64> {
            (0..size * size).map(|i| f64::from(i % (size + 1) == 0)).collect()
        };
        let empty = kernels::Svd {
            u: if full { identity(m) } else { Vec::new() },
            s: Vec::new(),
            vt: if full { identity(n) } else { Vec::new() },
        };
        vec![empty; count]
    } else {
        kernels::map_matrices(&a.to_vec::<f64>(), m * n, 12 * m * n * m.min(n), |matrix| {
            kernels::Svd::of(matrix, m, n, full, true)
        })
    }
}

/// The first `k = min(m, n)` vectors of `decompositions` packed, untracked: `U`'s `m` rows
/// of `k`, `V`'s `n` rows of `k`, then `S`.
fn pack_svd(a: &Tensor, decompositions: &[kernels::Svd], m: usize, n: usize, full: bool) -> Tensor {
    let k = m.min(n);
    let count = decompositions.len();
    let u_columns = if full { m } else { k };
    let mut packed = Vec::with_capacity(count * (m + n + 1) * k);
    for svd in decompositions {
        svd.u.chunks_exact(u_columns.max(1)).for_each(|row| packed.extend(&row[..k]));
        (0..n).for_each(|j| packed.extend((0..k).map(|i| svd.vt[i * n + j])));
        packed.extend(&svd.s);
    }
    let shape: Vec<usize> =
        a.shape()[..a.dim() - 2].iter().copied().chain([m + n + 1, k]).collect();
    from_f64(packed, &shape, a.dtype())
}

/// The singular values of each matrix, descending (PyTorch's `torch.linalg.svdvals`).
/// Without a gradient to take, the singular vectors are not formed. Its gradient,
/// `U diag(gS) Vᴴ`, is finite even at repeated or zero singular values (where [`svd`]'s
/// is not); its second derivative divides by the gaps.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f32, 2.0, -3.0, 0.0], &[2, 2]);
/// assert_eq!(linalg::svdvals(&a).to_vec::<f32>(), vec![3.0, 2.0]);
/// ```
#[track_caller]
pub fn svdvals(a: &Tensor) -> Tensor {
    or_panic(try_svdvals(a))
}

/// [`svdvals`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_svdvals(&Tensor::from_vec(vec![1i64, 2], &[1, 2])).is_err());
/// ```
#[track_caller]
pub fn try_svdvals(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (m, n) = matrices("svdvals", a, location)?;
    if is_differentiated(a) {
        let packed = pack_svd(a, &decompose_svd(a, m, n, false), m, n, false);
        let (u, s, v) = unpack_svd(&packed, m, n);
        let singular_vectors = |a: &Tensor| {
            let (u, _, vh) = svd_with(a, SvdOptions::default().full_matrices(false));
            (u, vh.transpose(-2, -1))
        };
        return Ok(record_values("svdvals", location, a, s.contiguous(), (u, v), singular_vectors));
    }
    let k = m.min(n);
    let values = if m * n == 0 {
        Vec::new()
    } else {
        kernels::map_matrices(&a.to_vec::<f64>(), m * n, 8 * m * n * k, |matrix| {
            kernels::Svd::of(matrix, m, n, false, false).s
        })
        .concat()
    };
    let shape: Vec<usize> = a.shape()[..a.dim() - 2].iter().copied().chain([k]).collect();
    Ok(from_f64(values, &shape, a.dtype()))
}

/// `(m, n)` of a float tensor of matrices `[*, m, n]`, or an error.
pub(super) fn matrices(
    op: &'static str,
    a: &Tensor,
    location: &'static Location<'static>,
) -> Result<(usize, usize)> {
    ensure_float(op, a, location)?;
    let rank = a.dim();
    if rank < 2 {
        return Err(Error::Shape {
            op,
            message: format!("expects matrices [*, m, n], got shape {:?}", a.shape()),
            location,
        });
    }
    Ok((a.shape()[rank - 2], a.shape()[rank - 1]))
}

/// `U`, `S` and `V` (not `Vᴴ`) from their packed form.
fn unpack_svd(packed: &Tensor, m: usize, n: usize) -> (Tensor, Tensor, Tensor) {
    let s = packed.narrow(-2, m + n, 1).squeeze_dim(-2);
    (packed.narrow(-2, 0, m), s, packed.narrow(-2, m, n))
}

/// PyTorch's rule, with `F_ij = 1 / (s_j² - s_i²)` and `skew(X) = X - Xᵀ`:
/// `gA = U [(skew(Uᵀ gU) ∘ F) S + S (skew(Vᵀ gV) ∘ F) + diag(gS)] Vᵀ`
/// `+ (I - U Uᵀ) gU S⁻¹ Vᵀ + U S⁻¹ gVᵀ (I - V Vᵀ)`, the last two only where `U` or `V` is
/// not square.
fn svd_backward(
    u: &Tensor,
    s: &Tensor,
    v: &Tensor,
    gu: &Tensor,
    gs: &Tensor,
    gv: &Tensor,
) -> Tensor {
    let (m, n, k) = (u.shape()[u.dim() - 2], v.shape()[v.dim() - 2], s.shape()[s.dim() - 1]);
    let f = inverse_gaps(&s.square());
    let (s_row, s_column) = (s.unsqueeze(-2), s.unsqueeze(-1));
    let (ut, vt) = (u.transpose(-2, -1), v.transpose(-2, -1));
    let (u_inner, v_inner) = (ut.matmul(gu), vt.matmul(gv));
    let skew = |x: &Tensor| x - &x.transpose(-2, -1);
    let middle = &(&(&(&skew(&u_inner) * &f) * &s_row) + &(&s_column * &(&skew(&v_inner) * &f)))
        + &diagonal_matrix(gs);
    let mut ga = u.matmul(&middle).matmul(&vt);
    if m > k {
        ga = &ga + &(&(gu - &u.matmul(&u_inner)) / &s_row).matmul(&vt);
    }
    if n > k {
        ga = &ga + &u.matmul(&(&(gv - &v.matmul(&v_inner)) / &s_row).transpose(-2, -1));
    }
    ga
}

/// `(dU, dS, dV)` from `dA`, with `P = Uᵀ dA V`: `dS = diag(P)`,
/// `dU = U ((P S + S Pᵀ) ∘ F) + (I - U Uᵀ) dA V S⁻¹`,
/// `dV = V ((S P + Pᵀ S) ∘ F) + (I - V Vᵀ) dAᵀ U S⁻¹`.
fn svd_tangent(u: &Tensor, s: &Tensor, v: &Tensor, da: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (m, n, k) = (u.shape()[u.dim() - 2], v.shape()[v.dim() - 2], s.shape()[s.dim() - 1]);
    let f = inverse_gaps(&s.square());
    let (s_row, s_column) = (s.unsqueeze(-2), s.unsqueeze(-1));
    let p = u.transpose(-2, -1).matmul(da).matmul(v);
    let pt = p.transpose(-2, -1);
    let mut du = u.matmul(&(&(&(&p * &s_row) + &(&s_column * &pt)) * &f));
    if m > k {
        du = &du + &(&(&da.matmul(v) - &u.matmul(&p)) / &s_row);
    }
    let mut dv = v.matmul(&(&(&(&s_column * &p) + &(&pt * &s_row)) * &f));
    if n > k {
        dv = &dv + &(&(&da.transpose(-2, -1).matmul(u) - &v.matmul(&pt)) / &s_row);
    }
    (du, p.diagonal(0, -2, -1), dv)
}
