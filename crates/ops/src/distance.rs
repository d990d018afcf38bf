//! Normalising along a dimension, cosine similarity and distances (PyTorch's
//! `F.normalize`, `F.cosine_similarity`, `F.pairwise_distance` and `torch.cdist`), composed
//! of recorded ops so they differentiate to any order;
//! and class labels as one-hot rows (`F.one_hot`), the other end of such losses.

use tapegrad_tape::{Result, Tensor};

use crate::options::setters;
use crate::reduce::ReduceOps;
use crate::unary::UnaryOps;

/// PyTorch's keywords of `F.normalize`: the norm's order `p` (2), the dimension `dim` (1)
/// and the smallest divisor `eps` (1e-12).
///
/// ```
/// use tapegrad_ops::NormalizeOptions;
/// let o = NormalizeOptions::default();
/// assert_eq!((o.p, o.dim, o.eps), (2.0, 1, 1e-12));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormalizeOptions {
    /// The order of the norm.
    pub p: f64,
    /// The dimension normalised.
    pub dim: isize,
    /// The smallest norm divided by.
    pub eps: f64,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        NormalizeOptions { p: 2.0, dim: 1, eps: 1e-12 }
    }
}

setters!(NormalizeOptions {
    /// Sets `p`.
    p(f64) => p, example 1.0 => o.p == 1.0;
    /// Sets `dim`.
    dim(isize) => dim, example -1 => o.dim == -1;
    /// Sets `eps`.
    eps(f64) => eps, example 1e-6 => o.eps == 1e-6;
});

/// PyTorch's keywords of `F.cosine_similarity`: the dimension `dim` (1) and the smallest
/// norm `eps` (1e-8).
///
/// ```
/// use tapegrad_ops::CosineSimilarityOptions;
/// let o = CosineSimilarityOptions::default();
/// assert_eq!((o.dim, o.eps), (1, 1e-8));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineSimilarityOptions {
    /// The dimension the vectors lie along.
    pub dim: isize,
    /// The smallest norm divided by.
    pub eps: f64,
}

impl Default for CosineSimilarityOptions {
    fn default() -> Self {
        CosineSimilarityOptions { dim: 1, eps: 1e-8 }
    }
}

setters!(CosineSimilarityOptions {
    /// Sets `dim`.
    dim(isize) => dim, example -1 => o.dim == -1;
    /// Sets `eps`.
    eps(f64) => eps, example 1e-6 => o.eps == 1e-6;
});

/// PyTorch's keywords of `F.pairwise_distance`: the norm's order `p` (2), the `eps` (1e-6)
/// added to every difference, and `keepdim` (false).
///
/// ```
/// use tapegrad_ops::PairwiseDistanceOptions;
/// let o = PairwiseDistanceOptions::default();
/// assert_eq!((o.p, o.eps, o.keepdim), (2.0, 1e-6, false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairwiseDistanceOptions {
    /// The order of the norm.
    pub p: f64,
    /// Added to every difference, so the norm's gradient at equal vectors is finite.
    pub eps: f64,
    /// Whether the reduced last dimension stays, with size 1.
    pub keepdim: bool,
}

impl Default for PairwiseDistanceOptions {
    fn default() -> Self {
        PairwiseDistanceOptions { p: 2.0, eps: 1e-6, keepdim: false }
    }
}

setters!(PairwiseDistanceOptions {
    /// Sets `p`.
    p(f64) => p, example 1.0 => o.p == 1.0;
    /// Sets `eps`.
    eps(f64) => eps, example 0.0 => o.eps == 0.0;
    /// Sets `keepdim`.
    keepdim(bool) => keepdim, example true => o.keepdim;
});

