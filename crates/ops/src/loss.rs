//! Losses: one type per PyTorch loss class (`MSELoss`, `CrossEntropyLoss`, ...) holding its
//! keywords, with builder methods and `forward`; the functions of
//! [`functional`](crate::functional) (`mse_loss`, `cross_entropy_with`, ...) call them.
//! tapegrad-nn re-exports the types as its loss modules: a loss has no parameters, so the
//! module and its options are one value.
//!
//! ```
//! use tapegrad_ops::{CrossEntropyLoss, Reduction, functional as F};
//! use tapegrad_tape::Tensor;
//! let (logits, target) = (Tensor::zeros(&[2, 4]), Tensor::from_vec(vec![0i64, 3], &[2]));
//! let loss = CrossEntropyLoss::new().label_smoothing(0.1).reduction(Reduction::Sum);
//! let a = loss.forward(&logits, &target);
//! let b = F::cross_entropy_with(&logits, &target, loss);
//! assert_eq!(a.item(), b.item());
//! ```

use std::panic::Location;

use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Element, Error, Result, Storage, Tensor, ensure_float, record_with_tangent,
};

use crate::elementwise::{binary_fn, unary_fn};
use crate::functional::softmax_op;
use crate::{BinaryOps, binary, elementwise, reduce, shape, unary};

/// How a loss combines its per-element values (PyTorch's `reduction=`).
///
/// ```
/// use tapegrad_ops::{Reduction, functional::mse_loss_with};
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 3.0], &[2]);
/// let b = Tensor::zeros(&[2]);
/// assert_eq!(mse_loss_with(&a, &b, Reduction::Sum).item(), 10.0);
/// assert_eq!(mse_loss_with(&a, &b, Reduction::None).shape(), &[2]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over elements (the default).
    #[default]
    Mean,
    /// The sum over elements.
    Sum,
    /// No reduction: one loss per element.
    None,
}

fn reduce_loss(loss: Tensor, reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::Mean => reduce::mean(&loss),
        Reduction::Sum => reduce::sum(&loss),
        Reduction::None => loss,
    }
}

/// Builder methods, one per PyTorch keyword, each with an example that sets it.
macro_rules! keywords {
    ($ty:ident { $($(#[$doc:meta])* $field:ident: $arg:ty => $value:expr, example $example:expr;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                ///
                /// ```
                #[doc = concat!("use tapegrad_ops::{", stringify!($ty), ", Reduction};")]
                /// use tapegrad_tape::Tensor;
                #[doc = concat!("let loss = ", stringify!($ty), "::new().", stringify!($field),
                    "(", stringify!($example), ");")]
                #[doc = concat!("assert_ne!(format!(\"{loss:?}\"), format!(\"{:?}\", ",
                    stringify!($ty), "::new()));")]
                /// ```
                pub fn $field(mut self, $field: $arg) -> Self {
                    self.$field = $value;
                    self
                }
            )*
        }

        /// A reduction alone is the loss with that reduction (so `_with` functions take
        /// either).
        impl From<Reduction> for $ty {
            fn from(reduction: Reduction) -> Self {
                $ty::new().reduction(reduction)
            }
        }
    };
}

/// Mean squared error: PyTorch's `nn.MSELoss` (`reduction`).
///
/// ```
/// use tapegrad_ops::{MSELoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let (x, y) = (Tensor::from_vec(vec![1.0f32, 3.0], &[2]), Tensor::zeros(&[2]));
/// assert_eq!(MSELoss::new().forward(&x, &y).item(), 5.0);
/// assert_eq!(MSELoss::new().reduction(Reduction::None).forward(&x, &y).to_vec::<f32>(), [1.0, 9.0]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MSELoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

/// Mean absolute error: PyTorch's `nn.L1Loss` (`reduction`).
///
/// ```
/// use tapegrad_ops::L1Loss;
/// use tapegrad_tape::Tensor;
/// assert_eq!(L1Loss::new().forward(&Tensor::full(&[2], -3.0), &Tensor::zeros(&[2])).item(), 3.0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct L1Loss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

/// `0.5 d^2 / beta` where `|d| < beta`, `|d| - 0.5 beta` elsewhere: PyTorch's
/// `nn.SmoothL1Loss` (`reduction`, `beta` = 1).
///
/// ```
/// use tapegrad_ops::{Reduction, SmoothL1Loss};
/// use tapegrad_tape::Tensor;
/// let d = Tensor::from_vec(vec![0.5f64, 3.0], &[2]);
/// let loss = SmoothL1Loss::new().reduction(Reduction::None);
/// assert_eq!(loss.forward(&d, &d.zeros_like()).to_vec::<f64>(), vec![0.125, 2.5]);
/// ```
#[derive(Clone, Debug)]
pub struct SmoothL1Loss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// Where the loss turns from quadratic to linear.
    pub beta: f64,
}

/// `0.5 d^2` where `|d| < delta`, `delta (|d| - 0.5 delta)` elsewhere: PyTorch's
/// `nn.HuberLoss` (`reduction`, `delta` = 1).
///
/// ```
/// use tapegrad_ops::{HuberLoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let d = Tensor::from_vec(vec![0.5f64, 3.0], &[2]);
/// let loss = HuberLoss::new().delta(2.0).reduction(Reduction::None);
/// assert_eq!(loss.forward(&d, &d.zeros_like()).to_vec::<f64>(), vec![0.125, 4.0]);
/// ```
#[derive(Clone, Debug)]
pub struct HuberLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// Where the loss turns from quadratic to linear.
    pub delta: f64,
}

