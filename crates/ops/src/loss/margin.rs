//! Losses of margins between pairs and triplets (metric learning and ranking) and the
//! likelihood losses of Poisson and Gaussian regression, each composed of recorded ops (so
//! every derivative of every order comes with them), with PyTorch's formulas, keywords and
//! defaults.

use std::f64::consts::PI;
use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor, ensure_float};

use super::{Reduction, pair_shape, reduce_loss};
use crate::binary::select_grad;
use crate::{BinaryOps, ReduceOps, ShapeOps, UnaryOps, where_};

/// `max(x, 0)` as a recorded op.
fn clamp_min_zero(x: &Tensor) -> Tensor {
    x.clamp(Some(0.0), None)
}

/// An error unless `target` is `input`'s float dtype and broadcasts to it.
#[track_caller]
fn check_target(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    let location = Location::caller();
    ensure_float(op, input, location)?;
    ensure_float(op, target, location)?;
    pair_shape(op, input, target)
}

/// `max(0, -y (x1 - x2) + margin)`: PyTorch's `nn.MarginRankingLoss` (`margin` = 0,
/// `reduction`), for targets `y` of ±1 saying which input should rank higher.
///
/// ```
/// use tapegrad_ops::{MarginRankingLoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let (x1, x2) = (Tensor::from_vec(vec![2.0f32, 0.0], &[2]), Tensor::from_vec(vec![1.0f32, 1.0], &[2]));
/// let y = Tensor::from_vec(vec![1.0f32, 1.0], &[2]); // x1 should rank higher
/// let loss = MarginRankingLoss::new().margin(0.5).reduction(Reduction::None);
/// assert_eq!(loss.forward(&x1, &x2, &y).to_vec::<f32>(), vec![0.0, 1.5]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MarginRankingLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// The margin by which the higher-ranked input should win.
    pub margin: f64,
}

/// `max(d(a, p) - d(a, n) + margin, 0)` with `d` the p-norm distance along the last
/// dimension (plus `eps`, as PyTorch's `pairwise_distance`): PyTorch's
/// `nn.TripletMarginLoss` (`margin` = 1, `p` = 2, `eps` = 1e-6, `swap`, `reduction`).
///
/// ```
/// use tapegrad_ops::TripletMarginLoss;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
/// let p = Tensor::from_vec(vec![0.0f64, 1.0], &[1, 2]);
/// let n = Tensor::from_vec(vec![3.0f64, 0.0], &[1, 2]);
/// let loss = TripletMarginLoss::new().eps(0.0).margin(2.5).forward(&a, &p, &n);
/// assert_eq!(loss.item(), 0.5); // 1 - 3 + 2.5
/// ```
#[derive(Clone, Debug)]
pub struct TripletMarginLoss {
    /// How per-triplet losses combine.
    pub reduction: Reduction,
    /// The margin by which the negative should be farther than the positive.
    pub margin: f64,
    /// The norm's degree.
    pub p: f64,
    /// Added to each difference before the norm (keeps the norm's gradient finite).
    pub eps: f64,
    /// Whether the negative's distance is the smaller of its distances to the anchor and to
    /// the positive.
    pub swap: bool,
}

impl Default for TripletMarginLoss {
    fn default() -> Self {
        TripletMarginLoss {
            reduction: Reduction::Mean,
            margin: 1.0,
            p: 2.0,
            eps: 1e-6,
            swap: false,
        }
    }
}

/// `1 - cos(x1, x2)` for `y = 1`, `max(0, cos(x1, x2) - margin)` for `y = -1`, the cosine
/// along dimension 1 of `[N, D]` inputs (0 of `[D]`): PyTorch's `nn.CosineEmbeddingLoss`
/// (`margin` = 0, `reduction`).
///
/// ```
/// use tapegrad_ops::{CosineEmbeddingLoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let x1 = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 0.0], &[2, 2]);
/// let x2 = Tensor::from_vec(vec![1.0f64, 0.0, 0.6, 0.8], &[2, 2]);
/// let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
/// let each = CosineEmbeddingLoss::new().reduction(Reduction::None).forward(&x1, &x2, &y);
/// let each = each.to_vec::<f64>();
/// assert!(each[0].abs() < 1e-9 && (each[1] - 0.6).abs() < 1e-9);
/// ```
#[derive(Clone, Debug, Default)]
pub struct CosineEmbeddingLoss {
    /// How per-pair losses combine.
    pub reduction: Reduction,
    /// The cosine below which a dissimilar pair costs nothing.
    pub margin: f64,
}

