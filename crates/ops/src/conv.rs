//! Convolutions as recorded operations: shape checks, then the kernels of
//! `tapegrad_kernels::conv`.
//!
//! Three bilinear primitives share one geometry: `conv` (the forward convolution),
//! `conv_transpose` (its adjoint with respect to the input) and `conv_weight` (its adjoint with
//! respect to the weight). The backward rule of each is written with the other two, so every
//! convolution is differentiable to any order, and `conv_transpose2d` (GAN generators) is
//! the same kernel as the input gradient of `conv2d`.

use std::panic::Location;

use tapegrad_tape::layout::{Layout, checked_size, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record_with_tangent};

pub(crate) use tapegrad_kernels::conv::Conv2dOptions;
use tapegrad_kernels::conv::{self as kernels, Geometry};

use crate::options::setters;
pub use tapegrad_kernels::conv::{set_winograd_enabled, winograd_enabled};

/// The output size of one spatial dimension: `Ok(None)` if the kernel is larger than the
/// padded input, an error if the sizes overflow.
fn out_size(
    op: &'static str,
    (input, pad, dilation, kernel, stride): (usize, usize, usize, usize, usize),
    location: &'static Location<'static>,
) -> Result<Option<usize>> {
    let what =
        format!("input size {input} with padding {pad}, kernel {kernel} and dilation {dilation}");
    let span = checked_size(
        op,
        &what,
        dilation.checked_mul(kernel - 1).and_then(|s| s.checked_add(1)),
        location,
    )?;
    let padded =
        checked_size(op, &what, pad.checked_mul(2).and_then(|p| p.checked_add(input)), location)?;
    Ok(padded.checked_sub(span).map(|r| r / stride + 1))
}

/// Checks shapes for `conv(x, weight)` and works out the geometry.
fn geometry(
    op: &'static str,
    x: &[usize],
    weight: &[usize],
    opts: Conv2dOptions,
    location: &'static Location<'static>,
) -> Result<Geometry> {
    let bad = |message: String| Error::Shape { op, message, location };
    if x.len() != 4 || weight.len() != 4 {
        return Err(bad(format!(
            "expects input [N, C, H, W] and weight [O, C/groups, kH, kW], got {x:?} and {weight:?}"
        )));
    }
    let g = opts.groups;
    if g == 0
        || opts.stride.0 == 0
        || opts.stride.1 == 0
        || opts.dilation.0 == 0
        || opts.dilation.1 == 0
    {
        return Err(Error::InvalidArgument {
            op,
            message: format!("stride, dilation and groups must be positive, got {opts:?}"),
            location,
        });
    }
    let (n, c, h, w) = (x[0], x[1], x[2], x[3]);
    let (o, cg, kh, kw) = (weight[0], weight[1], weight[2], weight[3]);
    if c != cg * g || o % g != 0 || kh == 0 || kw == 0 {
        return Err(bad(format!(
            "input {x:?} has {c} channels but weight {weight:?} with {g} groups expects {}{}",
            cg * g,
            if o % g != 0 {
                format!(", and {o} output channels do not split into {g} groups")
            } else {
                String::new()
            }
        )));
    }
    let (Some(ho), Some(wo)) = (
        out_size(op, (h, opts.padding.0, opts.dilation.0, kh, opts.stride.0), location)?,
        out_size(op, (w, opts.padding.1, opts.dilation.1, kw, opts.stride.1), location)?,
    ) else {
        return Err(bad(format!(
            "kernel {kh}x{kw} (dilation {:?}) is larger than the padded input {x:?}",
            opts.dilation
        )));
    };
    // Every buffer the kernels allocate or index: the output, the padded input, the columns
    // of one image (in elements; offsets into them are isize in the kernels).
    let (hp, wp) = (h + 2 * opts.padding.0, w + 2 * opts.padding.1);
    for shape in [[n, o, ho, wo], [n, c, hp, wp], [cg, kh * kw, ho, wo], [o, cg, kh, kw]] {
        try_numel(op, &shape, location)?;
    }
    Ok(Geometry { n, c, h, w, o, ho, wo, kh, kw, opts })
}

/// Which of the three primitives to run.
#[derive(Clone, Copy)]
enum Kind {
    Conv,
    Transpose,
    Weight,
}

