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
///     fn buffers(&self) -> &'static [&'static str] { &[] }
///     fn update<T: Element>(&self, lr: f64, _step: u64, p: &mut [T], g: &[T], _state: &mut [&mut [T]]) {
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

    /// Names of the per-parameter state buffers, each shaped like the parameter.
    ///
    /// ```
    /// use tapegrad_nn::{Adam, UpdateRule};
    /// let opt = Adam::new(vec![], 1e-3);
    /// assert_eq!(opt.rule().buffers(), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    /// ```
    fn buffers(&self) -> &'static [&'static str];

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
    buffers: Buffers,
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
    /// over parameters of the same shapes.
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
        Optim { groups: vec![ParamGroup { params, lr }], rule, state: HashMap::new() }
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
    let buffers = pick(&mut state.buffers);
    // Below this many elements the update stays on the calling thread.
    const CHUNK: usize = 1 << 15;
    if p.len() < 2 * CHUNK || rayon::current_num_threads() < 2 {
        let mut views: Vec<&mut [T]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
        update_widest(rule, lr, step, p, g, &mut views);
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
    tasks.into_par_iter().for_each(|(p, g, mut state)| update_widest(rule, lr, step, p, g, &mut state));
}

/// `rule.update` compiled for the widest vectors this CPU has. The release build targets
/// baseline x86-64 (4 f32 lanes); the AVX-512 copy handles 16 at a time and, with no
/// floating-point contraction in Rust, rounds exactly as the baseline copy does.
fn update_widest<T: Element>(rule: &impl UpdateRule, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { update_avx512(rule, lr, step, p, g, state) };
    }
    rule.update(lr, step, p, g, state)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512<T: Element>(
    rule: &impl UpdateRule,
    lr: f64,
    step: u64,
    p: &mut [T],
    g: &[T],
    state: &mut [&mut [T]],
) {
    rule.update(lr, step, p, g, state)
}