/// `x` for `y = 1`, `max(0, margin - x)` for `y = -1` (`x` usually a distance): PyTorch's
/// `nn.HingeEmbeddingLoss` (`margin` = 1, `reduction`).
///
/// ```
/// use tapegrad_ops::{HingeEmbeddingLoss, Reduction};
/// use tapegrad_tape::Tensor;
/// let d = Tensor::from_vec(vec![0.3f32, 0.3, 2.0], &[3]);
/// let y = Tensor::from_vec(vec![1.0f32, -1.0, -1.0], &[3]);
/// let each = HingeEmbeddingLoss::new().reduction(Reduction::None).forward(&d, &y);
/// assert_eq!(each.to_vec::<f32>(), vec![0.3, 0.7, 0.0]);
/// ```
#[derive(Clone, Debug)]
pub struct HingeEmbeddingLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// The distance beyond which a dissimilar pair costs nothing.
    pub margin: f64,
}

impl Default for HingeEmbeddingLoss {
    fn default() -> Self {
        HingeEmbeddingLoss { reduction: Reduction::Mean, margin: 1.0 }
    }
}

/// `ln(1 + e^(-y x))`, the logistic loss for targets of ±1: PyTorch's `nn.SoftMarginLoss`
/// (`reduction`).
///
/// ```
/// use tapegrad_ops::SoftMarginLoss;
/// use tapegrad_tape::Tensor;
/// let loss = SoftMarginLoss::new().forward(&Tensor::zeros(&[2]), &Tensor::ones(&[2]));
/// assert!((loss.item() - 2f64.ln()).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SoftMarginLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
}

/// The negative log-likelihood of a Poisson target: `e^x - y x` on log rates
/// (`log_input`, the default) or `x - y ln(x + eps)` on rates, plus Stirling's
/// approximation of `ln(y!)` where `y > 1` with `full`: PyTorch's `nn.PoissonNLLLoss`
/// (`log_input` = true, `full` = false, `eps` = 1e-8, `reduction`).
///
/// ```
/// use tapegrad_ops::PoissonNLLLoss;
/// use tapegrad_tape::Tensor;
/// let (log_rate, count) = (Tensor::zeros(&[1]), Tensor::full(&[1], 3.0));
/// assert_eq!(PoissonNLLLoss::new().forward(&log_rate, &count).item(), 1.0); // e^0 - 3 * 0
/// ```
#[derive(Clone, Debug)]
pub struct PoissonNLLLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// Whether the input is the log of the rate.
    pub log_input: bool,
    /// Whether to add Stirling's term.
    pub full: bool,
    /// Added to a rate before its log (when `log_input` is false).
    pub eps: f64,
}

impl Default for PoissonNLLLoss {
    fn default() -> Self {
        PoissonNLLLoss { reduction: Reduction::Mean, log_input: true, full: false, eps: 1e-8 }
    }
}

/// The negative log-likelihood of a Gaussian target with predicted mean and variance:
/// `0.5 (ln(var) + (input - target)^2 / var)` (plus `0.5 ln(2 pi)` with `full`), the
/// variance clamped below at `eps` with the gradient of the unclamped variance, as in
/// PyTorch: `nn.GaussianNLLLoss` (`full` = false, `eps` = 1e-6, `reduction`). `var` is
/// shaped like the input, or like it without its last dimension or with that dimension 1
/// (one variance per sample).
///
/// ```
/// use tapegrad_ops::GaussianNLLLoss;
/// use tapegrad_tape::Tensor;
/// let (mean, target, var) = (Tensor::zeros(&[2, 3]), Tensor::ones(&[2, 3]), Tensor::ones(&[2, 1]));
/// assert_eq!(GaussianNLLLoss::new().forward(&mean, &target, &var).item(), 0.5);
/// ```
#[derive(Clone, Debug)]
pub struct GaussianNLLLoss {
    /// How per-element losses combine.
    pub reduction: Reduction,
    /// Whether to add the constant `0.5 ln(2 pi)`.
    pub full: bool,
    /// The variance's floor.
    pub eps: f64,
}

