//! Linear algebra of batches of matrices, PyTorch's `torch.linalg`: the Cholesky factor
//! ([`cholesky`]) and triangular solves ([`solve_triangular`]), from which a Gaussian
//! process's log-likelihood, a whitening transform or a multivariate normal's density is
//! built; general solves ([`solve`], [`inv`]) and determinants ([`det`], [`slogdet`]) by
//! LU factorization with partial pivoting, as a normalising flow's log-determinant needs;
//! QR ([`qr`]) and least squares ([`lstsq`]); symmetric eigendecompositions ([`eigh`]) and
//! singular value decompositions ([`svd`]), with what is built on them ([`pinv`],
//! [`matrix_norm_with`], [`matrix_rank`], [`cond`]). The last two dimensions are the
//! matrices; the ones before are a batch that broadcasts between the operands.
//!
//! The values come from `tapegrad_kernels::linalg`, in f64 for either float dtype. Each
//! gradient is written with these ops, products and triangles, so it is differentiable
//! again (PyTorch's formulas: for `X = A⁻¹ B`, `gB = A⁻ᵀ G` and `gA = -gB Xᵀ`, kept to `A`'s
//! triangle for a triangular solve; `gA = -Xᵀ G Xᵀ` for `X = A⁻¹`; for `L = chol(A)`,
//! `gA = L⁻ᵀ Φ(Lᵀ G) L⁻¹` symmetrised; for `d = det(A)`, `gA = g d A⁻ᵀ`, and `g A⁻ᵀ` for
//! `log |det A|`). The solves in these rules reuse the forward pass's LU factors, as
//! PyTorch's do: a backward never factors again. At a singular matrix the determinant's
//! gradient is NaN or infinite, where PyTorch's goes through an SVD.
//!
//! ```
//! use tapegrad_ops::{linalg, prelude::*};
//! use tapegrad_tape::Tensor;
//! // A Gaussian process's negative log-likelihood, up to a constant: y K⁻¹ y / 2 + log|K| / 2.
//! let k = Tensor::from_vec(vec![2.0f64, 0.5, 0.5, 1.0], &[2, 2]).requires_grad();
//! let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2, 1]);
//! let l = linalg::cholesky(&k);
//! let alpha = linalg::solve_triangular(&l, &y, false); // L⁻¹ y
//! let nll = &alpha.square().sum().mul_scalar(0.5) + &l.diagonal(0, 0, 1).log().sum();
//! nll.backward();
//! assert_eq!(k.grad().unwrap().shape(), &[2, 2]);
//! ```

use std::panic::Location;
use std::sync::Arc;

use tapegrad_kernels::linalg as kernels;
use tapegrad_tape::layout::{Layout, broadcast_shapes};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Error, Result, Storage, Tensor, ensure_float, or_panic, record_with_tangent,
};

use crate::{IndexOps, MatmulOps, ReduceOps, ShapeOps};

mod composed;
mod qr;
mod singular;
mod spectral;
pub use composed::{cross, lstsq, matrix_power, try_cross, try_lstsq, try_matrix_power};
pub use qr::{QrMode, qr, qr_with, try_qr_with};
pub use singular::{
    MatrixNormOptions, MatrixOrd, RankTolerance, cond, matrix_norm, matrix_norm_with, matrix_rank,
    matrix_rank_with, pinv, pinv_with, try_cond, try_matrix_norm_with, try_matrix_rank_with,
    try_pinv_with,
};
pub use spectral::{
    SvdOptions, eigh, eigvalsh, svd, svd_with, svdvals, try_eigh, try_eigvalsh, try_svd_with,
    try_svdvals,
};

/// The keywords of [`solve_triangular_with`] besides `upper`: PyTorch's `left` (default
/// true: solve `A X = B`; false: `X A = B`) and `unitriangular` (default false: read the
/// diagonal; true: take it as ones).
///
/// ```
/// use tapegrad_ops::linalg::SolveTriangularOptions;
/// let options = SolveTriangularOptions::default().left(false).unitriangular(true);
/// assert!(!options.is_left() && options.is_unitriangular());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SolveTriangularOptions {
    left: bool,
    unitriangular: bool,
}

