//! Optimizers with PyTorch's exact update rules, one pass over each parameter's elements.
//!
//! Every optimizer is an [`Optim`] over an [`UpdateRule`]: the rule says how many state
//! buffers a parameter needs and how one step changes the parameter and its buffers; `Optim`
//! does the rest (parameter groups with their own learning rates, zeroing gradients, step
//! counts, saving and restoring state).

use std::collections::HashMap;

use rayon::prelude::*;
use tapegrad_tape::{DType, Element, Storage, Tensor};

/// A set of parameters sharing a learning rate (PyTorch's param group).
///
/// ```
/// use tapegrad_nn::{Adam, Optimizer};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::ones(&[2]).requires_grad();
/// let b = Tensor::ones(&[2]).requires_grad();
/// let mut opt = Adam::new(vec![a], 1e-3);
/// opt.add_param_group(vec![b], 1e-4);
/// assert_eq!(opt.param_groups()[1].lr, 1e-4);
/// ```
#[derive(Clone)]
pub struct ParamGroup {
    /// The parameters.
    pub params: Vec<Tensor>,
    /// Their learning rate (schedulers change it).
    pub lr: f64,
}

/// How one optimizer updates one parameter (the part that differs between optimizers).
///
/// ```
/// use tapegrad_nn::{Optim, Optimizer, UpdateRule};
/// use tapegrad_tape::{Element, Tensor};
/// /// Sign descent: each element moves by `lr` against the sign of its gradient.
/// struct SignRule;
/// impl UpdateRule for SignRule {
///     const NAME: &'static str = "SignSGD";
///     fn buffers(&self) -> &'static [&'static str] {
///         &[]
///     }
///     fn update<T: Element>(
///         &self,
///         lr: f64,
///         _step: u64,
///         p: &mut [T],
///         g: &[T],
///         _state: &mut [&mut [T]],
///     ) {
///         for (p, g) in p.iter_mut().zip(g) {
///             *p = *p - T::from_f64(lr * g.to_f64().signum());
///         }
///     }
/// }
/// let w = Tensor::ones(&[2]).requires_grad();
/// (&w * &Tensor::from_vec(vec![5.0f32, -0.1], &[2])).sum_to_shape(&[]).backward();
/// let mut opt = Optim::with_rule(vec![w.clone()], 0.5, SignRule);
/// opt.step();
/// assert_eq!(w.to_vec::<f32>(), vec![0.5, 1.5]);
/// ```
pub trait UpdateRule: Sync {
    /// The optimizer's PyTorch class name.
    ///
    /// ```
    /// use tapegrad_nn::{AdamRule, SgdRule, UpdateRule};
    /// assert_eq!((SgdRule::NAME, AdamRule::NAME), ("SGD", "Adam"));
    /// ```
    const NAME: &'static str;

    /// Names of the per-parameter state buffers, each shaped like the parameter. They may
    /// depend on the settings: as in PyTorch, a buffer that the settings do not use is not
    /// kept at all (Adam's `max_exp_avg_sq` exists only with amsgrad), since each costs a
    /// full copy of the parameter.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, UpdateRule};
    /// assert_eq!(Adam::new(vec![], 1e-3).rule().buffers(), ["exp_avg", "exp_avg_sq"]);
    /// let amsgrad = Adam::new(vec![], 1e-3).amsgrad(true);
    /// assert_eq!(amsgrad.rule().buffers(), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    /// ```
    fn buffers(&self) -> &'static [&'static str];

    /// The optimizer's PyTorch class name for these settings: [`UpdateRule::NAME`] unless the
    /// settings make it another class (Adam with decoupled weight decay is AdamW).
    ///
    /// ```
    /// use tapegrad_nn::{Adam, AdamW, UpdateRule};
    /// assert_eq!(
    ///     (Adam::new(vec![], 1e-3).rule().kind(), AdamW::new(vec![], 1e-3).rule().kind()),
    ///     ("Adam", "AdamW")
    /// );
    /// ```
    fn kind(&self) -> &'static str {
        Self::NAME
    }

    /// The settings as (PyTorch keyword, value) pairs, the values in Rust's `Debug` form
    /// (which gives floats back exactly). A checkpoint records them, and resuming refuses an
    /// optimizer whose settings differ, since it would quietly not continue the same run.
    /// The default, for rules that do not say, is no settings.
    ///
    /// ```
    /// use tapegrad_nn::{SGD, UpdateRule};
    /// let settings = SGD::new(vec![], 0.1).momentum(0.9).rule().settings();
    /// assert_eq!(settings[0], ("momentum", "0.9".to_string()));
    /// ```
    fn settings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The momentum a schedule may cycle ([`OneCycleLR`](crate::OneCycleLR),
    /// [`CyclicLR`](crate::CyclicLR)): PyTorch's `momentum`, or the first of `betas`. The
    /// default, for rules without one, is `None`.
    ///
    /// ```
    /// use tapegrad_nn::{Adagrad, Adam, SGD, UpdateRule};
    /// assert_eq!(SGD::new(vec![], 0.1).momentum(0.9).rule().momentum(), Some(0.9));
    /// assert_eq!(Adam::new(vec![], 1e-3).rule().momentum(), Some(0.9)); // beta1
    /// assert_eq!(Adagrad::new(vec![], 0.1).rule().momentum(), None);
    /// ```
    fn momentum(&self) -> Option<f64> {
        None
    }

    /// Sets the momentum of [`UpdateRule::momentum`]. Called only on rules that have one;
    /// the default panics, so that a rule that reports a momentum must also say how to set
    /// it.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, UpdateRule};
    /// let mut rule = Adam::new(vec![], 1e-3).rule().clone();
    /// rule.set_momentum(0.85);
    /// assert_eq!(rule.betas, (0.85, 0.999));
    /// ```
    fn set_momentum(&mut self, momentum: f64) {
        panic!(
            "{}: the rule reports a momentum but does not implement `set_momentum` (to {momentum})",
            Self::NAME
        );
    }

    /// The buffers kept once a schedule has moved the momentum: those of a momentum in use,
    /// whatever its value at the moment (PyTorch keeps SGD's and RMSprop's momentum buffer
    /// while a schedule holds the momentum at 0). The default is [`UpdateRule::buffers`].
    ///
    /// ```
    /// use tapegrad_nn::{SGD, UpdateRule};
    /// let plain = SGD::new(vec![], 0.1); // momentum 0
    /// assert!(plain.rule().buffers().is_empty());
    /// assert_eq!(plain.rule().moved_buffers(), ["momentum_buffer"]);
    /// ```
    fn moved_buffers(&self) -> &'static [&'static str] {
        self.buffers()
    }

    /// One step for one parameter: `p` the values, `g` the gradient, `state` the buffers
    /// (zero-initialised before the first step), `step` the 1-based step count. Updates are
    /// elementwise, so large parameters are updated in slices on several threads.
    ///
    /// ```
    /// use tapegrad_nn::{SgdRule, UpdateRule};
    /// let rule = SgdRule { momentum: 0.9, ..SgdRule::default() };
    /// let (mut p, g, mut buf) = (vec![1.0f64, 2.0], vec![0.5f64, -1.0], vec![0.0f64; 2]);
    /// rule.update(0.5, 1, &mut p, &g, &mut [&mut buf[..]]);
    /// assert_eq!(p, [0.75, 2.5]);
    /// assert_eq!(buf, g); // on the first step the momentum buffer starts at the gradient
    /// ```
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]);

    /// [`UpdateRule::update`] told which buffers are new: `fresh[i]` is true when `state[i]`
    /// was made for this step, which is every buffer on the parameter's first step, and a
    /// buffer that a change of settings added later (a momentum switched on mid-run). The
    /// optimizer calls this one. The default ignores `fresh`, which suits buffers that start
    /// at zero; SGD overrides it, because PyTorch starts a new momentum buffer at the
    /// gradient whenever it appears.
    ///
    /// ```
    /// use tapegrad_nn::{SgdRule, UpdateRule};
    /// let rule = SgdRule { momentum: 0.9, dampening: 0.5, ..SgdRule::default() };
    /// let (mut p, g, mut buf) = (vec![1.0f64], vec![2.0f64], vec![0.0f64]);
    /// rule.update_fresh(0.5, 7, &[true], &mut p, &g, &mut [&mut buf[..]]);
    /// assert_eq!(buf, g); // a new buffer starts at the gradient, on any step
    /// ```
    // Always inlined, so that the rule's `update` is compiled for each vector width
    // `run_widest` picks; out of line it would run in the baseline's scalar form.
    #[inline(always)]
    fn update_fresh<T: Element>(
        &self,
        lr: f64,
        step: u64,
        fresh: &[bool],
        p: &mut [T],
        g: &[T],
        state: &mut [&mut [T]],
    ) {
        let _ = fresh;
        self.update(lr, step, p, g, state)
    }

    /// The buffers whose first value depends on their being new (those
    /// [`UpdateRule::update_fresh`] reads the flag of). While such a buffer is new, a state
    /// dict leaves it out, as PyTorch saves `None` for it, and loading a state without it
    /// makes it new again; every other buffer must be in a saved state. The default is none.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, SGD, UpdateRule};
    /// assert_eq!(SGD::new(vec![], 0.1).rule().buffers_made_on_use(), ["momentum_buffer"]);
    /// assert!(Adam::new(vec![], 1e-3).rule().buffers_made_on_use().is_empty());
    /// ```
    fn buffers_made_on_use(&self) -> &'static [&'static str] {
        &[]
    }
}