impl Default for GaussianNLLLoss {
    fn default() -> Self {
        GaussianNLLLoss { reduction: Reduction::Mean, full: false, eps: 1e-6 }
    }
}

keywords!(MarginRankingLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `margin`.
    margin: f64 => margin, example 0.5;
});
keywords!(TripletMarginLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `margin`.
    margin: f64 => margin, example 0.5;
    /// Sets `p`, the norm's degree.
    p: f64 => p, example 1.0;
    /// Sets `eps`.
    eps: f64 => eps, example 0.0;
    /// Sets `swap`.
    swap: bool => swap, example true;
});
keywords!(CosineEmbeddingLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `margin`.
    margin: f64 => margin, example 0.5;
});
keywords!(HingeEmbeddingLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `margin`.
    margin: f64 => margin, example 2.0;
});
keywords!(SoftMarginLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
});
keywords!(PoissonNLLLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `log_input`.
    log_input: bool => log_input, example false;
    /// Sets `full`.
    full: bool => full, example true;
    /// Sets `eps`.
    eps: f64 => eps, example 1e-6;
});
keywords!(GaussianNLLLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `full`.
    full: bool => full, example true;
    /// Sets `eps`.
    eps: f64 => eps, example 1e-3;
});

loss_type!(
    HingeEmbeddingLoss,
    input,
    target,
    "assert_eq!(HingeEmbeddingLoss::new().forward(&Tensor::full(&[2], 0.25), &Tensor::full(&[2], -1.0)).item(), 0.75);"
);
loss_type!(
    SoftMarginLoss,
    input,
    target,
    "assert!((SoftMarginLoss::new().forward(&Tensor::zeros(&[1]), &Tensor::full(&[1], -1.0)).item() - 2f64.ln()).abs() < 1e-6);"
);
loss_type!(
    PoissonNLLLoss,
    input,
    target,
    "assert_eq!(PoissonNLLLoss::new().forward(&Tensor::zeros(&[2]), &Tensor::ones(&[2])).item(), 1.0);"
);

/// `new`, `forward` (panicking) and the fields' defaults of a loss of three tensors.
macro_rules! three_operand_loss {
    ($ty:ident, ($a:ident, $b:ident, $c:ident), $example:literal) => {
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

            /// The loss of the three tensors; panics naming the caller's line on bad shapes
            /// or dtypes.
            ///
            /// ```
            #[doc = concat!("use tapegrad_ops::", stringify!($ty), ";")]
            /// use tapegrad_tape::Tensor;
            #[doc = $example]
            /// ```
            #[track_caller]
            pub fn forward(&self, $a: &Tensor, $b: &Tensor, $c: &Tensor) -> Tensor {
                tapegrad_tape::or_panic(self.try_forward($a, $b, $c))
            }
        }
    };
}

three_operand_loss!(
    MarginRankingLoss,
    (input1, input2, target),
    "assert_eq!(MarginRankingLoss::new().forward(&Tensor::zeros(&[2]), &Tensor::ones(&[2]), &Tensor::ones(&[2])).item(), 1.0);"
);
three_operand_loss!(
    TripletMarginLoss,
    (anchor, positive, negative),
    "assert!(TripletMarginLoss::new().forward(&Tensor::zeros(&[2, 3]), &Tensor::zeros(&[2, 3]), &Tensor::ones(&[2, 3])).item() < 1e-5);"
);
three_operand_loss!(
    CosineEmbeddingLoss,
    (input1, input2, target),
    "assert!(CosineEmbeddingLoss::new().forward(&Tensor::ones(&[2, 3]), &Tensor::ones(&[2, 3]), &Tensor::ones(&[2])).item().abs() < 1e-6);"
);
three_operand_loss!(
    GaussianNLLLoss,
    (input, target, var),
    "assert_eq!(GaussianNLLLoss::new().forward(&Tensor::zeros(&[3]), &Tensor::zeros(&[3]), &Tensor::ones(&[3])).item(), 0.0);"
);

impl MarginRankingLoss {
    /// [`MarginRankingLoss::forward`], returning an error for shapes that do not broadcast
    /// or non-float tensors.
    ///
    /// ```
    /// use tapegrad_ops::MarginRankingLoss;
    /// use tapegrad_tape::Tensor;
    /// let (x, y) = (Tensor::ones(&[2]), Tensor::ones(&[3]));
    /// assert!(MarginRankingLoss::new().try_forward(&x, &x, &y).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input1: &Tensor, input2: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "margin_ranking_loss";
        check_target(OP, input1, input2)?;
        let difference = input1 - input2;
        check_target(OP, &difference, target)?;
        let each = clamp_min_zero(&(-&(target * &difference)).add_scalar(self.margin));
        Ok(reduce_loss(each, self.reduction))
    }
}