impl Default for SolveTriangularOptions {
    fn default() -> Self {
        SolveTriangularOptions { left: true, unitriangular: false }
    }
}

impl SolveTriangularOptions {
    /// Whether `A` is on the left (`A X = B`) or the right (`X A = B`).
    ///
    /// ```
    /// assert!(!tapegrad_ops::linalg::SolveTriangularOptions::default().left(false).is_left());
    /// ```
    pub fn left(mut self, left: bool) -> Self {
        self.left = left;
        self
    }

    /// Whether `A`'s diagonal is taken as ones (and not read).
    ///
    /// ```
    /// let options = tapegrad_ops::linalg::SolveTriangularOptions::default().unitriangular(true);
    /// assert!(options.is_unitriangular());
    /// ```
    pub fn unitriangular(mut self, unitriangular: bool) -> Self {
        self.unitriangular = unitriangular;
        self
    }

    /// The `left` setting.
    ///
    /// ```
    /// assert!(tapegrad_ops::linalg::SolveTriangularOptions::default().is_left());
    /// ```
    pub fn is_left(&self) -> bool {
        self.left
    }

    /// The `unitriangular` setting.
    ///
    /// ```
    /// assert!(!tapegrad_ops::linalg::SolveTriangularOptions::default().is_unitriangular());
    /// ```
    pub fn is_unitriangular(&self) -> bool {
        self.unitriangular
    }
}

/// The lower-triangular `L` with `L Lᵀ = A` of each symmetric positive-definite matrix `A`
/// (PyTorch's `torch.linalg.cholesky`; only `A`'s lower triangle is read). Panics, naming
/// the matrix and the order of its first leading minor that is not positive, when one is
/// not positive-definite.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![4.0f32, 2.0, 2.0, 5.0], &[2, 2]);
/// assert_eq!(linalg::cholesky(&a).to_vec::<f32>(), vec![2.0, 0.0, 1.0, 2.0]);
/// ```
#[track_caller]
pub fn cholesky(a: &Tensor) -> Tensor {
    or_panic(try_cholesky(a))
}

/// [`cholesky`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let indefinite = Tensor::from_vec(vec![1.0f32, 2.0, 2.0, 1.0], &[2, 2]);
/// let message = linalg::try_cholesky(&indefinite).unwrap_err().to_string();
/// assert!(message.contains("order 2"), "{message}");
/// ```
#[track_caller]
pub fn try_cholesky(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (batch, n) = square_matrices("cholesky", a, location)?;
    let values = a.to_vec::<f64>();
    let mut factors = Vec::with_capacity(values.len());
    if n > 0 {
        let each =
            kernels::map_matrices(&values, n * n, n * n * n / 3, |m| kernels::cholesky(m, n));
        for (index, factor) in each.into_iter().take(batch).enumerate() {
            factors.extend(factor.map_err(|stop| Error::InvalidArgument {
                op: "cholesky",
                message: format!(
                    "matrix {index} of the batch is not positive-definite: its leading minor \
                    of order {} is not positive",
                    stop.order
                ),
                location,
            })?);
        }
    }
    let out = from_f64(factors, a.shape(), a.dtype());
    Ok(record_with_tangent(
        "cholesky",
        location,
        &[a],
        out,
        || {
            Backward::new(|ctx| smallvec![Some(cholesky_backward(ctx.output(), ctx.grad()))])
                .save_output()
        },
        |ctx| {
            let tangent = ctx.tangent(0).expect("a tangent for the one input");
            cholesky_tangent(ctx.output(), tangent)
        },
    ))
}

