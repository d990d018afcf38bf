//! Optimizers: update parameters from their gradients.

use tapegrad_tape::{Element, Storage, Tensor};

/// Stochastic gradient descent, `p -= lr * grad`: PyTorch's `optim.SGD` without momentum.
///
/// ```
/// use tapegrad_nn::SGD;
/// use tapegrad_tape::Tensor;
/// let w = Tensor::full(&[1], 1.0).requires_grad();
/// (&w * 3.0).backward();
/// let mut opt = SGD::new(vec![w.clone()], 0.1);
/// opt.step();
/// assert!((w.item() - 0.7).abs() < 1e-6);
/// ```
pub struct SGD {
    params: Vec<Tensor>,
    lr: f64,
}

impl SGD {
    /// An optimizer over `params` with learning rate `lr`.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        SGD { params, lr }
    }

    /// Applies one update to every parameter that has a gradient.
    pub fn step(&mut self) {
        for p in &self.params {
            let Some(g) = p.grad() else { continue };
            let g = g.contiguous_storage();
            let lr = self.lr;
            p.update_storage(|s, layout| {
                fn sub<T: Element>(s: &mut Storage, g: &Storage, lr: T, offsets: impl Iterator<Item = usize>) {
                    let g = g.as_slice::<T>().expect("gradient dtype matches its parameter");
                    let s = s.make_mut::<T>().expect("dtype");
                    for (o, &gi) in offsets.zip(g) {
                        s[o] = s[o] - lr * gi;
                    }
                }
                match s {
                    Storage::F32(_) => sub::<f32>(s, &g, lr as f32, layout.offsets()),
                    Storage::F64(_) => sub::<f64>(s, &g, lr, layout.offsets()),
                    Storage::I64(_) => unreachable!("integer tensors cannot require gradients"),
                }
            });
        }
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for p in &self.params {
            p.zero_grad();
        }
    }
}
