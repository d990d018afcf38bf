//! Neural-network functions: PyTorch's `torch.nn.functional`.
//!
//! # One convention for PyTorch's keyword arguments
//!
//! Rust has no keyword arguments, so every function here comes in up to three forms:
//!
//! - `f(required...)`: PyTorch's defaults for every keyword; panics on bad input with a
//!   message naming the operation and the caller's line;
//! - `f_with(required..., options)`: the keywords as one value, the value of the keyword
//!   itself when PyTorch has one (`Reduction` for `mse_loss`), else an options type with
//!   `Default`, public fields and one builder method per keyword
//!   (`ConvOptions::default().stride(2).padding(1)`). Loss options are the loss types
//!   themselves (`CrossEntropyLoss::new().label_smoothing(0.1)`), which tapegrad-nn uses
//!   as its loss modules; a `Reduction` converts into any of them;
//! - `try_f_with` (or `try_f` where there are no keywords): the same, returning
//!   [`Result`] instead of panicking.
//!
//! Tensor methods (`x.sum_dim(1, false)`, `x.softmax(-1)`) take PyTorch's arguments in
//! PyTorch's order, `keepdim` included; activations with keywords follow the convention
//! (`x.leaky_relu()`, `x.leaky_relu_with(0.2)`).
//!
//! ```
//! use tapegrad_ops::{ConvOptions, CrossEntropyLoss, Reduction, functional as F, prelude::*};
//! use tapegrad_tape::Tensor;
//! let x = Tensor::randn(&[2, 3, 8, 8]);
//! let w = Tensor::randn(&[4, 3, 3, 3]);
//! let y = F::conv2d_with(&x, &w, None, ConvOptions::default().stride(2).padding(1));
//! let logits = F::adaptive_avg_pool2d(&y, 1).flatten(1, -1);
//! let target = Tensor::from_vec(vec![0i64, 3], &[2]);
//! let loss = F::cross_entropy_with(&logits, &target, CrossEntropyLoss::new().label_smoothing(0.1));
//! let per_sample = F::cross_entropy_with(&logits, &target, Reduction::None);
//! assert_eq!((loss.shape(), per_sample.shape()), (&[][..], &[2][..]));
//! assert!(F::try_cross_entropy_with(&logits, &Tensor::zeros(&[2]), Reduction::Mean).is_err());
//! ```

use std::panic::Location;

use tapegrad_kernels::random::bernoulli_mask;
use tapegrad_kernels::recurrent::Activation;
use tapegrad_kernels::softmax::{softmax, softmax_backward};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Error, Result, Storage, Tensor, ensure_float, or_panic, record_with_tangent,
};

use crate::dims::{blocks, resolve};
use crate::{reduce, shape, unary};

pub use crate::attention::AttentionOptions;
pub use crate::conv::{ConvOptions, IntoPair, Padding};
pub use crate::distance::{CosineSimilarityOptions, NormalizeOptions, PairwiseDistanceOptions};
pub use crate::embedding_bag::{EmbeddingBagMode, EmbeddingBagOptions};
pub use crate::grid_sample::{GridSampleMode, GridSampleOptions, GridSamplePadding};
pub use crate::interpolate::{InterpolateMode, InterpolateOptions};
pub use crate::loss::{
    BCELoss, BCEWithLogitsLoss, CTCLoss, CosineEmbeddingLoss, CrossEntropyLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, MarginRankingLoss, NLLLoss,
    PoissonNLLLoss, Reduction, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss,
};
pub use crate::norm::{
    BatchNormOptions, BatchNormStats, GroupNormOptions, InstanceNormOptions, LayerNormOptions,
};
pub use crate::pool::{AvgPool2dOptions, MaxPool2dOptions};
pub use crate::pool1d::{AvgPool1dOptions, MaxPool1dOptions};
pub use crate::shape::PadMode;
pub use crate::unfold::UnfoldOptions;

#[track_caller]
pub(crate) fn softmax_op(x: &Tensor, dim: isize, log: bool) -> Result<Tensor> {
    let location = Location::caller();
    let op = if log { "log_softmax" } else { "softmax" };
    ensure_float(op, x, location)?;
    let x0 = if x.dim() == 0 { shape::reshape_to(x, &[1]) } else { x.clone() };
    let d = resolve(op, &x0, dim, location)?;
    let shape = x0.shape();
    let sizes = blocks(shape, d);
    let storage =
        tapegrad_tape::map_float_storage!(&x0.contiguous_storage(), v => softmax(v, sizes, log));
    let value = Tensor::from_storage(storage, Layout::contiguous(x.shape()));
    let di = d as isize;
    let make_backward = || {
        Backward::new(move |ctx| {
            if !tapegrad_tape::is_grad_enabled() {
                // A plain backward: one pass over each row (the output is contiguous).
                let (ys, layout) = ctx.output_parts();
                let (g, part) = (
                    ctx.grad().contiguous_storage(),
                    layout.offset()..layout.offset() + layout.numel(),
                );
                let storage = match (ys, &g) {
                    (Storage::F32(y), Storage::F32(g)) => {
                        Storage::from_vec(softmax_backward(&y[part], g, sizes, log))
                    }
                    (Storage::F64(y), Storage::F64(g)) => {
                        Storage::from_vec(softmax_backward(&y[part], g, sizes, log))
                    }
                    _ => unreachable!("float dtypes checked in forward"),
                };
                let dx = Tensor::from_storage(storage, Layout::contiguous(layout.shape()));
                return smallvec![Some(dx)];
            }
            let (g, y) = (ctx.grad(), ctx.output());
            let shape = y.shape().to_vec();
            let (g1, y1) = if shape.is_empty() {
                (shape::reshape_to(g, &[1]), shape::reshape_to(y, &[1]))
            } else {
                (g.clone(), y.clone())
            };
            let grad = if log {
                // d log_softmax: g - softmax * sum(g)
                &g1 - &(&unary::exp(&y1) * &reduce::sum_dim(&g1, di, true).expect("dim valid"))
            } else {
                // d softmax: y * (g - sum(g * y))
                &y1 * &(&g1 - &reduce::sum_dim(&(&g1 * &y1), di, true).expect("dim valid"))
            };
            smallvec![Some(shape::reshape_to(&grad, &shape))]
        })
        .save_output()
    };
    Ok(record_with_tangent(op, location, &[x], value, make_backward, |ctx| {
        let y = ctx.output();
        let one_d = |t: &Tensor| if t.dim() == 0 { shape::reshape_to(t, &[1]) } else { t.clone() };
        ctx.map(|v| {
            let (v1, y1) = (one_d(v), one_d(y));
            let tangent = if log {
                // d log_softmax = v - sum(softmax v)
                &v1 - &reduce::sum_dim(&(&unary::exp(&y1) * &v1), di, true).expect("dim valid")
            } else {
                // d softmax = y (v - sum(y v)); the Jacobian is symmetric
                &y1 * &(&v1 - &reduce::sum_dim(&(&y1 * &v1), di, true).expect("dim valid"))
            };
            shape::reshape_to(&tangent, y.shape())
        })
    }))
}

/// A loss's three functions: the default form, the `_with` form taking the loss type (or
/// anything that converts into it, such as a `Reduction`) and the `try_` form.
macro_rules! loss_functions {
    (@inputs) => { "let (x, y) = (Tensor::full(&[3], 0.25), Tensor::full(&[3], 0.5));" };
    (@inputs $with_example:literal) => { $with_example };
    (
        $(#[$doc:meta])* $name:ident, $with:ident, $try_with:ident, $ty:ident,
        ($input:ident, $target:ident), example $example:literal, error $error:literal
        $(, with $with_example:literal)?
    ) => {
        $(#[$doc])*
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::functional::", stringify!($name), ";")]
        /// use tapegrad_tape::Tensor;
        #[doc = $example]
        /// ```
        #[track_caller]
        pub fn $name($input: &Tensor, $target: &Tensor) -> Tensor {
            $ty::new().forward($input, $target)
        }

        #[doc = concat!("[`", stringify!($name), "`] with PyTorch's keywords: a [`", stringify!($ty),
            "`] or a [`Reduction`].")]
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::{Reduction, functional::", stringify!($with), "};")]
        /// use tapegrad_tape::Tensor;
        #[doc = loss_functions!(@inputs $($with_example)?)]
        #[doc = concat!("let each = ", stringify!($with), "(&x, &y, Reduction::None);")]
        #[doc = concat!("let total = ", stringify!($with), "(&x, &y, Reduction::Sum);")]
        /// assert!((each.to_vec::<f32>().iter().sum::<f32>() - total.to_vec::<f32>()[0]).abs() < 1e-6);
        /// ```
        #[track_caller]
        pub fn $with($input: &Tensor, $target: &Tensor, options: impl Into<$ty>) -> Tensor {
            options.into().forward($input, $target)
        }

        #[doc = concat!("[`", stringify!($with), "`], returning an error instead of panicking.")]
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::{Reduction, functional::", stringify!($try_with), "};")]
        /// use tapegrad_tape::Tensor;
        #[doc = $error]
        /// ```
        #[track_caller]
        pub fn $try_with(
            $input: &Tensor,
            $target: &Tensor,
            options: impl Into<$ty>,
        ) -> Result<Tensor> {
            options.into().try_forward($input, $target)
        }
    };
}

