//! Convolution kernels: the three bilinear primitives of a 2-D convolution on flat
//! `[N, C, H, W]` buffers.
//!
//! `conv` is the forward convolution, `conv_transpose` its adjoint with respect to the
//! input and `conv_weight` its adjoint with respect to the weight. Each picks the fastest
//! path that covers its geometry: direct sums for depthwise convolutions (`depthwise`, any
//! CPU), Winograd's algorithm (`winograd`, f32 on AVX-512 or AVX2), plain products for 1 x 1
//! kernels (`pointwise`), implicit GEMM at any stride (`implicit`, on AVX-512 or AVX2), and
//! im2col plus GEMM on CPUs with neither.

use rayon::prelude::*;

use crate::gemm::{Gemm, View, gemm_serial};
use crate::implicit_gemm::ImplicitGemm;
use crate::scratch::Scratch;
use crate::short_copy::{copy_row, fill_row};

mod depthwise;
mod images;
mod implicit;
mod padded;
mod pointwise;
mod winograd;

use images::{Images, written_by_images};

pub use winograd::{set_winograd_enabled, winograd_enabled};

/// Stride, padding, dilation and groups of a 2-D convolution (PyTorch's arguments).
///
/// ```
/// use tapegrad_kernels::conv::Conv2dOptions;
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

/// Everything the kernels need to know about one convolution. The caller checks it (the
/// sizes are consistent and every buffer's element count fits in `isize`); the kernels
/// index by it.
///
/// ```
/// use tapegrad_kernels::conv::{Conv2dOptions, Geometry, conv};
/// // One 3x3 image, one 2x2 kernel of ones: each output sums a 2x2 window.
/// let opts = Conv2dOptions::default();
/// let geo = Geometry { n: 1, c: 1, h: 3, w: 3, o: 1, ho: 2, wo: 2, kh: 2, kw: 2, opts };
/// let x: Vec<f64> = (1..=9).map(f64::from).collect();
/// assert_eq!(conv(&x, &[1.0; 4], &geo), vec![12.0, 16.0, 24.0, 28.0]);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// Images.
    pub n: usize,
    /// Input channels (of the forward convolution's input).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, padding, dilation and groups.
    pub opts: Conv2dOptions,
}

impl Geometry {
    /// The geometry of `input` (`[N, C, H, W]`) convolved with `weight`
    /// (`[O, C/groups, kH, kW]`): the output size worked out as PyTorch does.
    ///
    /// ```
    /// use tapegrad_kernels::conv::{Conv2dOptions, Geometry};
    /// let opts = Conv2dOptions { stride: (2, 2), padding: (1, 1), ..Default::default() };
    /// let geo = Geometry::new([8, 3, 32, 32], [16, 3, 3, 3], opts);
    /// assert_eq!((geo.ho, geo.wo), (16, 16));
    /// ```
    ///
    /// # Panics
    /// If the kernel does not fit in the padded input or a size overflows; callers that
    /// take sizes from users check them first and report the error in their own words.
    pub fn new(input: [usize; 4], weight: [usize; 4], opts: Conv2dOptions) -> Self {
        let [n, c, h, w] = input;
        let [o, _, kh, kw] = weight;
        let out = |size: usize, pad: usize, dilation: usize, kernel: usize, stride: usize| {
            let span = dilation * (kernel - 1) + 1;
            (size + 2 * pad)
                .checked_sub(span)
                .map(|r| r / stride + 1)
                .expect("the kernel fits the padded input")
        };
        let ho = out(h, opts.padding.0, opts.dilation.0, kh, opts.stride.0);
        let wo = out(w, opts.padding.1, opts.dilation.1, kw, opts.stride.1);
        Geometry { n, c, h, w, o, ho, wo, kh, kw, opts }
    }

    /// Input channels per group.
    ///
    /// ```
    /// use tapegrad_kernels::conv::{Conv2dOptions, Geometry};
    /// let opts = Conv2dOptions { groups: 2, ..Default::default() };
    /// assert_eq!(Geometry::new([1, 8, 5, 5], [4, 4, 3, 3], opts).cg(), 4);
    /// ```
    pub fn cg(&self) -> usize {
        self.c / self.opts.groups
    }

    /// Output channels per group.
    ///
    /// ```
    /// use tapegrad_kernels::conv::{Conv2dOptions, Geometry};
    /// let opts = Conv2dOptions { groups: 2, ..Default::default() };
    /// assert_eq!(Geometry::new([1, 8, 5, 5], [4, 4, 3, 3], opts).og(), 2);
    /// ```
    pub fn og(&self) -> usize {
        self.o / self.opts.groups
    }

    /// Rows of a column matrix: one per (input channel in group, kernel tap).
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
}

/// Writes the columns of group `g` of one image `[C, H, W]` into a column matrix with rows
/// of `row_len` elements, at `offset` within each row (several images share one matrix so
/// that one GEMM covers them all). Each input plane is first copied inside its padding's
/// zeros, so that every row of a tap is one copy: on planes of a few pixels, clearing the
/// edges of each row apart had cost more than the copies (a 4 x 4 plane's rows are four).
fn im2col<T: Gemm>(
    x: &[T],
    geo: &Geometry,
    g: usize,
    col: &mut [T],
    row_len: usize,
    offset: usize,
) {
    let Geometry { h, w, ho, wo, kh, kw, .. } = *geo;
    let Some(frame) = PaddedPlane::of(geo) else { return };
    let mut padded = Columns::new::<T>(frame.len);
    let padded = padded.as_mut::<T>();
    // The edges stay zero from here on: each plane rewrites the interior alone.
    fill_row(padded, T::ZERO);
    let pixels = frame.strided_pixels(ho, wo);
    for ci in 0..geo.cg() {
        let plane = &x[(g * geo.cg() + ci) * h * w..(g * geo.cg() + ci + 1) * h * w];
        for (row, src) in plane.chunks_exact(w.max(1)).enumerate() {
            copy_row(&mut padded[frame.interior(row)..frame.interior(row) + w], src);
        }
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (ci * kh + ki) * kw + kj;
                let dst_row = &mut col[row * row_len + offset..row * row_len + offset + ho * wo];
                if let Some(pixels) = &pixels {
                    let tap = &padded[frame.tap(0, ki, kj)..];
                    for (d, &at) in dst_row.iter_mut().zip(pixels) {
                        *d = tap[at];
                    }
                    continue;
                }
                for (oh, dst) in dst_row.chunks_exact_mut(wo).enumerate() {
                    let start = frame.tap(oh, ki, kj);
                    copy_row(dst, &padded[start..start + wo]);
                }
            }
        }
    }
}

/// A plane of a convolution's input inside its padding's zeros, as [`im2col`] reads it and
/// [`col2im`] sums into it: every tap then covers whole rows of pixels, with no edge to crop.
struct PaddedPlane {
    /// Elements of the padded plane.
    len: usize,
    /// Its row length.
    wp: usize,
    /// The convolution's padding (rows, columns).
    padding: (usize, usize),
    /// The convolution's stride (rows, columns).
    stride: (usize, usize),
    /// The convolution's dilation (rows, columns).
    dilation: (usize, usize),
}

impl PaddedPlane {
    /// The padded plane of `geo`'s input, or `None` when it has no output pixels.
    fn of(geo: &Geometry) -> Option<PaddedPlane> {
        let (padding, stride, dilation) = (geo.opts.padding, geo.opts.stride, geo.opts.dilation);
        let wp = geo.w + 2 * padding.1;
        (geo.ho * geo.wo > 0).then_some(PaddedPlane {
            len: (geo.h + 2 * padding.0) * wp,
            wp,
            padding,
            stride,
            dilation,
        })
    }

    /// Where input row `row`'s pixels start.
    fn interior(&self, row: usize) -> usize {
        (row + self.padding.0) * self.wp + self.padding.1
    }

    /// Where tap `(ki, kj)` of output row `oh`'s first pixel lies.
    fn tap(&self, oh: usize, ki: usize, kj: usize) -> usize {
        (oh * self.stride.0 + ki * self.dilation.0) * self.wp + kj * self.dilation.1
    }

    /// For a stride between the pixels of a row (`stride.1` above one), where each of the
    /// `ho x wo` output pixels' first tap lies, row by row (add [`PaddedPlane::tap`]`(0, ki,
    /// kj)` for another tap): a tap's pixels are then one flat loop over the table, where a
    /// loop per output row of a few strided pixels (4 x 4 outputs in a critic's deep layers)
    /// spent its time on the loops' ends. `None` when a row's pixels are adjacent, whose
    /// output rows are plain copies.
    fn strided_pixels(&self, ho: usize, wo: usize) -> Option<Vec<usize>> {
        (self.stride.1 != 1).then(|| {
            let tap = |oh, ow| self.tap(oh, 0, 0) + ow * self.stride.1;
            (0..ho).flat_map(|oh| (0..wo).map(move |ow| tap(oh, ow))).collect()
        })
    }
}

