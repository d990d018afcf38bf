//! Modules, layers and optimizers for tapegrad (PyTorch's `torch.nn` and `torch.optim`).
//!
//! ```
//! use tapegrad_nn::{Linear, Module, SGD};
//! use tapegrad_ops::TensorOps;
//! use tapegrad_tape::Tensor;
//! let model = Linear::new(2, 1);
//! let mut opt = SGD::new(model.parameters(), 0.1);
//! let x = Tensor::ones(&[4, 2]);
//! let loss = model.forward(&x).pow(2.0).mean();
//! opt.zero_grad();
//! loss.backward();
//! opt.step();
//! ```

mod linear;
mod module;
mod optim;

pub use linear::Linear;
pub use module::Module;
pub use optim::SGD;