/// The Kullback-Leibler divergence of a target distribution from log-probabilities:
/// PyTorch's `nn.KLDivLoss` (`reduction`, `log_target` = false). Each element is
/// `target (ln target - input)`, 0 where the target is 0 (or `e^target (target - input)` for
/// log targets). `reduction='batchmean'`, the sum over the batch size that is the true
/// divergence, is [`KLDivLoss::batchmean`]. Where a target is 0 its own gradient is `-input`
/// (the `t ln t` term taken as the constant 0 there; PyTorch gives NaN).
///
/// ```
/// use tapegrad_ops::KLDivLoss;
/// use tapegrad_tape::Tensor;
/// let log_q = Tensor::from_vec(vec![0.5f64.ln(), 0.5f64.ln()], &[1, 2]);
/// let p = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]);
/// let kl = KLDivLoss::new().batchmean().forward(&log_q, &p).item();
/// assert!((kl - 2f64.ln()).abs() < 1e-15); // 1 ln(1 / 0.5) + 0
/// ```
#[derive(Clone, Debug, Default)]
pub struct KLDivLoss {
    /// How per-element losses combine (with `batch_mean`, the sum is divided by the batch).
    pub reduction: Reduction,
    /// Whether the sum is divided by the input's first dimension (`reduction='batchmean'`).
    pub batch_mean: bool,
    /// Whether the target holds log-probabilities.
    pub log_target: bool,
}

impl KLDivLoss {
    /// PyTorch's `reduction='batchmean'`: the sum of the elements' losses divided by the
    /// input's first dimension (the divergence per sample).
    ///
    /// ```
    /// use tapegrad_ops::{KLDivLoss, Reduction};
    /// let kl = KLDivLoss::new().batchmean();
    /// assert!(kl.batch_mean && kl.reduction == Reduction::Sum);
    /// ```
    pub fn batchmean(mut self) -> Self {
        self.reduction = Reduction::Sum;
        self.batch_mean = true;
        self
    }

    /// Sets `reduction` (and leaves `batchmean`).
    ///
    /// ```
    /// use tapegrad_ops::{KLDivLoss, Reduction};
    /// let kl = KLDivLoss::new().batchmean().reduction(Reduction::None);
    /// assert!(!kl.batch_mean && kl.reduction == Reduction::None);
    /// ```
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self.batch_mean = false;
        self
    }

    /// Sets `log_target`: the target holds log-probabilities.
    ///
    /// ```
    /// assert!(tapegrad_ops::KLDivLoss::new().log_target(true).log_target);
    /// ```
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }

    /// The loss with PyTorch's defaults (`reduction` mean, which PyTorch warns is not the
    /// divergence: see [`KLDivLoss::batchmean`]).
    ///
    /// ```
    /// use tapegrad_ops::{KLDivLoss, Reduction};
    /// assert_eq!(KLDivLoss::new().reduction, Reduction::Mean);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The divergence of `target` from `input` (log-probabilities); panics naming the
    /// caller's line on shapes that do not broadcast.
    ///
    /// ```
    /// use tapegrad_ops::{KLDivLoss, prelude::*};
    /// use tapegrad_tape::Tensor;
    /// let same = Tensor::full(&[2, 4], 0.25);
    /// assert_eq!(KLDivLoss::new().forward(&same.log(), &same).item(), 0.0);
    /// ```
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        tapegrad_tape::or_panic(self.try_forward(input, target))
    }

    /// [`KLDivLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::KLDivLoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(KLDivLoss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        pair_shape("kl_div", input, target)?;
        let target = target.to_dtype(input.dtype());
        let each = if self.log_target {
            &unary::exp(&target) * &(&target - input)
        } else {
            // xlogy(t, t) - t x: the log taken of 1 where t = 0, so that no NaN or infinity
            // reaches the value or the gradient there.
            let zero = target.detach().eq(&Tensor::zeros_dtype(&[], target.dtype()));
            let safe = binary::try_where(&zero, &Tensor::ones_dtype(&[], target.dtype()), &target)?;
            &(&target * &unary::log(&safe)) - &(&target * input)
        };
        let loss = reduce_loss(each, self.reduction);
        if self.batch_mean && input.dim() > 0 {
            return Ok(loss.div_scalar(input.shape()[0] as f64));
        }
        Ok(loss)
    }
}

/// A reduction alone is the loss with that reduction (so `kl_div_with` takes either).
impl From<Reduction> for KLDivLoss {
    fn from(reduction: Reduction) -> Self {
        KLDivLoss::new().reduction(reduction)
    }
}

/// Binary cross-entropy of probabilities: PyTorch's `nn.BCELoss` (`weight`, `reduction`).
/// Each log is clamped at -100 as in PyTorch, so probabilities of exactly 0 or 1 stay
/// finite; the input gradient is PyTorch's `(p - y) / max(p (1 - p), 1e-12)`.
///
/// ```
/// use tapegrad_ops::{BCELoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let p = Tensor::from_vec(vec![0.5f64, 1.0], &[2]);
/// let y = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
/// let loss = BCELoss::new().reduction(Reduction::None).forward(&p, &y).to_vec::<f64>();
/// assert!((loss[0] - 2f64.ln()).abs() < 1e-12 && loss[1] == 100.0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BCELoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// A weight per element (broadcast to the input), or `None`.
    pub weight: Option<Tensor>,
}

/// Binary cross-entropy on logits, stable for any logit: PyTorch's `nn.BCEWithLogitsLoss`
/// (`weight`, `reduction`, `pos_weight`).
///
/// ```
/// use tapegrad_ops::{BCEWithLogitsLoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1e4f32, -1e4], &[2]);
/// let y = Tensor::from_vec(vec![1.0f32, 1.0], &[2]);
/// let loss = BCEWithLogitsLoss::new().reduction(Reduction::None);
/// assert_eq!(loss.forward(&x, &y).to_vec::<f32>(), vec![0.0, 1e4]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BCEWithLogitsLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// A weight per element (broadcast to the input), or `None`.
    pub weight: Option<Tensor>,
    /// A weight of the positive term per class (broadcast along the last dimension).
    pub pos_weight: Option<Tensor>,
}