fn run(kind: Kind, a: &Tensor, b: &Tensor, geo: &Geometry) -> Tensor {
    let (sa, sb) = (a.contiguous_storage(), b.contiguous_storage());
    let (storage, shape) = match kind {
        Kind::Conv => (
            match (&sa, &sb) {
                (Storage::F32(x), Storage::F32(w)) => Storage::from_vec(kernels::conv(x, w, geo)),
                (Storage::F64(x), Storage::F64(w)) => Storage::from_vec(kernels::conv(x, w, geo)),
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.n, geo.o, geo.ho, geo.wo],
        ),
        Kind::Transpose => (
            match (&sa, &sb) {
                (Storage::F32(g), Storage::F32(w)) => {
                    Storage::from_vec(kernels::conv_transpose(g, w, geo))
                }
                (Storage::F64(g), Storage::F64(w)) => {
                    Storage::from_vec(kernels::conv_transpose(g, w, geo))
                }
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.n, geo.c, geo.h, geo.w],
        ),
        Kind::Weight => (
            match (&sa, &sb) {
                (Storage::F32(x), Storage::F32(g)) => {
                    Storage::from_vec(kernels::conv_weight(x, g, geo))
                }
                (Storage::F64(x), Storage::F64(g)) => {
                    Storage::from_vec(kernels::conv_weight(x, g, geo))
                }
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.o, geo.cg(), geo.kh, geo.kw],
        ),
    };
    Tensor::from_storage(storage, Layout::contiguous(&shape))
}

/// Records one primitive. `a`/`b` are (x, w) for `Conv`, (gy, w) for `Transpose` and
/// (x, gy) for `Weight`.
fn primitive(
    kind: Kind,
    a: &Tensor,
    b: &Tensor,
    geo: Geometry,
    location: &'static Location<'static>,
) -> Tensor {
    let value = run(kind, a, b, &geo);
    let name = match kind {
        Kind::Conv => "conv2d",
        Kind::Transpose => "conv_transpose2d",
        Kind::Weight => "conv2d_weight",
    };
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let g = &laid_out_once(g, ctx.needs_input_grad(0) && ctx.needs_input_grad(1));
            let (ga, gb) = match kind {
                // y = conv(x, w): dx = convT(gy, w), dw = convW(x, gy)
                Kind::Conv => (
                    ctx.needs_input_grad(0)
                        .then(|| primitive(Kind::Transpose, g, b, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Weight, a, g, geo, location)),
                ),
                // dx = convT(gy, w): d gy = conv(g, w), d w = convW(g, gy)
                Kind::Transpose => (
                    ctx.needs_input_grad(0).then(|| primitive(Kind::Conv, g, b, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Weight, g, a, geo, location)),
                ),
                // dw = convW(x, gy): d x = convT(gy, g), d gy = conv(x, g)
                Kind::Weight => (
                    ctx.needs_input_grad(0)
                        .then(|| primitive(Kind::Transpose, b, g, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Conv, a, g, geo, location)),
                ),
            };
            smallvec![ga, gb]
        })
        .save(a)
        .save(b)
    };
    // Each primitive is bilinear in its two operands.
    record_with_tangent(name, location, &[a, b], value, make_backward, |ctx| {
        ctx.sum(|i, v| {
            let (a, b) = if i == 0 { (v, b) } else { (a, v) };
            primitive(kind, a, b, geo, location)
        })
    })
}