loss_functions!(
    /// `x` for targets 1, `max(0, 1 - x)` for targets -1 (PyTorch's `F.hinge_embedding_loss`).
    hinge_embedding_loss, hinge_embedding_loss_with, try_hinge_embedding_loss_with, HingeEmbeddingLoss, (input, target),
    example "assert_eq!(hinge_embedding_loss(&Tensor::full(&[2], 0.25), &Tensor::ones(&[2])).item(), 0.25);",
    error "assert!(try_hinge_embedding_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// The logistic loss `ln(1 + e^(-y x))` for targets of ±1 (PyTorch's `F.soft_margin_loss`).
    soft_margin_loss, soft_margin_loss_with, try_soft_margin_loss_with, SoftMarginLoss, (input, target),
    example "assert!((soft_margin_loss(&Tensor::zeros(&[2]), &Tensor::ones(&[2])).item() - 2f64.ln()).abs() < 1e-6);",
    error "assert!(try_soft_margin_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// The Poisson negative log-likelihood of counts given log rates (PyTorch's
    /// `F.poisson_nll_loss`; keywords in [`PoissonNLLLoss`]).
    poisson_nll_loss, poisson_nll_loss_with, try_poisson_nll_loss_with, PoissonNLLLoss, (input, target),
    example "assert_eq!(poisson_nll_loss(&Tensor::zeros(&[2]), &Tensor::full(&[2], 2.0)).item(), 1.0);",
    error "assert!(try_poisson_nll_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);

/// The three functions of a loss of three tensors.
macro_rules! three_operand_loss_functions {
    (
        $(#[$doc:meta])* $name:ident, $with:ident, $try_with:ident, $ty:ident,
        ($a:ident, $b:ident, $c:ident), example $example:literal, with $with_example:literal
    ) => {
        $(#[$doc])*
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::functional::", stringify!($name), ";")]
        /// use tapegrad_tape::Tensor;
        #[doc = $example]
        /// ```
        #[track_caller]
        pub fn $name($a: &Tensor, $b: &Tensor, $c: &Tensor) -> Tensor {
            $ty::new().forward($a, $b, $c)
        }

        #[doc = concat!("[`", stringify!($name), "`] with PyTorch's keywords: a [`", stringify!($ty),
            "`] or a [`Reduction`].")]
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::{", stringify!($ty), ", Reduction, functional::", stringify!($with), "};")]
        /// use tapegrad_tape::Tensor;
        #[doc = $with_example]
        /// ```
        #[track_caller]
        pub fn $with($a: &Tensor, $b: &Tensor, $c: &Tensor, options: impl Into<$ty>) -> Tensor {
            options.into().forward($a, $b, $c)
        }

        #[doc = concat!("[`", stringify!($with), "`], returning an error instead of panicking.")]
        ///
        /// ```
        #[doc = concat!("use tapegrad_ops::{Reduction, functional::", stringify!($try_with), "};")]
        /// use tapegrad_tape::Tensor;
        /// let (x, bad) = (Tensor::ones(&[2, 3]), Tensor::ones(&[4, 5]));
        #[doc = concat!("assert!(", stringify!($try_with), "(&x, &bad, &x, Reduction::Sum).is_err());")]
        /// ```
        #[track_caller]
        pub fn $try_with(
            $a: &Tensor,
            $b: &Tensor,
            $c: &Tensor,
            options: impl Into<$ty>,
        ) -> Result<Tensor> {
            options.into().try_forward($a, $b, $c)
        }
    };
}

three_operand_loss_functions!(
    /// `max(0, -y (x1 - x2))` for targets `y` of ±1 (PyTorch's `F.margin_ranking_loss`).
    margin_ranking_loss, margin_ranking_loss_with, try_margin_ranking_loss_with, MarginRankingLoss,
    (input1, input2, target),
    example "assert_eq!(margin_ranking_loss(&Tensor::zeros(&[2]), &Tensor::ones(&[2]), &Tensor::ones(&[2])).item(), 1.0);",
    with "let (x1, x2, y) = (Tensor::zeros(&[2]), Tensor::ones(&[2]), Tensor::full(&[2], -1.0));\nassert_eq!(margin_ranking_loss_with(&x1, &x2, &y, MarginRankingLoss::new().margin(2.0)).item(), 1.0);"
);
three_operand_loss_functions!(
    /// The triplet loss of anchors, positives and negatives `[N, D]` (PyTorch's
    /// `F.triplet_margin_loss`; keywords in [`TripletMarginLoss`]).
    triplet_margin_loss, triplet_margin_loss_with, try_triplet_margin_loss_with, TripletMarginLoss,
    (anchor, positive, negative),
    example "let (a, n) = (Tensor::zeros(&[4, 3]), Tensor::full(&[4, 3], 2.0));\nassert!(triplet_margin_loss(&a, &a, &n).item() < 1e-5); // the negatives are far enough",
    with "let (a, n) = (Tensor::zeros(&[4, 3]), Tensor::full(&[4, 3], 0.1));\nlet each = triplet_margin_loss_with(&a, &a, &n, Reduction::None);\nassert_eq!(each.shape(), &[4]);\nlet swap = triplet_margin_loss_with(&a, &a, &n, TripletMarginLoss::new().swap(true));\nassert!(swap.item() > 0.0);"
);
three_operand_loss_functions!(
    /// `1 - cos` for similar pairs (`y = 1`), `max(0, cos - margin)` for dissimilar ones
    /// (`y = -1`) (PyTorch's `F.cosine_embedding_loss`).
    cosine_embedding_loss, cosine_embedding_loss_with, try_cosine_embedding_loss_with, CosineEmbeddingLoss,
    (input1, input2, target),
    example "let x = Tensor::ones(&[2, 3]);\nassert!((cosine_embedding_loss(&x, &x, &Tensor::full(&[2], -1.0)).item() - 1.0).abs() < 1e-6);",
    with "let x = Tensor::ones(&[2, 3]);\nlet y = Tensor::full(&[2], -1.0);\nassert!(cosine_embedding_loss_with(&x, &x, &y, CosineEmbeddingLoss::new().margin(0.5)).item() > 0.49);"
);
three_operand_loss_functions!(
    /// The Gaussian negative log-likelihood of targets given means and variances (PyTorch's
    /// `F.gaussian_nll_loss`; keywords in [`GaussianNLLLoss`]).
    gaussian_nll_loss, gaussian_nll_loss_with, try_gaussian_nll_loss_with, GaussianNLLLoss,
    (input, target, var),
    example "assert_eq!(gaussian_nll_loss(&Tensor::zeros(&[2]), &Tensor::ones(&[2]), &Tensor::ones(&[2])).item(), 0.5);",
    with "let (x, y, var) = (Tensor::zeros(&[2, 3]), Tensor::ones(&[2, 3]), Tensor::ones(&[2]));\nlet full = gaussian_nll_loss_with(&x, &y, &var, GaussianNLLLoss::new().full(true));\nassert!((full.item() - 0.5 - 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-6);"
);

/// The CTC loss of log-probabilities `[T, N, C]` against label sequences, the first
/// `input_lengths[n]` steps of sequence `n` against its first `target_lengths[n]` labels
/// (PyTorch's `F.ctc_loss`; keywords in [`CTCLoss`]).
///
/// ```
/// use tapegrad_ops::{functional::ctc_loss, prelude::*};
/// use tapegrad_tape::Tensor;
/// let log_probs = Tensor::zeros(&[6, 2, 5]).log_softmax(2);
/// let targets = Tensor::from_vec(vec![1i64, 2, 2, 3, 4], &[5]); // "1 2 2" then "3 4"
/// let loss = ctc_loss(&log_probs, &targets, &[6, 6], &[3, 2]);
/// assert!(loss.item().is_finite() && loss.item() > 0.0);
/// ```
#[track_caller]
pub fn ctc_loss(
    log_probs: &Tensor,
    targets: &Tensor,
    input_lengths: &[usize],
    target_lengths: &[usize],
) -> Tensor {
    CTCLoss::new().forward(log_probs, targets, input_lengths, target_lengths)
}

/// [`ctc_loss`] with PyTorch's keywords: a [`CTCLoss`] or a [`Reduction`].
///
/// ```
/// use tapegrad_ops::{CTCLoss, Reduction, functional::ctc_loss_with};
/// use tapegrad_tape::Tensor;
/// let log_probs = Tensor::full(&[2, 1, 3], (1.0f64 / 3.0).ln());
/// let target = Tensor::from_vec(vec![1i64, 1], &[1, 2]); // a repeat needs a blank between
/// let loss = ctc_loss_with(&log_probs, &target, &[2], &[2], Reduction::Sum);
/// assert_eq!(loss.item(), f64::INFINITY);
/// let zeroed = CTCLoss::new().zero_infinity(true);
/// assert_eq!(ctc_loss_with(&log_probs, &target, &[2], &[2], zeroed).item(), 0.0);
/// ```
#[track_caller]
pub fn ctc_loss_with(
    log_probs: &Tensor,
    targets: &Tensor,
    input_lengths: &[usize],
    target_lengths: &[usize],
    options: impl Into<CTCLoss>,
) -> Tensor {
    options.into().forward(log_probs, targets, input_lengths, target_lengths)
}

/// [`ctc_loss_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::try_ctc_loss_with};
/// use tapegrad_tape::Tensor;
/// let log_probs = Tensor::zeros(&[3, 1, 4]);
/// let bad = Tensor::from_vec(vec![0i64], &[1, 1]); // the blank is not a label
/// assert!(try_ctc_loss_with(&log_probs, &bad, &[3], &[1], Reduction::Mean).is_err());
/// ```
#[track_caller]
pub fn try_ctc_loss_with(
    log_probs: &Tensor,
    targets: &Tensor,
    input_lengths: &[usize],
    target_lengths: &[usize],
    options: impl Into<CTCLoss>,
) -> Result<Tensor> {
    options.into().try_forward(log_probs, targets, input_lengths, target_lengths)
}

loss_functions!(
    /// Mean squared error (PyTorch's `F.mse_loss`).
    mse_loss, mse_loss_with, try_mse_loss_with, MSELoss, (input, target),
    example "assert_eq!(mse_loss(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 1.0);",
    error "assert!(try_mse_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Mean absolute error (PyTorch's `F.l1_loss`).
    l1_loss, l1_loss_with, try_l1_loss_with, L1Loss, (input, target),
    example "assert_eq!(l1_loss(&Tensor::full(&[2], -2.0), &Tensor::zeros(&[2])).item(), 2.0);",
    error "assert!(try_l1_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Smooth L1 loss with `beta` = 1 (PyTorch's `F.smooth_l1_loss`); see [`SmoothL1Loss`].
    smooth_l1_loss, smooth_l1_loss_with, try_smooth_l1_loss_with, SmoothL1Loss, (input, target),
    example "assert_eq!(smooth_l1_loss(&Tensor::full(&[1], 3.0), &Tensor::zeros(&[1])).item(), 2.5);",
    error "assert!(try_smooth_l1_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Huber loss with `delta` = 1 (PyTorch's `F.huber_loss`); see [`HuberLoss`].
    huber_loss, huber_loss_with, try_huber_loss_with, HuberLoss, (input, target),
    example "assert_eq!(huber_loss(&Tensor::full(&[1], 0.5), &Tensor::zeros(&[1])).item(), 0.125);",
    error "assert!(try_huber_loss_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// The Kullback-Leibler divergence with `reduction` mean (PyTorch's `F.kl_div`); see
    /// [`KLDivLoss`], whose `batchmean()` gives the divergence per sample.
    kl_div, kl_div_with, try_kl_div_with, KLDivLoss, (input, target),
    example "let (p, log_p) = (Tensor::from_vec(vec![0.5f64; 2], &[2]), Tensor::from_vec(vec![0.5f64.ln(); 2], &[2]));\nassert!(kl_div(&log_p, &p).item().abs() < 1e-15);",
    error "assert!(try_kl_div_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Binary cross-entropy of probabilities (PyTorch's `F.binary_cross_entropy`); see
    /// [`BCELoss`].
    binary_cross_entropy, binary_cross_entropy_with, try_binary_cross_entropy_with, BCELoss,
    (input, target),
    example "assert!((binary_cross_entropy(&Tensor::full(&[1], 0.5), &Tensor::ones(&[1])).item() - 2f64.ln()).abs() < 1e-6);",
    error "assert!(try_binary_cross_entropy_with(&Tensor::full(&[1], 2.0), &Tensor::ones(&[1]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Binary cross-entropy on logits (PyTorch's `F.binary_cross_entropy_with_logits`); see
    /// [`BCEWithLogitsLoss`].
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_with,
    try_binary_cross_entropy_with_logits_with, BCEWithLogitsLoss, (input, target),
    example "assert!((binary_cross_entropy_with_logits(&Tensor::zeros(&[1]), &Tensor::ones(&[1])).item() - 2f64.ln()).abs() < 1e-6);",
    error "assert!(try_binary_cross_entropy_with_logits_with(&Tensor::ones(&[2]), &Tensor::ones(&[3]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Cross-entropy of logits against class indices or probabilities (PyTorch's
    /// `F.cross_entropy`); see [`CrossEntropyLoss`].
    cross_entropy, cross_entropy_with, try_cross_entropy_with, CrossEntropyLoss, (logits, target),
    example "assert!((cross_entropy(&Tensor::zeros(&[2, 4]), &Tensor::from_vec(vec![0i64, 3], &[2])).item() - 4f64.ln()).abs() < 1e-6);",
    error "assert!(try_cross_entropy_with(&Tensor::zeros(&[2, 3]), &Tensor::from_vec(vec![0i64, 3], &[2]), Reduction::Mean).is_err());"
);
loss_functions!(
    /// Negative log-likelihood of class indices (PyTorch's `F.nll_loss`); see [`NLLLoss`].
    nll_loss, nll_loss_with, try_nll_loss_with, NLLLoss, (log_probs, target),
    example "assert_eq!(nll_loss(&Tensor::full(&[1, 2], -0.5), &Tensor::from_vec(vec![1i64], &[1])).item(), 0.5);",
    error "assert!(try_nll_loss_with(&Tensor::zeros(&[2, 3]), &Tensor::from_vec(vec![0i64, 3], &[2]), Reduction::Mean).is_err());",
    with "let (x, y) = (Tensor::full(&[3, 2], -0.5), Tensor::from_vec(vec![0i64, 1, 1], &[3]));"
);

/// The keywords of `dropout`: `p` (0.5) and `training` (true).
///
/// ```
/// use tapegrad_ops::functional::{DropoutOptions, dropout_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[4]);
/// let eval = DropoutOptions::default().p(0.2).training(false);
/// assert_eq!(dropout_with(&x, eval).to_vec::<f32>(), vec![1.0; 4]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutOptions {
    /// Probability of zeroing an element.
    pub p: f64,
    /// Whether to drop at all (false: the identity).
    pub training: bool,
}

impl Default for DropoutOptions {
    fn default() -> Self {
        DropoutOptions { p: 0.5, training: true }
    }
}

impl DropoutOptions {
    /// Sets `p`.
    ///
    /// ```
    /// assert_eq!(tapegrad_ops::functional::DropoutOptions::default().p(0.1).p, 0.1);
    /// ```
    pub fn p(mut self, p: f64) -> Self {
        self.p = p;
        self
    }

    /// Sets `training`.
    ///
    /// ```
    /// assert!(!tapegrad_ops::functional::DropoutOptions::default().training(false).training);
    /// ```
    pub fn training(mut self, training: bool) -> Self {
        self.training = training;
        self
    }
}

/// Zeroes each element with probability 0.5 and doubles the rest (inverted dropout,
/// seeded by `manual_seed`): PyTorch's `F.dropout` with its defaults.
///
/// ```
/// use tapegrad_ops::functional::dropout;
/// use tapegrad_tape::Tensor;
/// let y = dropout(&Tensor::ones(&[1000])).to_vec::<f32>();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// ```
#[track_caller]
pub fn dropout(x: &Tensor) -> Tensor {
    dropout_with(x, DropoutOptions::default())
}

