//! Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`): each computes the rate
//! for an epoch from the base rate, and `step` moves to the next epoch and sets it on an
//! optimizer.

use std::f64::consts::PI;

use crate::Optimizer;

/// A learning-rate schedule.
///
/// ```
/// use tapegrad_nn::{LrScheduler, Optimizer, SGD, StepLR};
/// let mut opt = SGD::new(vec![], 0.1);
/// let mut sched = StepLR::new(0.1, 2, 0.5);
/// for _ in 0..2 { sched.step(&mut opt); }
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
}

macro_rules! scheduler {
    ($name:ident) => {
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
    };
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
scheduler!(StepLR);

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
scheduler!(ExponentialLR);

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
        self.eta_min + (self.base - self.eta_min) * (1.0 + (PI * epoch as f64 / self.t_max as f64).cos()) / 2.0
    }
}
scheduler!(CosineAnnealingLR);

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
scheduler!(LinearWarmup);
