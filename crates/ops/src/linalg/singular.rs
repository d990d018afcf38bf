//! What is built on the singular values: the pseudo-inverse ([`pinv`], one recorded op
//! with the rule of a constant-rank pseudo-inverse), matrix norms ([`matrix_norm_with`]),
//! the condition number ([`cond`]) and the numerical rank ([`matrix_rank`]), with
//! PyTorch's tolerances ([`RankTolerance`]).

use std::panic::Location;

use tapegrad_kernels::linalg as kernels;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, DType, Error, Result, Tensor, or_panic, record_with_tangent};

use super::spectral::matrices;
use super::{from_f64, try_svdvals};
use crate::prelude::*;

/// The keywords `atol` and `rtol` of [`pinv_with`] and [`matrix_rank_with`]: singular
/// values at or below `max(atol, rtol * σ_max)` count as zero. As in PyTorch, both unset
/// means `rtol = ε max(m, n)` (`ε` of the dtype), and `atol` set above zero alone means
/// `rtol = 0`.
///
/// ```
/// use tapegrad_ops::linalg::RankTolerance;
/// let tolerance = RankTolerance::default().atol(1e-6);
/// assert_eq!(tolerance.threshold(10.0, 3, 3, tapegrad_tape::DType::F64), 1e-6);
/// let default = RankTolerance::default().threshold(10.0, 3, 4, tapegrad_tape::DType::F64);
/// assert_eq!(default, 10.0 * 4.0 * f64::EPSILON);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RankTolerance {
    atol: Option<f64>,
    rtol: Option<f64>,
}

impl RankTolerance {
    /// The absolute tolerance.
    ///
    /// ```
    /// let t = tapegrad_ops::linalg::RankTolerance::default().atol(0.5);
    /// assert_eq!(t.threshold(0.1, 2, 2, tapegrad_tape::DType::F32), 0.5);
    /// ```
    pub fn atol(mut self, atol: f64) -> Self {
        self.atol = Some(atol);
        self
    }

    /// The tolerance relative to the largest singular value.
    ///
    /// ```
    /// let t = tapegrad_ops::linalg::RankTolerance::default().rtol(0.1);
    /// assert_eq!(t.threshold(5.0, 2, 2, tapegrad_tape::DType::F32), 0.5);
    /// ```
    pub fn rtol(mut self, rtol: f64) -> Self {
        self.rtol = Some(rtol);
        self
    }

    /// The threshold for a matrix of `m x n` in `dtype` whose largest singular value is
    /// `largest`.
    ///
    /// ```
    /// use tapegrad_ops::linalg::RankTolerance;
    /// let t = RankTolerance::default().atol(1.0).rtol(0.5);
    /// assert_eq!(t.threshold(4.0, 2, 2, tapegrad_tape::DType::F64), 2.0);
    /// ```
    pub fn threshold(&self, largest: f64, m: usize, n: usize, dtype: DType) -> f64 {
        let epsilon = if dtype == DType::F32 { f64::from(f32::EPSILON) } else { f64::EPSILON };
        let rtol = match (self.atol, self.rtol) {
            (_, Some(rtol)) => rtol,
            (Some(atol), None) if atol > 0.0 => 0.0,
            _ => epsilon * m.max(n) as f64,
        };
        self.atol.unwrap_or(0.0).max(rtol * largest)
    }
}

/// The Moore-Penrose pseudo-inverse of each matrix (PyTorch's `torch.linalg.pinv`), from
/// its singular value decomposition with the default [`RankTolerance`]: `A⁺` of `n x m`,
/// the least-squares, least-norm solver. Differentiable to any order and in forward mode
/// where the rank does not change nearby (as PyTorch's).
///
/// ```
/// use tapegrad_ops::{linalg, prelude::*};
/// use tapegrad_tape::Tensor;
/// // A rank-one matrix: its pseudo-inverse is vuᵀ / σ.
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
/// let p = linalg::pinv(&a);
/// assert!((&p - &a.transpose(0, 1).div_scalar(25.0)).abs().max().item() < 1e-15);
/// // A A⁺ A = A.
/// assert!((&a.matmul(&p).matmul(&a) - &a).abs().max().item() < 1e-14);
/// ```
#[track_caller]
pub fn pinv(a: &Tensor) -> Tensor {
    or_panic(try_pinv_with(a, RankTolerance::default()))
}