/// `||x1 - x2 + eps||_p` along the last dimension (PyTorch's `F.pairwise_distance`).
fn pairwise_distance(x1: &Tensor, x2: &Tensor, p: f64, eps: f64) -> Tensor {
    let options = crate::PairwiseDistanceOptions::default().p(p).eps(eps);
    crate::distance::pairwise_distance(x1, x2, options).expect("checked by the loss")
}

impl TripletMarginLoss {
    /// [`TripletMarginLoss::forward`], returning an error for embeddings of different
    /// shapes, a non-positive `p`, or non-float tensors.
    ///
    /// ```
    /// use tapegrad_ops::TripletMarginLoss;
    /// use tapegrad_tape::Tensor;
    /// let (a, n) = (Tensor::ones(&[2, 3]), Tensor::ones(&[2, 4]));
    /// assert!(TripletMarginLoss::new().try_forward(&a, &a, &n).is_err());
    /// assert!(TripletMarginLoss::new().p(0.0).try_forward(&a, &a, &a).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(
        &self,
        anchor: &Tensor,
        positive: &Tensor,
        negative: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = "triplet_margin_loss";
        let location = Location::caller();
        for (name, t) in [("anchor", anchor), ("positive", positive), ("negative", negative)] {
            ensure_float(OP, t, location)?;
            if t.shape() != anchor.shape() || t.dim() == 0 || t.dim() > 2 {
                return Err(Error::Shape {
                    op: OP,
                    message: format!(
                        "expects anchor, positive and negative of one shape [N, D] or [D]; {name} \
                        is {:?} and anchor {:?}",
                        t.shape(),
                        anchor.shape()
                    ),
                    location,
                });
            }
        }
        if self.p.is_nan() || self.p <= 0.0 {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!("the norm degree p must be positive, got {}", self.p),
                location,
            });
        }
        let positive_distance = pairwise_distance(anchor, positive, self.p, self.eps);
        let mut negative_distance = pairwise_distance(anchor, negative, self.p, self.eps);
        if self.swap {
            let swapped = pairwise_distance(positive, negative, self.p, self.eps);
            negative_distance = negative_distance.minimum(&swapped);
        }
        let each =
            clamp_min_zero(&(&positive_distance - &negative_distance).add_scalar(self.margin));
        Ok(reduce_loss(each, self.reduction))
    }
}

impl CosineEmbeddingLoss {
    /// [`CosineEmbeddingLoss::forward`], returning an error for inputs of different shapes
    /// or of rank other than 1 and 2, a target that is not one per pair, or non-float
    /// tensors.
    ///
    /// ```
    /// use tapegrad_ops::CosineEmbeddingLoss;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert!(CosineEmbeddingLoss::new().try_forward(&x, &x, &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input1: &Tensor, input2: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "cosine_embedding_loss";
        let location = Location::caller();
        for t in [input1, input2, target] {
            ensure_float(OP, t, location)?;
        }
        let pairs = match input1.shape() {
            [d] => (*d > 0).then_some(vec![]),
            [n, _] => Some(vec![*n]),
            _ => None,
        };
        if input1.shape() != input2.shape() || pairs.as_deref() != Some(target.shape()) {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "expects inputs of one shape [N, D] (or [D]) and a target [N] (or []), got \
                    {:?}, {:?} and {:?}",
                    input1.shape(),
                    input2.shape(),
                    target.shape()
                ),
                location,
            });
        }
        // PyTorch's formula: the squared magnitudes each plus 1e-12 before their product's
        // square root.
        let dim = input1.dim() as isize - 1;
        let dot = (input1 * input2).sum_dim(dim, false);
        let magnitude = |x: &Tensor| x.square().sum_dim(dim, false).add_scalar(1e-12);
        let cosine = &dot / &(&magnitude(input1) * &magnitude(input2)).sqrt();
        let one = Tensor::ones_dtype(&[], target.dtype());
        let similar = select_grad(&target.eq(&one), &cosine.rsub_scalar(1.0));
        let dissimilar =
            select_grad(&target.eq(&-&one), &clamp_min_zero(&cosine.sub_scalar(self.margin)));
        Ok(reduce_loss(&similar + &dissimilar, self.reduction))
    }
}