/// [`dropout`] with `p` and `training`: elements are zeroed with probability `p` and the
/// rest scaled by `1 / (1 - p)` while training; the identity otherwise.
///
/// ```
/// use tapegrad_ops::functional::{DropoutOptions, dropout_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1000]);
/// let y = dropout_with(&x, DropoutOptions::default().p(0.75)).to_vec::<f32>();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 4.0));
/// ```
#[track_caller]
pub fn dropout_with(x: &Tensor, options: DropoutOptions) -> Tensor {
    or_panic(try_dropout_with(x, options))
}

/// [`dropout_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::{DropoutOptions, try_dropout_with};
/// use tapegrad_tape::Tensor;
/// assert!(try_dropout_with(&Tensor::ones(&[2]), DropoutOptions::default().p(1.5)).is_err());
/// ```
#[track_caller]
pub fn try_dropout_with(x: &Tensor, options: DropoutOptions) -> Result<Tensor> {
    let location = Location::caller();
    let DropoutOptions { p, training } = options;
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op: "dropout",
            message: format!("probability {p} is not in [0, 1]"),
            location,
        });
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    if p == 1.0 {
        return Ok(x * 0.0);
    }
    let scale = 1.0 / (1.0 - p);
    // One draw from the caller's stream seeds the whole mask, which is then filled in
    // independently seeded blocks (the same at any thread count).
    let seed = tapegrad_tape::with_generator(rand::Rng::next_u64);
    let n = x.numel();
    let mask = match x.dtype() {
        DType::F32 => {
            let mut keep = vec![0.0f32; n];
            bernoulli_mask(seed, p, scale as f32, 0.0, &mut keep);
            Tensor::from_vec(keep, x.shape())
        }
        dtype => {
            let mut keep = vec![0.0f64; n];
            bernoulli_mask(seed, p, scale, 0.0, &mut keep);
            Tensor::from_vec(keep, x.shape()).to_dtype(dtype)
        }
    };
    Ok(x * &mask)
}