/// [`pinv`] with PyTorch's keywords `atol` and `rtol` ([`RankTolerance`]).
///
/// ```
/// use tapegrad_ops::linalg::{self, RankTolerance};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1e-3], &[2, 2]);
/// let p = linalg::pinv_with(&a, RankTolerance::default().rtol(1e-2));
/// assert_eq!(p.to_vec::<f32>(), vec![1.0, 0.0, 0.0, 0.0]); // 1e-3 counts as zero
/// ```
#[track_caller]
pub fn pinv_with(a: &Tensor, tolerance: RankTolerance) -> Tensor {
    or_panic(try_pinv_with(a, tolerance))
}

/// [`pinv_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, RankTolerance};
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_pinv_with(&Tensor::zeros(&[3]), RankTolerance::default()).is_err());
/// ```
#[track_caller]
pub fn try_pinv_with(a: &Tensor, tolerance: RankTolerance) -> Result<Tensor> {
    let location = Location::caller();
    let (m, n) = matrices("pinv", a, location)?;
    let batch = &a.shape()[..a.dim() - 2];
    let count: usize = batch.iter().product();
    let dtype = a.dtype();
    let values = if m * n == 0 {
        vec![0.0; count * n * m]
    } else {
        let k = m.min(n);
        kernels::map_matrices(&a.to_vec::<f64>(), m * n, 12 * m * n * k, |matrix| {
            let svd = kernels::Svd::of(matrix, m, n, false, true);
            if svd.s[0].is_nan() {
                // NaN or an infinity in the matrix (PyTorch's product with NaN factors).
                return vec![f64::NAN; n * m];
            }
            let cut = tolerance.threshold(svd.s[0], m, n, dtype);
            // A⁺ = Σ v_i u_iᵀ / σ_i over the σ_i above the threshold.
            let mut p = vec![0.0; n * m];
            for (i, &sigma) in svd.s.iter().enumerate().filter(|&(_, &sigma)| sigma > cut) {
                for r in 0..n {
                    let v = svd.vt[i * n + r] / sigma;
                    let row = &mut p[r * m..(r + 1) * m];
                    row.iter_mut().enumerate().for_each(|(c, x)| *x += v * svd.u[c * k + i]);
                }
            }
            p
        })
        .concat()
    };
    let shape: Vec<usize> = batch.iter().copied().chain([n, m]).collect();
    let out = from_f64(values, &shape, dtype);
    Ok(record_with_tangent(
        "pinv",
        location,
        &[a],
        out,
        || {
            Backward::new(|ctx| {
                smallvec![Some(pinv_backward(ctx.saved(0), ctx.output(), ctx.grad()))]
            })
            .save(a)
            .save_output()
        },
        |ctx| {
            let da = ctx.tangent(0).expect("a tangent for the one input");
            pinv_tangent(ctx.input(0), ctx.output(), da)
        },
    ))
}

/// The adjoint of [`pinv_tangent`]:
/// `gA = -A⁺ᵀ G A⁺ᵀ + (I - A A⁺) Gᵀ A⁺ A⁺ᵀ + A⁺ᵀ A⁺ Gᵀ (I - A⁺ A)`.
fn pinv_backward(a: &Tensor, p: &Tensor, g: &Tensor) -> Tensor {
    let (pt, gt) = (p.transpose(-2, -1), g.transpose(-2, -1));
    let first = pt.matmul(g).matmul(&pt);
    let x = gt.matmul(p).matmul(&pt);
    let second = &x - &a.matmul(&p.matmul(&x));
    let y = pt.matmul(p).matmul(&gt);
    let third = &y - &y.matmul(p).matmul(a);
    &(&second + &third) - &first
}

/// The derivative of a pseudo-inverse of constant rank (Golub and Pereyra):
/// `dA⁺ = -A⁺ dA A⁺ + A⁺ A⁺ᵀ dAᵀ (I - A A⁺) + (I - A⁺ A) dAᵀ A⁺ᵀ A⁺`.
fn pinv_tangent(a: &Tensor, p: &Tensor, da: &Tensor) -> Tensor {
    let (pt, dat) = (p.transpose(-2, -1), da.transpose(-2, -1));
    let first = p.matmul(da).matmul(p);
    let z = p.matmul(&pt).matmul(&dat);
    let second = &z - &z.matmul(a).matmul(p);
    let w = dat.matmul(&pt).matmul(p);
    let third = &w - &p.matmul(&a.matmul(&w));
    &(&second + &third) - &first
}

/// The number of singular values of each matrix above the default [`RankTolerance`]
/// (PyTorch's `torch.linalg.matrix_rank`), an i64 tensor of the batch's shape.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 2.0, 4.0, 0.0, 1.0, 0.0, 0.0], &[2, 2, 2]);
/// assert_eq!(linalg::matrix_rank(&a).to_vec::<i64>(), vec![1, 1]);
/// ```
#[track_caller]
pub fn matrix_rank(a: &Tensor) -> Tensor {
    or_panic(try_matrix_rank_with(a, RankTolerance::default()))
}

