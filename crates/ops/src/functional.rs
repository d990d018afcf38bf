//! Neural-network functions (PyTorch's `torch.nn.functional`): softmax, losses, dropout.

use std::panic::Location;

use tapegrad_kernels::softmax::softmax;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Element, Error, Result, Tensor, ensure_float, or_panic, record,
};

use crate::dims::resolve;
use crate::{binary, elementwise, reduce, shape, unary};

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

#[track_caller]
pub(crate) fn softmax_op(x: &Tensor, dim: isize, log: bool) -> Result<Tensor> {
    let location = Location::caller();
    let op = if log { "log_softmax" } else { "softmax" };
    ensure_float(op, x, location)?;
    let x0 = if x.dim() == 0 { shape::reshape_to(x, &[1]) } else { x.clone() };
    let d = resolve(op, &x0, dim, location)?;
    let shape = x0.shape();
    let sizes = (shape[..d].iter().product(), shape[d], shape[d + 1..].iter().product());
    let storage =
        tapegrad_tape::map_float_storage!(&x0.contiguous_storage(), v => softmax(v, sizes, log));
    let value = Tensor::from_storage(storage, Layout::contiguous(x.shape()));
    let di = d as isize;
    Ok(record(op, location, &[x], value, || {
        Backward::new(move |ctx| {
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
    }))
}

/// Options of [`cross_entropy_with`] and [`nll_loss_with`], as in PyTorch.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::LossOptions};
/// let opts = LossOptions { reduction: Reduction::Sum, ..Default::default() };
/// assert_eq!(opts.ignore_index, -100);
/// ```
#[derive(Clone, Debug)]
pub struct LossOptions {
    /// How per-sample losses combine.
    pub reduction: Reduction,
    /// A class index whose samples contribute nothing (PyTorch's default, -100).
    pub ignore_index: i64,
    /// A weight per class (shape `[C]`), or `None` for equal weights.
    pub weight: Option<Tensor>,
}

impl Default for LossOptions {
    fn default() -> Self {
        LossOptions { reduction: Reduction::Mean, ignore_index: -100, weight: None }
    }
}

/// Negative log-likelihood of class indices under log-probabilities `log_probs`
/// (`[N, C]`, `[N, C, d..]` or `[C]`), with the mean taken over the weights of the
/// non-ignored samples, as in PyTorch.
///
/// ```
/// use tapegrad_ops::{functional::nll_loss, prelude::*};
/// use tapegrad_tape::Tensor;
/// let logp = Tensor::from_vec(vec![-0.5f32, -1.0, -2.0, -0.1], &[2, 2]);
/// let target = Tensor::from_vec(vec![0i64, 1], &[2]);
/// assert!((nll_loss(&logp, &target).item() - 0.3).abs() < 1e-6);
/// ```
#[track_caller]
pub fn nll_loss(log_probs: &Tensor, target: &Tensor) -> Tensor {
    or_panic(nll_loss_with(log_probs, target, &LossOptions::default()))
}

/// [`nll_loss`] with options, returning an error for bad shapes or out-of-range classes.
///
/// ```
/// use tapegrad_ops::functional::{LossOptions, nll_loss_with};
/// use tapegrad_tape::Tensor;
/// let logp = Tensor::zeros(&[2, 3]);
/// let bad = Tensor::from_vec(vec![0i64, 3], &[2]);
/// assert!(nll_loss_with(&logp, &bad, &LossOptions::default()).is_err());
/// ```
#[track_caller]
pub fn nll_loss_with(log_probs: &Tensor, target: &Tensor, options: &LossOptions) -> Result<Tensor> {
    let location = Location::caller();
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
            "input must be [C], [N, C] or [N, C, d1, ...], got a zero-dimensional tensor".into(),
        ));
    }
    // Promote an unbatched [C] input to [1, C] (its target is one class index).
    let (input, target) = if log_probs.dim() == 1 {
        if target.numel() != 1 || target.dim() > 1 {
            return Err(bad(format!(
                "an unbatched input of shape {:?} takes a single target index, got shape {:?}",
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
        if c != options.ignore_index {
            crate::index::check_index("nll_loss", c, k, target.shape(), classes, location)?;
        }
    }
    let class_weight: Vec<f64> = match &options.weight {
        Some(w) if w.shape() != [classes] => {
            return Err(bad(format!("weight has shape {:?}, expected [{classes}]", w.shape())));
        }
        Some(w) => w.to_vec::<f64>(),
        None => vec![1.0; classes],
    };
    let safe: Vec<i64> =
        labels.iter().map(|&c| if c == options.ignore_index { 0 } else { c }).collect();
    let w: Vec<f64> = labels
        .iter()
        .map(|&c| if c == options.ignore_index { 0.0 } else { class_weight[c as usize] })
        .collect();
    let index = shape::unsqueeze(&Tensor::from_vec(safe, target.shape()), 1)?;
    let picked = shape::squeeze(&crate::index::gather(&input, 1, &index)?, Some(1))?;
    let weights = Tensor::from_vec(w.clone(), target.shape()).to_dtype(input.dtype());
    let losses = -(&picked * &weights);
    Ok(match options.reduction {
        Reduction::None => {
            if log_probs.dim() == 1 {
                shape::reshape_to(&losses, &[])
            } else {
                losses
            }
        }
        Reduction::Sum => reduce::sum(&losses),
        Reduction::Mean => reduce::sum(&losses).div_scalar(w.iter().sum::<f64>()),
    })
}

/// Cross-entropy between logits (`[N, C]`, `[N, C, d..]` or `[C]`) and targets that are
/// either int64 class indices or class probabilities shaped like the logits; computed
/// through a stable log-softmax, so logits of ±1e4 give finite values and gradients.
///
/// ```
/// use tapegrad_ops::functional::cross_entropy;
/// use tapegrad_tape::Tensor;
/// let logits = Tensor::from_vec(vec![1e4f32, -1e4, 0.0, 0.0], &[2, 2]);
/// let target = Tensor::from_vec(vec![0i64, 1], &[2]);
/// let loss = cross_entropy(&logits, &target);
/// assert!((loss.item() - 0.5 * 2f64.ln()).abs() < 1e-6);
/// ```
#[track_caller]
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    or_panic(cross_entropy_with(logits, target, &LossOptions::default()))
}

/// [`cross_entropy`] with options.
///
/// ```
/// use tapegrad_ops::{
///     Reduction,
///     functional::{LossOptions, cross_entropy_with},
/// };
/// use tapegrad_tape::Tensor;
/// let logits = Tensor::zeros(&[3, 4]);
/// let probs = Tensor::full(&[3, 4], 0.25);
/// let opts = LossOptions { reduction: Reduction::None, ..Default::default() };
/// assert_eq!(cross_entropy_with(&logits, &probs, &opts).unwrap().shape(), &[3]);
/// ```
#[track_caller]
pub fn cross_entropy_with(
    logits: &Tensor,
    target: &Tensor,
    options: &LossOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("cross_entropy", logits, location)?;
    let class_dim = if logits.dim() == 1 { 0 } else { 1 };
    let log_probs = softmax_op(logits, class_dim, true)?;
    if target.dtype() == DType::I64 {
        return nll_loss_with(&log_probs, target, options);
    }
    if target.shape() != logits.shape() || target.dtype() != logits.dtype() {
        return Err(Error::Shape {
            op: "cross_entropy",
            message: format!(
                "probability targets must match the logits' shape {:?} and dtype {}, got {:?} {}",
                logits.shape(),
                logits.dtype(),
                target.shape(),
                target.dtype()
            ),
            location,
        });
    }
    let weighted = match &options.weight {
        Some(w) => {
            let mut wshape = vec![1; logits.dim()];
            wshape[class_dim as usize] = w.numel();
            &(target * &shape::reshape_to(w, &wshape)) * &log_probs
        }
        None => target * &log_probs,
    };
    let per_sample = -reduce::sum_dim(&weighted, class_dim, false)?;
    Ok(reduce_loss(per_sample, options.reduction))
}

/// Mean squared error.
///
/// ```
/// use tapegrad_ops::functional::mse_loss;
/// use tapegrad_tape::Tensor;
/// assert_eq!(mse_loss(&Tensor::ones(&[2]), &Tensor::zeros(&[2])).item(), 1.0);
/// ```
#[track_caller]
pub fn mse_loss(input: &Tensor, target: &Tensor) -> Tensor {
    mse_loss_with(input, target, Reduction::Mean)
}

/// [`mse_loss`] with a reduction.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::mse_loss_with};
/// use tapegrad_tape::Tensor;
/// let (x, target) = (Tensor::from_vec(vec![1.0f32, 3.0], &[2]), Tensor::zeros(&[2]));
/// assert_eq!(mse_loss_with(&x, &target, Reduction::None).to_vec::<f32>(), vec![1.0, 9.0]);
/// assert_eq!(mse_loss_with(&x, &target, Reduction::Sum).item(), 10.0);
/// assert_eq!(mse_loss_with(&x, &target, Reduction::Mean).item(), 5.0);
/// ```
#[track_caller]
pub fn mse_loss_with(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    reduce_loss(unary::square(&(input - target)), reduction)
}

/// Mean absolute error.
///
/// ```
/// use tapegrad_ops::functional::l1_loss;
/// use tapegrad_tape::Tensor;
/// assert_eq!(l1_loss(&Tensor::full(&[2], -2.0), &Tensor::zeros(&[2])).item(), 2.0);
/// ```
#[track_caller]
pub fn l1_loss(input: &Tensor, target: &Tensor) -> Tensor {
    l1_loss_with(input, target, Reduction::Mean)
}

/// [`l1_loss`] with a reduction.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::l1_loss_with};
/// use tapegrad_tape::Tensor;
/// let (x, target) = (Tensor::from_vec(vec![-1.0f32, 3.0], &[2]), Tensor::zeros(&[2]));
/// assert_eq!(l1_loss_with(&x, &target, Reduction::None).to_vec::<f32>(), vec![1.0, 3.0]);
/// assert_eq!(l1_loss_with(&x, &target, Reduction::Sum).item(), 4.0);
/// assert_eq!(l1_loss_with(&x, &target, Reduction::Mean).item(), 2.0);
/// ```
#[track_caller]
pub fn l1_loss_with(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    reduce_loss(unary::abs(&(input - target)), reduction)
}

/// Huber-style loss: `0.5 d^2 / beta` where `|d| < beta`, `|d| - 0.5 beta` elsewhere.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::smooth_l1_loss};
/// use tapegrad_tape::Tensor;
/// let d = Tensor::from_vec(vec![0.5f64, 3.0], &[2]);
/// let loss = smooth_l1_loss(
///     &d,
///     &Tensor::zeros_dtype(&[2], tapegrad_tape::DType::F64),
///     1.0,
///     Reduction::None,
/// );
/// assert_eq!(loss.to_vec::<f64>(), vec![0.125, 2.5]);
/// ```
#[track_caller]
pub fn smooth_l1_loss(input: &Tensor, target: &Tensor, beta: f64, reduction: Reduction) -> Tensor {
    let d = input - target;
    if beta == 0.0 {
        return reduce_loss(unary::abs(&d), reduction);
    }
    let ad = unary::abs(&d);
    let quadratic = unary::square(&d).mul_scalar(0.5 / beta);
    let linear = ad.sub_scalar(0.5 * beta);
    let small = elementwise::mask(&ad, move |v| v < beta);
    reduce_loss(or_panic(binary::try_where(&small, &quadratic, &linear)), reduction)
}

/// Binary cross-entropy of probabilities `input` against `target` in [0, 1]; each log is
/// clamped at -100 as in PyTorch, so that probabilities of exactly 0 or 1 stay finite. The
/// gradient with respect to `input` is PyTorch's `(p - y) / max(p (1 - p), 1e-12)`, finite at
/// p = 0 and p = 1 (where the clamped logs would give `0 * inf`).
///
/// # Panics
/// If an element of `input` or `target` is outside [0, 1] or NaN (PyTorch raises there too),
/// or the shapes do not broadcast.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::binary_cross_entropy};
/// use tapegrad_tape::Tensor;
/// let p = Tensor::from_vec(vec![0.5f64, 1.0], &[2]);
/// let y = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
/// let loss = binary_cross_entropy(&p, &y, Reduction::None).to_vec::<f64>();
/// assert!((loss[0] - 2f64.ln()).abs() < 1e-12 && loss[1] == 100.0);
/// ```
#[track_caller]
pub fn binary_cross_entropy(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    or_panic(try_binary_cross_entropy(input, target, reduction))
}

/// [`binary_cross_entropy`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::try_binary_cross_entropy};
/// use tapegrad_tape::Tensor;
/// let p = Tensor::from_vec(vec![0.5f32, 1.5], &[2]);
/// let err = try_binary_cross_entropy(&p, &Tensor::ones(&[2]), Reduction::Mean).unwrap_err();
/// assert!(err.to_string().contains("between 0 and 1"), "{err}");
/// ```
#[track_caller]
pub fn try_binary_cross_entropy(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "binary_cross_entropy";
    let location = Location::caller();
    let shape = tapegrad_tape::arith::broadcast_pair(OP, input, target, location)?;
    let value = binary::zip_value(input, target, &shape, bce::<f32>, bce::<f64>);
    for (name, t) in [("input", input), ("target", target)] {
        let values = t.to_vec::<f64>();
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !(0.0..=1.0).contains(*v)) {
            return Err(Error::InvalidArgument {
                op: OP,
                message: format!(
                    "all elements of {name} should be between 0 and 1, but element {i} is {v}"
                ),
                location,
            });
        }
    }
    let loss = record(OP, location, &[input, target], value, || {
        Backward::new(|ctx| {
            let (g, p, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            smallvec![
                ctx.needs_input_grad(0).then(|| {
                    let variance =
                        unary::clamp(&(p * &p.rsub_scalar(1.0)), Some(BCE_EPSILON), None);
                    (g * &(&(p - y) / &variance)).sum_to_shape(p.shape())
                }),
                // PyTorch leaves these logs unclamped: infinite at p = 0 or 1.
                ctx.needs_input_grad(1)
                    .then(|| (g * &(&unary::log1p(&-p) - &unary::log(p))).sum_to_shape(y.shape())),
            ]
        })
        .save(input)
        .save(target)
    });
    Ok(reduce_loss(loss, reduction))
}

/// The floor of `p (1 - p)` in the input gradient: PyTorch's `1e-12`, a C `float` constant, so
/// its value is the f32 nearest 1e-12 in both dtypes.
const BCE_EPSILON: f64 = 1e-12f32 as f64;

/// One element of binary cross-entropy, with PyTorch's clamped logs.
fn bce<T: Element>(p: T, y: T) -> T {
    let floor = T::from_f64(-100.0);
    let log_p = p.ln();
    let log_q = (-p).ln_1p();
    // `max` written out: NaN must reach the loss, and `Float::max` would drop it.
    let log_p = if log_p < floor { floor } else { log_p };
    let log_q = if log_q < floor { floor } else { log_q };
    -(y * log_p + (T::ONE - y) * log_q)
}

/// Binary cross-entropy on logits, `max(x, 0) - x y + ln(1 + e^-|x|)`: stable for any
/// logit, with gradient `sigmoid(x) - y`.
///
/// ```
/// use tapegrad_ops::{Reduction, functional::binary_cross_entropy_with_logits};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1e4f32, -1e4], &[2]);
/// let y = Tensor::from_vec(vec![1.0f32, 1.0], &[2]);
/// assert_eq!(
///     binary_cross_entropy_with_logits(&x, &y, Reduction::None).to_vec::<f32>(),
///     vec![0.0, 1e4]
/// );
/// ```
#[track_caller]
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
) -> Tensor {
    or_panic(try_bce_with_logits(input, target, reduction))
}

#[track_caller]
fn try_bce_with_logits(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let location = Location::caller();
    let shape = tapegrad_tape::arith::broadcast_pair(
        "binary_cross_entropy_with_logits",
        input,
        target,
        location,
    )?;
    let value = binary::zip_value(
        input,
        target,
        &shape,
        |x, y| x.max(0.0) - x * y + unary::softplus(-x.abs()),
        |x, y| x.max(0.0) - x * y + unary::softplus(-x.abs()),
    );
    let loss =
        record("binary_cross_entropy_with_logits", location, &[input, target], value, || {
            Backward::new(|ctx| {
                let (g, x, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
                smallvec![
                    ctx.needs_input_grad(0)
                        .then(|| (g * &(&unary::sigmoid_op(x) - y)).sum_to_shape(x.shape())),
                    ctx.needs_input_grad(1).then(|| (-(g * x)).sum_to_shape(y.shape())),
                ]
            })
            .save(input)
            .save(target)
        });
    Ok(reduce_loss(loss, reduction))
}

/// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)` during
/// training (inverted dropout, seeded by `manual_seed`); the identity when `training` is
/// false.
///
/// ```
/// use tapegrad_ops::functional::dropout;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1000]);
/// assert_eq!(dropout(&x, 0.5, false).to_vec::<f32>(), x.to_vec::<f32>());
/// let y = dropout(&x, 0.5, true).to_vec::<f32>();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// ```
#[track_caller]
pub fn dropout(x: &Tensor, p: f64, training: bool) -> Tensor {
    let location = Location::caller();
    if !(0.0..=1.0).contains(&p) {
        panic!(
            "{}",
            Error::InvalidArgument {
                op: "dropout",
                message: format!("probability {p} is not in [0, 1]"),
                location
            }
        );
    }
    if !training || p == 0.0 {
        return x.clone();
    }
    if p == 1.0 {
        return x * 0.0;
    }
    let scale = 1.0 / (1.0 - p);
    let keep: Vec<f64> = tapegrad_tape::with_generator(|rng| {
        use rand::RngExt;
        (0..x.numel()).map(|_| if rng.random::<f64>() >= p { scale } else { 0.0 }).collect()
    });
    let mask = Tensor::from_vec(keep, x.shape()).to_dtype(x.dtype());
    x * &mask
}

pub use crate::conv::Conv2dOptions;
pub use crate::norm::BatchNormStats;

/// 2-D convolution (cross-correlation, as in PyTorch) of `x` `[N, C, H, W]` with `weight`
/// `[O, C / groups, kH, kW]` and an optional `bias` `[O]`; lowered to GEMM via im2col.
///
/// ```
/// use tapegrad_ops::functional::{Conv2dOptions, conv2d};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 4, 4]);
/// let w = Tensor::ones(&[2, 1, 3, 3]);
/// let y = conv2d(&x, &w, None, Conv2dOptions { padding: (1, 1), ..Default::default() });
/// assert_eq!(y.shape(), &[1, 2, 4, 4]);
/// assert_eq!(y.to_vec::<f32>()[5], 9.0);
/// ```
#[track_caller]
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
) -> Tensor {
    or_panic(crate::conv::conv2d(x, weight, bias, options))
}

/// [`conv2d`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::functional::{Conv2dOptions, try_conv2d};
/// use tapegrad_tape::Tensor;
/// let err = try_conv2d(
///     &Tensor::ones(&[1, 3, 8, 8]),
///     &Tensor::ones(&[4, 2, 3, 3]),
///     None,
///     Conv2dOptions::default(),
/// );
/// assert!(err.unwrap_err().to_string().contains("3 channels"));
/// ```
#[track_caller]
pub fn try_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
) -> Result<Tensor> {
    crate::conv::conv2d(x, weight, bias, options)
}

