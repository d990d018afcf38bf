//! Pooling over sequences (`[N, C, L]`): the 2-d poolings of the sequence as an image of
//! height 1, so that their kernels, rules and checks serve both; and adaptive max pooling,
//! as a max over each window's taps gathered by `index_select`.

use std::panic::Location;

use tapegrad_tape::{Error, Result, Tensor, ensure_float};

use crate::dims::renamed;
use crate::options::setters;
use crate::shape::reshape_to;
use crate::{AvgPool2dOptions, MaxPool2dOptions};

/// The keywords of `max_pool1d`: `stride` (default: the kernel), `padding` (-inf, at most
/// half the kernel), `dilation` and `ceil_mode`.
///
/// ```
/// use tapegrad_ops::{MaxPool1dOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 5]);
/// assert_eq!(F::max_pool1d(&x, 2).shape(), &[1, 1, 2]);
/// let ceil = MaxPool1dOptions::default().ceil_mode(true);
/// assert_eq!(F::max_pool1d_with(&x, 2, ceil).shape(), &[1, 1, 3]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxPool1dOptions {
    /// Step between windows; `None` is the kernel size.
    pub stride: Option<usize>,
    /// Implicit -inf padding on each side.
    pub padding: usize,
    /// Spacing between window taps (`None` is 1).
    pub dilation: Option<usize>,
    /// Count a last, partial window (rounding the output size up).
    pub ceil_mode: bool,
}

setters!(MaxPool1dOptions {
    /// Sets `stride`.
    stride(usize) => Some(stride), example 1 => o.stride == Some(1);
    /// Sets `padding`.
    padding(usize) => padding, example 1 => o.padding == 1;
    /// Sets `dilation`.
    dilation(usize) => Some(dilation), example 2 => o.dilation == Some(2);
    /// Sets `ceil_mode`.
    ceil_mode(bool) => ceil_mode, example true => o.ceil_mode;
});

/// The keywords of `avg_pool1d`: `stride` (default: the kernel), `padding` (zeros, at most
/// half the kernel), `ceil_mode` and `count_include_pad` (default true).
///
/// ```
/// use tapegrad_ops::{AvgPool1dOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 2]);
/// let include = F::avg_pool1d_with(&x, 2, AvgPool1dOptions::default().padding(1));
/// assert_eq!(include.to_vec::<f32>(), vec![0.5, 0.5]);
/// let exclude = AvgPool1dOptions::default().padding(1).count_include_pad(false);
/// assert_eq!(F::avg_pool1d_with(&x, 2, exclude).to_vec::<f32>(), vec![1.0, 1.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool1dOptions {
    /// Step between windows; `None` is the kernel size.
    pub stride: Option<usize>,
    /// Zero padding on each side.
    pub padding: usize,
    /// Count a last, partial window (rounding the output size up).
    pub ceil_mode: bool,
    /// Whether padding zeros count in each window's divisor.
    pub count_include_pad: bool,
}

impl Default for AvgPool1dOptions {
    fn default() -> Self {
        AvgPool1dOptions { stride: None, padding: 0, ceil_mode: false, count_include_pad: true }
    }
}

setters!(AvgPool1dOptions {
    /// Sets `stride`.
    stride(usize) => Some(stride), example 1 => o.stride == Some(1);
    /// Sets `padding`.
    padding(usize) => padding, example 1 => o.padding == 1;
    /// Sets `ceil_mode`.
    ceil_mode(bool) => ceil_mode, example true => o.ceil_mode;
    /// Sets `count_include_pad`.
    count_include_pad(bool) => count_include_pad, example false => !o.count_include_pad;
});

/// `x` (`[N, C, L]`) as an image `[N, C, 1, L]`, with its sizes.
fn as_image(
    op: &'static str,
    x: &Tensor,
    location: &'static Location<'static>,
) -> Result<(Tensor, [usize; 3])> {
    ensure_float(op, x, location)?;
    match *x.shape() {
        [n, c, l] => Ok((reshape_to(x, &[n, c, 1, l]), [n, c, l])),
        _ => Err(Error::Shape {
            op,
            message: format!("expects input [N, C, L], got {:?}", x.shape()),
            location,
        }),
    }
}

/// An image `[N, C, 1, L']` back to a sequence `[N, C, L']`.
fn as_sequence(y: &Tensor) -> Tensor {
    let s = y.shape();
    reshape_to(y, &[s[0], s[1], s[3]])
}

#[track_caller]
pub(crate) fn max_pool1d(
    x: &Tensor,
    kernel: usize,
    options: MaxPool1dOptions,
) -> Result<(Tensor, Tensor)> {
    let (image, _) = as_image("max_pool1d", x, Location::caller())?;
    let mut o = MaxPool2dOptions::default().padding((0, options.padding));
    o.stride = options.stride.map(|s| (1, s));
    o.dilation = options.dilation.map(|d| (1, d));
    o.ceil_mode = options.ceil_mode;
    let (values, positions) =
        renamed("max_pool1d", crate::pool::max_pool2d_with(&image, (1, kernel), o))?;
    // With height 1 the flat position `h * L + l` is the position along the sequence.
    Ok((as_sequence(&values), as_sequence(&positions)))
}

#[track_caller]
pub(crate) fn avg_pool1d(x: &Tensor, kernel: usize, options: AvgPool1dOptions) -> Result<Tensor> {
    let (image, _) = as_image("avg_pool1d", x, Location::caller())?;
    let mut o = AvgPool2dOptions::default()
        .padding((0, options.padding))
        .ceil_mode(options.ceil_mode)
        .count_include_pad(options.count_include_pad);
    o.stride = options.stride.map(|s| (1, s));
    Ok(as_sequence(&renamed("avg_pool1d", crate::pool::avg_pool2d_with(&image, (1, kernel), o))?))
}

#[track_caller]
pub(crate) fn adaptive_avg_pool1d(x: &Tensor, output: usize) -> Result<Tensor> {
    let (image, _) = as_image("adaptive_avg_pool1d", x, Location::caller())?;
    Ok(as_sequence(&renamed(
        "adaptive_avg_pool1d",
        crate::pool::adaptive_avg_pool2d(&image, (1, output)),
    )?))
}

#[track_caller]
pub(crate) fn adaptive_max_pool1d(x: &Tensor, output: usize) -> Result<Tensor> {
    let (image, _) = as_image("adaptive_max_pool1d", x, Location::caller())?;
    Ok(as_sequence(&renamed(
        "adaptive_max_pool1d",
        crate::pool::adaptive_max_pool2d(&image, (1, output)),
    )?))
}
