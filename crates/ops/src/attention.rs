//! Scaled dot-product attention, composed of recorded ops (the two products, the mask, the
//! softmax, dropout), so its backward and second derivatives come from theirs.

use std::panic::Location;

use tapegrad_tape::{DType, Error, Result, Tensor, ensure_float};

use crate::binary::{self, BinaryOps};
use crate::options::setters;
use crate::{matmul, reduce, shape};

/// The keywords of `scaled_dot_product_attention`: `attn_mask` (a bool mask, true where a
/// query may attend to a key, or a float mask added to the scores; broadcast to
/// `[..., L, S]`), `dropout_p` (0; applied to the attention weights whenever it is
/// positive, as in PyTorch, so pass 0 outside training), `is_causal` (false; true: query
/// `i` attends to keys `0..=i`, the lower triangle from the top left) and `scale` (`None`:
/// `1 / sqrt(E)`).
///
/// ```
/// use tapegrad_ops::{AttentionOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let (q, k, v) = (Tensor::randn(&[2, 4, 8]), Tensor::randn(&[2, 4, 8]), Tensor::randn(&[2, 4, 8]));
/// let y = F::scaled_dot_product_attention_with(&q, &k, &v, AttentionOptions::default().is_causal(true));
/// // The first query sees only the first key: its output is the first value.
/// assert_eq!(y.to_vec::<f32>()[..8], v.to_vec::<f32>()[..8]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    /// A bool mask (true: attend) or a float mask added to the scores, or `None`.
    pub attn_mask: Option<Tensor>,
    /// Dropout probability on the attention weights.
    pub dropout_p: f64,
    /// Whether each query attends only to keys at or before its own position.
    pub is_causal: bool,
    /// Factor on the scores, `None` for `1 / sqrt(E)`.
    pub scale: Option<f64>,
}

setters!(AttentionOptions {
    /// Sets `attn_mask`.
    attn_mask(&Tensor) => Some(attn_mask.clone()), example &tapegrad_tape::Tensor::ones(&[2, 2]) => o.attn_mask.is_some();
    /// Sets `dropout_p`.
    dropout_p(f64) => dropout_p, example 0.1 => o.dropout_p == 0.1;
    /// Sets `is_causal`.
    is_causal(bool) => is_causal, example true => o.is_causal;
    /// Sets `scale`.
    scale(f64) => Some(scale), example 0.5 => o.scale == Some(0.5);
});

/// `softmax(q kᵀ scale + mask) v` over the last two dimensions of `q` (`[..., L, E]`), `k`
/// (`[..., S, E]`) and `v` (`[..., S, Ev]`), leading dimensions broadcast. Rows whose every
/// key is masked out give zeros (PyTorch's result), not NaN.
#[track_caller]
pub(crate) fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "scaled_dot_product_attention";
    let shape_error = |message: String| Error::Shape { op, message, location };
    for t in [q, k, v] {
        ensure_float(op, t, location)?;
        if t.dim() < 2 {
            return Err(shape_error(format!("expects [..., L, E] operands, got {:?}", t.shape())));
        }
        if t.dtype() != q.dtype() {
            return Err(Error::DType { op, lhs: q.dtype(), rhs: t.dtype(), location });
        }
    }
    let last = |t: &Tensor, i: usize| t.shape()[t.dim() - i];
    if last(q, 1) != last(k, 1) || last(k, 2) != last(v, 2) {
        return Err(shape_error(format!(
            "query {:?}, key {:?} and value {:?} do not fit: query and key need one last \
             dimension, key and value one sequence length",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if options.is_causal && options.attn_mask.is_some() {
        return Err(shape_error("takes attn_mask or is_causal, not both".into()));
    }
    if !(0.0..=1.0).contains(&options.dropout_p) {
        return Err(Error::InvalidArgument {
            op,
            message: format!("dropout_p {} is outside [0, 1]", options.dropout_p),
            location,
        });
    }
    if let Some(mask) = &options.attn_mask
        && mask.dtype() != DType::Bool
        && mask.dtype() != q.dtype()
    {
        return Err(Error::DType { op, lhs: q.dtype(), rhs: mask.dtype(), location });
    }
    let (l, s) = (last(q, 2), last(k, 2));
    let scale = options.scale.unwrap_or(1.0 / (last(q, 1) as f64).sqrt());
    let scores = matmul::matmul(q, &shape::transpose(k, -2, -1)?)?.mul_scalar(scale);
    let neg_inf = Tensor::full_dtype(&[], f64::NEG_INFINITY, q.dtype());
    let scores = match &options.attn_mask {
        Some(mask) if mask.dtype() == DType::Bool => binary::try_where(mask, &scores, &neg_inf)?,
        Some(mask) => scores.try_add(mask)?,
        None if options.is_causal => {
            let rows =
                shape::reshape_to(&Tensor::arange_dtype(0.0, l as f64, 1.0, DType::I64), &[l, 1]);
            let cols =
                shape::reshape_to(&Tensor::arange_dtype(0.0, s as f64, 1.0, DType::I64), &[1, s]);
            binary::try_where(&cols.le(&rows), &scores, &neg_inf)?
        }
        None => scores,
    };
    let weights = if options.attn_mask.is_some() && s > 0 {
        // A row with every key masked has no softmax: zeros, with zero gradients (the rows
        // are replaced before the softmax so that nothing NaN reaches its backward).
        let dead = reduce::max_dim(&scores.detach(), -1, true, true)?.0.eq(&neg_inf);
        let zero = Tensor::zeros_dtype(&[], q.dtype());
        let live = binary::try_where(&dead, &zero, &scores)?;
        binary::try_where(&dead, &zero, &crate::functional::softmax_op(&live, -1, false)?)?
    } else {
        crate::functional::softmax_op(&scores, -1, false)?
    };
    let weights = if options.dropout_p > 0.0 {
        let dropout = crate::functional::DropoutOptions::default().p(options.dropout_p);
        crate::functional::try_dropout_with(&weights, dropout)?
    } else {
        weights
    };
    matmul::matmul(&weights, v)
}