/// The column matrix of group `g` of images `first..first + count` of `x`, `k x (count * ho
/// * wo)`, written by [`im2col`] into `buf`.
fn column_matrix<'a, T: Gemm>(
    x: &[T],
    geo: &Geometry,
    (g, first, count): (usize, usize, usize),
    buf: &'a mut [T],
) -> View<'a, T> {
    let (k, hw, in_img) = (geo.k(), geo.ho * geo.wo, geo.c * geo.h * geo.w);
    for i in 0..count {
        let image = &x[(first + i) * in_img..(first + i + 1) * in_img];
        im2col(image, geo, g, buf, count * hw, i * hw);
    }
    View::row_major(&*buf, k, count * hw)
}

/// Adds one image's columns (rows of `row_len`, at `offset`) of group `g` back into that
/// image's gradient `dx` (`[C, H, W]`): each plane's taps are summed whole into a padded
/// plane, as [`im2col`] reads them, whose interior is then added to `dx`. Into a cleared
/// `dx` (the callers' images are taken cleared, each once) every element receives its
/// terms in the same order as when the taps were cropped to the image row by row.
fn col2im<T: Gemm>(
    col: &[T],
    geo: &Geometry,
    g: usize,
    dx: &mut [T],
    row_len: usize,
    offset: usize,
) {
    let Geometry { h, w, ho, wo, kh, kw, .. } = *geo;
    let Some(frame) = PaddedPlane::of(geo) else { return };
    let mut padded = Columns::new::<T>(frame.len);
    let padded = padded.as_mut::<T>();
    let pixels = frame.strided_pixels(ho, wo);
    for ci in 0..geo.cg() {
        fill_row(padded, T::ZERO);
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (ci * kh + ki) * kw + kj;
                let src_row = &col[row * row_len + offset..row * row_len + offset + ho * wo];
                if let Some(pixels) = &pixels {
                    let tap = &mut padded[frame.tap(0, ki, kj)..];
                    for (&v, &at) in src_row.iter().zip(pixels) {
                        tap[at] += v;
                    }
                    continue;
                }
                for (oh, src) in src_row.chunks_exact(wo).enumerate() {
                    let start = frame.tap(oh, ki, kj);
                    for (d, &v) in padded[start..start + wo].iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
        let plane = &mut dx[(g * geo.cg() + ci) * h * w..(g * geo.cg() + ci + 1) * h * w];
        for (row, dst) in plane.chunks_exact_mut(w.max(1)).enumerate() {
            let at = frame.interior(row);
            for (d, &v) in dst.iter_mut().zip(&padded[at..at + w]) {
                *d += v;
            }
        }
    }
}

/// A buffer for the im2col forms' column matrices, products and padded planes: a
/// per-thread spare ([`Scratch`]) instead of a zeroed allocation, for buffers the caller
/// overwrites (or clears) in full.
enum Columns {
    F32(Scratch<f32>),
    F64(Scratch<f64>),
}

impl Columns {
    fn new<T: 'static>(len: usize) -> Columns {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            Columns::F32(Scratch::new(len))
        } else {
            assert_eq!(std::any::TypeId::of::<T>(), std::any::TypeId::of::<f64>(), "f32 or f64");
            Columns::F64(Scratch::new(len))
        }
    }

    /// The buffer as elements of `T`, the type it was made for.
    fn as_mut<T: 'static>(&mut self) -> &mut [T] {
        let (ptr, len) = match self {
            Columns::F32(v) => (v.as_mut_ptr().cast::<T>(), v.len()),
            Columns::F64(v) => (v.as_mut_ptr().cast::<T>(), v.len()),
        };
        let same = match self {
            Columns::F32(_) => std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>(),
            Columns::F64(_) => std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>(),
        };
        assert!(same, "columns: made for another element type");
        // SAFETY: T is the buffer's own element type (checked above), so the pointer and
        // length describe its initialised elements, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

/// How a convolution's images are split into tasks.
#[derive(Clone, Copy)]
enum Split {
    /// One task per thread: for primitives whose images are independent (the forward and
    /// the input gradient), where the split cannot change a result.
    PerThread,
    /// A split fixed by the geometry alone: for the weight gradient, whose per-task partial
    /// sums would otherwise round differently at different thread counts.
    Fixed,
}

/// Images per task, split as `split` says, and capped at 16 MB of columns (`k` x pixels) a
/// task. (The im2col forms take a task's images in smaller products:
/// [`images_per_column_matrix`].)
fn images_per_chunk(geo: &Geometry, split: Split) -> usize {
    /// Tasks of a fixed split: enough to share among the threads of a large machine.
    const FIXED_TASKS: usize = 8;
    /// Output pixels per task of a fixed split below which its partial sum (a weight
    /// gradient per task, zeroed and added up afterwards) costs more than a task's share
    /// of the product saves: a task's multiply-adds are its pixels times the weights.
    const PIXELS_PER_PARTIAL: usize = 1024;
    let per_image = geo.k() * geo.ho * geo.wo;
    let tasks = match split {
        Split::PerThread if parallel(geo) => rayon::current_num_threads().max(1),
        Split::Fixed if crate::parallel::large(work(geo)) => {
            (geo.n * geo.ho * geo.wo / PIXELS_PER_PARTIAL).clamp(2, FIXED_TASKS)
        }
        _ => 1,
    };
    let cap = ((1 << 22) / per_image.max(1)).max(1);
    geo.n.div_ceil(tasks).clamp(1, cap)
}

/// Multiply-adds of a convolution.
fn work(geo: &Geometry) -> usize {
    geo.n * geo.o * geo.ho * geo.wo * geo.k()
}

/// Whether a convolution is big enough to be worth handing to other threads (waking a
/// worker costs microseconds, which small gradient-check convolutions cannot repay).
fn parallel(geo: &Geometry) -> bool {
    crate::parallel::worth_it(work(geo))
}

/// Runs `work(first_image, images)` over chunks of images, in parallel when worth it, each
/// with subnormal numbers flushed ([`crate::subnormal`]) on the thread that runs it.
fn for_chunks(geo: &Geometry, split: Split, work: impl Fn(usize, usize) + Sync + Send) {
    let chunk = images_per_chunk(geo, split);
    let starts: Vec<usize> = (0..geo.n).step_by(chunk).collect();
    let run = |&start: &usize| crate::subnormal::flushing(|| work(start, chunk.min(geo.n - start)));
    if parallel(geo) {
        let _ = crate::parallel::keep_warm();
        starts.par_iter().for_each(run);
    } else {
        starts.iter().for_each(run);
    }
}

/// Output channels of group `g` for images `first..first + count` of `y` (`[N, O, HW]`) as
/// one `[Og, count * HW]` matrix, written over the start of `out` (a buffer kept across a
/// task's products, which are many now that each takes a few images).
fn gather_outputs<'a, T: Gemm>(
    y: &[T],
    geo: &Geometry,
    (g, first, count): (usize, usize, usize),
    out: &'a mut [T],
) -> &'a [T] {
    let (og, hw) = (geo.og(), geo.ho * geo.wo);
    let out = &mut out[..og * count * hw];
    if out.is_empty() {
        return out;
    }
    for (oc, row) in out.chunks_exact_mut(count * hw).enumerate() {
        for (img, dst) in (first..first + count).zip(row.chunks_exact_mut(hw)) {
            let at = (img * geo.o + g * og + oc) * hw;
            copy_row(dst, &y[at..at + hw]);
        }
    }
    out
}

/// The forward convolution of `x` (`[N, C, H, W]`) with `weight` (`[O, C/groups, kH, kW]`):
/// `[N, O, Ho, Wo]`.
///
/// ```
/// use tapegrad_kernels::conv::{Conv2dOptions, Geometry, conv};
/// // Two channels of 1x1 kernels mix the channels of each pixel: out = 1 * c0 + 10 * c1.
/// let geo = Geometry::new([1, 2, 1, 2], [1, 2, 1, 1], Conv2dOptions::default());
/// assert_eq!(conv(&[1.0f32, 2.0, 3.0, 4.0], &[1.0, 10.0], &geo), vec![31.0, 42.0]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the geometry says.
pub fn conv<T: ImplicitGemm>(x: &[T], weight: &[T], geo: &Geometry) -> Vec<T> {
    conv_biased(x, weight, ChannelBias::none(), geo)
}

