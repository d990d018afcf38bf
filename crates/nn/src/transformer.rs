//! The transformer encoder (PyTorch's `nn.TransformerEncoderLayer` and
//! `nn.TransformerEncoder`): self-attention and a feed-forward block, each with a residual
//! connection and layer norm, before (`norm_first`) or after.

use tapegrad_ops::prelude::*;
use tapegrad_tape::{Error, Result, Tensor};

use crate::Module;
use crate::attention::{MultiheadAttention, MultiheadAttentionOptions};
use crate::layers::{Dropout, LayerNorm, Linear};
use crate::module::Forward;

/// The masks of a transformer encoder's forward: `src_mask` (`[L, L]` or
/// `[N * nhead, L, L]`; true where a position may not attend to another, or a float added to
/// the scores), `src_key_padding_mask` (`[N, L]`: true for padding positions, which no
/// position attends to) and `is_causal` (each position attends only to itself and earlier
/// ones). The names and conventions of PyTorch's `TransformerEncoderLayer.forward(src,
/// src_mask, src_key_padding_mask, is_causal)` (`TransformerEncoder.forward` calls the first
/// mask `mask`).
///
/// ```
/// use tapegrad_nn::{TransformerEncoderLayer, TransformerEncoderOptions};
/// use tapegrad_ops::{cat, prelude::*};
/// use tapegrad_tape::Tensor;
/// let layer = TransformerEncoderLayer::new(8, 2).dropout(0.0);
/// let causal = TransformerEncoderOptions::default().is_causal(true);
/// let x = Tensor::randn(&[5, 1, 8]); // [L, N, E]
/// let changed = cat(&[&x.narrow(0, 0, 2), &Tensor::randn(&[3, 1, 8])], 0); // new positions 2..5
/// let (a, b) = (layer.forward_with(&x, causal.clone()), layer.forward_with(&changed, causal));
/// // Positions 0 and 1 see only themselves and earlier ones: unchanged.
/// assert_eq!(a.narrow(0, 0, 2).to_vec::<f32>(), b.narrow(0, 0, 2).to_vec::<f32>());
/// ```
#[derive(Clone, Debug, Default)]
pub struct TransformerEncoderOptions {
    /// Pairs of positions to exclude: bool (true: exclude) or float (added).
    pub src_mask: Option<Tensor>,
    /// Padding positions per batch entry: bool (true: padding) or float (added).
    pub src_key_padding_mask: Option<Tensor>,
    /// Whether each position attends only to itself and earlier positions.
    pub is_causal: bool,
}

impl TransformerEncoderOptions {
    /// Sets `src_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::zeros(&[4, 4]);
    /// assert!(tapegrad_nn::TransformerEncoderOptions::default().src_mask(&mask).src_mask.is_some());
    /// ```
    pub fn src_mask(mut self, mask: &Tensor) -> Self {
        self.src_mask = Some(mask.clone());
        self
    }

    /// Sets `src_key_padding_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::from_vec(vec![false, true], &[1, 2]);
    /// let o = tapegrad_nn::TransformerEncoderOptions::default().src_key_padding_mask(&mask);
    /// assert!(o.src_key_padding_mask.is_some());
    /// ```
    pub fn src_key_padding_mask(mut self, mask: &Tensor) -> Self {
        self.src_key_padding_mask = Some(mask.clone());
        self
    }

    /// Sets `is_causal`.
    ///
    /// ```
    /// assert!(tapegrad_nn::TransformerEncoderOptions::default().is_causal(true).is_causal);
    /// ```
    pub fn is_causal(mut self, is_causal: bool) -> Self {
        self.is_causal = is_causal;
        self
    }

    /// The self-attention's keywords (no weights returned).
    fn attention(&self) -> MultiheadAttentionOptions {
        MultiheadAttentionOptions {
            key_padding_mask: self.src_key_padding_mask.clone(),
            need_weights: false,
            attn_mask: self.src_mask.clone(),
            average_attn_weights: true,
            is_causal: self.is_causal,
        }
    }
}

