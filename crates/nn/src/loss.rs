//! Losses as values (PyTorch's `nn.MSELoss` and friends) over the functions of
//! `tapegrad_ops::functional`, and weight penalties.

use tapegrad_ops::functional::{self as F, LossOptions};
use tapegrad_ops::{Reduction, TensorOps};
use tapegrad_tape::Tensor;

macro_rules! pair_loss {
    ($(#[$doc:meta])* $name:ident, |$s:ident, $i:ident, $t:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            /// How per-element losses combine.
            pub reduction: Reduction,
        }

        impl $name {
            /// The loss with mean reduction.
            pub fn new() -> Self {
                Self::default()
            }

            /// The loss of `input` against `target`.
            #[track_caller]
            pub fn forward(&self, $i: &Tensor, $t: &Tensor) -> Tensor {
                let $s = self;
                $body
            }
        }
    };
}

pair_loss!(
    /// Mean squared error.
    ///
    /// ```
    /// use tapegrad_nn::MSELoss;
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(MSELoss::new().forward(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 1.0);
    /// ```
    MSELoss,
    |s, input, target| F::mse_loss_with(input, target, s.reduction)
);
pair_loss!(
    /// Mean absolute error.
    ///
    /// ```
    /// use tapegrad_nn::L1Loss;
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(L1Loss::new().forward(&Tensor::full(&[2], -3.0), &Tensor::zeros(&[2])).item(), 3.0);
    /// ```
    L1Loss,
    |s, input, target| F::l1_loss_with(input, target, s.reduction)
);
pair_loss!(
    /// Binary cross-entropy of probabilities.
    ///
    /// ```
    /// use tapegrad_nn::BCELoss;
    /// use tapegrad_tape::Tensor;
    /// let loss = BCELoss::new().forward(&Tensor::full(&[1], 0.5), &Tensor::ones(&[1]));
    /// assert!((loss.item() - 2f64.ln()).abs() < 1e-6);
    /// ```
    BCELoss,
    |s, input, target| F::binary_cross_entropy(input, target, s.reduction)
);
pair_loss!(
    /// Binary cross-entropy on logits (stable for any logit).
    ///
    /// ```
    /// use tapegrad_nn::BCEWithLogitsLoss;
    /// use tapegrad_tape::Tensor;
    /// let loss = BCEWithLogitsLoss::new().forward(&Tensor::zeros(&[1]), &Tensor::ones(&[1]));
    /// assert!((loss.item() - 2f64.ln()).abs() < 1e-6);
    /// ```
    BCEWithLogitsLoss,
    |s, input, target| F::binary_cross_entropy_with_logits(input, target, s.reduction)
);

/// Huber-style loss with threshold `beta`.
///
/// ```
/// use tapegrad_nn::SmoothL1Loss;
/// use tapegrad_tape::Tensor;
/// let loss = SmoothL1Loss::new(1.0).forward(&Tensor::full(&[1], 3.0), &Tensor::zeros(&[1]));
/// assert_eq!(loss.item(), 2.5);
/// ```
#[derive(Clone, Debug)]
pub struct SmoothL1Loss {
    /// Where the loss turns from quadratic to linear.
    pub beta: f64,
    /// How per-element losses combine.
    pub reduction: Reduction,
}

impl SmoothL1Loss {
    /// The loss with mean reduction.
    pub fn new(beta: f64) -> Self {
        SmoothL1Loss { beta, reduction: Reduction::Mean }
    }

    /// The loss of `input` against `target`.
    #[track_caller]
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        F::smooth_l1_loss(input, target, self.beta, self.reduction)
    }
}

/// Cross-entropy of logits against class indices (int64) or class probabilities.
///
/// ```
/// use tapegrad_nn::CrossEntropyLoss;
/// use tapegrad_tape::Tensor;
/// let loss = CrossEntropyLoss::default().forward(&Tensor::zeros(&[2, 4]), &Tensor::from_vec(vec![0i64, 3], &[2]));
/// assert!((loss.item() - 4f64.ln()).abs() < 1e-6);
/// ```
#[derive(Clone, Default)]
pub struct CrossEntropyLoss {
    /// Reduction, ignored class and class weights.
    pub options: LossOptions,
}

impl CrossEntropyLoss {
    /// The loss of `logits` against `target`.
    #[track_caller]
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        tapegrad_tape::or_panic(F::cross_entropy_with(logits, target, &self.options))
    }
}

/// Negative log-likelihood of class indices under log-probabilities.
///
/// ```
/// use tapegrad_nn::NLLLoss;
/// use tapegrad_tape::Tensor;
/// let logp = Tensor::full(&[1, 2], -0.5);
/// assert_eq!(NLLLoss::default().forward(&logp, &Tensor::from_vec(vec![1i64], &[1])).item(), 0.5);
/// ```
#[derive(Clone, Default)]
pub struct NLLLoss {
    /// Reduction, ignored class and class weights.
    pub options: LossOptions,
}

impl NLLLoss {
    /// The loss of `log_probs` against `target`.
    #[track_caller]
    pub fn forward(&self, log_probs: &Tensor, target: &Tensor) -> Tensor {
        tapegrad_tape::or_panic(F::nll_loss_with(log_probs, target, &self.options))
    }
}

/// `sum |p|` over all parameters: add `lambda * l1_penalty(...)` to a loss for L1
/// regularisation.
///
/// ```
/// use tapegrad_nn::l1_penalty;
/// use tapegrad_tape::Tensor;
/// assert_eq!(l1_penalty(&[Tensor::full(&[2], -1.5)]).item(), 3.0);
/// ```
#[track_caller]
pub fn l1_penalty(params: &[Tensor]) -> Tensor {
    params.iter().map(|p| p.abs().sum()).reduce(|a, b| &a + &b).unwrap_or_else(|| Tensor::scalar(0.0f32))
}

/// `sum p^2` over all parameters: add `lambda * l2_penalty(...)` to a loss for L2
/// regularisation.
///
/// ```
/// use tapegrad_nn::l2_penalty;
/// use tapegrad_tape::Tensor;
/// assert_eq!(l2_penalty(&[Tensor::full(&[2], 3.0)]).item(), 18.0);
/// ```
#[track_caller]
pub fn l2_penalty(params: &[Tensor]) -> Tensor {
    params.iter().map(|p| p.square().sum()).reduce(|a, b| &a + &b).unwrap_or_else(|| Tensor::scalar(0.0f32))
}