/// Cross-entropy between logits (`[N, C]`, `[N, C, d..]` or `[C]`) and targets that are
/// int64 class indices or class probabilities shaped like the logits: PyTorch's
/// `nn.CrossEntropyLoss` (`weight`, `ignore_index` = -100, `reduction`, `label_smoothing`).
/// Computed through a stable log-softmax, so logits of ±1e4 give finite values and gradients.
///
/// ```
/// use tapegrad_ops::CrossEntropyLoss;
/// use tapegrad_tape::Tensor;
/// let logits = Tensor::from_vec(vec![1e4f32, -1e4, 0.0, 0.0], &[2, 2]);
/// let target = Tensor::from_vec(vec![0i64, 1], &[2]);
/// let loss = CrossEntropyLoss::new().forward(&logits, &target);
/// assert!((loss.item() - 0.5 * 2f64.ln()).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct CrossEntropyLoss {
    /// How per-sample losses combine.
    pub reduction: Reduction,
    /// A weight per class (shape `[C]`), or `None` for equal weights.
    pub weight: Option<Tensor>,
    /// A class index whose samples contribute nothing.
    pub ignore_index: i64,
    /// Mass moved from the target class to a uniform distribution, in `[0, 1]`.
    pub label_smoothing: f64,
}

/// Negative log-likelihood of class indices under log-probabilities (`[N, C]`,
/// `[N, C, d..]` or `[C]`), the mean taken over the weights of the non-ignored samples:
/// PyTorch's `nn.NLLLoss` (`weight`, `ignore_index` = -100, `reduction`).
///
/// ```
/// use tapegrad_ops::NLLLoss;
/// use tapegrad_tape::Tensor;
/// let logp = Tensor::from_vec(vec![-1.0f32, -2.0, -3.0, -4.0], &[2, 2]);
/// let target = Tensor::from_vec(vec![0i64, 1], &[2]);
/// assert_eq!(NLLLoss::new().forward(&logp, &target).item(), 2.5); // mean of 1 and 4
/// let weighted = NLLLoss::new().weight(&Tensor::from_vec(vec![1.0f32, 3.0], &[2]));
/// assert_eq!(weighted.forward(&logp, &target).item(), 3.25); // (1 * 1 + 3 * 4) / (1 + 3)
/// ```
#[derive(Clone, Debug)]
pub struct NLLLoss {
    /// How per-sample losses combine.
    pub reduction: Reduction,
    /// A weight per class (shape `[C]`), or `None` for equal weights.
    pub weight: Option<Tensor>,
    /// A class index whose samples contribute nothing.
    pub ignore_index: i64,
}

impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss { reduction: Reduction::Mean, beta: 1.0 }
    }
}

impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss { reduction: Reduction::Mean, delta: 1.0 }
    }
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        CrossEntropyLoss {
            reduction: Reduction::Mean,
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
        }
    }
}

impl Default for NLLLoss {
    fn default() -> Self {
        NLLLoss { reduction: Reduction::Mean, weight: None, ignore_index: -100 }
    }
}

keywords!(MSELoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
});
keywords!(L1Loss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
});
keywords!(SmoothL1Loss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `beta`, where the loss turns linear (0 gives the L1 loss).
    beta: f64 => beta, example 0.5;
});
keywords!(HuberLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `delta`, where the loss turns linear.
    delta: f64 => delta, example 0.5;
});
keywords!(BCELoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `weight`, a rescaling weight per element.
    weight: &Tensor => Some(weight.clone()), example &Tensor::ones(&[3]);
});
keywords!(BCEWithLogitsLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `weight`, a rescaling weight per element.
    weight: &Tensor => Some(weight.clone()), example &Tensor::ones(&[3]);
    /// Sets `pos_weight`, the weight of positive examples per class.
    pos_weight: &Tensor => Some(pos_weight.clone()), example &Tensor::full(&[3], 2.0);
});
keywords!(CrossEntropyLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `weight`, a weight per class.
    weight: &Tensor => Some(weight.clone()), example &Tensor::ones(&[3]);
    /// Sets `ignore_index`, a class whose samples contribute nothing.
    ignore_index: i64 => ignore_index, example 0;
    /// Sets `label_smoothing`.
    label_smoothing: f64 => label_smoothing, example 0.1;
});
keywords!(NLLLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `weight`, a weight per class.
    weight: &Tensor => Some(weight.clone()), example &Tensor::ones(&[3]);
    /// Sets `ignore_index`, a class whose samples contribute nothing.
    ignore_index: i64 => ignore_index, example 0;
});

/// `new`, `forward` and `try_forward` of a loss type; `$input` and `$target` name the
/// arguments as PyTorch's documentation does.
macro_rules! loss_type {
    ($ty:ident, $input:ident, $target:ident, $example:literal) => {
        impl $ty {
            /// The loss with PyTorch's defaults.
            ///
            /// ```
            #[doc = concat!("use tapegrad_ops::{", stringify!($ty), ", Reduction};")]
            #[doc = concat!("assert_eq!(", stringify!($ty), "::new().reduction, Reduction::Mean);")]
            /// ```
            pub fn new() -> Self {
                Self::default()
            }

            /// The loss of `input` against `target`; panics naming the caller's line on bad
            /// shapes or values.
            ///
            /// ```
            #[doc = concat!("use tapegrad_ops::", stringify!($ty), ";")]
            /// use tapegrad_tape::Tensor;
            #[doc = $example]
            /// ```
            #[track_caller]
            pub fn forward(&self, $input: &Tensor, $target: &Tensor) -> Tensor {
                tapegrad_tape::or_panic(self.try_forward($input, $target))
            }
        }
    };
}