/// `||x1 - x2 + eps||_p` along the last dimension, the inputs broadcast together (PyTorch's
/// `F.pairwise_distance`; any order but 0, negative and infinite ones included).
#[track_caller]
pub(crate) fn pairwise_distance(
    x1: &Tensor,
    x2: &Tensor,
    options: PairwiseDistanceOptions,
) -> Result<Tensor> {
    if options.p.is_nan() || options.p == 0.0 {
        return Err(tapegrad_tape::Error::InvalidArgument {
            op: "pairwise_distance",
            message: format!(
                "the norm's order p must be a non-zero number (p = 0, a count of the \
                 non-zero differences, has no gradient), got {}",
                options.p
            ),
            location: std::panic::Location::caller(),
        });
    }
    let location = std::panic::Location::caller();
    for x in [x1, x2] {
        tapegrad_tape::ensure_float("pairwise_distance", x, location)?;
    }
    if tapegrad_tape::layout::broadcast_shapes(x1.shape(), x2.shape()).is_none() {
        return Err(tapegrad_tape::Error::Shape {
            op: "pairwise_distance",
            message: format!(
                "shapes {:?} and {:?} do not broadcast together",
                x1.shape(),
                x2.shape()
            ),
            location,
        });
    }
    x1.try_sub(x2)?.add_scalar(options.eps).try_norm_dim(options.p, -1, options.keepdim)
}

/// `labels` (int64) as rows of `num_classes` zeros with a one at each label (int64),
/// PyTorch's `F.one_hot`; `None` takes the largest label plus one.
#[track_caller]
pub(crate) fn one_hot(labels: &Tensor, num_classes: Option<usize>) -> Result<Tensor> {
    let location = std::panic::Location::caller();
    let op = "one_hot";
    if labels.dtype() != tapegrad_tape::DType::I64 {
        return Err(tapegrad_tape::Error::InvalidArgument {
            op,
            message: format!("labels must be int64, got {:?}", labels.dtype()),
            location,
        });
    }
    let values = labels.to_vec::<i64>();
    let invalid = |message: String| tapegrad_tape::Error::InvalidArgument { op, message, location };
    if let Some(&bad) = values.iter().find(|&&v| v < 0) {
        return Err(invalid(format!("label {bad} is negative")));
    }
    let classes = match num_classes {
        Some(n) => n,
        None if values.is_empty() => {
            return Err(invalid("cannot infer the number of classes from no labels".into()));
        }
        None => values.iter().max().map_or(0, |&m| m as usize + 1),
    };
    if let Some(&bad) = values.iter().find(|&&v| v as usize >= classes) {
        return Err(invalid(format!("label {bad} is not below num_classes = {classes}")));
    }
    let mut out = vec![0i64; values.len() * classes];
    for (row, &label) in out.chunks_exact_mut(classes.max(1)).zip(&values) {
        row[label as usize] = 1;
    }
    let mut shape = labels.shape().to_vec();
    shape.push(classes);
    Ok(Tensor::from_vec(out, &shape))
}

/// `x / max(‖x‖_p, eps)` along `dim`, as PyTorch computes it.
#[track_caller]
pub(crate) fn normalize(x: &Tensor, options: NormalizeOptions) -> Result<Tensor> {
    let norm = x.try_norm_dim(options.p, options.dim, true)?;
    x.try_div(&norm.clamp(Some(options.eps), None))
}

/// `Σ (x1 / max(‖x1‖, eps)) (x2 / max(‖x2‖, eps))` along `dim` after broadcasting, PyTorch's
/// formula (each vector scaled by its own norm first, so the result stays in `[-1, 1]`).
#[track_caller]
pub(crate) fn cosine_similarity(
    x1: &Tensor,
    x2: &Tensor,
    options: CosineSimilarityOptions,
) -> Result<Tensor> {
    let shape =
        tapegrad_tape::layout::broadcast_shapes(x1.shape(), x2.shape()).ok_or_else(|| {
            tapegrad_tape::Error::Shape {
                op: "cosine_similarity",
                message: format!(
                    "shapes {:?} and {:?} do not broadcast together",
                    x1.shape(),
                    x2.shape()
                ),
                location: std::panic::Location::caller(),
            }
        })?;
    let unit = |x: &Tensor| -> Result<Tensor> {
        let x = x.try_broadcast_to(&shape)?;
        let norm = x.try_norm_dim(2.0, options.dim, true)?;
        // PyTorch clamps the norms in place without recording it: the values are clamped
        // but the gradient passes through the clamp as if it were not there.
        let clamped = norm.clamp(Some(options.eps), None).detach();
        x.try_div(&clamped.try_add(&norm.try_sub(&norm.detach())?)?)
    };
    unit(x1)?.try_mul(&unit(x2)?)?.try_sum_dim(options.dim, false)
}