/// An error unless `src` ends in `norm`'s normalised shape and has its dtype (and, for an
/// encoder layer, `rank_2_or_3`: is `[L, E]`, `[L, N, E]` or `[N, L, E]`), checked before
/// anything runs on it.
#[track_caller]
pub(crate) fn check_input(
    op: &'static str,
    src: &Tensor,
    norm: &LayerNorm,
    rank_2_or_3: bool,
) -> Result<()> {
    let location = std::panic::Location::caller();
    if (rank_2_or_3 && !matches!(src.dim(), 2 | 3)) || !src.shape().ends_with(&norm.shape) {
        return Err(Error::Shape {
            op,
            message: format!(
                "expects a source of shape [..., {}]{}, got {:?}",
                norm.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                if rank_2_or_3 { " (2 or 3 dimensions)" } else { "" },
                src.shape()
            ),
            location,
        });
    }
    if src.dtype() != norm.weight.dtype() {
        return Err(Error::DType { op, lhs: norm.weight.dtype(), rhs: src.dtype(), location });
    }
    Ok(())
}

/// One encoder layer: PyTorch's `nn.TransformerEncoderLayer`, with its parameter names
/// (`self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*`) and defaults
/// (`dim_feedforward` 2048, dropout 0.1, ReLU, layer norm eps 1e-5, sequence-major inputs,
/// norm after each block). With `norm_first` it is the pre-norm layer:
/// `x + attention(norm1(x))`, then `x + feed_forward(norm2(x))`.
///
/// ```
/// use tapegrad_nn::{Forward, Module, TransformerEncoderLayer};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let layer = TransformerEncoderLayer::new(16, 4)
///     .dim_feedforward(64)
///     .dropout(0.0)
///     .activation(|x| x.gelu())
///     .batch_first(true)
///     .norm_first(true);
/// let x = Tensor::randn(&[2, 10, 16]); // [N, L, E]
/// assert_eq!(layer.forward(&x).shape(), &[2, 10, 16]);
/// assert_eq!(layer.state_dict()[0].0, "self_attn.in_proj_weight");
/// ```
#[derive(Module)]
pub struct TransformerEncoderLayer {
    /// The self-attention block.
    pub self_attn: MultiheadAttention,
    /// The feed-forward block's first product, `E -> dim_feedforward`.
    pub linear1: Linear,
    /// Dropout after the activation.
    pub dropout: Dropout,
    /// The feed-forward block's second product, `dim_feedforward -> E`.
    pub linear2: Linear,
    /// Whether each block normalises its input (pre-norm) rather than the sum after it.
    pub norm_first: bool,
    /// The norm around the attention block.
    pub norm1: LayerNorm,
    /// The norm around the feed-forward block.
    pub norm2: LayerNorm,
    /// Dropout on the attention block's output.
    pub dropout1: Dropout,
    /// Dropout on the feed-forward block's output.
    pub dropout2: Dropout,
    /// The feed-forward block's activation (ReLU unless set).
    #[module(skip)]
    pub activation: fn(&Tensor) -> Tensor,
}

fn relu(x: &Tensor) -> Tensor {
    x.relu()
}