/// The three functions of a convolution.
macro_rules! conv_functions {
    (
        $(#[$doc:meta])* $name:ident, $with:ident, $try_with:ident, $imp:path,
        example $example:literal, with $with_example:literal, error $error:literal
    ) => {
        $(#[$doc])*
        ///
        /// ```
        /// use tapegrad_ops::functional as F;
        /// use tapegrad_tape::Tensor;
        #[doc = $example]
        /// ```
        #[track_caller]
        pub fn $name(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
            $with(x, weight, bias, ConvOptions::default())
        }

        #[doc = concat!("[`", stringify!($name), "`] with PyTorch's keywords ([`ConvOptions`]).")]
        ///
        /// ```
        /// use tapegrad_ops::{ConvOptions, Padding, functional as F};
        /// use tapegrad_tape::Tensor;
        #[doc = $with_example]
        /// ```
        #[track_caller]
        pub fn $with(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, options: ConvOptions) -> Tensor {
            or_panic($imp(x, weight, bias, options))
        }

        #[doc = concat!("[`", stringify!($with), "`], returning an error instead of panicking.")]
        ///
        /// ```
        /// use tapegrad_ops::{ConvOptions, functional as F};
        /// use tapegrad_tape::Tensor;
        #[doc = $error]
        /// ```
        #[track_caller]
        pub fn $try_with(
            x: &Tensor,
            weight: &Tensor,
            bias: Option<&Tensor>,
            options: ConvOptions,
        ) -> Result<Tensor> {
            $imp(x, weight, bias, options)
        }
    };
}

conv_functions!(
    /// 1-D convolution of `x` `[N, C, L]` with `weight` `[O, C / groups, K]` and an optional
    /// `bias` `[O]` (PyTorch's `F.conv1d`).
    conv1d, conv1d_with, try_conv1d_with, crate::conv::conv1d_with,
    example "assert_eq!(F::conv1d(&Tensor::ones(&[2, 3, 10]), &Tensor::ones(&[4, 3, 3]), None).shape(), &[2, 4, 8]);",
    with "let y = F::conv1d_with(&Tensor::ones(&[2, 3, 10]), &Tensor::ones(&[4, 3, 4]), None, ConvOptions::default().padding(Padding::Same));\nassert_eq!(y.shape(), &[2, 4, 10]);",
    error "assert!(F::try_conv1d_with(&Tensor::ones(&[1, 3, 8]), &Tensor::ones(&[4, 3, 3]), None, ConvOptions::default().stride((1, 2))).is_err());"
);
conv_functions!(
    /// 2-D convolution (cross-correlation, as in PyTorch's `F.conv2d`) of `x` `[N, C, H, W]`
    /// with `weight` `[O, C / groups, kH, kW]` and an optional `bias` `[O]`.
    conv2d, conv2d_with, try_conv2d_with, crate::conv::conv2d_with,
    example "let y = F::conv2d(&Tensor::ones(&[1, 1, 4, 4]), &Tensor::ones(&[2, 1, 3, 3]), None);\nassert_eq!((y.shape(), y.to_vec::<f32>()[0]), (&[1, 2, 2, 2][..], 9.0));",
    with "let (x, w) = (Tensor::ones(&[1, 1, 6, 6]), Tensor::ones(&[2, 1, 3, 3]));\nassert_eq!(F::conv2d_with(&x, &w, None, ConvOptions::default().stride(2).padding(1)).shape(), &[1, 2, 3, 3]);\nassert_eq!(F::conv2d_with(&x, &w, None, ConvOptions::default().padding(Padding::Same).dilation(2)).shape(), &[1, 2, 6, 6]);",
    error "let err = F::try_conv2d_with(&Tensor::ones(&[1, 3, 8, 8]), &Tensor::ones(&[4, 2, 3, 3]), None, ConvOptions::default());\nassert!(err.unwrap_err().to_string().contains(\"3 channels\"));"
);
conv_functions!(
    /// Transposed 1-D convolution (PyTorch's `F.conv_transpose1d`): `x` `[N, C_in, L]`,
    /// `weight` `[C_in, C_out / groups, K]`; the upsampling layer of sequence decoders.
    conv_transpose1d, conv_transpose1d_with, try_conv_transpose1d_with, crate::conv::conv_transpose1d_with,
    example "assert_eq!(F::conv_transpose1d(&Tensor::ones(&[2, 8, 5]), &Tensor::ones(&[8, 4, 3]), None).shape(), &[2, 4, 7]);",
    with "let opts = ConvOptions::default().stride(2).padding(1).output_padding(1);\nlet y = F::conv_transpose1d_with(&Tensor::ones(&[1, 8, 7]), &Tensor::ones(&[8, 4, 3]), None, opts);\nassert_eq!(y.shape(), &[1, 4, 14]);",
    error "assert!(F::try_conv_transpose1d_with(&Tensor::ones(&[1, 8, 7, 7]), &Tensor::ones(&[8, 4, 3]), None, ConvOptions::default()).is_err());"
);
conv_functions!(
    /// Transposed 2-D convolution (the gradient of `conv2d` with respect to its input, as
    /// GAN generators use it; PyTorch's `F.conv_transpose2d`): `x` `[N, C_in, H, W]`,
    /// `weight` `[C_in, C_out / groups, kH, kW]`.
    conv_transpose2d, conv_transpose2d_with, try_conv_transpose2d_with, crate::conv::conv_transpose2d_with,
    example "assert_eq!(F::conv_transpose2d(&Tensor::ones(&[1, 8, 5, 5]), &Tensor::ones(&[8, 4, 3, 3]), None).shape(), &[1, 4, 7, 7]);",
    with "let opts = ConvOptions::default().stride(2).padding(1).output_padding(1);\nlet y = F::conv_transpose2d_with(&Tensor::ones(&[1, 8, 7, 7]), &Tensor::ones(&[8, 4, 3, 3]), None, opts);\nassert_eq!(y.shape(), &[1, 4, 14, 14]);",
    error "let same = ConvOptions::default().padding(tapegrad_ops::Padding::Same);\nassert!(F::try_conv_transpose2d_with(&Tensor::ones(&[1, 8, 5, 5]), &Tensor::ones(&[8, 4, 3, 3]), None, same).is_err());"
);

/// Max pooling over `kernel` windows of `[N, C, H, W]` with stride `kernel` (PyTorch's
/// `F.max_pool2d` defaults); the gradient goes to the chosen elements.
///
/// ```
/// use tapegrad_ops::{functional::max_pool2d, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 1, 4, 4]);
/// assert_eq!(max_pool2d(&x, 2).to_vec::<f32>(), vec![5.0, 7.0, 13.0, 15.0]);
/// ```
#[track_caller]
pub fn max_pool2d(x: &Tensor, kernel: impl IntoPair) -> Tensor {
    max_pool2d_with(x, kernel, MaxPool2dOptions::default())
}

/// [`max_pool2d`] with PyTorch's keywords ([`MaxPool2dOptions`]).
///
/// ```
/// use tapegrad_ops::{MaxPool2dOptions, functional::max_pool2d_with, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 1, 4, 4]);
/// let y = max_pool2d_with(&x, 3, MaxPool2dOptions::default().stride(1).padding(1));
/// assert_eq!(y.shape(), &[1, 1, 4, 4]);
/// assert_eq!(y.to_vec::<f32>()[0], 5.0);
/// ```
#[track_caller]
pub fn max_pool2d_with(x: &Tensor, kernel: impl IntoPair, options: MaxPool2dOptions) -> Tensor {
    or_panic(crate::pool::max_pool2d_with(x, kernel.into_pair(), options)).0
}

/// [`max_pool2d_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{MaxPool2dOptions, functional::try_max_pool2d_with};
/// use tapegrad_tape::Tensor;
/// let opts = MaxPool2dOptions::default().padding(2);
/// assert!(try_max_pool2d_with(&Tensor::ones(&[1, 1, 4, 4]), 2, opts).is_err()); // more than half
/// ```
#[track_caller]
pub fn try_max_pool2d_with(
    x: &Tensor,
    kernel: impl IntoPair,
    options: MaxPool2dOptions,
) -> Result<Tensor> {
    Ok(crate::pool::max_pool2d_with(x, kernel.into_pair(), options)?.0)
}

/// [`max_pool2d_with`] that also returns, per output, the int64 flat position `h * W + w`
/// of the chosen input element (PyTorch's `return_indices=True`).
///
/// ```
/// use tapegrad_ops::{MaxPool2dOptions, functional::max_pool2d_with_indices, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 1, 4, 4]);
/// let (_, i) = max_pool2d_with_indices(&x, 2, MaxPool2dOptions::default());
/// assert_eq!(i.to_vec::<i64>(), vec![5, 7, 13, 15]);
/// ```
#[track_caller]
pub fn max_pool2d_with_indices(
    x: &Tensor,
    kernel: impl IntoPair,
    options: MaxPool2dOptions,
) -> (Tensor, Tensor) {
    or_panic(crate::pool::max_pool2d_with(x, kernel.into_pair(), options))
}

/// [`max_pool2d_with_indices`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{MaxPool2dOptions, functional::try_max_pool2d_with_indices};
/// use tapegrad_tape::Tensor;
/// let opts = MaxPool2dOptions::default();
/// assert!(try_max_pool2d_with_indices(&Tensor::ones(&[4, 4]), 2, opts).is_err()); // not 4-d
/// ```
#[track_caller]
pub fn try_max_pool2d_with_indices(
    x: &Tensor,
    kernel: impl IntoPair,
    options: MaxPool2dOptions,
) -> Result<(Tensor, Tensor)> {
    crate::pool::max_pool2d_with(x, kernel.into_pair(), options)
}

/// Average pooling over `kernel` windows with stride `kernel` (PyTorch's `F.avg_pool2d`
/// defaults).
///
/// ```
/// use tapegrad_ops::functional::avg_pool2d;
/// use tapegrad_tape::Tensor;
/// assert_eq!(avg_pool2d(&Tensor::ones(&[1, 2, 4, 4]), 2).shape(), &[1, 2, 2, 2]);
/// ```
#[track_caller]
pub fn avg_pool2d(x: &Tensor, kernel: impl IntoPair) -> Tensor {
    avg_pool2d_with(x, kernel, AvgPool2dOptions::default())
}

/// [`avg_pool2d`] with PyTorch's keywords ([`AvgPool2dOptions`]).
///
/// ```
/// use tapegrad_ops::{AvgPool2dOptions, functional::avg_pool2d_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 3, 3]);
/// let y = avg_pool2d_with(&x, 2, AvgPool2dOptions::default().ceil_mode(true));
/// assert_eq!(y.to_vec::<f32>(), vec![1.0; 4]); // partial windows divide by what they cover
/// ```
#[track_caller]
pub fn avg_pool2d_with(x: &Tensor, kernel: impl IntoPair, options: AvgPool2dOptions) -> Tensor {
    or_panic(crate::pool::avg_pool2d_with(x, kernel.into_pair(), options))
}

/// [`avg_pool2d_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{AvgPool2dOptions, functional::try_avg_pool2d_with};
/// use tapegrad_tape::Tensor;
/// let zero = AvgPool2dOptions::default().divisor_override(0);
/// assert!(try_avg_pool2d_with(&Tensor::ones(&[1, 1, 4, 4]), 2, zero).is_err());
/// ```
#[track_caller]
pub fn try_avg_pool2d_with(
    x: &Tensor,
    kernel: impl IntoPair,
    options: AvgPool2dOptions,
) -> Result<Tensor> {
    crate::pool::avg_pool2d_with(x, kernel.into_pair(), options)
}

/// Resizes the spatial dimensions of `x` (`[N, C, L]`, `[N, C, H, W]` or
/// `[N, C, D, H, W]`) to `size` (one value for all, or one each) by picking the nearest
/// pixel: PyTorch's `F.interpolate(x, size)`. Other modes, a scale factor and
/// `align_corners` are [`interpolate_with`]'s.
///
/// ```
/// use tapegrad_ops::functional::interpolate;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
/// let y = interpolate(&x, &[4]); // each pixel repeated into a 2 x 2 block
/// assert_eq!(y.to_vec::<f32>()[..8], [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
/// ```
#[track_caller]
pub fn interpolate(x: &Tensor, size: &[usize]) -> Tensor {
    interpolate_with(x, InterpolateOptions::size(size))
}

/// [`interpolate`] with PyTorch's keywords ([`InterpolateOptions`]: size or scale factor,
/// `mode`, `align_corners`, `recompute_scale_factor`). Differentiable to any order in `x`.
///
/// ```
/// use tapegrad_ops::functional::interpolate_with;
/// use tapegrad_ops::{InterpolateMode, InterpolateOptions};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![0.0f32, 1.0], &[1, 1, 2]);
/// let linear = InterpolateOptions::size(&[3]).mode(InterpolateMode::Linear);
/// assert_eq!(interpolate_with(&x, linear.clone().align_corners(true)).to_vec::<f32>(), [0.0, 0.5, 1.0]);
/// assert_eq!(interpolate_with(&x, linear).to_vec::<f32>(), [0.0, 0.5, 1.0]);
/// ```
#[track_caller]
pub fn interpolate_with(x: &Tensor, options: InterpolateOptions) -> Tensor {
    or_panic(crate::interpolate::interpolate(x, &options))
}

/// [`interpolate_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_interpolate_with;
/// use tapegrad_ops::{InterpolateMode, InterpolateOptions};
/// use tapegrad_tape::Tensor;
/// let bilinear = InterpolateOptions::scale_factor(2.0).mode(InterpolateMode::Bilinear);
/// assert!(try_interpolate_with(&Tensor::zeros(&[1, 2, 5]), bilinear).is_err()); // needs 4-D
/// ```
#[track_caller]
pub fn try_interpolate_with(x: &Tensor, options: InterpolateOptions) -> Result<Tensor> {
    crate::interpolate::interpolate(x, &options)
}

/// `x` divided by its 2-norm along dimension 1 (at least `1e-12`): PyTorch's
/// `F.normalize(x)`. Other orders, dimensions and `eps` are [`normalize_with`]'s.
///
/// ```
/// use tapegrad_ops::functional::normalize;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![3.0f32, 4.0, 0.0, 0.0], &[2, 2]);
/// assert_eq!(normalize(&x).to_vec::<f32>(), [0.6, 0.8, 0.0, 0.0]); // a zero row stays zero
/// ```
#[track_caller]
pub fn normalize(x: &Tensor) -> Tensor {
    normalize_with(x, NormalizeOptions::default())
}

/// [`normalize`] with PyTorch's keywords ([`NormalizeOptions`]: `p`, `dim`, `eps`):
/// `x / max(‖x‖_p, eps)` along `dim`.
///
/// ```
/// use tapegrad_ops::{NormalizeOptions, functional::normalize_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, -3.0], &[2]);
/// let y = normalize_with(&x, NormalizeOptions::default().p(1.0).dim(0));
/// assert_eq!(y.to_vec::<f32>(), [0.25, -0.75]);
/// ```
#[track_caller]
pub fn normalize_with(x: &Tensor, options: NormalizeOptions) -> Tensor {
    or_panic(crate::distance::normalize(x, options))
}

/// [`normalize_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{NormalizeOptions, functional::try_normalize_with};
/// use tapegrad_tape::Tensor;
/// assert!(try_normalize_with(&Tensor::ones(&[3]), NormalizeOptions::default()).is_err()); // no dimension 1
/// ```
#[track_caller]
pub fn try_normalize_with(x: &Tensor, options: NormalizeOptions) -> Result<Tensor> {
    crate::distance::normalize(x, options)
}

/// The cosine of the angle between `x1` and `x2` along dimension 1 (broadcasting them
/// first): PyTorch's `F.cosine_similarity(x1, x2)`, each vector divided by its norm (at
/// least `1e-8`) before the dot product. Other dimensions and `eps` are
/// [`cosine_similarity_with`]'s.
///
/// ```
/// use tapegrad_ops::functional::cosine_similarity;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 1.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![0.0f32, 2.0], &[1, 2]); // broadcast to both rows
/// let cos = cosine_similarity(&a, &b).to_vec::<f32>();
/// assert!(cos[0].abs() < 1e-7 && (cos[1] - 0.5f32.sqrt()).abs() < 1e-6);
/// ```
#[track_caller]
pub fn cosine_similarity(x1: &Tensor, x2: &Tensor) -> Tensor {
    cosine_similarity_with(x1, x2, CosineSimilarityOptions::default())
}

/// [`cosine_similarity`] with PyTorch's keywords ([`CosineSimilarityOptions`]: `dim`, `eps`).
/// As in PyTorch, a norm below `eps` is raised to `eps` in the value, while the gradient
/// passes through that clamp as if it were not there.
///
/// ```
/// use tapegrad_ops::{CosineSimilarityOptions, functional::cosine_similarity_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[4, 5, 3]);
/// let same = cosine_similarity_with(&x, &x, CosineSimilarityOptions::default().dim(-1));
/// assert_eq!(same.shape(), &[4, 5]);
/// assert!(same.to_vec::<f32>().iter().all(|c| (c - 1.0).abs() < 1e-6));
/// ```
#[track_caller]
pub fn cosine_similarity_with(
    x1: &Tensor,
    x2: &Tensor,
    options: CosineSimilarityOptions,
) -> Tensor {
    or_panic(crate::distance::cosine_similarity(x1, x2, options))
}

/// [`cosine_similarity_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{CosineSimilarityOptions, functional::try_cosine_similarity_with};
/// use tapegrad_tape::Tensor;
/// let (a, b) = (Tensor::ones(&[2, 3]), Tensor::ones(&[2, 4]));
/// assert!(try_cosine_similarity_with(&a, &b, CosineSimilarityOptions::default()).is_err());
/// ```
#[track_caller]
pub fn try_cosine_similarity_with(
    x1: &Tensor,
    x2: &Tensor,
    options: CosineSimilarityOptions,
) -> Result<Tensor> {
    crate::distance::cosine_similarity(x1, x2, options)
}

/// The Euclidean distance between `x1` and `x2` along their last dimension, the inputs
/// broadcast together, `eps = 1e-6` added to each difference: PyTorch's
/// `F.pairwise_distance` with its defaults.
///
/// ```
/// use tapegrad_ops::functional::pairwise_distance;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![0.0f32, 0.0, 1.0, 1.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![3.0f32, 4.0], &[2]);
/// let d = pairwise_distance(&a, &b).to_vec::<f32>();
/// assert!((d[0] - 5.0).abs() < 1e-5 && (d[1] - 13f32.sqrt()).abs() < 1e-5);
/// ```
#[track_caller]
pub fn pairwise_distance(x1: &Tensor, x2: &Tensor) -> Tensor {
    pairwise_distance_with(x1, x2, PairwiseDistanceOptions::default())
}

/// [`pairwise_distance`] with PyTorch's keywords ([`PairwiseDistanceOptions`]: `p`, `eps`,
/// `keepdim`).
///
/// ```
/// use tapegrad_ops::{PairwiseDistanceOptions, functional::pairwise_distance_with};
/// use tapegrad_tape::Tensor;
/// let (a, b) = (Tensor::zeros(&[4, 3]), Tensor::ones(&[4, 3]));
/// let manhattan = PairwiseDistanceOptions::default().p(1.0).eps(0.0).keepdim(true);
/// let d = pairwise_distance_with(&a, &b, manhattan);
/// assert_eq!((d.shape(), d.to_vec::<f32>()), (&[4, 1][..], vec![3.0; 4]));
/// ```
#[track_caller]
pub fn pairwise_distance_with(
    x1: &Tensor,
    x2: &Tensor,
    options: PairwiseDistanceOptions,
) -> Tensor {
    or_panic(crate::distance::pairwise_distance(x1, x2, options))
}

/// [`pairwise_distance_with`], returning an error for inputs that do not broadcast, a
/// non-float input, or `p` of 0 or NaN.
///
/// ```
/// use tapegrad_ops::{PairwiseDistanceOptions, functional::try_pairwise_distance_with};
/// use tapegrad_tape::Tensor;
/// let (a, b) = (Tensor::ones(&[2, 3]), Tensor::ones(&[2, 4]));
/// assert!(try_pairwise_distance_with(&a, &b, PairwiseDistanceOptions::default()).is_err());
/// let zero_order = PairwiseDistanceOptions::default().p(0.0);
/// assert!(try_pairwise_distance_with(&a, &a, zero_order).is_err());
/// ```
#[track_caller]
pub fn try_pairwise_distance_with(
    x1: &Tensor,
    x2: &Tensor,
    options: PairwiseDistanceOptions,
) -> Result<Tensor> {
    crate::distance::pairwise_distance(x1, x2, options)
}

/// Class labels (int64) as one-hot rows (int64, one more dimension of `num_classes`):
/// PyTorch's `F.one_hot`; `None` takes the largest label plus one, as PyTorch's `-1` does.
///
/// ```
/// use tapegrad_ops::functional::one_hot;
/// use tapegrad_tape::Tensor;
/// let y = one_hot(&Tensor::from_vec(vec![2i64, 0], &[2]), Some(3));
/// assert_eq!((y.shape(), y.to_vec::<i64>()), (&[2, 3][..], vec![0, 0, 1, 1, 0, 0]));
/// assert_eq!(one_hot(&Tensor::from_vec(vec![1i64], &[1]), None).shape(), &[1, 2]);
/// ```
#[track_caller]
pub fn one_hot(labels: &Tensor, num_classes: Option<usize>) -> Tensor {
    or_panic(try_one_hot(labels, num_classes))
}

/// [`one_hot`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_one_hot;
/// use tapegrad_tape::Tensor;
/// let err = try_one_hot(&Tensor::from_vec(vec![3i64], &[1]), Some(3)).unwrap_err();
/// assert!(err.to_string().contains("label 3 is not below num_classes = 3"));
/// ```
#[track_caller]
pub fn try_one_hot(labels: &Tensor, num_classes: Option<usize>) -> Result<Tensor> {
    crate::distance::one_hot(labels, num_classes)
}

/// `[*, C r², H, W]` rearranged to `[*, C, H r, W r]`: each group of `r²` channels
/// becomes an `r x r` block of pixels (PyTorch's `F.pixel_shuffle`, the sub-pixel
/// upsampling of super-resolution networks).
///
/// ```
/// use tapegrad_ops::{functional::pixel_shuffle, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 4.0, 1.0).reshape(&[1, 4, 1, 1]);
/// assert_eq!(pixel_shuffle(&x, 2).to_vec::<f32>(), vec![0.0, 1.0, 2.0, 3.0]);
/// assert_eq!(pixel_shuffle(&x, 2).shape(), &[1, 1, 2, 2]);
/// ```
#[track_caller]
pub fn pixel_shuffle(x: &Tensor, upscale_factor: usize) -> Tensor {
    or_panic(try_pixel_shuffle(x, upscale_factor))
}

/// [`pixel_shuffle`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_pixel_shuffle;
/// use tapegrad_tape::Tensor;
/// let err = try_pixel_shuffle(&Tensor::zeros(&[1, 3, 2, 2]), 2).unwrap_err();
/// assert!(err.to_string().contains("channels 3 must be a multiple of the factor squared, 4"));
/// ```
#[track_caller]
pub fn try_pixel_shuffle(x: &Tensor, upscale_factor: usize) -> Result<Tensor> {
    crate::rearrange::pixel_shuffle(x, upscale_factor, false)
}

/// The inverse of [`pixel_shuffle`]: `[*, C, H r, W r]` to `[*, C r², H, W]` (PyTorch's
/// `F.pixel_unshuffle`).
///
/// ```
/// use tapegrad_ops::functional::{pixel_shuffle, pixel_unshuffle};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[2, 3, 4, 6]);
/// let round_trip = pixel_shuffle(&pixel_unshuffle(&x, 2), 2);
/// assert_eq!(round_trip.to_vec::<f32>(), x.to_vec::<f32>());
/// ```
#[track_caller]
pub fn pixel_unshuffle(x: &Tensor, downscale_factor: usize) -> Tensor {
    or_panic(try_pixel_unshuffle(x, downscale_factor))
}

/// [`pixel_unshuffle`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_pixel_unshuffle;
/// use tapegrad_tape::Tensor;
/// assert!(try_pixel_unshuffle(&Tensor::zeros(&[1, 1, 3, 4]), 2).is_err()); // 3 rows
/// ```
#[track_caller]
pub fn try_pixel_unshuffle(x: &Tensor, downscale_factor: usize) -> Result<Tensor> {
    crate::rearrange::pixel_shuffle(x, downscale_factor, true)
}

/// Every block of `kernel_size` in `x` (`[N, C, H, W]`, or `[C, H, W]`) as a column:
/// `[N, C kh kw, L]` for `L` blocks (PyTorch's `F.unfold`, im2col). Each column holds its
/// block's channels in turn, each as the kernel's taps row by row. Dilation, padding and
/// stride are [`unfold_with`]'s. Differentiable to any order; [`fold`] is its adjoint.
///
/// ```
/// use tapegrad_ops::{functional::unfold, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 9.0, 1.0).reshape(&[1, 1, 3, 3]);
/// let cols = unfold(&x, 2); // four 2 x 2 blocks
/// assert_eq!(cols.shape(), &[1, 4, 4]);
/// // Row 0 is each block's top-left tap: 0, 1, 3 and 4 for the four blocks.
/// assert_eq!(cols.to_vec::<f32>()[..4], [0.0, 1.0, 3.0, 4.0]);
/// ```
#[track_caller]
pub fn unfold(x: &Tensor, kernel_size: impl IntoPair) -> Tensor {
    unfold_with(x, kernel_size, UnfoldOptions::default())
}

/// [`unfold`] with PyTorch's keywords ([`UnfoldOptions`]: `dilation`, `padding`, `stride`).
///
/// ```
/// use tapegrad_ops::{UnfoldOptions, functional::unfold_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2, 3, 5, 5]);
/// let cols = unfold_with(&x, 3, UnfoldOptions::default().padding(1).stride(2));
/// assert_eq!(cols.shape(), &[2, 27, 9]); // 3 x 3 blocks of 3 channels, 3 x 3 of them
/// ```
#[track_caller]
pub fn unfold_with(x: &Tensor, kernel_size: impl IntoPair, options: UnfoldOptions) -> Tensor {
    or_panic(try_unfold_with(x, kernel_size, options))
}

/// [`unfold_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{UnfoldOptions, functional::try_unfold_with};
/// use tapegrad_tape::Tensor;
/// let err = try_unfold_with(&Tensor::ones(&[1, 1, 2, 2]), 3, UnfoldOptions::default());
/// assert!(err.unwrap_err().to_string().contains("spans (3, 3)"));
/// ```
#[track_caller]
pub fn try_unfold_with(
    x: &Tensor,
    kernel_size: impl IntoPair,
    options: UnfoldOptions,
) -> Result<Tensor> {
    crate::unfold::unfold(x, kernel_size.into_pair(), options)
}

/// Columns `[N, C kh kw, L]` (or `[C kh kw, L]`) summed back into an image of
/// `output_size`: `[N, C, H, W]` (PyTorch's `F.fold`, col2im). Each column's entries are
/// added onto the pixels its block covers, so overlapping blocks add up; the adjoint of
/// [`unfold`]. Dilation, padding and stride are [`fold_with`]'s. Differentiable to any order.
///
/// ```
/// use tapegrad_ops::functional::{fold, unfold};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 3, 3]);
/// // Folding the 2 x 2 blocks back counts how many blocks cover each pixel.
/// let counts = fold(&unfold(&x, 2), 3, 2);
/// assert_eq!(counts.to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
/// ```
#[track_caller]
pub fn fold(x: &Tensor, output_size: impl IntoPair, kernel_size: impl IntoPair) -> Tensor {
    fold_with(x, output_size, kernel_size, UnfoldOptions::default())
}

/// [`fold`] with PyTorch's keywords ([`UnfoldOptions`]: `dilation`, `padding`, `stride`).
///
/// ```
/// use tapegrad_ops::{UnfoldOptions, functional::fold_with, prelude::*};
/// use tapegrad_tape::Tensor;
/// // Non-overlapping 2 x 2 patches (stride 2) put back in place.
/// let patches = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 4, 4]);
/// let image = fold_with(&patches, 4, 2, UnfoldOptions::default().stride(2));
/// assert_eq!(image.shape(), &[1, 1, 4, 4]);
/// assert_eq!(image.to_vec::<f32>()[..4], [0.0, 4.0, 1.0, 5.0]);
/// ```
#[track_caller]
pub fn fold_with(
    x: &Tensor,
    output_size: impl IntoPair,
    kernel_size: impl IntoPair,
    options: UnfoldOptions,
) -> Tensor {
    or_panic(try_fold_with(x, output_size, kernel_size, options))
}

/// [`fold_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{UnfoldOptions, functional::try_fold_with};
/// use tapegrad_tape::Tensor;
/// // A 4 x 4 output holds nine 2 x 2 blocks, not four.
/// let err = try_fold_with(&Tensor::ones(&[1, 4, 4]), 4, 2, UnfoldOptions::default());
/// assert!(err.unwrap_err().to_string().contains("4 columns for 9 blocks"));
/// ```
#[track_caller]
pub fn try_fold_with(
    x: &Tensor,
    output_size: impl IntoPair,
    kernel_size: impl IntoPair,
    options: UnfoldOptions,
) -> Result<Tensor> {
    crate::unfold::fold(x, output_size.into_pair(), kernel_size.into_pair(), options)
}

/// Average pooling to a fixed output size (one size or a pair) with PyTorch's adaptive
/// windows.
///
/// ```
/// use tapegrad_ops::functional::adaptive_avg_pool2d;
/// use tapegrad_tape::Tensor;
/// assert_eq!(adaptive_avg_pool2d(&Tensor::ones(&[2, 3, 7, 5]), 1).to_vec::<f32>(), vec![1.0; 6]);
/// assert_eq!(adaptive_avg_pool2d(&Tensor::ones(&[1, 1, 7, 5]), (2, 3)).shape(), &[1, 1, 2, 3]);
/// ```
#[track_caller]
pub fn adaptive_avg_pool2d(x: &Tensor, output_size: impl IntoPair) -> Tensor {
    or_panic(try_adaptive_avg_pool2d(x, output_size))
}

/// [`adaptive_avg_pool2d`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_adaptive_avg_pool2d;
/// use tapegrad_tape::Tensor;
/// assert!(try_adaptive_avg_pool2d(&Tensor::ones(&[2, 3]), 1).is_err());
/// ```
#[track_caller]
pub fn try_adaptive_avg_pool2d(x: &Tensor, output_size: impl IntoPair) -> Result<Tensor> {
    crate::pool::adaptive_avg_pool2d(x, output_size.into_pair())
}

/// Adaptive max pooling of `[N, C, H, W]` to `output_size` (PyTorch's
/// `F.adaptive_max_pool2d`): each output is the max of its window (windows of PyTorch's
/// sizes, which may overlap by one); the gradient goes to the first largest element.
///
/// ```
/// use tapegrad_ops::{functional::adaptive_max_pool2d, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 15.0, 1.0).reshape(&[1, 1, 3, 5]);
/// assert_eq!(adaptive_max_pool2d(&x, 1).to_vec::<f32>(), vec![14.0]);
/// assert_eq!(adaptive_max_pool2d(&x, (2, 2)).to_vec::<f32>(), vec![7.0, 9.0, 12.0, 14.0]);
/// ```
#[track_caller]
pub fn adaptive_max_pool2d(x: &Tensor, output_size: impl IntoPair) -> Tensor {
    or_panic(try_adaptive_max_pool2d(x, output_size))
}

/// [`adaptive_max_pool2d`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_adaptive_max_pool2d;
/// use tapegrad_tape::Tensor;
/// assert!(try_adaptive_max_pool2d(&Tensor::ones(&[1, 1, 4, 4]), (0, 2)).is_err());
/// ```
#[track_caller]
pub fn try_adaptive_max_pool2d(x: &Tensor, output_size: impl IntoPair) -> Result<Tensor> {
    crate::pool::adaptive_max_pool2d(x, output_size.into_pair())
}

/// Max pooling of sequences `[N, C, L]` over windows of `kernel` with stride `kernel`
/// (PyTorch's `F.max_pool1d` defaults); the gradient goes to the chosen elements.
///
/// ```
/// use tapegrad_ops::functional::max_pool1d;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 0.0, 3.0], &[1, 1, 5]);
/// assert_eq!(max_pool1d(&x, 2).to_vec::<f32>(), vec![5.0, 2.0]);
/// ```
#[track_caller]
pub fn max_pool1d(x: &Tensor, kernel: usize) -> Tensor {
    max_pool1d_with(x, kernel, MaxPool1dOptions::default())
}

/// [`max_pool1d`] with PyTorch's keywords ([`MaxPool1dOptions`]).
///
/// ```
/// use tapegrad_ops::{MaxPool1dOptions, functional::max_pool1d_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 0.0, 3.0], &[1, 1, 5]);
/// let y = max_pool1d_with(&x, 3, MaxPool1dOptions::default().stride(1).padding(1));
/// assert_eq!(y.to_vec::<f32>(), vec![5.0, 5.0, 5.0, 3.0, 3.0]);
/// ```
#[track_caller]
pub fn max_pool1d_with(x: &Tensor, kernel: usize, options: MaxPool1dOptions) -> Tensor {
    or_panic(crate::pool1d::max_pool1d(x, kernel, options)).0
}

/// [`max_pool1d_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{MaxPool1dOptions, functional::try_max_pool1d_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 4]);
/// assert!(try_max_pool1d_with(&x, 2, MaxPool1dOptions::default().padding(2)).is_err());
/// assert!(try_max_pool1d_with(&Tensor::ones(&[4]), 2, MaxPool1dOptions::default()).is_err());
/// ```
#[track_caller]
pub fn try_max_pool1d_with(x: &Tensor, kernel: usize, options: MaxPool1dOptions) -> Result<Tensor> {
    Ok(crate::pool1d::max_pool1d(x, kernel, options)?.0)
}

/// [`max_pool1d_with`] that also returns, per output, the int64 position of the chosen
/// element along the sequence (PyTorch's `return_indices=True`).
///
/// ```
/// use tapegrad_ops::{MaxPool1dOptions, functional::max_pool1d_with_indices};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 0.0], &[1, 1, 4]);
/// let (_, i) = max_pool1d_with_indices(&x, 2, MaxPool1dOptions::default());
/// assert_eq!(i.to_vec::<i64>(), vec![1, 2]);
/// ```
#[track_caller]
pub fn max_pool1d_with_indices(
    x: &Tensor,
    kernel: usize,
    options: MaxPool1dOptions,
) -> (Tensor, Tensor) {
    or_panic(crate::pool1d::max_pool1d(x, kernel, options))
}

/// Average pooling of sequences `[N, C, L]` over windows of `kernel` with stride `kernel`
/// (PyTorch's `F.avg_pool1d` defaults).
///
/// ```
/// use tapegrad_ops::functional::avg_pool1d;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 6.0, 9.0], &[1, 1, 5]);
/// assert_eq!(avg_pool1d(&x, 2).to_vec::<f32>(), vec![2.0, 4.0]);
/// ```
#[track_caller]
pub fn avg_pool1d(x: &Tensor, kernel: usize) -> Tensor {
    avg_pool1d_with(x, kernel, AvgPool1dOptions::default())
}

/// [`avg_pool1d`] with PyTorch's keywords ([`AvgPool1dOptions`]).
///
/// ```
/// use tapegrad_ops::{AvgPool1dOptions, functional::avg_pool1d_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 2.0], &[1, 1, 3]);
/// let y = avg_pool1d_with(&x, 2, AvgPool1dOptions::default().stride(1));
/// assert_eq!(y.to_vec::<f32>(), vec![2.0, 2.5]);
/// ```
#[track_caller]
pub fn avg_pool1d_with(x: &Tensor, kernel: usize, options: AvgPool1dOptions) -> Tensor {
    or_panic(crate::pool1d::avg_pool1d(x, kernel, options))
}

/// [`avg_pool1d_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{AvgPool1dOptions, functional::try_avg_pool1d_with};
/// use tapegrad_tape::Tensor;
/// assert!(try_avg_pool1d_with(&Tensor::ones(&[1, 1, 3]), 4, AvgPool1dOptions::default()).is_err());
/// ```
#[track_caller]
pub fn try_avg_pool1d_with(x: &Tensor, kernel: usize, options: AvgPool1dOptions) -> Result<Tensor> {
    crate::pool1d::avg_pool1d(x, kernel, options)
}

/// Adaptive average pooling of sequences `[N, C, L]` to `output_size` positions (PyTorch's
/// `F.adaptive_avg_pool1d`).
///
/// ```
/// use tapegrad_ops::functional::adaptive_avg_pool1d;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 7.0], &[1, 1, 4]);
/// assert_eq!(adaptive_avg_pool1d(&x, 2).to_vec::<f32>(), vec![2.0, 6.0]);
/// ```
#[track_caller]
pub fn adaptive_avg_pool1d(x: &Tensor, output_size: usize) -> Tensor {
    or_panic(try_adaptive_avg_pool1d(x, output_size))
}

/// [`adaptive_avg_pool1d`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_adaptive_avg_pool1d;
/// use tapegrad_tape::Tensor;
/// assert!(try_adaptive_avg_pool1d(&Tensor::ones(&[1, 1, 4]), 0).is_err());
/// ```
#[track_caller]
pub fn try_adaptive_avg_pool1d(x: &Tensor, output_size: usize) -> Result<Tensor> {
    crate::pool1d::adaptive_avg_pool1d(x, output_size)
}

/// Adaptive max pooling of sequences `[N, C, L]` to `output_size` positions (PyTorch's
/// `F.adaptive_max_pool1d`; `1` is the max over time of a text convnet).
///
/// ```
/// use tapegrad_ops::functional::adaptive_max_pool1d;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 4.0, 2.0], &[1, 1, 5]);
/// assert_eq!(adaptive_max_pool1d(&x, 1).to_vec::<f32>(), vec![5.0]);
/// assert_eq!(adaptive_max_pool1d(&x, 2).to_vec::<f32>(), vec![5.0, 5.0]); // windows overlap
/// ```
#[track_caller]
pub fn adaptive_max_pool1d(x: &Tensor, output_size: usize) -> Tensor {
    or_panic(try_adaptive_max_pool1d(x, output_size))
}

/// [`adaptive_max_pool1d`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_adaptive_max_pool1d;
/// use tapegrad_tape::Tensor;
/// assert!(try_adaptive_max_pool1d(&Tensor::ones(&[1, 4]), 1).is_err()); // not [N, C, L]
/// ```
#[track_caller]
pub fn try_adaptive_max_pool1d(x: &Tensor, output_size: usize) -> Result<Tensor> {
    crate::pool1d::adaptive_max_pool1d(x, output_size)
}

/// Pads with zeros (PyTorch's `F.pad`): `pads` lists `(before, after)` for the last
/// dimension, then the one before it, ...; negative amounts crop.
///
/// ```
/// use tapegrad_ops::functional::pad;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2, 3]);
/// assert_eq!(pad(&x, &[1, 1]).shape(), &[2, 5]); // last dimension
/// assert_eq!(pad(&x, &[0, 0, 2, 0]).shape(), &[4, 3]); // then the one before
/// assert_eq!(pad(&x, &[-1, 0]).shape(), &[2, 2]); // cropped
/// ```
#[track_caller]
pub fn pad(x: &Tensor, pads: &[isize]) -> Tensor {
    pad_with(x, pads, PadMode::default())
}

/// [`pad`] with PyTorch's `mode` and `value` in one [`PadMode`].
///
/// ```
/// use tapegrad_ops::{PadMode, functional::pad_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
/// assert_eq!(pad_with(&x, &[1, 0], PadMode::Constant(9.0)).to_vec::<f32>(), vec![9.0, 1.0, 2.0]);
/// assert_eq!(pad_with(&x, &[0, 2], PadMode::Replicate).to_vec::<f32>(), vec![1.0, 2.0, 2.0, 2.0]);
/// ```
#[track_caller]
pub fn pad_with(x: &Tensor, pads: &[isize], mode: PadMode) -> Tensor {
    or_panic(try_pad_with(x, pads, mode))
}

/// [`pad_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{PadMode, functional::try_pad_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[3]);
/// assert!(try_pad_with(&x, &[3, 0], PadMode::Reflect).is_err()); // reflect needs pad < size
/// assert!(try_pad_with(&x, &[1], PadMode::Reflect).is_err()); // pairs only
/// ```
#[track_caller]
pub fn try_pad_with(x: &Tensor, pads: &[isize], mode: PadMode) -> Result<Tensor> {
    shape::pad_with(x, pads, mode)
}

/// Layer normalisation over the trailing `normalized_shape`, without affine parameters,
/// eps 1e-5 (PyTorch's `F.layer_norm` defaults).
///
/// ```
/// use tapegrad_ops::{functional::layer_norm, prelude::*};
/// use tapegrad_tape::Tensor;
/// let y = layer_norm(&Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]), &[3]);
/// assert!(y.mean_dim(1, false).to_vec::<f32>().iter().all(|m| m.abs() < 1e-6));
/// ```
#[track_caller]
pub fn layer_norm(x: &Tensor, normalized_shape: &[usize]) -> Tensor {
    layer_norm_with(x, normalized_shape, LayerNormOptions::default())
}

/// [`layer_norm`] with PyTorch's keywords ([`LayerNormOptions`]).
///
/// ```
/// use tapegrad_ops::{LayerNormOptions, functional::layer_norm_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2]);
/// let opts = LayerNormOptions::default().weight(&Tensor::full(&[2], 2.0)).eps(0.0);
/// assert_eq!(layer_norm_with(&x, &[2], opts).to_vec::<f32>(), vec![-2.0, 2.0]);
/// ```
#[track_caller]
pub fn layer_norm_with(
    x: &Tensor,
    normalized_shape: &[usize],
    options: LayerNormOptions,
) -> Tensor {
    or_panic(try_layer_norm_with(x, normalized_shape, options))
}

/// [`layer_norm_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{LayerNormOptions, functional::try_layer_norm_with};
/// use tapegrad_tape::Tensor;
/// let opts = LayerNormOptions::default();
/// assert!(try_layer_norm_with(&Tensor::ones(&[2, 3]), &[4], opts).is_err());
/// ```
#[track_caller]
pub fn try_layer_norm_with(
    x: &Tensor,
    normalized_shape: &[usize],
    options: LayerNormOptions,
) -> Result<Tensor> {
    let LayerNormOptions { weight, bias, eps } = options;
    crate::norm::layer_norm(x, normalized_shape, weight.as_ref(), bias.as_ref(), eps)
}

/// Attention of queries `q` (`[..., L, E]`) over keys `k` (`[..., S, E]`) and values `v`
/// (`[..., S, Ev]`): `softmax(q kᵀ / sqrt(E)) v`, leading dimensions broadcast, no mask, no
/// dropout (PyTorch's `F.scaled_dot_product_attention` defaults). Without dropout, and
/// with no mask, the causal one or a mask that needs no gradient, it runs in blocks of
/// queries that never write the scores out; its backward is written with recorded ops
/// under `create_graph`, so it differentiates twice.
///
/// ```
/// use tapegrad_ops::functional::scaled_dot_product_attention;
/// use tapegrad_tape::Tensor;
/// // Keys all alike: every query averages the values.
/// let (q, k) = (Tensor::randn(&[1, 2, 4]), Tensor::ones(&[1, 3, 4]));
/// let v = Tensor::from_vec(vec![0.0f32, 3.0, 6.0], &[1, 3, 1]);
/// let y = scaled_dot_product_attention(&q, &k, &v);
/// assert!(y.to_vec::<f32>().iter().all(|m| (m - 3.0).abs() < 1e-5));
/// ```
#[track_caller]
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    scaled_dot_product_attention_with(q, k, v, AttentionOptions::default())
}

/// [`scaled_dot_product_attention`] with PyTorch's keywords ([`AttentionOptions`]: a mask,
/// causal attention, dropout, the scale).
///
/// ```
/// use tapegrad_ops::{AttentionOptions, functional::scaled_dot_product_attention_with};
/// use tapegrad_tape::Tensor;
/// let (q, k) = (Tensor::randn(&[2, 4]), Tensor::randn(&[3, 4]));
/// let v = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3, 1]);
/// // Every query may look at key 1 only.
/// let mask = Tensor::from_vec(vec![false, true, false], &[1, 3]);
/// let y = scaled_dot_product_attention_with(&q, &k, &v, AttentionOptions::default().attn_mask(&mask));
/// assert_eq!(y.to_vec::<f32>(), vec![2.0, 2.0]);
/// ```
#[track_caller]
pub fn scaled_dot_product_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
) -> Tensor {
    or_panic(try_scaled_dot_product_attention_with(q, k, v, options))
}