/// [`matrix_rank`] with PyTorch's keywords `atol` and `rtol` ([`RankTolerance`]).
///
/// ```
/// use tapegrad_ops::linalg::{self, RankTolerance};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1e-3], &[2, 2]);
/// assert_eq!(linalg::matrix_rank_with(&a, RankTolerance::default().atol(1e-2)).item(), 1.0);
/// ```
#[track_caller]
pub fn matrix_rank_with(a: &Tensor, tolerance: RankTolerance) -> Tensor {
    or_panic(try_matrix_rank_with(a, tolerance))
}

/// [`matrix_rank_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, RankTolerance};
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_matrix_rank_with(&Tensor::zeros(&[2]), RankTolerance::default()).is_err());
/// ```
#[track_caller]
pub fn try_matrix_rank_with(a: &Tensor, tolerance: RankTolerance) -> Result<Tensor> {
    let location = Location::caller();
    let (m, n) = matrices("matrix_rank", a, location)?;
    let dtype = a.dtype();
    let ranks: Vec<i64> = if m * n == 0 {
        vec![0; a.shape()[..a.dim() - 2].iter().product()]
    } else {
        kernels::map_matrices(&a.to_vec::<f64>(), m * n, 8 * m * n * m.min(n), |matrix| {
            let s = kernels::Svd::of(matrix, m, n, false, false).s;
            let cut = tolerance.threshold(s[0], m, n, dtype);
            s.iter().filter(|&&sigma| sigma > cut).count() as i64
        })
    };
    Ok(Tensor::from_vec(ranks, &a.shape()[..a.dim() - 2]))
}

/// Which matrix norm [`matrix_norm_with`] takes: PyTorch's `ord`.
///
/// ```
/// assert_eq!(tapegrad_ops::linalg::MatrixOrd::default(), tapegrad_ops::linalg::MatrixOrd::Fro);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatrixOrd {
    /// `'fro'`: the square root of the sum of squares (the default).
    #[default]
    Fro,
    /// `'nuc'`: the sum of the singular values.
    Nuc,
    /// `2`: the largest singular value.
    Two,
    /// `-2`: the smallest singular value.
    NegTwo,
    /// `1`: the largest sum of absolute values down a column.
    One,
    /// `-1`: the smallest such column sum.
    NegOne,
    /// `inf`: the largest sum of absolute values along a row.
    Inf,
    /// `-inf`: the smallest such row sum.
    NegInf,
}

/// The keywords of [`matrix_norm_with`]: PyTorch's `ord` (default [`MatrixOrd::Fro`]) and
/// `keepdim` (default false; true keeps both matrix dimensions as size 1).
///
/// ```
/// use tapegrad_ops::linalg::{MatrixNormOptions, MatrixOrd};
/// let options = MatrixNormOptions::default().ord(MatrixOrd::Nuc).keepdim(true);
/// assert_eq!((options.get_ord(), options.is_keepdim()), (MatrixOrd::Nuc, true));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatrixNormOptions {
    ord: MatrixOrd,
    keepdim: bool,
}

impl MatrixNormOptions {
    /// The norm to take.
    ///
    /// ```
    /// use tapegrad_ops::linalg::{MatrixNormOptions, MatrixOrd};
    /// assert_eq!(MatrixNormOptions::default().ord(MatrixOrd::Two).get_ord(), MatrixOrd::Two);
    /// ```
    pub fn ord(mut self, ord: MatrixOrd) -> Self {
        self.ord = ord;
        self
    }

    /// Whether the two matrix dimensions stay, as size 1.
    ///
    /// ```
    /// assert!(tapegrad_ops::linalg::MatrixNormOptions::default().keepdim(true).is_keepdim());
    /// ```
    pub fn keepdim(mut self, keepdim: bool) -> Self {
        self.keepdim = keepdim;
        self
    }

    /// The `ord` setting.
    ///
    /// ```
    /// use tapegrad_ops::linalg::{MatrixNormOptions, MatrixOrd};
    /// assert_eq!(MatrixNormOptions::default().get_ord(), MatrixOrd::Fro);
    /// ```
    pub fn get_ord(&self) -> MatrixOrd {
        self.ord
    }

    /// The `keepdim` setting.
    ///
    /// ```
    /// assert!(!tapegrad_ops::linalg::MatrixNormOptions::default().is_keepdim());
    /// ```
    pub fn is_keepdim(&self) -> bool {
        self.keepdim
    }
}

