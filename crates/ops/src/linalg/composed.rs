//! Linear algebra composed of other recorded ops, so their gradients, to any order and in
//! forward mode, come from the ops they are made of: the cross product ([`cross`]),
//! least squares by QR ([`lstsq`]) and integer matrix powers ([`matrix_power`]).

use std::panic::Location;

use tapegrad_tape::layout::broadcast_shapes;
use tapegrad_tape::{Error, Result, Tensor, ensure_float, or_panic};

use super::{
    QrMode, SolveTriangularOptions, broadcast_batches, square_matrices, try_inv, try_qr_with,
    try_solve_triangular_with,
};
use crate::prelude::*;

/// The cross product of 3-vectors along `dim` (PyTorch's `torch.linalg.cross`, whose
/// default `dim` is -1): `a` and `b` have the same number of dimensions, size 3 at `dim`,
/// and the other sizes broadcast. Panics otherwise, naming the shapes.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 0.0, 0.0], &[1, 3]);
/// let y = Tensor::from_vec(vec![0.0f32, 1.0, 0.0, 0.0, 0.0, 1.0], &[2, 3]);
/// assert_eq!(linalg::cross(&x, &y, -1).to_vec::<f32>(), vec![0.0, 0.0, 1.0, 0.0, -1.0, 0.0]);
/// ```
#[track_caller]
pub fn cross(a: &Tensor, b: &Tensor, dim: isize) -> Tensor {
    or_panic(try_cross(a, b, dim))
}