loss_type!(
    MSELoss,
    input,
    target,
    "assert_eq!(MSELoss::new().forward(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 1.0);"
);
loss_type!(
    L1Loss,
    input,
    target,
    "assert_eq!(L1Loss::new().forward(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 1.0);"
);
loss_type!(
    SmoothL1Loss,
    input,
    target,
    "assert_eq!(SmoothL1Loss::new().forward(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 0.5);"
);
loss_type!(
    HuberLoss,
    input,
    target,
    "assert_eq!(HuberLoss::new().forward(&Tensor::full(&[2], 3.0), &Tensor::zeros(&[2])).item(), 2.5);"
);
loss_type!(
    BCELoss,
    input,
    target,
    "assert!((BCELoss::new().forward(&Tensor::full(&[1], 0.5), &Tensor::ones(&[1])).item() - 2f64.ln()).abs() < 1e-6);"
);
loss_type!(
    BCEWithLogitsLoss,
    input,
    target,
    "assert!((BCEWithLogitsLoss::new().forward(&Tensor::zeros(&[1]), &Tensor::ones(&[1])).item() - 2f64.ln()).abs() < 1e-6);"
);
loss_type!(
    CrossEntropyLoss,
    logits,
    target,
    "assert!((CrossEntropyLoss::new().forward(&Tensor::zeros(&[2, 4]), &Tensor::from_vec(vec![0i64, 3], &[2])).item() - 4f64.ln()).abs() < 1e-6);"
);
loss_type!(
    NLLLoss,
    log_probs,
    target,
    "assert_eq!(NLLLoss::new().forward(&Tensor::full(&[1, 2], -0.5), &Tensor::from_vec(vec![1i64], &[1])).item(), 0.5);"
);

mod ctc;
mod margin;

pub use ctc::CTCLoss;
pub use margin::{
    CosineEmbeddingLoss, GaussianNLLLoss, HingeEmbeddingLoss, MarginRankingLoss, PoissonNLLLoss,
    SoftMarginLoss, TripletMarginLoss,
};

/// The broadcast shape of a loss's two operands, or an error naming the loss.
#[track_caller]
fn pair_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    tapegrad_tape::arith::broadcast_pair(op, input, target, Location::caller()).map(drop)
}

impl MSELoss {
    /// [`MSELoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::MSELoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(MSELoss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        pair_shape("mse_loss", input, target)?;
        Ok(reduce_loss(unary::square(&(input - target)), self.reduction))
    }
}

impl L1Loss {
    /// [`L1Loss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::L1Loss;
    /// use tapegrad_tape::Tensor;
    /// assert!(L1Loss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        pair_shape("l1_loss", input, target)?;
        Ok(reduce_loss(unary::abs(&(input - target)), self.reduction))
    }
}

/// `0.5 d^2 / beta` below `beta`, `|d| - 0.5 beta` above, per element.
#[track_caller]
fn smooth_l1(input: &Tensor, target: &Tensor, beta: f64) -> Tensor {
    let d = input - target;
    if beta == 0.0 {
        return unary::abs(&d);
    }
    // One elementwise op of `d`, PyTorch's formulas: `|d| < beta ? 0.5 d² / beta : |d| -
    // beta / 2`, whose slope is `d / beta` clamped to [-1, 1] (NaN stays NaN).
    let b32 = beta as f32;
    elementwise::unary_with(
        "smooth_l1_loss",
        &d,
        move |v| if v.abs() < b32 { 0.5 * v * v / b32 } else { v.abs() - 0.5 * b32 },
        move |v| if v.abs() < beta { 0.5 * v * v / beta } else { v.abs() - 0.5 * beta },
        || {
            Backward::new(move |ctx| {
                let d = ctx.saved(0);
                let fused = elementwise::fused_rule_with(
                    ctx,
                    d,
                    move |g, v| g * (v / b32).clamp(-1.0, 1.0),
                    move |g, v| g * (v / beta).clamp(-1.0, 1.0),
                );
                if let Some(grad) = fused {
                    return smallvec![Some(grad)];
                }
                // Recorded, so that the second derivative is clamp's: 1 / beta strictly
                // inside, 0 outside (PyTorch's double backward).
                let slope = unary::clamp(&d.div_scalar(beta), Some(-1.0), Some(1.0));
                smallvec![Some(ctx.grad() * &slope)]
            })
            .save(&d)
        },
    )
}

#[track_caller]
fn check_threshold(op: &'static str, name: &str, value: f64) -> Result<()> {
    if value.is_nan() || value < 0.0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{name} must be non-negative, got {value}"),
            location: Location::caller(),
        });
    }
    Ok(())
}

impl SmoothL1Loss {
    /// [`SmoothL1Loss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::SmoothL1Loss;
    /// use tapegrad_tape::Tensor;
    /// assert!(SmoothL1Loss::new().beta(-1.0).try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[2])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        pair_shape("smooth_l1_loss", input, target)?;
        check_threshold("smooth_l1_loss", "beta", self.beta)?;
        Ok(reduce_loss(smooth_l1(input, target, self.beta), self.reduction))
    }
}

impl HuberLoss {
    /// [`HuberLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::HuberLoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(HuberLoss::new().delta(-1.0).try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[2])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        pair_shape("huber_loss", input, target)?;
        if self.delta.is_nan() || self.delta <= 0.0 {
            return Err(Error::InvalidArgument {
                op: "huber_loss",
                message: format!("delta must be positive, got {}", self.delta),
                location: Location::caller(),
            });
        }
        // Huber with delta is delta times smooth L1 with beta = delta.
        let each = smooth_l1(input, target, self.delta).mul_scalar(self.delta.max(0.0));
        Ok(reduce_loss(each, self.reduction))
    }
}

