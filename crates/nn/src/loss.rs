//! Losses as values (PyTorch's `nn.MSELoss` and friends) over the functions of
//! `tapegrad_ops::functional`, and weight penalties.

use tapegrad_ops::functional::{self as F, LossOptions};
use tapegrad_ops::{Reduction, prelude::*};
use tapegrad_tape::Tensor;

/// A loss of `input` against `target` with a reduction. The examples of `new` and `forward`
/// evaluate it on the two-element `f64` sample `$input` against `$target`, whose per-element
/// losses are `$each`.
macro_rules! pair_loss {
    (
        $(#[$doc:meta])* $name:ident, |$s:ident, $i:ident, $t:ident| $body:expr,
        example: $input:expr, $target:expr => $each:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            /// How per-element losses combine.
            pub reduction: Reduction,
        }

        impl $name {
            /// The loss with mean reduction.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::", stringify!($name), ";")]
            /// use tapegrad_ops::Reduction;
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let input = Tensor::from_vec(vec!", stringify!($input), ", &[2]);")]
            #[doc = concat!("let target = Tensor::from_vec(vec!", stringify!($target), ", &[2]);")]
            #[doc = concat!("let loss = ", stringify!($name), "::new();")]
            /// assert_eq!(loss.reduction, Reduction::Mean);
            #[doc = concat!("let each: [f64; 2] = ", stringify!($each), ";")]
            /// assert!((loss.forward(&input, &target).item() - (each[0] + each[1]) / 2.0).abs() < 1e-12);
            /// ```
            pub fn new() -> Self {
                Self::default()
            }

            /// The loss of `input` against `target`.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::", stringify!($name), ";")]
            /// use tapegrad_ops::Reduction;
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let input = Tensor::from_vec(vec!", stringify!($input), ", &[2]);")]
            #[doc = concat!("let target = Tensor::from_vec(vec!", stringify!($target), ", &[2]);")]
            #[doc = concat!("let loss = ", stringify!($name), " { reduction: Reduction::None };")]
            /// let per_element = loss.forward(&input, &target).to_vec::<f64>();
            #[doc = concat!("let each: [f64; 2] = ", stringify!($each), ";")]
            /// assert!(per_element.iter().zip(each).all(|(l, e)| (l - e).abs() < 1e-12));
            /// ```
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
    |s, input, target| F::mse_loss_with(input, target, s.reduction),
    example: [1.0f64, -1.0], [0.0f64, 1.0] => [1.0, 4.0]
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
    |s, input, target| F::l1_loss_with(input, target, s.reduction),
    example: [1.0f64, -1.0], [0.0f64, 1.0] => [1.0, 2.0]
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
    |s, input, target| F::binary_cross_entropy(input, target, s.reduction),
    example: [0.5f64, 0.9], [1.0f64, 0.0] => [2f64.ln(), 10f64.ln()]
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
    |s, input, target| F::binary_cross_entropy_with_logits(input, target, s.reduction),
    example: [0.0f64, 2.0], [1.0f64, 0.0] => [2f64.ln(), (1.0 + 2f64.exp()).ln()]
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
    ///
    /// ```
    /// use tapegrad_nn::SmoothL1Loss;
    /// use tapegrad_tape::Tensor;
    /// let loss = SmoothL1Loss::new(2.0);
    /// let input = Tensor::from_vec(vec![1.0f32, 3.0], &[2]);
    /// // 0.5 d^2 / beta below beta = 2, |d| - beta / 2 above: 0.25 and 2, averaged.
    /// assert_eq!(loss.forward(&input, &Tensor::zeros(&[2])).item(), 1.125);
    /// ```
    pub fn new(beta: f64) -> Self {
        SmoothL1Loss { beta, reduction: Reduction::Mean }
    }

    /// The loss of `input` against `target`.
    ///
    /// ```
    /// use tapegrad_nn::SmoothL1Loss;
    /// use tapegrad_ops::Reduction;
    /// use tapegrad_tape::Tensor;
    /// let loss = SmoothL1Loss { beta: 1.0, reduction: Reduction::None };
    /// let input = Tensor::from_vec(vec![0.5f32, -3.0], &[2]);
    /// assert_eq!(loss.forward(&input, &Tensor::zeros(&[2])).to_vec::<f32>(), vec![0.125, 2.5]);
    /// ```
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
/// let loss = CrossEntropyLoss::default()
///     .forward(&Tensor::zeros(&[2, 4]), &Tensor::from_vec(vec![0i64, 3], &[2]));
/// assert!((loss.item() - 4f64.ln()).abs() < 1e-6);
/// ```
#[derive(Clone, Default)]
pub struct CrossEntropyLoss {
    /// Reduction, ignored class and class weights.
    pub options: LossOptions,
}

impl CrossEntropyLoss {
    /// The loss of `logits` against `target`.
    ///
    /// ```
    /// use tapegrad_nn::CrossEntropyLoss;
    /// use tapegrad_ops::{Reduction, functional::LossOptions};
    /// use tapegrad_tape::Tensor;
    /// let loss = CrossEntropyLoss {
    ///     options: LossOptions { reduction: Reduction::None, ..Default::default() },
    /// };
    /// let logits = Tensor::from_vec(vec![0.0f64, 0.0, 2f64.ln(), 0.0], &[2, 2]);
    /// let each = loss.forward(&logits, &Tensor::from_vec(vec![1i64, 0], &[2])).to_vec::<f64>();
    /// // -ln softmax(logits)[target]: ln 2 for (0, 0), ln(3/2) for (ln 2, 0) and class 0.
    /// assert!((each[0] - 2f64.ln()).abs() < 1e-12 && (each[1] - 1.5f64.ln()).abs() < 1e-12);
    /// ```
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
    ///
    /// ```
    /// use tapegrad_nn::NLLLoss;
    /// use tapegrad_ops::functional::LossOptions;
    /// use tapegrad_tape::Tensor;
    /// let logp = Tensor::from_vec(vec![-1.0f32, -2.0, -3.0, -4.0], &[2, 2]);
    /// let target = Tensor::from_vec(vec![0i64, 1], &[2]);
    /// assert_eq!(NLLLoss::default().forward(&logp, &target).item(), 2.5); // mean of 1 and 4
    /// let weight = Some(Tensor::from_vec(vec![1.0f32, 3.0], &[2]));
    /// let weighted = NLLLoss { options: LossOptions { weight, ..Default::default() } };
    /// assert_eq!(weighted.forward(&logp, &target).item(), 3.25); // (1 * 1 + 3 * 4) / (1 + 3)
    /// ```
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
    params
        .iter()
        .map(|p| p.abs().sum())
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| Tensor::scalar(0.0f32))
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
    params
        .iter()
        .map(|p| p.square().sum())
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| Tensor::scalar(0.0f32))
}