/// The `p`-norm distance between every row of `x1` (`[.., P, M]`) and every row of `x2`
/// (`[.., R, M]`), as `[.., P, R]`, the batch dimensions broadcast (PyTorch's
/// `torch.cdist`). As in PyTorch, Euclidean distances between more than 25 rows on either
/// side come from matrix products (`|a|^2 + |b|^2 - 2 a.b`, faster, less exact for close
/// points), the others from the differences; the gradient is 0 at a zero distance.
///
/// ```
/// use tapegrad_ops::cdist;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f64, 0.0, 3.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
/// assert_eq!(cdist(&a, &b, 2.0).to_vec::<f64>(), vec![0.0, 5.0]);
/// assert_eq!(cdist(&a, &b, 1.0).to_vec::<f64>(), vec![0.0, 7.0]);
/// ```
#[track_caller]
pub fn cdist(x1: &Tensor, x2: &Tensor, p: f64) -> Tensor {
    tapegrad_tape::or_panic(try_cdist(x1, x2, p))
}

/// [`cdist`], returning an error for inputs of fewer than 2 dimensions, rows of different
/// widths, batch dimensions that do not broadcast, or a negative or NaN `p`.
///
/// ```
/// use tapegrad_ops::try_cdist;
/// use tapegrad_tape::Tensor;
/// assert!(try_cdist(&Tensor::ones(&[3, 2]), &Tensor::ones(&[4, 3]), 2.0).is_err());
/// assert!(try_cdist(&Tensor::ones(&[3, 2]), &Tensor::ones(&[4, 2]), -1.0).is_err());
/// ```
#[track_caller]
pub fn try_cdist(x1: &Tensor, x2: &Tensor, p: f64) -> Result<Tensor> {
    use crate::{MatmulOps, ShapeOps};
    let location = std::panic::Location::caller();
    let op = "cdist";
    tapegrad_tape::ensure_float(op, x1, location)?;
    tapegrad_tape::ensure_float(op, x2, location)?;
    let (s1, s2) = (x1.shape(), x2.shape());
    if s1.len() < 2 || s2.len() < 2 || s1[s1.len() - 1] != s2[s2.len() - 1] {
        return Err(tapegrad_tape::Error::Shape {
            op,
            message: format!("expects [.., P, M] and [.., R, M], got {s1:?} and {s2:?}"),
            location,
        });
    }
    if p.is_nan() || p < 0.0 {
        return Err(tapegrad_tape::Error::InvalidArgument {
            op,
            message: format!("p must be non-negative, got {p}"),
            location,
        });
    }
    let (rows1, rows2) = (s1[s1.len() - 2], s2[s2.len() - 2]);
    if p == 2.0 && (rows1 > 25 || rows2 > 25) {
        let square1 = x1.square().try_sum_dim(-1, true)?; // [.., P, 1]
        let square2 = x2.square().try_sum_dim(-1, true)?.try_transpose(-1, -2)?; // [.., 1, R]
        let products = x1.try_matmul(&x2.try_transpose(-1, -2)?)?; // [.., P, R]
        let squared = square1.try_add(&square2)?.try_sub(&products.mul_scalar(2.0))?;
        // Clamped below at 1e-30 as PyTorch does: the gradient is 0 where it clamps.
        return Ok(squared.clamp(Some(1e-30), None).sqrt());
    }
    let differences = x1.try_unsqueeze(-2)?.try_sub(&x2.try_unsqueeze(-3)?)?; // [.., P, R, M]
    differences.try_norm_dim(p, -1, false)
}