/// `loss * weight` when a weight is given, with the weight's shape checked to broadcast.
#[track_caller]
fn weighted(op: &'static str, loss: Tensor, weight: Option<&Tensor>) -> Result<Tensor> {
    match weight {
        None => Ok(loss),
        Some(w) => {
            let shape = tapegrad_tape::arith::broadcast_pair(op, &loss, w, Location::caller())?;
            if shape.as_slice() != loss.shape() {
                return Err(Error::Shape {
                    op,
                    message: format!(
                        "weight of shape {:?} does not broadcast to the loss's shape {:?}",
                        w.shape(),
                        loss.shape()
                    ),
                    location: Location::caller(),
                });
            }
            Ok(&loss * &w.to_dtype(loss.dtype()))
        }
    }
}

impl BCELoss {
    /// [`BCELoss::forward`], returning an error instead of panicking: PyTorch raises, as
    /// this does, when an element of `input` or `target` is outside [0, 1] or NaN.
    ///
    /// ```
    /// use tapegrad_ops::BCELoss;
    /// use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![0.5f32, 1.5], &[2]);
    /// let err = BCELoss::new().try_forward(&p, &Tensor::ones(&[2])).unwrap_err();
    /// assert!(err.to_string().contains("between 0 and 1"), "{err}");
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy";
        let location = Location::caller();
        let shape = tapegrad_tape::arith::broadcast_pair(OP, input, target, location)?;
        for (name, t) in [("input", input), ("target", target)] {
            if let Some((i, v)) = first_outside_unit_interval(t) {
                return Err(Error::InvalidArgument {
                    op: OP,
                    message: format!(
                        "all elements of {name} should be between 0 and 1, but element {i} is {v}"
                    ),
                    location,
                });
            }
        }
        let value = elementwise::zip::<Bce>(input, target, &shape);
        // The derivatives of one element in the input and the target: one pass each when
        // they will not be differentiated again, else composed of recorded ops (the same
        // arithmetic in the same order, so the same bits).
        let d_input = |p: &Tensor, y: &Tensor| {
            if !tapegrad_tape::is_grad_enabled() {
                return elementwise::zip::<BceInputSlope>(p, y, &shape_of(p, y));
            }
            let variance = unary::clamp(&(p * &p.rsub_scalar(1.0)), Some(BCE_EPSILON), None);
            &(p - y) / &variance
        };
        // PyTorch leaves these logs unclamped: infinite at p = 0 or 1.
        let d_target = |p: &Tensor| {
            if !tapegrad_tape::is_grad_enabled() {
                return elementwise::map::<BceTargetSlope>(p);
            }
            &unary::log1p(&-p) - &unary::log(p)
        };
        let make_backward = || {
            Backward::new(move |ctx| {
                let (g, p, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
                smallvec![
                    ctx.needs_input_grad(0).then(|| (g * &d_input(p, y)).sum_to_shape(p.shape())),
                    ctx.needs_input_grad(1).then(|| (g * &d_target(p)).sum_to_shape(y.shape())),
                ]
            })
            .save(input)
            .save(target)
        };
        let loss =
            record_with_tangent(OP, location, &[input, target], value, make_backward, |ctx| {
                ctx.sum(|i, v| match i {
                    0 => v * &d_input(input, target),
                    _ => v * &d_target(input),
                })
            });
        Ok(reduce_loss(weighted(OP, loss, self.weight.as_ref())?, self.reduction))
    }
}

/// The floor of `p (1 - p)` in the input gradient: PyTorch's `1e-12`, a C `float` constant, so
/// its value is the f32 nearest 1e-12 in both dtypes.
const BCE_EPSILON: f64 = 1e-12f32 as f64;

/// Where `t` has an element outside [0, 1] (or NaN), and its value: BCE's domain check.
/// A branch-free pass over float tensors finds whether there is one; only then are the
/// values searched for the first.
fn first_outside_unit_interval(t: &Tensor) -> Option<(usize, f64)> {
    fn all_inside<T: Element>(values: &[T]) -> bool {
        values.iter().fold(true, |inside, &v| inside & (v >= T::ZERO) & (v <= T::ONE))
    }
    let inside = match t.contiguous_storage() {
        Storage::F32(v) => all_inside(&v),
        Storage::F64(v) => all_inside(&v),
        Storage::I64(_) | Storage::Bool(_) => false,
    };
    if inside {
        return None;
    }
    t.to_vec::<f64>().into_iter().enumerate().find(|(_, v)| !(0.0..=1.0).contains(v))
}

// Binary cross-entropy's element functions, as types: the vector loops are certain to
// inline them (closures of this size were left out of line, a call per element).

// One element of the loss, with PyTorch's logs clamped at -100 (written out: NaN must reach
// the loss, and `Float::max` would drop it).
binary_fn!(Bce, |p, y| {
    let floor = T::from_f64(-100.0);
    let log_p = p.ln_vectorisable();
    let log_q = (-p).ln_1p_vectorisable();
    let log_p = if log_p < floor { floor } else { log_p };
    let log_q = if log_q < floor { floor } else { log_q };
    -(y * log_p + (T::ONE - y) * log_q)
});

// The derivative in the input `p` at target `y`: `(p - y) / max(p (1 - p), ε)` (a NaN
// variance stays NaN, as `clamp` keeps it).
binary_fn!(BceInputSlope, |p, y| {
    let epsilon = T::from_f64(BCE_EPSILON);
    let variance = p * (T::ONE - p);
    (p - y) / if variance < epsilon { epsilon } else { variance }
});

// The derivative in the target at input `p`: `ln(1 - p) - ln(p)`, unclamped.
unary_fn!(BceTargetSlope, |p| (-p).ln_1p_vectorisable() - p.ln_vectorisable());

// Binary cross-entropy on logits: its derivative in the logit `x` at target `y`.
binary_fn!(SigmoidMinus, |x, y| unary::sigmoid(x) - y);