/// Per-parameter state in the parameter's own dtype.
#[derive(Clone, Debug)]
enum Buffers {
    F32(Vec<Vec<f32>>),
    F64(Vec<Vec<f64>>),
}

#[derive(Clone, Debug)]
struct ParamState {
    step: u64,
    /// The names of `buffers`, in order: the rule's buffers when they were made.
    names: &'static [&'static str],
    buffers: Buffers,
    /// Per buffer: made since the last step (see [`UpdateRule::update_fresh`]).
    fresh: Vec<bool>,
}

impl ParamState {
    fn zeros(names: &'static [&'static str], dtype: DType, n: usize) -> ParamState {
        let buffers = match dtype {
            DType::F64 => Buffers::F64(vec![vec![0.0; n]; names.len()]),
            _ => Buffers::F32(vec![vec![0.0; n]; names.len()]),
        };
        ParamState { step: 0, names, buffers, fresh: vec![true; names.len()] }
    }

    /// Rearranges the buffers into `names`: a rule's settings changed after state was made
    /// (`opt.amsgrad(true)` on a used optimizer). Buffers keep their values by name; new
    /// ones start at zero, as they would have on the first step; unused ones are dropped.
    fn rename(&mut self, names: &'static [&'static str], n: usize) {
        fn pick<T: Clone + Default>(
            old: &mut [Vec<T>],
            had: &[&str],
            names: &[&str],
            n: usize,
        ) -> Vec<Vec<T>> {
            let take = |name: &&str| match had.iter().position(|h| h == name) {
                Some(i) => std::mem::take(&mut old[i]),
                None => vec![T::default(); n],
            };
            names.iter().map(take).collect()
        }
        self.buffers = match &mut self.buffers {
            Buffers::F32(old) => Buffers::F32(pick(old, self.names, names, n)),
            Buffers::F64(old) => Buffers::F64(pick(old, self.names, names, n)),
        };
        // A kept buffer keeps its flag; a new one is fresh.
        let was_fresh = |name: &&str| match self.names.iter().position(|had| had == name) {
            Some(i) => self.fresh.get(i).copied().unwrap_or(false),
            None => true,
        };
        self.fresh = names.iter().map(was_fresh).collect();
        self.names = names;
    }
}

/// An optimizer: parameter groups plus an [`UpdateRule`] and its state.
///
/// ```
/// use tapegrad_nn::{Optim, Optimizer, SGD, SgdRule};
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[2]).requires_grad();
/// (&w * 2.0).sum_to_shape(&[]).backward();
/// let mut opt: Optim<SgdRule> = SGD::new(vec![w.clone()], 0.1).momentum(0.9);
/// opt.step();
/// assert_eq!(w.to_vec::<f32>(), vec![0.8, 0.8]);
/// let names: Vec<String> = opt.state_dict().into_iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["param_groups.0.lr", "state.0.0.step", "state.0.0.momentum_buffer"]);
/// ```
pub struct Optim<R: UpdateRule> {
    groups: Vec<ParamGroup>,
    rule: R,
    /// Keyed by (group, index in group).
    state: HashMap<(usize, usize), ParamState>,
    /// Set once the momentum has been moved by `set_momentum`: the settings as built.
    moved: Option<Moved>,
}

/// What an [`Optim`] remembers once a schedule moves its momentum: the momentum and the
/// settings it was built with (which checkpoints compare).
#[derive(Clone, Debug)]
struct Moved {
    momentum: f64,
    settings: Vec<(&'static str, String)>,
    /// The rule's buffers at the built momentum.
    buffers: &'static [&'static str],
}