/// `gA = L⁻ᵀ Φ L⁻¹` with `Φ` the symmetric matrix whose lower triangle is half of
/// `tril(Lᵀ G)` plus its transpose off the diagonal.
fn cholesky_backward(l: &Tensor, g: &Tensor) -> Tensor {
    let lt = l.transpose(-2, -1);
    let m = lt.matmul(g).tril(0);
    let phi = (&m + &m.tril(-1).transpose(-2, -1)).mul_scalar(0.5);
    let y = solve_left(&lt, &phi, true, false); // L⁻ᵀ Φ
    solve_left(&lt, &y.transpose(-2, -1), true, false).transpose(-2, -1) // (L⁻ᵀ Yᵀ)ᵀ = Y L⁻¹
}

/// `dL = L Φ(L⁻¹ dA L⁻ᵀ)`, where `Φ` keeps the lower triangle and halves the diagonal.
fn cholesky_tangent(l: &Tensor, da: &Tensor) -> Tensor {
    let w = solve_left(l, da, false, false); // L⁻¹ dA
    let z = solve_left(l, &w.transpose(-2, -1), false, false).transpose(-2, -1); // W L⁻ᵀ
    let phi = (&z.tril(0) + &z.tril(-1)).mul_scalar(0.5);
    l.matmul(&phi)
}

/// `X` with `A X = B` for each triangular `A` (`upper`, or lower; the other triangle is not
/// read) and each `B` of right-hand sides as columns (PyTorch's
/// `torch.linalg.solve_triangular(A, B, upper=upper)`). `A` is `[*, n, n]` and `B`
/// `[*, n, k]`, their batch dimensions broadcast. A zero on `A`'s diagonal gives
/// infinities or NaN, as in PyTorch.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![2.0f32, 0.0, 1.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![2.0f32, 9.0], &[2, 1]);
/// assert_eq!(linalg::solve_triangular(&a, &b, false).to_vec::<f32>(), vec![1.0, 2.0]);
/// ```
#[track_caller]
pub fn solve_triangular(a: &Tensor, b: &Tensor, upper: bool) -> Tensor {
    or_panic(try_solve_triangular_with(a, b, upper, SolveTriangularOptions::default()))
}

/// [`solve_triangular`] with PyTorch's other keywords: `left(false)` solves `X A = B`
/// (`B` is then `[*, k, n]`), `unitriangular(true)` takes `A`'s diagonal as ones.
///
/// ```
/// use tapegrad_ops::linalg::{self, SolveTriangularOptions};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 0.0, 3.0, 1.0], &[2, 2]); // unit lower
/// let b = Tensor::from_vec(vec![7.0f32, 1.0], &[1, 2]);
/// let options = SolveTriangularOptions::default().left(false).unitriangular(true);
/// // x A = b: x = [4, 1]
/// assert_eq!(linalg::solve_triangular_with(&a, &b, false, options).to_vec::<f32>(), vec![4.0, 1.0]);
/// ```
#[track_caller]
pub fn solve_triangular_with(
    a: &Tensor,
    b: &Tensor,
    upper: bool,
    options: SolveTriangularOptions,
) -> Tensor {
    or_panic(try_solve_triangular_with(a, b, upper, options))
}

