//! Normalisation and embedding lookups, composed from recorded ops (so their backward,
//! including the second-order one, comes from the pieces).

use std::panic::Location;

use tapegrad_tape::{DType, Error, Result, Tensor, ensure_float, no_grad};

use crate::{reduce, shape, unary};

/// Layer normalisation over the trailing dimensions `normalized_shape`, with optional
/// elementwise affine `weight` and `bias` of that shape.
#[track_caller]
pub(crate) fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("layer_norm", x, location)?;
    let k = normalized_shape.len();
    if k == 0 || k > x.dim() || &x.shape()[x.dim() - k..] != normalized_shape {
        return Err(Error::Shape {
            op: "layer_norm",
            message: format!(
                "normalized shape {normalized_shape:?} is not the trailing shape of input {:?}",
                x.shape()
            ),
            location,
        });
    }
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.shape() != normalized_shape
        {
            return Err(Error::Shape {
                op: "layer_norm",
                message: format!("{name} has shape {:?}, expected {normalized_shape:?}", t.shape()),
                location,
            });
        }
    }
    let lead = &x.shape()[..x.dim() - k];
    let flat_shape: Vec<usize> =
        lead.iter().copied().chain([normalized_shape.iter().product()]).collect();
    let flat = shape::reshape_to(x, &flat_shape);
    let mean = reduce::mean_dim(&flat, -1, true)?;
    let centered = &flat - &mean;
    let var = reduce::mean_dim(&unary::square(&centered), -1, true)?;
    let normed = shape::reshape_to(&(&centered * &unary::rsqrt(&var.add_scalar(eps))), x.shape());
    let scaled = match weight {
        Some(w) => &normed * w,
        None => normed,
    };
    Ok(match bias {
        Some(b) => &scaled + b,
        None => scaled,
    })
}

/// Running statistics of batch normalisation, updated in place during training.
///
/// ```
/// use tapegrad_ops::functional::BatchNormStats;
/// let stats = BatchNormStats::new(3, tapegrad_tape::DType::F32);
/// assert_eq!(stats.running_var.to_vec::<f32>(), vec![1.0; 3]);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNormStats {
    /// Per-channel mean, starting at 0.
    pub running_mean: Tensor,
    /// Per-channel (unbiased) variance, starting at 1.
    pub running_var: Tensor,
}

impl BatchNormStats {
    /// Fresh statistics for `channels` channels.
    ///
    /// ```
    /// use tapegrad_ops::functional::{BatchNormStats, batch_norm};
    /// use tapegrad_tape::{DType, Tensor};
    /// let stats = BatchNormStats::new(2, DType::F64);
    /// assert_eq!(stats.running_mean.to_vec::<f64>(), vec![0.0, 0.0]);
    /// // Mean 0 and variance 1: in evaluation (with eps 0) the input passes unchanged.
    /// let x = Tensor::from_vec(vec![1.0f64, -2.0], &[1, 2]);
    /// assert_eq!(
    ///     batch_norm(&x, Some(&stats), None, None, false, 0.1, 0.0).to_vec::<f64>(),
    ///     vec![1.0, -2.0]
    /// );
    /// ```
    pub fn new(channels: usize, dtype: DType) -> Self {
        BatchNormStats {
            running_mean: Tensor::zeros_dtype(&[channels], dtype),
            running_var: Tensor::ones_dtype(&[channels], dtype),
        }
    }
}

/// Batch normalisation of `[N, C, ...]` over every dimension but the channels. In training
/// it normalises with the batch statistics and moves `stats` toward them by `momentum`
/// (PyTorch's convention: `new = (1 - momentum) old + momentum batch`, unbiased variance);
/// in evaluation it uses `stats`.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub(crate) fn batch_norm(
    x: &Tensor,
    stats: Option<&BatchNormStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("batch_norm", x, location)?;
    if x.dim() < 2 {
        return Err(Error::Shape {
            op: "batch_norm",
            message: format!("expects input [N, C, ...], got {:?}", x.shape()),
            location,
        });
    }
    let c = x.shape()[1];
    let bad = |what: &str, t: &Tensor| Error::Shape {
        op: "batch_norm",
        message: format!("{what} has shape {:?}, expected [{c}]", t.shape()),
        location,
    };
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t.filter(|t| t.shape() != [c]) {
            return Err(bad(name, t));
        }
    }
    if let Some(s) = stats {
        for (name, t) in [("running_mean", &s.running_mean), ("running_var", &s.running_var)] {
            if t.shape() != [c] {
                return Err(bad(name, t));
            }
        }
    }
    let mut bshape = vec![1; x.dim()];
    bshape[1] = c;
    let per_channel = |t: &Tensor| shape::reshape_to(t, &bshape);
    let running = stats.filter(|_| !training);
    let (mean, var) = if let Some(s) = running {
        (s.running_mean.detach(), s.running_var.detach())
    } else {
        // [N, C, ...] -> [C, N * ...]: one row per channel.
        let rows =
            shape::reshape_to(&shape::transpose(x, 0, 1)?.contiguous(), &[c, x.numel() / c.max(1)]);
        let n = rows.shape()[1];
        if n <= 1 && training {
            return Err(Error::InvalidArgument {
                op: "batch_norm",
                message: format!(
                    "needs more than one value per channel in training, got input {:?}",
                    x.shape()
                ),
                location,
            });
        }
        let mean = reduce::mean_dim(&rows, 1, false)?;
        let centered = &rows - &shape::unsqueeze(&mean, 1)?;
        let var = reduce::mean_dim(&unary::square(&centered), 1, false)?;
        if let (Some(s), true) = (stats, training) {
            let _guard = no_grad();
            let unbiased = var.detach().mul_scalar(n as f64 / (n as f64 - 1.0));
            s.running_mean.set_data(
                &(&s.running_mean.mul_scalar(1.0 - momentum) + &mean.detach().mul_scalar(momentum)),
            );
            s.running_var.set_data(
                &(&s.running_var.mul_scalar(1.0 - momentum) + &unbiased.mul_scalar(momentum)),
            );
        }
        (mean, var)
    };
    let normed = &(x - &per_channel(&mean)) * &per_channel(&unary::rsqrt(&var.add_scalar(eps)));
    let scaled = match weight {
        Some(w) => &normed * &per_channel(w),
        None => normed,
    };
    Ok(match bias {
        Some(b) => &scaled + &per_channel(b),
        None => scaled,
    })
}

/// Rows of `weight` (`[num_embeddings, dim]`) for every int64 index in `indices`, shaped
/// `[indices.., dim]`.
#[track_caller]
pub(crate) fn embedding(indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if weight.dim() != 2 {
        return Err(Error::Shape {
            op: "embedding",
            message: format!("weight must be [num_embeddings, dim], got {:?}", weight.shape()),
            location,
        });
    }
    // Checked here so that errors name embedding rather than the index_select inside it.
    crate::index::index_values("embedding", indices, weight.shape()[0], location)?;
    let flat = shape::reshape_to(indices, &[indices.numel()]);
    let rows = crate::index::index_select(weight, 0, &flat)?;
    let out: Vec<usize> = indices.shape().iter().copied().chain([weight.shape()[1]]).collect();
    Ok(shape::reshape_to(&rows, &out))
}
