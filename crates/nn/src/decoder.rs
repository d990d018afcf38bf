//! The transformer decoder (PyTorch's `nn.TransformerDecoderLayer` and
//! `nn.TransformerDecoder`) and the whole encoder-decoder (`nn.Transformer`): self-attention
//! over the target, attention from the target to the encoder's output (the memory) and a
//! feed-forward block, each with a residual connection and layer norm, before
//! (`norm_first`) or after.

use tapegrad_ops::prelude::*;
use tapegrad_tape::{Result, Tensor};

use crate::Module;
use crate::attention::{MultiheadAttention, MultiheadAttentionOptions};
use crate::layers::{Dropout, LayerNorm, Linear};
use crate::module::Forward;
use crate::transformer::{
    TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOptions, check_input,
};

/// The masks of a decoder's forward, with the names and conventions of PyTorch's
/// `TransformerDecoderLayer.forward(tgt, memory, tgt_mask, memory_mask,
/// tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal)`: the
/// `tgt_` ones for the target's self-attention, the `memory_` ones for its attention to the
/// memory (masks: bool, true where attention is not allowed, or a float added to the
/// scores; `*_is_causal`: each position attends only to itself and earlier ones).
///
/// ```
/// use tapegrad_nn::{TransformerDecoderLayer, TransformerDecoderOptions};
/// use tapegrad_ops::{cat, prelude::*};
/// use tapegrad_tape::Tensor;
/// let layer = TransformerDecoderLayer::new(8, 2).dropout(0.0);
/// let causal = TransformerDecoderOptions::default().tgt_is_causal(true);
/// let (tgt, memory) = (Tensor::randn(&[4, 1, 8]), Tensor::randn(&[6, 1, 8]));
/// let changed = cat(&[&tgt.narrow(0, 0, 2), &Tensor::randn(&[2, 1, 8])], 0);
/// let a = layer.forward_with(&tgt, &memory, causal.clone());
/// let b = layer.forward_with(&changed, &memory, causal);
/// // Target positions 0 and 1 see only themselves, earlier ones and the memory.
/// assert_eq!(a.narrow(0, 0, 2).to_vec::<f32>(), b.narrow(0, 0, 2).to_vec::<f32>());
/// ```
#[derive(Clone, Debug, Default)]
pub struct TransformerDecoderOptions {
    /// Pairs of target positions to exclude from the self-attention.
    pub tgt_mask: Option<Tensor>,
    /// Pairs of (target, memory) positions to exclude from the attention to the memory.
    pub memory_mask: Option<Tensor>,
    /// Target padding positions per batch entry (`[N, T]`).
    pub tgt_key_padding_mask: Option<Tensor>,
    /// Memory padding positions per batch entry (`[N, S]`).
    pub memory_key_padding_mask: Option<Tensor>,
    /// Whether each target position attends only to itself and earlier ones.
    pub tgt_is_causal: bool,
    /// Whether each target position attends only to memory positions at or before its own.
    pub memory_is_causal: bool,
}

impl TransformerDecoderOptions {
    /// Sets `tgt_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::zeros(&[4, 4]);
    /// assert!(tapegrad_nn::TransformerDecoderOptions::default().tgt_mask(&mask).tgt_mask.is_some());
    /// ```
    pub fn tgt_mask(mut self, mask: &Tensor) -> Self {
        self.tgt_mask = Some(mask.clone());
        self
    }

    /// Sets `memory_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::zeros(&[4, 6]);
    /// let o = tapegrad_nn::TransformerDecoderOptions::default().memory_mask(&mask);
    /// assert!(o.memory_mask.is_some());
    /// ```
    pub fn memory_mask(mut self, mask: &Tensor) -> Self {
        self.memory_mask = Some(mask.clone());
        self
    }

    /// Sets `tgt_key_padding_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::from_vec(vec![false, true], &[1, 2]);
    /// let o = tapegrad_nn::TransformerDecoderOptions::default().tgt_key_padding_mask(&mask);
    /// assert!(o.tgt_key_padding_mask.is_some());
    /// ```
    pub fn tgt_key_padding_mask(mut self, mask: &Tensor) -> Self {
        self.tgt_key_padding_mask = Some(mask.clone());
        self
    }