/// [`solve_triangular_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, SolveTriangularOptions};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::ones(&[3, 3]);
/// let b = Tensor::ones(&[2, 4]); // 2 rows, A has 3
/// let options = SolveTriangularOptions::default();
/// assert!(linalg::try_solve_triangular_with(&a, &b, true, options).is_err());
/// let square = Tensor::ones(&[4, 4]); // square, but 4 x 4
/// assert!(linalg::try_cholesky(&Tensor::ones(&[2, 3])).is_err()); // not square
/// assert!(linalg::try_solve_triangular_with(&square, &Tensor::ones(&[4, 1]), false, options).is_ok());
/// ```
#[track_caller]
pub fn try_solve_triangular_with(
    a: &Tensor,
    b: &Tensor,
    upper: bool,
    options: SolveTriangularOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let (_, n) = square_matrices("solve_triangular", a, location)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op: "solve_triangular",
            lhs: a.dtype(),
            rhs: b.dtype(),
            location,
        });
    }
    let rb = b.dim();
    let rows = if options.left { rb.checked_sub(2) } else { rb.checked_sub(1) };
    if rb < 2 || b.shape()[rows.expect("rank at least 2")] != n {
        let side = if options.left { "rows" } else { "columns" };
        return Err(Error::Shape {
            op: "solve_triangular",
            message: format!(
                "B of shape {:?} needs at least 2 dimensions and {n} {side} to match A of \
                shape {:?}",
                b.shape(),
                a.shape()
            ),
            location,
        });
    }
    let batch = broadcast_batches("solve_triangular", a, b, location)?;
    let full = |rows: usize, cols: usize| -> Vec<usize> {
        batch.iter().copied().chain([rows, cols]).collect()
    };
    let a = a.broadcast_to(&full(n, n));
    let b = b.broadcast_to(&full(b.shape()[rb - 2], b.shape()[rb - 1]));
    Ok(if options.left {
        solve_left(&a, &b, upper, options.unitriangular)
    } else {
        // X A = B is Aᵀ Xᵀ = Bᵀ, with Aᵀ's triangle the other one.
        let (at, bt) = (a.transpose(-2, -1), b.transpose(-2, -1));
        solve_left(&at, &bt, !upper, options.unitriangular).transpose(-2, -1)
    })
}

/// `A⁻¹ B` for operands of the same batch shape, checked: the one recorded op.
#[track_caller]
fn solve_left(a: &Tensor, b: &Tensor, upper: bool, unit: bool) -> Tensor {
    let rank = a.dim();
    let n = a.shape()[rank - 1];
    let k = b.shape()[rank - 1];
    let (matrices, rights) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    let mut x = rights;
    if n * k > 0 {
        kernels::for_each_matrix(&mut x, n * k, n * n * k / 2, |i, right| {
            kernels::solve_triangular(
                &matrices[i * n * n..(i + 1) * n * n],
                right,
                n,
                k,
                upper,
                unit,
            )
        });
    }
    let out = from_f64(x, b.shape(), b.dtype());
    let location = Location::caller();
    record_with_tangent(
        "solve_triangular",
        location,
        &[a, b],
        out,
        move || {
            Backward::new(move |ctx| {
                let (a, x, g) = (ctx.saved(0), ctx.output(), ctx.grad());
                // gB = A⁻ᵀ G; gA = -gB Xᵀ on A's triangle (off the diagonal when it is unit).
                let gb = solve_left(&a.transpose(-2, -1), g, !upper, unit);
                let ga = -gb.matmul(&x.transpose(-2, -1));
                let diagonal = if unit { 1 } else { 0 };
                let ga = if upper { ga.triu(diagonal) } else { ga.tril(-diagonal) };
                smallvec![Some(ga), Some(gb)]
            })
            .save(a)
            .save_output()
        },
        move |ctx| {
            // dX = A⁻¹ (dB - dA X), with dA kept to the triangle that is read.
            let diagonal = if unit { 1 } else { 0 };
            let da =
                ctx.tangent(0).map(|da| if upper { da.triu(diagonal) } else { da.tril(-diagonal) });
            let rhs = tangent_right_side(da.as_ref(), ctx.tangent(1), ctx.output());
            solve_left(ctx.input(0), &rhs, upper, unit)
        },
    )
}

/// `X` with `A X = B` for each square `A` (PyTorch's `torch.linalg.solve`). `B` is
/// `[*, n, k]`, or a vector `[n]` or `[*, n]` (one right-hand side per matrix) when its
/// shape is `A`'s without the last size, as PyTorch decides; the batch dimensions
/// broadcast. Panics, naming the matrix, when one is
/// singular.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![4.0f64, 11.0], &[2]);
/// assert_eq!(linalg::solve(&a, &b).to_vec::<f64>(), vec![1.0, 2.0]);
/// ```
#[track_caller]
pub fn solve(a: &Tensor, b: &Tensor) -> Tensor {
    or_panic(try_solve(a, b))
}

