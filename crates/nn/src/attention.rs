//! Multi-head attention as a layer (PyTorch's `nn.MultiheadAttention`): the input
//! projections, the heads, the masks in PyTorch's layer convention (true: do not attend),
//! scaled dot-product attention and the output projection, all recorded ops.

use std::panic::Location;

use tapegrad_ops::functional::{self as F, DropoutOptions};
use tapegrad_ops::prelude::*;
use tapegrad_ops::{AttentionOptions, where_};
use tapegrad_tape::{DType, Error, Result, Storage, Tensor};

use crate::Module;
use crate::field::TrainingFlag;
use crate::init;
use crate::layers::Linear;
use crate::module::Forward;

const OP: &str = "MultiheadAttention";

/// Attention over `num_heads` heads that share `embed_dim`: PyTorch's
/// `nn.MultiheadAttention`, with its parameter names (`in_proj_weight`, `in_proj_bias`,
/// `out_proj.weight`, `out_proj.bias`; `q_proj_weight`, `k_proj_weight`, `v_proj_weight`
/// when keys or values have their own widths) and initialisation (Xavier-uniform input
/// projections, zero biases). Inputs are sequence-major (`[L, N, E]`) unless
/// [`batch_first`](Self::batch_first), or unbatched (`[L, E]`). PyTorch's `add_bias_kv` and
/// `add_zero_attn` are not offered.
///
/// ```
/// use tapegrad_nn::{Module, MultiheadAttention};
/// use tapegrad_tape::Tensor;
/// let attention = MultiheadAttention::new(16, 4).batch_first(true);
/// let x = Tensor::randn(&[2, 5, 16]); // [N, L, E]
/// let (y, weights) = attention.forward(&x, &x, &x); // self-attention
/// assert_eq!(y.shape(), &[2, 5, 16]);
/// assert_eq!(weights.unwrap().shape(), &[2, 5, 5]); // averaged over the heads
/// let names: Vec<_> = attention.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
/// ```
#[derive(Module)]
pub struct MultiheadAttention {
    /// The query, key and value projections stacked, `[3 E, E]`, when all three are `E` wide.
    pub in_proj_weight: Option<Tensor>,
    /// The query projection `[E, E]`, when keys or values have their own widths.
    pub q_proj_weight: Option<Tensor>,
    /// The key projection `[E, kdim]`, when keys or values have their own widths.
    pub k_proj_weight: Option<Tensor>,
    /// The value projection `[E, vdim]`, when keys or values have their own widths.
    pub v_proj_weight: Option<Tensor>,
    /// The three projections' biases stacked, `[3 E]`, if the layer has biases.
    pub in_proj_bias: Option<Tensor>,
    /// The output projection.
    pub out_proj: Linear,
    /// The number of heads; each is `E / num_heads` wide.
    pub num_heads: usize,
    /// Dropout probability on the attention weights, in training mode.
    pub dropout: f64,
    /// Whether inputs and outputs are `[N, L, E]` rather than `[L, N, E]`.
    pub batch_first: bool,
    training: TrainingFlag,
}

