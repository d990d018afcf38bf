//! Pooling: max (with the chosen positions), average (a depthwise convolution with a
//! constant kernel), adaptive average (separable averaging matrices) and adaptive max (a
//! max over each window's gathered taps). 1-d pooling is in `pool1d.rs`.

use std::panic::Location;

use tapegrad_tape::layout::{Layout, checked_size, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record_with_tangent};

use crate::conv::{Conv2dOptions, IntoPair};
use crate::options::setters;

use crate::shape::reshape_to;

use tapegrad_kernels::pool;

fn check_4d(
    op: &'static str,
    x: &Tensor,
    location: &'static Location<'static>,
) -> Result<[usize; 4]> {
    ensure_float(op, x, location)?;
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::Shape {
            op,
            message: format!("expects input [N, C, H, W], got {:?}", x.shape()),
            location,
        }),
    }
}

fn pooled_size(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    location: &'static Location<'static>,
) -> Result<usize> {
    if kernel == 0 || stride == 0 || padding > kernel / 2 {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "kernel {kernel}, stride {stride} and padding {padding} are invalid (padding may \
                be at most half the kernel)"
            ),
            location,
        });
    }
    // 2 * padding <= kernel, so only the sum with the input can overflow.
    let what = format!("input size {input} with padding {padding}");
    let padded = checked_size(op, &what, input.checked_add(2 * padding), location)?;
    padded.checked_sub(kernel).map(|r| r / stride + 1).ok_or_else(|| Error::Shape {
        op,
        message: format!("kernel {kernel} is larger than the padded input size {padded}"),
        location,
    })
}

/// The gradient of max pooling: each output gradient added at the input position it was
/// taken from. Recorded, so that double backward (a gather) works too.
#[track_caller]
fn max_pool_backward(g: &Tensor, index: &Tensor, input_shape: [usize; 4]) -> Tensor {
    let [n, c, h, w] = input_shape;
    let plane_out = index.numel() / (n * c).max(1);
    let index_storage = index.contiguous_storage();
    let Storage::I64(idx) = &index_storage else { unreachable!("pooling indices are i64") };
    let gs = g.contiguous_storage();
    let storage = match &gs {
        Storage::F32(v) => {
            Storage::from_vec(pool::max_pool2d_scatter(v, idx, n * c, h * w, plane_out))
        }
        Storage::F64(v) => {
            Storage::from_vec(pool::max_pool2d_scatter(v, idx, n * c, h * w, plane_out))
        }
        Storage::I64(_) | Storage::Bool(_) => unreachable!("gradients are float"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&input_shape));
    let make_backward = || {
        let (index, out_shape) = (index.clone(), g.shape().to_vec());
        Backward::new(move |ctx| {
            // d/dg of a scatter is the gather at the same positions.
            let gg = reshape_to(ctx.grad(), &[n, c, h * w]);
            let picked = crate::index::gather(&gg, 2, &reshape_to(&index, &[n, c, plane_out]))
                .expect("valid indices");
            smallvec![Some(reshape_to(&picked, &out_shape))]
        })
    };
    // Linear in the gradient: the tangent is the same scatter of the gradient's tangent.
    record_with_tangent(
        "max_pool2d_backward",
        Location::caller(),
        &[g],
        value,
        make_backward,
        |ctx| ctx.map(|v| max_pool_backward(v, index, input_shape)),
    )
}