/// [`solve`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let singular = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
/// let message = linalg::try_solve(&singular, &Tensor::ones_dtype(&[2], tapegrad_tape::DType::F64));
/// assert!(message.unwrap_err().to_string().contains("singular"));
/// ```
#[track_caller]
pub fn try_solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (_, n) = square_matrices("solve", a, location)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op: "solve", lhs: a.dtype(), rhs: b.dtype(), location });
    }
    // PyTorch's rule: a vector when B is one, or has A's shape without its last size.
    let vector = b.dim() == 1 || b.shape() == &a.shape()[..a.dim() - 1];
    let b = if vector { b.unsqueeze(-1) } else { b.clone() };
    let rb = b.dim();
    if rb < 2 || b.shape()[rb - 2] != n {
        return Err(Error::Shape {
            op: "solve",
            message: format!("B of shape {:?} does not have the {n} rows of A", b.shape()),
            location,
        });
    }
    let batch = broadcast_batches("solve", a, &b, location)?;
    let factors = Factors::invertible(a, "solve", location)?.broadcast(a, &batch);
    let full = |cols: usize| -> Vec<usize> { batch.iter().copied().chain([n, cols]).collect() };
    let (a, b) = (a.broadcast_to(&full(n)), b.broadcast_to(&full(b.shape()[rb - 1])));
    let x = solve_square(&a, &b, factors);
    Ok(if vector { x.squeeze_dim(-1) } else { x })
}

/// The inverse of each square matrix (PyTorch's `torch.linalg.inv`), by the LU factors as
/// [`solve`] against the identity. Panics, naming the matrix, when one is singular.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![2.0f32, 0.0, 0.0, 4.0], &[2, 2]);
/// assert_eq!(linalg::inv(&a).to_vec::<f32>(), vec![0.5, 0.0, 0.0, 0.25]);
/// ```
#[track_caller]
pub fn inv(a: &Tensor) -> Tensor {
    or_panic(try_inv(a))
}

/// [`inv`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_inv(&Tensor::zeros(&[3, 3])).is_err()); // singular
/// assert!(linalg::try_inv(&Tensor::zeros(&[2, 3])).is_err()); // not square
/// ```
#[track_caller]
pub fn try_inv(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (_, n) = square_matrices("inv", a, location)?;
    let factors = Factors::invertible(a, "inv", location)?;
    let mut x = vec![0.0; a.numel()];
    if n > 0 {
        kernels::for_each_matrix(&mut x, n * n, n * n * n, |i, inverse| {
            (0..n).for_each(|d| inverse[d * n + d] = 1.0);
            factors.get(i).solve(inverse, n);
        });
    }
    let out = from_f64(x, a.shape(), a.dtype());
    Ok(record_with_tangent(
        "inv",
        location,
        &[a],
        out,
        || {
            // gA = -Xᵀ G Xᵀ: two products, where a solve would factor or substitute again.
            Backward::new(|ctx| {
                let xt = ctx.output().transpose(-2, -1);
                smallvec![Some(-xt.matmul(ctx.grad()).matmul(&xt))]
            })
            .save_output()
        },
        |ctx| {
            // dX = -X dA X
            let (x, da) = (ctx.output(), ctx.tangent(0).expect("a tangent for the one input"));
            -x.matmul(da).matmul(x)
        },
    ))
}