    /// Sets `memory_key_padding_mask`.
    ///
    /// ```
    /// let mask = tapegrad_tape::Tensor::from_vec(vec![false, true], &[1, 2]);
    /// let o = tapegrad_nn::TransformerDecoderOptions::default().memory_key_padding_mask(&mask);
    /// assert!(o.memory_key_padding_mask.is_some());
    /// ```
    pub fn memory_key_padding_mask(mut self, mask: &Tensor) -> Self {
        self.memory_key_padding_mask = Some(mask.clone());
        self
    }

    /// Sets `tgt_is_causal`.
    ///
    /// ```
    /// assert!(tapegrad_nn::TransformerDecoderOptions::default().tgt_is_causal(true).tgt_is_causal);
    /// ```
    pub fn tgt_is_causal(mut self, is_causal: bool) -> Self {
        self.tgt_is_causal = is_causal;
        self
    }

    /// Sets `memory_is_causal`.
    ///
    /// ```
    /// let o = tapegrad_nn::TransformerDecoderOptions::default().memory_is_causal(true);
    /// assert!(o.memory_is_causal);
    /// ```
    pub fn memory_is_causal(mut self, is_causal: bool) -> Self {
        self.memory_is_causal = is_causal;
        self
    }

    fn self_attention(&self) -> MultiheadAttentionOptions {
        MultiheadAttentionOptions {
            key_padding_mask: self.tgt_key_padding_mask.clone(),
            need_weights: false,
            attn_mask: self.tgt_mask.clone(),
            average_attn_weights: true,
            is_causal: self.tgt_is_causal,
        }
    }

    fn memory_attention(&self) -> MultiheadAttentionOptions {
        MultiheadAttentionOptions {
            key_padding_mask: self.memory_key_padding_mask.clone(),
            need_weights: false,
            attn_mask: self.memory_mask.clone(),
            average_attn_weights: true,
            is_causal: self.memory_is_causal,
        }
    }
}

/// One decoder layer: PyTorch's `nn.TransformerDecoderLayer`, with its parameter names
/// (`self_attn.*`, `multihead_attn.*`, `linear1.*`, `linear2.*`, `norm1.*` to `norm3.*`)
/// and defaults (`dim_feedforward` 2048, dropout 0.1, ReLU, layer norm eps 1e-5,
/// sequence-major inputs, norm after each block).
///
/// ```
/// use tapegrad_nn::{Module, TransformerDecoderLayer};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let layer = TransformerDecoderLayer::new(16, 4).dim_feedforward(64).batch_first(true);
/// let (tgt, memory) = (Tensor::randn(&[2, 5, 16]), Tensor::randn(&[2, 9, 16])); // [N, T, E], [N, S, E]
/// assert_eq!(layer.forward(&tgt, &memory).shape(), &[2, 5, 16]);
/// assert_eq!(layer.state_dict()[4].0, "multihead_attn.in_proj_weight");
/// ```
#[derive(Module)]
pub struct TransformerDecoderLayer {
    /// The target's self-attention.
    pub self_attn: MultiheadAttention,
    /// The attention from the target to the memory.
    pub multihead_attn: MultiheadAttention,
    /// The feed-forward block's first product, `E -> dim_feedforward`.
    pub linear1: Linear,
    /// Dropout after the activation.
    pub dropout: Dropout,
    /// The feed-forward block's second product, `dim_feedforward -> E`.
    pub linear2: Linear,
    /// Whether each block normalises its input (pre-norm) rather than its residual sum.
    pub norm_first: bool,
    /// The norm of the self-attention block.
    pub norm1: LayerNorm,
    /// The norm of the memory attention block.
    pub norm2: LayerNorm,
    /// The norm of the feed-forward block.
    pub norm3: LayerNorm,
    /// Dropout of the self-attention's output.
    pub dropout1: Dropout,
    /// Dropout of the memory attention's output.
    pub dropout2: Dropout,
    /// Dropout of the feed-forward block's output.
    pub dropout3: Dropout,
    /// The feed-forward activation (ReLU by default).
    #[module(skip)]
    pub activation: fn(&Tensor) -> Tensor,
}