#[track_caller]
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let op = "max_pool2d";
    let dims = check_4d(op, x, location)?;
    let ho = pooled_size(op, dims[2], kernel.0, stride.0, padding.0, location)?;
    let wo = pooled_size(op, dims[3], kernel.1, stride.1, padding.1, location)?;
    let storage = x.contiguous_storage();
    let (values, indices) = match &storage {
        Storage::F32(v) => {
            let (a, i) = pool::max_pool2d(v, dims, (ho, wo), kernel, stride, padding);
            (Storage::from_vec(a), i)
        }
        Storage::F64(v) => {
            let (a, i) = pool::max_pool2d(v, dims, (ho, wo), kernel, stride, padding);
            (Storage::from_vec(a), i)
        }
        Storage::I64(_) | Storage::Bool(_) => unreachable!("float dtype checked"),
    };
    let [n, c, h, w] = dims;
    let out_shape = [n, c, ho, wo];
    let value = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let flat_index = Tensor::from_vec(indices, &[n, c, ho * wo]);
    let make_backward = || {
        let index = flat_index.clone();
        Backward::new(move |ctx| {
            smallvec![Some(max_pool_backward(ctx.grad(), &index, [n, c, h, w]))]
        })
    };
    // Each output is the input element at its index: the tangent is taken at the same place.
    let out = record_with_tangent(op, location, &[x], value, make_backward, |ctx| {
        ctx.map(|v| {
            let picked = crate::index::gather(&reshape_to(v, &[n, c, h * w]), 2, &flat_index)
                .expect("valid");
            reshape_to(&picked, &out_shape)
        })
    });
    Ok((out, reshape_to(&flat_index, &out_shape)))
}

#[track_caller]
pub(crate) fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "avg_pool2d";
    let [_, c, h, w] = check_4d(op, x, location)?;
    pooled_size(op, h, kernel.0, stride.0, padding.0, location)?;
    pooled_size(op, w, kernel.1, stride.1, padding.1, location)?;
    // PyTorch's default count_include_pad=True: every window divides by the full kernel
    // area, which is exactly a depthwise convolution with a constant kernel.
    let area = try_numel(op, &[kernel.0, kernel.1], location)?;
    let weight = Tensor::try_full_dtype(&[c, 1, kernel.0, kernel.1], 1.0 / area as f64, x.dtype())?;
    let opts = Conv2dOptions { stride, padding, dilation: (1, 1), groups: c };
    crate::conv::conv2d(x, &weight, None, opts)
}

/// The `[out, input]` matrix that averages PyTorch's adaptive windows
/// `floor(i * input / out) .. ceil((i + 1) * input / out)`.
fn averaging_matrix(input: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0.0; out * input];
    for i in 0..out {
        let start = i * input / out;
        let end = ((i + 1) * input).div_ceil(out);
        for j in start..end {
            m[i * input + j] = 1.0 / (end - start) as f64;
        }
    }
    m
}

#[track_caller]
pub(crate) fn adaptive_avg_pool2d(x: &Tensor, output: (usize, usize)) -> Result<Tensor> {
    let location = Location::caller();
    let op = "adaptive_avg_pool2d";
    let [_, _, h, w] = check_4d(op, x, location)?;
    if output.0 == 0 || output.1 == 0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("output size {output:?} must be positive"),
            location,
        });
    }
    for shape in
        [&[output.0, h][..], &[output.1, w], &[x.shape()[0], x.shape()[1], output.0, output.1]]
    {
        try_numel(op, shape, location)?;
    }
    if output == (1, 1) && h * w > 0 {
        // Global average pooling (a classifier's head): one mean per plane rather than the
        // two products below.
        let [n, c] = [x.shape()[0], x.shape()[1]];
        let planes = crate::shape::reshape_to(x, &[n, c, h * w]);
        let means = crate::reduce::mean_dim(&planes, 2, true)?;
        return Ok(crate::shape::reshape_to(&means, &[n, c, 1, 1]));
    }
    let ah = Tensor::from_vec(averaging_matrix(h, output.0), &[output.0, h]).to_dtype(x.dtype());
    let aw = Tensor::from_vec(averaging_matrix(w, output.1), &[output.1, w]).to_dtype(x.dtype());
    // Separable: rows then columns, as two (broadcast batched) matrix products.
    let rows = crate::matmul::matmul(&ah, x)?;
    crate::matmul::matmul(&rows, &crate::shape::transpose(&aw, 0, 1)?)
}