/// What every optimizer offers, whatever its rule: PyTorch's `torch.optim.Optimizer`.
///
/// ```
/// use tapegrad_nn::{Optimizer, SGD};
/// use tapegrad_tape::Tensor;
/// let w = Tensor::full(&[1], 1.0).requires_grad();
/// (&w * 3.0).backward();
/// let mut opt = SGD::new(vec![w.clone()], 0.1);
/// opt.step();
/// assert!((w.item() - 0.7).abs() < 1e-6);
/// ```
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let (w, idle) = (Tensor::ones(&[2]).requires_grad(), Tensor::ones(&[1]).requires_grad());
    /// (&w * 4.0).sum_to_shape(&[]).backward(); // `idle` gets no gradient
    /// let mut opt = SGD::new(vec![w.clone(), idle.clone()], 0.25);
    /// opt.step();
    /// assert_eq!((w.to_vec::<f32>(), idle.item()), (vec![0.0, 0.0], 1.0));
    /// ```
    #[track_caller]
    fn step(&mut self);

    /// Clears every parameter's gradient.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 2.0).backward();
    /// SGD::new(vec![w.clone()], 0.1).zero_grad();
    /// assert!(w.grad().is_none());
    /// ```
    fn zero_grad(&self);

    /// The parameter groups.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let opt = SGD::new(vec![Tensor::ones(&[2]).requires_grad()], 0.1);
    /// let groups = opt.param_groups();
    /// assert_eq!((groups.len(), groups[0].params.len(), groups[0].lr), (1, 1, 0.1));
    /// ```
    fn param_groups(&self) -> &[ParamGroup];

    /// Sets the learning rate of every group (what schedulers call).
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 0.1);
    /// opt.add_param_group(vec![], 0.5);
    /// opt.set_lr(0.01);
    /// assert!(opt.param_groups().iter().all(|g| g.lr == 0.01));
    /// ```
    fn set_lr(&mut self, lr: f64);

    /// The state as named tensors: `state.{group}.{index}.{buffer}`, `.step`, and
    /// `param_groups.{group}.lr`, for saving next to a model.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// let mut opt = Adam::new(vec![w.clone()], 1e-3);
    /// assert_eq!(opt.state_dict().len(), 1); // before the first step: only the learning rate
    /// (&w * 2.0).sum_to_shape(&[]).backward();
    /// opt.step();
    /// let names: Vec<String> = opt.state_dict().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names[1..3], ["state.0.0.step", "state.0.0.exp_avg"]);
    /// ```
    fn state_dict(&self) -> Vec<(String, Tensor)>;

    /// Restores state saved by [`Optimizer::state_dict`] from an optimizer of the same kind
    /// over parameters of the same shapes, all or nothing: on an error (a missing,
    /// mis-shaped or unexpected entry, another number of parameter groups) the optimizer is
    /// unchanged. A PyTorch-style state without buffers these settings do not use loads, and
    /// entries for such buffers (`max_exp_avg_sq` without amsgrad, as older tapegrad wrote)
    /// are ignored.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 2.0).backward();
    /// let mut saved = SGD::new(vec![w.clone()], 0.1).momentum(0.9);
    /// saved.step();
    /// let mut restored = SGD::new(vec![w.clone()], 0.5).momentum(0.9);
    /// restored.load_state_dict(&saved.state_dict()).unwrap();
    /// assert_eq!(restored.param_groups()[0].lr, 0.1);
    /// assert_eq!(restored.state_dict()[2].1.item(), 2.0); // the momentum buffer came along
    /// ```
    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> tapegrad_tape::Result<()>;

    /// Checks that [`Optimizer::load_state_dict`] would accept `state`, changing nothing: so
    /// that a [`Checkpoint`](crate::Checkpoint) can check every part before it restores any.
    /// The default accepts everything; an optimizer whose `load_state_dict` can fail should
    /// say why here too.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let opt = Adam::new(vec![Tensor::ones(&[2]).requires_grad()], 1e-3);
    /// assert!(opt.check_state_dict(&opt.state_dict()).is_ok());
    /// let wrong = [("param_groups.0.lr".to_string(), Tensor::ones(&[3]))];
    /// assert!(opt.check_state_dict(&wrong).unwrap_err().to_string().contains("param_groups.0.lr"));
    /// ```
    fn check_state_dict(&self, state: &[(String, Tensor)]) -> tapegrad_tape::Result<()> {
        let _ = state;
        Ok(())
    }

    /// The optimizer's PyTorch class name (`"SGD"`, `"Adam"`, `"AdamW"`, ...): a checkpoint
    /// records it, and resuming into another kind of optimizer is an error. The default is
    /// the Rust type's name.
    ///
    /// ```
    /// use tapegrad_nn::{AdamW, Optimizer, SGD};
    /// assert_eq!((SGD::new(vec![], 0.1).kind(), AdamW::new(vec![], 0.1).kind()), ("SGD", "AdamW"));
    /// ```
    fn kind(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The settings (PyTorch's keywords other than `lr`, with their values as text), which
    /// a checkpoint records and checks on resuming (see [`UpdateRule::settings`]). The
    /// default is none.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, Optimizer};
    /// let settings = Adam::new(vec![], 1e-3).settings();
    /// assert_eq!(settings[0], ("betas", "(0.9, 0.999)".to_string()));
    /// ```
    fn settings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The momentum that [`Optimizer::set_momentum`] moves (`momentum` of SGD and RMSprop,
    /// the first of `betas` of Adam, AdamW, Adamax and RAdam), or `None` if the optimizer has
    /// none to move. (Not `momentum()`: that is SGD's and RMSprop's builder method.)
    ///
    /// ```
    /// use tapegrad_nn::{Adagrad, AdamW, Optimizer};
    /// assert_eq!(AdamW::new(vec![], 1e-3).betas((0.95, 0.999)).current_momentum(), Some(0.95));
    /// assert_eq!(Adagrad::new(vec![], 0.1).current_momentum(), None);
    /// ```
    fn current_momentum(&self) -> Option<f64> {
        None
    }

    /// Sets the momentum (what [`OneCycleLR`](crate::OneCycleLR) and
    /// [`CyclicLR`](crate::CyclicLR) call). A momentum set this way is part of the
    /// optimizer's state, like the learning rate: `state_dict` saves it
    /// (`param_groups.{group}.momentum`) and checkpoints compare the settings the optimizer
    /// was built with.
    ///
    /// # Panics
    /// If the optimizer has no momentum (`current_momentum()` is `None`) or `momentum` is not
    /// finite.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 0.1).momentum(0.9);
    /// opt.set_momentum(0.85);
    /// assert_eq!(opt.current_momentum(), Some(0.85));
    /// assert_eq!(opt.settings()[0], ("momentum", "0.9".to_string())); // as built
    /// ```
    #[track_caller]
    fn set_momentum(&mut self, momentum: f64) {
        let _ = momentum;
        panic!(
            "{} has no momentum to set (`current_momentum()` is None); a schedule that cycles \
             it can be told not to with `.cycle_momentum(false)`",
            self.kind()
        );
    }
}

impl<R: UpdateRule> Optim<R> {
    /// An optimizer over `params` with learning rate `lr` and the rule's settings.
    ///
    /// ```
    /// use tapegrad_nn::{Optim, Optimizer, SgdRule};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 2.0).backward();
    /// let rule = SgdRule { weight_decay: 0.5, ..SgdRule::default() };
    /// let mut opt = Optim::with_rule(vec![w.clone()], 0.1, rule);
    /// opt.step(); // w - lr (grad + weight_decay w) = 1 - 0.1 (2 + 0.5)
    /// assert_eq!(w.item(), 0.75);
    /// ```
    pub fn with_rule(params: Vec<Tensor>, lr: f64, rule: R) -> Self {
        Optim { groups: vec![ParamGroup { params, lr }], rule, state: HashMap::new(), moved: None }
    }

    /// Adds parameters with their own learning rate.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let (a, b) = (Tensor::ones(&[1]).requires_grad(), Tensor::ones(&[1]).requires_grad());
    /// (&a + &b).backward(); // both gradients are 1
    /// let mut opt = SGD::new(vec![a.clone()], 0.5);
    /// opt.add_param_group(vec![b.clone()], 0.25);
    /// opt.step();
    /// assert_eq!((a.item(), b.item()), (0.5, 0.75));
    /// ```
    pub fn add_param_group(&mut self, params: Vec<Tensor>, lr: f64) {
        self.groups.push(ParamGroup { params, lr });
    }

    /// The update rule's settings.
    ///
    /// ```
    /// use tapegrad_nn::Adam;
    /// let opt = Adam::new(vec![], 1e-3).eps(1e-6);
    /// assert_eq!((opt.rule().eps, opt.rule().betas), (1e-6, (0.9, 0.999)));
    /// ```
    pub fn rule(&self) -> &R {
        &self.rule
    }
}

/// A slice of a parameter's update: its values, gradient and state buffers.
type Task<'a, T> = (&'a mut [T], &'a [T], Vec<&'a mut [T]>);

fn step_one<T: Element>(
    rule: &impl UpdateRule,
    lr: f64,
    state: &mut ParamState,
    p: &mut [T],
    g: &[T],
    pick: impl FnOnce(&mut Buffers) -> &mut Vec<Vec<T>>,
) {
    state.step += 1;
    let step = state.step;
    let fresh = std::mem::take(&mut state.fresh);
    let buffers = pick(&mut state.buffers);
    // Below this many elements the update stays on the calling thread.
    const CHUNK: usize = 1 << 15;
    if p.len() < 2 * CHUNK || rayon::current_num_threads() < 2 {
        let mut views: Vec<&mut [T]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
        update_widest(rule, lr, step, &fresh, p, g, &mut views);
        state.fresh = still_fresh(rule, state.names, fresh);
        return;
    }
    // One task per chunk: the chunk of the parameter, its gradient and every buffer.
    let mut tasks: Vec<Task<'_, T>> =
        p.chunks_mut(CHUNK).zip(g.chunks(CHUNK)).map(|(p, g)| (p, g, Vec::new())).collect();
    for buffer in buffers.iter_mut() {
        for (task, chunk) in tasks.iter_mut().zip(buffer.chunks_mut(CHUNK)) {
            task.2.push(chunk);
        }
    }
    tasks
        .into_par_iter()
        .for_each(|(p, g, mut state)| update_widest(rule, lr, step, &fresh, p, g, &mut state));
    state.fresh = still_fresh(rule, state.names, fresh);
}

/// The buffers still new after a step: those the settings keep without using (SGD's momentum
/// buffer while a schedule holds the momentum at 0), as the step has not written them.
fn still_fresh(rule: &impl UpdateRule, names: &[&str], mut fresh: Vec<bool>) -> Vec<bool> {
    let used = rule.buffers();
    for (fresh, name) in fresh.iter_mut().zip(names) {
        *fresh &= !used.contains(name);
    }
    fresh
}

/// `rule.update` compiled for the widest vectors this CPU has (rounding exactly as the
/// baseline build does).
fn update_widest<T: Element>(
    rule: &impl UpdateRule,
    lr: f64,
    step: u64,
    fresh: &[bool],
    p: &mut [T],
    g: &[T],
    state: &mut [&mut [T]],
) {
    struct Update<'a, 's, R, T> {
        rule: &'a R,
        lr: f64,
        step: u64,
        fresh: &'a [bool],
        p: &'a mut [T],
        g: &'a [T],
        state: &'a mut [&'s mut [T]],
    }
    impl<R: UpdateRule, T: Element> tapegrad_kernels::simd::WidestLoop for Update<'_, '_, R, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            self.rule.update_fresh(self.lr, self.step, self.fresh, self.p, self.g, self.state)
        }
    }
    tapegrad_kernels::simd::run_widest(Update { rule, lr, step, fresh, p, g, state })
}