/// The keywords of [`MultiheadAttention::forward_with`], PyTorch's defaults from
/// `default()`: `key_padding_mask` (`[N, S]`: true, or a float added to the scores, for keys
/// to ignore), `need_weights` (true: also return the attention weights), `attn_mask`
/// (`[L, S]` or `[N * num_heads, L, S]`: true where a query may not attend to a key, or a
/// float added to the scores), `average_attn_weights` (true: weights averaged over heads)
/// and `is_causal` (true: each query attends only to keys at or before its position; with
/// an `attn_mask` it is PyTorch's hint that the mask is causal, and the mask is used, so a
/// wrong hint does no harm; without a key padding mask and returned weights, the attention
/// then skips the keys the causal mask hides, with or without the mask passed).
///
/// ```
/// use tapegrad_nn::{MultiheadAttention, MultiheadAttentionOptions};
/// use tapegrad_tape::Tensor;
/// let attention = MultiheadAttention::new(8, 2);
/// let x = Tensor::randn(&[4, 1, 8]); // [L, N, E]
/// let options = MultiheadAttentionOptions::default().is_causal(true);
/// let (_, weights) = attention.forward_with(&x, &x, &x, options);
/// let weights = weights.unwrap().to_vec::<f32>(); // [1, 4, 4]
/// assert_eq!(weights[0], 1.0); // the first query sees only the first key
/// assert_eq!(weights[1..4], [0.0; 3]);
/// ```
#[derive(Clone, Debug)]
pub struct MultiheadAttentionOptions {
    /// Keys to ignore, per batch entry: bool (true: ignore) or float (added).
    pub key_padding_mask: Option<Tensor>,
    /// Whether to return the attention weights too.
    pub need_weights: bool,
    /// Query-key pairs to exclude: bool (true: exclude) or float (added).
    pub attn_mask: Option<Tensor>,
    /// Whether returned weights are averaged over the heads (`[N, L, S]`) or kept per head
    /// (`[N, num_heads, L, S]`).
    pub average_attn_weights: bool,
    /// Whether queries attend only to keys at or before their own position.
    pub is_causal: bool,
}

impl Default for MultiheadAttentionOptions {
    fn default() -> Self {
        MultiheadAttentionOptions {
            key_padding_mask: None,
            need_weights: true,
            attn_mask: None,
            average_attn_weights: true,
            is_causal: false,
        }
    }
}

impl MultiheadAttentionOptions {
    /// Sets `key_padding_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::from_vec(vec![false, true], &[1, 2]);
    /// let o = tapegrad_nn::MultiheadAttentionOptions::default().key_padding_mask(&mask);
    /// assert!(o.key_padding_mask.is_some());
    /// ```
    pub fn key_padding_mask(mut self, mask: &Tensor) -> Self {
        self.key_padding_mask = Some(mask.clone());
        self
    }

    /// Sets `need_weights`.
    ///
    /// ```
    /// assert!(!tapegrad_nn::MultiheadAttentionOptions::default().need_weights(false).need_weights);
    /// ```
    pub fn need_weights(mut self, need_weights: bool) -> Self {
        self.need_weights = need_weights;
        self
    }

    /// Sets `attn_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::zeros(&[3, 3]);
    /// assert!(tapegrad_nn::MultiheadAttentionOptions::default().attn_mask(&mask).attn_mask.is_some());
    /// ```
    pub fn attn_mask(mut self, mask: &Tensor) -> Self {
        self.attn_mask = Some(mask.clone());
        self
    }

    /// Sets `average_attn_weights`.
    ///
    /// ```
    /// let o = tapegrad_nn::MultiheadAttentionOptions::default().average_attn_weights(false);
    /// assert!(!o.average_attn_weights);
    /// ```
    pub fn average_attn_weights(mut self, average: bool) -> Self {
        self.average_attn_weights = average;
        self
    }

    /// Sets `is_causal`.
    ///
    /// ```
    /// assert!(tapegrad_nn::MultiheadAttentionOptions::default().is_causal(true).is_causal);
    /// ```
    pub fn is_causal(mut self, is_causal: bool) -> Self {
        self.is_causal = is_causal;
        self
    }
}

/// Whether `mask` is the `[l, s]` causal mask, as a bool mask (true above the diagonal) or
/// a float one (`-inf` above it, 0 elsewhere).
fn is_causal_mask(mask: &Tensor, l: usize, s: usize) -> bool {
    if mask.shape() != [l, s] {
        return false;
    }
    let hidden = |m: f64| m == f64::NEG_INFINITY;
    match &mask.contiguous_storage() {
        Storage::Bool(bits) => bits.iter().enumerate().all(|(p, &m)| m == (p % s > p / s)),
        Storage::F32(v) => v
            .iter()
            .enumerate()
            .all(|(p, &m)| if p % s > p / s { hidden(m as f64) } else { m == 0.0 }),
        Storage::F64(v) => {
            v.iter().enumerate().all(|(p, &m)| if p % s > p / s { hidden(m) } else { m == 0.0 })
        }
        Storage::I64(_) => false,
    }
}

