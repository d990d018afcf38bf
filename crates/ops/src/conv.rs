//! Convolutions lowered to GEMM through im2col.
//!
//! Three bilinear primitives share one geometry: `conv` (the forward convolution),
//! `conv_transpose` (its adjoint with respect to the input) and `conv_weight` (its adjoint with
//! respect to the weight). The backward rule of each is written with the other two, so every
//! convolution is differentiable to any order, and `conv_transpose2d` (GAN generators) is
//! the same kernel as the input gradient of `conv2d`.

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record};

use crate::matmul::{Gemm, gemm};

/// Stride, padding, dilation and groups of a 2-D convolution (PyTorch's arguments).
///
/// ```
/// use tapegrad_ops::Conv2dOptions;
/// let o = Conv2dOptions { padding: (2, 2), ..Default::default() };
/// assert_eq!((o.stride, o.groups), ((1, 1), 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows, (height, width).
    pub stride: (usize, usize),
    /// Zero padding on each side, (height, width).
    pub padding: (usize, usize),
    /// Spacing between kernel taps, (height, width).
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels split into this many independent blocks.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

/// Everything the kernels need to know about one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    /// Input channels, height, width (of the forward convolution's input).
    c: usize,
    h: usize,
    w: usize,
    /// Output channels, height, width.
    o: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    opts: Conv2dOptions,
}

impl Geometry {
    fn cg(&self) -> usize {
        self.c / self.opts.groups
    }
    fn og(&self) -> usize {
        self.o / self.opts.groups
    }
    /// Rows of a column matrix: one per (input channel in group, kernel tap).
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    /// Columns of a column matrix: one per (image, output position).
    fn p(&self) -> usize {
        self.n * self.ho * self.wo
    }
}

fn out_size(input: usize, pad: usize, dilation: usize, kernel: usize, stride: usize) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    (input + 2 * pad).checked_sub(span).map(|r| r / stride + 1)
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
    if g == 0 || opts.stride.0 == 0 || opts.stride.1 == 0 || opts.dilation.0 == 0 || opts.dilation.1 == 0 {
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
            if o % g != 0 { format!(", and {o} output channels do not split into {g} groups") } else { String::new() }
        )));
    }
    let (Some(ho), Some(wo)) = (
        out_size(h, opts.padding.0, opts.dilation.0, kh, opts.stride.0),
        out_size(w, opts.padding.1, opts.dilation.1, kw, opts.stride.1),
    ) else {
        return Err(bad(format!(
            "kernel {kh}x{kw} (dilation {:?}) is larger than the padded input {x:?}",
            opts.dilation
        )));
    };
    Ok(Geometry { n, c, h, w, o, ho, wo, kh, kw, opts })
}

