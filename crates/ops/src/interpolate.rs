//! Resizing (PyTorch's `F.interpolate` and `nn.Upsample`): nearest, nearest-exact and
//! (bi/tri)linear over the spatial dimensions of `[N, C, ...]` inputs.
//!
//! Each mode is separable: the output is resized one spatial dimension at a time, from the
//! last to the first, each step gathering input rows with `index_select` (and, for the
//! linear modes, blending two of them with PyTorch's weights). Being composed of recorded
//! ops, the result is differentiable to any order; the indices and weights are worked out
//! in the input's precision, as PyTorch's kernels do, so float32 results carry PyTorch's
//! rounding.

use std::panic::Location;

use tapegrad_tape::{DType, Error, Result, Tensor, ensure_float};

use crate::index::index_select;

/// How [`interpolate_with`](crate::functional::interpolate_with) picks or blends input
/// pixels (PyTorch's `mode`).
///
/// ```
/// use tapegrad_ops::InterpolateMode;
/// assert_eq!(InterpolateMode::default(), InterpolateMode::Nearest);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InterpolateMode {
    /// `'nearest'`: the input pixel at `floor(i * scale)`.
    #[default]
    Nearest,
    /// `'nearest-exact'`: the input pixel at `floor((i + 0.5) * scale)`.
    NearestExact,
    /// `'linear'`, for `[N, C, L]`.
    Linear,
    /// `'bilinear'`, for `[N, C, H, W]`.
    Bilinear,
    /// `'trilinear'`, for `[N, C, D, H, W]`.
    Trilinear,
}

impl InterpolateMode {
    fn name(self) -> &'static str {
        match self {
            InterpolateMode::Nearest => "nearest",
            InterpolateMode::NearestExact => "nearest-exact",
            InterpolateMode::Linear => "linear",
            InterpolateMode::Bilinear => "bilinear",
            InterpolateMode::Trilinear => "trilinear",
        }
    }

    /// The input rank a linear mode needs (the nearest modes take ranks 3 to 5).
    fn rank(self) -> Option<usize> {
        match self {
            InterpolateMode::Linear => Some(3),
            InterpolateMode::Bilinear => Some(4),
            InterpolateMode::Trilinear => Some(5),
            _ => None,
        }
    }
}

/// The output size or scale of a resize, with PyTorch's keywords: build it with
/// [`InterpolateOptions::size`] or [`InterpolateOptions::scale_factor`], then set `mode`,
/// `align_corners` and `recompute_scale_factor`.
///
/// ```
/// use tapegrad_ops::{InterpolateMode, InterpolateOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[1, 3, 4, 6]);
/// let up = InterpolateOptions::scale_factor(2.0).mode(InterpolateMode::Bilinear);
/// assert_eq!(F::interpolate_with(&x, up).shape(), &[1, 3, 8, 12]);
/// let fixed = InterpolateOptions::size(&[5, 5]).mode(InterpolateMode::Bilinear).align_corners(true);
/// assert_eq!(F::interpolate_with(&x, fixed).shape(), &[1, 3, 5, 5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct InterpolateOptions {
    /// The output's spatial size (one value for every spatial dimension, or one each).
    pub size: Option<Vec<usize>>,
    /// The factor of every spatial dimension (one value, or one each).
    pub scale_factor: Option<Vec<f64>>,
    /// Nearest, nearest-exact or linear.
    pub mode: InterpolateMode,
    /// For the linear modes: map the corner pixels' centres onto each other (`Some(true)`)
    /// or the corners' edges (`None` or `Some(false)`, PyTorch's default).
    pub align_corners: Option<bool>,
    /// Work out the pixel mapping from the sizes rather than from `scale_factor`.
    pub recompute_scale_factor: bool,
}

impl InterpolateOptions {
    /// A resize to `size` (one value for every spatial dimension, or one each).
    ///
    /// ```
    /// use tapegrad_ops::InterpolateOptions;
    /// assert_eq!(InterpolateOptions::size(&[7]).size, Some(vec![7]));
    /// ```
    pub fn size(size: &[usize]) -> Self {
        InterpolateOptions {
            size: Some(size.to_vec()),
            scale_factor: None,
            mode: InterpolateMode::Nearest,
            align_corners: None,
            recompute_scale_factor: false,
        }
    }

    /// A resize of every spatial dimension by `factor` (the output size rounded down).
    ///
    /// ```
    /// use tapegrad_ops::InterpolateOptions;
    /// assert_eq!(InterpolateOptions::scale_factor(2.0).scale_factor, Some(vec![2.0]));
    /// ```
    pub fn scale_factor(factor: f64) -> Self {
        InterpolateOptions::scale_factors(&[factor])
    }