impl MultiheadAttention {
    /// `num_heads` heads over `embed_dim` features (which the heads divide), with biases,
    /// no dropout, sequence-major.
    ///
    /// ```
    /// use tapegrad_nn::MultiheadAttention;
    /// let attention = MultiheadAttention::new(12, 3);
    /// assert_eq!(attention.in_proj_weight.as_ref().unwrap().shape(), &[36, 12]);
    /// assert_eq!(attention.embed_dim(), 12);
    /// ```
    #[track_caller]
    pub fn new(embed_dim: usize, num_heads: usize) -> Self {
        assert!(
            num_heads > 0 && embed_dim.is_multiple_of(num_heads),
            "MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}"
        );
        let mut out_proj = Linear::new(embed_dim, embed_dim);
        out_proj.bias = Some(Tensor::zeros(&[embed_dim]).requires_grad());
        MultiheadAttention {
            in_proj_weight: Some(
                init::xavier_uniform(&[3 * embed_dim, embed_dim], 1.0).requires_grad(),
            ),
            q_proj_weight: None,
            k_proj_weight: None,
            v_proj_weight: None,
            in_proj_bias: Some(Tensor::zeros(&[3 * embed_dim]).requires_grad()),
            out_proj,
            num_heads,
            dropout: 0.0,
            batch_first: false,
            training: TrainingFlag::default(),
        }
    }

    /// Keys `kdim` and values `vdim` wide (PyTorch's `kdim`, `vdim`): three separate input
    /// projections, each initialised afresh; when both are `embed_dim`, the stacked
    /// projection stays (as in PyTorch).
    ///
    /// ```
    /// use tapegrad_nn::MultiheadAttention;
    /// use tapegrad_tape::Tensor;
    /// let attention = MultiheadAttention::new(8, 2).kdim_vdim(5, 3);
    /// assert!(attention.in_proj_weight.is_none());
    /// assert_eq!(attention.k_proj_weight.as_ref().unwrap().shape(), &[8, 5]);
    /// let (q, k, v) = (Tensor::randn(&[4, 1, 8]), Tensor::randn(&[6, 1, 5]), Tensor::randn(&[6, 1, 3]));
    /// assert_eq!(attention.forward(&q, &k, &v).0.shape(), &[4, 1, 8]);
    /// ```
    pub fn kdim_vdim(mut self, kdim: usize, vdim: usize) -> Self {
        let e = self.embed_dim();
        if (kdim, vdim) == (e, e) {
            // PyTorch keeps the stacked projection when all three widths agree.
            if self.in_proj_weight.is_none() {
                let stacked = init::xavier_uniform(&[3 * e, e], 1.0).requires_grad();
                self.in_proj_weight = Some(stacked);
                (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight) = (None, None, None);
            }
            return self;
        }
        let xavier = |cols: usize| Some(init::xavier_uniform(&[e, cols], 1.0).requires_grad());
        self.in_proj_weight = None;
        (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight) =
            (xavier(e), xavier(kdim), xavier(vdim));
        self
    }