fn check_operands(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    channels: usize,
    location: &'static Location<'static>,
) -> Result<()> {
    ensure_float(op, x, location)?;
    for t in [Some(weight), bias].into_iter().flatten() {
        if t.dtype() != x.dtype() {
            return Err(Error::DType { op, lhs: x.dtype(), rhs: t.dtype(), location });
        }
    }
    if let Some(b) = bias
        && b.shape() != [channels]
    {
        return Err(Error::Shape {
            op,
            message: format!("bias has shape {:?}, expected [{channels}]", b.shape()),
            location,
        });
    }
    Ok(())
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Tensor {
    match bias {
        Some(b) => &y + &crate::shape::reshape_to(b, &[1, b.numel(), 1, 1]),
        None => y,
    }
}

/// The upstream gradient, laid out row-major first when `shared` (both products of a
/// backward read it): each kernel otherwise copies a strided gradient (the broadcast that
/// a `sum()` sends back) for itself. Under `create_graph` the products then save the
/// laid-out copy instead of the broadcast view: one full-size gradient per layer kept for
/// the second backward, the size of what each product copied for itself before.
fn laid_out_once(g: &Tensor, shared: bool) -> Tensor {
    if shared { g.contiguous() } else { g.clone() }
}

/// `conv(x, w)` plus `bias` on each output channel, recorded as one operation: the kernels
/// add the bias to each image's output as they write it (the bits of adding it after), so
/// a layer with a bias makes no second output and no second node.
fn conv_with_bias(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    geo: Geometry,
    location: &'static Location<'static>,
) -> Tensor {
    let (sx, sw, sb) =
        (x.contiguous_storage(), weight.contiguous_storage(), bias.contiguous_storage());
    let storage = match (&sx, &sw, &sb) {
        (Storage::F32(x), Storage::F32(w), Storage::F32(b)) => {
            Storage::from_vec(kernels::conv_with_bias(x, w, b, &geo))
        }
        (Storage::F64(x), Storage::F64(w), Storage::F64(b)) => {
            Storage::from_vec(kernels::conv_with_bias(x, w, b, &geo))
        }
        _ => unreachable!("dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&[geo.n, geo.o, geo.ho, geo.wo]));
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, x, w) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let g = &laid_out_once(g, ctx.needs_input_grad(0) && ctx.needs_input_grad(1));
            // dx = convT(gy, w), dw = convW(x, gy), db = gy summed over images and pixels.
            smallvec![
                ctx.needs_input_grad(0).then(|| primitive(Kind::Transpose, g, w, geo, location)),
                ctx.needs_input_grad(1).then(|| primitive(Kind::Weight, x, g, geo, location)),
                ctx.needs_input_grad(2).then(|| {
                    crate::shape::reshape_to(&g.sum_to_shape(&[1, geo.o, 1, 1]), &[geo.o])
                }),
            ]
        })
        .save(x)
        .save(weight)
    };
    // Bilinear in (x, w) and affine in the bias, which is broadcast over the output.
    record_with_tangent("conv2d", location, &[x, weight, bias], value, make_backward, |ctx| {
        ctx.sum(|i, v| match i {
            0 => primitive(Kind::Conv, v, weight, geo, location),
            1 => primitive(Kind::Conv, x, v, geo, location),
            _ => crate::shape::reshape_to(v, &[1, geo.o, 1, 1]),
        })
    })
}

#[track_caller]
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opts: Conv2dOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let geo = geometry("conv2d", x.shape(), weight.shape(), opts, location)?;
    check_operands("conv2d", x, weight, bias, geo.o, location)?;
    Ok(match bias {
        Some(b) => conv_with_bias(x, weight, b, geo, location),
        None => primitive(Kind::Conv, x, weight, geo, location),
    })
}

#[track_caller]
pub(crate) fn conv1d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
    groups: usize,
) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() != 3 || weight.dim() != 3 {
        return Err(Error::Shape {
            op: "conv1d",
            message: format!(
                "expects input [N, C, L] and weight [O, C/groups, K], got {:?} and {:?}",
                x.shape(),
                weight.shape()
            ),
            location,
        });
    }
    let opts = Conv2dOptions {
        stride: (1, stride),
        padding: (0, padding),
        dilation: (1, dilation),
        groups,
    };
    let x4 = crate::shape::unsqueeze(x, 2)?;
    let w4 = crate::shape::unsqueeze(weight, 2)?;
    let y = conv2d(&x4, &w4, bias, opts)?;
    crate::shape::squeeze(&y, Some(2))
}