    /// A resize by one factor per spatial dimension.
    ///
    /// ```
    /// use tapegrad_ops::{InterpolateOptions, functional as F};
    /// use tapegrad_tape::Tensor;
    /// let y = F::interpolate_with(&Tensor::zeros(&[1, 1, 4, 4]), InterpolateOptions::scale_factors(&[2.0, 0.5]));
    /// assert_eq!(y.shape(), &[1, 1, 8, 2]);
    /// ```
    pub fn scale_factors(factors: &[f64]) -> Self {
        InterpolateOptions { size: None, scale_factor: Some(factors.to_vec()), ..Self::size(&[]) }
    }

    /// Sets `mode`.
    ///
    /// ```
    /// use tapegrad_ops::{InterpolateMode, InterpolateOptions};
    /// let o = InterpolateOptions::size(&[4]).mode(InterpolateMode::Linear);
    /// assert_eq!(o.mode, InterpolateMode::Linear);
    /// ```
    pub fn mode(mut self, mode: InterpolateMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets `align_corners` (linear modes only).
    ///
    /// ```
    /// use tapegrad_ops::InterpolateOptions;
    /// assert_eq!(InterpolateOptions::size(&[4]).align_corners(true).align_corners, Some(true));
    /// ```
    pub fn align_corners(mut self, align_corners: bool) -> Self {
        self.align_corners = Some(align_corners);
        self
    }

    /// Sets `recompute_scale_factor`.
    ///
    /// ```
    /// use tapegrad_ops::InterpolateOptions;
    /// assert!(InterpolateOptions::scale_factor(1.5).recompute_scale_factor(true).recompute_scale_factor);
    /// ```
    pub fn recompute_scale_factor(mut self, recompute: bool) -> Self {
        self.recompute_scale_factor = recompute;
        self
    }
}

/// One value per spatial dimension from `values` (one value, or one per dimension).
fn per_dim<T: Copy + std::fmt::Debug>(
    what: &str,
    values: &[T],
    dims: usize,
    invalid: &dyn Fn(String) -> Error,
) -> Result<Vec<T>> {
    match values.len() {
        1 => Ok(vec![values[0]; dims]),
        n if n == dims => Ok(values.to_vec()),
        _ => Err(invalid(format!(
            "{what} {values:?} has {} values for an input with {dims} spatial dimensions",
            values.len()
        ))),
    }
}

/// `x` resized as `options` asks (see [`crate::functional::interpolate_with`]).
#[track_caller]
pub(crate) fn interpolate(x: &Tensor, options: &InterpolateOptions) -> Result<Tensor> {
    let location = Location::caller();
    let op = "interpolate";
    let invalid = |message: String| Error::InvalidArgument { op, message, location };
    ensure_float(op, x, location)?;
    let rank = x.dim();
    if !(3..=5).contains(&rank) {
        return Err(Error::Shape {
            op,
            message: format!(
                "expects a 3-D, 4-D or 5-D input ([N, C, spatial...]), got shape {:?}",
                x.shape()
            ),
            location,
        });
    }
    let mode = options.mode;
    if let Some(needed) = mode.rank().filter(|&r| r != rank) {
        return Err(Error::Shape {
            op,
            message: format!(
                "mode {} needs a {needed}-D input, got shape {:?}",
                mode.name(),
                x.shape()
            ),
            location,
        });
    }
    if options.align_corners.is_some() && mode.rank().is_none() {
        return Err(invalid(format!(
            "align_corners can only be set with the linear modes, not {}",
            mode.name()
        )));
    }
    let spatial = rank - 2;
    let input = &x.shape()[2..];
    let (sizes, scales): (Vec<usize>, Vec<Option<f64>>) =
        match (&options.size, &options.scale_factor) {
            (Some(size), None) => (per_dim("size", size, spatial, &invalid)?, vec![None; spatial]),
            (None, Some(factors)) => {
                let factors = per_dim("scale_factor", factors, spatial, &invalid)?;
                if let Some(bad) = factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
                    return Err(invalid(format!("scale_factor {bad} must be positive and finite")));
                }
                let sizes = input
                    .iter()
                    .zip(&factors)
                    .map(|(&n, &f)| (n as f64 * f).floor() as usize)
                    .collect();
                let kept = !options.recompute_scale_factor;
                (sizes, factors.into_iter().map(|f| kept.then_some(f)).collect())
            }
            _ => return Err(invalid("exactly one of size and scale_factor must be given".into())),
        };
    if let Some(d) = sizes.iter().position(|&s| s == 0) {
        return Err(invalid(format!(
            "the output's spatial size {sizes:?} is empty in dimension {d} (input {input:?})"
        )));
    }
    if let Some(d) = input.iter().position(|&s| s == 0) {
        return Err(invalid(format!(
            "the input's spatial size {input:?} is empty in dimension {d}"
        )));
    }
    let align = options.align_corners.unwrap_or(false);
    let mut y = x.clone();
    for d in (0..spatial).rev() {
        let dim = (d + 2) as isize;
        let (n_in, n_out) = (input[d], sizes[d]);
        y = match mode {
            InterpolateMode::Nearest | InterpolateMode::NearestExact => {
                let exact = mode == InterpolateMode::NearestExact;
                let picks = nearest_sources(n_in, n_out, scales[d], exact);
                index_select(&y, dim, &indices(picks))?
            }
            _ => {
                let single = x.dtype() == DType::F32;
                let taps = linear_taps(n_in, n_out, scales[d], align, single);
                let low = index_select(&y, dim, &indices(taps.low))?;
                let high = index_select(&y, dim, &indices(taps.high))?;
                let along = |w: Vec<f64>| {
                    let mut shape = vec![1usize; rank];
                    shape[d + 2] = n_out;
                    Tensor::from_vec(w, &shape).to_dtype(x.dtype())
                };
                &(&low * &along(taps.low_weight)) + &(&high * &along(taps.high_weight))
            }
        };
    }
    Ok(y)
}

