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

/// A layer or model: PyTorch's `nn.Module` without its `forward` (that is [`Forward`]).
///
/// A module knows its named tensors: two visitors walk them (containers call their
/// children's visitors with a longer prefix), and everything else (parameter lists, state
/// dicts, train/eval, dtype conversion, freezing) is built on them. `#[derive(Module)]`
/// writes the visitors from the struct's fields; [`ModuleField`](crate::ModuleField) says what each kind of
/// field means, and the attributes are `#[module(skip)]`, `#[module(buffer)]` and
/// `#[module(name = "...")]`.
///
/// ```
/// use tapegrad_nn::{BatchNorm1d, Dropout, Forward, Linear, Module};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
///
/// #[derive(Module)]
/// struct Mlp {
///     hidden: Linear,
///     norm: BatchNorm1d,
///     drop: Dropout,
///     out: Linear,
///     #[module(skip)]
///     label: &'static str,
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Tensor) -> Tensor {
///         let h = self.drop.forward(&self.norm.forward(&self.hidden.forward(x)).relu());
///         self.out.forward(&h)
///     }
/// }
///
/// let model = Mlp {
///     hidden: Linear::new(3, 8),
///     norm: BatchNorm1d::new(8),
///     drop: Dropout::new(0.5),
///     out: Linear::new(8, 2),
///     label: "mlp",
/// };
/// let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names[..3], ["hidden.weight", "hidden.bias", "norm.weight"]);
/// assert_eq!(names[4..7], ["norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]);
/// model.eval(); // reaches the BatchNorm and the Dropout: nothing to forget
/// let x = Tensor::randn(&[4, 3]);
/// assert_eq!(model.forward(&x).to_vec::<f32>(), model.forward(&x).to_vec::<f32>());
/// ```
///
/// Hand implementations stay possible (for tensors named differently from their fields):
///
/// ```
/// use tapegrad_nn::{Module, Slot, join_name};
/// use tapegrad_tape::Tensor;
/// struct Scale(Tensor);
/// impl Module for Scale {
///     fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
///         f(&join_name(prefix, "scale"), &self.0, Slot::Parameter);
///     }
///     fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
///         f(&join_name(prefix, "scale"), &mut self.0, Slot::Parameter);
///     }
/// }
/// assert_eq!(Scale(Tensor::ones(&[2])).named_parameters()[0].0, "scale");
/// ```
pub trait Module {
    /// Calls `f` with the full name, the tensor and its kind, for every parameter and buffer.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module, Slot};
    /// let mut seen = Vec::new();
    /// Linear::new(2, 3)
    ///     .visit("fc", &mut |name, t, slot| seen.push((name.to_string(), t.shape().to_vec(), slot)));
    /// assert_eq!(seen[0], ("fc.weight".to_string(), vec![3, 2], Slot::Parameter));
    /// assert_eq!(seen[1], ("fc.bias".to_string(), vec![3], Slot::Parameter));
    /// ```
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot));

    /// Like [`Module::visit`], with the tensors open for replacement.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Linear, Module};
    /// use tapegrad_tape::Tensor;
    /// let mut layer = Linear::new(2, 1);
    /// layer.visit_mut("", &mut |_, t, _| *t = t.ones_like());
    /// assert_eq!(layer.forward(&Tensor::ones(&[1, 2])).item(), 3.0); // 1 + 1 + bias 1
    /// ```
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot));

    /// Switches training behaviour (dropout, batch statistics) on or off; containers pass
    /// it to their children. The default does nothing.
    ///
    /// ```
    /// use tapegrad_nn::{Dropout, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let d = Dropout::new(1.0); // zeroes everything while training
    /// d.set_training(false);
    /// assert_eq!(d.forward(&Tensor::ones(&[2])).to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    fn set_training(&self, _training: bool) {}

    /// Parameters with their names.
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Module};
    /// let names: Vec<String> =
    ///     BatchNorm2d::new(2).named_parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["weight", "bias"]); // the running statistics are buffers
    /// ```
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
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// let shapes: Vec<Vec<usize>> =
    ///     Linear::new(3, 2).parameters().iter().map(|p| p.shape().to_vec()).collect();
    /// assert_eq!(shapes, [vec![2, 3], vec![2]]);
    /// ```
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// Parameters that currently require gradients (what an optimizer should get when
    /// part of the model is frozen).
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// let mut layer = Linear::new(3, 2);
    /// layer.weight = layer.weight.detach(); // freeze the weight only
    /// assert_eq!((layer.parameters().len(), layer.trainable_parameters().len()), (2, 1));
    /// ```
    fn trainable_parameters(&self) -> Vec<Tensor> {
        self.parameters().into_iter().filter(Tensor::tracks_grad).collect()
    }

    /// Buffers with their names.
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Linear, Module};
    /// let names: Vec<String> =
    ///     BatchNorm2d::new(2).named_buffers().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["running_mean", "running_var", "num_batches_tracked"]);
    /// assert!(Linear::new(2, 2).named_buffers().is_empty());
    /// ```
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
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Module};
    /// let state = BatchNorm2d::new(2).state_dict();
    /// assert_eq!(
    ///     (state.len(), state[0].0.as_str(), state[2].0.as_str()),
    ///     (5, "weight", "running_mean")
    /// );
    /// assert!(!state[0].1.tracks_grad()); // detached values, ready to save
    /// ```
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |n, t, _| out.push((n.to_string(), t.detach())));
        out
    }

    /// Copies values from `entries` into this module's tensors in place (so optimizers
    /// holding them stay valid). Every name must be present with the same shape; extra
    /// entries are an error, as with PyTorch's `strict=True`. Float values convert to the
    /// module's dtype.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Linear, Module};
    /// use tapegrad_tape::Tensor;
    /// let mut layer = Linear::new(2, 1);
    /// let (w, b) = (Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]), Tensor::zeros(&[1]));
    /// layer.load_state_dict(&[("weight".into(), w), ("bias".into(), b)]).unwrap();
    /// assert_eq!(layer.forward(&Tensor::ones(&[1, 2])).item(), 3.0);
    /// assert!(layer.load_state_dict(&[]).is_err()); // every entry is required
    /// ```
    fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<()> {
        self.load_state_dict_with(entries, true).map(drop)
    }

    /// [`Module::load_state_dict`] with PyTorch's `strict` keyword. With `strict` false,
    /// names missing from `entries` keep their values and entries the module lacks are
    /// ignored; both are listed in the returned report (PyTorch's `missing_keys` and
    /// `unexpected_keys`). A shape or dtype mismatch is an error either way, and on an
    /// error nothing changes.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// use tapegrad_tape::Tensor;
    /// let mut layer = Linear::new(2, 1);
    /// let entries = [("weight".to_string(), Tensor::ones(&[1, 2])), ("head.w".to_string(), Tensor::ones(&[1]))];
    /// let report = layer.load_state_dict_with(&entries, false).unwrap();
    /// assert_eq!(report.missing_keys, ["bias"]);
    /// assert_eq!(report.unexpected_keys, ["head.w"]);
    /// assert_eq!(layer.weight.to_vec::<f32>(), vec![1.0, 1.0]);
    /// assert!(layer.load_state_dict_with(&entries, true).is_err());
    /// ```
    fn load_state_dict_with(
        &mut self,
        entries: &[(String, Tensor)],
        strict: bool,
    ) -> Result<LoadReport> {
        let mut problems = Vec::new();
        let mut report = LoadReport::default();
        let mut seen = Vec::new();
        self.visit("", &mut |name, t, _| {
            seen.push(name.to_string());
            match entries.iter().find(|(n, _)| n == name) {
                // PyTorch accepts state dicts from before BatchNorm counted batches.
                None if name.ends_with("num_batches_tracked") => {}
                None => report.missing_keys.push(name.to_string()),
                Some((_, v)) if v.shape() != t.shape() => problems.push(format!(
                    "entry `{name}` has shape {:?}, the model expects {:?}",
                    v.shape(),
                    t.shape()
                )),
                Some((_, v)) if v.dtype().is_float() != t.dtype().is_float() => {
                    problems.push(format!(
                        "entry `{name}` has dtype {}, the model expects {}",
                        v.dtype(),
                        t.dtype()
                    ))
                }
                Some(_) => {}
            }
        });
        report.unexpected_keys =
            entries.iter().filter(|(n, _)| !seen.contains(n)).map(|(n, _)| n.clone()).collect();
        if strict {
            problems.extend(report.missing_keys.iter().map(|n| format!("missing entry `{n}`")));
            problems
                .extend(report.unexpected_keys.iter().map(|n| format!("unexpected entry `{n}`")));
        }
        if !problems.is_empty() {
            return Err(Error::Format { path: "state dict".into(), message: problems.join("; ") });
        }
        self.visit_mut("", &mut |name, t, _| {
            if let Some((_, v)) = entries.iter().find(|(n, _)| n == name) {
                t.set_data(&v.to_dtype(t.dtype()).detach());
            }
        });
        Ok(report)
    }

    /// Training mode (PyTorch's `model.train()`).
    ///
    /// ```
    /// use tapegrad_nn::{Dropout, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let d = Dropout::new(1.0);
    /// d.eval();
    /// d.train(); // dropout is active again: p = 1 zeroes everything
    /// assert_eq!(d.forward(&Tensor::ones(&[2])).to_vec::<f32>(), vec![0.0, 0.0]);
    /// ```
    fn train(&self) {
        self.set_training(true);
    }

    /// Evaluation mode (PyTorch's `model.eval()`).
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let bn = BatchNorm2d::new(1);
    /// bn.eval(); // running statistics (mean 0, variance 1), left unchanged
    /// let y = bn.forward(&Tensor::full(&[2, 1], 3.0));
    /// assert!((y.to_vec::<f32>()[0] - 3.0).abs() < 1e-4);
    /// assert_eq!(bn.num_batches_tracked.to_vec::<i64>(), vec![0]);
    /// ```
    fn eval(&self) {
        self.set_training(false);
    }

    /// Clears every parameter's gradient.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Linear, Module};
    /// use tapegrad_tape::Tensor;
    /// let layer = Linear::new(2, 1);
    /// layer.forward(&Tensor::ones(&[1, 2])).backward();
    /// assert!(layer.weight.grad().is_some());
    /// layer.zero_grad();
    /// assert!(layer.parameters().iter().all(|p| p.grad().is_none()));
    /// ```
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Converts every float parameter and buffer to `dtype`, as new leaves (build the
    /// optimizer afterwards).
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Module};
    /// use tapegrad_tape::DType;
    /// let mut bn = BatchNorm2d::new(2);
    /// bn.to_dtype(DType::F64);
    /// assert_eq!((bn.weight.dtype(), bn.running_var.dtype()), (DType::F64, DType::F64));
    /// assert!(bn.weight.tracks_grad());
    /// assert_eq!(bn.num_batches_tracked.dtype(), DType::I64); // integer buffers stay
    /// ```
    fn to_dtype(&mut self, dtype: DType) {
        self.visit_mut("", &mut |_, t, slot| {
            if !t.dtype().is_float() {
                return;
            }
            let converted = t.detach().to_dtype(dtype);
            *t = if slot == Slot::Parameter && t.tracks_grad() {
                converted.requires_grad()
            } else {
                converted
            };
        });
    }

    /// Stops gradients for every parameter (transfer learning): backward and optimizers
    /// then leave them alone.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// let mut layer = Linear::new(2, 1);
    /// layer.freeze();
    /// assert!(layer.trainable_parameters().is_empty());
    /// assert_eq!(layer.parameters().len(), 2); // still listed and saved
    /// ```
    fn freeze(&mut self) {
        self.visit_mut("", &mut |_, t, slot| {
            if slot == Slot::Parameter {
                *t = t.detach();
            }
        });
    }

    /// Makes every parameter require gradients again.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// let mut layer = Linear::new(2, 1);
    /// layer.freeze();
    /// layer.unfreeze();
    /// assert_eq!(layer.trainable_parameters().len(), 2);
    /// ```
    fn unfreeze(&mut self) {
        self.visit_mut("", &mut |_, t, slot| {
            if slot == Slot::Parameter && !t.tracks_grad() {
                *t = t.detach().requires_grad();
            }
        });
    }
}