/// 1-D convolution of `x` `[N, C, L]` with `weight` `[O, C / groups, K]`.
///
/// ```
/// use tapegrad_ops::functional::conv1d;
/// use tapegrad_tape::Tensor;
/// let y = conv1d(&Tensor::ones(&[2, 3, 10]), &Tensor::ones(&[4, 3, 3]), None, 1, 1, 1, 1);
/// assert_eq!(y.shape(), &[2, 4, 10]);
/// ```
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn conv1d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Tensor {
    or_panic(crate::conv::conv1d(x, weight, bias, stride, padding, dilation, groups))
}

/// Transposed 2-D convolution (the gradient of `conv2d` with respect to its input), as used
/// by GAN generators: `x` `[N, C_in, H, W]`, `weight` `[C_in, C_out / groups, kH, kW]`.
///
/// ```
/// use tapegrad_ops::functional::{Conv2dOptions, conv_transpose2d};
/// use tapegrad_tape::Tensor;
/// let opts = Conv2dOptions { stride: (2, 2), padding: (1, 1), ..Default::default() };
/// let y = conv_transpose2d(
///     &Tensor::ones(&[1, 8, 7, 7]),
///     &Tensor::ones(&[8, 4, 4, 4]),
///     None,
///     opts,
///     (0, 0),
/// );
/// assert_eq!(y.shape(), &[1, 4, 14, 14]);
/// ```
#[track_caller]
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
    output_padding: (usize, usize),
) -> Tensor {
    or_panic(crate::conv::conv_transpose2d(x, weight, bias, options, output_padding))
}