/// [`scaled_dot_product_attention_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{AttentionOptions, functional::try_scaled_dot_product_attention_with};
/// use tapegrad_tape::Tensor;
/// let (q, k, v) = (Tensor::randn(&[2, 4]), Tensor::randn(&[3, 5]), Tensor::randn(&[3, 2]));
/// let err = try_scaled_dot_product_attention_with(&q, &k, &v, AttentionOptions::default());
/// assert!(err.unwrap_err().to_string().starts_with("scaled_dot_product_attention: query [2, 4]"));
/// ```
#[track_caller]
pub fn try_scaled_dot_product_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: AttentionOptions,
) -> Result<Tensor> {
    crate::attention::scaled_dot_product_attention(q, k, v, &options)
}

/// Group normalisation of `[N, C, ...]` with `num_groups` groups of channels, without
/// affine parameters, eps 1e-5 (PyTorch's `F.group_norm` defaults). With one group it is
/// layer norm over everything but the batch; with one group per channel, instance norm.
///
/// ```
/// use tapegrad_ops::{functional::group_norm, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[2, 4, 3, 3]);
/// let y = group_norm(&x, 2); // channels 0-1 and 2-3 of each sample standardised together
/// let groups = y.reshape(&[4, 18]).mean_dim(1, false).to_vec::<f32>();
/// assert!(groups.iter().all(|m| m.abs() < 1e-5));
/// ```
#[track_caller]
pub fn group_norm(x: &Tensor, num_groups: usize) -> Tensor {
    group_norm_with(x, num_groups, GroupNormOptions::default())
}