/// [`conv`] plus `bias[o]` on every pixel of output channel `o` (a convolution layer's
/// bias), added to each image's output right after it is written, while it is still in
/// cache: the same bits as adding the bias to [`conv`]'s result, without a second pass
/// over the output and a second buffer.
///
/// ```
/// use tapegrad_kernels::conv::{Conv2dOptions, Geometry, conv_with_bias};
/// let geo = Geometry::new([1, 2, 1, 2], [1, 2, 1, 1], Conv2dOptions::default());
/// let y = conv_with_bias(&[1.0f32, 2.0, 3.0, 4.0], &[1.0, 10.0], &[0.5], &geo);
/// assert_eq!(y, vec![31.5, 42.5]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the geometry says, or `bias` does not hold one value per
/// output channel.
pub fn conv_with_bias<T: ImplicitGemm>(
    x: &[T],
    weight: &[T],
    bias: &[T],
    geo: &Geometry,
) -> Vec<T> {
    assert_eq!(
        bias.len(),
        geo.o,
        "conv: a bias of {} values for {} output channels",
        bias.len(),
        geo.o
    );
    conv_biased(x, weight, ChannelBias { values: Some(bias), plane: geo.ho * geo.wo }, geo)
}

fn conv_biased<T: ImplicitGemm>(
    x: &[T],
    weight: &[T],
    bias: ChannelBias<'_, T>,
    geo: &Geometry,
) -> Vec<T> {
    let (len, out_img) = (geo.n * geo.o * geo.ho * geo.wo, geo.o * geo.ho * geo.wo);
    written_by_images(
        len,
        out_img,
        |out| {
            if depthwise::applies(geo) {
                depthwise::conv(x, weight, geo, bias, out.all_uninit());
                true
            } else if winograd::applies::<T>(geo) {
                winograd::conv(x, weight, geo, bias, out)
            } else {
                conv_direct(x, weight, geo, bias, out);
                true
            }
        },
        // A non-finite result from Winograd's form: summed again by a direct form.
        |out| conv_direct(x, weight, geo, bias, out),
    )
}

/// The forward convolution by the forms that sum each output directly.
fn conv_direct<T: ImplicitGemm>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) {
    if pointwise::applies(geo) {
        pointwise::conv(x, weight, geo, bias, y);
    } else if implicit::applies() && !weights_too_large(geo) {
        implicit::conv(x, weight, geo, bias, y);
    } else {
        conv_im2col(x, weight, geo, bias, y);
    }
}

/// A bias per output channel, for the forward forms to add to each image's output as soon
/// as they have written it.
#[derive(Clone, Copy)]
struct ChannelBias<'a, T> {
    values: Option<&'a [T]>,
    /// Pixels per output plane.
    plane: usize,
}

impl<T: crate::Real> ChannelBias<'_, T> {
    /// No bias: nothing to add.
    fn none() -> Self {
        ChannelBias { values: None, plane: 0 }
    }

    /// Adds the bias to the output planes of consecutive images, `image` (a whole number
    /// of images).
    fn add_to(&self, images: &mut [T]) {
        let Some(values) = self.values else { return };
        for (plane, &b) in images.chunks_exact_mut(self.plane).zip(values.iter().cycle()) {
            plane.iter_mut().for_each(|v| *v += b);
        }
    }
}

fn conv_im2col<T: Gemm>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let out_img = geo.o * hw;
    let batch = images_per_column_matrix::<T>(geo, 0);
    for_chunks(geo, Split::PerThread, |first, count| {
        let cols = batch.min(count) * hw;
        // Overwritten in full (im2col writes padding's zeros; the GEMM does not read C).
        let mut col = Columns::new::<T>(k * cols);
        let mut yg = Columns::new::<T>(og * cols);
        for (start, count) in image_batches(first, count, batch) {
            let cols = count * hw;
            let (col, yg) =
                (&mut col.as_mut::<T>()[..k * cols], &mut yg.as_mut::<T>()[..og * cols]);
            let y_batch = y.take(start, count);
            for g in 0..geo.opts.groups {
                let columns = column_matrix(x, geo, (g, start, count), col);
                let wg = View::row_major(&weight[g * og * k..(g + 1) * og * k], og, k);
                gemm_serial(wg, columns, yg, false);
                for oc in 0..og {
                    for i in 0..count {
                        let at = i * out_img + (g * og + oc) * hw;
                        copy_row(
                            &mut y_batch[at..at + hw],
                            &yg[oc * cols + i * hw..oc * cols + (i + 1) * hw],
                        );
                    }
                }
            }
            bias.add_to(y_batch);
        }
    });
}

/// Images whose column matrix (`k x pixels`) one product of the im2col forms takes: as many
/// as fit in half the core's L2 cache, and at least one, and at least enough for
/// `min_pixels` columns. A matrix of many images' columns, a page or more per row, had each
/// of its rows on a page of its own: the few pixels an image writes to a row (16 for a 4 x 4
/// output) each missed the TLB, as did the product's copy of those rows, and the matrix
/// left L2 before the product read it.
fn images_per_column_matrix<T>(geo: &Geometry, min_pixels: usize) -> usize {
    let hw = (geo.ho * geo.wo).max(1);
    let per_image = geo.k() * hw * std::mem::size_of::<T>();
    let fit = crate::cache::caches().l2 / 2 / per_image.max(1);
    fit.max(min_pixels.div_ceil(hw)).max(1)
}

/// Pixels (the shared dimension) below which a product of the weight gradient's im2col form
/// would read and write its whole result, the weights' gradient, for too few multiply-adds
/// (a 256 to 512 channel layer over 4 x 4 outputs: 4.7 MB for each image alone).
const WEIGHT_PRODUCT_PIXELS: usize = 128;

/// The images `first..first + count` in batches of `batch`: each batch's first image and
/// its number of images (the last may be short).
fn image_batches(first: usize, count: usize, batch: usize) -> impl Iterator<Item = (usize, usize)> {
    (first..first + count)
        .step_by(batch)
        .map(move |start| (start, batch.min(first + count - start)))
}

/// The adjoint of [`conv`] with respect to its input: the input gradient `[N, C, H, W]` of
/// the output gradient `gy` (`[N, O, Ho, Wo]`), which is also the transposed convolution.
///
/// ```
/// use tapegrad_kernels::conv::{Conv2dOptions, Geometry, conv_transpose};
/// // A 2x2 kernel over a 2x2 input has one output; its gradient spreads back by the kernel.
/// let geo = Geometry::new([1, 1, 2, 2], [1, 1, 2, 2], Conv2dOptions::default());
/// assert_eq!(conv_transpose(&[2.0f64], &[1.0, 2.0, 3.0, 4.0], &geo), vec![2.0, 4.0, 6.0, 8.0]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the geometry says.
pub fn conv_transpose<T: ImplicitGemm>(gy: &[T], weight: &[T], geo: &Geometry) -> Vec<T> {
    let (len, in_img) = (geo.n * geo.c * geo.h * geo.w, geo.c * geo.h * geo.w);
    written_by_images(
        len,
        in_img,
        |out| {
            if depthwise::applies(geo) {
                depthwise::conv_transpose(gy, weight, geo, out.all_uninit());
                true
            } else if winograd::applies_transpose::<T>(geo) {
                winograd::conv_transpose(gy, weight, geo, out)
            } else {
                conv_transpose_direct(gy, weight, geo, out);
                true
            }
        },
        |out| conv_transpose_direct(gy, weight, geo, out),
    )
}

/// The input gradient by the forms that sum each value directly.
fn conv_transpose_direct<T: ImplicitGemm>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) {
    let im2col_suits = geo.og() >= 32 && implicit::transpose_work_ratio(geo) > TRANSPOSE_WORK_RATIO;
    if pointwise::applies(geo) {
        pointwise::conv_transpose(gy, weight, geo, dx);
    } else if implicit::applies() && !im2col_suits && !weights_too_large(geo) {
        implicit::conv_transpose(gy, weight, geo, dx);
    } else {
        conv_transpose_im2col(gy, weight, geo, dx);
    }
}

/// Weights (elements) from which the im2col form, whose packing GEMM blocks them for the
/// caches, replaces the implicit kernels, which read them whole for every image: twice
/// the core's L2 in f32 (4 MB, a 3 x 3 layer of 512 channels, with a 2 MB L2; 1 MB, 128
/// to 256 channels, with Zen 3's 512 KB), and never more than those 4 MB (set between
/// the layers measured in docs/BENCHMARKS.md, eighteenth and fifty-fourth sessions).
fn implicit_max_weights() -> usize {
    (2 * crate::cache::caches().l2 / std::mem::size_of::<f32>()).min(1 << 20)
}