    /// Dropout probability on the attention weights (PyTorch's `dropout`), used in
    /// training mode.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::MultiheadAttention::new(4, 2).dropout(0.1).dropout, 0.1);
    /// ```
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Without the input and output biases (PyTorch's `bias=False`).
    ///
    /// ```
    /// use tapegrad_nn::{Module, MultiheadAttention};
    /// assert_eq!(MultiheadAttention::new(4, 2).no_bias().parameters().len(), 2);
    /// ```
    pub fn no_bias(mut self) -> Self {
        self.in_proj_bias = None;
        self.out_proj.bias = None;
        self
    }

    /// Inputs and outputs `[N, L, E]` (PyTorch's `batch_first`).
    ///
    /// ```
    /// use tapegrad_nn::MultiheadAttention;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::randn(&[3, 7, 4]); // [N, L, E]
    /// let y = MultiheadAttention::new(4, 2).batch_first(true).forward(&x, &x, &x).0;
    /// assert_eq!(y.shape(), &[3, 7, 4]);
    /// ```
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// The model width `E`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::MultiheadAttention::new(6, 3).embed_dim(), 6);
    /// ```
    pub fn embed_dim(&self) -> usize {
        self.out_proj.weight.shape()[0]
    }

    /// Attention of `query` to `key` and `value` with PyTorch's defaults: the output and the
    /// attention weights averaged over heads.
    ///
    /// ```
    /// use tapegrad_nn::MultiheadAttention;
    /// use tapegrad_tape::Tensor;
    /// let attention = MultiheadAttention::new(4, 2);
    /// let (q, kv) = (Tensor::randn(&[3, 4]), Tensor::randn(&[5, 4])); // unbatched
    /// let (y, weights) = attention.forward(&q, &kv, &kv);
    /// assert_eq!((y.shape(), weights.unwrap().shape()), (&[3, 4][..], &[3, 5][..]));
    /// ```
    #[track_caller]
    pub fn forward(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
    ) -> (Tensor, Option<Tensor>) {
        self.forward_with(query, key, value, MultiheadAttentionOptions::default())
    }

    /// [`forward`](Self::forward) with masks and PyTorch's other keywords.
    ///
    /// ```
    /// use tapegrad_nn::{MultiheadAttention, MultiheadAttentionOptions};
    /// use tapegrad_tape::Tensor;
    /// let attention = MultiheadAttention::new(4, 1).batch_first(true);
    /// let x = Tensor::randn(&[1, 3, 4]);
    /// // The last key is padding: no query attends to it.
    /// let padding = Tensor::from_vec(vec![false, false, true], &[1, 3]);
    /// let options = MultiheadAttentionOptions::default().key_padding_mask(&padding);
    /// let weights = attention.forward_with(&x, &x, &x, options).1.unwrap().to_vec::<f32>();
    /// assert!(weights.chunks(3).all(|row| row[2] == 0.0));
    /// ```
    #[track_caller]
    pub fn forward_with(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        options: MultiheadAttentionOptions,
    ) -> (Tensor, Option<Tensor>) {
        self.try_forward_with(query, key, value, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning an error for inputs or masks of the
    /// wrong shape or dtype instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::{MultiheadAttention, MultiheadAttentionOptions};
    /// use tapegrad_tape::Tensor;
    /// let attention = MultiheadAttention::new(4, 2);
    /// let x = Tensor::randn(&[3, 2, 5]); // 5 features, not 4
    /// let err = attention.try_forward_with(&x, &x, &x, MultiheadAttentionOptions::default());
    /// assert!(err.unwrap_err().to_string().contains("query of shape [3, 2, 5]"));
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        options: MultiheadAttentionOptions,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let location = Location::caller();
        let shape_error = |message: String| Error::Shape { op: OP, message, location };
        let (e, heads) = (self.embed_dim(), self.num_heads);
        if heads == 0 || !e.is_multiple_of(heads) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!("embed_dim {e} is not divisible by num_heads {heads}"),
                location,
            });
        }
        let batched = query.dim() == 3;
        let widths = [
            ("query", query, e),
            ("key", key, self.k_proj_weight.as_ref().map_or(e, |w| w.shape()[1])),
            ("value", value, self.v_proj_weight.as_ref().map_or(e, |w| w.shape()[1])),
        ];
        for (name, t, width) in widths {
            if !matches!(t.dim(), 2 | 3)
                || t.dim() != query.dim()
                || t.shape()[t.dim() - 1] != width
            {
                let layout = if !batched {
                    "[L, E]"
                } else if self.batch_first {
                    "[N, L, E]"
                } else {
                    "[L, N, E]"
                };
                return Err(shape_error(format!(
                    "expects a {name} of shape {layout} with {width} features and query, key \
                     and value of one rank, got a {name} of shape {:?}",
                    t.shape()
                )));
            }
            if t.dtype() != self.out_proj.weight.dtype() {
                return Err(Error::DType {
                    op: OP,
                    lhs: self.out_proj.weight.dtype(),
                    rhs: t.dtype(),
                    location,
                });
            }
        }
        // Batch-major from here on: [N, L, E].
        let batch_major = |t: &Tensor| match (batched, self.batch_first) {
            (false, _) => t.unsqueeze(0),
            (true, true) => t.clone(),
            (true, false) => t.transpose(0, 1),
        };
        let (q, k, v) = (batch_major(query), batch_major(key), batch_major(value));
        let (n, l, s) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        if k.shape()[..2] != v.shape()[..2] || k.shape()[0] != n {
            return Err(shape_error(format!(
                "query {:?}, key {:?} and value {:?} do not fit: all need one batch size, key \
                 and value one sequence length",
                query.shape(),
                key.shape(),
                value.shape()
            )));
        }
        // Without padding and returned weights, a causal attention goes to the attention op
        // as its causal flag (which skips the hidden keys), not as a mask: PyTorch's rule,
        // except that an attn_mask passed with the hint must be the causal mask itself.
        let causal_flag = options.is_causal
            && options.key_padding_mask.is_none()
            && !options.need_weights
            && options.attn_mask.as_ref().is_none_or(|mask| is_causal_mask(mask, l, s));
        let mask = if causal_flag {
            None
        } else {
            self.merged_mask(&options, (n, l, s), batched, q.dtype(), location)?
        };