impl TransformerEncoderLayer {
    /// A layer `d_model` wide with `nhead` attention heads and PyTorch's defaults.
    ///
    /// ```
    /// use tapegrad_nn::TransformerEncoderLayer;
    /// let layer = TransformerEncoderLayer::new(32, 4);
    /// assert_eq!(layer.linear1.weight.shape(), &[2048, 32]);
    /// assert_eq!((layer.dropout.p, layer.norm1.eps), (0.1, 1e-5));
    /// ```
    #[track_caller]
    pub fn new(d_model: usize, nhead: usize) -> Self {
        TransformerEncoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead).dropout(0.1),
            linear1: Linear::new(d_model, 2048),
            dropout: Dropout::new(0.1),
            linear2: Linear::new(2048, d_model),
            norm_first: false,
            norm1: LayerNorm::new(&[d_model]),
            norm2: LayerNorm::new(&[d_model]),
            dropout1: Dropout::new(0.1),
            dropout2: Dropout::new(0.1),
            activation: relu,
        }
    }

    /// The feed-forward block's inner width (PyTorch's `dim_feedforward`); its two linear
    /// layers are initialised afresh.
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerEncoderLayer::new(8, 2).dim_feedforward(24);
    /// assert_eq!(layer.linear2.weight.shape(), &[8, 24]);
    /// ```
    pub fn dim_feedforward(mut self, width: usize) -> Self {
        let d_model = self.self_attn.embed_dim();
        let bias = self.linear1.bias.is_some();
        let linear = |i, o| if bias { Linear::new(i, o) } else { Linear::no_bias(i, o) };
        (self.linear1, self.linear2) = (linear(d_model, width), linear(width, d_model));
        self
    }

    /// The dropout probability of the attention weights and of the three dropout layers.
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerEncoderLayer::new(8, 2).dropout(0.0);
    /// assert_eq!((layer.self_attn.dropout, layer.dropout2.p), (0.0, 0.0));
    /// ```
    pub fn dropout(mut self, p: f64) -> Self {
        self.self_attn.dropout = p;
        for d in [&mut self.dropout, &mut self.dropout1, &mut self.dropout2] {
            d.p = p;
        }
        self
    }

    /// The feed-forward block's activation (PyTorch's `activation`: `|x| x.gelu()` for
    /// `"gelu"`, or any function of a tensor that captures nothing).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, TransformerEncoderLayer};
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerEncoderLayer::new(8, 2).activation(|x| x.tanh());
    /// assert_eq!(layer.forward(&Tensor::randn(&[3, 2, 8])).shape(), &[3, 2, 8]);
    /// ```
    pub fn activation(mut self, activation: fn(&Tensor) -> Tensor) -> Self {
        self.activation = activation;
        self
    }

    /// The eps of both layer norms (PyTorch's `layer_norm_eps`).
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerEncoderLayer::new(8, 2).layer_norm_eps(1e-6);
    /// assert_eq!(layer.norm2.eps, 1e-6);
    /// ```
    pub fn layer_norm_eps(mut self, eps: f64) -> Self {
        (self.norm1.eps, self.norm2.eps) = (eps, eps);
        self
    }

    /// Inputs and outputs `[N, L, E]` (PyTorch's `batch_first`).
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerEncoderLayer::new(8, 2).batch_first(true);
    /// assert!(layer.self_attn.batch_first);
    /// ```
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.self_attn.batch_first = batch_first;
        self
    }

    /// Layer norm before each block rather than after its residual sum (PyTorch's
    /// `norm_first`).
    ///
    /// ```
    /// assert!(tapegrad_nn::TransformerEncoderLayer::new(8, 2).norm_first(true).norm_first);
    /// ```
    pub fn norm_first(mut self, norm_first: bool) -> Self {
        self.norm_first = norm_first;
        self
    }

    /// The layer with masks: see [`TransformerEncoderOptions`].
    ///
    /// ```
    /// use tapegrad_nn::{TransformerEncoderLayer, TransformerEncoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerEncoderLayer::new(8, 2).batch_first(true);
    /// let padding = Tensor::from_vec(vec![false, false, true], &[1, 3]); // position 2 is padding
    /// let options = TransformerEncoderOptions::default().src_key_padding_mask(&padding);
    /// assert_eq!(layer.forward_with(&Tensor::randn(&[1, 3, 8]), options).shape(), &[1, 3, 8]);
    /// ```
    #[track_caller]
    pub fn forward_with(&self, src: &Tensor, options: TransformerEncoderOptions) -> Tensor {
        self.try_forward_with(src, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning an error for an input or masks of
    /// the wrong shape or dtype instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerEncoderLayer, TransformerEncoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerEncoderLayer::new(8, 2);
    /// let mask = Tensor::zeros(&[2, 2]); // the sequence has 3 positions
    /// let options = TransformerEncoderOptions::default().src_mask(&mask);
    /// let err = layer.try_forward_with(&Tensor::randn(&[3, 1, 8]), options).unwrap_err();
    /// assert!(err.to_string().contains("attn_mask of shape [2, 2] does not fit"));
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        src: &Tensor,
        options: TransformerEncoderOptions,
    ) -> Result<Tensor> {
        check_input("TransformerEncoderLayer", src, &self.norm1, true)?;
        let attention = options.attention();
        let self_attention = |x: &Tensor| -> Result<Tensor> {
            let (y, _) = self.self_attn.try_forward_with(x, x, x, attention.clone())?;
            Ok(self.dropout1.forward(&y))
        };
        let feed_forward = |x: &Tensor| {
            let hidden = self.dropout.forward(&(self.activation)(&self.linear1.forward(x)));
            self.dropout2.forward(&self.linear2.forward(&hidden))
        };
        Ok(if self.norm_first {
            let x = src + &self_attention(&self.norm1.forward(src))?;
            &x + &feed_forward(&self.norm2.forward(&x))
        } else {
            let x = self.norm1.forward(&(src + &self_attention(src)?));
            self.norm2.forward(&(&x + &feed_forward(&x)))
        })
    }
}