fn relu(x: &Tensor) -> Tensor {
    x.relu()
}

impl TransformerDecoderLayer {
    /// A layer of width `d_model` with `nhead` heads, PyTorch's defaults otherwise.
    ///
    /// ```
    /// use tapegrad_nn::{Module, TransformerDecoderLayer};
    /// assert_eq!(TransformerDecoderLayer::new(8, 2).linear1.weight.shape(), &[2048, 8]);
    /// ```
    #[track_caller]
    pub fn new(d_model: usize, nhead: usize) -> Self {
        TransformerDecoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead).dropout(0.1),
            multihead_attn: MultiheadAttention::new(d_model, nhead).dropout(0.1),
            linear1: Linear::new(d_model, 2048),
            dropout: Dropout::new(0.1),
            linear2: Linear::new(2048, d_model),
            norm_first: false,
            norm1: LayerNorm::new(&[d_model]),
            norm2: LayerNorm::new(&[d_model]),
            norm3: LayerNorm::new(&[d_model]),
            dropout1: Dropout::new(0.1),
            dropout2: Dropout::new(0.1),
            dropout3: Dropout::new(0.1),
            activation: relu,
        }
    }

    /// Sets the feed-forward width (new `linear1` and `linear2`).
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerDecoderLayer::new(8, 2).dim_feedforward(32);
    /// assert_eq!(layer.linear2.weight.shape(), &[8, 32]);
    /// ```
    pub fn dim_feedforward(mut self, width: usize) -> Self {
        let d_model = self.self_attn.embed_dim();
        (self.linear1, self.linear2) = (Linear::new(d_model, width), Linear::new(width, d_model));
        self
    }

    /// Sets every dropout probability (both attentions' too).
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerDecoderLayer::new(8, 2).dropout(0.0);
    /// assert_eq!((layer.multihead_attn.dropout, layer.dropout3.p), (0.0, 0.0));
    /// ```
    pub fn dropout(mut self, p: f64) -> Self {
        self.self_attn.dropout = p;
        self.multihead_attn.dropout = p;
        for d in [&mut self.dropout, &mut self.dropout1, &mut self.dropout2, &mut self.dropout3] {
            d.p = p;
        }
        self
    }

    /// Sets the feed-forward activation.
    ///
    /// ```
    /// use tapegrad_ops::prelude::*;
    /// let layer = tapegrad_nn::TransformerDecoderLayer::new(8, 2).activation(|x| x.gelu());
    /// # let _ = layer;
    /// ```
    pub fn activation(mut self, activation: fn(&Tensor) -> Tensor) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the layer norms' epsilon.
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerDecoderLayer::new(8, 2).layer_norm_eps(1e-6);
    /// assert_eq!(layer.norm3.eps, 1e-6);
    /// ```
    pub fn layer_norm_eps(mut self, eps: f64) -> Self {
        (self.norm1.eps, self.norm2.eps, self.norm3.eps) = (eps, eps, eps);
        self
    }

    /// Inputs and outputs `[N, T, E]` (PyTorch's `batch_first`).
    ///
    /// ```
    /// let layer = tapegrad_nn::TransformerDecoderLayer::new(8, 2).batch_first(true);
    /// assert!(layer.self_attn.batch_first && layer.multihead_attn.batch_first);
    /// ```
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.self_attn.batch_first = batch_first;
        self.multihead_attn.batch_first = batch_first;
        self
    }

    /// Pre-norm blocks (PyTorch's `norm_first`).
    ///
    /// ```
    /// assert!(tapegrad_nn::TransformerDecoderLayer::new(8, 2).norm_first(true).norm_first);
    /// ```
    pub fn norm_first(mut self, norm_first: bool) -> Self {
        self.norm_first = norm_first;
        self
    }

    /// The layer on `tgt` (`[T, E]`, `[T, N, E]`, or `[N, T, E]` with `batch_first`) and
    /// `memory` (the encoder's output, `[S, E]`, `[S, N, E]` or `[N, S, E]`), no masks.
    ///
    /// ```
    /// use tapegrad_nn::TransformerDecoderLayer;
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerDecoderLayer::new(8, 2).dim_feedforward(16);
    /// let y = layer.forward(&Tensor::randn(&[3, 2, 8]), &Tensor::randn(&[5, 2, 8]));
    /// assert_eq!(y.shape(), &[3, 2, 8]);
    /// ```
    #[track_caller]
    pub fn forward(&self, tgt: &Tensor, memory: &Tensor) -> Tensor {
        self.forward_with(tgt, memory, TransformerDecoderOptions::default())
    }

    /// [`forward`](Self::forward) with masks.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoderLayer, TransformerDecoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerDecoderLayer::new(8, 2).dim_feedforward(16);
    /// let padding = Tensor::from_vec(vec![false, false, false, true, true], &[1, 5]);
    /// let options = TransformerDecoderOptions::default()
    ///     .tgt_is_causal(true)
    ///     .memory_key_padding_mask(&padding);
    /// let y = layer.forward_with(&Tensor::randn(&[3, 1, 8]), &Tensor::randn(&[5, 1, 8]), options);
    /// assert_eq!(y.shape(), &[3, 1, 8]);
    /// ```
    #[track_caller]
    pub fn forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        options: TransformerDecoderOptions,
    ) -> Tensor {
        self.try_forward_with(tgt, memory, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning an error for inputs or masks of the
    /// wrong shape or dtype instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoderLayer, TransformerDecoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let layer = TransformerDecoderLayer::new(8, 2).dim_feedforward(16);
    /// let o = TransformerDecoderOptions::default();
    /// let err = layer.try_forward_with(&Tensor::randn(&[3, 1, 8]), &Tensor::randn(&[5, 1, 6]), o);
    /// assert!(err.unwrap_err().to_string().contains("memory"));
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        options: TransformerDecoderOptions,
    ) -> Result<Tensor> {
        check_input("TransformerDecoderLayer", tgt, &self.norm1, true)?;
        check_input("TransformerDecoderLayer (memory)", memory, &self.norm1, true)?;
        let (self_options, memory_options) = (options.self_attention(), options.memory_attention());
        let self_attention = |x: &Tensor| -> Result<Tensor> {
            let (y, _) = self.self_attn.try_forward_with(x, x, x, self_options.clone())?;
            Ok(self.dropout1.forward(&y))
        };
        let memory_attention = |x: &Tensor| -> Result<Tensor> {
            let attention = &self.multihead_attn;
            let (y, _) = attention.try_forward_with(x, memory, memory, memory_options.clone())?;
            Ok(self.dropout2.forward(&y))
        };
        let feed_forward = |x: &Tensor| {
            let hidden = self.dropout.forward(&(self.activation)(&self.linear1.forward(x)));
            self.dropout3.forward(&self.linear2.forward(&hidden))
        };
        Ok(if self.norm_first {
            let x = tgt + &self_attention(&self.norm1.forward(tgt))?;
            let x = &x + &memory_attention(&self.norm2.forward(&x))?;
            &x + &feed_forward(&self.norm3.forward(&x))
        } else {
            let x = self.norm1.forward(&(tgt + &self_attention(tgt)?));
            let x = self.norm2.forward(&(&x + &memory_attention(&x)?));
            self.norm3.forward(&(&x + &feed_forward(&x)))
        })
    }
}