/// `conv_transpose2d` with PyTorch's arguments; `weight` is `[C_in, C_out / groups, kH, kW]`.
#[track_caller]
pub(crate) fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opts: Conv2dOptions,
    output_padding: (usize, usize),
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "conv_transpose2d";
    if x.dim() != 4 || weight.dim() != 4 || x.shape()[1] != weight.shape()[0] {
        return Err(Error::Shape {
            op,
            message: format!(
                "expects input [N, C_in, H, W] and weight [C_in, C_out/groups, kH, kW], got {:?} \
                and {:?}",
                x.shape(),
                weight.shape()
            ),
            location,
        });
    }
    if output_padding.0 >= opts.stride.0.max(opts.dilation.0)
        || output_padding.1 >= opts.stride.1.max(opts.dilation.1)
    {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "output_padding {output_padding:?} must be smaller than stride or dilation"
            ),
            location,
        });
    }
    // The forward convolution this is the adjoint of: its input is our output.
    let (n, _, hi, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (kh, kw) = (weight.shape()[2], weight.shape()[3]);
    if [hi, wi, kh, kw].contains(&0) {
        return Err(Error::Shape {
            op,
            message: format!(
                "input {:?} and weight {:?} need positive spatial sizes",
                x.shape(),
                weight.shape()
            ),
            location,
        });
    }
    let size =
        |i: usize, s: usize, p: usize, d: usize, k: usize, op_: usize| -> Result<Option<usize>> {
            let full = (i - 1)
                .checked_mul(s)
                .and_then(|v| v.checked_add(d.checked_mul(k - 1)?))
                .and_then(|v| v.checked_add(op_)?.checked_add(1));
            let what = format!(
                "the output size of input size {i} with stride {s}, kernel {k} and dilation {d}"
            );
            let full = checked_size(op, &what, full, location)?;
            Ok(p.checked_mul(2).and_then(|p2| full.checked_sub(p2)))
        };
    let (Some(h), Some(w)) = (
        size(hi, opts.stride.0, opts.padding.0, opts.dilation.0, kh, output_padding.0)?,
        size(wi, opts.stride.1, opts.padding.1, opts.dilation.1, kw, output_padding.1)?,
    ) else {
        return Err(Error::Shape {
            op,
            message: format!("padding {:?} leaves no output", opts.padding),
            location,
        });
    };
    let c_out = weight.shape()[1] * opts.groups;
    let forward_input = [n, c_out, h, w];
    if h == 0 || w == 0 {
        return Err(Error::Shape {
            op,
            message: format!("padding {:?} leaves no output", opts.padding),
            location,
        });
    }
    let mut geo = geometry(op, &forward_input, weight.shape(), opts, location)?;
    // With output_padding the forward convolution of the output would reach a little past
    // the input; those extra output rows and columns receive only the bias.
    debug_assert!(geo.ho >= hi && geo.wo >= wi);
    (geo.ho, geo.wo) = (hi, wi);
    check_operands(op, x, weight, bias, c_out, location)?;
    Ok(add_bias(primitive(Kind::Transpose, x, weight, geo, location), bias))
}

/// A size given once for both spatial dimensions or per dimension, as PyTorch's `int or
/// tuple` arguments: `2` or `(2, 1)`.
///
/// ```
/// use tapegrad_ops::IntoPair;
/// assert_eq!((2.into_pair(), (3, 1).into_pair()), ((2, 2), (3, 1)));
/// ```
pub trait IntoPair {
    /// (height, width).
    fn into_pair(self) -> (usize, usize);
}

impl IntoPair for usize {
    fn into_pair(self) -> (usize, usize) {
        (self, self)
    }
}

impl IntoPair for (usize, usize) {
    fn into_pair(self) -> (usize, usize) {
        self
    }
}

/// A convolution's `padding`: zeros on each side (per spatial dimension), or PyTorch's
/// `"same"` (the output keeps the input's size; stride 1) and `"valid"` (none).
///
/// ```
/// use tapegrad_ops::Padding;
/// assert_eq!(Padding::from(1), Padding::Zeros(1, 1));
/// assert_eq!(Padding::from((2, 0)), Padding::Zeros(2, 0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Zeros on both sides of (height, width).
    Zeros(usize, usize),
    /// As much as keeps the output the input's size (PyTorch's `"same"`); an odd total
    /// puts the extra zero at the end, as PyTorch does.
    Same,
    /// No padding (PyTorch's `"valid"`).
    Valid,
}

impl Default for Padding {
    fn default() -> Self {
        Padding::Zeros(0, 0)
    }
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::Zeros(p, p)
    }
}

