//! The fully connected layer.

use tapegrad_ops::TensorOps;
use tapegrad_tape::Tensor;

use crate::Module;

/// `y = x W^T + b`: PyTorch's `nn.Linear`, initialised as PyTorch does (weight and bias
/// uniform in `±1/sqrt(in_features)`).
///
/// ```
/// use tapegrad_nn::{Linear, Module};
/// use tapegrad_tape::Tensor;
/// let layer = Linear::new(4, 3);
/// assert_eq!(layer.weight.shape(), &[3, 4]);
/// assert_eq!(layer.forward(&Tensor::zeros(&[2, 4])).shape(), &[2, 3]);
/// ```
pub struct Linear {
    /// `out_features x in_features`.
    pub weight: Tensor,
    /// `out_features`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        Linear {
            weight: Tensor::uniform(&[out_features, in_features], -bound, bound).requires_grad(),
            bias: Some(Tensor::uniform(&[out_features], -bound, bound).requires_grad()),
        }
    }

    /// A layer without a bias.
    ///
    /// ```
    /// assert!(tapegrad_nn::Linear::no_bias(2, 2).bias.is_none());
    /// ```
    pub fn no_bias(in_features: usize, out_features: usize) -> Self {
        Linear { bias: None, ..Linear::new(in_features, out_features) }
    }
}

impl Module for Linear {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.matmul(&self.weight.t());
        match &self.bias {
            Some(b) => &y + b,
            None => y,
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut params = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            params.push(("bias".to_string(), b.clone()));
        }
        params
    }
}
