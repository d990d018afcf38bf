//! Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`): each computes the rate
//! for an epoch from the base rate, and `step` moves to the next epoch and sets it on an
//! optimizer. Their state (the epoch and the settings) saves and restores like an
//! optimizer's ([`SchedulerState`]), so that a checkpoint resumes the schedule where it
//! stopped.

use std::f64::consts::PI;

use tapegrad_tape::{Error, Result};

use crate::Optimizer;

/// A learning-rate schedule.
///
/// ```
/// use tapegrad_nn::{LrScheduler, Optimizer, SGD, StepLR};
/// let mut opt = SGD::new(vec![], 0.1);
/// let mut sched = StepLR::new(0.1, 2, 0.5);
/// for _ in 0..2 {
///     sched.step(&mut opt);
/// }
/// assert_eq!(opt.param_groups()[0].lr, 0.05);
/// ```
pub trait LrScheduler: SchedulerState {
    /// The rate at `epoch` (0-based).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, StepLR};
    /// let sched = StepLR::new(1.0, 3, 0.5);
    /// assert_eq!((sched.lr_at(2), sched.lr_at(3), sched.lr_at(6)), (1.0, 0.5, 0.25));
    /// ```
    fn lr_at(&self, epoch: usize) -> f64;

    /// The current epoch.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, SGD, StepLR};
    /// let (mut opt, mut sched) = (SGD::new(vec![], 0.1), StepLR::new(0.1, 1, 0.5));
    /// assert_eq!(sched.epoch(), 0);
    /// sched.step(&mut opt);
    /// assert_eq!(sched.epoch(), 1);
    /// ```
    fn epoch(&self) -> usize;

    /// Advances to the next epoch and sets its rate on `optimizer`.
    ///
    /// ```
    /// use tapegrad_nn::{ExponentialLR, LrScheduler, Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut sched = ExponentialLR::new(1.0, 0.5);
    /// sched.step(&mut opt);
    /// assert_eq!((sched.epoch(), opt.param_groups()[0].lr), (1, 0.5));
    /// ```
    fn step(&mut self, optimizer: &mut dyn Optimizer);

    /// The current rate.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, SGD, StepLR};
    /// let mut sched = StepLR::new(0.1, 1, 0.5);
    /// assert_eq!(sched.lr(), 0.1);
    /// sched.step(&mut SGD::new(vec![], 0.1));
    /// assert_eq!(sched.lr(), 0.05);
    /// ```
    fn lr(&self) -> f64 {
        self.lr_at(self.epoch())
    }

    /// The momentum at `epoch` for a schedule that cycles it ([`OneCycleLR`],
    /// [`CyclicLR`]); `None` (the default) for a schedule that leaves momentum alone.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR, StepLR};
    /// assert!((OneCycleLR::new(0.1, 100).momentum_at(0).unwrap() - 0.95).abs() < 1e-15);
    /// assert_eq!(StepLR::new(0.1, 2, 0.5).momentum_at(0), None);
    /// ```
    fn momentum_at(&self, epoch: usize) -> Option<f64> {
        let _ = epoch;
        None
    }

    /// Sets the current epoch's rate, and momentum if the schedule cycles it, on
    /// `optimizer`. PyTorch's schedulers do this when they are made; call it once before
    /// the first step of a schedule that does not start at the optimizer's rate.
    ///
    /// # Panics
    /// If the schedule sets a momentum and the optimizer has none (see
    /// [`Optimizer::set_momentum`]).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR, Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 0.1).momentum(0.9);
    /// let sched = OneCycleLR::new(0.1, 100);
    /// sched.apply(&mut opt);
    /// assert!((opt.param_groups()[0].lr - 0.1 / 25.0).abs() < 1e-15); // max_lr / div_factor
    /// assert!((opt.current_momentum().unwrap() - 0.95).abs() < 1e-15); // max_momentum
    /// ```
    #[track_caller]
    fn apply(&self, optimizer: &mut dyn Optimizer) {
        optimizer.set_lr(self.lr());
        if let Some(momentum) = self.momentum_at(self.epoch()) {
            optimizer.set_momentum(momentum);
        }
    }
}