/// The determinant of each square matrix (PyTorch's `torch.linalg.det`), shape `[*]`.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 3.0], &[2, 2]).requires_grad();
/// let d = linalg::det(&a);
/// assert_eq!(d.item(), 5.0);
/// d.backward();
/// assert_eq!(a.grad().unwrap().to_vec::<f64>(), vec![3.0, -1.0, -1.0, 2.0]); // the cofactors
/// ```
#[track_caller]
pub fn det(a: &Tensor) -> Tensor {
    or_panic(try_det(a))
}

/// [`det`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_det(&Tensor::zeros(&[3])).is_err()); // not a matrix
/// ```
#[track_caller]
pub fn try_det(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    square_matrices("det", a, location)?;
    let factors = Factors::of(a);
    let values: Vec<f64> = factors.lu.iter().map(kernels::Lu::det).collect();
    let out = from_f64(values, &a.shape()[..a.dim() - 2], a.dtype());
    let for_tangent = factors.clone();
    Ok(record_with_tangent(
        "det",
        location,
        &[a],
        out,
        move || {
            let factors = factors.clone();
            Backward::new(move |ctx| {
                // g d A⁻ᵀ
                let scale = (ctx.grad() * ctx.output()).unsqueeze(-1).unsqueeze(-1);
                smallvec![Some(&scale * &inverse_transpose(ctx.saved(0), &factors))]
            })
            .save(a)
            .save_output()
        },
        move |ctx| {
            // d det = det tr(A⁻¹ dA)
            let da = ctx.tangent(0).expect("a tangent for the one input");
            ctx.output() * &trace_of_solve(ctx.input(0), da, for_tangent)
        },
    ))
}

/// The sign (-1, 0 or 1) and the logarithm of the magnitude of each square matrix's
/// determinant (PyTorch's `torch.linalg.slogdet`), both `[*]`: a log-determinant that does
/// not overflow, as a normalising flow's likelihood needs. The sign has no gradient; a
/// singular matrix has sign 0 and logarithm `-inf`.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]).requires_grad();
/// let (sign, log_abs) = linalg::slogdet(&a);
/// assert_eq!(sign.item(), -1.0);
/// assert!((log_abs.item() - 6f64.ln()).abs() < 1e-15);
/// log_abs.backward();
/// assert_eq!(a.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.5, 1.0 / 3.0, 0.0]); // A⁻ᵀ
/// ```
#[track_caller]
pub fn slogdet(a: &Tensor) -> (Tensor, Tensor) {
    or_panic(try_slogdet(a))
}

/// [`slogdet`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_slogdet(&Tensor::from_vec(vec![1i64], &[1, 1])).is_err()); // not float
/// ```
#[track_caller]
pub fn try_slogdet(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    square_matrices("slogdet", a, location)?;
    let factors = Factors::of(a);
    let (signs, logs): (Vec<f64>, Vec<f64>) =
        factors.lu.iter().map(kernels::Lu::log_abs_det).unzip();
    let batch = &a.shape()[..a.dim() - 2];
    let for_tangent = factors.clone();
    let log_abs = record_with_tangent(
        "slogdet",
        location,
        &[a],
        from_f64(logs, batch, a.dtype()),
        move || {
            let factors = factors.clone();
            Backward::new(move |ctx| {
                let g = ctx.grad().unsqueeze(-1).unsqueeze(-1);
                smallvec![Some(&g * &inverse_transpose(ctx.saved(0), &factors))]
            })
            .save(a)
        },
        move |ctx| {
            let da = ctx.tangent(0).expect("a tangent for the one input");
            trace_of_solve(ctx.input(0), da, for_tangent)
        },
    );
    Ok((from_f64(signs, batch, a.dtype()), log_abs))
}

/// `A⁻ᵀ` of each matrix from its factors, recorded, without the singularity check (a rule
/// must not fail).
fn inverse_transpose(a: &Tensor, factors: &Factors) -> Tensor {
    let n = a.shape()[a.dim() - 1];
    let identity = Tensor::eye_dtype(n, a.dtype()).broadcast_to(a.shape());
    solve_square(&a.transpose(-2, -1), &identity, factors.transposed())
}