/// Adaptive max pooling (PyTorch's windows: output `i` of `out` over an input of `n` covers
/// `floor(i n / out) .. ceil((i + 1) n / out)`). Windows that tile the image (the input a
/// multiple of the output, global pooling among them) are max pooling's, kernel = stride.
/// Other windows' taps are gathered with `index_select` along both dimensions, a short
/// window repeating its last element (which changes neither its max nor which element is
/// first chosen), and reduced with `max_dim`. Either way the gradient goes to the first
/// largest element of each window, as in PyTorch, and every step is a recorded op, so it
/// differentiates again.
#[track_caller]
pub(crate) fn adaptive_max_pool2d(x: &Tensor, output: (usize, usize)) -> Result<Tensor> {
    let location = Location::caller();
    let op = "adaptive_max_pool2d";
    let [n, c, h, w] = check_4d(op, x, location)?;
    if output.0 == 0 || output.1 == 0 || h == 0 || w == 0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("output size {output:?} and input size ({h}, {w}) must be positive"),
            location,
        });
    }
    if h % output.0 == 0 && w % output.1 == 0 {
        // Windows that tile the image exactly (global pooling among them) are max pooling's,
        // whose kernel also takes the first of equal values and the last NaN, as PyTorch.
        let kernel = (h / output.0, w / output.1);
        return Ok(max_pool2d(x, kernel, kernel, (0, 0))?.0);
    }
    // The taps of every window along one dimension, and the longest window's length.
    let taps = |input: usize, out: usize| -> Result<(Tensor, usize)> {
        let window = |i: usize| (i * input / out, ((i + 1) * input).div_ceil(out));
        let longest = (0..out).map(|i| window(i).1 - window(i).0).max().unwrap_or(1);
        try_numel(op, &[out, longest], location)?;
        let index: Vec<i64> = (0..out)
            .flat_map(|i| {
                let (start, end) = window(i);
                (0..longest).map(move |t| (start + t).min(end - 1) as i64)
            })
            .collect();
        Ok((Tensor::from_vec(index, &[out * longest]), longest))
    };
    let (rows, kh) = taps(h, output.0)?;
    let (cols, kw) = taps(w, output.1)?;
    try_numel(op, &[n, c, output.0 * kh, output.1 * kw], location)?;
    let gathered = crate::index::index_select(x, 2, &rows)?;
    let gathered = crate::index::index_select(&gathered, 3, &cols)?;
    let windows = reshape_to(&gathered, &[n, c, output.0, kh, output.1, kw]);
    let windows = crate::shape::permute(&windows, &[0, 1, 2, 4, 3, 5])?;
    let windows = reshape_to(&windows, &[n, c, output.0, output.1, kh * kw]);
    Ok(crate::reduce::max_dim(&windows, -1, false, true)?.0)
}

/// The keywords of `max_pool2d`: `stride` (default: the kernel), `padding` (-inf, at most
/// half the kernel), `dilation` and `ceil_mode`.
///
/// ```
/// use tapegrad_ops::{MaxPool2dOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 5, 5]);
/// assert_eq!(F::max_pool2d(&x, 2).shape(), &[1, 1, 2, 2]);
/// let ceil = MaxPool2dOptions::default().ceil_mode(true);
/// assert_eq!(F::max_pool2d_with(&x, 2, ceil).shape(), &[1, 1, 3, 3]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaxPool2dOptions {
    /// Step between windows; `None` is the kernel size.
    pub stride: Option<(usize, usize)>,
    /// Implicit -inf padding on each side.
    pub padding: (usize, usize),
    /// Spacing between window taps (`None` is 1).
    pub dilation: Option<(usize, usize)>,
    /// Count a last, partial window (rounding the output size up).
    pub ceil_mode: bool,
}

setters!(MaxPool2dOptions {
    /// Sets `stride`.
    stride(impl IntoPair) => Some(stride.into_pair()), example 1 => o.stride == Some((1, 1));
    /// Sets `padding`.
    padding(impl IntoPair) => padding.into_pair(), example 1 => o.padding == (1, 1);
    /// Sets `dilation`.
    dilation(impl IntoPair) => Some(dilation.into_pair()), example 2 => o.dilation == Some((2, 2));
    /// Sets `ceil_mode`.
    ceil_mode(bool) => ceil_mode, example true => o.ceil_mode;
});