/// Max pooling over `kernel` windows of `[N, C, H, W]` (windows never start in the padding
/// beyond half a kernel, as in PyTorch); the gradient goes to the chosen elements.
///
/// ```
/// use tapegrad_ops::{functional::max_pool2d, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 1, 4, 4]);
/// assert_eq!(max_pool2d(&x, (2, 2), (2, 2), (0, 0)).to_vec::<f32>(), vec![5.0, 7.0, 13.0, 15.0]);
/// ```
#[track_caller]
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Tensor {
    or_panic(crate::pool::max_pool2d(x, kernel, stride, padding)).0
}

/// [`max_pool2d`] that also returns, per output, the int64 flat position `h * W + w` of the
/// chosen input element (PyTorch's `return_indices=True`).
///
/// ```
/// use tapegrad_ops::{functional::max_pool2d_with_indices, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0).reshape(&[1, 1, 4, 4]);
/// let (_, i) = max_pool2d_with_indices(&x, (2, 2), (2, 2), (0, 0)).unwrap();
/// assert_eq!(i.to_vec::<i64>(), vec![5, 7, 13, 15]);
/// ```
#[track_caller]
pub fn max_pool2d_with_indices(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    crate::pool::max_pool2d(x, kernel, stride, padding)
}

/// Average pooling (zero padding counted in the average, PyTorch's default).
///
/// ```
/// use tapegrad_ops::functional::avg_pool2d;
/// use tapegrad_tape::Tensor;
/// assert_eq!(
///     avg_pool2d(&Tensor::ones(&[1, 2, 4, 4]), (2, 2), (2, 2), (0, 0)).shape(),
///     &[1, 2, 2, 2]
/// );
/// ```
#[track_caller]
pub fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Tensor {
    or_panic(crate::pool::avg_pool2d(x, kernel, stride, padding))
}