/// `tr(A⁻¹ dA)` of each matrix, recorded.
fn trace_of_solve(a: &Tensor, da: &Tensor, factors: Factors) -> Tensor {
    solve_square(a, da, factors).diagonal(0, -2, -1).sum_dim(-1, false)
}

/// The LU factors of every matrix of a batch, shared by the op that made them and every
/// rule recorded after it: a backward solves with the forward's factors instead of
/// factoring again (PyTorch keeps them too). With `transposed` they serve `Aᵀ`. A matrix
/// broadcast across a batch is factored once: entry `i` of the batch has `lu[matrix[i]]`.
#[derive(Clone)]
struct Factors {
    lu: Arc<Vec<kernels::Lu>>,
    matrix: Arc<Vec<usize>>,
    transposed: bool,
}

impl Factors {
    /// Factors each matrix of `a`.
    fn of(a: &Tensor) -> Factors {
        let n = a.shape()[a.dim() - 1];
        let batch: usize = a.shape()[..a.dim() - 2].iter().product();
        let lu: Vec<kernels::Lu> = if n == 0 {
            (0..batch).map(|_| kernels::Lu::factor(&[], 0)).collect()
        } else {
            let values = a.to_vec::<f64>();
            kernels::map_matrices(&values, n * n, 2 * n * n * n / 3, |m| kernels::Lu::factor(m, n))
        };
        Factors { lu: Arc::new(lu), matrix: Arc::new((0..batch).collect()), transposed: false }
    }

    /// Factors each matrix of `a` for `op`, or names the first singular one: the check of
    /// the ops that need an inverse.
    fn invertible(
        a: &Tensor,
        op: &'static str,
        location: &'static Location<'static>,
    ) -> Result<Factors> {
        let factors = Factors::of(a);
        match factors.lu.iter().position(kernels::Lu::is_singular) {
            Some(index) => Err(Error::InvalidArgument {
                op,
                message: format!("matrix {index} of the batch is singular: it has no inverse"),
                location,
            }),
            None => Ok(factors),
        }
    }

    /// The factors of `a`'s matrices serving the batch `batch`, which `a`'s batch
    /// dimensions broadcast to: a repeated matrix keeps its one factorization.
    fn broadcast(mut self, a: &Tensor, batch: &[usize]) -> Factors {
        let own = &a.shape()[..a.dim() - 2];
        let skip = batch.len() - own.len();
        // Each batch dimension's stride in `a`'s own batch, 0 where `a` repeats.
        let mut strides = vec![0; batch.len()];
        let mut stride = 1;
        for (d, &size) in own.iter().enumerate().rev() {
            strides[skip + d] = if size == 1 { 0 } else { stride };
            stride *= size;
        }
        let entries: usize = batch.iter().product();
        let matrix = (0..entries)
            .map(|mut flat| {
                let mut index = 0;
                for (&size, &stride) in batch.iter().zip(&strides).rev() {
                    index += (flat % size) * stride;
                    flat /= size;
                }
                index
            })
            .collect();
        self.matrix = Arc::new(matrix);
        self
    }

    /// The factors of entry `i` of the batch.
    fn get(&self, i: usize) -> &kernels::Lu {
        &self.lu[self.matrix[i]]
    }

    /// The same factors, serving the transposed matrices.
    fn transposed(&self) -> Factors {
        Factors { transposed: !self.transposed, ..self.clone() }
    }
}