/// [`group_norm`] with PyTorch's keywords ([`GroupNormOptions`]).
///
/// ```
/// use tapegrad_ops::{GroupNormOptions, functional::group_norm_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 9.0], &[1, 2, 2]);
/// let opts = GroupNormOptions::default().weight(&Tensor::from_vec(vec![1.0f32, 2.0], &[2])).eps(0.0);
/// // Two groups of one channel: each channel standardised on its own, the second doubled.
/// assert_eq!(group_norm_with(&x, 2, opts).to_vec::<f32>(), vec![-1.0, 1.0, -2.0, 2.0]);
/// ```
#[track_caller]
pub fn group_norm_with(x: &Tensor, num_groups: usize, options: GroupNormOptions) -> Tensor {
    or_panic(try_group_norm_with(x, num_groups, options))
}

/// [`group_norm_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{GroupNormOptions, functional::try_group_norm_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2, 6, 4]);
/// assert!(try_group_norm_with(&x, 4, GroupNormOptions::default()).is_err()); // 6 % 4 != 0
/// assert!(try_group_norm_with(&x, 3, GroupNormOptions::default()).is_ok());
/// ```
#[track_caller]
pub fn try_group_norm_with(
    x: &Tensor,
    num_groups: usize,
    options: GroupNormOptions,
) -> Result<Tensor> {
    let GroupNormOptions { weight, bias, eps } = options;
    crate::norm::group_norm(x, num_groups, weight.as_ref(), bias.as_ref(), eps)
}

/// Instance normalisation of `[N, C, ...]`: each channel of each sample standardised over
/// its positions, without affine parameters, eps 1e-5 (PyTorch's `F.instance_norm`
/// defaults; one recorded op, group norm's kernel with a group per channel).
///
/// ```
/// use tapegrad_ops::{functional::instance_norm, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[2, 3, 4, 4]);
/// let y = instance_norm(&x);
/// let means = y.reshape(&[6, 16]).mean_dim(1, false).to_vec::<f32>();
/// assert!(means.iter().all(|m| m.abs() < 1e-5)); // every (sample, channel) centred
/// ```
#[track_caller]
pub fn instance_norm(x: &Tensor) -> Tensor {
    instance_norm_with(x, InstanceNormOptions::default())
}