/// The shape that a loss's input and target broadcast to (checked when the loss was taken).
fn shape_of(input: &Tensor, target: &Tensor) -> Vec<usize> {
    let shape = tapegrad_tape::layout::broadcast_shapes(input.shape(), target.shape());
    shape.expect("shapes checked in forward").to_vec()
}

impl BCEWithLogitsLoss {
    /// [`BCEWithLogitsLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::BCEWithLogitsLoss;
    /// use tapegrad_tape::Tensor;
    /// let (x, y) = (Tensor::zeros(&[2, 3]), Tensor::ones(&[2, 3]));
    /// // A positive weight of 3: the loss of every (positive) element triples.
    /// let plain = BCEWithLogitsLoss::new().forward(&x, &y).item();
    /// let weighted = BCEWithLogitsLoss::new().pos_weight(&Tensor::full(&[3], 3.0)).forward(&x, &y);
    /// assert!((weighted.item() - 3.0 * plain).abs() < 1e-6);
    /// assert!(BCEWithLogitsLoss::new().try_forward(&x, &Tensor::ones(&[4])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy_with_logits";
        let location = Location::caller();
        let shape = tapegrad_tape::arith::broadcast_pair(OP, input, target, location)?;
        let loss = match &self.pos_weight {
            None => {
                let value = binary::zip_value(
                    input,
                    target,
                    &shape,
                    |x, y| x.max(0.0) - x * y + unary::softplus(-x.abs()),
                    |x, y| x.max(0.0) - x * y + unary::softplus(-x.abs()),
                );
                let make_backward = || {
                    Backward::new(|ctx| {
                        let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
                        // `sigmoid(x) - y` in one pass when it will not be differentiated
                        // again (the same bits as the recorded ops).
                        let slope = || match tapegrad_tape::is_grad_enabled() {
                            false => elementwise::zip::<SigmoidMinus>(x, y, &shape_of(x, y)),
                            true => &unary::sigmoid_op(x) - y,
                        };
                        smallvec![
                            ctx.needs_input_grad(0).then(|| (g * &slope()).sum_to_shape(x.shape())),
                            ctx.needs_input_grad(1).then(|| (-(g * x)).sum_to_shape(y.shape())),
                        ]
                    })
                    .save(input)
                    .save(target)
                };
                let tangent = |ctx: &tapegrad_tape::TangentCtx<'_>| {
                    ctx.sum(|i, v| match i {
                        0 => v * &(&unary::sigmoid_op(input) - target),
                        _ => -(v * input),
                    })
                };
                record_with_tangent(OP, location, &[input, target], value, make_backward, tangent)
            }
            Some(pos_weight) => {
                // PyTorch's form: (1 - y) x + (1 + (pw - 1) y) softplus(-x), composed so
                // that its derivatives of every order follow.
                let pw = pos_weight.to_dtype(input.dtype());
                if tapegrad_tape::layout::broadcast_shapes(&shape, pw.shape()).is_none() {
                    return Err(Error::Shape {
                        op: OP,
                        message: format!(
                            "pos_weight of shape {:?} does not broadcast to the input's shape \
                             {:?}",
                            pw.shape(),
                            shape
                        ),
                        location,
                    });
                }
                let log_weight = (&(&pw - 1.0) * target).add_scalar(1.0);
                let softplus_neg = unary::softplus_op(&-input, 1.0, f64::INFINITY);
                &(&target.rsub_scalar(1.0) * input) + &(&log_weight * &softplus_neg)
            }
        };
        Ok(reduce_loss(weighted(OP, loss, self.weight.as_ref())?, self.reduction))
    }
}

impl NLLLoss {
    /// [`NLLLoss::forward`], returning an error for bad shapes or out-of-range classes.
    ///
    /// ```
    /// use tapegrad_ops::NLLLoss;
    /// use tapegrad_tape::Tensor;
    /// let logp = Tensor::zeros(&[2, 3]);
    /// let bad = Tensor::from_vec(vec![0i64, 3], &[2]);
    /// assert!(NLLLoss::new().try_forward(&logp, &bad).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        nll_loss(log_probs, target, self.weight.as_ref(), self.ignore_index, self.reduction)
    }
}

#[track_caller]
fn nll_loss(
    log_probs: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    let classes = ClassTargets::check(log_probs, target, weight, ignore_index, Location::caller())?;
    let ClassTargets { input, target, safe, weights: w } = classes;
    let index = shape::unsqueeze(&Tensor::from_vec(safe, target.shape()), 1)?;
    let picked = shape::squeeze(&crate::index::gather(&input, 1, &index)?, Some(1))?;
    let weights = Tensor::from_vec(w.clone(), target.shape()).to_dtype(input.dtype());
    let losses = -(&picked * &weights);
    Ok(reduce_class_losses(losses, log_probs.dim() == 1, reduction, &w))
}

/// The per-target losses of a class-index loss reduced as `reduction` says: the mean is
/// over the targets' `weights` (ignored targets weigh 0), and an unbatched input's one loss
/// is a scalar.
fn reduce_class_losses(
    losses: Tensor,
    unbatched: bool,
    reduction: Reduction,
    weights: &[f64],
) -> Tensor {
    match reduction {
        Reduction::None if unbatched => shape::reshape_to(&losses, &[]),
        Reduction::None => losses,
        Reduction::Sum => reduce::sum(&losses),
        Reduction::Mean => reduce::sum(&losses).div_scalar(weights.iter().sum::<f64>()),
    }
}

/// The class-index targets of `nll_loss` (and of `cross_entropy` with class targets),
/// checked against the input of shape `[C]`, `[N, C]` or `[N, C, d1, ...]`.
struct ClassTargets {
    /// The input, an unbatched `[C]` promoted to `[1, C]`.
    input: Tensor,
    /// The targets, promoted likewise.
    target: Tensor,
    /// Each target's class, 0 for ignored ones.
    safe: Vec<i64>,
    /// Each target's weight: its class's, 0 for ignored ones.
    weights: Vec<f64>,
}