/// A stack of decoder layers with an optional final norm: PyTorch's `nn.TransformerDecoder`
/// (parameter names `layers.0.*`, ..., `norm.*`). Each layer has its own parameters.
///
/// ```
/// use tapegrad_nn::{LayerNorm, Module, TransformerDecoder, TransformerDecoderLayer};
/// use tapegrad_tape::Tensor;
/// let layer = || TransformerDecoderLayer::new(8, 2).dim_feedforward(16);
/// let decoder = TransformerDecoder::new(vec![layer(), layer()]).norm(LayerNorm::new(&[8]));
/// let y = decoder.forward(&Tensor::randn(&[4, 2, 8]), &Tensor::randn(&[6, 2, 8]));
/// assert_eq!(y.shape(), &[4, 2, 8]);
/// assert!(decoder.state_dict().iter().any(|(n, _)| n == "layers.1.norm3.bias"));
/// ```
#[derive(Module)]
pub struct TransformerDecoder {
    /// The layers, applied in order to the target, each attending to the same memory.
    pub layers: Vec<TransformerDecoderLayer>,
    /// A layer norm after the last layer.
    pub norm: Option<LayerNorm>,
}

impl TransformerDecoder {
    /// A stack of `layers`, no final norm.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoder, TransformerDecoderLayer};
    /// let decoder = TransformerDecoder::new(vec![TransformerDecoderLayer::new(8, 2)]);
    /// assert!(decoder.norm.is_none());
    /// ```
    pub fn new(layers: Vec<TransformerDecoderLayer>) -> Self {
        TransformerDecoder { layers, norm: None }
    }