/// The keywords of `avg_pool2d`: `stride` (default: the kernel), `padding` (zeros, at most
/// half the kernel), `ceil_mode`, `count_include_pad` (default true) and
/// `divisor_override`.
///
/// ```
/// use tapegrad_ops::{AvgPool2dOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[1, 1, 2, 2]);
/// let include = F::avg_pool2d_with(&x, 2, AvgPool2dOptions::default().padding(1));
/// assert_eq!(include.to_vec::<f32>(), vec![0.25; 4]); // each window: one 1 and three zeros
/// let exclude = AvgPool2dOptions::default().padding(1).count_include_pad(false);
/// assert_eq!(F::avg_pool2d_with(&x, 2, exclude).to_vec::<f32>(), vec![1.0; 4]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dOptions {
    /// Step between windows; `None` is the kernel size.
    pub stride: Option<(usize, usize)>,
    /// Zero padding on each side.
    pub padding: (usize, usize),
    /// Count a last, partial window (rounding the output size up).
    pub ceil_mode: bool,
    /// Whether padding zeros count in each window's divisor.
    pub count_include_pad: bool,
    /// Divide every window's sum by this instead.
    pub divisor_override: Option<usize>,
}

impl Default for AvgPool2dOptions {
    fn default() -> Self {
        AvgPool2dOptions {
            stride: None,
            padding: (0, 0),
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }
}

setters!(AvgPool2dOptions {
    /// Sets `stride`.
    stride(impl IntoPair) => Some(stride.into_pair()), example 1 => o.stride == Some((1, 1));
    /// Sets `padding`.
    padding(impl IntoPair) => padding.into_pair(), example 1 => o.padding == (1, 1);
    /// Sets `ceil_mode`.
    ceil_mode(bool) => ceil_mode, example true => o.ceil_mode;
    /// Sets `count_include_pad`.
    count_include_pad(bool) => count_include_pad, example false => !o.count_include_pad;
    /// Sets `divisor_override`.
    divisor_override(usize) => Some(divisor_override), example 3 => o.divisor_override == Some(3);
});

/// One spatial dimension of a pooling: PyTorch's output size (with `ceil_mode`'s rule that
/// the last window starts inside the input or its left padding), and how many positions
/// past the right padding the windows reach.
#[allow(clippy::too_many_arguments)]
fn pool_extent(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    ceil_mode: bool,
    location: &'static Location<'static>,
) -> Result<(usize, usize)> {
    let invalid = |message: String| Error::InvalidArgument { op, message, location };
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(invalid(format!(
            "kernel {kernel}, stride {stride} and dilation {dilation} must be positive"
        )));
    }
    let span = dilation
        .checked_mul(kernel - 1)
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| invalid(format!("kernel {kernel} with dilation {dilation} overflows")))?;
    // PyTorch's rule: padding at most half the kernel (not of its dilated span), so that
    // every window holds an input element.
    if padding > kernel / 2 {
        return Err(invalid(format!("padding {padding} is more than half the kernel {kernel}")));
    }
    let padded = checked_size(op, "the padded input", input.checked_add(2 * padding), location)?;
    let Some(room) = padded.checked_sub(span) else {
        return Err(Error::Shape {
            op,
            message: format!("the window ({span}) is larger than the padded input ({padded})"),
            location,
        });
    };
    let mut out = if ceil_mode { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil_mode && (out - 1) * stride >= input + padding {
        out -= 1;
    }
    let reach = (out - 1) * stride + span;
    Ok((out, reach.saturating_sub(padded)))
}

