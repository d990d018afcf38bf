//! The QR factorization ([`qr`], [`qr_with`]): one recorded op whose output holds `Q`
//! above `Rᵀ`, so that its rule sees both gradients; the values from
//! `tapegrad_kernels::linalg::Qr`.

use std::panic::Location;

use tapegrad_kernels::linalg as kernels;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Tensor, ensure_float, or_panic, record_with_tangent};

use super::{from_f64, is_differentiated, solve_left};
use crate::{IndexOps, MatmulOps, ShapeOps};

/// What [`qr_with`] returns (PyTorch's `mode` of `torch.linalg.qr`), for `A` of `m x n`
/// and `k = min(m, n)`.
///
/// ```
/// assert_eq!(tapegrad_ops::linalg::QrMode::default(), tapegrad_ops::linalg::QrMode::Reduced);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QrMode {
    /// `Q` of `m x k` and `R` of `k x n` (PyTorch's default).
    #[default]
    Reduced,
    /// `Q` of `m x m` and `R` of `m x n`. Not differentiable with more rows than columns,
    /// where `Q`'s last `m - n` columns are not unique (as in PyTorch).
    Complete,
    /// `R` of `k x n` alone, and an empty `Q`. Unlike PyTorch's, differentiable: `Q` is
    /// formed for the rule when `A` needs a gradient.
    R,
}

/// The reduced QR factorization of each matrix (PyTorch's `torch.linalg.qr`): `A = Q R`,
/// `Q` of `m x k` with orthonormal columns and `R` of `k x n` upper-triangular,
/// `k = min(m, n)`, by Householder reflections with LAPACK's signs (`R`'s diagonal may be
/// negative), so both are the ones PyTorch returns. Differentiable to any order and in
/// forward mode where `R`'s leading `k x k` block is invertible (PyTorch's rule, which
/// needs `A`'s first `k` columns independent).
///
/// ```
/// use tapegrad_ops::{linalg, prelude::*};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![3.0f64, 1.0, 4.0, 2.0, 0.0, 5.0], &[3, 2]);
/// let (q, r) = linalg::qr(&a);
/// assert_eq!((q.shape(), r.shape()), (&[3, 2][..], &[2, 2][..]));
/// assert!((&q.matmul(&r) - &a).abs().max().item() < 1e-14);
/// let gram = q.transpose(0, 1).matmul(&q); // QᵀQ = I
/// assert!((&gram - &Tensor::eye_dtype(2, a.dtype())).abs().max().item() < 1e-15);
/// ```
#[track_caller]
pub fn qr(a: &Tensor) -> (Tensor, Tensor) {
    or_panic(try_qr_with(a, QrMode::Reduced))
}

/// [`qr`] with PyTorch's `mode` ([`QrMode`]). With [`QrMode::R`], `Q` is an empty tensor.
///
/// ```
/// use tapegrad_ops::linalg::{self, QrMode};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::randn(&[5, 3]);
/// let (q, r) = linalg::qr_with(&a, QrMode::Complete);
/// assert_eq!((q.shape(), r.shape()), (&[5, 5][..], &[5, 3][..]));
/// let (q, r) = linalg::qr_with(&a, QrMode::R);
/// assert_eq!((q.numel(), r.shape()), (0, &[3, 3][..]));
/// ```
#[track_caller]
pub fn qr_with(a: &Tensor, mode: QrMode) -> (Tensor, Tensor) {
    or_panic(try_qr_with(a, mode))
}

/// [`qr_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, QrMode};
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_qr_with(&Tensor::zeros(&[3]), QrMode::Reduced).is_err()); // a vector
/// let tall = Tensor::zeros(&[3, 2]).requires_grad();
/// assert!(linalg::try_qr_with(&tall, QrMode::Complete).is_err()); // no unique gradient
/// ```
#[track_caller]
pub fn try_qr_with(a: &Tensor, mode: QrMode) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    ensure_float("qr", a, location)?;
    let rank = a.dim();
    if rank < 2 {
        return Err(Error::Shape {
            op: "qr",
            message: format!("expects matrices [*, m, n], got shape {:?}", a.shape()),
            location,
        });
    }
    let (m, n) = (a.shape()[rank - 2], a.shape()[rank - 1]);
    let batch = &a.shape()[..rank - 2];
    let differentiated = is_differentiated(a);
    if mode == QrMode::Complete && m > n && differentiated {
        return Err(Error::InvalidArgument {
            op: "qr",
            message: format!(
                "QrMode::Complete of {m} x {n} matrices has no gradient: the last {} columns \
                 of Q are not unique; use QrMode::Reduced",
                m - n
            ),
            location,
        });
    }
    let columns = if mode == QrMode::Complete { m } else { m.min(n) };
    let count: usize = batch.iter().product();
    let r_shape: Vec<usize> = batch.iter().copied().chain([columns, n]).collect();
    let values = a.to_vec::<f64>();
    let cost = 2 * m * n * m.min(n) + 2 * m * columns * m.min(n);
    if mode == QrMode::R && !differentiated {
        let r = if m * n == 0 {
            vec![0.0; count * columns * n]
        } else {
            kernels::map_matrices(&values, m * n, cost, |matrix| {
                kernels::Qr::factor(matrix, m, n).r(columns)
            })
            .concat()
        };
        return Ok((Tensor::zeros_dtype(&[0], a.dtype()), from_f64(r, &r_shape, a.dtype())));
    }
    // Q above Rᵀ, both `columns` wide: one recorded op whose rule sees both.
    let pack = |factors: kernels::Qr| {
        let mut packed = factors.q(columns);
        packed.extend(factors.r_transposed(columns));
        packed
    };
    let packed = if m * n == 0 {
        (0..count).flat_map(|_| pack(kernels::Qr::factor(&[], m, n))).collect()
    } else {
        kernels::map_matrices(&values, m * n, cost, |matrix| {
            pack(kernels::Qr::factor(matrix, m, n))
        })
        .concat()
    };
    let packed_shape: Vec<usize> = batch.iter().copied().chain([m + n, columns]).collect();
    let out = from_f64(packed, &packed_shape, a.dtype());
    let packed = if mode == QrMode::Complete && m > n {
        out
    } else {
        record_with_tangent(
            "qr",
            location,
            &[a],
            out,
            || {
                Backward::new(move |ctx| {
                    let (q, r) = unpack_qr(ctx.output(), m);
                    let (gq, gr) = unpack_qr(ctx.grad(), m);
                    smallvec![Some(qr_backward(ctx.saved(0), &q, &r, &gq, &gr))]
                })
                .save(a)
                .save_output()
            },
            move |ctx| {
                let da = ctx.tangent(0).expect("a tangent for the one input");
                let (q, r) = unpack_qr(ctx.output(), m);
                let (dq, dr) = qr_tangent(ctx.input(0), &q, &r, da);
                crate::cat(&[&dq, &dr.transpose(-2, -1)], -2)
            },
        )
    };
    let (q, r) = unpack_qr(&packed, m);
    Ok(if mode == QrMode::R { (Tensor::zeros_dtype(&[0], a.dtype()), r) } else { (q, r) })
}