impl<R: UpdateRule> Optimizer for Optim<R> {
    #[track_caller]
    fn step(&mut self) {
        let Optim { groups, rule, state, moved } = self;
        let names = if moved.is_some() { rule.moved_buffers() } else { rule.buffers() };
        for (gi, group) in groups.iter().enumerate() {
            for (pi, param) in group.params.iter().enumerate() {
                let Some(grad) = param.grad() else { continue };
                let grad = grad.contiguous_storage();
                let n = param.numel();
                let entry = state
                    .entry((gi, pi))
                    .or_insert_with(|| ParamState::zeros(names, param.dtype(), n));
                // The same static list almost always: compare addresses before contents.
                if !std::ptr::eq(entry.names, names) && entry.names != names {
                    entry.rename(names, n);
                }
                let lr = group.lr;
                // Checked here rather than in the closure below, so that a panic names the
                // caller's line.
                assert!(
                    param.layout().is_contiguous(),
                    "{}: parameter {pi} of group {gi} is a non-contiguous view; pass a contiguous \
                    tensor",
                    R::NAME
                );
                let same_dtype = matches!(
                    (param.dtype(), grad.dtype(), &entry.buffers),
                    (DType::F32, DType::F32, Buffers::F32(_))
                        | (DType::F64, DType::F64, Buffers::F64(_))
                );
                assert!(
                    same_dtype,
                    "{}: parameter {pi} of group {gi} is {} but its gradient or its optimizer state is not \
                     (convert a model's dtype before creating its optimizer)",
                    R::NAME,
                    param.dtype()
                );
                param.update_storage(|storage, layout| {
                    let range = layout.offset()..layout.offset() + n;
                    match (storage, &grad) {
                        (s @ Storage::F32(_), Storage::F32(g)) => {
                            let p = &mut s.make_mut::<f32>().expect("f32")[range];
                            step_one(rule, lr, entry, p, g, |b| match b {
                                Buffers::F32(v) => v,
                                Buffers::F64(_) => panic!("{}: parameter dtype changed", R::NAME),
                            });
                        }
                        (s @ Storage::F64(_), Storage::F64(g)) => {
                            let p = &mut s.make_mut::<f64>().expect("f64")[range];
                            step_one(rule, lr, entry, p, g, |b| match b {
                                Buffers::F64(v) => v,
                                Buffers::F32(_) => panic!("{}: parameter dtype changed", R::NAME),
                            });
                        }
                        _ => panic!("{}: gradient dtype differs from its parameter", R::NAME),
                    }
                });
            }
        }
    }

    fn zero_grad(&self) {
        for group in &self.groups {
            for p in &group.params {
                p.zero_grad();
            }
        }
    }

    fn param_groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn set_lr(&mut self, lr: f64) {
        for g in &mut self.groups {
            g.lr = lr;
        }
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            out.push((format!("param_groups.{gi}.lr"), Tensor::from_vec(vec![group.lr], &[])));
            if let (Some(_), Some(momentum)) = (&self.moved, self.rule.momentum()) {
                let value = Tensor::from_vec(vec![momentum], &[]);
                out.push((format!("param_groups.{gi}.momentum"), value));
            }
        }
        let mut keys: Vec<_> = self.state.keys().copied().collect();
        keys.sort();
        for (gi, pi) in keys {
            let s = &self.state[&(gi, pi)];
            let shape = self.groups[gi].params[pi].shape().to_vec();
            out.push((format!("state.{gi}.{pi}.step"), Tensor::from_vec(vec![s.step as f64], &[])));
            let made_on_use = self.rule.buffers_made_on_use();
            for (bi, name) in s.names.iter().enumerate() {
                if s.fresh[bi] && made_on_use.contains(name) {
                    continue;
                }
                let t = match &s.buffers {
                    Buffers::F32(b) => Tensor::from_vec(b[bi].clone(), &shape),
                    Buffers::F64(b) => Tensor::from_vec(b[bi].clone(), &shape),
                };
                out.push((format!("state.{gi}.{pi}.{name}"), t));
            }
        }
        out
    }

    fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> tapegrad_tape::Result<()> {
        let checked = self.check(entries)?;
        let names = checked.names;
        let mut state = HashMap::new();
        for ((gi, pi), step, tensors) in checked.params {
            let param = &self.groups[gi].params[pi];
            let n = param.numel();
            // A buffer left out was new when saved: zeros, and new again.
            let buffers = if param.dtype() == DType::F64 {
                Buffers::F64(
                    tensors.iter().map(|t| t.map_or(vec![0.0; n], |t| t.to_vec())).collect(),
                )
            } else {
                Buffers::F32(
                    tensors.iter().map(|t| t.map_or(vec![0.0; n], |t| t.to_vec())).collect(),
                )
            };
            let fresh = tensors.iter().map(Option::is_none).collect();
            state.insert((gi, pi), ParamState { step, names, buffers, fresh });
        }
        for (group, lr) in self.groups.iter_mut().zip(checked.lrs) {
            group.lr = lr;
        }
        match (checked.momentum, self.moved.take()) {
            (Some(momentum), moved) => {
                let built = self.rule.momentum().expect("checked: the rule has a momentum");
                let (settings, buffers) = (self.rule.settings(), self.rule.buffers());
                self.moved = Some(moved.unwrap_or(Moved { momentum: built, settings, buffers }));
                self.rule.set_momentum(momentum);
            }
            // A state saved before any schedule moved the momentum: back to the built one.
            (None, Some(moved)) => self.rule.set_momentum(moved.momentum),
            (None, None) => {}
        }
        self.state = state;
        Ok(())
    }

    fn check_state_dict(&self, entries: &[(String, Tensor)]) -> tapegrad_tape::Result<()> {
        self.check(entries).map(drop)
    }

    fn kind(&self) -> &'static str {
        self.rule.kind()
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        match &self.moved {
            Some(moved) => moved.settings.clone(),
            None => self.rule.settings(),
        }
    }

    fn current_momentum(&self) -> Option<f64> {
        self.rule.momentum()
    }

    #[track_caller]
    fn set_momentum(&mut self, momentum: f64) {
        let Some(built) = self.rule.momentum() else {
            panic!(
                "{} has no momentum to set (only SGD, RMSprop, Adam, AdamW, Adamax and RAdam do); a \
                 schedule that cycles it can be told not to with `.cycle_momentum(false)`",
                self.kind()
            );
        };
        assert!(momentum.is_finite(), "{}: momentum {momentum} is not finite", self.kind());
        if self.moved.is_none() {
            let (settings, buffers) = (self.rule.settings(), self.rule.buffers());
            self.moved = Some(Moved { momentum: built, settings, buffers });
        }
        self.rule.set_momentum(momentum);
    }
}