/// `A⁻¹ B` for operands of the same batch shape from `A`'s factors: the recorded op of
/// [`solve`], whose rule and tangent are solves with the same factors.
#[track_caller]
fn solve_square(a: &Tensor, b: &Tensor, factors: Factors) -> Tensor {
    let rank = b.dim();
    let (n, k) = (b.shape()[rank - 2], b.shape()[rank - 1]);
    let mut x = b.to_vec::<f64>();
    if n * k > 0 {
        kernels::for_each_matrix(&mut x, n * k, n * n * k, |i, right| {
            let lu = factors.get(i);
            if factors.transposed { lu.solve_transposed(right, k) } else { lu.solve(right, k) }
        });
    }
    let out = from_f64(x, b.shape(), b.dtype());
    let for_tangent = factors.clone();
    record_with_tangent(
        "solve",
        Location::caller(),
        &[a, b],
        out,
        move || {
            let factors = factors.clone();
            Backward::new(move |ctx| {
                let (a, x, g) = (ctx.saved(0), ctx.output(), ctx.grad());
                // gB = A⁻ᵀ G, gA = -gB Xᵀ
                let gb = solve_square(&a.transpose(-2, -1), g, factors.transposed());
                let ga = -gb.matmul(&x.transpose(-2, -1));
                smallvec![Some(ga), Some(gb)]
            })
            .save(a)
            .save_output()
        },
        move |ctx| {
            // dX = A⁻¹ (dB - dA X)
            let rhs = tangent_right_side(ctx.tangent(0), ctx.tangent(1), ctx.output());
            solve_square(ctx.input(0), &rhs, for_tangent)
        },
    )
}

/// `dB - dA X`, the right side whose solve is a solve's tangent, from whichever of the
/// two tangents there are (at least one).
fn tangent_right_side(da: Option<&Tensor>, db: Option<&Tensor>, x: &Tensor) -> Tensor {
    let moved = da.map(|da| -da.matmul(x));
    match (db, moved) {
        (Some(db), Some(moved)) => db + &moved,
        (Some(db), None) => db.clone(),
        (None, Some(moved)) => moved,
        (None, None) => unreachable!("a tangent is recorded only when an input has one"),
    }
}

/// The batch size and `n` of a float tensor of `n x n` matrices, or an error.
fn square_matrices(
    op: &'static str,
    a: &Tensor,
    location: &'static Location<'static>,
) -> Result<(usize, usize)> {
    ensure_float(op, a, location)?;
    let rank = a.dim();
    if rank < 2 || a.shape()[rank - 1] != a.shape()[rank - 2] {
        return Err(Error::Shape {
            op,
            message: format!("expects square matrices [*, n, n], got shape {:?}", a.shape()),
            location,
        });
    }
    let n = a.shape()[rank - 1];
    let batch = a.shape()[..rank - 2].iter().product();
    Ok((batch, n))
}

/// The batch shape that the batch dimensions of the matrices `a` and `b` (all but their
/// last two) broadcast to, or an error of `op` naming both shapes.
fn broadcast_batches(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    location: &'static Location<'static>,
) -> Result<Vec<usize>> {
    let (ra, rb) = (a.dim(), b.dim());
    let batch = broadcast_shapes(&a.shape()[..ra - 2], &b.shape()[..rb - 2]);
    batch.map(|shape| shape.to_vec()).ok_or_else(|| Error::Shape {
        op,
        message: format!(
            "the batch dimensions of A {:?} and B {:?} do not broadcast",
            a.shape(),
            b.shape()
        ),
        location,
    })
}

/// Whether an op on `a` records a rule: `a` takes a gradient (and grad mode is on) or
/// carries a forward-mode tangent.
fn is_differentiated(a: &Tensor) -> bool {
    (a.tracks_grad() && tapegrad_tape::is_grad_enabled())
        || tapegrad_tape::forward_ad::unpack_dual(a).tangent.is_some()
}

/// A contiguous tensor of `shape` from f64 values, in `dtype` (f32 rounds once).
fn from_f64(values: Vec<f64>, shape: &[usize], dtype: DType) -> Tensor {
    let storage = match dtype {
        DType::F32 => Storage::from_vec(values.into_iter().map(|v| v as f32).collect::<Vec<_>>()),
        _ => Storage::from_vec(values),
    };
    Tensor::from_storage(storage, Layout::contiguous(shape))
}