/// What a checkpoint saves of a schedule: its kind and its state as (name, value) pairs.
/// Every [`LrScheduler`] has it, and so does [`ReduceLROnPlateau`], which is driven by a
/// metric rather than by the epoch.
///
/// ```
/// use tapegrad_nn::{ReduceLROnPlateau, SchedulerState, StepLR};
/// let schedules: Vec<Box<dyn SchedulerState>> =
///     vec![Box::new(StepLR::new(0.1, 2, 0.5)), Box::new(ReduceLROnPlateau::new())];
/// assert_eq!(schedules[1].kind(), "ReduceLROnPlateau");
/// ```
pub trait SchedulerState {
    /// The scheduler's PyTorch class name, which a checkpoint records so that resuming into
    /// another kind of schedule is an error. The default is the Rust type's name.
    ///
    /// ```
    /// use tapegrad_nn::{SchedulerState, StepLR};
    /// assert_eq!(StepLR::new(0.1, 2, 0.5).kind(), "StepLR");
    /// ```
    fn kind(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The state as (name, value) pairs with PyTorch's names: `last_epoch` (the epoch
    /// counter) and every setting the rate depends on (`base_lr`, `gamma`, `step_size`,
    /// `T_max`, ...). Counts are whole numbers, exact up to 2^53.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, SGD, SchedulerState, StepLR};
    /// let mut sched = StepLR::new(0.1, 2, 0.5);
    /// sched.step(&mut SGD::new(vec![], 0.1));
    /// let state = sched.state_dict();
    /// assert_eq!(state[0], ("last_epoch".to_string(), 1.0));
    /// assert!(state.contains(&("gamma".to_string(), 0.5)));
    /// ```
    fn state_dict(&self) -> Vec<(String, f64)>;

    /// Restores a state from [`SchedulerState::state_dict`], all or nothing: every name must
    /// be present, none unknown, counts whole and in range, rates finite; on an error the
    /// scheduler is unchanged. As in PyTorch, the settings come back with the epoch. The
    /// optimizer's learning rate is part of the optimizer's state, not this one.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, SGD, SchedulerState, StepLR};
    /// let mut sched = StepLR::new(0.1, 2, 0.5);
    /// for _ in 0..3 {
    ///     sched.step(&mut SGD::new(vec![], 0.1));
    /// }
    /// let mut resumed = StepLR::new(0.1, 2, 0.5);
    /// resumed.load_state_dict(&sched.state_dict()).unwrap();
    /// assert_eq!((resumed.epoch(), resumed.lr()), (3, 0.05));
    /// let err = resumed.load_state_dict(&[("last_epoch".into(), 1.5)]).unwrap_err();
    /// assert!(err.to_string().contains("last_epoch"));
    /// assert_eq!(resumed.epoch(), 3); // unchanged
    /// ```
    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()>;

    /// Checks that [`SchedulerState::load_state_dict`] would accept `state`, changing nothing,
    /// so that a [`Checkpoint`](crate::Checkpoint) can check every part before it restores
    /// any. The default accepts everything.
    ///
    /// ```
    /// use tapegrad_nn::{ExponentialLR, SchedulerState};
    /// let sched = ExponentialLR::new(0.1, 0.9);
    /// assert!(sched.check_state_dict(&sched.state_dict()).is_ok());
    /// assert!(sched.check_state_dict(&[]).is_err()); // missing entries
    /// ```
    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// A scheduler setting's type in a state dict: a rate, or a count (`usize`).
trait Setting: Copy {
    /// `None` for a rate (any finite value), the least allowed value for a count.
    const COUNT: Option<usize>;
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
}

impl Setting for f64 {
    const COUNT: Option<usize> = None;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(value: f64) -> Self {
        value
    }
}

impl Setting for usize {
    const COUNT: Option<usize> = Some(0);
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(value: f64) -> Self {
        value as usize
    }
}

/// Checks a scheduler's state against `spec` (each entry's name and, for counts, its least
/// value) and returns the values in `spec`'s order.
fn read_state(
    kind: &str,
    state: &[(String, f64)],
    spec: &[(&str, Option<usize>)],
) -> Result<Vec<f64>> {
    let bad = |message: String| Error::Format { path: format!("{kind} state"), message };
    let mut values: Vec<Option<f64>> = vec![None; spec.len()];
    for (name, value) in state {
        let Some(i) = spec.iter().position(|(n, _)| n == name) else {
            let known: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            return Err(bad(format!(
                "unexpected entry `{name}`; {kind} keeps {}",
                known.join(", ")
            )));
        };
        if values[i].is_some() {
            return Err(bad(format!("entry `{name}` appears twice")));
        }
        let ok = match spec[i].1 {
            None => value.is_finite(),
            // Whole, in range, and exact as an f64.
            Some(least) => {
                value.fract() == 0.0 && *value >= least as f64 && *value <= (1u64 << 53) as f64
            }
        };
        if !ok {
            let expected = match spec[i].1 {
                None => "a finite number".to_string(),
                Some(least) => format!("a whole number, at least {least}"),
            };
            return Err(bad(format!("entry `{name}` is {value}; expected {expected}")));
        }
        values[i] = Some(*value);
    }
    values
        .into_iter()
        .zip(spec)
        .map(|(v, (name, _))| v.ok_or_else(|| bad(format!("missing entry `{name}`"))))
        .collect()
}

/// Implements [`LrScheduler`] for a schedule with an `epoch` counter, a `rate(epoch)`
/// method, and the listed settings: each PyTorch name, its field, and for a count at
/// least 1, `>= 1`.
macro_rules! scheduler {
    ($name:ident { $($key:literal: $field:ident $(>= $least:literal)?),* $(,)? }) => {
        impl $name {
            /// The state dict's names and what each may hold (see [`read_state`]).
            fn spec(&self) -> Vec<(&'static str, Option<usize>)> {
                vec![("last_epoch", Some(0)), $(($key, least(&self.$field, None $(.or(Some($least)))?))),*]
            }
        }

        impl LrScheduler for $name {
            fn lr_at(&self, epoch: usize) -> f64 {
                self.rate(epoch)
            }
            fn epoch(&self) -> usize {
                self.epoch
            }
            fn step(&mut self, optimizer: &mut dyn Optimizer) {
                self.epoch += 1;
                optimizer.set_lr(self.rate(self.epoch));
            }
        }

        impl SchedulerState for $name {
            fn kind(&self) -> &'static str {
                stringify!($name)
            }
            fn state_dict(&self) -> Vec<(String, f64)> {
                vec![("last_epoch".to_string(), self.epoch as f64), $(($key.to_string(), self.$field.to_f64())),*]
            }
            fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
                let values = read_state(stringify!($name), state, &self.spec())?;
                let mut values = values.into_iter();
                let mut next = || values.next().expect("one value per spec entry");
                self.epoch = Setting::from_f64(next());
                $(self.$field = Setting::from_f64(next());)*
                Ok(())
            }
            fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
                read_state(stringify!($name), state, &self.spec()).map(drop)
            }
        }
    };
}