/// A state dict that [`Optim::check`] accepted: each group's learning rate, the momentum a
/// schedule set (if saved), and for each parameter with state its (group, index), step and
/// buffers in the rule's order.
struct Checked<'a> {
    lrs: Vec<f64>,
    momentum: Option<f64>,
    /// The buffers' names, in the order of each parameter's tensors.
    names: &'static [&'static str],
    params: Vec<((usize, usize), u64, SavedBuffers<'a>)>,
}

/// One parameter's buffers in a state dict, in the rule's order; a buffer the state left out
/// (one of [`UpdateRule::buffers_made_on_use`]) is `None`.
type SavedBuffers<'a> = Vec<Option<&'a Tensor>>;

impl<R: UpdateRule> Optim<R> {
    /// Everything `load_state_dict` checks, without changing anything. Every entry must be
    /// `param_groups.{g}.lr`, `param_groups.{g}.momentum` (all groups or none, one value) or
    /// `state.{g}.{i}.{name}` for a group and parameter this optimizer has; the groups must be the optimizer's; a parameter with state needs its
    /// step and every buffer the rule uses (but those new when saved, see
    /// [`UpdateRule::buffers_made_on_use`]), shaped like the parameter.
    fn check<'a>(&self, entries: &'a [(String, Tensor)]) -> tapegrad_tape::Result<Checked<'a>> {
        let bad = |message: String| tapegrad_tape::Error::Format {
            path: format!("{} state", self.kind()),
            message,
        };
        // The buffers the optimizer keeps after the load: with a moved momentum in the state,
        // those of a momentum in use; otherwise those of the momentum it was built with.
        let file_moved = entries.iter().any(|(name, _)| {
            name.strip_prefix("param_groups.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(_, key)| key == "momentum")
        });
        let names = match (&self.moved, file_moved) {
            (_, true) => self.rule.moved_buffers(),
            (Some(moved), false) => moved.buffers,
            (None, false) => self.rule.buffers(),
        };
        let scalar = |name: &str, t: &Tensor| -> tapegrad_tape::Result<f64> {
            if t.numel() != 1 || !t.dtype().is_float() {
                return Err(bad(format!(
                    "entry `{name}` is {} with shape {:?}; expected one float",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.item())
        };
        let mut lrs: Vec<Option<f64>> = vec![None; self.groups.len()];
        let mut momenta: Vec<Option<f64>> = vec![None; self.groups.len()];
        let mut file_groups = 0;
        // Per (group, index): the step and the buffers in `names` order.
        type Found<'a> = (Option<u64>, Vec<Option<&'a Tensor>>);
        let mut found: std::collections::BTreeMap<(usize, usize), Found<'a>> = Default::default();
        for (name, t) in entries {
            let parts: Vec<&str> = name.split('.').collect();
            let index = |s: &str| s.parse::<usize>().ok();
            match parts[..] {
                ["param_groups", g, "lr"] if index(g).is_some() => {
                    let gi = index(g).expect("checked");
                    file_groups = file_groups.max(gi + 1);
                    if gi < lrs.len() {
                        lrs[gi] = Some(scalar(name, t)?);
                    }
                }
                ["param_groups", g, "momentum"] if index(g).is_some() => {
                    let gi = index(g).expect("checked");
                    file_groups = file_groups.max(gi + 1);
                    let momentum = scalar(name, t)?;
                    if self.rule.momentum().is_none() {
                        return Err(bad(format!(
                            "entry `{name}`: {} has no momentum to restore",
                            self.kind()
                        )));
                    }
                    if !momentum.is_finite() {
                        return Err(bad(format!(
                            "entry `{name}` is {momentum}; expected a finite number"
                        )));
                    }
                    if gi < momenta.len() {
                        momenta[gi] = Some(momentum);
                    }
                }
                ["state", g, i, buffer] if index(g).is_some() && index(i).is_some() => {
                    let (gi, pi) = (index(g).expect("checked"), index(i).expect("checked"));
                    let Some(param) = self.groups.get(gi).and_then(|group| group.params.get(pi))
                    else {
                        let sizes: Vec<usize> =
                            self.groups.iter().map(|g| g.params.len()).collect();
                        return Err(bad(format!(
                            "entry `{name}` is for parameter {pi} of group {gi}, but the optimizer's groups hold \
                             {sizes:?} parameters"
                        )));
                    };
                    let slot =
                        found.entry((gi, pi)).or_insert_with(|| (None, vec![None; names.len()]));
                    if buffer == "step" {
                        let step = scalar(name, t)?;
                        // PyTorch keeps the step as a float tensor; it must hold a count.
                        if !(step >= 0.0 && step.fract() == 0.0 && step <= (1u64 << 53) as f64) {
                            return Err(bad(format!(
                                "entry `{name}` is {step}; a step is a non-negative whole number"
                            )));
                        }
                        slot.0 = Some(step as u64);
                    } else if let Some(bi) = names.iter().position(|n| *n == buffer) {
                        if t.shape() != param.shape() || !t.dtype().is_float() {
                            return Err(bad(format!(
                                "entry `{name}` is {} with shape {:?}, but parameter {pi} of group {gi} is {} with \
                                 shape {:?}",
                                t.dtype(),
                                t.shape(),
                                param.dtype(),
                                param.shape()
                            )));
                        }
                        slot.1[bi] = Some(t);
                    }
                    // Any other buffer belongs to settings this optimizer does not have
                    // (`max_exp_avg_sq` without amsgrad): nothing uses it.
                }
                _ => {
                    return Err(bad(format!(
                        "unexpected entry `{name}`; an optimizer's state holds `param_groups.{{group}}.lr`, \
                         `param_groups.{{group}}.momentum` and `state.{{group}}.{{index}}.{{buffer}}`"
                    )));
                }
            }
        }
        if file_groups != self.groups.len() {
            return Err(bad(format!(
                "the state has {file_groups} parameter groups, the optimizer has {}",
                self.groups.len()
            )));
        }
        let lrs = lrs
            .into_iter()
            .enumerate()
            .map(|(gi, lr)| lr.ok_or_else(|| bad(format!("missing entry `param_groups.{gi}.lr`"))))
            .collect::<tapegrad_tape::Result<Vec<f64>>>()?;
        // The rule keeps one momentum for every group: saved for all groups or none, and the same.
        let momentum = match momenta.iter().flatten().next() {
            None => None,
            Some(&first) => {
                if let Some(gi) = momenta.iter().position(Option::is_none) {
                    return Err(bad(format!(
                        "missing entry `param_groups.{gi}.momentum` (other groups have one)"
                    )));
                }
                if momenta.iter().flatten().any(|&m| m != first) {
                    return Err(bad(format!(
                        "the groups' momenta differ ({:?}); {} keeps one for all groups",
                        momenta.iter().flatten().collect::<Vec<_>>(),
                        self.kind()
                    )));
                }
                Some(first)
            }
        };
        let mut params = Vec::with_capacity(found.len());
        for ((gi, pi), (step, buffers)) in found {
            let step = step.ok_or_else(|| bad(format!("missing entry `state.{gi}.{pi}.step`")))?;
            let made_on_use = self.rule.buffers_made_on_use();
            if let Some((_, name)) = buffers
                .iter()
                .zip(names)
                .find(|(t, name)| t.is_none() && !made_on_use.contains(name))
            {
                return Err(bad(format!("missing entry `state.{gi}.{pi}.{name}`")));
            }
            params.push(((gi, pi), step, buffers));
        }
        Ok(Checked { lrs, momentum, names, params })
    }
}

/// `T` from an `f64` hyperparameter.
fn c<T: Element>(v: f64) -> T {
    T::from_f64(v)
}

/// PyTorch's `lerp_(end, weight)`, which picks its formula by the weight to stay exact at
/// the ends.
#[inline(always)]
fn lerp<T: Element>(start: T, end: T, weight: T) -> T {
    if weight.to_f64() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::ONE - weight)
    }
}