/// The column matrix `[K, P]` of group `g` of `x` (`[N, C, H, W]`, contiguous).
fn im2col<T: Gemm>(x: &[T], geo: &Geometry, g: usize) -> Vec<T> {
    let Geometry { n, c, h, w, ho, wo, kh, kw, opts, .. } = *geo;
    let (sh, sw) = opts.stride;
    let (ph, pw) = opts.padding;
    let (dh, dw) = opts.dilation;
    let p = geo.p();
    let mut col = vec![T::ZERO; geo.k() * p];
    for ci in 0..geo.cg() {
        let channel = g * geo.cg() + ci;
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (ci * kh + ki) * kw + kj;
                let out_row = &mut col[row * p..(row + 1) * p];
                for img in 0..n {
                    let plane = &x[(img * c + channel) * h * w..(img * c + channel + 1) * h * w];
                    for oh in 0..ho {
                        let ih = (oh * sh + ki * dh) as isize - ph as isize;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        let src = &plane[ih as usize * w..(ih as usize + 1) * w];
                        let dst = &mut out_row[(img * ho + oh) * wo..(img * ho + oh + 1) * wo];
                        for (ow, d) in dst.iter_mut().enumerate() {
                            let iw = (ow * sw + kj * dw) as isize - pw as isize;
                            if iw >= 0 && iw < w as isize {
                                *d = src[iw as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    col
}

/// Adds the column matrix `col` (`[K, P]`) of group `g` back into `dx` (`[N, C, H, W]`).
fn col2im<T: Gemm>(col: &[T], geo: &Geometry, g: usize, dx: &mut [T]) {
    let Geometry { n, c, h, w, ho, wo, kh, kw, opts, .. } = *geo;
    let (sh, sw) = opts.stride;
    let (ph, pw) = opts.padding;
    let (dh, dw) = opts.dilation;
    let p = geo.p();
    for ci in 0..geo.cg() {
        let channel = g * geo.cg() + ci;
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (ci * kh + ki) * kw + kj;
                let in_row = &col[row * p..(row + 1) * p];
                for img in 0..n {
                    let plane = &mut dx[(img * c + channel) * h * w..(img * c + channel + 1) * h * w];
                    for oh in 0..ho {
                        let ih = (oh * sh + ki * dh) as isize - ph as isize;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        let dst = &mut plane[ih as usize * w..(ih as usize + 1) * w];
                        let src = &in_row[(img * ho + oh) * wo..(img * ho + oh + 1) * wo];
                        for (ow, &s) in src.iter().enumerate() {
                            let iw = (ow * sw + kj * dw) as isize - pw as isize;
                            if iw >= 0 && iw < w as isize {
                                dst[iw as usize] += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Output channels of group `g` of `y` (`[N, O, Ho, Wo]`) as an `[Og, P]` matrix.
fn gather_group<T: Gemm>(y: &[T], geo: &Geometry, g: usize) -> Vec<T> {
    let (og, hw) = (geo.og(), geo.ho * geo.wo);
    let mut out = Vec::with_capacity(og * geo.p());
    for oc in 0..og {
        let channel = g * og + oc;
        for img in 0..geo.n {
            out.extend_from_slice(&y[(img * geo.o + channel) * hw..(img * geo.o + channel + 1) * hw]);
        }
    }
    out
}

fn conv_kernel<T: Gemm>(x: &[T], weight: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, p, hw) = (geo.og(), geo.k(), geo.p(), geo.ho * geo.wo);
    let mut y = vec![T::ZERO; geo.n * geo.o * hw];
    for g in 0..geo.opts.groups {
        let col = im2col(x, geo, g);
        let wg = &weight[g * og * k..(g + 1) * og * k];
        let yg = gemm(og, k, p, wg, k, 1, &col, p, 1);
        for oc in 0..og {
            for img in 0..geo.n {
                let dst = ((img * geo.o) + g * og + oc) * hw;
                y[dst..dst + hw].copy_from_slice(&yg[oc * p + img * hw..oc * p + (img + 1) * hw]);
            }
        }
    }
    y
}

fn conv_transpose_kernel<T: Gemm>(gy: &[T], weight: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, p) = (geo.og(), geo.k(), geo.p());
    let mut dx = vec![T::ZERO; geo.n * geo.c * geo.h * geo.w];
    for g in 0..geo.opts.groups {
        let gyg = gather_group(gy, geo, g);
        let wg = &weight[g * og * k..(g + 1) * og * k];
        // W_g^T (a strided view of W_g) times the output gradient.
        let col = gemm(k, og, p, wg, 1, k, &gyg, p, 1);
        col2im(&col, geo, g, &mut dx);
    }
    dx
}

fn conv_weight_kernel<T: Gemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, p) = (geo.og(), geo.k(), geo.p());
    let mut dw = Vec::with_capacity(geo.o * k);
    for g in 0..geo.opts.groups {
        let col = im2col(x, geo, g);
        let gyg = gather_group(gy, geo, g);
        // gy_g [Og, P] times col^T (a strided view).
        dw.extend(gemm(og, p, k, &gyg, p, 1, &col, 1, p));
    }
    dw
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
                (Storage::F32(x), Storage::F32(w)) => Storage::from_vec(conv_kernel(x, w, geo)),
                (Storage::F64(x), Storage::F64(w)) => Storage::from_vec(conv_kernel(x, w, geo)),
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.n, geo.o, geo.ho, geo.wo],
        ),
        Kind::Transpose => (
            match (&sa, &sb) {
                (Storage::F32(g), Storage::F32(w)) => Storage::from_vec(conv_transpose_kernel(g, w, geo)),
                (Storage::F64(g), Storage::F64(w)) => Storage::from_vec(conv_transpose_kernel(g, w, geo)),
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.n, geo.c, geo.h, geo.w],
        ),
        Kind::Weight => (
            match (&sa, &sb) {
                (Storage::F32(x), Storage::F32(g)) => Storage::from_vec(conv_weight_kernel(x, g, geo)),
                (Storage::F64(x), Storage::F64(g)) => Storage::from_vec(conv_weight_kernel(x, g, geo)),
                _ => unreachable!("dtypes checked"),
            },
            vec![geo.o, geo.cg(), geo.kh, geo.kw],
        ),
    };
    Tensor::from_storage(storage, Layout::contiguous(&shape))
}

/// Records one primitive. `a`/`b` are (x, w) for `Conv`, (gy, w) for `Transpose` and
/// (x, gy) for `Weight`.
fn primitive(kind: Kind, a: &Tensor, b: &Tensor, geo: Geometry, location: &'static Location<'static>) -> Tensor {
    let value = run(kind, a, b, &geo);
    let name = match kind {
        Kind::Conv => "conv2d",
        Kind::Transpose => "conv_transpose2d",
        Kind::Weight => "conv2d_weight",
    };
    record(name, location, &[a, b], value, || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let (ga, gb) = match kind {
                // y = conv(x, w): dx = convT(gy, w), dw = convW(x, gy)
                Kind::Conv => (
                    ctx.needs_input_grad(0).then(|| primitive(Kind::Transpose, g, b, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Weight, a, g, geo, location)),
                ),
                // dx = convT(gy, w): d gy = conv(g, w), d w = convW(g, gy)
                Kind::Transpose => (
                    ctx.needs_input_grad(0).then(|| primitive(Kind::Conv, g, b, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Weight, g, a, geo, location)),
                ),
                // dw = convW(x, gy): d x = convT(gy, g), d gy = conv(x, g)
                Kind::Weight => (
                    ctx.needs_input_grad(0).then(|| primitive(Kind::Transpose, b, g, geo, location)),
                    ctx.needs_input_grad(1).then(|| primitive(Kind::Conv, a, g, geo, location)),
                ),
            };
            smallvec![ga, gb]
        })
        .save(a)
        .save(b)
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
    if let Some(b) = bias {
        if b.shape() != [channels] {
            return Err(Error::Shape {
                op,
                message: format!("bias has shape {:?}, expected [{channels}]", b.shape()),
                location,
            });
        }
    }
    Ok(())
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Tensor {
    match bias {
        Some(b) => &y + &crate::shape::reshape_to(b, &[1, b.numel(), 1, 1]),
        None => y,
    }
}

#[track_caller]
pub(crate) fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, opts: Conv2dOptions) -> Result<Tensor> {
    let location = Location::caller();
    let geo = geometry("conv2d", x.shape(), weight.shape(), opts, location)?;
    check_operands("conv2d", x, weight, bias, geo.o, location)?;
    Ok(add_bias(primitive(Kind::Conv, x, weight, geo, location), bias))
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
    let opts = Conv2dOptions { stride: (1, stride), padding: (0, padding), dilation: (1, dilation), groups };
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
                "expects input [N, C_in, H, W] and weight [C_in, C_out/groups, kH, kW], got {:?} and {:?}",
                x.shape(),
                weight.shape()
            ),
            location,
        });
    }
    if output_padding.0 >= opts.stride.0.max(opts.dilation.0) || output_padding.1 >= opts.stride.1.max(opts.dilation.1)
    {
        return Err(Error::InvalidArgument {
            op,
            message: format!("output_padding {output_padding:?} must be smaller than stride or dilation"),
            location,
        });
    }
    // The forward convolution this is the adjoint of: its input is our output.
    let (n, _, hi, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (kh, kw) = (weight.shape()[2], weight.shape()[3]);
    let size = |i: usize, s: usize, p: usize, d: usize, k: usize, op_: usize| -> Option<usize> {
        ((i - 1) * s + d * (k - 1) + op_ + 1).checked_sub(2 * p)
    };
    let (Some(h), Some(w)) = (
        size(hi, opts.stride.0, opts.padding.0, opts.dilation.0, kh, output_padding.0),
        size(wi, opts.stride.1, opts.padding.1, opts.dilation.1, kw, output_padding.1),
    ) else {
        return Err(Error::Shape { op, message: format!("padding {:?} leaves no output", opts.padding), location });
    };
    let c_out = weight.shape()[1] * opts.groups;
    let forward_input = [n, c_out, h, w];
    if h == 0 || w == 0 {
        return Err(Error::Shape { op, message: format!("padding {:?} leaves no output", opts.padding), location });
    }
    let mut geo = geometry(op, &forward_input, weight.shape(), opts, location)?;
    // With output_padding the forward convolution of the output would reach a little past
    // the input; those extra output rows and columns receive only the bias.
    debug_assert!(geo.ho >= hi && geo.wo >= wi);
    (geo.ho, geo.wo) = (hi, wi);
    check_operands(op, x, weight, bias, c_out, location)?;
    Ok(add_bias(primitive(Kind::Transpose, x, weight, geo, location), bias))
}