/// What a setting of `field`'s type may hold: any finite rate, or a count of at least
/// `least` (0 unless given).
fn least<T: Setting>(_field: &T, least: Option<usize>) -> Option<usize> {
    T::COUNT.map(|zero| least.unwrap_or(zero))
}

/// Multiplies the rate by `gamma` every `step_size` epochs.
///
/// ```
/// use tapegrad_nn::{LrScheduler, StepLR};
/// assert_eq!(StepLR::new(0.1, 7, 0.5).lr_at(7), 0.05);
/// ```
pub struct StepLR {
    base: f64,
    step_size: usize,
    gamma: f64,
    epoch: usize,
}

impl StepLR {
    /// A schedule from `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, Optimizer, SGD, StepLR};
    /// let mut opt = SGD::new(vec![], 0.1);
    /// let mut sched = StepLR::new(0.1, 2, 0.5);
    /// let mut lrs = vec![sched.lr()];
    /// for _ in 0..4 {
    ///     sched.step(&mut opt);
    ///     lrs.push(opt.param_groups()[0].lr);
    /// }
    /// assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]); // halved every 2 epochs
    /// ```
    pub fn new(base_lr: f64, step_size: usize, gamma: f64) -> Self {
        StepLR { base: base_lr, step_size: step_size.max(1), gamma, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        self.base * self.gamma.powi((epoch / self.step_size) as i32)
    }
}
scheduler!(StepLR { "base_lr": base, "step_size": step_size >= 1, "gamma": gamma });

/// Multiplies the rate by `gamma` every epoch.
///
/// ```
/// use tapegrad_nn::{ExponentialLR, LrScheduler};
/// assert!((ExponentialLR::new(0.1, 0.9).lr_at(2) - 0.081).abs() < 1e-15);
/// ```
pub struct ExponentialLR {
    base: f64,
    gamma: f64,
    epoch: usize,
}

impl ExponentialLR {
    /// A schedule from `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{ExponentialLR, LrScheduler};
    /// let sched = ExponentialLR::new(0.1, 0.5);
    /// assert_eq!((0..4).map(|e| sched.lr_at(e)).collect::<Vec<_>>(), [0.1, 0.05, 0.025, 0.0125]);
    /// ```
    pub fn new(base_lr: f64, gamma: f64) -> Self {
        ExponentialLR { base: base_lr, gamma, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        self.base * self.gamma.powi(epoch as i32)
    }
}
scheduler!(ExponentialLR { "base_lr": base, "gamma": gamma });

/// Cosine annealing from the base rate to `eta_min` over `t_max` epochs, then back up
/// (PyTorch's `CosineAnnealingLR` without restarts).
///
/// ```
/// use tapegrad_nn::{CosineAnnealingLR, LrScheduler};
/// let s = CosineAnnealingLR::new(0.1, 10, 0.001);
/// assert!((s.lr_at(10) - 0.001).abs() < 1e-15);
/// ```
pub struct CosineAnnealingLR {
    base: f64,
    t_max: usize,
    eta_min: f64,
    epoch: usize,
}

impl CosineAnnealingLR {
    /// A schedule from `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{CosineAnnealingLR, LrScheduler};
    /// let sched = CosineAnnealingLR::new(0.1, 10, 0.0);
    /// assert_eq!(sched.lr_at(0), 0.1);
    /// assert!((sched.lr_at(5) - 0.05).abs() < 1e-12); // halfway down at t_max / 2
    /// assert!((sched.lr_at(20) - 0.1).abs() < 1e-12); // and back up after 2 t_max
    /// ```
    pub fn new(base_lr: f64, t_max: usize, eta_min: f64) -> Self {
        CosineAnnealingLR { base: base_lr, t_max: t_max.max(1), eta_min, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        self.eta_min
            + (self.base - self.eta_min) * (1.0 + (PI * epoch as f64 / self.t_max as f64).cos())
                / 2.0
    }
}
scheduler!(CosineAnnealingLR { "base_lr": base, "T_max": t_max >= 1, "eta_min": eta_min });

/// Linear warm-up: the rate grows from `start_factor * base` to `base` over
/// `warmup_epochs`, then stays (PyTorch's `LinearLR` with `end_factor = 1`).
///
/// ```
/// use tapegrad_nn::{LinearWarmup, LrScheduler};
/// let s = LinearWarmup::new(0.1, 0.25, 4);
/// assert_eq!((s.lr_at(0), s.lr_at(2), s.lr_at(9)), (0.025, 0.0625, 0.1));
/// ```
pub struct LinearWarmup {
    base: f64,
    start_factor: f64,
    warmup_epochs: usize,
    epoch: usize,
}

impl LinearWarmup {
    /// A warm-up to `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{LinearWarmup, LrScheduler, Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 0.5);
    /// let mut warmup = LinearWarmup::new(0.5, 0.5, 2);
    /// opt.set_lr(warmup.lr()); // start at start_factor * base
    /// let mut lrs = vec![opt.param_groups()[0].lr];
    /// for _ in 0..3 {
    ///     warmup.step(&mut opt);
    ///     lrs.push(opt.param_groups()[0].lr);
    /// }
    /// assert_eq!(lrs, [0.25, 0.375, 0.5, 0.5]);
    /// ```
    pub fn new(base_lr: f64, start_factor: f64, warmup_epochs: usize) -> Self {
        LinearWarmup { base: base_lr, start_factor, warmup_epochs, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        if epoch >= self.warmup_epochs {
            return self.base;
        }
        let t = epoch as f64 / self.warmup_epochs as f64;
        self.base * (self.start_factor + (1.0 - self.start_factor) * t)
    }
}
scheduler!(LinearWarmup { "base_lr": base, "start_factor": start_factor, "total_iters": warmup_epochs });

/// Linear scaling of the base rate from `start_factor` to `end_factor` over `total_iters`
/// epochs, then constant (PyTorch's `LinearLR`; [`LinearWarmup`] is the case
/// `end_factor = 1`).
///
/// ```
/// use tapegrad_nn::{LinearLR, LrScheduler};
/// let s = LinearLR::new(0.1, 1.0, 0.5, 5);
/// assert_eq!((s.lr_at(0), s.lr_at(5), s.lr_at(9)), (0.1, 0.05, 0.05));
/// ```
pub struct LinearLR {
    base: f64,
    start_factor: f64,
    end_factor: f64,
    total_iters: usize,
    epoch: usize,
}

impl LinearLR {
    /// A schedule from `base_lr * start_factor` to `base_lr * end_factor`.
    ///
    /// ```
    /// use tapegrad_nn::{LinearLR, LrScheduler};
    /// let s = LinearLR::new(1.0, 1.0 / 3.0, 1.0, 2);
    /// assert!((s.lr_at(1) - 2.0 / 3.0).abs() < 1e-15);
    /// ```
    pub fn new(base_lr: f64, start_factor: f64, end_factor: f64, total_iters: usize) -> Self {
        LinearLR { base: base_lr, start_factor, end_factor, total_iters, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        if self.total_iters == 0 {
            return self.base * self.end_factor;
        }
        let t = epoch.min(self.total_iters) as f64 / self.total_iters as f64;
        self.base * (self.start_factor + (self.end_factor - self.start_factor) * t)
    }
}
scheduler!(LinearLR {
    "base_lr": base,
    "start_factor": start_factor,
    "end_factor": end_factor,
    "total_iters": total_iters,
});

/// The base rate times `factor` for the first `total_iters` epochs, then the base rate
/// (PyTorch's `ConstantLR`).
///
/// ```
/// use tapegrad_nn::{ConstantLR, LrScheduler};
/// let s = ConstantLR::new(0.1, 0.5, 2);
/// assert_eq!((s.lr_at(0), s.lr_at(1), s.lr_at(2)), (0.05, 0.05, 0.1));
/// ```
pub struct ConstantLR {
    base: f64,
    factor: f64,
    total_iters: usize,
    epoch: usize,
}

impl ConstantLR {
    /// A schedule from `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{ConstantLR, LrScheduler};
    /// assert_eq!(ConstantLR::new(0.3, 1.0 / 3.0, 5).lr_at(5), 0.3);
    /// ```
    pub fn new(base_lr: f64, factor: f64, total_iters: usize) -> Self {
        ConstantLR { base: base_lr, factor, total_iters, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        if epoch < self.total_iters { self.base * self.factor } else { self.base }
    }
}
scheduler!(ConstantLR { "base_lr": base, "factor": factor, "total_iters": total_iters });

/// Polynomial decay to 0 over `total_iters` epochs: `base (1 - t / total_iters)^power`
/// (PyTorch's `PolynomialLR`).
///
/// ```
/// use tapegrad_nn::{LrScheduler, PolynomialLR};
/// let s = PolynomialLR::new(0.1, 4, 2.0);
/// assert_eq!((s.lr_at(0), s.lr_at(2), s.lr_at(4), s.lr_at(6)), (0.1, 0.025, 0.0, 0.0));
/// ```
pub struct PolynomialLR {
    base: f64,
    total_iters: usize,
    power: f64,
    epoch: usize,
}

impl PolynomialLR {
    /// A schedule from `base_lr`.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, PolynomialLR};
    /// assert_eq!(PolynomialLR::new(1.0, 5, 1.0).lr_at(1), 0.8);
    /// ```
    pub fn new(base_lr: f64, total_iters: usize, power: f64) -> Self {
        PolynomialLR { base: base_lr, total_iters: total_iters.max(1), power, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        let t = epoch.min(self.total_iters) as f64 / self.total_iters as f64;
        self.base * (1.0 - t).powf(self.power)
    }
}
scheduler!(PolynomialLR { "base_lr": base, "total_iters": total_iters >= 1, "power": power });

/// Cosine annealing from the base rate to `eta_min` over `t_0` epochs, restarting at the
/// base rate, each period `t_mult` times the last (PyTorch's `CosineAnnealingWarmRestarts`,
/// SGDR).
///
/// ```
/// use tapegrad_nn::{CosineAnnealingWarmRestarts, LrScheduler};
/// let s = CosineAnnealingWarmRestarts::new(0.1, 2, 2, 0.0);
/// // Periods of 2, 4, 8, ... epochs, each starting again at 0.1.
/// assert_eq!((s.lr_at(0), s.lr_at(2), s.lr_at(6)), (0.1, 0.1, 0.1));
/// assert!((s.lr_at(4) - 0.05).abs() < 1e-15); // halfway through the second period
/// ```
pub struct CosineAnnealingWarmRestarts {
    base: f64,
    t_0: usize,
    t_mult: usize,
    eta_min: f64,
    epoch: usize,
}

impl CosineAnnealingWarmRestarts {
    /// A schedule from `base_lr` with a first period of `t_0` epochs (at least 1) and a
    /// growth factor `t_mult` (at least 1).
    ///
    /// ```
    /// use tapegrad_nn::{CosineAnnealingWarmRestarts, LrScheduler};
    /// let s = CosineAnnealingWarmRestarts::new(0.1, 10, 1, 0.001);
    /// assert_eq!(s.lr_at(10), s.lr_at(0)); // a restart every 10 epochs
    /// ```
    pub fn new(base_lr: f64, t_0: usize, t_mult: usize, eta_min: f64) -> Self {
        CosineAnnealingWarmRestarts {
            base: base_lr,
            t_0: t_0.max(1),
            t_mult: t_mult.max(1),
            eta_min,
            epoch: 0,
        }
    }
    fn rate(&self, epoch: usize) -> f64 {
        // Walk the periods: at most log_{t_mult}(epoch / t_0) of them when they grow.
        let (mut t_cur, mut period) = (epoch, self.t_0);
        if self.t_mult == 1 {
            t_cur %= period;
        } else {
            while t_cur >= period {
                t_cur -= period;
                period = period.saturating_mul(self.t_mult);
            }
        }
        let phase = PI * t_cur as f64 / period as f64;
        self.eta_min + (self.base - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}
scheduler!(CosineAnnealingWarmRestarts {
    "base_lr": base,
    "T_0": t_0 >= 1,
    "T_mult": t_mult >= 1,
    "eta_min": eta_min,
});

/// Multiplies the rate by `gamma` at each milestone epoch (PyTorch's `MultiStepLR`).
///
/// ```
/// use tapegrad_nn::{LrScheduler, MultiStepLR};
/// let s = MultiStepLR::new(0.1, &[2, 4], 0.1);
/// assert_eq!((s.lr_at(1), s.lr_at(2), s.lr_at(5)), (0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1));
/// ```
pub struct MultiStepLR {
    base: f64,
    milestones: Vec<usize>,
    gamma: f64,
    epoch: usize,
}

impl MultiStepLR {
    /// A schedule from `base_lr`; the milestones may come in any order, and a milestone
    /// given twice multiplies by `gamma` twice (as PyTorch's counter of milestones does).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, MultiStepLR};
    /// let s = MultiStepLR::new(1.0, &[30, 10, 10], 0.5);
    /// assert_eq!((s.lr_at(9), s.lr_at(10), s.lr_at(30)), (1.0, 0.25, 0.125));
    /// ```
    pub fn new(base_lr: f64, milestones: &[usize], gamma: f64) -> Self {
        let mut milestones = milestones.to_vec();
        milestones.sort_unstable();
        MultiStepLR { base: base_lr, milestones, gamma, epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        let passed = self.milestones.partition_point(|&m| m <= epoch);
        self.base * self.gamma.powi(passed as i32)
    }
    /// Reads a state: the scalars, then one `milestones.i` per milestone, numbered from 0.
    fn read(&self, state: &[(String, f64)]) -> Result<(Vec<f64>, Vec<usize>)> {
        let (milestones, scalars): (Vec<_>, Vec<_>) =
            state.iter().cloned().partition(|(name, _)| name.starts_with("milestones."));
        let spec = [("last_epoch", Some(0)), ("base_lr", None), ("gamma", None)];
        let values = read_state("MultiStepLR", &scalars, &spec)?;
        let names: Vec<String> = (0..milestones.len()).map(|i| format!("milestones.{i}")).collect();
        let spec: Vec<(&str, Option<usize>)> =
            names.iter().map(|n| (n.as_str(), Some(0))).collect();
        let milestones = read_state("MultiStepLR", &milestones, &spec)?;
        Ok((values, milestones.into_iter().map(|m| m as usize).collect()))
    }
}

impl LrScheduler for MultiStepLR {
    fn lr_at(&self, epoch: usize) -> f64 {
        self.rate(epoch)
    }
    fn epoch(&self) -> usize {
        self.epoch
    }
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.epoch += 1;
        optimizer.set_lr(self.rate(self.epoch));
    }
}

impl SchedulerState for MultiStepLR {
    fn kind(&self) -> &'static str {
        "MultiStepLR"
    }
    fn state_dict(&self) -> Vec<(String, f64)> {
        let mut state = vec![
            ("last_epoch".to_string(), self.epoch as f64),
            ("base_lr".to_string(), self.base),
            ("gamma".to_string(), self.gamma),
        ];
        let milestones = self.milestones.iter().enumerate();
        state.extend(milestones.map(|(i, &m)| (format!("milestones.{i}"), m as f64)));
        state
    }
    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
        let (values, milestones) = self.read(state)?;
        *self = MultiStepLR::new(values[1], &milestones, values[2]);
        self.epoch = values[0] as usize;
        Ok(())
    }
    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        self.read(state).map(drop)
    }
}

/// Whether a lower or a higher metric is better, for [`ReduceLROnPlateau`].
///
/// ```
/// assert_eq!(tapegrad_nn::PlateauMode::default(), tapegrad_nn::PlateauMode::Min);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlateauMode {
    /// A loss: lower is better (PyTorch's `"min"`).
    #[default]
    Min,
    /// An accuracy: higher is better (`"max"`).
    Max,
}

/// How [`ReduceLROnPlateau`] measures an improvement: relative to the best value
/// (`best * (1 ∓ threshold)`, PyTorch's `"rel"`) or by an absolute margin (`"abs"`).
///
/// ```
/// assert_eq!(tapegrad_nn::ThresholdMode::default(), tapegrad_nn::ThresholdMode::Rel);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThresholdMode {
    /// A relative margin.
    #[default]
    Rel,
    /// An absolute margin.
    Abs,
}

/// Reduces the learning rate by `factor` when a metric has stopped improving for more
/// than `patience` epochs (PyTorch's `ReduceLROnPlateau`). Unlike the other schedules it
/// is driven by the metric: call [`step`](ReduceLROnPlateau::step) once per epoch with it.
/// It reads the rate from the optimizer's first group and sets the reduced rate on every
/// group.
///
/// ```
/// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD};
/// let mut opt = SGD::new(vec![], 0.1);
/// let mut plateau = ReduceLROnPlateau::new().patience(1).factor(0.5);
/// for loss in [1.0, 0.5, 0.6, 0.6, 0.6, 0.4] {
///     plateau.step(loss, &mut opt);
/// }
/// // Two epochs without improving on 0.5 halve the rate; two more halve it again.
/// assert_eq!(opt.param_groups()[0].lr, 0.05);
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    mode: PlateauMode,
    factor: f64,
    patience: usize,
    threshold: f64,
    threshold_mode: ThresholdMode,
    cooldown: usize,
    min_lr: f64,
    eps: f64,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
    epoch: usize,
}

impl Default for ReduceLROnPlateau {
    fn default() -> Self {
        ReduceLROnPlateau::new()
    }
}

impl ReduceLROnPlateau {
    /// PyTorch's defaults: mode min, factor 0.1, patience 10, threshold 1e-4 (relative),
    /// cooldown 0, min_lr 0, eps 1e-8.
    ///
    /// ```
    /// use tapegrad_nn::ReduceLROnPlateau;
    /// assert_eq!(ReduceLROnPlateau::new().best(), f64::INFINITY);
    /// ```
    pub fn new() -> Self {
        ReduceLROnPlateau {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
            best: f64::INFINITY,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            epoch: 0,
        }
    }