    /// Adds the final norm.
    ///
    /// ```
    /// use tapegrad_nn::{LayerNorm, TransformerDecoder};
    /// assert!(TransformerDecoder::new(vec![]).norm(LayerNorm::new(&[8])).norm.is_some());
    /// ```
    pub fn norm(mut self, norm: LayerNorm) -> Self {
        self.norm = Some(norm);
        self
    }

    /// The stack on `tgt` and `memory`, no masks.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoder, TransformerDecoderLayer};
    /// use tapegrad_tape::Tensor;
    /// let decoder = TransformerDecoder::new(vec![TransformerDecoderLayer::new(8, 2)]);
    /// assert_eq!(decoder.forward(&Tensor::randn(&[2, 8]), &Tensor::randn(&[3, 8])).shape(), &[2, 8]);
    /// ```
    #[track_caller]
    pub fn forward(&self, tgt: &Tensor, memory: &Tensor) -> Tensor {
        self.forward_with(tgt, memory, TransformerDecoderOptions::default())
    }

    /// [`forward`](Self::forward) with masks, passed to every layer.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoder, TransformerDecoderLayer, TransformerDecoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let decoder = TransformerDecoder::new(vec![TransformerDecoderLayer::new(8, 2)]);
    /// let causal = TransformerDecoderOptions::default().tgt_is_causal(true);
    /// let y = decoder.forward_with(&Tensor::randn(&[4, 8]), &Tensor::randn(&[3, 8]), causal);
    /// assert_eq!(y.shape(), &[4, 8]);
    /// ```
    #[track_caller]
    pub fn forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        options: TransformerDecoderOptions,
    ) -> Tensor {
        self.try_forward_with(tgt, memory, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::{TransformerDecoder, TransformerDecoderLayer, TransformerDecoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let decoder = TransformerDecoder::new(vec![TransformerDecoderLayer::new(8, 2)]);
    /// let o = TransformerDecoderOptions::default().tgt_mask(&Tensor::zeros(&[3, 3]));
    /// assert!(decoder.try_forward_with(&Tensor::randn(&[4, 8]), &Tensor::randn(&[3, 8]), o).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        options: TransformerDecoderOptions,
    ) -> Result<Tensor> {
        let mut x = tgt.clone();
        for layer in &self.layers {
            x = layer.try_forward_with(&x, memory, options.clone())?;
        }
        Ok(match &self.norm {
            Some(norm) => {
                check_input("TransformerDecoder", &x, norm, false)?;
                norm.forward(&x)
            }
            None => x,
        })
    }
}

/// The encoder-decoder of "Attention Is All You Need": PyTorch's `nn.Transformer`, an
/// encoder and a decoder stack each ending in a layer norm, with its parameter names
/// (`encoder.layers.0.*`, `encoder.norm.*`, `decoder.layers.0.*`, `decoder.norm.*`) and
/// defaults (6 + 6 layers of width 512, 8 heads, feed-forward 2048, dropout 0.1, ReLU).
/// Embeddings and the output projection are the model's own, as in PyTorch.
///
/// ```
/// use tapegrad_nn::{Module, Transformer, TransformerDecoderOptions};
/// use tapegrad_tape::Tensor;
/// let model = Transformer::new(16, 4, 2, 2).dim_feedforward(32).dropout(0.0).batch_first(true);
/// let (src, tgt) = (Tensor::randn(&[3, 7, 16]), Tensor::randn(&[3, 5, 16]));
/// let causal = TransformerDecoderOptions::default().tgt_is_causal(true);
/// let y = model.forward_with(&src, &tgt, Default::default(), causal);
/// assert_eq!(y.shape(), &[3, 5, 16]);
/// assert_eq!(model.state_dict().last().unwrap().0, "decoder.norm.bias");
/// ```
#[derive(Module)]
pub struct Transformer {
    /// The encoder stack, with its final norm.
    pub encoder: TransformerEncoder,
    /// The decoder stack, with its final norm.
    pub decoder: TransformerDecoder,
}

impl Transformer {
    /// A model of width `d_model` with `nhead` heads and the given numbers of layers,
    /// PyTorch's defaults otherwise (`Transformer::new(512, 8, 6, 6)` is PyTorch's
    /// `nn.Transformer()`).
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 3);
    /// assert_eq!((model.encoder.layers.len(), model.decoder.layers.len()), (1, 3));
    /// ```
    #[track_caller]
    pub fn new(d_model: usize, nhead: usize, encoder_layers: usize, decoder_layers: usize) -> Self {
        Transformer {
            encoder: TransformerEncoder::new(
                (0..encoder_layers).map(|_| TransformerEncoderLayer::new(d_model, nhead)).collect(),
            )
            .norm(LayerNorm::new(&[d_model])),
            decoder: TransformerDecoder::new(
                (0..decoder_layers).map(|_| TransformerDecoderLayer::new(d_model, nhead)).collect(),
            )
            .norm(LayerNorm::new(&[d_model])),
        }
    }

    /// Applies a setting to every encoder and decoder layer.
    fn each(
        mut self,
        encoder: impl Fn(TransformerEncoderLayer) -> TransformerEncoderLayer,
        decoder: impl Fn(TransformerDecoderLayer) -> TransformerDecoderLayer,
    ) -> Self {
        self.encoder.layers = self.encoder.layers.into_iter().map(encoder).collect();
        self.decoder.layers = self.decoder.layers.into_iter().map(decoder).collect();
        self
    }

    /// Sets every layer's feed-forward width.
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).dim_feedforward(32);
    /// assert_eq!(model.decoder.layers[0].linear1.weight.shape(), &[32, 8]);
    /// ```
    pub fn dim_feedforward(self, width: usize) -> Self {
        self.each(|l| l.dim_feedforward(width), |l| l.dim_feedforward(width))
    }

    /// Sets every dropout probability.
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).dropout(0.0);
    /// assert_eq!(model.encoder.layers[0].dropout.p, 0.0);
    /// ```
    pub fn dropout(self, p: f64) -> Self {
        self.each(|l| l.dropout(p), |l| l.dropout(p))
    }

    /// Sets every layer's feed-forward activation.
    ///
    /// ```
    /// use tapegrad_ops::prelude::*;
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).activation(|x| x.gelu());
    /// # let _ = model;
    /// ```
    pub fn activation(self, activation: fn(&Tensor) -> Tensor) -> Self {
        self.each(|l| l.activation(activation), |l| l.activation(activation))
    }

    /// Sets every layer norm's epsilon, the final norms' included.
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).layer_norm_eps(1e-6);
    /// assert_eq!(model.decoder.norm.as_ref().unwrap().eps, 1e-6);
    /// ```
    pub fn layer_norm_eps(mut self, eps: f64) -> Self {
        for norm in [&mut self.encoder.norm, &mut self.decoder.norm].into_iter().flatten() {
            norm.eps = eps;
        }
        self.each(|l| l.layer_norm_eps(eps), |l| l.layer_norm_eps(eps))
    }

    /// Inputs and outputs `[N, L, E]` (PyTorch's `batch_first`).
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).batch_first(true);
    /// assert!(model.decoder.layers[0].multihead_attn.batch_first);
    /// ```
    pub fn batch_first(self, batch_first: bool) -> Self {
        self.each(|l| l.batch_first(batch_first), |l| l.batch_first(batch_first))
    }

    /// Pre-norm layers (PyTorch's `norm_first`).
    ///
    /// ```
    /// let model = tapegrad_nn::Transformer::new(8, 2, 1, 1).norm_first(true);
    /// assert!(model.encoder.layers[0].norm_first && model.decoder.layers[0].norm_first);
    /// ```
    pub fn norm_first(self, norm_first: bool) -> Self {
        self.each(|l| l.norm_first(norm_first), |l| l.norm_first(norm_first))
    }

    /// The model on a source and a target sequence, no masks.
    ///
    /// ```
    /// use tapegrad_nn::Transformer;
    /// use tapegrad_tape::Tensor;
    /// let model = Transformer::new(8, 2, 1, 1).dim_feedforward(16);
    /// assert_eq!(model.forward(&Tensor::randn(&[6, 2, 8]), &Tensor::randn(&[4, 2, 8])).shape(), &[4, 2, 8]);
    /// ```
    #[track_caller]
    pub fn forward(&self, src: &Tensor, tgt: &Tensor) -> Tensor {
        self.forward_with(src, tgt, Default::default(), Default::default())
    }

    /// [`forward`](Self::forward) with the encoder's masks (`src_mask`,
    /// `src_key_padding_mask`, `src_is_causal`) and the decoder's (the memory masks apply to
    /// the encoder's output; PyTorch's `memory_key_padding_mask` is usually the source's
    /// padding).
    ///
    /// ```
    /// use tapegrad_nn::{Transformer, TransformerDecoderOptions, TransformerEncoderOptions};
    /// use tapegrad_tape::Tensor;
    /// let model = Transformer::new(8, 2, 1, 1).dim_feedforward(16);
    /// let padding = Tensor::from_vec(vec![false, false, true], &[1, 3]);
    /// let encoder = TransformerEncoderOptions::default().src_key_padding_mask(&padding);
    /// let decoder = TransformerDecoderOptions::default()
    ///     .tgt_is_causal(true)
    ///     .memory_key_padding_mask(&padding);
    /// let y = model.forward_with(&Tensor::randn(&[3, 1, 8]), &Tensor::randn(&[2, 1, 8]), encoder, decoder);
    /// assert_eq!(y.shape(), &[2, 1, 8]);
    /// ```
    #[track_caller]
    pub fn forward_with(
        &self,
        src: &Tensor,
        tgt: &Tensor,
        encoder: TransformerEncoderOptions,
        decoder: TransformerDecoderOptions,
    ) -> Tensor {
        self.try_forward_with(src, tgt, encoder, decoder).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward_with`](Self::forward_with), returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::Transformer;
    /// use tapegrad_tape::Tensor;
    /// let model = Transformer::new(8, 2, 1, 1).dim_feedforward(16);
    /// let (src, tgt) = (Tensor::randn(&[3, 1, 8]), Tensor::randn(&[2, 1, 4]));
    /// assert!(model.try_forward_with(&src, &tgt, Default::default(), Default::default()).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward_with(
        &self,
        src: &Tensor,
        tgt: &Tensor,
        encoder: TransformerEncoderOptions,
        decoder: TransformerDecoderOptions,
    ) -> Result<Tensor> {
        let memory = self.encoder.try_forward_with(src, encoder)?;
        self.decoder.try_forward_with(tgt, &memory, decoder)
    }
}
