//! What `#[derive(Module)]` does with each kind of field: [`ModuleField`], and the
//! [`TrainingFlag`] a layer keeps to know whether it is training.

use std::cell::Cell;

use tapegrad_tape::Tensor;

use crate::module::{Module, Slot, join_name};

/// A kind of struct field that `#[derive(Module)]` knows how to visit.
///
/// - [`Tensor`]: a parameter (the derive passes [`Slot::Buffer`] for `#[module(buffer)]`);
/// - any [`Module`]: a submodule, its names under the field's;
/// - `Vec<T>` and `Option<T>` of these: entries named `0`, `1`, ... (PyTorch's `ModuleList`
///   and `ParameterList`); `None` holds nothing;
/// - [`TrainingFlag`]: follows train/eval;
/// - numbers, `bool`, `String`, `&'static str`: hyperparameters, holding nothing.
///
/// Other types are marked `#[module(skip)]`, or implement this trait.
///
/// ```
/// use tapegrad_nn::{Linear, Module, TrainingFlag};
/// use tapegrad_tape::Tensor;
///
/// #[derive(Module)]
/// struct Heads {
///     scale: Tensor,                 // a parameter
///     #[module(buffer)]
///     steps: Tensor,                 // a buffer: saved, not trained
///     heads: Vec<Linear>,            // heads.0.weight, heads.1.weight, ...
///     extra: Option<Linear>,         // absent while None
///     training: TrainingFlag,        // follows train() and eval()
///     width: usize,                  // a hyperparameter: nothing to visit
/// }
///
/// let model = Heads {
///     scale: Tensor::ones(&[1]).requires_grad(),
///     steps: Tensor::zeros(&[1]),
///     heads: vec![Linear::new(2, 2), Linear::no_bias(2, 2)],
///     extra: None,
///     training: TrainingFlag::default(),
///     width: 2,
/// };
/// let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["scale", "steps", "heads.0.weight", "heads.0.bias", "heads.1.weight"]);
/// assert_eq!(model.parameters().len(), 4);
/// model.eval();
/// assert!(!model.training.get());
/// ```
#[diagnostic::on_unimplemented(
    message = "`#[derive(Module)]` does not know what field type `{Self}` holds",
    label = "not a tensor, module, Vec/Option of them, TrainingFlag or plain number",
    note = "mark fields without parameters `#[module(skip)]`, or implement `Module` for the type"
)]
pub trait ModuleField {
    /// Calls `f` for the tensors this field holds, named under `name`; `slot` is the kind a
    /// bare tensor has.
    fn visit_field(&self, name: &str, slot: Slot, f: &mut dyn FnMut(&str, &Tensor, Slot));

    /// [`ModuleField::visit_field`] with the tensors open for replacement.
    fn visit_field_mut(
        &mut self,
        name: &str,
        slot: Slot,
        f: &mut dyn FnMut(&str, &mut Tensor, Slot),
    );

    /// Passes train/eval on; nothing by default.
    fn set_training_field(&self, _training: bool) {}
}

impl ModuleField for Tensor {
    fn visit_field(&self, name: &str, slot: Slot, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        f(name, self, slot)
    }
    fn visit_field_mut(
        &mut self,
        name: &str,
        slot: Slot,
        f: &mut dyn FnMut(&str, &mut Tensor, Slot),
    ) {
        f(name, self, slot)
    }
}

impl<M: Module> ModuleField for M {
    fn visit_field(&self, name: &str, _: Slot, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        self.visit(name, f)
    }
    fn visit_field_mut(&mut self, name: &str, _: Slot, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        self.visit_mut(name, f)
    }
    fn set_training_field(&self, training: bool) {
        self.set_training(training)
    }
}