impl HingeEmbeddingLoss {
    /// [`HingeEmbeddingLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::HingeEmbeddingLoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(HingeEmbeddingLoss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_target("hinge_embedding_loss", input, target)?;
        let one = Tensor::ones_dtype(&[], target.dtype());
        // PyTorch's: the margin term where the target is not 1, the input where it is not -1.
        let margin_term = clamp_min_zero(&input.rsub_scalar(self.margin));
        let each =
            &select_grad(&target.ne(&one), &margin_term) + &select_grad(&target.ne(&-&one), input);
        Ok(reduce_loss(each, self.reduction))
    }
}

impl SoftMarginLoss {
    /// [`SoftMarginLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::SoftMarginLoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(SoftMarginLoss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_target("soft_margin_loss", input, target)?;
        Ok(reduce_loss((-&(input * target)).softplus(), self.reduction))
    }
}

impl PoissonNLLLoss {
    /// [`PoissonNLLLoss::forward`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_ops::PoissonNLLLoss;
    /// use tapegrad_tape::Tensor;
    /// assert!(PoissonNLLLoss::new().try_forward(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_target("poisson_nll_loss", input, target)?;
        let mut each = if self.log_input {
            &input.exp() - &(target * input)
        } else {
            input - &(target * &input.add_scalar(self.eps).log())
        };
        if self.full {
            // Stirling: y ln y - y + 0.5 ln(2 pi y), where y > 1 (0 elsewhere).
            let t = target;
            let above_one = t.gt(&Tensor::ones_dtype(&[], t.dtype()));
            let safe = where_(&above_one, t, &Tensor::ones_dtype(&[], t.dtype()));
            let stirling = &(&(&safe * &safe.log()) - &safe)
                + &safe.mul_scalar(2.0 * PI).log().mul_scalar(0.5);
            each = &each + &select_grad(&above_one, &stirling);
        }
        Ok(reduce_loss(each, self.reduction))
    }
}

impl GaussianNLLLoss {
    /// [`GaussianNLLLoss::forward`], returning an error for a negative variance, a
    /// variance of another shape than the three allowed, or non-float tensors.
    ///
    /// ```
    /// use tapegrad_ops::GaussianNLLLoss;
    /// use tapegrad_tape::Tensor;
    /// let (x, var) = (Tensor::zeros(&[2, 3]), Tensor::full(&[2, 3], -1.0));
    /// let err = GaussianNLLLoss::new().try_forward(&x, &x, &var).unwrap_err();
    /// assert!(err.to_string().contains("negative"));
    /// ```
    #[track_caller]
    pub fn try_forward(&self, input: &Tensor, target: &Tensor, var: &Tensor) -> Result<Tensor> {
        const OP: &str = "gaussian_nll_loss";
        let location = Location::caller();
        check_target(OP, input, target)?;
        ensure_float(OP, var, location)?;
        let shape = input.shape();
        let var = if var.shape() == shape {
            var.clone()
        } else if !shape.is_empty() && var.shape() == &shape[..shape.len() - 1] {
            var.unsqueeze(-1)
        } else if !shape.is_empty()
            && var.dim() == shape.len()
            && var.shape()[..shape.len() - 1] == shape[..shape.len() - 1]
            && var.shape()[shape.len() - 1] == 1
        {
            var.clone()
        } else {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "var of shape {:?} must be the input's shape {shape:?}, it without its last \
                    dimension, or it with that dimension 1",
                    var.shape()
                ),
                location,
            });
        };
        if var.to_vec::<f64>().iter().any(|v| *v < 0.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: "var has negative entries".into(),
                location,
            });
        }
        // Clamped in value, not in gradient (PyTorch clamps in place without recording).
        let floor = (&var.detach().clamp(Some(self.eps), None) - &var.detach()).detach();
        let var = &var + &floor;
        let mut each = (&var.log() + &(&(input - target).square() / &var)).mul_scalar(0.5);
        if self.full {
            each = each.add_scalar(0.5 * (2.0 * PI).ln());
        }
        Ok(reduce_loss(each, self.reduction))
    }
}