/// [`instance_norm`] with PyTorch's keywords ([`InstanceNormOptions`]).
///
/// ```
/// use tapegrad_ops::{InstanceNormOptions, functional::instance_norm_with};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 9.0], &[1, 2, 2]);
/// let opts = InstanceNormOptions::default().weight(&Tensor::from_vec(vec![1.0f32, 2.0], &[2])).eps(0.0);
/// assert_eq!(instance_norm_with(&x, opts).to_vec::<f32>(), vec![-1.0, 1.0, -2.0, 2.0]);
/// ```
#[track_caller]
pub fn instance_norm_with(x: &Tensor, options: InstanceNormOptions) -> Tensor {
    or_panic(try_instance_norm_with(x, options))
}

/// [`instance_norm_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{InstanceNormOptions, functional::try_instance_norm_with};
/// use tapegrad_tape::Tensor;
/// // One position per channel: nothing to normalise over (PyTorch refuses it too).
/// let err = try_instance_norm_with(&Tensor::ones(&[2, 3, 1]), InstanceNormOptions::default());
/// assert!(err.unwrap_err().to_string().contains("more than one position per channel"));
/// ```
#[track_caller]
pub fn try_instance_norm_with(x: &Tensor, options: InstanceNormOptions) -> Result<Tensor> {
    let InstanceNormOptions { weight, bias, eps } = options;
    crate::norm::instance_norm(x, weight.as_ref(), bias.as_ref(), eps)
}

/// Batch normalisation of `[N, C, ...]` per channel with PyTorch's `F.batch_norm`
/// defaults: evaluation (normalised with `running`), no affine parameters.
///
/// ```
/// use tapegrad_ops::functional::{BatchNormStats, batch_norm};
/// use tapegrad_tape::Tensor;
/// let running = BatchNormStats::new(2, tapegrad_tape::DType::F32); // mean 0, variance 1
/// let x = Tensor::full(&[4, 2], 3.0);
/// let y = batch_norm(&x, Some(&running));
/// assert!(y.to_vec::<f32>().iter().all(|v| (v - 3.0).abs() < 1e-4));
/// ```
#[track_caller]
pub fn batch_norm(x: &Tensor, running: Option<&BatchNormStats>) -> Tensor {
    batch_norm_with(x, running, BatchNormOptions::default())
}

/// [`batch_norm`] with PyTorch's keywords ([`BatchNormOptions`]). In training the batch's
/// statistics normalise and `running` moves toward them by `momentum`.
///
/// ```
/// use tapegrad_ops::{BatchNormOptions, functional::{BatchNormStats, batch_norm_with}};
/// use tapegrad_tape::Tensor;
/// let running = BatchNormStats::new(2, tapegrad_tape::DType::F32);
/// let x = Tensor::randn(&[8, 2, 3, 3]);
/// let y = batch_norm_with(&x, Some(&running), BatchNormOptions::default().training(true));
/// assert_eq!(y.shape(), x.shape());
/// assert!(running.running_mean.to_vec::<f32>() != vec![0.0, 0.0]);
/// ```
#[track_caller]
pub fn batch_norm_with(
    x: &Tensor,
    running: Option<&BatchNormStats>,
    options: BatchNormOptions,
) -> Tensor {
    or_panic(try_batch_norm_with(x, running, options))
}

/// [`batch_norm_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{BatchNormOptions, functional::try_batch_norm_with};
/// use tapegrad_tape::Tensor;
/// let three_weights = BatchNormOptions::default().training(true).weight(&Tensor::ones(&[3]));
/// assert!(try_batch_norm_with(&Tensor::ones(&[4, 2]), None, three_weights).is_err()); // 2 channels
/// ```
#[track_caller]
pub fn try_batch_norm_with(
    x: &Tensor,
    running: Option<&BatchNormStats>,
    options: BatchNormOptions,
) -> Result<Tensor> {
    let BatchNormOptions { weight, bias, training, momentum, eps } = options;
    crate::norm::batch_norm(x, running, weight.as_ref(), bias.as_ref(), training, momentum, eps)
}

/// Rows of an embedding table for int64 indices (PyTorch's `F.embedding`).
///
/// ```
/// use tapegrad_ops::functional::embedding;
/// use tapegrad_tape::Tensor;
/// let table = Tensor::randn(&[10, 4]);
/// let idx = Tensor::from_vec(vec![1i64, 7, 7], &[3]);
/// assert_eq!(embedding(&idx, &table).shape(), &[3, 4]);
/// ```
#[track_caller]
pub fn embedding(indices: &Tensor, weight: &Tensor) -> Tensor {
    or_panic(try_embedding(indices, weight))
}

/// [`embedding`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_embedding;
/// use tapegrad_tape::Tensor;
/// assert!(try_embedding(&Tensor::from_vec(vec![10i64], &[1]), &Tensor::zeros(&[10, 4])).is_err());
/// ```
#[track_caller]
pub fn try_embedding(indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    crate::norm::embedding(indices, weight)
}

/// The mean of each row's embeddings: rows of `weight` (`[num_embeddings, dim]`) for every
/// int64 index of a 2-D `input` (`[bags, length]`, one bag per row), averaged per row into
/// `[bags, dim]` (PyTorch's `F.embedding_bag` with its defaults). Other reductions, 1-D
/// inputs with offsets, per-sample weights and a padding index are [`embedding_bag_with`]'s.
///
/// ```
/// use tapegrad_ops::functional::embedding_bag;
/// use tapegrad_tape::Tensor;
/// let table = Tensor::from_vec(vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0], &[3, 2]);
/// let bags = Tensor::from_vec(vec![0i64, 2, 1, 1], &[2, 2]);
/// assert_eq!(embedding_bag(&bags, &table).to_vec::<f32>(), vec![2.0, 3.0, 2.0, 3.0]);
/// ```
#[track_caller]
pub fn embedding_bag(input: &Tensor, weight: &Tensor) -> Tensor {
    embedding_bag_with(input, weight, EmbeddingBagOptions::default())
}

/// [`embedding_bag`] with PyTorch's keywords ([`EmbeddingBagOptions`]: `offsets`, `mode`,
/// `per_sample_weights`, `include_last_offset`, `padding_idx`). Differentiable in the table
/// and the per-sample weights, to any order; an empty bag gives zeros.
///
/// ```
/// use tapegrad_ops::functional::{EmbeddingBagMode, EmbeddingBagOptions, embedding_bag_with};
/// use tapegrad_tape::Tensor;
/// let table = Tensor::from_vec(vec![1.0f32, 10.0, 100.0], &[3, 1]);
/// // Three bags of a flat input: [0, 1], [] and [2, 2, 0].
/// let input = Tensor::from_vec(vec![0i64, 1, 2, 2, 0], &[5]);
/// let offsets = Tensor::from_vec(vec![0i64, 2, 2], &[3]);
/// let sum = EmbeddingBagOptions::default().offsets(&offsets).mode(EmbeddingBagMode::Sum);
/// assert_eq!(embedding_bag_with(&input, &table, sum).to_vec::<f32>(), vec![11.0, 0.0, 201.0]);
/// ```
#[track_caller]
pub fn embedding_bag_with(input: &Tensor, weight: &Tensor, options: EmbeddingBagOptions) -> Tensor {
    or_panic(try_embedding_bag_with(input, weight, options))
}

/// [`embedding_bag_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::{EmbeddingBagOptions, try_embedding_bag_with};
/// use tapegrad_tape::Tensor;
/// let flat = Tensor::from_vec(vec![0i64, 1], &[2]);
/// let err = try_embedding_bag_with(&flat, &Tensor::ones(&[2, 3]), EmbeddingBagOptions::default());
/// assert!(err.unwrap_err().to_string().contains("a 1-D input needs offsets"));
/// ```
#[track_caller]
pub fn try_embedding_bag_with(
    input: &Tensor,
    weight: &Tensor,
    options: EmbeddingBagOptions,
) -> Result<Tensor> {
    crate::embedding_bag::embedding_bag(input, weight, options)
}

/// `input` (`[N, C, H, W]`) read at the points of `grid` (`[N, H_out, W_out, 2]`: x then y,
/// -1 and 1 at the image's outer edges), blending the four nearest pixels and reading zeros
/// outside: `[N, C, H_out, W_out]` (PyTorch's `F.grid_sample` with its defaults). Other modes,
/// border padding and `align_corners` are [`grid_sample_with`]'s. Differentiable in the
/// image and the grid, to any order.
///
/// ```
/// use tapegrad_ops::functional::grid_sample;
/// use tapegrad_tape::Tensor;
/// let image = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
/// // The centre (the mean of the four pixels) and the top-left corner (a quarter of the
/// // top-left pixel: three of its four neighbours lie outside).
/// let grid = Tensor::from_vec(vec![0.0f32, 0.0, -1.0, -1.0], &[1, 1, 2, 2]);
/// assert_eq!(grid_sample(&image, &grid).to_vec::<f32>(), vec![2.5, 0.25]);
/// ```
#[track_caller]
pub fn grid_sample(input: &Tensor, grid: &Tensor) -> Tensor {
    grid_sample_with(input, grid, GridSampleOptions::default())
}

/// [`grid_sample`] with PyTorch's keywords ([`GridSampleOptions`]: `mode`, `padding_mode`,
/// `align_corners`).
///
/// ```
/// use tapegrad_ops::functional::{GridSampleMode, GridSampleOptions, GridSamplePadding, grid_sample_with};
/// use tapegrad_tape::Tensor;
/// let image = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
/// let grid = Tensor::from_vec(vec![-1.0f32, -1.0, 0.9, 0.2], &[1, 1, 2, 2]);
/// let nearest = GridSampleOptions::default().mode(GridSampleMode::Nearest).align_corners(true);
/// assert_eq!(grid_sample_with(&image, &grid, nearest).to_vec::<f32>(), vec![1.0, 4.0]);
/// let border = GridSampleOptions::default().padding_mode(GridSamplePadding::Border);
/// let far = Tensor::from_vec(vec![5.0f32, 5.0], &[1, 1, 1, 2]);
/// assert_eq!(grid_sample_with(&image, &far, border).to_vec::<f32>(), vec![4.0]); // the nearest edge pixel
/// ```
#[track_caller]
pub fn grid_sample_with(input: &Tensor, grid: &Tensor, options: GridSampleOptions) -> Tensor {
    or_panic(try_grid_sample_with(input, grid, options))
}

/// [`grid_sample_with`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::{GridSampleOptions, try_grid_sample_with};
/// use tapegrad_tape::Tensor;
/// let err = try_grid_sample_with(&Tensor::ones(&[1, 1, 4, 4]), &Tensor::zeros(&[1, 2, 2, 3]), GridSampleOptions::default());
/// assert!(err.unwrap_err().to_string().contains("grid must be [N, H_out, W_out, 2]"));
/// ```
#[track_caller]
pub fn try_grid_sample_with(
    input: &Tensor,
    grid: &Tensor,
    options: GridSampleOptions,
) -> Result<Tensor> {
    crate::grid_sample::grid_sample(input, grid, options)
}

/// The sampling grid (`[N, H, W, 2]`, for [`grid_sample`]) of the affine maps `theta`
/// (`[N, 2, 3]`, from output to input coordinates) for an output of `size` `[N, C, H, W]`
/// (PyTorch's `F.affine_grid`; pass `align_corners` as to `grid_sample`). Differentiable in
/// `theta`, to any order.
///
/// ```
/// use tapegrad_ops::functional::{affine_grid, grid_sample};
/// use tapegrad_tape::Tensor;
/// let identity = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0], &[1, 2, 3]);
/// let grid = affine_grid(&identity, &[1, 1, 2, 2], false);
/// assert_eq!(grid.to_vec::<f32>(), vec![-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5]); // pixel centres
/// let image = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
/// assert_eq!(grid_sample(&image, &grid).to_vec::<f32>(), image.to_vec::<f32>());
/// ```
#[track_caller]
pub fn affine_grid(theta: &Tensor, size: &[usize], align_corners: bool) -> Tensor {
    or_panic(try_affine_grid(theta, size, align_corners))
}

/// [`affine_grid`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_affine_grid;
/// use tapegrad_tape::Tensor;
/// let err = try_affine_grid(&Tensor::zeros(&[2, 2, 3]), &[1, 3, 8, 8], false).unwrap_err();
/// assert!(err.to_string().contains("theta must be [N, 2, 3] with size's N = 1"));
/// ```
#[track_caller]
pub fn try_affine_grid(theta: &Tensor, size: &[usize], align_corners: bool) -> Result<Tensor> {
    crate::grid_sample::affine_grid(theta, size, align_corners)
}