impl<T: ModuleField> ModuleField for Vec<T> {
    fn visit_field(&self, name: &str, slot: Slot, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        for (i, item) in self.iter().enumerate() {
            item.visit_field(&join_name(name, &i.to_string()), slot, f);
        }
    }
    fn visit_field_mut(
        &mut self,
        name: &str,
        slot: Slot,
        f: &mut dyn FnMut(&str, &mut Tensor, Slot),
    ) {
        for (i, item) in self.iter_mut().enumerate() {
            item.visit_field_mut(&join_name(name, &i.to_string()), slot, f);
        }
    }
    fn set_training_field(&self, training: bool) {
        self.iter().for_each(|item| item.set_training_field(training));
    }
}

impl<T: ModuleField> ModuleField for Option<T> {
    fn visit_field(&self, name: &str, slot: Slot, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        if let Some(item) = self {
            item.visit_field(name, slot, f);
        }
    }
    fn visit_field_mut(
        &mut self,
        name: &str,
        slot: Slot,
        f: &mut dyn FnMut(&str, &mut Tensor, Slot),
    ) {
        if let Some(item) = self {
            item.visit_field_mut(name, slot, f);
        }
    }
    fn set_training_field(&self, training: bool) {
        if let Some(item) = self {
            item.set_training_field(training);
        }
    }
}

/// Hyperparameters and labels: fields that hold no tensor.
macro_rules! holds_nothing {
    ($($ty:ty),*) => {$(
        impl ModuleField for $ty {
            fn visit_field(&self, _: &str, _: Slot, _: &mut dyn FnMut(&str, &Tensor, Slot)) {}
            fn visit_field_mut(
                &mut self,
                _: &str,
                _: Slot,
                _: &mut dyn FnMut(&str, &mut Tensor, Slot),
            ) {
            }
        }
    )*};
}

holds_nothing!(
    f32,
    f64,
    usize,
    isize,
    u8,
    u16,
    u32,
    u64,
    i8,
    i16,
    i32,
    i64,
    bool,
    String,
    &'static str
);

/// Whether a layer is in training mode: starts `true`, follows `train()` and `eval()` when
/// it is a field of a derived module. Layers that behave differently in training (dropout,
/// batch statistics) read it in `forward`.
///
/// ```
/// use tapegrad_nn::{Forward, Module, TrainingFlag};
/// use tapegrad_tape::Tensor;
///
/// /// Adds noise while training, nothing in evaluation.
/// #[derive(Module, Default)]
/// struct Noise {
///     training: TrainingFlag,
/// }
/// impl Forward for Noise {
///     fn forward(&self, x: &Tensor) -> Tensor {
///         if self.training.get() { x + &Tensor::randn(x.shape()) } else { x.clone() }
///     }
/// }
///
/// let noise = Noise::default();
/// let x = Tensor::zeros(&[3]);
/// assert_ne!(noise.forward(&x).to_vec::<f32>(), vec![0.0; 3]);
/// noise.eval();
/// assert_eq!(noise.forward(&x).to_vec::<f32>(), vec![0.0; 3]);
/// ```
#[derive(Clone, Debug)]
pub struct TrainingFlag(Cell<bool>);

impl TrainingFlag {
    /// Whether the layer is training.
    ///
    /// ```
    /// assert!(tapegrad_nn::TrainingFlag::default().get());
    /// ```
    pub fn get(&self) -> bool {
        self.0.get()
    }

    /// Sets the mode (what `train()` and `eval()` do through the derive).
    ///
    /// ```
    /// let flag = tapegrad_nn::TrainingFlag::default();
    /// flag.set(false);
    /// assert!(!flag.get());
    /// ```
    pub fn set(&self, training: bool) {
        self.0.set(training)
    }
}

impl Default for TrainingFlag {
    fn default() -> Self {
        TrainingFlag(Cell::new(true))
    }
}

impl ModuleField for TrainingFlag {
    fn visit_field(&self, _: &str, _: Slot, _: &mut dyn FnMut(&str, &Tensor, Slot)) {}
    fn visit_field_mut(&mut self, _: &str, _: Slot, _: &mut dyn FnMut(&str, &mut Tensor, Slot)) {}
    fn set_training_field(&self, training: bool) {
        self.set(training)
    }
}