/// Setters for the fields of `$rule`, each documented with an example that builds a `$opt`
/// with the sample value after `=` and reads it back.
macro_rules! builder {
    ($opt:ident, $rule:ident { $($field:ident: $ty:ty = $sample:expr),* $(,)? }) => {
        impl Optim<$rule> {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (PyTorch's keyword of the same \
                    name).")]
                ///
                /// ```
                #[doc = concat!("use tapegrad_nn::", stringify!($opt), ";")]
                #[doc = concat!(
                    "let opt = ", stringify!($opt), "::new(vec![], 0.1).",
                    stringify!($field), "(", stringify!($sample), ");"
                )]
                #[doc = concat!("assert_eq!(opt.rule().", stringify!($field), ", ", stringify!($sample), ");")]
                /// ```
                pub fn $field(mut self, value: $ty) -> Self {
                    self.rule.$field = value;
                    self
                }
            )*
        }
    };
}

/// Settings of [`SGD`]. The default (all zero) is plain gradient descent.
///
/// ```
/// use tapegrad_nn::{SgdRule, UpdateRule};
/// let rule = SgdRule::default();
/// assert_eq!((rule.momentum, rule.nesterov, rule.weight_decay), (0.0, false, 0.0));
/// assert!(rule.buffers().is_empty()); // a momentum buffer only with momentum, as PyTorch
/// ```
#[derive(Clone, Debug, Default)]
pub struct SgdRule {
    /// Momentum factor (0 disables momentum).
    pub momentum: f64,
    /// Dampening of the momentum's gradient term.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

/// Stochastic gradient descent with optional momentum, dampening, Nesterov and weight
/// decay: PyTorch's `torch.optim.SGD` (a new momentum buffer starts at the gradient: on the
/// first step, or on the step after a momentum was switched on).
///
/// ```
/// use tapegrad_nn::SGD;
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[3]).requires_grad();
/// let opt = SGD::new(vec![w], 0.01).momentum(0.9).nesterov(true);
/// assert_eq!(opt.rule().momentum, 0.9);
/// ```
pub type SGD = Optim<SgdRule>;

impl SGD {
    /// Plain SGD with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, SGD};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).requires_grad();
    /// (&w * &Tensor::from_vec(vec![1.0f32, -1.0], &[2])).sum_to_shape(&[]).backward();
    /// let mut opt = SGD::new(vec![w.clone()], 0.5);
    /// opt.step(); // w - lr grad
    /// assert_eq!(w.to_vec::<f32>(), vec![0.5, 2.5]);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, SgdRule::default())
    }
}

builder!(
    SGD,
    SgdRule {
        momentum: f64 = 0.9,
        dampening: f64 = 0.1,
        nesterov: bool = true,
        weight_decay: f64 = 1e-4
    }
);

impl UpdateRule for SgdRule {
    const NAME: &'static str = "SGD";
    fn buffers(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 { &["momentum_buffer"] } else { &[] }
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let SgdRule { momentum, dampening, nesterov, weight_decay } = self;
        vec![
            ("momentum", format!("{momentum:?}")),
            ("dampening", format!("{dampening:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("nesterov", format!("{nesterov:?}")),
        ]
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }
    fn moved_buffers(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }
    fn buffers_made_on_use(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        self.update_fresh(lr, step, &[step == 1], p, g, state)
    }
    #[inline(always)]
    fn update_fresh<T: Element>(
        &self,
        lr: f64,
        _step: u64,
        fresh: &[bool],
        p: &mut [T],
        g: &[T],
        state: &mut [&mut [T]],
    ) {
        let (lr, wd, mom, damp) =
            (c::<T>(lr), c::<T>(self.weight_decay), c::<T>(self.momentum), c::<T>(self.dampening));
        // Without momentum there is no buffer, and the loop never reads it.
        let buf: &mut [T] = match state {
            [buf] => buf,
            _ => &mut [],
        };
        let new_buffer = fresh.first() == Some(&true);
        for i in 0..p.len() {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d += wd * p[i];
            }
            if self.momentum != 0.0 {
                buf[i] = if new_buffer { d } else { mom * buf[i] + (T::ONE - damp) * d };
                d = if self.nesterov { d + mom * buf[i] } else { buf[i] };
            }
            p[i] = p[i] - lr * d;
        }
    }
}

/// Settings of [`Adagrad`].
///
/// ```
/// use tapegrad_nn::{Adagrad, UpdateRule};
/// let opt = Adagrad::new(vec![], 0.1);
/// assert_eq!((opt.rule().lr_decay, opt.rule().weight_decay, opt.rule().eps), (0.0, 0.0, 1e-10));
/// assert_eq!(opt.rule().buffers(), ["sum"]); // the running sum of squared gradients
/// ```
#[derive(Clone, Debug)]
pub struct AdagradRule {
    /// Learning-rate decay per step.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Added to the denominator for stability (PyTorch: 1e-10).
    pub eps: f64,
}

/// Adagrad: PyTorch's `torch.optim.Adagrad`.
///
/// ```
/// use tapegrad_nn::Adagrad;
/// let opt = Adagrad::new(vec![], 0.1).lr_decay(0.01);
/// assert_eq!(opt.rule().eps, 1e-10);
/// ```
pub type Adagrad = Optim<AdagradRule>;

impl Adagrad {
    /// Adagrad with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Adagrad, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// (&w * &Tensor::from_vec(vec![10.0f32, 0.1], &[2])).sum_to_shape(&[]).backward();
    /// let mut opt = Adagrad::new(vec![w.clone()], 0.1);
    /// opt.step(); // the first step moves every element by lr, whatever its gradient's size
    /// assert!(w.to_vec::<f32>().iter().all(|v| (v - 0.9).abs() < 1e-6));
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, AdagradRule { lr_decay: 0.0, weight_decay: 0.0, eps: 1e-10 })
    }
}

builder!(Adagrad, AdagradRule { lr_decay: f64 = 0.01, weight_decay: f64 = 1e-4, eps: f64 = 1e-8 });

