//! The `Module` trait: something with parameters that maps a tensor to a tensor.

use tapegrad_tape::Tensor;

/// A layer or model: PyTorch's `nn.Module`.
///
/// ```
/// use tapegrad_nn::{Linear, Module};
/// use tapegrad_tape::Tensor;
/// let layer = Linear::new(3, 2);
/// let y = layer.forward(&Tensor::ones(&[4, 3]));
/// assert_eq!(y.shape(), &[4, 2]);
/// assert_eq!(layer.named_parameters()[0].0, "weight");
/// ```
pub trait Module {
    /// Computes the output for input `x`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// The parameters with PyTorch's hierarchical names (`weight`, `layers.0.bias`).
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// The parameters, in the order of [`Module::named_parameters`].
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
}