impl ClassTargets {
    fn check(
        log_probs: &Tensor,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: i64,
        location: &'static Location<'static>,
    ) -> Result<Self> {
        ensure_float("nll_loss", log_probs, location)?;
        let bad = |message: String| Error::Shape { op: "nll_loss", message, location };
        if target.dtype() != DType::I64 {
            return Err(Error::InvalidArgument {
                op: "nll_loss",
                message: format!("targets must be int64 class indices, got {}", target.dtype()),
                location,
            });
        }
        if log_probs.dim() == 0 {
            return Err(bad(
                "input must be [C], [N, C] or [N, C, d1, ...], got a zero-dimensional tensor"
                    .into(),
            ));
        }
        // Promote an unbatched [C] input to [1, C] (its target is one class index).
        let (input, target) = if log_probs.dim() == 1 {
            if target.numel() != 1 || target.dim() > 1 {
                return Err(bad(format!(
                    "an unbatched input of shape {:?} takes a single target index, got shape \
                     {:?}",
                    log_probs.shape(),
                    target.shape()
                )));
            }
            (shape::unsqueeze(log_probs, 0)?, shape::reshape_to(target, &[1]))
        } else {
            (log_probs.clone(), target.clone())
        };
        let classes = input.shape()[1];
        let mut expected = input.shape().to_vec();
        expected.remove(1);
        if target.shape() != expected.as_slice() {
            return Err(bad(format!(
                "target shape {:?} does not match input shape {:?} (expected {expected:?})",
                target.shape(),
                input.shape()
            )));
        }
        let labels = target.to_vec::<i64>();
        for (k, &c) in labels.iter().enumerate() {
            if c != ignore_index {
                crate::index::check_index("nll_loss", c, k, target.shape(), classes, location)?;
            }
        }
        let class_weight: Vec<f64> = match weight {
            Some(w) if w.shape() != [classes] => {
                return Err(bad(format!("weight has shape {:?}, expected [{classes}]", w.shape())));
            }
            Some(w) => w.to_vec::<f64>(),
            None => vec![1.0; classes],
        };
        let safe = labels.iter().map(|&c| if c == ignore_index { 0 } else { c }).collect();
        let weights = labels
            .iter()
            .map(|&c| if c == ignore_index { 0.0 } else { class_weight[c as usize] })
            .collect();
        Ok(ClassTargets { input, target, safe, weights })
    }
}

/// Cross-entropy of `[N, C]` (or `[C]`) logits against class indices, as one recorded op:
/// each row's loss straight from the logits, without writing their log-softmax, and each
/// row's gradient in one pass (see `tapegrad_kernels::softmax::cross_entropy`). The values
/// are those of `nll_loss` of `log_softmax`, bit for bit; under `create_graph` the
/// gradient is recorded as `(softmax(x) - onehot) * g * w`, so it differentiates again.
#[track_caller]
fn cross_entropy_of_rows(
    logits: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
) -> Result<Tensor> {
    use tapegrad_kernels::softmax::{cross_entropy, cross_entropy_backward};
    use tapegrad_tape::layout::Layout;
    let location = Location::caller();
    let classes = ClassTargets::check(logits, target, weight, ignore_index, location)?;
    let ClassTargets { input, safe, weights, .. } = classes;
    let (rows, n) = (input.shape()[0], input.shape()[1]);
    let picks: Vec<usize> = safe.iter().map(|&c| c as usize).collect();
    let x = input.contiguous_storage();
    let (losses, stats) = match &x {
        Storage::F32(v) => {
            let r = cross_entropy(v, n, &picks);
            let w: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
            let losses = r.losses.iter().zip(&w).map(|(&l, &w)| l * w).collect::<Vec<_>>();
            (
                Storage::from_vec(losses),
                (Storage::from_vec(r.maxima), Storage::from_vec(r.log_sums)),
            )
        }
        Storage::F64(v) => {
            let r = cross_entropy(v, n, &picks);
            let losses = r.losses.iter().zip(&weights).map(|(&l, &w)| l * w).collect::<Vec<_>>();
            (
                Storage::from_vec(losses),
                (Storage::from_vec(r.maxima), Storage::from_vec(r.log_sums)),
            )
        }
        Storage::I64(_) | Storage::Bool(_) => unreachable!("float checked"),
    };
    let value = Tensor::from_storage(losses, Layout::contiguous(&[rows]));
    let per_row = {
        let weights = weights.clone();
        let hot_columns = picks.clone();
        let onehot = move |dtype: DType| {
            let mut hot = vec![0.0f64; rows * n];
            for (r, &t) in hot_columns.iter().enumerate() {
                hot[r * n + t] = 1.0;
            }
            Tensor::from_vec(hot, &[rows, n]).to_dtype(dtype)
        };
        let onehot_for_tangent = onehot.clone();
        let weights_for_tangent = weights.clone();
        let saved_input = input.clone();
        let make_backward = move || {
            let (weights, picks, stats, onehot) =
                (weights.clone(), picks.clone(), stats.clone(), onehot.clone());
            Backward::new(move |ctx| {
                let x = ctx.saved(0);
                let row_weights = Tensor::from_vec(weights.clone(), &[rows]).to_dtype(x.dtype());
                let scale = ctx.grad() * &row_weights;
                if !tapegrad_tape::is_grad_enabled() {
                    // A plain backward: one pass over each row.
                    let (x, scale) = (x.contiguous_storage(), scale.contiguous_storage());
                    let dx = match (&x, &scale, &stats) {
                        (Storage::F32(x), Storage::F32(c), (Storage::F32(m), Storage::F32(l))) => {
                            Storage::from_vec(cross_entropy_backward(x, n, &picks, m, l, c))
                        }
                        (Storage::F64(x), Storage::F64(c), (Storage::F64(m), Storage::F64(l))) => {
                            Storage::from_vec(cross_entropy_backward(x, n, &picks, m, l, c))
                        }
                        _ => unreachable!("float dtypes checked in forward"),
                    };
                    return smallvec![Some(Tensor::from_storage(
                        dx,
                        Layout::contiguous(&[rows, n])
                    ))];
                }
                let probs = softmax_op(x, 1, false).expect("a float [N, C] tensor");
                let scale = shape::unsqueeze(&scale, 1).expect("one dimension");
                smallvec![Some(&(&probs - &onehot(x.dtype())) * &scale)]
            })
            .save(&saved_input)
        };
        record_with_tangent("cross_entropy", location, &[&input], value, make_backward, |ctx| {
            // d loss_r = w_r (Σ_j softmax(x)_rj v_rj - v_r,t)
            let x = ctx.input(0);
            ctx.map(|v| {
                let probs = softmax_op(x, 1, false).expect("a float [N, C] tensor");
                let spread = &probs - &onehot_for_tangent(v.dtype());
                let w = Tensor::from_vec(weights_for_tangent.clone(), &[rows]).to_dtype(v.dtype());
                &reduce::sum_dim(&(&spread * v), 1, false).expect("dimension 1") * &w
            })
        })
    };
    Ok(reduce_class_losses(per_row, logits.dim() == 1, reduction, &weights))
}