/// The Frobenius norm of each matrix (PyTorch's `torch.linalg.matrix_norm` with its
/// defaults), over the last two dimensions; its gradient at a zero matrix is zero.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![3.0f32, 0.0, 0.0, 4.0], &[2, 2]);
/// assert_eq!(linalg::matrix_norm(&a).item(), 5.0);
/// ```
#[track_caller]
pub fn matrix_norm(a: &Tensor) -> Tensor {
    or_panic(try_matrix_norm_with(a, MatrixNormOptions::default()))
}

/// [`matrix_norm`] with PyTorch's keywords ([`MatrixNormOptions`]). The spectral and
/// nuclear norms go through [`svdvals`](super::svdvals), the others through sums of
/// absolute values; all differentiate as the ops they are made of.
///
/// ```
/// use tapegrad_ops::linalg::{self, MatrixNormOptions, MatrixOrd};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f64, -2.0, 3.0, 4.0], &[2, 2]);
/// let norm = |ord| linalg::matrix_norm_with(&a, MatrixNormOptions::default().ord(ord)).item();
/// assert_eq!((norm(MatrixOrd::One), norm(MatrixOrd::Inf), norm(MatrixOrd::NegInf)), (6.0, 7.0, 3.0));
/// // σ₁ + σ₂, whose square is ‖A‖² + 2 |det A| = 30 + 20.
/// assert!((norm(MatrixOrd::Nuc) - 50f64.sqrt()).abs() < 1e-14);
/// ```
#[track_caller]
pub fn matrix_norm_with(a: &Tensor, options: MatrixNormOptions) -> Tensor {
    or_panic(try_matrix_norm_with(a, options))
}

/// [`matrix_norm_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg::{self, MatrixNormOptions};
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_matrix_norm_with(&Tensor::zeros(&[3]), MatrixNormOptions::default()).is_err());
/// ```
#[track_caller]
pub fn try_matrix_norm_with(a: &Tensor, options: MatrixNormOptions) -> Result<Tensor> {
    let location = Location::caller();
    let (m, n) = matrices("matrix_norm", a, location)?;
    let needs_entries = !matches!(options.ord, MatrixOrd::Fro | MatrixOrd::Nuc);
    if needs_entries && m * n == 0 {
        return Err(Error::Shape {
            op: "matrix_norm",
            message: format!(
                "{:?} of empty matrices (shape {:?}) has no maximum or minimum",
                options.ord,
                a.shape()
            ),
            location,
        });
    }
    let norm = match options.ord {
        MatrixOrd::Fro => a.flatten(-2, -1).norm_dim(2.0, -1, false),
        MatrixOrd::Nuc => try_svdvals(a)?.sum_dim(-1, false),
        MatrixOrd::Two => try_svdvals(a)?.amax(&[-1], false),
        MatrixOrd::NegTwo => try_svdvals(a)?.amin(&[-1], false),
        MatrixOrd::One => a.abs().sum_dim(-2, false).amax(&[-1], false),
        MatrixOrd::NegOne => a.abs().sum_dim(-2, false).amin(&[-1], false),
        MatrixOrd::Inf => a.abs().sum_dim(-1, false).amax(&[-1], false),
        MatrixOrd::NegInf => a.abs().sum_dim(-1, false).amin(&[-1], false),
    };
    Ok(if options.keepdim { norm.unsqueeze(-1).unsqueeze(-1) } else { norm })
}

/// The condition number of each matrix in the spectral norm, `σ_max / σ_min` (PyTorch's
/// `torch.linalg.cond` with its default `p=None`): infinite for a singular matrix, and 0
/// for an empty one (as PyTorch).
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![4.0f32, 0.0, 0.0, -0.5], &[2, 2]);
/// assert_eq!(linalg::cond(&a).item(), 8.0);
/// ```
#[track_caller]
pub fn cond(a: &Tensor) -> Tensor {
    or_panic(try_cond(a))
}

/// [`cond`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::linalg;
/// use tapegrad_tape::Tensor;
/// assert!(linalg::try_cond(&Tensor::zeros(&[3])).is_err()); // a vector
/// assert_eq!(linalg::cond(&Tensor::zeros(&[2, 0, 0])).to_vec::<f32>(), vec![0.0, 0.0]);
/// ```
#[track_caller]
pub fn try_cond(a: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let (m, n) = matrices("cond", a, location)?;
    if m * n == 0 {
        return Ok(Tensor::zeros_dtype(&a.shape()[..a.dim() - 2], a.dtype()));
    }
    let s = try_svdvals(a)?;
    let k = m.min(n);
    Ok(&s.narrow(-1, 0, 1).squeeze_dim(-1) / &s.narrow(-1, k - 1, 1).squeeze_dim(-1))
}