/// Whether `geo`'s weights are too large for the implicit kernels
/// ([`implicit_max_weights`]).
fn weights_too_large(geo: &Geometry) -> bool {
    geo.o * geo.cg() * geo.kh * geo.kw >= implicit_max_weights()
}

/// The most multiply-adds, as a multiple of the convolution's own, that the implicit input
/// gradient may do before the im2col form (one product over many images, then the columns
/// added back into place, doing only the convolution's own) is used instead, when that
/// product is deep enough (32 output channels or more; with one, it is an outer product
/// and the adding back is as much work as the convolution). Set between the cases
/// measured in docs/BENCHMARKS.md (seventeenth session): the implicit form was ahead at
/// four times the work, im2col at sixteen.
const TRANSPOSE_WORK_RATIO: f64 = 8.0;

fn conv_transpose_im2col<T: ImplicitGemm>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let in_img = geo.c * geo.h * geo.w;
    let batch = images_per_column_matrix::<T>(geo, 0);
    // Each group's weights transposed once, `k x og`: the products read their rows in
    // place. As the column-major view of the weights, every product copied them into
    // panels again, six floats from each of `og` rows a whole weight row apart.
    let weights_t: Vec<Vec<T>> = (0..geo.opts.groups)
        .map(|g| {
            let mut wt = vec![T::ZERO; k * og];
            T::transpose(&weight[g * og * k..(g + 1) * og * k], og, k, &mut wt);
            wt
        })
        .collect();
    for_chunks(geo, Split::PerThread, |first, count| {
        // Overwritten in full (im2col writes padding's zeros; the GEMM does not read C).
        let mut col = Columns::new::<T>(k * batch.min(count) * hw);
        // Overwritten by each product's gathered gradients before they are read.
        let mut gyg = Columns::new::<T>(og * batch.min(count) * hw);
        for (start, count) in image_batches(first, count, batch) {
            let cols = count * hw;
            let col = &mut col.as_mut::<T>()[..k * cols];
            let dx_batch = dx.take(start, count);
            for (g, wt) in weights_t.iter().enumerate() {
                let gyg = gather_outputs(gy, geo, (g, start, count), gyg.as_mut::<T>());
                gemm_serial(View::row_major(wt, k, og), View::row_major(gyg, og, cols), col, false);
                for i in 0..count {
                    let dx_image = &mut dx_batch[i * in_img..(i + 1) * in_img];
                    col2im(col, geo, g, dx_image, cols, i * hw);
                }
            }
        }
    });
}

/// The adjoint of [`conv`] with respect to its weight: the weight gradient
/// `[O, C/groups, kH, kW]` of the output gradient `gy`, summed over the images in a fixed
/// order (the same result at every thread count).
///
/// ```
/// use tapegrad_kernels::conv::{Conv2dOptions, Geometry, conv_weight};
/// // With one output pixel, the weight gradient is the input scaled by its gradient.
/// let geo = Geometry::new([1, 1, 2, 2], [1, 1, 2, 2], Conv2dOptions::default());
/// assert_eq!(conv_weight(&[1.0f64, 2.0, 3.0, 4.0], &[0.5], &geo), vec![0.5, 1.0, 1.5, 2.0]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the geometry says.
pub fn conv_weight<T: ImplicitGemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    if depthwise::applies(geo) {
        return depthwise::conv_weight(x, gy, geo);
    }
    if winograd::applies::<T>(geo)
        && let Some(dw) = winograd::conv_weight(x, gy, geo)
    {
        return dw;
    }
    if pointwise::applies(geo) {
        return pointwise::conv_weight(x, gy, geo);
    }
    if implicit::applies() && !weights_too_large(geo) {
        return implicit::conv_weight(x, gy, geo);
    }
    conv_weight_im2col(x, gy, geo)
}

fn conv_weight_im2col<T: Gemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let size = geo.o * k;
    let partials = std::sync::Mutex::new(Vec::new());
    let batch = images_per_column_matrix::<T>(geo, WEIGHT_PRODUCT_PIXELS);
    for_chunks(geo, Split::Fixed, |first, count| {
        // Overwritten in full (im2col writes padding's zeros; the GEMM does not read C).
        let mut col = Columns::new::<T>(k * batch.min(count) * hw);
        // Overwritten by each product's gathered gradients before they are read.
        let mut gyg = Columns::new::<T>(og * batch.min(count) * hw);
        let mut acc = vec![T::ZERO; size];
        for (index, (start, count)) in image_batches(first, count, batch).enumerate() {
            let cols = count * hw;
            let col = &mut col.as_mut::<T>()[..k * cols];
            for g in 0..geo.opts.groups {
                let columns = column_matrix(x, geo, (g, start, count), col);
                let gyg = gather_outputs(gy, geo, (g, start, count), gyg.as_mut::<T>());
                gemm_serial(
                    View::row_major(gyg, og, cols),
                    columns.t(),
                    &mut acc[g * og * k..(g + 1) * og * k],
                    index > 0,
                );
            }
        }
        partials.lock().expect("no task panicked").push((first, acc));
    });
    sum_in_image_order(partials, size)
}