    /// Sets `mode` (and resets the best value to the worst possible).
    ///
    /// ```
    /// use tapegrad_nn::{PlateauMode, ReduceLROnPlateau};
    /// assert_eq!(ReduceLROnPlateau::new().mode(PlateauMode::Max).best(), f64::NEG_INFINITY);
    /// ```
    pub fn mode(mut self, mode: PlateauMode) -> Self {
        self.mode = mode;
        self.best = self.worst();
        self
    }

    /// Sets `factor`, the multiplier of each reduction (below 1).
    ///
    /// # Panics
    ///
    /// If `factor` is not in `[0, 1)`, as PyTorch refuses it.
    ///
    /// ```
    /// use tapegrad_nn::ReduceLROnPlateau;
    /// let _ = ReduceLROnPlateau::new().factor(0.5);
    /// assert!(std::panic::catch_unwind(|| ReduceLROnPlateau::new().factor(1.0)).is_err());
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&factor),
            "ReduceLROnPlateau: factor {factor} must be in [0, 1) (it multiplies the rate)"
        );
        self.factor = factor;
        self
    }

    /// Sets `patience`: how many epochs without improvement are tolerated.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut plateau = ReduceLROnPlateau::new().patience(0);
    /// plateau.step(1.0, &mut opt);
    /// plateau.step(1.0, &mut opt); // no improvement, no patience
    /// assert_eq!(opt.param_groups()[0].lr, 0.1);
    /// ```
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets `threshold` and `threshold_mode`: how much better a value must be to count.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD, ThresholdMode};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut plateau = ReduceLROnPlateau::new().patience(0).threshold(0.1, ThresholdMode::Abs);
    /// plateau.step(1.0, &mut opt);
    /// plateau.step(0.95, &mut opt); // better, but by less than 0.1
    /// assert_eq!(opt.param_groups()[0].lr, 0.1);
    /// ```
    pub fn threshold(mut self, threshold: f64, mode: ThresholdMode) -> Self {
        self.threshold = threshold;
        self.threshold_mode = mode;
        self
    }

    /// Sets `cooldown`: epochs after a reduction during which bad epochs are not counted.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut plateau = ReduceLROnPlateau::new().patience(0).cooldown(2);
    /// for _ in 0..4 {
    ///     plateau.step(1.0, &mut opt);
    /// }
    /// assert!((opt.param_groups()[0].lr - 0.1).abs() < 1e-15); // one reduction, then the cooldown
    /// ```
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets `min_lr`, the floor of the rate.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut plateau = ReduceLROnPlateau::new().patience(0).min_lr(0.5);
    /// for _ in 0..3 {
    ///     plateau.step(1.0, &mut opt);
    /// }
    /// assert_eq!(opt.param_groups()[0].lr, 0.5);
    /// ```
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Sets `eps`: a reduction smaller than this is skipped.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD};
    /// let mut opt = SGD::new(vec![], 1e-9);
    /// let mut plateau = ReduceLROnPlateau::new().patience(0).eps(1e-8);
    /// plateau.step(1.0, &mut opt);
    /// plateau.step(1.0, &mut opt);
    /// assert_eq!(opt.param_groups()[0].lr, 1e-9); // 1e-9 -> 1e-10 is below eps
    /// ```
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The best metric seen so far.
    ///
    /// ```
    /// use tapegrad_nn::{ReduceLROnPlateau, SGD};
    /// let mut plateau = ReduceLROnPlateau::new();
    /// plateau.step(0.7, &mut SGD::new(vec![], 0.1));
    /// assert_eq!(plateau.best(), 0.7);
    /// ```
    pub fn best(&self) -> f64 {
        self.best
    }

    /// The number of epochs stepped.
    ///
    /// ```
    /// use tapegrad_nn::{ReduceLROnPlateau, SGD};
    /// let mut plateau = ReduceLROnPlateau::new();
    /// plateau.step(0.7, &mut SGD::new(vec![], 0.1));
    /// assert_eq!(plateau.epoch(), 1);
    /// ```
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    fn worst(&self) -> f64 {
        match self.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    fn is_better(&self, value: f64) -> bool {
        let best = self.best;
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => value < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => value < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => value > best * (1.0 + self.threshold),
            (PlateauMode::Max, ThresholdMode::Abs) => value > best + self.threshold,
        }
    }

    /// Records the epoch's `metric` and reduces the optimizer's rate if the metric has not
    /// improved for more than `patience` epochs (outside a cooldown).
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, PlateauMode, ReduceLROnPlateau, SGD};
    /// let mut opt = SGD::new(vec![], 0.1);
    /// let mut plateau = ReduceLROnPlateau::new().mode(PlateauMode::Max).patience(0);
    /// plateau.step(0.90, &mut opt); // accuracy
    /// plateau.step(0.95, &mut opt);
    /// assert_eq!(opt.param_groups()[0].lr, 0.1);
    /// plateau.step(0.94, &mut opt);
    /// assert!((opt.param_groups()[0].lr - 0.01).abs() < 1e-15);
    /// ```
    pub fn step(&mut self, metric: f64, optimizer: &mut dyn Optimizer) {
        self.epoch += 1;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.patience {
            if let Some(group) = optimizer.param_groups().first() {
                let old = group.lr;
                let new = (old * self.factor).max(self.min_lr);
                if old - new > self.eps {
                    optimizer.set_lr(new);
                }
            }
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
        }
    }
}

