//! Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`): each computes the rate
//! for an epoch from the base rate, and `step` moves to the next epoch and sets it on an
//! optimizer. Their state (the epoch and the settings) saves and restores like an
//! optimizer's, so that a checkpoint resumes the schedule where it stopped.

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
pub trait LrScheduler {
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

    /// The scheduler's PyTorch class name, which a checkpoint records so that resuming into
    /// another kind of schedule is an error. The default is the Rust type's name.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, StepLR};
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
    /// use tapegrad_nn::{LrScheduler, SGD, StepLR};
    /// let mut sched = StepLR::new(0.1, 2, 0.5);
    /// sched.step(&mut SGD::new(vec![], 0.1));
    /// let state = sched.state_dict();
    /// assert_eq!(state[0], ("last_epoch".to_string(), 1.0));
    /// assert!(state.contains(&("gamma".to_string(), 0.5)));
    /// ```
    fn state_dict(&self) -> Vec<(String, f64)>;

    /// Restores a state from [`LrScheduler::state_dict`], all or nothing: every name must
    /// be present, none unknown, counts whole and in range, rates finite; on an error the
    /// scheduler is unchanged. As in PyTorch, the settings come back with the epoch. The
    /// optimizer's learning rate is part of the optimizer's state, not this one.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, SGD, StepLR};
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

    /// Checks that [`LrScheduler::load_state_dict`] would accept `state`, changing nothing,
    /// so that a [`Checkpoint`](crate::Checkpoint) can check every part before it restores
    /// any. The default accepts everything.
    ///
    /// ```
    /// use tapegrad_nn::{ExponentialLR, LrScheduler};
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