/// `x W^T + b` in one recorded op (PyTorch's `F.linear`): the bias is written into the
/// output before a single accumulating GEMM, and the weight's gradient comes out of its
/// own GEMM already in `W`'s layout. `x` is `[..., in]`, `weight` `[out, in]`, `bias` `[out]`.
///
/// ```
/// use tapegrad_ops::functional::linear;
/// use tapegrad_tape::Tensor;
/// let y = linear(&Tensor::ones(&[2, 3]), &Tensor::ones(&[4, 3]), Some(&Tensor::full(&[4], 0.5)));
/// assert_eq!(y.to_vec::<f32>(), vec![3.5; 8]);
/// ```
#[track_caller]
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    or_panic(try_linear(x, weight, bias))
}

/// [`linear`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_linear;
/// use tapegrad_tape::Tensor;
/// assert!(try_linear(&Tensor::ones(&[2, 3]), &Tensor::ones(&[4, 2]), None).is_err());
/// ```
#[track_caller]
pub fn try_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    crate::matmul::linear(x, weight, bias)
}

/// The elementwise half of one LSTM step, fused into one op: `gates` `[B, 4H]` (the sum of
/// the input and hidden projections, PyTorch's gate order i, f, g, o, before their
/// activations) and the cell state `c` `[B, H]` give the new `(h, c)`. Differentiable to
/// any order; for a whole sequence, [`lstm_recurrence`] is faster.
///
/// ```
/// use tapegrad_ops::functional::lstm_gates;
/// use tapegrad_tape::Tensor;
/// // All pre-activations 0: i = f = o = 1/2 and g = 0, so c' = c / 2, h' = tanh(c') / 2.
/// let (h, c) = lstm_gates(&Tensor::zeros(&[1, 4]), &Tensor::full(&[1, 1], 2.0));
/// assert_eq!(c.item(), 1.0);
/// assert!((h.item() - 0.5 * 1f64.tanh()).abs() < 1e-6);
/// ```
#[track_caller]
pub fn lstm_gates(gates: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
    or_panic(try_lstm_gates(gates, c))
}

/// [`lstm_gates`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_lstm_gates;
/// use tapegrad_tape::Tensor;
/// assert!(try_lstm_gates(&Tensor::zeros(&[2, 6]), &Tensor::zeros(&[2, 2])).is_err()); // 6 != 4 * 2
/// ```
#[track_caller]
pub fn try_lstm_gates(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    crate::recurrent::lstm_gates(gates, c)
}

/// The recurrence of an LSTM layer over a whole sequence, as one op: from `xi` `[T, B, 4H]`,
/// the input projections of every step (`x W_ihᵀ + b_ih`, PyTorch's gate order i, f, g, o),
/// the initial states `h0`, `c0` `[B, H]` and the recurrent weight `w_hh` `[4H, H]` and
/// bias `b_hh` `[4H]`, each step computes `gates = xi_t + b_hh + h_{t-1} W_hhᵀ` and the cell
/// ([`lstm_gates`]). Returns the hidden state of every step `[T, B, H]` and the final
/// `(h_T, c_T)`. What `nn::LSTM` runs per layer: each block of the batch runs the time loop
/// on its own thread, and backward forms `W_hh`'s gradient in one product over all steps.
/// Differentiable to any order, and in forward mode.
///
/// ```
/// use tapegrad_ops::functional::{lstm_gates, lstm_recurrence};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let (xi, h0, c0) = (Tensor::randn(&[3, 2, 8]), Tensor::randn(&[2, 2]), Tensor::randn(&[2, 2]));
/// let (w_hh, b_hh) = (Tensor::randn(&[8, 2]), Tensor::randn(&[8]));
/// let (out, h, c) = lstm_recurrence(&xi, &h0, &c0, &w_hh, &b_hh);
/// assert_eq!((out.shape(), h.shape(), c.shape()), (&[3, 2, 2][..], &[2, 2][..], &[2, 2][..]));
/// // Step by step with lstm_gates, the same.
/// let (mut hs, mut cs) = (h0.clone(), c0.clone());
/// for t in 0..3 {
///     let gates = &xi.select(0, t) + &F::linear(&hs, &w_hh, Some(&b_hh));
///     (hs, cs) = lstm_gates(&gates, &cs);
/// }
/// assert!((&hs - &h).abs().max().item() < 1e-6 && (&cs - &c).abs().max().item() < 1e-6);
/// # use tapegrad_ops::functional as F;
/// ```
#[track_caller]
pub fn lstm_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    or_panic(try_lstm_recurrence(xi, h0, c0, w_hh, b_hh))
}

/// [`lstm_recurrence`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_lstm_recurrence;
/// use tapegrad_tape::Tensor;
/// let (xi, state) = (Tensor::zeros(&[3, 2, 8]), Tensor::zeros(&[2, 2]));
/// let (w_hh, b_hh) = (Tensor::zeros(&[8, 3]), Tensor::zeros(&[8])); // [4H, H] would be [8, 2]
/// assert!(try_lstm_recurrence(&xi, &state, &state, &w_hh, &b_hh).is_err());
/// ```
#[track_caller]
pub fn try_lstm_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let states = crate::recurrent::lstm_recurrence(xi, (h0, c0), (w_hh, b_hh))?;
    let hidden = h0.shape()[1];
    let out = shape::narrow(&states, 2, 0, hidden)?;
    if states.shape()[0] == 0 {
        return Ok((out, h0.clone(), c0.clone()));
    }
    let last = crate::index::slicing::select(&states, 0, -1)?;
    Ok((out, shape::narrow(&last, 1, 0, hidden)?, shape::narrow(&last, 1, hidden, hidden)?))
}

/// The recurrence of a GRU layer over a whole sequence, as one op: from `xi` `[T, B, 3H]`,
/// the input projections of every step (`x W_ihᵀ + b_ih`, PyTorch's gate order r, z, n),
/// the initial state `h0` `[B, H]` and the recurrent weight `w_hh` `[3H, H]` and bias
/// `b_hh` `[3H]`, each step computes `gh = h_{t-1} W_hhᵀ + b_hh` and
/// `r = σ(xi_r + gh_r)`, `z = σ(xi_z + gh_z)`, `n = tanh(xi_n + r gh_n)`,
/// `h_t = (1 - z) n + z h_{t-1}`. Returns the hidden state of every step `[T, B, H]` and the
/// final `h_T`. What `nn::GRU` runs per layer: each block of the batch runs the time loop on
/// its own thread, and backward forms `W_hh`'s gradient in one product over all steps.
/// Differentiable to any order, and in forward mode.
///
/// ```
/// use tapegrad_ops::functional::{gru_recurrence, linear};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let (xi, h0) = (Tensor::randn(&[3, 2, 6]), Tensor::randn(&[2, 2]));
/// let (w_hh, b_hh) = (Tensor::randn(&[6, 2]), Tensor::randn(&[6]));
/// let (out, h) = gru_recurrence(&xi, &h0, &w_hh, &b_hh);
/// assert_eq!((out.shape(), h.shape()), (&[3, 2, 2][..], &[2, 2][..]));
/// // Step by step, the same.
/// let mut hs = h0.clone();
/// for t in 0..3 {
///     let (x, g) = (xi.select(0, t).split(2, 1), linear(&hs, &w_hh, Some(&b_hh)).split(2, 1));
///     let r = (&x[0] + &g[0]).sigmoid();
///     let z = (&x[1] + &g[1]).sigmoid();
///     let n = (&x[2] + &(&r * &g[2])).tanh();
///     hs = &(&z.rsub_scalar(1.0) * &n) + &(&z * &hs);
/// }
/// assert!((&hs - &h).abs().max().item() < 1e-6);
/// ```
#[track_caller]
pub fn gru_recurrence(xi: &Tensor, h0: &Tensor, w_hh: &Tensor, b_hh: &Tensor) -> (Tensor, Tensor) {
    or_panic(try_gru_recurrence(xi, h0, w_hh, b_hh))
}

/// [`gru_recurrence`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_gru_recurrence;
/// use tapegrad_tape::Tensor;
/// let (xi, h0) = (Tensor::zeros(&[3, 2, 6]), Tensor::zeros(&[2, 2]));
/// let (w_hh, b_hh) = (Tensor::zeros(&[6, 3]), Tensor::zeros(&[6])); // [3H, H] would be [6, 2]
/// assert!(try_gru_recurrence(&xi, &h0, &w_hh, &b_hh).is_err());
/// ```
#[track_caller]
pub fn try_gru_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> Result<(Tensor, Tensor)> {
    with_last_state(crate::recurrent::gru_recurrence(xi, h0, (w_hh, b_hh))?, h0)
}

/// The recurrence of an Elman RNN layer with tanh (`nn.RNN`'s default) over a whole
/// sequence, as one op: from `xi` `[T, B, H]`, the input projections of every step
/// (`x W_ihᵀ + b_ih`), the initial state `h0` `[B, H]` and the recurrent weight `w_hh`
/// `[H, H]` and bias `b_hh` `[H]`, `h_t = tanh(xi_t + b_hh + h_{t-1} W_hhᵀ)`. Returns the
/// hidden state of every step `[T, B, H]` and the final `h_T`. What `nn::RNN` runs per
/// layer; differentiable to any order, and in forward mode.
///
/// ```
/// use tapegrad_ops::functional::{linear, rnn_tanh_recurrence};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let (xi, h0) = (Tensor::randn(&[3, 2, 4]), Tensor::randn(&[2, 4]));
/// let (w_hh, b_hh) = (Tensor::randn(&[4, 4]), Tensor::randn(&[4]));
/// let (out, h) = rnn_tanh_recurrence(&xi, &h0, &w_hh, &b_hh);
/// let mut hs = h0.clone();
/// for t in 0..3 {
///     hs = (&xi.select(0, t) + &linear(&hs, &w_hh, Some(&b_hh))).tanh();
/// }
/// assert!((&hs - &h).abs().max().item() < 1e-6);
/// assert_eq!(out.shape(), &[3, 2, 4]);
/// ```
#[track_caller]
pub fn rnn_tanh_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> (Tensor, Tensor) {
    or_panic(try_rnn_tanh_recurrence(xi, h0, w_hh, b_hh))
}

/// [`rnn_tanh_recurrence`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_rnn_tanh_recurrence;
/// use tapegrad_tape::Tensor;
/// let (xi, h0) = (Tensor::zeros(&[3, 2, 4]), Tensor::zeros(&[2, 4]));
/// let (w_hh, b_hh) = (Tensor::zeros(&[4, 3]), Tensor::zeros(&[4])); // [H, H] would be [4, 4]
/// assert!(try_rnn_tanh_recurrence(&xi, &h0, &w_hh, &b_hh).is_err());
/// ```
#[track_caller]
pub fn try_rnn_tanh_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> Result<(Tensor, Tensor)> {
    with_last_state(crate::recurrent::rnn_recurrence(xi, h0, (w_hh, b_hh), Activation::Tanh)?, h0)
}

/// [`rnn_tanh_recurrence`] with relu: `h_t = relu(xi_t + b_hh + h_{t-1} W_hhᵀ)`
/// (`nn.RNN(nonlinearity='relu')`).
///
/// ```
/// use tapegrad_ops::functional::rnn_relu_recurrence;
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let (xi, h0) = (Tensor::randn(&[5, 2, 3]), Tensor::randn(&[2, 3]));
/// let (out, h) = rnn_relu_recurrence(&xi, &h0, &Tensor::randn(&[3, 3]), &Tensor::zeros(&[3]));
/// assert!(out.min().item() >= 0.0);
/// assert_eq!(h.to_vec::<f32>(), out.select(0, -1).to_vec::<f32>());
/// ```
#[track_caller]
pub fn rnn_relu_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> (Tensor, Tensor) {
    or_panic(try_rnn_relu_recurrence(xi, h0, w_hh, b_hh))
}

/// [`rnn_relu_recurrence`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::try_rnn_relu_recurrence;
/// use tapegrad_tape::{DType, Tensor};
/// let (xi, h0) = (Tensor::zeros(&[3, 2, 4]), Tensor::zeros_dtype(&[2, 4], DType::F64));
/// let (w_hh, b_hh) = (Tensor::zeros(&[4, 4]), Tensor::zeros(&[4]));
/// assert!(try_rnn_relu_recurrence(&xi, &h0, &w_hh, &b_hh).is_err()); // f32 and f64 mixed
/// ```
#[track_caller]
pub fn try_rnn_relu_recurrence(
    xi: &Tensor,
    h0: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
) -> Result<(Tensor, Tensor)> {
    with_last_state(crate::recurrent::rnn_recurrence(xi, h0, (w_hh, b_hh), Activation::Relu)?, h0)
}

/// A recurrence's outputs `[T, B, H]` and its final state (`h0` for an empty sequence).
fn with_last_state(out: Tensor, h0: &Tensor) -> Result<(Tensor, Tensor)> {
    if out.shape()[0] == 0 {
        return Ok((out, h0.clone()));
    }
    let last = crate::index::slicing::select(&out, 0, -1)?;
    Ok((out, last))
}