/// Its state holds the settings, the best value and the counters, so that a
/// [`Checkpoint`](crate::Checkpoint) resumes it mid-plateau.
///
/// ```
/// use tapegrad_nn::{Optimizer, ReduceLROnPlateau, SGD, SchedulerState};
/// let mut opt = SGD::new(vec![], 1.0);
/// let mut plateau = ReduceLROnPlateau::new().patience(1);
/// plateau.step(0.5, &mut opt);
/// plateau.step(0.6, &mut opt); // one bad epoch
/// let mut resumed = ReduceLROnPlateau::new();
/// resumed.load_state_dict(&plateau.state_dict()).unwrap();
/// resumed.step(0.6, &mut opt); // the second: reduced
/// assert_eq!((resumed.best(), opt.param_groups()[0].lr), (0.5, 0.1));
/// let bad = [("best".to_string(), f64::NAN)];
/// assert!(resumed.load_state_dict(&bad).is_err());
/// ```
impl SchedulerState for ReduceLROnPlateau {
    fn kind(&self) -> &'static str {
        "ReduceLROnPlateau"
    }
    fn state_dict(&self) -> Vec<(String, f64)> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        vec![
            ("last_epoch".into(), self.epoch as f64),
            ("best".into(), self.best),
            ("num_bad_epochs".into(), self.num_bad_epochs as f64),
            ("cooldown_counter".into(), self.cooldown_counter as f64),
            ("mode_max".into(), flag(self.mode == PlateauMode::Max)),
            ("factor".into(), self.factor),
            ("patience".into(), self.patience as f64),
            ("threshold".into(), self.threshold),
            ("threshold_abs".into(), flag(self.threshold_mode == ThresholdMode::Abs)),
            ("cooldown".into(), self.cooldown as f64),
            ("min_lr".into(), self.min_lr),
            ("eps".into(), self.eps),
        ]
    }
    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
        *self = ReduceLROnPlateau::read(state)?;
        Ok(())
    }
    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        ReduceLROnPlateau::read(state).map(drop)
    }
}