/// [`cross`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_cross(&Tensor::zeros(&[2, 3]), &Tensor::zeros(&[2, 4]), -1).is_err());
/// assert!(linalg::try_cross(&Tensor::zeros(&[3]), &Tensor::zeros(&[2, 3]), -1).is_err());
/// ```
#[track_caller]
pub fn try_cross(a: &Tensor, b: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op: "cross", lhs: a.dtype(), rhs: b.dtype(), location });
    }
    let shape_error = |message: String| Error::Shape { op: "cross", message, location };
    let rank = a.dim();
    if b.dim() != rank {
        return Err(shape_error(format!(
            "the inputs need the same number of dimensions, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let axis = usize::try_from(if dim < 0 { dim + rank as isize } else { dim })
        .ok()
        .filter(|&axis| axis < rank)
        .ok_or_else(|| {
            shape_error(format!("dimension {dim} is out of range for shape {:?}", a.shape()))
        })?;
    if a.shape()[axis] != 3 || b.shape()[axis] != 3 {
        return Err(shape_error(format!(
            "dimension {dim} must have size 3 in both inputs, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| {
        shape_error(format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()))
    })?;
    let (a, b) = (a.broadcast_to(&shape), b.broadcast_to(&shape));
    let axis = axis as isize;
    let part = |t: &Tensor, i: usize| t.narrow(axis, i, 1);
    let (a0, a1, a2) = (part(&a, 0), part(&a, 1), part(&a, 2));
    let (b0, b1, b2) = (part(&b, 0), part(&b, 1), part(&b, 2));
    let x = &(&a1 * &b2) - &(&a2 * &b1);
    let y = &(&a2 * &b0) - &(&a0 * &b2);
    let z = &(&a0 * &b1) - &(&a1 * &b0);
    Ok(crate::cat(&[&x, &y, &z], axis))
}

/// The least-squares solution `X` of `A X = B` for each `A` of `m x n` with full rank
/// (PyTorch's `torch.linalg.lstsq(A, B).solution`): with `m >= n` the `X` minimising
/// `|A X - B|`, from `A = Q R` as `R⁻¹ Qᵀ B`; with `m < n` the `X` of least norm among
/// the exact solutions, from `Aᵀ = Q R` as `Q R⁻ᵀ B`. `B` is `[*, m, k]`, or `[*, m]` for
/// one right-hand side per matrix; the batch dimensions broadcast. Panics when a matrix
/// is rank-deficient (an entry of `R`'s diagonal at most `eps max(m, n)` times the largest,
/// PyTorch's default `rcond`), naming it.
///
/// ```
/// use tapegrad_ops::{linalg, prelude::*};
/// use tapegrad_tape::Tensor;
/// // The line through (0, 1), (1, 3), (2, 5) is y = 1 + 2 t, fitted exactly.
/// let a = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0, 1.0, 2.0], &[3, 2]);
/// let y = Tensor::from_vec(vec![1.0f64, 3.0, 5.0], &[3]);
/// let fit = linalg::lstsq(&a, &y);
/// assert!((&fit - &Tensor::from_vec(vec![1.0f64, 2.0], &[2])).abs().max().item() < 1e-14);
/// ```
#[track_caller]
pub fn lstsq(a: &Tensor, b: &Tensor) -> Tensor {
    or_panic(try_lstsq(a, b))
}

/// [`lstsq`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let rank_one = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0, 3.0, 6.0], &[3, 2]);
/// let b = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// assert!(linalg::try_lstsq(&rank_one, &b).unwrap_err().to_string().contains("rank"));
/// ```
#[track_caller]
pub fn try_lstsq(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("lstsq", a, location)?;
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op: "lstsq", lhs: a.dtype(), rhs: b.dtype(), location });
    }
    let shape_error = |message: String| Error::Shape { op: "lstsq", message, location };
    let rank = a.dim();
    if rank < 2 {
        return Err(shape_error(format!("expects matrices [*, m, n], got shape {:?}", a.shape())));
    }
    let (m, n) = (a.shape()[rank - 2], a.shape()[rank - 1]);
    // PyTorch's rule: one right-hand side per matrix when B has one dimension fewer than A.
    let vector = b.dim() + 1 == rank;
    let b = if vector { b.unsqueeze(-1) } else { b.clone() };
    let rb = b.dim();
    if rb < 2 || b.shape()[rb - 2] != m {
        return Err(shape_error(format!(
            "B of shape {:?} does not have the {m} rows of A {:?}",
            b.shape(),
            a.shape()
        )));
    }
    let batch = broadcast_batches("lstsq", a, &b, location)?;
    let full = |rows: usize, cols: usize| -> Vec<usize> {
        batch.iter().copied().chain([rows, cols]).collect()
    };
    let a = a.broadcast_to(&full(m, n));
    let b = b.broadcast_to(&full(m, b.shape()[rb - 1]));
    let tall = m >= n;
    let (q, r) = try_qr_with(&if tall { a } else { a.transpose(-2, -1) }, QrMode::Reduced)?;
    // Numerically rank-deficient as PyTorch's default `rcond` sees it: a diagonal entry of
    // R at most eps * max(m, n) times the largest.
    let epsilon =
        if r.dtype() == tapegrad_tape::DType::F32 { f32::EPSILON.into() } else { f64::EPSILON };
    let tolerance = epsilon * m.max(n) as f64;
    let diagonals = r.diagonal(0, -2, -1).abs().to_vec::<f64>();
    let deficient = |d: &[f64]| {
        let largest = d.iter().copied().fold(0.0, f64::max);
        d.iter().any(|&x| x <= tolerance * largest || x.is_nan())
    };
    if let Some(index) = diagonals.chunks(m.min(n).max(1)).position(deficient) {
        return Err(Error::InvalidArgument {
            op: "lstsq",
            message: format!(
                "matrix {index} of the batch is rank-deficient (R's diagonal falls below \
                 eps * max(m, n) of its largest): the least-squares solution is not unique"
            ),
            location,
        });
    }
    let x = if tall {
        // R X = Qᵀ B
        let qtb = q.transpose(-2, -1).matmul(&b);
        try_solve_triangular_with(&r, &qtb, true, SolveTriangularOptions::default())?
    } else {
        // A = Rᵀ Qᵀ: Rᵀ Y = B, then X = Q Y.
        let rt = r.transpose(-2, -1);
        let y = try_solve_triangular_with(&rt, &b, false, SolveTriangularOptions::default())?;
        q.matmul(&y)
    };
    Ok(if vector { x.squeeze_dim(-1) } else { x })
}

/// `A` to the integer power `k` for each square matrix (PyTorch's
/// `torch.linalg.matrix_power`): by repeated squaring, of `A⁻¹` when `k < 0`; the identity
/// when `k = 0` (a constant, without a gradient). Panics when `A` is not square, or is
/// singular and `k < 0`.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let shear = Tensor::from_vec(vec![1.0f32, 1.0, 0.0, 1.0], &[2, 2]);
/// assert_eq!(linalg::matrix_power(&shear, 5).to_vec::<f32>(), vec![1.0, 5.0, 0.0, 1.0]);
/// assert_eq!(linalg::matrix_power(&shear, -2).to_vec::<f32>(), vec![1.0, -2.0, 0.0, 1.0]);
/// ```
#[track_caller]
pub fn matrix_power(a: &Tensor, k: i64) -> Tensor {
    or_panic(try_matrix_power(a, k))
}

/// [`matrix_power`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_matrix_power(&Tensor::zeros(&[2, 3]), 2).is_err()); // not square
/// assert!(linalg::try_matrix_power(&Tensor::zeros(&[2, 2]), -1).is_err()); // singular
/// ```
#[track_caller]
pub fn try_matrix_power(a: &Tensor, k: i64) -> Result<Tensor> {
    let location = Location::caller();
    let (_, n) = square_matrices("matrix_power", a, location)?;
    if k == 0 {
        return Ok(Tensor::eye_dtype(n, a.dtype()).broadcast_to(a.shape()).contiguous());
    }
    let mut square = if k < 0 { try_inv(a)? } else { a.clone() };
    let mut power: Option<Tensor> = None;
    let mut exponent = k.unsigned_abs();
    loop {
        if exponent & 1 == 1 {
            power = Some(match power {
                None => square.clone(),
                Some(p) => p.matmul(&square),
            });
        }
        exponent >>= 1;
        if exponent == 0 {
            break;
        }
        square = square.matmul(&square);
    }
    Ok(power.expect("a nonzero exponent has a set bit"))
}