impl<R: UpdateRule> Optimizer for Optim<R> {
    #[track_caller]
    fn step(&mut self) {
        let Optim { groups, rule, state } = self;
        for (gi, group) in groups.iter().enumerate() {
            for (pi, param) in group.params.iter().enumerate() {
                let Some(grad) = param.grad() else { continue };
                let grad = grad.contiguous_storage();
                let n = param.numel();
                let entry = state.entry((gi, pi)).or_insert_with(|| ParamState {
                    step: 0,
                    buffers: match param.dtype() {
                        DType::F64 => Buffers::F64(vec![vec![0.0; n]; rule.buffers().len()]),
                        _ => Buffers::F32(vec![vec![0.0; n]; rule.buffers().len()]),
                    },
                });
                let lr = group.lr;
                // Checked here rather than in the closure below, so that a panic names the
                // caller's line.
                assert!(
                    param.layout().is_contiguous(),
                    "{}: parameter {pi} of group {gi} is a non-contiguous view; pass a contiguous tensor",
                    R::NAME
                );
                let same_dtype = matches!(
                    (param.dtype(), grad.dtype(), &entry.buffers),
                    (DType::F32, DType::F32, Buffers::F32(_)) | (DType::F64, DType::F64, Buffers::F64(_))
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
        }
        let mut keys: Vec<_> = self.state.keys().copied().collect();
        keys.sort();
        for (gi, pi) in keys {
            let s = &self.state[&(gi, pi)];
            let shape = self.groups[gi].params[pi].shape().to_vec();
            out.push((format!("state.{gi}.{pi}.step"), Tensor::from_vec(vec![s.step as f64], &[])));
            for (bi, name) in self.rule.buffers().iter().enumerate() {
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
        let find = |name: &str| entries.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let bad = |message: String| tapegrad_tape::Error::Format { path: format!("{} state", R::NAME), message };
        let mut state = HashMap::new();
        let mut lrs = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            for (pi, param) in group.params.iter().enumerate() {
                let Some(step) = find(&format!("state.{gi}.{pi}.step")) else { continue };
                let mut f32s = Vec::new();
                let mut f64s = Vec::new();
                for name in self.rule.buffers() {
                    let key = format!("state.{gi}.{pi}.{name}");
                    let t = find(&key).ok_or_else(|| bad(format!("missing entry {key}")))?;
                    if t.shape() != param.shape() {
                        return Err(bad(format!(
                            "{key} has shape {:?}, but parameter {gi}.{pi} has shape {:?}",
                            t.shape(),
                            param.shape()
                        )));
                    }
                    f32s.push(t.to_vec::<f32>());
                    f64s.push(t.to_vec::<f64>());
                }
                let buffers = if param.dtype() == DType::F64 { Buffers::F64(f64s) } else { Buffers::F32(f32s) };
                state.insert((gi, pi), ParamState { step: step.item() as u64, buffers });
            }
            if let Some(lr) = find(&format!("param_groups.{gi}.lr")) {
                lrs.push((gi, lr.item()));
            }
        }
        for (gi, lr) in lrs {
            self.groups[gi].lr = lr;
        }
        self.state = state;
        Ok(())
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
    if weight.to_f64() < 0.5 { start + weight * (end - start) } else { end - (end - start) * (T::ONE - weight) }
}

/// Setters for the fields of `$rule`, each documented with an example that builds a `$opt`
/// with the sample value after `=` and reads it back.
macro_rules! builder {
    ($opt:ident, $rule:ident { $($field:ident: $ty:ty = $sample:expr),* $(,)? }) => {
        impl Optim<$rule> {
            $(
                #[doc = concat!("Sets `", stringify!($field), "` (PyTorch's keyword of the same name).")]
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
/// assert_eq!(rule.buffers(), ["momentum_buffer"]);
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
/// decay: PyTorch's `torch.optim.SGD` (first step initialises the momentum buffer to the
/// gradient).
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

builder!(SGD, SgdRule { momentum: f64 = 0.9, dampening: f64 = 0.1, nesterov: bool = true, weight_decay: f64 = 1e-4 });

impl UpdateRule for SgdRule {
    const NAME: &'static str = "SGD";
    fn buffers(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (lr, wd, mom, damp) =
            (c::<T>(lr), c::<T>(self.weight_decay), c::<T>(self.momentum), c::<T>(self.dampening));
        let buf = &mut state[0];
        for i in 0..p.len() {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d += wd * p[i];
            }
            if self.momentum != 0.0 {
                buf[i] = if step == 1 { d } else { mom * buf[i] + (T::ONE - damp) * d };
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
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, _step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (lr, rho, eps, wd) = (c::<T>(lr), c::<T>(self.rho), c::<T>(self.eps), c::<T>(self.weight_decay));
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
/// assert_eq!(rule.buffers(), ["square_avg", "grad_avg", "momentum_buffer"]);
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
            RmspropRule { alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false },
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
        &["square_avg", "grad_avg", "momentum_buffer"]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, _step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (lr, alpha, eps, wd, mom) =
            (c::<T>(lr), c::<T>(self.alpha), c::<T>(self.eps), c::<T>(self.weight_decay), c::<T>(self.momentum));
        let [square_avg, grad_avg, buf] = state else { unreachable!("three buffers") };
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
/// let (adam, adamw) = (Adam::new(vec![], 1e-3), AdamW::new_w(vec![], 1e-3));
/// assert_eq!((adam.rule().decoupled, adamw.rule().decoupled), (false, true));
/// assert_eq!(adam.rule().buffers(), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
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

/// AdamW (decoupled weight decay, default 0.01): PyTorch's `torch.optim.AdamW`. The same
/// type as [`Adam`], made by [`AdamW::new_w`].
///
/// ```
/// use tapegrad_nn::AdamW;
/// let opt = AdamW::new_w(vec![], 1e-3);
/// assert_eq!(opt.rule().weight_decay, 0.01);
/// ```
pub type AdamW = Optim<AdamRule>;

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
            AdamRule { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false, decoupled: false },
        )
    }

    /// AdamW with learning rate `lr` and PyTorch's default weight decay of 0.01.
    ///
    /// ```
    /// use tapegrad_nn::{AdamW, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[1]).requires_grad();
    /// (&w * 0.0).backward(); // a zero gradient
    /// let mut opt = AdamW::new_w(vec![w.clone()], 0.1);
    /// opt.step(); // the decoupled decay still shrinks the weight: w (1 - lr 0.01)
    /// assert!((w.item() - 0.999).abs() < 1e-6);
    /// ```
    pub fn new_w(params: Vec<Tensor>, lr: f64) -> Self {
        let mut opt = Adam::new(params, lr);
        opt.rule.decoupled = true;
        opt.rule.weight_decay = 0.01;
        opt
    }
}

builder!(
    Adam,
    AdamRule { betas: (f64, f64) = (0.8, 0.99), eps: f64 = 1e-6, weight_decay: f64 = 1e-4, amsgrad: bool = true }
);

impl UpdateRule for AdamRule {
    const NAME: &'static str = "Adam";
    fn buffers(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    }
    // Always inlined, so that `update_widest` compiles it once per vector width.
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (b1, b2) = self.betas;
        let bias1 = 1.0 - b1.powi(step as i32);
        let bias2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
        let step_size = c::<T>(lr / bias1);
        let (one_minus_b1, b2t, eps, wd) = (c::<T>(1.0 - b1), c::<T>(b2), c::<T>(self.eps), c::<T>(self.weight_decay));
        let bias2_sqrt = c::<T>(bias2_sqrt);
        let decay = c::<T>(1.0 - lr * self.weight_decay);
        let [m, v, vmax] = state else { unreachable!("three buffers") };
        // The branches are decided once per parameter, so each loop below is a straight
        // pass over slices that the compiler vectorises.
        if self.weight_decay != 0.0 && self.decoupled {
            p.iter_mut().for_each(|w| *w = *w * decay);
        }
        let coupled = self.weight_decay != 0.0 && !self.decoupled;
        let lerp_low = (1.0 - b1) < 0.5;
        for (((w, &g0), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let d = if coupled { g0 + wd * *w } else { g0 };
            *mi = if lerp_low { *mi + one_minus_b1 * (d - *mi) } else { d - (d - *mi) * (T::ONE - one_minus_b1) };
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
    let total: f64 = grads.iter().map(|g| g.to_vec::<f64>().iter().map(|v| v * v).sum::<f64>()).sum::<f64>().sqrt();
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