fn indices(picks: Vec<i64>) -> Tensor {
    let n = picks.len();
    Tensor::from_vec(picks, &[n])
}

/// PyTorch's input-over-output ratio of a dimension: `1 / scale_factor` when one is given,
/// else the sizes' ratio.
fn ratio(n_in: usize, n_out: usize, scale: Option<f64>) -> f64 {
    match scale {
        Some(s) => 1.0 / s,
        None => n_in as f64 / n_out as f64,
    }
}

/// The input position each output position of a nearest resize reads, in float32
/// arithmetic as PyTorch's kernels do.
fn nearest_sources(n_in: usize, n_out: usize, scale: Option<f64>, exact: bool) -> Vec<i64> {
    let last = n_in as i64 - 1;
    if !exact && n_out == n_in {
        return (0..n_out as i64).collect();
    }
    if !exact && n_out == 2 * n_in {
        return (0..n_out as i64).map(|i| i >> 1).collect();
    }
    let r = ratio(n_in, n_out, scale) as f32;
    let offset = if exact { 0.5f32 } else { 0.0 };
    (0..n_out).map(|i| (((i as f32 + offset) * r).floor() as i64).min(last)).collect()
}

/// The two input positions and their weights for each output position of a linear resize.
struct LinearTaps {
    low: Vec<i64>,
    high: Vec<i64>,
    low_weight: Vec<f64>,
    high_weight: Vec<f64>,
}

/// PyTorch's linear taps, computed in float32 when `single` (the input's precision).
fn linear_taps(
    n_in: usize,
    n_out: usize,
    scale: Option<f64>,
    align: bool,
    single: bool,
) -> LinearTaps {
    let mut taps = LinearTaps {
        low: Vec::with_capacity(n_out),
        high: Vec::with_capacity(n_out),
        low_weight: Vec::with_capacity(n_out),
        high_weight: Vec::with_capacity(n_out),
    };
    let r = if align {
        if n_out > 1 { (n_in - 1) as f64 / (n_out - 1) as f64 } else { 0.0 }
    } else {
        ratio(n_in, n_out, scale)
    };
    // In the input's precision: the position, its integer part and the fraction.
    let round = |v: f64| if single { v as f32 as f64 } else { v };
    let r = round(r);
    for i in 0..n_out {
        if n_in == n_out {
            taps.low.push(i as i64);
            taps.high.push(i as i64);
            taps.low_weight.push(1.0);
            taps.high_weight.push(0.0);
            continue;
        }
        let source = if align {
            round(r * i as f64)
        } else {
            round(round(r * round(i as f64 + 0.5)) - 0.5).max(0.0)
        };
        let low = source as i64;
        let high = low + i64::from(low < n_in as i64 - 1);
        let fraction = round(source - low as f64).clamp(0.0, 1.0);
        taps.low.push(low);
        taps.high.push(high);
        taps.low_weight.push(round(1.0 - fraction));
        taps.high_weight.push(fraction);
    }
    taps
}