impl CrossEntropyLoss {
    /// [`CrossEntropyLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::{CrossEntropyLoss, Reduction};
    /// use tapegrad_tape::Tensor;
    /// let logits = Tensor::zeros(&[3, 4]);
    /// let probs = Tensor::full(&[3, 4], 0.25);
    /// let each = CrossEntropyLoss::new().reduction(Reduction::None).try_forward(&logits, &probs);
    /// assert_eq!(each.unwrap().shape(), &[3]);
    /// assert!(CrossEntropyLoss::new().label_smoothing(1.5).try_forward(&logits, &probs).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        let location = Location::caller();
        ensure_float(OP, logits, location)?;
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!("label_smoothing must be in [0, 1], got {eps}"),
                location,
            });
        }
        let class_dim = if logits.dim() == 1 { 0 } else { 1 };
        // Class targets of a batch of rows without smoothing: one op straight from the
        // logits (the composed form below writes their whole log-softmax first).
        let rows_of_classes =
            logits.dim() <= 2 && logits.shape().get(class_dim as usize) > Some(&0);
        if target.dtype() == DType::I64 && eps == 0.0 && rows_of_classes {
            return cross_entropy_of_rows(
                logits,
                target,
                self.weight.as_ref(),
                self.ignore_index,
                self.reduction,
            );
        }
        let log_probs = softmax_op(logits, class_dim, true)?;
        let classes = logits.shape()[class_dim as usize];
        // The class weights shaped to broadcast against the log-probabilities.
        let class_weight = match &self.weight {
            Some(w) if w.shape() != [classes] => {
                return Err(Error::Shape {
                    op: OP,
                    message: format!("weight has shape {:?}, expected [{classes}]", w.shape()),
                    location,
                });
            }
            Some(w) => {
                let mut shape = vec![1; logits.dim()];
                shape[class_dim as usize] = classes;
                Some(shape::reshape_to(&w.to_dtype(logits.dtype()), &shape))
            }
            None => None,
        };
        let weigh = |t: &Tensor| match &class_weight {
            Some(w) => t * w,
            None => t.clone(),
        };
        if target.dtype() == DType::I64 {
            let nll = nll_loss(
                &log_probs,
                target,
                self.weight.as_ref(),
                self.ignore_index,
                self.reduction,
            )?;
            if eps == 0.0 {
                return Ok(nll);
            }
            // PyTorch's smoothing term: the (weighted) sum of every class's -log p, zero for
            // ignored samples, reduced with the same normaliser as the NLL term.
            let smooth = -reduce::sum_dim(&weigh(&log_probs), class_dim, false)?;
            let labels = target.to_vec::<i64>();
            let kept: Vec<f64> =
                labels.iter().map(|&c| if c == self.ignore_index { 0.0 } else { 1.0 }).collect();
            let keep = Tensor::from_vec(kept.clone(), smooth.shape()).to_dtype(logits.dtype());
            let smooth = &smooth * &keep;
            let smooth = match self.reduction {
                Reduction::None => smooth,
                Reduction::Sum => reduce::sum(&smooth),
                Reduction::Mean => {
                    let normaliser: f64 = match &self.weight {
                        Some(w) => {
                            let w = w.to_vec::<f64>();
                            labels
                                .iter()
                                .filter(|&&c| c != self.ignore_index)
                                .map(|&c| w[c as usize])
                                .sum()
                        }
                        None => kept.iter().sum(),
                    };
                    reduce::sum(&smooth).div_scalar(normaliser)
                }
            };
            return Ok(&nll.mul_scalar(1.0 - eps) + &smooth.mul_scalar(eps / classes as f64));
        }
        if target.shape() != logits.shape() || target.dtype() != logits.dtype() {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "probability targets must match the logits' shape {:?} and dtype {}, got \
                     {:?} {}",
                    logits.shape(),
                    logits.dtype(),
                    target.shape(),
                    target.dtype()
                ),
                location,
            });
        }
        let target = if eps > 0.0 {
            target.mul_scalar(1.0 - eps).add_scalar(eps / classes as f64)
        } else {
            target.clone()
        };
        let per_sample = -reduce::sum_dim(&weigh(&(&target * &log_probs)), class_dim, false)?;
        Ok(reduce_loss(per_sample, self.reduction))
    }
}