/// The computation of a module with one input and one output: PyTorch's `forward`.
///
/// Kept apart from [`Module`] because Rust has no variadic methods: a model with several
/// inputs (a decoder with a mask) writes its own inherent `forward` and still derives
/// `Module`; [`Sequential`](crate::Sequential) takes layers that are both (a [`Layer`]).
///
/// ```
/// use tapegrad_nn::{Forward, ReLU};
/// use tapegrad_tape::Tensor;
/// let y = ReLU.forward(&Tensor::from_vec(vec![-1.0f32, 2.0], &[2]));
/// assert_eq!(y.to_vec::<f32>(), vec![0.0, 2.0]);
/// ```
pub trait Forward {
    /// Computes the output for input `x`.
    ///
    /// Implementations inherit `#[track_caller]`, so an error inside a layer, even one called
    /// through `dyn` (as in [`Sequential`](crate::Sequential)), names the user's line.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Linear};
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(Linear::new(3, 2).forward(&Tensor::ones(&[5, 3])).shape(), &[5, 2]);
    /// ```
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor;
}

/// A boxed module is a module (so fields like `Vec<Box<dyn Layer>>` derive too).
impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        (**self).visit(prefix, f)
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        (**self).visit_mut(prefix, f)
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
    }
}

/// A boxed computation computes.
impl<M: Forward + ?Sized> Forward for Box<M> {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        (**self).forward(x)
    }
}

/// A module with one input and one output, as [`Sequential`](crate::Sequential) holds them:
/// every type that is both [`Module`] and [`Forward`].
///
/// ```
/// use tapegrad_nn::{Forward, Layer, Linear, Module, ReLU};
/// use tapegrad_tape::Tensor;
/// let layers: Vec<Box<dyn Layer>> = vec![Box::new(Linear::new(2, 3)), Box::new(ReLU)];
/// let y = layers.iter().fold(Tensor::ones(&[1, 2]), |x, l| l.forward(&x));
/// assert_eq!(y.shape(), &[1, 3]);
/// assert_eq!(layers[0].parameters().len(), 2);
/// ```
pub trait Layer: Module + Forward {}

impl<M: Module + Forward + ?Sized> Layer for M {}

/// What a non-strict load skipped (PyTorch's `_IncompatibleKeys`).
///
/// ```
/// let report = tapegrad_nn::LoadReport::default();
/// assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The module's names that the entries lacked (their values were kept).
    pub missing_keys: Vec<String>,
    /// Entries that name nothing in the module (ignored).
    pub unexpected_keys: Vec<String>,
}