impl UpdateRule for AdagradRule {
    const NAME: &'static str = "Adagrad";
    fn buffers(&self) -> &'static [&'static str] {
        &["sum"]
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let AdagradRule { lr_decay, weight_decay, eps } = self;
        vec![
            ("lr_decay", format!("{lr_decay:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("eps", format!("{eps:?}")),
        ]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let clr = c::<T>(lr / (1.0 + (step - 1) as f64 * self.lr_decay));
        let (wd, eps) = (c::<T>(self.weight_decay), c::<T>(self.eps));
        let sum = &mut state[0];
        for i in 0..p.len() {
            let d = if self.weight_decay != 0.0 { g[i] + wd * p[i] } else { g[i] };
            sum[i] += d * d;
            p[i] = p[i] - clr * (d / (sum[i].sqrt() + eps));
        }
    }
}

/// Settings of [`Adadelta`].
///
/// ```
/// use tapegrad_nn::{Adadelta, UpdateRule};
/// let opt = Adadelta::new(vec![], 1.0);
/// assert_eq!((opt.rule().rho, opt.rule().eps, opt.rule().weight_decay), (0.9, 1e-6, 0.0));
/// assert_eq!(opt.rule().buffers(), ["square_avg", "acc_delta"]);
/// ```
#[derive(Clone, Debug)]
pub struct AdadeltaRule {
    /// Decay of the running averages.
    pub rho: f64,
    /// Added inside the square roots (PyTorch: 1e-6).
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

/// Adadelta: PyTorch's `torch.optim.Adadelta` (default learning rate 1.0).
///
/// ```
/// use tapegrad_nn::Adadelta;
/// assert_eq!(Adadelta::new(vec![], 1.0).rule().rho, 0.9);
/// ```
pub type Adadelta = Optim<AdadeltaRule>;

impl Adadelta {
    /// Adadelta with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Adadelta, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 10.0).backward();
    /// let mut opt = Adadelta::new(vec![w.clone()], 1.0);
    /// opt.step(); // a first step of about sqrt(eps / (1 - rho)) = sqrt(1e-5)
    /// assert!((w.item() - (1.0 - 1e-5f64.sqrt())).abs() < 1e-6);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, AdadeltaRule { rho: 0.9, eps: 1e-6, weight_decay: 0.0 })
    }
}

builder!(Adadelta, AdadeltaRule { rho: f64 = 0.95, eps: f64 = 1e-8, weight_decay: f64 = 1e-4 });

impl UpdateRule for AdadeltaRule {
    const NAME: &'static str = "Adadelta";
    fn buffers(&self) -> &'static [&'static str] {
        &["square_avg", "acc_delta"]
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let AdadeltaRule { rho, eps, weight_decay } = self;
        vec![
            ("rho", format!("{rho:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
        ]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(
        &self,
        lr: f64,
        _step: u64,
        p: &mut [T],
        g: &[T],
        state: &mut [&mut [T]],
    ) {
        let (lr, rho, eps, wd) =
            (c::<T>(lr), c::<T>(self.rho), c::<T>(self.eps), c::<T>(self.weight_decay));
        let [square_avg, acc_delta] = state else { unreachable!("two buffers") };
        for i in 0..p.len() {
            let d = if self.weight_decay != 0.0 { g[i] + wd * p[i] } else { g[i] };
            square_avg[i] = square_avg[i] * rho + (T::ONE - rho) * d * d;
            let std = (square_avg[i] + eps).sqrt();
            let delta = (acc_delta[i] + eps).sqrt() / std * d;
            acc_delta[i] = acc_delta[i] * rho + (T::ONE - rho) * delta * delta;
            p[i] = p[i] - lr * delta;
        }
    }
}

/// Settings of [`RMSprop`].
///
/// ```
/// use tapegrad_nn::{RMSprop, UpdateRule};
/// let rule = RMSprop::new(vec![], 0.01).rule().clone();
/// assert_eq!((rule.alpha, rule.eps, rule.momentum, rule.centered), (0.99, 1e-8, 0.0, false));
/// assert_eq!(rule.buffers(), ["square_avg"]); // grad_avg only if centered, momentum_buffer only with momentum
/// ```
#[derive(Clone, Debug)]
pub struct RmspropRule {
    /// Decay of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator (PyTorch: 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor (0 disables it).
    pub momentum: f64,
    /// Normalise by the variance estimate instead of the raw second moment.
    pub centered: bool,
}

/// RMSprop: PyTorch's `torch.optim.RMSprop`.
///
/// ```
/// use tapegrad_nn::RMSprop;
/// let opt = RMSprop::new(vec![], 0.01).centered(true).momentum(0.5);
/// assert!(opt.rule().centered);
/// ```
pub type RMSprop = Optim<RmspropRule>;

impl RMSprop {
    /// RMSprop with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, RMSprop};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 2.0).backward();
    /// let mut opt = RMSprop::new(vec![w.clone()], 0.01);
    /// opt.step(); // g / sqrt((1 - alpha) g^2) = 10: a first step of 10 lr
    /// assert!((w.item() - 0.9).abs() < 1e-5);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(
            params,
            lr,
            RmspropRule {
                alpha: 0.99,
                eps: 1e-8,
                weight_decay: 0.0,
                momentum: 0.0,
                centered: false,
            },
        )
    }
}

builder!(
    RMSprop,
    RmspropRule {
        alpha: f64 = 0.9,
        eps: f64 = 1e-6,
        weight_decay: f64 = 1e-4,
        momentum: f64 = 0.5,
        centered: bool = true
    }
);

impl UpdateRule for RmspropRule {
    const NAME: &'static str = "RMSprop";
    fn buffers(&self) -> &'static [&'static str] {
        match (self.centered, self.momentum > 0.0) {
            (false, false) => &["square_avg"],
            (true, false) => &["square_avg", "grad_avg"],
            (false, true) => &["square_avg", "momentum_buffer"],
            (true, true) => &["square_avg", "grad_avg", "momentum_buffer"],
        }
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let RmspropRule { alpha, eps, weight_decay, momentum, centered } = self;
        vec![
            ("alpha", format!("{alpha:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("momentum", format!("{momentum:?}")),
            ("centered", format!("{centered:?}")),
        ]
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }
    fn moved_buffers(&self) -> &'static [&'static str] {
        if self.centered {
            &["square_avg", "grad_avg", "momentum_buffer"]
        } else {
            &["square_avg", "momentum_buffer"]
        }
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(
        &self,
        lr: f64,
        _step: u64,
        p: &mut [T],
        g: &[T],
        state: &mut [&mut [T]],
    ) {
        let (lr, alpha, eps, wd, mom) = (
            c::<T>(lr),
            c::<T>(self.alpha),
            c::<T>(self.eps),
            c::<T>(self.weight_decay),
            c::<T>(self.momentum),
        );
        // The buffers the settings use, in `buffers()` order; an unused one is empty and the
        // loop never reads it.
        let (square_avg, grad_avg, buf): (&mut [T], &mut [T], &mut [T]) =
            match (state, self.centered) {
                ([square_avg], _) => (square_avg, &mut [], &mut []),
                ([square_avg, grad_avg], true) => (square_avg, grad_avg, &mut []),
                ([square_avg, buf], false) => (square_avg, &mut [], buf),
                ([square_avg, grad_avg, buf], _) => (square_avg, grad_avg, buf),
                _ => unreachable!("RMSprop keeps one to three buffers"),
            };
        for i in 0..p.len() {
            let d = if self.weight_decay != 0.0 { g[i] + wd * p[i] } else { g[i] };
            square_avg[i] = square_avg[i] * alpha + (T::ONE - alpha) * d * d;
            let avg = if self.centered {
                grad_avg[i] = lerp(grad_avg[i], d, T::ONE - alpha);
                (square_avg[i] - grad_avg[i] * grad_avg[i]).sqrt() + eps
            } else {
                square_avg[i].sqrt() + eps
            };
            if self.momentum > 0.0 {
                buf[i] = buf[i] * mom + d / avg;
                p[i] = p[i] - lr * buf[i];
            } else {
                p[i] = p[i] - lr * (d / avg);
            }
        }
    }
}

/// Settings of [`Adam`] and [`AdamW`].
///
/// ```
/// use tapegrad_nn::{Adam, AdamW, UpdateRule};
/// let (adam, adamw) = (Adam::new(vec![], 1e-3), AdamW::new(vec![], 1e-3));
/// assert_eq!((adam.rule().decoupled, adamw.rule().decoupled), (false, true));
/// assert_eq!(adam.rule().buffers(), ["exp_avg", "exp_avg_sq"]); // max_exp_avg_sq only with amsgrad
/// ```
#[derive(Clone, Debug)]
pub struct AdamRule {
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator (PyTorch: 1e-8).
    pub eps: f64,
    /// L2 penalty (Adam: added to the gradient; AdamW: decoupled, applied to the weights).
    pub weight_decay: f64,
    /// Use the maximum of past second moments (AMSGrad).
    pub amsgrad: bool,
    /// Decoupled weight decay (AdamW) instead of an L2 term in the gradient.
    pub decoupled: bool,
}

/// Adam: PyTorch's `torch.optim.Adam`.
///
/// ```
/// use tapegrad_nn::Adam;
/// let opt = Adam::new(vec![], 1e-3).amsgrad(true);
/// assert_eq!(opt.rule().betas, (0.9, 0.999));
/// ```
pub type Adam = Optim<AdamRule>;

/// AdamW (decoupled weight decay, default 0.01): PyTorch's `torch.optim.AdamW`.
///
/// ```
/// use tapegrad_nn::AdamW;
/// let opt = AdamW::new(vec![], 1e-3);
/// assert_eq!((opt.rule().weight_decay, opt.rule().decoupled), (0.01, true));
/// ```
pub type AdamW = Optim<AdamWRule>;

/// Settings of [`AdamW`]: Adam's, with the weight decay decoupled from the gradient. Its
/// own type so that `AdamW::new` cannot make an Adam; reads and writes go to the
/// [`AdamRule`] inside.
///
/// ```
/// use tapegrad_nn::{AdamW, UpdateRule};
/// let opt = AdamW::new(vec![], 1e-3).betas((0.8, 0.9));
/// assert_eq!((opt.rule().betas, opt.rule().kind()), ((0.8, 0.9), "AdamW"));
/// ```
#[derive(Clone, Debug)]
pub struct AdamWRule(pub AdamRule);

impl std::ops::Deref for AdamWRule {
    type Target = AdamRule;
    fn deref(&self) -> &AdamRule {
        &self.0
    }
}

impl std::ops::DerefMut for AdamWRule {
    fn deref_mut(&mut self) -> &mut AdamRule {
        &mut self.0
    }
}

impl UpdateRule for AdamWRule {
    const NAME: &'static str = "AdamW";
    fn buffers(&self) -> &'static [&'static str] {
        self.0.buffers()
    }
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        self.0.settings()
    }
    fn momentum(&self) -> Option<f64> {
        self.0.momentum()
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.0.set_momentum(momentum);
    }
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        self.0.update(lr, step, p, g, state)
    }
}