        let (q, k, v) = self.project(query, key, value, (&q, &k, &v));
        let split_heads = |t: Tensor| {
            let len = t.shape()[1] as isize;
            t.reshape(&[n as isize, len, heads as isize, (e / heads) as isize]).transpose(1, 2)
        };
        let (q, k, v) = (split_heads(q), split_heads(k), split_heads(v));
        let p = if self.training.get() { self.dropout } else { 0.0 };
        let (out, weights) = if options.need_weights {
            let scale = 1.0 / ((e / heads) as f64).sqrt();
            let scores = &q.matmul(&k.transpose(-2, -1)) * scale;
            let scores = match &mask {
                Some(mask) => &scores + mask,
                None => scores,
            };
            let weights =
                F::try_dropout_with(&scores.softmax(-1), DropoutOptions { p, training: true })?;
            let out = weights.matmul(&v);
            let weights =
                if options.average_attn_weights { weights.mean_dim(1, false) } else { weights };
            (out, Some(if batched { weights } else { weights.squeeze_dim(0) }))
        } else {
            let mut attention = AttentionOptions::default().dropout_p(p).is_causal(causal_flag);
            attention.attn_mask = mask;
            (F::try_scaled_dot_product_attention_with(&q, &k, &v, attention)?, None)
        };
        let out = out.transpose(1, 2).reshape(&[n as isize, l as isize, e as isize]);
        let out = Forward::forward(&self.out_proj, &out);
        let out = match (batched, self.batch_first) {
            (false, _) => out.squeeze_dim(0),
            (true, true) => out,
            (true, false) => out.transpose(0, 1),
        };
        Ok((out, weights))
    }

    /// The three input projections of the batch-major `q`, `k`, `v`; self-attention (one
    /// tensor passed three times) takes one product with the stacked weights.
    fn project(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
    ) -> (Tensor, Tensor, Tensor) {
        let e = self.embed_dim();
        let biases = match &self.in_proj_bias {
            Some(b) => b.chunk(3, 0).into_iter().map(Some).collect(),
            None => vec![None; 3],
        };
        match &self.in_proj_weight {
            Some(w) if query.is_same(key) && key.is_same(value) => {
                let qkv = F::linear(q, w, self.in_proj_bias.as_ref()).split(e, -1);
                (qkv[0].clone(), qkv[1].clone(), qkv[2].clone())
            }
            Some(w) => {
                let w = w.chunk(3, 0);
                (
                    F::linear(q, &w[0], biases[0].as_ref()),
                    F::linear(k, &w[1], biases[1].as_ref()),
                    F::linear(v, &w[2], biases[2].as_ref()),
                )
            }
            None => {
                let w =
                    |w: &Option<Tensor>| w.clone().expect("separate projections are set together");
                (
                    F::linear(q, &w(&self.q_proj_weight), biases[0].as_ref()),
                    F::linear(k, &w(&self.k_proj_weight), biases[1].as_ref()),
                    F::linear(v, &w(&self.v_proj_weight), biases[2].as_ref()),
                )
            }
        }
    }

    /// The attention and key-padding masks as one float mask that broadcasts to
    /// `[N, heads, L, S]` (`-inf` where a bool mask says true), or `None`.
    fn merged_mask(
        &self,
        options: &MultiheadAttentionOptions,
        (n, l, s): (usize, usize, usize),
        batched: bool,
        dtype: DType,
        location: &'static Location<'static>,
    ) -> Result<Option<Tensor>> {
        let heads = self.num_heads;
        let as_float = |mask: &Tensor, name: &str| -> Result<Tensor> {
            match mask.dtype() {
                DType::Bool => Ok(where_(
                    mask,
                    &Tensor::full_dtype(&[], f64::NEG_INFINITY, dtype),
                    &Tensor::zeros_dtype(&[], dtype),
                )),
                d if d == dtype => Ok(mask.clone()),
                d => Err(Error::InvalidArgument {
                    op: OP,
                    message: format!("{name} must be bool or {dtype}, got {d}"),
                    location,
                }),
            }
        };
        let bad_shape = |name: &str, mask: &Tensor, expected: String| Error::Shape {
            op: OP,
            message: format!(
                "{name} of shape {:?} does not fit: expected {expected}",
                mask.shape()
            ),
            location,
        };
        let attn = match &options.attn_mask {
            Some(mask) => {
                let float = as_float(mask, "attn_mask")?;
                let stacked = if batched { n * heads } else { heads };
                match mask.shape() {
                    [rows, cols] if (*rows, *cols) == (l, s) => Some(float),
                    [b, rows, cols] if (*b, *rows, *cols) == (stacked, l, s) => {
                        Some(float.reshape(&[
                            (stacked / heads) as isize,
                            heads as isize,
                            l as isize,
                            s as isize,
                        ]))
                    }
                    _ => {
                        return Err(bad_shape(
                            "attn_mask",
                            mask,
                            format!("[{l}, {s}] or [{stacked}, {l}, {s}]"),
                        ));
                    }
                }
            }
            None if options.is_causal => {
                let rows =
                    Tensor::arange_dtype(0.0, l as f64, 1.0, DType::I64).reshape(&[l as isize, 1]);
                let cols =
                    Tensor::arange_dtype(0.0, s as f64, 1.0, DType::I64).reshape(&[1, s as isize]);
                Some(as_float(&cols.gt(&rows), "attn_mask")?)
            }
            None => None,
        };
        let padding = match &options.key_padding_mask {
            Some(mask) => {
                let expected = if batched { vec![n, s] } else { vec![s] };
                if mask.shape() != expected.as_slice() {
                    return Err(bad_shape("key_padding_mask", mask, format!("{expected:?}")));
                }
                Some(as_float(mask, "key_padding_mask")?.reshape(&[n as isize, 1, 1, s as isize]))
            }
            None => None,
        };
        Ok(match (attn, padding) {
            (Some(a), Some(p)) => Some(&a + &p),
            (a, p) => a.or(p),
        })
    }
}