/// Average pooling to a fixed output size with PyTorch's adaptive windows.
///
/// ```
/// use tapegrad_ops::functional::adaptive_avg_pool2d;
/// use tapegrad_tape::Tensor;
/// assert_eq!(
///     adaptive_avg_pool2d(&Tensor::ones(&[2, 3, 7, 5]), (1, 1)).to_vec::<f32>(),
///     vec![1.0; 6]
/// );
/// ```
#[track_caller]
pub fn adaptive_avg_pool2d(x: &Tensor, output_size: (usize, usize)) -> Tensor {
    or_panic(crate::pool::adaptive_avg_pool2d(x, output_size))
}

/// Layer normalisation over the trailing `normalized_shape`, with optional affine parameters.
///
/// ```
/// use tapegrad_ops::{functional::layer_norm, prelude::*};
/// use tapegrad_tape::Tensor;
/// let y = layer_norm(&Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]), &[3], None, None, 1e-5);
/// assert!(y.mean_dim(1, false).to_vec::<f32>().iter().all(|m| m.abs() < 1e-6));
/// ```
#[track_caller]
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    or_panic(crate::norm::layer_norm(x, normalized_shape, weight, bias, eps))
}

/// Batch normalisation of `[N, C, ...]` per channel; see [`BatchNormStats`].
///
/// ```
/// use tapegrad_ops::functional::{BatchNormStats, batch_norm};
/// use tapegrad_tape::Tensor;
/// let stats = BatchNormStats::new(2, tapegrad_tape::DType::F32);
/// let x = Tensor::randn(&[8, 2, 3, 3]);
/// let y = batch_norm(&x, Some(&stats), None, None, true, 0.1, 1e-5);
/// assert_eq!(y.shape(), x.shape());
/// assert!(stats.running_mean.to_vec::<f32>() != vec![0.0, 0.0]);
/// ```
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn batch_norm(
    x: &Tensor,
    stats: Option<&BatchNormStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Tensor {
    or_panic(crate::norm::batch_norm(x, stats, weight, bias, training, momentum, eps))
}

/// Rows of an embedding table for int64 indices.
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
    or_panic(crate::norm::embedding(indices, weight))
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
    or_panic(crate::matmul::linear(x, weight, bias))
}