impl From<(usize, usize)> for Padding {
    fn from((h, w): (usize, usize)) -> Self {
        Padding::Zeros(h, w)
    }
}

/// The keywords of `conv1d`, `conv2d` and `conv_transpose2d` (and of the layers): `stride`,
/// `padding` (including `Padding::Same`), `dilation`, `groups`, and `output_padding` for
/// the transposed convolution. Sizes are per spatial dimension; the 1-d forms take one.
///
/// ```
/// use tapegrad_ops::{ConvOptions, Padding, functional as F};
/// use tapegrad_tape::Tensor;
/// let (x, w) = (Tensor::ones(&[1, 2, 9, 9]), Tensor::ones(&[4, 2, 3, 3]));
/// let y = F::conv2d_with(&x, &w, None, ConvOptions::default().stride(2).padding(1));
/// assert_eq!(y.shape(), &[1, 4, 5, 5]);
/// let same = F::conv2d_with(&x, &w, None, ConvOptions::default().padding(Padding::Same));
/// assert_eq!(same.shape(), &[1, 4, 9, 9]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    /// Step between windows.
    pub stride: (usize, usize),
    /// Padding of the input.
    pub padding: Padding,
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
    /// Extra size added to one side of a transposed convolution's output.
    pub output_padding: (usize, usize),
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: (1, 1),
            padding: Padding::default(),
            dilation: (1, 1),
            groups: 1,
            output_padding: (0, 0),
        }
    }
}

setters!(ConvOptions {
    /// Sets `stride`.
    stride(impl IntoPair) => stride.into_pair(), example (2, 1) => o.stride == (2, 1);
    /// Sets `padding`: a size, a pair, `Padding::Same` or `Padding::Valid`.
    padding(impl Into<Padding>) => padding.into(), example 2 => o.padding == tapegrad_ops::Padding::Zeros(2, 2);
    /// Sets `dilation`.
    dilation(impl IntoPair) => dilation.into_pair(), example 2 => o.dilation == (2, 2);
    /// Sets `groups`.
    groups(usize) => groups, example 4 => o.groups == 4;
    /// Sets `output_padding` (transposed convolutions only).
    output_padding(impl IntoPair) => output_padding.into_pair(), example 1 => o.output_padding == (1, 1);
});

/// The kernels' options for `options`, and the zeros to add to the input first where
/// `"same"` needs more at the end than at the start: ((top, bottom), (left, right)).
#[allow(clippy::type_complexity)]
fn resolve_options(
    op: &'static str,
    options: ConvOptions,
    kernel: (usize, usize),
    transposed: bool,
    location: &'static Location<'static>,
) -> Result<(Conv2dOptions, Option<((usize, usize), (usize, usize))>)> {
    let invalid = |message: String| Error::InvalidArgument { op, message, location };
    if !transposed && options.output_padding != (0, 0) {
        return Err(invalid("output_padding applies to transposed convolutions only".into()));
    }
    let mut kernel_options = Conv2dOptions {
        stride: options.stride,
        padding: (0, 0),
        dilation: options.dilation,
        groups: options.groups,
    };
    let mut extra = None;
    match options.padding {
        Padding::Zeros(h, w) => kernel_options.padding = (h, w),
        Padding::Valid => {}
        Padding::Same if transposed => {
            return Err(invalid(
                "padding \"same\" is not supported for transposed convolutions".into(),
            ));
        }
        Padding::Same => {
            if options.stride != (1, 1) {
                return Err(invalid(format!(
                    "padding \"same\" needs stride 1, got {:?}",
                    options.stride
                )));
            }
            let total = |d: usize, k: usize| d * k.saturating_sub(1);
            let (th, tw) =
                (total(options.dilation.0, kernel.0), total(options.dilation.1, kernel.1));
            let (h, w) = ((th / 2, th - th / 2), (tw / 2, tw - tw / 2));
            if h.0 == h.1 && w.0 == w.1 {
                kernel_options.padding = (h.0, w.0);
            } else {
                extra = Some((h, w));
            }
        }
    }
    Ok((kernel_options, extra))
}