/// Max pooling with every keyword: the kernel when it applies (no dilation, no partial
/// window), else a gather of each window's taps and a max over them, which routes the
/// gradient to the chosen element as the kernel does.
#[track_caller]
pub(crate) fn max_pool2d_with(
    x: &Tensor,
    kernel: (usize, usize),
    options: MaxPool2dOptions,
) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let op = "max_pool2d";
    let [n, c, h, w] = check_4d(op, x, location)?;
    let stride = options.stride.unwrap_or(kernel);
    let dilation = options.dilation.unwrap_or((1, 1));
    let p = options.padding;
    let (ho, extra_h) =
        pool_extent(op, h, kernel.0, stride.0, p.0, dilation.0, options.ceil_mode, location)?;
    let (wo, extra_w) =
        pool_extent(op, w, kernel.1, stride.1, p.1, dilation.1, options.ceil_mode, location)?;
    if dilation == (1, 1) && extra_h == 0 && extra_w == 0 {
        return max_pool2d(x, kernel, stride, p);
    }
    // -inf padding never wins a window (each window holds an input element).
    let padded =
        crate::shape::pad(x, &[(p.1, p.1 + extra_w), (p.0, p.0 + extra_h)], f64::NEG_INFINITY)?;
    let (hp, wp) = (padded.shape()[2], padded.shape()[3]);
    let taps = kernel.0 * kernel.1;
    let mut positions = Vec::with_capacity(ho * wo * taps);
    for oh in 0..ho {
        for ow in 0..wo {
            for a in 0..kernel.0 {
                for b in 0..kernel.1 {
                    let (r, s) = (oh * stride.0 + a * dilation.0, ow * stride.1 + b * dilation.1);
                    positions.push((r * wp + s) as i64);
                }
            }
        }
    }
    let flat = reshape_to(&padded, &[n, c, hp * wp]);
    let count = positions.len();
    let windows =
        crate::index::index_select(&flat, 2, &Tensor::from_vec(positions.clone(), &[count]))?;
    let windows = reshape_to(&windows, &[n, c, ho, wo, taps]);
    let (values, chosen) = crate::reduce::max_dim(&windows, -1, false, true)?;
    // The chosen tap as a flat position `h * W + w` of the unpadded input.
    let chosen = chosen.to_vec::<i64>();
    let index: Vec<i64> = chosen
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let window = k % (ho * wo);
            let pos = positions[window * taps + t as usize] as usize;
            let (r, s) = (pos / wp, pos % wp);
            ((r as i64 - p.0 as i64) * w as i64) + (s as i64 - p.1 as i64)
        })
        .collect();
    Ok((values, Tensor::from_vec(index, &[n, c, ho, wo])))
}

/// Average pooling with every keyword: the depthwise-convolution kernel for PyTorch's
/// defaults, else window sums divided by each window's count (or the override).
#[track_caller]
pub(crate) fn avg_pool2d_with(
    x: &Tensor,
    kernel: (usize, usize),
    options: AvgPool2dOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "avg_pool2d";
    let [_, c, h, w] = check_4d(op, x, location)?;
    let stride = options.stride.unwrap_or(kernel);
    let p = options.padding;
    let (ho, extra_h) =
        pool_extent(op, h, kernel.0, stride.0, p.0, 1, options.ceil_mode, location)?;
    let (wo, extra_w) =
        pool_extent(op, w, kernel.1, stride.1, p.1, 1, options.ceil_mode, location)?;
    if extra_h == 0
        && extra_w == 0
        && options.count_include_pad
        && options.divisor_override.is_none()
    {
        return avg_pool2d(x, kernel, stride, p);
    }
    if options.divisor_override == Some(0) {
        return Err(Error::InvalidArgument {
            op,
            message: "divisor_override must be positive".into(),
            location,
        });
    }
    let padded = crate::shape::pad(x, &[(p.1, p.1 + extra_w), (p.0, p.0 + extra_h)], 0.0)?;
    let ones = Tensor::try_full_dtype(&[c, 1, kernel.0, kernel.1], 1.0, x.dtype())?;
    let opts = Conv2dOptions { stride, padding: (0, 0), dilation: (1, 1), groups: c };
    let sums = crate::conv::conv2d(&padded, &ones, None, opts)?;
    // Each window's divisor: its taps inside the input and (with count_include_pad) the
    // padding, not the extra reach of a partial window.
    let counted = |out: usize, k: usize, s: usize, pad: usize, input: usize| -> Vec<usize> {
        let (lo, hi) =
            if options.count_include_pad { (0, input + 2 * pad) } else { (pad, pad + input) };
        (0..out).map(|o| (o * s + k).min(hi).saturating_sub((o * s).max(lo))).collect()
    };
    let rows = counted(ho, kernel.0, stride.0, p.0, h);
    let cols = counted(wo, kernel.1, stride.1, p.1, w);
    let divisor: Vec<f64> = match options.divisor_override {
        Some(d) => vec![d as f64; ho * wo],
        None => rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r * c) as f64)).collect(),
    };
    let divisor = Tensor::from_vec(divisor, &[1, 1, ho, wo]).to_dtype(x.dtype());
    Ok(&sums / &divisor)
}