impl AdamW {
    /// AdamW with learning rate `lr` and PyTorch's default weight decay of 0.01.
    ///
    /// ```
    /// use tapegrad_nn::{AdamW, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 0.0).backward(); // a zero gradient
    /// let mut opt = AdamW::new(vec![w.clone()], 0.1);
    /// opt.step(); // the decoupled decay still shrinks the weight: w (1 - lr 0.01)
    /// assert!((w.item() - 0.999).abs() < 1e-6);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        let mut rule = Adam::new(vec![], lr).rule().clone();
        rule.decoupled = true;
        rule.weight_decay = 0.01;
        Optim::with_rule(params, lr, AdamWRule(rule))
    }
}

builder!(
    AdamW,
    AdamWRule {
        betas: (f64, f64) = (0.8, 0.99),
        eps: f64 = 1e-6,
        weight_decay: f64 = 1e-4,
        amsgrad: bool = true
    }
);

impl Adam {
    /// Adam with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// (&w * &Tensor::from_vec(vec![5.0f32, -0.5], &[2])).sum_to_shape(&[]).backward();
    /// let mut opt = Adam::new(vec![w.clone()], 0.1);
    /// opt.step(); // bias-corrected: the first step is lr against the gradient's sign
    /// let w = w.to_vec::<f32>();
    /// assert!((w[0] - 0.9).abs() < 1e-5 && (w[1] - 1.1).abs() < 1e-5);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(
            params,
            lr,
            AdamRule {
                betas: (0.9, 0.999),
                eps: 1e-8,
                weight_decay: 0.0,
                amsgrad: false,
                decoupled: false,
            },
        )
    }
}

builder!(
    Adam,
    AdamRule {
        betas: (f64, f64) = (0.8, 0.99),
        eps: f64 = 1e-6,
        weight_decay: f64 = 1e-4,
        amsgrad: bool = true
    }
);

impl UpdateRule for AdamRule {
    const NAME: &'static str = "Adam";
    fn buffers(&self) -> &'static [&'static str] {
        if self.amsgrad {
            &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        } else {
            &["exp_avg", "exp_avg_sq"]
        }
    }
    fn kind(&self) -> &'static str {
        if self.decoupled { "AdamW" } else { "Adam" }
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let AdamRule { betas, eps, weight_decay, amsgrad, decoupled: _ } = self;
        vec![
            ("betas", format!("{betas:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("amsgrad", format!("{amsgrad:?}")),
        ]
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.betas.0 = momentum;
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(step as i32);
        let bias2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
        let step_size = c::<T>(lr / bias1);
        let (one_minus_b1, b2t, eps, wd) =
            (c::<T>(1.0 - b1), c::<T>(b2), c::<T>(self.eps), c::<T>(self.weight_decay));
        let bias2_sqrt = c::<T>(bias2_sqrt);
        let decay = c::<T>(1.0 - lr * self.weight_decay);
        let (m, v, vmax): (&mut [T], &mut [T], &mut [T]) = match state {
            [m, v] => (m, v, &mut []),
            [m, v, vmax] => (m, v, vmax),
            _ => unreachable!("Adam keeps two or three buffers"),
        };
        // The branches are decided once per parameter, so each loop below is a straight
        // pass over slices that the compiler vectorises.
        if self.weight_decay != 0.0 && self.decoupled {
            p.iter_mut().for_each(|w| *w = *w * decay);
        }
        let coupled = self.weight_decay != 0.0 && !self.decoupled;
        let lerp_low = (1.0 - b1) < 0.5;
        for (((w, &g0), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let d = if coupled { g0 + wd * *w } else { g0 };
            *mi = if lerp_low {
                *mi + one_minus_b1 * (d - *mi)
            } else {
                d - (d - *mi) * (T::ONE - one_minus_b1)
            };
            *vi = *vi * b2t + (T::ONE - b2t) * d * d;
        }
        if self.amsgrad {
            for (vm, &vi) in vmax.iter_mut().zip(v.iter()) {
                *vm = vm.max_nan(vi);
            }
        }
        let second: &[T] = if self.amsgrad { vmax } else { v };
        for ((w, &mi), &si) in p.iter_mut().zip(m.iter()).zip(second) {
            *w = *w - step_size * (mi / (si.sqrt() / bias2_sqrt + eps));
        }
    }
}

/// Clips the total 2-norm of the parameters' gradients to `max_norm` (PyTorch's
/// `clip_grad_norm_`) and returns the norm before clipping.
///
/// ```
/// use tapegrad_nn::clip_grad_norm;
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[4]).requires_grad();
/// (&w * 3.0).sum_to_shape(&[]).backward(); // gradient norm 6
/// assert_eq!(clip_grad_norm(&[w.clone()], 1.5), 6.0);
/// // Scaled by max_norm / (norm + 1e-6), as PyTorch does.
/// assert!(w.grad().unwrap().to_vec::<f32>().iter().all(|g| (g - 0.75).abs() < 1e-6));
/// ```
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    let grads: Vec<Tensor> = params.iter().filter_map(|p| p.grad()).collect();
    // Squares summed in f64 straight from the storage (no converted copy of each gradient).
    let squares = |g: &Tensor| match &g.contiguous_storage() {
        Storage::F32(v) => v.iter().map(|&x| x as f64 * x as f64).sum::<f64>(),
        Storage::F64(v) => v.iter().map(|&x| x * x).sum::<f64>(),
        Storage::I64(_) | Storage::Bool(_) => unreachable!("gradients are float"),
    };
    let total: f64 = grads.iter().map(squares).sum::<f64>().sqrt();
    let scale = max_norm / (total + 1e-6);
    if scale < 1.0 {
        for g in &grads {
            g.set_data(&g.mul_scalar(scale).detach());
        }
    }
    total
}

/// Clamps every gradient element to `[-clip, clip]` (PyTorch's `clip_grad_value_`).
///
/// ```
/// use tapegrad_nn::clip_grad_value;
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[2]).requires_grad();
/// (&w * 3.0).sum_to_shape(&[]).backward();
/// clip_grad_value(&[w.clone()], 1.0);
/// assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![1.0, 1.0]);
/// ```
pub fn clip_grad_value(params: &[Tensor], clip: f64) {
    for g in params.iter().filter_map(|p| p.grad()) {
        let clipped: Vec<f64> = g.to_vec::<f64>().iter().map(|v| v.clamp(-clip, clip)).collect();
        g.set_data(&Tensor::from_vec(clipped, g.shape()).to_dtype(g.dtype()));
    }
}

mod variants;
pub use variants::{Adamax, AdamaxRule, NAdam, NAdamRule, RAdam, RAdamRule};