/// `x` with `((top, bottom), (left, right))` zeros around its last two dimensions.
fn pad_spatial(x: &Tensor, (h, w): ((usize, usize), (usize, usize))) -> Result<Tensor> {
    crate::shape::pad(x, &[w, h], 0.0)
}

/// `conv2d` with PyTorch's keywords.
#[track_caller]
pub(crate) fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: ConvOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let kernel = match weight.shape() {
        [_, _, kh, kw] => (*kh, *kw),
        _ => (1, 1), // the shape check reports it
    };
    let (kernel_options, extra) = resolve_options("conv2d", options, kernel, false, location)?;
    match extra {
        Some(pads) if x.dim() == 4 => conv2d(&pad_spatial(x, pads)?, weight, bias, kernel_options),
        _ => conv2d(x, weight, bias, kernel_options),
    }
}

/// `conv1d` with PyTorch's keywords (the first component of each pair must match the
/// second: a 1-d convolution has one spatial size).
#[track_caller]
pub(crate) fn conv1d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: ConvOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "conv1d";
    let one = |name: &str, pair: (usize, usize)| one_size(op, name, pair, location);
    let stride = one("stride", options.stride)?;
    let dilation = one("dilation", options.dilation)?;
    let k = match weight.shape() {
        [_, _, k] => *k,
        _ => 1,
    };
    let padding = match options.padding {
        Padding::Zeros(a, b) => Padding::Zeros(0, one("padding", (a, b))?),
        Padding::Same => Padding::Same,
        Padding::Valid => Padding::Valid,
    };
    let (kernel_options, extra) = resolve_options(
        op,
        ConvOptions { stride: (1, stride), dilation: (1, dilation), padding, ..options },
        (1, k),
        false,
        location,
    )?;
    let x = match extra {
        Some((_, w)) if x.dim() == 3 => crate::shape::pad(x, &[w], 0.0)?,
        _ => x.clone(),
    };
    let o = kernel_options;
    conv1d(&x, weight, bias, o.stride.1, o.padding.1, o.dilation.1, o.groups)
}

/// One size of a 1-d convolution's keyword, given as a pair (the setters take a size or a
/// pair): the pair's components must agree.
fn one_size(
    op: &'static str,
    name: &str,
    (a, b): (usize, usize),
    location: &'static Location<'static>,
) -> Result<usize> {
    if a == b {
        Ok(a)
    } else {
        Err(Error::InvalidArgument {
            op,
            message: format!("a 1-d convolution takes one {name}, got ({a}, {b})"),
            location,
        })
    }
}

/// `conv_transpose1d` with PyTorch's keywords: the transposed 2-d convolution of the
/// sequence as an image of height 1; `weight` is `[C_in, C_out / groups, K]`.
#[track_caller]
pub(crate) fn conv_transpose1d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: ConvOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "conv_transpose1d";
    if x.dim() != 3 || weight.dim() != 3 || x.shape()[1] != weight.shape()[0] {
        return Err(Error::Shape {
            op,
            message: format!(
                "expects input [N, C_in, L] and weight [C_in, C_out/groups, K], got {:?} and {:?}",
                x.shape(),
                weight.shape()
            ),
            location,
        });
    }
    let one = |name: &str, pair: (usize, usize)| one_size(op, name, pair, location);
    let padding = match options.padding {
        Padding::Zeros(a, b) => Padding::Zeros(0, one("padding", (a, b))?),
        other => other,
    };
    let image_options = ConvOptions {
        stride: (1, one("stride", options.stride)?),
        dilation: (1, one("dilation", options.dilation)?),
        output_padding: (0, one("output_padding", options.output_padding)?),
        padding,
        ..options
    };
    let x4 = crate::shape::unsqueeze(x, 2)?;
    let w4 = crate::shape::unsqueeze(weight, 2)?;
    let y = crate::dims::renamed(op, conv_transpose2d_with(&x4, &w4, bias, image_options))?;
    crate::shape::squeeze(&y, Some(2))
}

/// `conv_transpose2d` with PyTorch's keywords.
#[track_caller]
pub(crate) fn conv_transpose2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: ConvOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let (kernel_options, _) = resolve_options("conv_transpose2d", options, (1, 1), true, location)?;
    conv_transpose2d(x, weight, bias, kernel_options, options.output_padding)
}
