//! Forward hooks on a layer (PyTorch's `register_forward_pre_hook` and
//! `register_forward_hook`): wrap the layer in [`Hooked`], which adds them without changing
//! the layer's names, parameters or behaviour otherwise.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use tapegrad_tape::Tensor;

use crate::module::{Forward, Module, Slot};

type PreHook = Rc<dyn Fn(&Tensor) -> Option<Tensor>>;
type PostHook = Rc<dyn Fn(&Tensor, &Tensor) -> Option<Tensor>>;

#[derive(Default)]
struct HookList {
    next_id: u64,
    pre: Vec<(u64, PreHook)>,
    post: Vec<(u64, PostHook)>,
}

/// A layer with forward hooks. Pre-hooks see (and may replace) the input before `forward`,
/// post-hooks see the input and the output (and may replace the output), in the order
/// registered. Names and parameters are the inner layer's: wrapping changes no state dict.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use tapegrad_nn::{Forward, Hooked, Linear, Module, ReLU, Sequential};
/// use tapegrad_tape::Tensor;
/// let hidden = Hooked::new(Linear::new(3, 4));
/// let activations = Rc::new(RefCell::new(Vec::new()));
/// let seen = activations.clone();
/// let handle = hidden.register_forward_hook(move |_, y| {
///     seen.borrow_mut().push(y.shape().to_vec());
///     None
/// });
/// let model = Sequential::new().add(hidden).add(ReLU);
/// model.forward(&Tensor::ones(&[2, 3]));
/// assert_eq!(*activations.borrow(), vec![vec![2, 4]]);
/// assert_eq!(model.named_parameters()[0].0, "0.weight"); // names unchanged
/// handle.remove();
/// model.forward(&Tensor::ones(&[2, 3]));
/// assert_eq!(activations.borrow().len(), 1); // removed
/// ```
pub struct Hooked<L> {
    /// The wrapped layer.
    pub inner: L,
    hooks: Rc<RefCell<HookList>>,
}

/// Removes the forward hook it was returned for; dropping it keeps the hook.
///
/// ```
/// use tapegrad_nn::{Forward, Hooked, ReLU};
/// use tapegrad_tape::Tensor;
/// let layer = Hooked::new(ReLU);
/// let handle = layer.register_forward_pre_hook(|x| Some(x * 0.0));
/// handle.remove();
/// assert_eq!(layer.forward(&Tensor::ones(&[1])).item(), 1.0);
/// ```
#[must_use = "keep the handle to remove the hook later, or drop it to keep the hook"]
pub struct ForwardHookHandle {
    hooks: Weak<RefCell<HookList>>,
    id: u64,
}

impl ForwardHookHandle {
    /// Removes the hook (nothing, if the layer is gone).
    ///
    /// ```
    /// use tapegrad_nn::{Hooked, ReLU};
    /// Hooked::new(ReLU).register_forward_hook(|_, _| None).remove();
    /// ```
    pub fn remove(self) {
        if let Some(hooks) = self.hooks.upgrade() {
            let mut hooks = hooks.borrow_mut();
            hooks.pre.retain(|(id, _)| *id != self.id);
            hooks.post.retain(|(id, _)| *id != self.id);
        }
    }
}

impl<L> Hooked<L> {
    /// `inner` without hooks yet.
    ///
    /// ```
    /// use tapegrad_nn::{Hooked, Linear, Module};
    /// assert_eq!(Hooked::new(Linear::new(2, 3)).parameters().len(), 2);
    /// ```
    pub fn new(inner: L) -> Self {
        Hooked { inner, hooks: Rc::default() }
    }

    fn handle(&self, id: u64) -> ForwardHookHandle {
        ForwardHookHandle { hooks: Rc::downgrade(&self.hooks), id }
    }

    /// Registers `hook`, called with the input before `forward`; `Some(x)` replaces it.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hooked, ReLU};
    /// use tapegrad_tape::Tensor;
    /// let layer = Hooked::new(ReLU);
    /// let _h = layer.register_forward_pre_hook(|x| Some(-x));
    /// assert_eq!(layer.forward(&Tensor::full(&[1], -2.0)).item(), 2.0);
    /// ```
    pub fn register_forward_pre_hook(
        &self,
        hook: impl Fn(&Tensor) -> Option<Tensor> + 'static,
    ) -> ForwardHookHandle {
        let mut hooks = self.hooks.borrow_mut();
        let id = hooks.next_id;
        hooks.next_id += 1;
        hooks.pre.push((id, Rc::new(hook)));
        self.handle(id)
    }

    /// Registers `hook`, called with the input and the output after `forward`; `Some(y)`
    /// replaces the output.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hooked, ReLU};
    /// use tapegrad_tape::Tensor;
    /// let layer = Hooked::new(ReLU);
    /// let _h = layer.register_forward_hook(|_, y| Some(y * 10.0));
    /// assert_eq!(layer.forward(&Tensor::full(&[1], 2.0)).item(), 20.0);
    /// ```
    pub fn register_forward_hook(
        &self,
        hook: impl Fn(&Tensor, &Tensor) -> Option<Tensor> + 'static,
    ) -> ForwardHookHandle {
        let mut hooks = self.hooks.borrow_mut();
        let id = hooks.next_id;
        hooks.next_id += 1;
        hooks.post.push((id, Rc::new(hook)));
        self.handle(id)
    }
}

impl<L: Forward> Forward for Hooked<L> {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        // Copies of the lists, so that a hook may add or remove hooks of this layer.
        let (pre, post): (Vec<PreHook>, Vec<PostHook>) = {
            let hooks = self.hooks.borrow();
            (
                hooks.pre.iter().map(|(_, h)| h.clone()).collect(),
                hooks.post.iter().map(|(_, h)| h.clone()).collect(),
            )
        };
        let x = pre.iter().fold(x.clone(), |x, hook| hook(&x).unwrap_or(x));
        let y = self.inner.forward(&x);
        post.iter().fold(y, |y, hook| hook(&x, &y).unwrap_or(y))
    }
}

impl<L: Module> Module for Hooked<L> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        self.inner.visit(prefix, f)
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        self.inner.visit_mut(prefix, f)
    }
    fn set_training(&self, training: bool) {
        self.inner.set_training(training)
    }
}