/// `Q` and `R` from their packed form: `Q`'s `m` rows above `Rᵀ`'s.
fn unpack_qr(packed: &Tensor, m: usize) -> (Tensor, Tensor) {
    let rows = packed.shape()[packed.dim() - 2];
    (packed.narrow(-2, 0, m), packed.narrow(-2, m, rows - m).transpose(-2, -1))
}

/// `gA` from `gQ` and `gR` (PyTorch's rule). With `m >= n`:
/// `gA = (gQ + Q copyu(gR Rᵀ - Qᵀ gQ)) R⁻ᵀ`, where `copyu` keeps the upper triangle and
/// mirrors it below. With `m < n`, `A = [A1 A2]` where `A1 = Q R1` is square and
/// `R2 = Qᵀ A2`: `gA2 = Q gR2`, and `A1`'s rule takes `gQ + A2 gR2ᵀ`.
fn qr_backward(a: &Tensor, q: &Tensor, r: &Tensor, gq: &Tensor, gr: &Tensor) -> Tensor {
    let (m, n) = (q.shape()[q.dim() - 2], r.shape()[r.dim() - 1]);
    if m >= n {
        return tall_qr_backward(q, r, gq, gr);
    }
    let (r1, gr1, gr2) = (r.narrow(-1, 0, m), gr.narrow(-1, 0, m), gr.narrow(-1, m, n - m));
    let a2 = a.narrow(-1, m, n - m);
    let gq1 = gq + &a2.matmul(&gr2.transpose(-2, -1));
    let ga1 = tall_qr_backward(q, &r1, &gq1, &gr1);
    crate::cat(&[&ga1, &q.matmul(&gr2)], -1)
}

/// [`qr_backward`] for `m >= n`, where `R` is square.
fn tall_qr_backward(q: &Tensor, r: &Tensor, gq: &Tensor, gr: &Tensor) -> Tensor {
    let inner = &gr.matmul(&r.transpose(-2, -1)) - &q.transpose(-2, -1).matmul(gq);
    let mirrored = &inner.triu(0) + &inner.triu(1).transpose(-2, -1);
    let b = gq + &q.matmul(&mirrored);
    // B R⁻ᵀ: X Rᵀ = B is R Xᵀ = Bᵀ.
    solve_left(r, &b.transpose(-2, -1), true, false).transpose(-2, -1)
}

/// `(dQ, dR)` from `dA`. With `m >= n`: `X = Qᵀ dA R⁻¹`, whose strictly lower triangle `L`
/// is that of the antisymmetric `Qᵀ dQ`; `dR = (triu(X) + Lᵀ) R` and
/// `dQ = dA R⁻¹ - Q (triu(X) + Lᵀ)`. With `m < n`, `A1`'s tangents, then
/// `dR2 = dQᵀ A2 + Qᵀ dA2`.
fn qr_tangent(a: &Tensor, q: &Tensor, r: &Tensor, da: &Tensor) -> (Tensor, Tensor) {
    let (m, n) = (q.shape()[q.dim() - 2], r.shape()[r.dim() - 1]);
    if m >= n {
        return tall_qr_tangent(q, r, da);
    }
    let (dq, dr1) = tall_qr_tangent(q, &r.narrow(-1, 0, m), &da.narrow(-1, 0, m));
    let dr2 = &dq.transpose(-2, -1).matmul(&a.narrow(-1, m, n - m))
        + &q.transpose(-2, -1).matmul(&da.narrow(-1, m, n - m));
    (dq, crate::cat(&[&dr1, &dr2], -1))
}

/// [`qr_tangent`] for `m >= n`, where `R` is square.
fn tall_qr_tangent(q: &Tensor, r: &Tensor, da: &Tensor) -> (Tensor, Tensor) {
    // dA R⁻¹: Y R = dA is Rᵀ Yᵀ = dAᵀ.
    let da_rinv =
        solve_left(&r.transpose(-2, -1), &da.transpose(-2, -1), false, false).transpose(-2, -1);
    let x = q.transpose(-2, -1).matmul(&da_rinv);
    let upper = &x.triu(0) + &x.tril(-1).transpose(-2, -1);
    (&da_rinv - &q.matmul(&upper), upper.matmul(r))
}