/// The partial sums tasks pushed with their first image, added in image order so that
/// results do not depend on thread timing (`size` zeros when there are none).
fn sum_in_image_order<T: Gemm>(
    partials: std::sync::Mutex<Vec<(usize, Vec<T>)>>,
    size: usize,
) -> Vec<T> {
    let mut partials = partials.into_inner().expect("no task panicked");
    partials.sort_by_key(|(first, _)| *first);
    let mut partials = partials.into_iter().map(|(_, sum)| sum);
    let mut total = partials.next().unwrap_or_else(|| vec![T::ZERO; size]);
    let rest: Vec<Vec<T>> = partials.collect();
    // Each element adds the partials in image order, whichever thread runs its block.
    let add_block = |(block, total): (usize, &mut [T])| {
        let at = block * crate::parallel::THRESHOLD;
        for sum in &rest {
            let sum = &sum[at..at + total.len()];
            total.iter_mut().zip(sum).for_each(|(t, &s)| *t += s);
        }
    };
    if !rest.is_empty() && crate::parallel::start_parallel(total.len() * rest.len() / 4) {
        total.par_chunks_mut(crate::parallel::THRESHOLD).enumerate().for_each(add_block);
    } else {
        total.chunks_mut(crate::parallel::THRESHOLD).enumerate().for_each(add_block);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer of `geo.n` images as a form's output.
    fn images<'a, T: crate::Real>(buf: &'a mut [T], geo: &Geometry) -> Images<'a, T> {
        let image = buf.len() / geo.n;
        Images::over(buf, image)
    }

    /// The bias added inside every forward form gives the bits of adding it to the
    /// unbiased result: Winograd's tiles, 1 x 1 products, the implicit GEMM by rows and by
    /// pixels (with groups and strides), and im2col.
    fn bias_matches_adding_it_after<T: ImplicitGemm + crate::testing::Convert>() {
        let mut values = crate::testing::uniform(5);
        let mut next = move || T::from_f64(values());
        // n, c, h, w, o, k, stride, padding, groups
        let cases = [
            (4, 16, 14, 14, 32, 5, 1, 2, 1),
            (2, 8, 9, 9, 16, 1, 1, 0, 1),
            (3, 4, 6, 7, 6, 3, 1, 1, 2),
            (2, 32, 5, 9, 16, 3, 1, 1, 2),
            (2, 8, 11, 10, 8, 3, 2, 1, 1),
            (1, 3, 4, 4, 2, 2, 1, 0, 1),
        ];
        for (n, c, h, w, o, k, stride, padding, groups) in cases {
            let opts = Conv2dOptions {
                stride: (stride, stride),
                padding: (padding, padding),
                groups,
                ..Default::default()
            };
            let geo = Geometry::new([n, c, h, w], [o, c / groups, k, k], opts);
            let x: Vec<T> = (0..n * c * h * w).map(|_| next()).collect();
            let weight: Vec<T> = (0..o * (c / groups) * k * k).map(|_| next()).collect();
            let bias: Vec<T> = (0..o).map(|_| next()).collect();
            let plane = geo.ho * geo.wo;
            let add = |y: Vec<T>| -> Vec<T> {
                y.iter().enumerate().map(|(i, &v)| v + bias[(i / plane) % o]).collect()
            };
            let got = conv_with_bias(&x, &weight, &bias, &geo);
            assert_eq!(got, add(conv(&x, &weight, &geo)), "{geo:?}");
            let channels = ChannelBias { values: Some(&bias[..]), plane };
            let (mut unbiased, mut biased) = (vec![T::ZERO; got.len()], vec![T::ZERO; got.len()]);
            conv_im2col(&x, &weight, &geo, ChannelBias::none(), &images(&mut unbiased, &geo));
            conv_im2col(&x, &weight, &geo, channels, &images(&mut biased, &geo));
            assert_eq!(biased, add(unbiased), "im2col {geo:?}");
        }
    }

    #[test]
    fn bias_matches_adding_it_after_f32() {
        bias_matches_adding_it_after::<f32>();
    }

    #[test]
    fn bias_matches_adding_it_after_f64() {
        bias_matches_adding_it_after::<f64>();
    }

    #[test]
    #[should_panic(expected = "a bias of 2 values for 3 output channels")]
    fn a_bias_per_output_channel() {
        let geo = Geometry::new([1, 1, 2, 2], [3, 1, 1, 1], Conv2dOptions::default());
        conv_with_bias(&[1.0f32; 4], &[1.0; 3], &[0.0; 2], &geo);
    }

    /// The implicit kernels against the im2col ones, over geometries that cover strides,
    /// padding wider than the kernel, dilation, groups, outputs wider than one register
    /// block and channel counts that leave partial row blocks.
    fn implicit_matches_im2col<T: ImplicitGemm + crate::testing::Convert>(tolerance: f64) {
        if !crate::implicit_gemm::available() {
            return;
        }
        let mut values = crate::testing::uniform(11);
        let mut next = move || T::from_f64(values());
        let cases = [
            // n, c, h, w, o, k, padding, dilation, groups
            (2, 1, 28, 28, 16, 5, 2, 1, 1),
            (2, 16, 14, 14, 32, 5, 2, 1, 1),
            (1, 3, 9, 53, 5, 3, 1, 2, 1),
            (3, 4, 6, 7, 6, 3, 4, 1, 2),
            (1, 6, 5, 20, 9, 2, 0, 3, 3),
            (2, 2, 4, 4, 17, 1, 0, 1, 1),
            // Channels as the columns of C: forward with groups; transposed with groups;
            // both with dilation and padding.
            (1, 16, 6, 9, 32, 3, 1, 1, 2),
            (2, 32, 5, 9, 16, 3, 1, 1, 2),
            (1, 16, 7, 10, 16, 3, 2, 2, 1),
            // Channel counts that leave a partial vector (and transposition edges); padding
            // beyond the kernel's reach, so the transposed path crops its padded copy.
            (1, 24, 6, 9, 24, 3, 1, 1, 1),
            (1, 16, 7, 10, 16, 3, 3, 1, 1),
            // Several images to a product, the last batch short (100 pixels: batches of 3).
            (4, 8, 10, 10, 32, 3, 1, 1, 1),
            (5, 32, 10, 10, 16, 3, 1, 1, 1),
            // Output rows computed several to a product (weights past L1 in f64), the last
            // group short, the columns past each row's end dropped.
            (1, 16, 26, 26, 32, 3, 0, 1, 1),
        ];
        // Strides: a ResNet's stride-2 3 x 3 and 1 x 1 layers (whose input gradient has
        // phases no tap reaches), odd and even sizes, unequal strides, with dilation and
        // groups, by rows and by pixels.
        let strided = [
            (2, 8, 9, 9, 16, 3, 1, 1, 1, (2, 2)),
            (1, 32, 8, 8, 64, 3, 1, 1, 1, (2, 2)),
            (2, 16, 8, 8, 32, 1, 0, 1, 1, (2, 2)),
            (1, 3, 11, 14, 5, 3, 2, 2, 1, (3, 2)),
            (1, 4, 10, 13, 6, 5, 2, 1, 2, (1, 3)),
            (3, 2, 7, 7, 3, 2, 0, 1, 1, (2, 1)),
            // An input with fewer rows than the stride, and padding wider than the kernel.
            (2, 3, 1, 6, 4, 1, 0, 1, 1, (2, 2)),
            (1, 2, 5, 6, 3, 3, 4, 1, 1, (2, 3)),
            // Input gradients by pixels, phase by phase: phases of unequal sizes; groups
            // with phases no tap reaches; a transposed convolution's upsampling layer.
            (2, 32, 7, 9, 64, 3, 1, 1, 1, (2, 2)),
            (1, 32, 6, 6, 128, 1, 0, 1, 2, (2, 2)),
            (2, 64, 8, 8, 128, 4, 1, 1, 1, (2, 2)),
            // 4 x 4 phases, 16 images to a product: a short batch after a whole one (on one
            // thread or two).
            (40, 16, 8, 8, 64, 3, 1, 1, 1, (2, 2)),
            // Output rows several to a product at stride 2 (weights past L1 in both types).
            (1, 16, 64, 64, 64, 3, 1, 1, 1, (2, 2)),
            // Column matrices of one image each (past half of any L2 up to 2 MB), with
            // groups: the im2col forms' products image by image.
            (3, 32, 64, 64, 32, 3, 1, 1, 2, (2, 2)),
        ];
        let stride_one =
            cases.map(|(n, c, h, w, o, k, p, d, g)| (n, c, h, w, o, k, p, d, g, (1, 1)));
        for (n, c, h, w, o, k, p, d, groups, stride) in stride_one.into_iter().chain(strided) {
            let opts = Conv2dOptions { stride, padding: (p, p), dilation: (d, d), groups };
            let geo = Geometry::new([n, c, h, w], [o, c / groups, k, k], opts);
            let x: Vec<T> = (0..n * c * h * w).map(|_| next()).collect();
            let weight: Vec<T> = (0..o * geo.k()).map(|_| next()).collect();
            let gy: Vec<T> = (0..n * o * geo.ho * geo.wo).map(|_| next()).collect();
            let close = |what: &str, got: &[T], want: &[T]| {
                assert_close(got, want, tolerance, &format!("{what} {geo:?}"))
            };
            let mut y = vec![T::ZERO; gy.len()];
            let mut y_ref = y.clone();
            implicit::conv(&x, &weight, &geo, ChannelBias::none(), &images(&mut y, &geo));
            conv_im2col(&x, &weight, &geo, ChannelBias::none(), &images(&mut y_ref, &geo));
            close("conv", &y, &y_ref);
            let mut dx = vec![T::ZERO; x.len()];
            let mut dx_ref = dx.clone();
            implicit::conv_transpose(&gy, &weight, &geo, &images(&mut dx, &geo));
            conv_transpose_im2col(&gy, &weight, &geo, &images(&mut dx_ref, &geo));
            close("conv_transpose", &dx, &dx_ref);
            close(
                "conv_weight",
                &implicit::conv_weight(&x, &gy, &geo),
                &conv_weight_im2col(&x, &gy, &geo),
            );
        }
    }

    /// Asserts that `got` is `want` within `tolerance` relative to `1 + |want|`, element by
    /// element; `what` names the comparison in the failure.
    fn assert_close<T: crate::testing::Convert>(got: &[T], want: &[T], tolerance: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let (g, w) = (g.to_f64(), w.to_f64());
            assert!((g - w).abs() <= tolerance * (1.0 + w.abs()), "{what}: [{i}] {g} vs {w}");
        }
    }

    /// Uniform values in [-0.5, 0.5) from a fixed seed.
    fn uniform(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
            })
            .collect()
    }

    /// The im2col forms (forward, input gradient, weight gradient, with groups) against the
    /// convolution's definition summed in f64, with padding, stride and dilation that
    /// differ between rows and columns (a `Conv1d` is one row of pixels, padded in its
    /// columns only), padding wider than a kernel's reach, and a single-row image.
    #[test]
    fn im2col_forms_match_the_definition() {
        let cases = [
            // input, weight, padding, stride, dilation, groups
            ([2, 4, 5, 7], [4, 2, 3, 2], (2, 0), (2, 1), (1, 2), 2),
            ([1, 2, 1, 9], [3, 2, 1, 3], (0, 2), (1, 2), (1, 1), 1),
            ([2, 3, 4, 4], [2, 3, 2, 2], (3, 1), (1, 3), (2, 1), 1),
        ];
        for (input, weight, padding, stride, dilation, groups) in cases {
            let opts = Conv2dOptions { padding, stride, dilation, groups };
            let geo = Geometry::new(input, weight, opts);
            let ([n, c, h, w], [o, cg, kh, kw]) = (input, weight);
            let (ho, wo, og) = (geo.ho, geo.wo, o / groups);
            let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
            let x = wide(uniform(1, n * c * h * w));
            let k = wide(uniform(2, o * cg * kh * kw));
            let gy = wide(uniform(3, n * o * ho * wo));
            let (mut y, mut dx, mut dk) =
                (vec![0.0; gy.len()], vec![0.0; x.len()], vec![0.0; k.len()]);
            for (img, oc, oh, ow, ci, ki, kj) in (0..n * o * ho * wo * cg * kh * kw).map(|i| {
                let (rest, kj) = (i / kw, i % kw);
                let (rest, ki) = (rest / kh, rest % kh);
                let (rest, ci) = (rest / cg, rest % cg);
                let (rest, ow) = (rest / wo, rest % wo);
                let (rest, oh) = (rest / ho, rest % ho);
                (rest / o, rest % o, oh, ow, ci, ki, kj)
            }) {
                let ih = (oh * stride.0 + ki * dilation.0) as isize - padding.0 as isize;
                let iw = (ow * stride.1 + kj * dilation.1) as isize - padding.1 as isize;
                if ih < 0 || iw < 0 || ih as usize >= h || iw as usize >= w {
                    continue;
                }
                let channel = oc / og * cg + ci;
                let xi = ((img * c + channel) * h + ih as usize) * w + iw as usize;
                let ki_at = ((oc * cg + ci) * kh + ki) * kw + kj;
                let yi = ((img * o + oc) * ho + oh) * wo + ow;
                y[yi] += x[xi] * k[ki_at];
                dx[xi] += gy[yi] * k[ki_at];
                dk[ki_at] += gy[yi] * x[xi];
            }
            let close = |got: &[f64], want: &[f64], what: &str| {
                for (i, (g, e)) in got.iter().zip(want).enumerate() {
                    assert!((g - e).abs() < 1e-12, "{what} {geo:?}: element {i} {g} against {e}");
                }
            };
            let mut got = vec![0.0; y.len()];
            conv_im2col(&x, &k, &geo, ChannelBias::none(), &images(&mut got, &geo));
            close(&got, &y, "forward");
            let mut got = vec![0.0; dx.len()];
            conv_transpose_im2col(&gy, &k, &geo, &images(&mut got, &geo));
            close(&got, &dx, "input gradient");
            close(&conv_weight_im2col(&x, &gy, &geo), &dk, "weight gradient");
        }
    }

    /// The largest error of `got` against `want`, as a fraction of `want`'s largest value.
    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst =
            got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()));
        worst / scale
    }

    /// Winograd's f32 path (forward, input gradient, weight gradient) against the direct
    /// sum in f64, for 5 x 5 kernels (4 x 4 tiles, and 2 x 2 ones on outputs two pixels
    /// high) and 3 x 3 ones (4 x 4 tiles): the CNN's
    /// second layer, output sizes that crop the last tiles, paddings from 0 to the kernel's
    /// side (from there the input gradient is direct), images split over rounds of tiles
    /// (225 tiles) and rounds spanning images (12 images of 49 tiles), 48 and 64 channels
    /// (more than one column panel). The bound, 1e-5 of the largest output, is about ten
    /// times what the direct f32 sum gives.
    #[test]
    fn winograd_matches_direct_sum() {
        let cases = [
            // n, c, h, w, o, kernel, padding
            (2, 16, 14, 14, 32, 5, (2, 2)),
            (3, 32, 7, 9, 16, 5, (0, 0)),
            (1, 16, 5, 5, 16, 5, (4, 4)),
            (6, 16, 6, 11, 16, 5, (1, 3)),
            (2, 48, 9, 8, 32, 5, (3, 2)),
            (2, 16, 30, 30, 16, 5, (2, 2)),
            (12, 16, 14, 14, 16, 5, (2, 2)),
            (1, 16, 8, 8, 64, 5, (2, 1)),
            (1, 16, 6, 7, 16, 5, (5, 5)),
            (4, 16, 2, 6, 16, 5, (2, 2)),
            (3, 32, 6, 2, 16, 5, (2, 2)),
            (2, 16, 14, 14, 16, 3, (1, 1)),
            (3, 32, 7, 9, 16, 3, (0, 0)),
            (1, 16, 61, 58, 32, 3, (2, 1)),
            (5, 16, 5, 6, 48, 3, (2, 0)),
            (1, 16, 4, 5, 16, 3, (3, 3)),
            // Outputs smaller than one tile, and an input gradient too small to save
            // multiplications (2 x 2 pixels).
            (3, 16, 3, 3, 16, 3, (1, 1)),
            (2, 16, 2, 2, 16, 3, (2, 2)),
        ];
        let mut tilings = std::collections::BTreeSet::new();
        for (n, c, h, w, o, k, padding) in cases {
            let opts = Conv2dOptions { padding, ..Default::default() };
            let geo = Geometry::new([n, c, h, w], [o, c, k, k], opts);
            if !winograd::covers::<f32>(&geo) {
                assert!(!crate::implicit_gemm::available(), "{geo:?}");
                return;
            }
            tilings.insert((k, winograd::tiling(k, geo.ho, geo.wo)));
            let x = uniform(1, n * c * h * w);
            let weight = uniform(2, o * c * k * k);
            let gy = uniform(3, n * o * geo.ho * geo.wo);
            let wide = |v: &[f32]| v.iter().map(|&e| f64::from(e)).collect::<Vec<f64>>();
            let (x64, w64, gy64) = (wide(&x), wide(&weight), wide(&gy));

            let mut y = vec![0.0f32; gy.len()];
            assert!(winograd::conv(&x, &weight, &geo, ChannelBias::none(), &images(&mut y, &geo)));
            let error = relative_error(&y, &conv(&x64, &w64, &geo));
            assert!(error < 1e-5, "conv {geo:?}: error {error:e} of the largest output");

            let dw = winograd::conv_weight(&x, &gy, &geo).expect("finite");
            let error = relative_error(&dw, &conv_weight(&x64, &gy64, &geo));
            assert!(error < 1e-5, "conv_weight {geo:?}: error {error:e} of the largest output");

            let transposed = padding.0 < k && padding.1 < k && winograd::saves_enough(k, h, w);
            assert_eq!(winograd::covers_transpose::<f32>(&geo), transposed);
            if winograd::covers_transpose::<f32>(&geo) {
                let mut dx = vec![0.0f32; x.len()];
                assert!(winograd::conv_transpose(&gy, &weight, &geo, &images(&mut dx, &geo)));
                let error = relative_error(&dx, &conv_transpose(&gy64, &w64, &geo));
                assert!(
                    error < 1e-5,
                    "conv_transpose {geo:?}: error {error:e} of the largest output"
                );
            }
        }
        let every = [(3, (4, 6)), (5, (2, 6)), (5, (4, 8))];
        assert_eq!(tilings, every.into_iter().collect(), "every tiling tried");
    }

    /// What the path does not cover goes to the direct kernels: other kernel sizes (and
    /// kernels that are not square), outputs too small to save multiplications, strides,
    /// dilations, groups, channel counts that are not whole vectors, no channels or images,
    /// and f64.
    #[test]
    fn winograd_declines_what_it_does_not_cover() {
        let geo = Geometry::new;
        let plain = Conv2dOptions::default();
        let covered = geo([16, 16, 8, 8], [16, 16, 5, 5], plain);
        if !winograd::applies::<f32>(&covered) {
            return;
        }
        assert!(!winograd::applies::<f64>(&covered));
        let declined = [
            geo([16, 16, 8, 8], [16, 16, 7, 7], plain),
            geo([16, 16, 8, 8], [16, 16, 1, 1], plain),
            geo([16, 16, 8, 8], [16, 16, 3, 5], plain),
            geo([16, 16, 8, 8], [16, 16, 5, 5], Conv2dOptions { stride: (2, 2), ..plain }),
            geo([16, 16, 12, 12], [16, 16, 5, 5], Conv2dOptions { dilation: (2, 1), ..plain }),
            geo([16, 32, 8, 8], [32, 16, 5, 5], Conv2dOptions { groups: 2, ..plain }),
            // Channel counts that are not whole vectors (of 16 or 8 lanes).
            geo([16, 12, 8, 8], [16, 12, 5, 5], plain),
            geo([16, 16, 8, 8], [20, 16, 5, 5], plain),
            geo([16, 0, 8, 8], [16, 0, 5, 5], plain),
            geo([16, 16, 8, 8], [0, 16, 5, 5], plain),
            geo([0, 16, 8, 8], [16, 16, 5, 5], plain),
            // One 4 x 4 tile for a 2 x 2 output, one 2 x 2 tile for a 1 x 1 one: no fewer
            // multiplications, however many images.
            geo([16, 16, 2, 2], [16, 16, 3, 3], Conv2dOptions { padding: (1, 1), ..plain }),
            geo([128, 16, 5, 5], [16, 16, 5, 5], plain),
            // A transformed kernel of 36 x 512 x 512 values (38 MB).
            geo([16, 512, 8, 8], [512, 512, 3, 3], Conv2dOptions { padding: (1, 1), ..plain }),
            // Too few tiles over the batch: 2 images of one 4 x 4 tile.
            geo([2, 16, 8, 8], [16, 16, 5, 5], plain),
        ];
        for g in declined {
            assert!(!winograd::applies::<f32>(&g), "{g:?}");
        }
    }

    /// An infinity or a NaN in an input gives exactly the direct sum's outputs, input
    /// gradient and weight gradient: the transforms would spread it over its tile (or
    /// overflow where the direct sum does not), so such results are recomputed.
    #[test]
    fn winograd_leaves_non_finite_inputs_to_the_direct_sum() {
        for k in [5, 3] {
            let opts = Conv2dOptions { padding: (k / 2, k / 2), ..Default::default() };
            // 32 x 32: enough tiles in one image for Winograd to apply.
            let geo = Geometry::new([1, 16, 32, 32], [16, 16, k, k], opts);
            if !winograd::applies::<f32>(&geo) {
                assert!(!crate::implicit_gemm::available(), "{geo:?}");
                return;
            }
            let weight = uniform(5, 16 * 16 * k * k);
            check_non_finite_fallback(&geo, &weight);
        }
    }

    fn check_non_finite_fallback(geo: &Geometry, weight: &[f32]) {
        let geo = *geo;
        // One image of 16 channels of 32 x 32 in and out.
        assert_eq!((geo.n, geo.c, geo.o, geo.h * geo.w, geo.ho * geo.wo), (1, 16, 16, 1024, 1024));
        for bad in [f32::INFINITY, f32::NAN] {
            let mut x = uniform(4, 16 * 1024);
            x[3 * 1024 + 2 * 32 + 5] = bad;
            let mut y = vec![0.0f32; 16 * 1024];
            assert!(!winograd::conv(&x, weight, &geo, ChannelBias::none(), &images(&mut y, &geo)));
            let mut direct = vec![0.0f32; 16 * 1024];
            implicit::conv(&x, weight, &geo, ChannelBias::none(), &images(&mut direct, &geo));
            let got = conv(&x, weight, &geo);
            let same = |g: &f32, d: &f32| g.to_bits() == d.to_bits() || (g.is_nan() && d.is_nan());
            for (g, d) in got.iter().zip(&direct) {
                assert!(same(g, d), "{g} vs direct {d}");
            }
            // The input gradient, with the bad value in the output gradient.
            let mut gy = uniform(6, 16 * 1024);
            gy[5 * 1024 + 7] = bad;
            let mut dx = vec![0.0f32; 16 * 1024];
            assert!(!winograd::conv_transpose(&gy, weight, &geo, &images(&mut dx, &geo)));
            let mut direct = vec![0.0f32; 16 * 1024];
            implicit::conv_transpose(&gy, weight, &geo, &images(&mut direct, &geo));
            for (g, d) in conv_transpose(&gy, weight, &geo).iter().zip(&direct) {
                assert!(same(g, d), "input gradient {g} vs direct {d}");
            }
            // The weight gradient reads the same input.
            let gy = uniform(6, 16 * 1024);
            assert!(winograd::conv_weight(&x, &gy, &geo).is_none());
            let direct = implicit::conv_weight(&x, &gy, &geo);
            for (g, d) in conv_weight(&x, &gy, &geo).iter().zip(&direct) {
                assert!(same(g, d), "weight gradient {g} vs direct {d}");
            }
        }
        // A finite input large enough to overflow inside the input transform (which scales
        // values by up to 6.25) but not in the direct sum: the direct sum's finite outputs.
        let mut x = uniform(4, 16 * 1024);
        x[3 * 1024 + 2 * 32 + 5] = 3e38;
        let small: Vec<f32> = weight.iter().map(|w| w * 1e-3).collect();
        let mut y = vec![0.0f32; 16 * 1024];
        assert!(!winograd::conv(&x, &small, &geo, ChannelBias::none(), &images(&mut y, &geo)));
        let mut direct = vec![0.0f32; 16 * 1024];
        implicit::conv(&x, &small, &geo, ChannelBias::none(), &images(&mut direct, &geo));
        assert!(direct.iter().all(|v| v.is_finite()));
        assert_eq!(conv(&x, &small, &geo), direct);
    }

    #[test]
    fn implicit_kernels_match_im2col_f32() {
        implicit_matches_im2col::<f32>(1e-4);
    }

    #[test]
    fn implicit_kernels_match_im2col_f64() {
        implicit_matches_im2col::<f64>(1e-12);
    }

    /// Weights past [`implicit_max_weights`] take the im2col forms, whose buffers come from
    /// this thread's spares: the three primitives match the implicit kernels, also right
    /// after a call that left NaNs in those spares.
    #[test]
    fn large_weights_take_im2col_with_the_same_results() {
        let opts = Conv2dOptions { padding: (1, 1), stride: (2, 2), ..Conv2dOptions::default() };
        let geo = Geometry::new([2, 384, 5, 5], [352, 384, 3, 3], opts);
        assert!(weights_too_large(&geo) && !winograd::applies::<f32>(&geo));
        let values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|i| ((i * 7919 % 211) as f32 / 105.0 - 1.0) * scale).collect()
        };
        let (x, weight) = (values(2 * 384 * 25, 1.0), values(352 * 384 * 9, 0.05));
        let gy = values(2 * 352 * 9, 0.5);
        // NaNs through every buffer first: none may reach the next results.
        let nan = vec![f32::NAN; x.len()];
        let _ =
            (conv(&nan, &weight, &geo), conv_transpose(&vec![f32::NAN; gy.len()], &weight, &geo));
        let _ = conv_weight(&nan, &gy, &geo);
        let (y, dx, dw) = (
            conv(&x, &weight, &geo),
            conv_transpose(&gy, &weight, &geo),
            conv_weight(&x, &gy, &geo),
        );
        if !crate::implicit_gemm::available() {
            return;
        }
        let mut implicit_y = vec![0.0; y.len()];
        implicit::conv(&x, &weight, &geo, ChannelBias::none(), &images(&mut implicit_y, &geo));
        let mut implicit_dx = vec![0.0; dx.len()];
        implicit::conv_transpose(&gy, &weight, &geo, &images(&mut implicit_dx, &geo));
        let implicit_dw = implicit::conv_weight(&x, &gy, &geo);
        for (name, got, want) in
            [("y", &y, &implicit_y), ("dx", &dx, &implicit_dx), ("dw", &dw, &implicit_dw)]
        {
            let largest = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * largest, "{name}[{i}]: {a} vs {b}");
            }
        }
    }

    /// Depthwise convolutions (one input channel per group; one or more outputs each) at
    /// several strides, paddings, dilations and kernel shapes, small and large enough for
    /// threads, against im2col over the same groups.
    #[test]
    fn depthwise_sums_match_im2col() {
        fn check<T: ImplicitGemm + crate::testing::Convert>(tolerance: f64) {
            let cases = [
                // (input [N, C, H, W], outputs per channel, kernel, stride, padding, dilation)
                ([2, 3, 7, 9], 1, (3, 3), (1, 1), (1, 1), (1, 1)),
                ([1, 4, 10, 11], 2, (3, 2), (2, 1), (0, 1), (1, 1)),
                ([3, 2, 9, 8], 1, (3, 3), (2, 2), (2, 1), (2, 1)),
                ([2, 5, 6, 6], 3, (1, 1), (1, 1), (0, 0), (1, 1)),
                ([1, 3, 5, 5], 1, (5, 5), (1, 1), (4, 4), (1, 1)),
                ([2, 3, 6, 7], 2, (1, 1), (1, 1), (1, 1), (1, 1)),
                ([2, 3, 9, 6], 1, (3, 1), (1, 1), (3, 0), (1, 1)),
                ([1, 4, 11, 12], 1, (3, 3), (1, 1), (1, 2), (2, 2)),
                // Taps that meet no column of a one-pixel-wide image (rows they do meet).
                ([2, 3, 5, 1], 1, (3, 5), (2, 1), (1, 2), (1, 1)),
                ([8, 32, 20, 24], 1, (3, 3), (1, 1), (1, 1), (1, 1)),
                ([4, 16, 17, 15], 2, (5, 5), (2, 2), (2, 2), (1, 1)),
                // Strides other than 2, a stride with dilation, strides in one direction,
                // padding past the kernel's reach, phases no tap reads, and a batch large
                // enough for threads at stride 2.
                ([2, 3, 11, 10], 1, (3, 3), (3, 3), (1, 1), (1, 1)),
                ([1, 2, 12, 13], 2, (3, 3), (2, 2), (2, 2), (2, 2)),
                ([2, 2, 9, 10], 1, (2, 3), (1, 2), (0, 1), (1, 1)),
                ([1, 3, 7, 7], 1, (3, 3), (2, 2), (3, 3), (1, 1)),
                ([1, 2, 5, 4], 1, (1, 1), (2, 3), (0, 0), (1, 1)),
                ([32, 8, 16, 16], 1, (3, 3), (2, 2), (1, 1), (1, 1)),
                // Rows of several vectors of column pairs, even and odd.
                ([2, 3, 9, 70], 1, (3, 3), (2, 2), (1, 1), (1, 1)),
                ([2, 3, 8, 71], 2, (3, 3), (2, 2), (0, 1), (1, 1)),
            ];
            for ([n, c, h, w], mult, (kh, kw), stride, padding, dilation) in cases {
                let opts = Conv2dOptions { stride, padding, dilation, groups: c };
                let geo = Geometry::new([n, c, h, w], [c * mult, 1, kh, kw], opts);
                assert!(depthwise::applies(&geo));
                let mut next = crate::testing::uniform((n * c * h * w) as u64);
                let mut values =
                    |len: usize| -> Vec<T> { (0..len).map(|_| T::from_f64(next())).collect() };
                let (x, weight) = (values(n * c * h * w), values(geo.o * kh * kw));
                let (gy, bias) = (values(n * geo.o * geo.ho * geo.wo), values(geo.o));
                let close = |got: &[T], want: &[T], name: &str| {
                    assert_close(got, want, tolerance, &format!("{name} {geo:?}"))
                };
                let mut want = vec![T::ZERO; gy.len()];
                let with_bias = ChannelBias { values: Some(&bias[..]), plane: geo.ho * geo.wo };
                conv_im2col(&x, &weight, &geo, with_bias, &images(&mut want, &geo));
                close(&conv_with_bias(&x, &weight, &bias, &geo), &want, "y");
                let mut want = vec![T::ZERO; x.len()];
                conv_transpose_im2col(&gy, &weight, &geo, &images(&mut want, &geo));
                close(&conv_transpose(&gy, &weight, &geo), &want, "dx");
                close(&conv_weight(&x, &gy, &geo), &conv_weight_im2col(&x, &gy, &geo), "dw");
            }
            // Groups of several input channels, and one group, take the other forms.
            let grouped = Conv2dOptions { groups: 2, ..Conv2dOptions::default() };
            assert!(!depthwise::applies(&Geometry::new([1, 4, 5, 5], [4, 2, 3, 3], grouped)));
            let single = Conv2dOptions::default();
            assert!(!depthwise::applies(&Geometry::new([1, 1, 5, 5], [4, 1, 3, 3], single)));
        }
        // The weight gradient sums up to 3,840 products per element in another order.
        check::<f32>(1e-4);
        check::<f64>(1e-12);
    }

    /// An infinity or a NaN in a depthwise convolution's input gives the weight gradient the
    /// windows give (the wide rows' dropped columns read it too, multiplied by zero), at
    /// stride 1 and 2, with finite taps left as they were.
    #[test]
    fn depthwise_weight_gradient_of_non_finite_inputs() {
        for stride in [1, 2] {
            for bad in [f32::INFINITY, f32::NAN] {
                let opts = Conv2dOptions {
                    stride: (stride, stride),
                    padding: (1, 1),
                    groups: 4,
                    ..Default::default()
                };
                let geo = Geometry::new([2, 4, 12, 12], [4, 1, 3, 3], opts);
                assert!(depthwise::applies(&geo));
                let mut x = uniform(3, 2 * 4 * 144);
                // Channel 1 of the second image, first and last columns of two rows.
                for at in [(4 + 1) * 144 + 2 * 12, (4 + 1) * 144 + 7 * 12 + 11] {
                    x[at] = bad;
                }
                let gy = uniform(4, 2 * 4 * geo.ho * geo.wo);
                let want = conv_weight_im2col(&x, &gy, &geo);
                let got = conv_weight(&x, &gy, &geo);
                assert!(want.iter().any(|v| v.is_finite()) && want.iter().any(|v| !v.is_finite()));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let same = if w.is_finite() {
                        (g - w).abs() <= 1e-4
                    } else {
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
                    };
                    assert!(same, "stride {stride}, {bad}: tap {i}: {g} vs im2col {w}");
                }
            }
        }
    }

    /// 1 x 1 convolutions over planes of 64 pixels or more run as products on each image's
    /// planes: the three primitives give what the im2col forms give, in f32 and f64, with
    /// a batch that leaves the last task short.
    #[test]
    fn pointwise_products_match_im2col() {
        fn check<T: ImplicitGemm + crate::testing::Convert>(tolerance: f64) {
            let geo = Geometry::new([5, 24, 16, 20], [40, 24, 1, 1], Conv2dOptions::default());
            assert!(pointwise::applies(&geo));
            let values = |n: usize, scale: f64| -> Vec<T> {
                (0..n)
                    .map(|i| T::from_f64(((i * 7919 % 211) as f64 / 105.0 - 1.0) * scale))
                    .collect()
            };
            let (x, weight, gy) =
                (values(5 * 24 * 320, 1.0), values(40 * 24, 0.3), values(5 * 40 * 320, 0.5));
            let close =
                |got: &[T], want: &[T], name: &str| assert_close(got, want, tolerance, name);
            let mut want = vec![T::ZERO; 5 * 40 * 320];
            conv_im2col(&x, &weight, &geo, ChannelBias::none(), &images(&mut want, &geo));
            close(&conv(&x, &weight, &geo), &want, "y");
            let mut want = vec![T::ZERO; x.len()];
            conv_transpose_im2col(&gy, &weight, &geo, &images(&mut want, &geo));
            close(&conv_transpose(&gy, &weight, &geo), &want, "dx");
            close(&conv_weight(&x, &gy, &geo), &conv_weight_im2col(&x, &gy, &geo), "dw");
            // Strides, padding and small planes take the other forms.
            let geo = Geometry::new;
            for opts in [
                Conv2dOptions { stride: (2, 2), ..Conv2dOptions::default() },
                Conv2dOptions { padding: (1, 1), ..Conv2dOptions::default() },
            ] {
                assert!(!pointwise::applies(&geo([1, 8, 32, 32], [8, 8, 1, 1], opts)));
            }
            assert!(!pointwise::applies(&geo(
                [1, 8, 7, 7],
                [8, 8, 1, 1],
                Conv2dOptions::default()
            )));
        }
        // The weight gradient sums 1,600 products per element: f32 rounding differs with
        // the order by up to a few 1e-5.
        check::<f32>(2e-4);
        check::<f64>(1e-12);
    }

    /// A 4 x 4 kernel over a 1 x 1 output (a generator's first transposed convolution):
    /// the implicit input gradient would do sixteen times the work, so `conv_transpose`
    /// takes the im2col form, which must give what the implicit one gives.
    #[test]
    fn a_wide_kernel_over_a_tiny_output_takes_im2col_with_the_same_result() {
        let geo = Geometry::new([3, 8, 4, 4], [40, 8, 4, 4], Conv2dOptions::default());
        assert_eq!((geo.ho, geo.wo), (1, 1));
        assert!(implicit::transpose_work_ratio(&geo) > TRANSPOSE_WORK_RATIO);
        let gy: Vec<f64> = (0..3 * 40).map(|i| (i as f64 * 0.37).sin()).collect();
        let weight: Vec<f64> = (0..40 * 8 * 16).map(|i| (i as f64 * 0.11).cos()).collect();
        let got = conv_transpose(&gy, &weight, &geo);
        // dx[n, c, i, j] = sum_o gy[n, o] w[o, c, i, j]
        for (at, &value) in got.iter().enumerate() {
            let (n, rest) = (at / 128, at % 128);
            let want: f64 = (0..40).map(|o| gy[n * 40 + o] * weight[o * 128 + rest]).sum();
            assert!((value - want).abs() < 1e-12, "[{at}] {value} vs {want}");
        }
        if crate::implicit_gemm::available() {
            let mut implicit = vec![0.0; got.len()];
            implicit::conv_transpose(&gy, &weight, &geo, &images(&mut implicit, &geo));
            assert!(got.iter().zip(&implicit).all(|(a, b)| (a - b).abs() < 1e-12));
        }
    }
}
