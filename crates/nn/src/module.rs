//! The `Module` trait: something with named parameters and buffers that maps a tensor to a
//! tensor (PyTorch's `nn.Module`).

use tapegrad_tape::{DType, Error, Result, Tensor};

/// Whether a named tensor of a module is trained or only tracked state.
///
/// ```
/// use tapegrad_nn::{BatchNorm2d, Module, Slot};
/// let mut seen = Vec::new();
/// BatchNorm2d::new(2).visit("bn", &mut |name, _, slot| seen.push((name.to_string(), slot)));
/// assert_eq!(seen[0], ("bn.weight".to_string(), Slot::Parameter));
/// assert_eq!(seen[2], ("bn.running_mean".to_string(), Slot::Buffer));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A parameter: optimized, saved.
    Parameter,
    /// A buffer (running statistics): saved, not optimized.
    Buffer,
}

/// `prefix.name`, or `name` at the top level (PyTorch's hierarchical names).
///
/// ```
/// assert_eq!(tapegrad_nn::join_name("layers.0", "weight"), "layers.0.weight");
/// assert_eq!(tapegrad_nn::join_name("", "weight"), "weight");
/// ```
pub fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// A layer or model: PyTorch's `nn.Module`.
///
/// Implementors provide `forward` and the two visitors over their named tensors (containers
/// call their children's visitors with a longer prefix); everything else (parameter lists,
/// state dicts, train/eval, dtype conversion, freezing) comes from these.
///
/// ```
/// use tapegrad_nn::{Linear, Module, ReLU, Sequential};
/// use tapegrad_tape::Tensor;
/// let model = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
/// let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert_eq!(model.forward(&Tensor::ones(&[5, 3])).shape(), &[5, 2]);
/// ```
pub trait Module {
    /// Computes the output for input `x`.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Calls `f` with the full name, the tensor and its kind, for every parameter and buffer.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot));

    /// Like [`Module::visit`], with the tensors open for replacement.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot));

    /// Switches training behaviour (dropout, batch statistics) on or off; containers pass
    /// it to their children. The default does nothing.
    fn set_training(&self, _training: bool) {}

    /// Parameters with their names.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, s| {
            if s == Slot::Parameter {
                out.push((n.to_string(), t.clone()));
            }
        });
        out
    }

    /// Parameters, in the order of [`Module::named_parameters`].
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Parameters that currently require gradients (what an optimizer should get when
    /// part of the model is frozen).
    fn trainable_parameters(&self) -> Vec<Tensor> {
        self.parameters().into_iter().filter(Tensor::tracks_grad).collect()
    }

    /// Buffers with their names.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, s| {
            if s == Slot::Buffer {
                out.push((n.to_string(), t.clone()));
            }
        });
        out
    }

    /// Parameters and buffers by name: what a parameter file holds.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, _| out.push((n.to_string(), t.detach())));
        out
    }

    /// Copies values from `entries` into this module's tensors in place (so optimizers
    /// holding them stay valid). Every name must be present with the same shape; extra
    /// entries are an error, as with PyTorch's `strict=True`. Float values convert to the
    /// module's dtype.
    fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<()> {
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        self.visit("", &mut |name, t, _| {
            seen.push(name.to_string());
            match entries.iter().find(|(n, _)| n == name) {
                // PyTorch accepts state dicts from before BatchNorm counted batches.
                None if name.ends_with("num_batches_tracked") => {}
                None => problems.push(format!("missing entry `{name}`")),
                Some((_, v)) if v.shape() != t.shape() => problems.push(format!(
                    "entry `{name}` has shape {:?}, the model expects {:?}",
                    v.shape(),
                    t.shape()
                )),
                Some((_, v)) if v.dtype().is_float() != t.dtype().is_float() => {
                    problems.push(format!("entry `{name}` has dtype {}, the model expects {}", v.dtype(), t.dtype()))
                }
                Some(_) => {}
            }
        });
        for (n, _) in entries {
            if !seen.contains(n) {
                problems.push(format!("unexpected entry `{n}`"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Format { path: "state dict".into(), message: problems.join("; ") });
        }
        self.visit("", &mut |name, t, _| {
            if let Some((_, v)) = entries.iter().find(|(n, _)| n == name) {
                t.set_data(&v.to_dtype(t.dtype()).detach());
            }
        });
        Ok(())
    }

    /// Training mode (PyTorch's `model.train()`).
    fn train(&self) {
        self.set_training(true);
    }

    /// Evaluation mode (PyTorch's `model.eval()`).
    fn eval(&self) {
        self.set_training(false);
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Converts every float parameter and buffer to `dtype`, as new leaves (build the
    /// optimizer afterwards).
    fn to_dtype(&mut self, dtype: DType) {
        self.visit_mut("", &mut |_, t, slot| {
            if !t.dtype().is_float() {
                return;
            }
            let converted = t.detach().to_dtype(dtype);
            *t = if slot == Slot::Parameter && t.tracks_grad() { converted.requires_grad() } else { converted };
        });
    }

    /// Stops gradients for every parameter (transfer learning): backward and optimizers
    /// then leave them alone.
    fn freeze(&mut self) {
        self.visit_mut("", &mut |_, t, slot| {
            if slot == Slot::Parameter {
                *t = t.detach();
            }
        });
    }

    /// Makes every parameter require gradients again.
    fn unfreeze(&mut self) {
        self.visit_mut("", &mut |_, t, slot| {
            if slot == Slot::Parameter && !t.tracks_grad() {
                *t = t.detach().requires_grad();
            }
        });
    }
}