impl ReduceLROnPlateau {
    /// A schedule from its state dict, checked entry by entry. `best` is the one entry that
    /// may be infinite (before the first step).
    fn read(state: &[(String, f64)]) -> Result<ReduceLROnPlateau> {
        let kind = "ReduceLROnPlateau";
        let (best, rest): (Vec<_>, Vec<_>) =
            state.iter().cloned().partition(|(name, _)| name == "best");
        let bad = |message: String| Error::Format { path: format!("{kind} state"), message };
        let best = match best[..] {
            [(_, b)] if !b.is_nan() => b,
            [(_, b)] => return Err(bad(format!("entry `best` is {b}; expected a number"))),
            [] => return Err(bad("missing entry `best`".into())),
            _ => return Err(bad("entry `best` appears twice".into())),
        };
        let spec = [
            ("last_epoch", Some(0)),
            ("num_bad_epochs", Some(0)),
            ("cooldown_counter", Some(0)),
            ("mode_max", Some(0)),
            ("factor", None),
            ("patience", Some(0)),
            ("threshold", None),
            ("threshold_abs", Some(0)),
            ("cooldown", Some(0)),
            ("min_lr", None),
            ("eps", None),
        ];
        let v = read_state(kind, &rest, &spec)?;
        for (i, name) in [(3, "mode_max"), (7, "threshold_abs")] {
            if v[i] > 1.0 {
                return Err(bad(format!("entry `{name}` is {}; expected 0 or 1", v[i])));
            }
        }
        if !(0.0..1.0).contains(&v[4]) {
            return Err(bad(format!("entry `factor` is {}; expected a number in [0, 1)", v[4])));
        }
        Ok(ReduceLROnPlateau {
            mode: if v[3] == 1.0 { PlateauMode::Max } else { PlateauMode::Min },
            factor: v[4],
            patience: v[5] as usize,
            threshold: v[6],
            threshold_mode: if v[7] == 1.0 { ThresholdMode::Abs } else { ThresholdMode::Rel },
            cooldown: v[8] as usize,
            min_lr: v[9],
            eps: v[10],
            best,
            num_bad_epochs: v[1] as usize,
            cooldown_counter: v[2] as usize,
            epoch: v[0] as usize,
        })
    }
}

mod composed;
mod cyclic;
pub use composed::{LambdaLR, SequentialLR};
pub use cyclic::{AnnealStrategy, CyclicLR, CyclicMode, OneCycleLR, ScaleMode};