impl Forward for TransformerEncoderLayer {
    #[track_caller]
    fn forward(&self, src: &Tensor) -> Tensor {
        self.forward_with(src, TransformerEncoderOptions::default())
    }
}

/// A stack of encoder layers and an optional final norm: PyTorch's `nn.TransformerEncoder`,
/// with its parameter names (`layers.0.*`, ..., `norm.*`). PyTorch copies one layer
/// `num_layers` times, so its layers start equal; here each layer is built by the caller
/// and starts with its own initialisation.
///
/// ```
/// use tapegrad_nn::{Forward, LayerNorm, Module, TransformerEncoder, TransformerEncoderLayer};
/// use tapegrad_tape::Tensor;
/// let layers = (0..3).map(|_| TransformerEncoderLayer::new(16, 4).dim_feedforward(32)).collect();
/// let encoder = TransformerEncoder::new(layers).norm(LayerNorm::new(&[16]));
/// assert_eq!(encoder.forward(&Tensor::randn(&[7, 2, 16])).shape(), &[7, 2, 16]);
/// assert_eq!(encoder.state_dict().last().unwrap().0, "norm.bias");
/// ```
#[derive(Module)]
pub struct TransformerEncoder {
    /// The layers, applied in order.
    pub layers: Vec<TransformerEncoderLayer>,
    /// A layer norm after the last layer, if any.
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// The stack of `layers`, without a final norm.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerEncoder, TransformerEncoderLayer};
    /// let encoder = TransformerEncoder::new(vec![TransformerEncoderLayer::new(8, 2)]);
    /// assert_eq!(encoder.layers.len(), 1);
    /// ```
    pub fn new(layers: Vec<TransformerEncoderLayer>) -> Self {
        TransformerEncoder { layers, norm: None }
    }

    /// A layer norm applied to the last layer's output.
    ///
    /// ```
    /// use tapegrad_nn::{LayerNorm, TransformerEncoder};
    /// assert!(TransformerEncoder::new(vec![]).norm(LayerNorm::new(&[8])).norm.is_some());
    /// ```
    pub fn norm(mut self, norm: LayerNorm) -> Self {
        self.norm = Some(norm);
        self
    }

    /// The stack with masks, passed to every layer: see [`TransformerEncoderOptions`].
    ///
    /// ```
    /// use tapegrad_nn::{TransformerEncoder, TransformerEncoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let encoder = TransformerEncoder::new(Vec::new());
    /// let x = Tensor::randn(&[4, 1, 8]);
    /// // No layers and no norm: the identity.
    /// let y = encoder.forward_with(&x, TransformerEncoderOptions::default().is_causal(true));
    /// assert_eq!(y.to_vec::<f32>(), x.to_vec::<f32>());
    /// ```
    #[track_caller]
    pub fn forward_with(&self, src: &Tensor, options: TransformerEncoderOptions) -> Tensor {
        self.try_forward_with(src, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning the first layer's error instead of
    /// panicking.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let encoder = TransformerEncoder::new(vec![TransformerEncoderLayer::new(8, 2)]);
    /// let x = Tensor::randn(&[4, 1, 6]); // 6 features, not 8
    /// assert!(encoder.try_forward_with(&x, TransformerEncoderOptions::default()).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        src: &Tensor,
        options: TransformerEncoderOptions,
    ) -> Result<Tensor> {
        let mut x = src.clone();
        for layer in &self.layers {
            x = layer.try_forward_with(&x, options.clone())?;
        }
        Ok(match &self.norm {
            Some(norm) => {
                check_input("TransformerEncoder", &x, norm, false)?;
                norm.forward(&x)
            }
            None => x,
        })
    }
}

impl Forward for TransformerEncoder {
    #[track_caller]
    fn forward(&self, src: &Tensor) -> Tensor {
        self.forward_with(src, TransformerEncoderOptions::default())
    }
}
