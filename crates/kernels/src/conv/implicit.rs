//! Convolutions without im2col: the three primitives as implicit GEMMs that read their
//! windows straight from a zero-padded copy of each image.
//!
//! With stride 1, the input pixels under kernel tap `(c, ki, kj)` for one output row are
//! consecutive in the padded image, so every row of the GEMM's B operand is a slice of it
//! at an offset that depends only on the tap. Padding a 16 x 14 x 14 image costs about
//! 5,000 writes where im2col writes 78,400. With strides `(sh, sw)`, the copy stores each
//! padded plane as its `sh x sw` phases (pixels `(a + sh r, q + sw c)` for phase `(a, q)`),
//! and the pixels under a tap are consecutive in one phase, row after row: the forward
//! convolution and the weight gradient run the same way at any stride, and several output
//! rows can be one product (with the few columns between two rows computed and dropped). The input gradient of a strided convolution
//! splits the input into its `sh x sw` phases (pixels `(a + sh u, b + sw v)` for phase
//! `(a, b)`): each phase is reached by a fixed subset of the taps, and is a stride-1
//! correlation of the output gradient with them, whose rows are scattered back into
//! place. Deep products with many channels are computed the other way round
//! (`*_by_pixel`): the padded image is the gathered A, one row per pixel, the weights are
//! B, and the pixel-major result is transposed to planes.

use super::padded::{Padded, Window, tap_offsets};
use super::{ChannelBias, Geometry, Images, Split, for_chunks, image_batches, sum_in_image_order};
use crate::implicit_gemm::{
    B_SLACK, ImplicitGemm, Lhs, Operands, PackedLhs, available, implicit_gemm, lanes,
};
use crate::short_copy::copy_row;

/// Whether the implicit kernels run on this CPU (for every geometry: any stride, padding,
/// dilation and groups).
pub(super) fn applies() -> bool {
    available()
}

/// How many times the multiply-adds of the convolution itself the implicit input gradient
/// does: it correlates the whole zero-padded output gradient with the kernel's taps that
/// reach each phase, and where the kernel is wide against the output (a 4 x 4 kernel over
/// a 1 x 1 output, as in a generator's first transposed convolution) most of those
/// products are with the padding.
pub(super) fn transpose_work_ratio(geo: &Geometry) -> f64 {
    let own = geo.ho * geo.wo * geo.kh * geo.kw;
    let implicit: usize = if geo.opts.stride == (1, 1) {
        geo.h * geo.w * geo.kh * geo.kw
    } else {
        Phase::all(geo).iter().map(|p| p.rows * p.cols * p.tap_rows.len() * p.tap_cols.len()).sum()
    };
    implicit as f64 / own.max(1) as f64
}

/// What a convolution's implicit products share across images: the packed weights (A) and
/// the offsets of B's rows in a padded image.
type FixedOperands<T> = (PackedLhs<T>, Vec<usize>);

/// Size of the padded input that the output rows `0..ho` read from.
fn input_window(geo: &Geometry) -> (usize, usize) {
    let ((dh, dw), (sh, sw)) = (geo.opts.dilation, geo.opts.stride);
    ((geo.ho - 1) * sh + (geo.kh - 1) * dh + 1, (geo.wo - 1) * sw + (geo.kw - 1) * dw + 1)
}

/// The padded input of the forward convolution and the weight gradient: its window, and a
/// buffer of that many images for one task.
fn padded_input<T: ImplicitGemm>(geo: &Geometry) -> (Window, impl Fn(usize) -> Padded<T> + Sync) {
    let size = input_window(geo);
    let (ph, pw) = geo.opts.padding;
    let phases = geo.opts.stride;
    let new = move |images: usize| {
        Padded::new(images * geo.c, (geo.h, geo.w), size, phases, (ph as isize, pw as isize))
    };
    (Window::new(size, phases), new)
}

/// Shared dimension that a product over pixels should reach: images whose outputs have
/// fewer pixels go into one product together (a 4 x 4 output is 16 pixels an image), so the
/// kernel's passes over the other operand, or the weight gradient's reads and writes of its
/// result, are spread over enough multiply-adds.
const PIXELS_PER_PRODUCT: usize = 256;

/// Images per product when each has `pixels` pixels (see [`PIXELS_PER_PRODUCT`]). A
/// function of the geometry alone, so sums run in the same order at every thread count.
fn images_per_product(pixels: usize) -> usize {
    PIXELS_PER_PRODUCT.div_ceil(pixels.max(1))
}

/// `offsets` (of one image's pixels in a padded copy) repeated for `images` images placed
/// `stride` elements apart.
fn for_images(offsets: &[usize], images: usize, stride: usize) -> Vec<usize> {
    (0..images).flat_map(|i| offsets.iter().map(move |&o| i * stride + o)).collect()
}

/// Offsets in the padded input of the first tap of each output pixel, row by row.
fn output_pixels(geo: &Geometry, window: &Window) -> Vec<usize> {
    let (sh, sw) = geo.opts.stride;
    (0..geo.ho).flat_map(|oh| (0..geo.wo).map(move |ow| window.at(0, oh * sh, ow * sw))).collect()
}

/// Whether a product of shared dimension `depth`, whose C can be laid out with `channels`
/// or with `row_width` columns (image rows), is better computed with the channels as
/// columns. The kernel computes whole vectors: a 14-pixel row uses 14 of 16 f32 lanes of
/// AVX-512 (and 14 of 16 in two AVX2 vectors), 32 channels all of them. Pixels as rows of C cost a transposition of the result and a
/// gathered (not packed) left operand, so ties stay with the image rows, and so do short
/// products, where those costs are not repaid (measured on the CNN's two layers: depth 25
/// ran 1.5x slower with channels as columns, depth 400 ran 8% faster).
fn channels_as_columns<T: ImplicitGemm>(channels: usize, row_width: usize, depth: usize) -> bool {
    let lanes = lanes::<T>();
    let used = |n: usize| n as f64 / (n.div_ceil(lanes) * lanes) as f64;
    depth >= 64 && used(channels) > used(row_width)
}

/// The offsets of the `rows x cols` pixels of a plane stored `stride` elements per row.
fn pixel_offsets(rows: usize, cols: usize, stride: usize) -> Vec<usize> {
    (0..rows).flat_map(|r| (0..cols).map(move |c| r * stride + c)).collect()
}

/// The padded upstream gradient that the input gradient reads (a full correlation): its
/// size `(hq, wq)` and where the `ho x wo` planes sit in it (`top`, `left`; negative values
/// crop).
fn gradient_window(geo: &Geometry) -> ((usize, usize), isize, isize) {
    let (dh, dw) = geo.opts.dilation;
    let size = (geo.h + (geo.kh - 1) * dh, geo.w + (geo.kw - 1) * dw);
    let top = ((geo.kh - 1) * dh) as isize - geo.opts.padding.0 as isize;
    let left = ((geo.kw - 1) * dw) as isize - geo.opts.padding.1 as isize;
    (size, top, left)
}

/// `y = conv(x, w)`, one GEMM per output row: `y[o, oh, :] = sum_t w[o, t] xpad[t + oh]`
/// (`oh` standing for its row's offset; or, for deep products with many channels,
/// [`conv_by_pixel`]).
pub(super) fn conv<T: ImplicitGemm>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) {
    if channels_as_columns::<T>(geo.og(), geo.wo, geo.k()) {
        return conv_by_pixel(x, weight, geo, bias, y);
    }
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let in_img = geo.c * geo.h * geo.w;
    let (window, new_pad) = padded_input(geo);
    let groups: Vec<FixedOperands<T>> = (0..geo.opts.groups)
        .map(|g| {
            let packed = PackedLhs::new(og, k, |o, t| weight[(g * og + o) * k + t]);
            (packed, tap_offsets(geo, g * geo.cg(), &window))
        })
        .collect();
    let rows = OutputRows::new::<T>(geo, &window);
    for_chunks(geo, Split::PerThread, |first, count| {
        let mut pad = new_pad(1);
        let mut product = rows.buffer::<T>(og);
        for img in first..first + count {
            let xpad = pad.of(&x[img * in_img..(img + 1) * in_img]);
            let y_img = y.take(img, 1);
            for (g, (packed, b_rows)) in groups.iter().enumerate() {
                let ops = Operands::new(Lhs::Packed(packed), xpad, b_rows);
                let y_group = &mut y_img[g * og * hw..(g + 1) * og * hw];
                for (oh, count) in rows.groups() {
                    rows.product(&ops, (oh, count), &mut product, y_group);
                }
            }
            bias.add_to(y_img);
        }
    });
}

/// Output rows computed by one product of the rows form. Consecutive output rows of an
/// image are `run` elements apart in every tap's phase of the padded copy, so a group of
/// them is one product of `(count - 1) * run + wo` columns, whose `run - wo` columns between
/// two rows are pixels past the row's end, computed and dropped. A product over many
/// columns reads each packed weight for many pixels: weights larger than L1, read once
/// per output row (16 pixels of a 32 x 32 image at stride 2), came from L2 for every 16
/// multiply-adds. Weights that fit in L1 keep one product per row, which needs no copy.
struct OutputRows {
    ho: usize,
    wo: usize,
    /// Elements from one output row's pixels to the next's in a tap's phase.
    run: usize,
    /// Output rows per product.
    per_product: usize,
}

/// Columns a product of the rows form should reach when its weights do not fit in L1:
/// enough that each packed weight, streamed from L2 once per product, meets many pixels,
/// and few enough that a product's result stays in L2 for its copy into place.
const COLUMNS_PER_PRODUCT: usize = 512;

/// Bytes of packed weights that stay in the L1 data cache from one output row's product
/// to the next: two thirds of it (32 KB of 48).
fn weights_in_l1() -> usize {
    crate::cache::caches().l1_data * 2 / 3
}

impl OutputRows {
    fn new<T>(geo: &Geometry, window: &Window) -> Self {
        let run = window.phase_len;
        let weights = geo.og() * geo.k() * std::mem::size_of::<T>();
        let per_product = if run == geo.wo || weights > weights_in_l1() {
            COLUMNS_PER_PRODUCT.div_ceil(run).clamp(1, geo.ho.max(1))
        } else {
            1
        };
        OutputRows { ho: geo.ho, wo: geo.wo, run, per_product }
    }

    /// Whether the products write the output in place: one row each, or rows whose
    /// columns are exactly the output's pixels.
    fn in_place(&self) -> bool {
        self.per_product == 1 || self.run == self.wo
    }

    /// A buffer for one product's result over `channels` rows (empty when the products
    /// write in place).
    fn buffer<T: ImplicitGemm>(&self, channels: usize) -> Vec<T> {
        if self.in_place() {
            Vec::new()
        } else {
            vec![T::ZERO; channels * self.per_product * self.run]
        }
    }

    /// The groups of rows: first row and number of rows.
    fn groups(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (ho, per) = (self.ho, self.per_product);
        (0..ho).step_by(per).map(move |oh| (oh, per.min(ho - oh)))
    }

    /// Output rows `oh..oh + count` of every channel of `y` (`[channels, ho, wo]`) from the
    /// product of `ops` (whose B is the padded copy), through `buffer` unless in place.
    fn product<T: ImplicitGemm>(
        &self,
        ops: &Operands<'_, T>,
        (oh, count): (usize, usize),
        buffer: &mut [T],
        y: &mut [T],
    ) {
        let (run, wo, plane) = (self.run, self.wo, self.ho * self.wo);
        let columns = (count - 1) * run + wo;
        if self.in_place() {
            implicit_gemm(ops, oh * run, columns, &mut y[oh * wo..], plane, false);
            return;
        }
        let ldc = self.per_product * run;
        implicit_gemm(ops, oh * run, columns, buffer, ldc, false);
        for (product, plane) in buffer.chunks_exact(ldc).zip(y.chunks_exact_mut(plane)) {
            for r in 0..count {
                let to = (oh + r) * wo;
                copy_row(&mut plane[to..to + wo], &product[r * run..r * run + wo]);
            }
        }
    }
}

/// `y = conv(x, w)` with the image's pixels as rows of one GEMM per image and group:
/// `yT[p, o] = sum_t xpad[p + t] wT[t, o]`.
fn conv_by_pixel<T: ImplicitGemm>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) {
    let (og, k) = (geo.og(), geo.k());
    let in_img = geo.c * geo.h * geo.w;
    let (window, new_pad) = padded_input(geo);
    let pixels = output_pixels(geo, &window);
    let b_rows: Vec<usize> = (0..k).map(|t| t * og).collect();
    let groups: Vec<(Vec<T>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            // The group's weights, `og x k`, transposed in tiles: element by element, every
            // write lands a whole row of B (`og` elements) past the last, and for a deep
            // layer (2 MB of weights) that took a fifth of the forward's time.
            let mut w_t = vec![T::ZERO; k * og + B_SLACK];
            T::transpose(&weight[g * og * k..(g + 1) * og * k], og, k, &mut w_t[..k * og]);
            (w_t, tap_offsets(geo, g * geo.cg(), &window))
        })
        .collect();
    let product = PixelProduct {
        pixels: &pixels,
        image_stride: geo.c * window.plane(),
        b_rows: &b_rows,
        groups: &groups,
        channels: og,
    };
    product.run(geo, (x, in_img), y, bias, new_pad);
}

/// The products of the by-pixel forms, one per group and batch of images (see
/// [`images_per_product`]): the images' padded copies are the gathered A (a row per pixel,
/// a column per entry of the group's offsets), the group's matrix is B (`channels`
/// columns), and the pixel-major result is transposed into each image's output planes.
struct PixelProduct<'a, T> {
    /// Offset of each pixel's window in one image's padded copy.
    pixels: &'a [usize],
    /// Elements between two images' padded copies.
    image_stride: usize,
    /// Offset of each row of B.
    b_rows: &'a [usize],
    /// Per group: B, and the offsets of A's columns.
    groups: &'a [(Vec<T>, Vec<usize>)],
    channels: usize,
}

impl<T: ImplicitGemm> PixelProduct<'_, T> {
    /// Runs over every image of `input` (`in_img` elements each) into `output` (plus `bias`
    /// on each output channel), padding the images with a buffer from `new_pad` (of that
    /// many images; one per task).
    fn run(
        &self,
        geo: &Geometry,
        (input, in_img): (&[T], usize),
        output: &Images<'_, T>,
        bias: ChannelBias<'_, T>,
        new_pad: impl Fn(usize) -> Padded<T> + Sync,
    ) {
        let (channels, plane) = (self.channels, self.pixels.len());
        let batch = images_per_product(plane);
        let rows = for_images(self.pixels, batch, self.image_stride);
        let out_img = self.groups.len() * channels * plane;
        for_chunks(geo, Split::PerThread, |first, count| {
            let mut pad = new_pad(batch.min(count));
            let mut by_pixel = vec![T::ZERO; batch.min(count) * plane * channels];
            for (start, images) in image_batches(first, count, batch) {
                let a = pad.of(&input[start * in_img..(start + images) * in_img]);
                let outputs = output.take(start, images);
                let by_pixel = &mut by_pixel[..images * plane * channels];
                for (g, (b, offsets)) in self.groups.iter().enumerate() {
                    let rows = &rows[..images * plane];
                    let ops =
                        Operands::new(Lhs::Gathered { a, rows, cols: offsets }, b, self.b_rows);
                    implicit_gemm(&ops, 0, channels, by_pixel, channels, false);
                    // Each image's [pixel][channel] block into its group's channel planes.
                    for (image, block) in by_pixel.chunks_exact(plane * channels).enumerate() {
                        let at = image * out_img + g * channels * plane;
                        T::transpose(
                            block,
                            plane,
                            channels,
                            &mut outputs[at..at + channels * plane],
                        );
                    }
                }
                bias.add_to(outputs);
            }
        });
    }
}

/// `dx = conv_transpose(gy, w)`: the full correlation of the padded `gy` with the flipped
/// kernel, `dx[c, ih, :] = sum_(o, t) w[o, c, flip(t)] gypad[o, t + ih]` (or, for deep
/// products with many channels, [`conv_transpose_by_pixel`]).
pub(super) fn conv_transpose<T: ImplicitGemm>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) {
    if geo.opts.stride != (1, 1) {
        return conv_transpose_strided(gy, weight, geo, dx);
    }
    let (og, cg, hw) = (geo.og(), geo.cg(), geo.ho * geo.wo);
    let out_img = geo.o * hw;
    let (dh, dw) = geo.opts.dilation;
    let ((hq, wq), top, left) = gradient_window(geo);
    let taps = geo.kh * geo.kw;
    if channels_as_columns::<T>(cg, geo.w, og * taps) {
        return conv_transpose_by_pixel(gy, weight, geo, dx);
    }
    let groups: Vec<FixedOperands<T>> = (0..geo.opts.groups)
        .map(|g| {
            // A(c, (o, ki, kj)) = w[o, c, kh - 1 - ki, kw - 1 - kj]: the flipped kernel.
            let packed = PackedLhs::new(cg, og * taps, |c, p| {
                let (o, ki, kj) = (g * og + p / taps, p % taps / geo.kw, p % geo.kw);
                weight[(o * cg + c) * taps + (geo.kh - 1 - ki) * geo.kw + (geo.kw - 1 - kj)]
            });
            let mut b_rows = Vec::with_capacity(og * taps);
            for o in g * og..(g + 1) * og {
                for ki in 0..geo.kh {
                    for kj in 0..geo.kw {
                        b_rows.push(o * hq * wq + ki * dh * wq + kj * dw);
                    }
                }
            }
            (packed, b_rows)
        })
        .collect();
    for_chunks(geo, Split::PerThread, |first, count| {
        let mut pad = Padded::new(geo.o, (geo.ho, geo.wo), (hq, wq), (1, 1), (top, left));
        for img in first..first + count {
            let gypad = pad.of(&gy[img * out_img..(img + 1) * out_img]);
            let dx_img = dx.take(img, 1);
            for (g, (packed, b_rows)) in groups.iter().enumerate() {
                let ops = Operands::new(Lhs::Packed(packed), gypad, b_rows);
                for ih in 0..geo.h {
                    let c = &mut dx_img[g * cg * geo.h * geo.w + ih * geo.w..];
                    implicit_gemm(&ops, ih * wq, geo.w, c, geo.h * geo.w, false);
                }
            }
        }
    });
}

/// One phase of a strided convolution's input: the input pixels `(a + sh u, b + sw v)`
/// for `u < rows`, `v < cols`, and the taps `(ki, kj)` that reach them, with the output
/// pixel each reads, `(u + row_shift, v + col_shift)`.
struct Phase {
    origin: (usize, usize),
    rows: usize,
    cols: usize,
    /// `(ki, row_shift)` of each tap row that reaches the phase's rows.
    tap_rows: Vec<(usize, isize)>,
    /// `(kj, col_shift)` of each tap column that reaches the phase's columns.
    tap_cols: Vec<(usize, isize)>,
}

impl Phase {
    /// The `sh x sw` phases of `geo`'s input, row phase by row phase.
    fn all(geo: &Geometry) -> Vec<Phase> {
        let ((sh, sw), (dh, dw), (ph, pw)) = (geo.opts.stride, geo.opts.dilation, geo.opts.padding);
        // Input index `origin + s * t` meets tap `k` at output `t + shift` when
        // `origin + pad - k * d` is a multiple of `s`.
        let reach = |origin: usize, pad: usize, taps: usize, d: usize, s: usize| {
            (0..taps)
                .filter_map(|k| {
                    let at = origin as isize + pad as isize - (k * d) as isize;
                    (at.rem_euclid(s as isize) == 0).then(|| (k, at.div_euclid(s as isize)))
                })
                .collect::<Vec<_>>()
        };
        let mut phases = Vec::with_capacity(sh * sw);
        for a in 0..sh.min(geo.h) {
            for b in 0..sw.min(geo.w) {
                phases.push(Phase {
                    origin: (a, b),
                    rows: (geo.h - a).div_ceil(sh),
                    cols: (geo.w - b).div_ceil(sw),
                    tap_rows: reach(a, ph, geo.kh, dh, sh),
                    tap_cols: reach(b, pw, geo.kw, dw, sw),
                });
            }
        }
        phases
    }
}

/// How one phase's input gradient is computed (for one group).
enum PhaseProduct<T> {
    /// One GEMM per row of the phase, the group's channels as rows of C (A: the weights
    /// of the phase's taps, packed; B: the padded gradient at the offsets).
    Rows { packed: PackedLhs<T>, b_rows: Vec<usize> },
    /// One GEMM for the whole phase, its pixels as rows of C and the channels as columns
    /// (A: the padded gradient gathered at `cols` from each pixel's offset in `rows`; B:
    /// the weights of the phase's taps, `[(o, tap), c]`), transposed into planes after.
    Pixels { rows: Vec<usize>, cols: Vec<usize>, b: Vec<T>, b_rows: Vec<usize> },
}

/// `dx = conv_transpose(gy, w)` for a strided convolution, phase by phase (see the module
/// comment): `dx[c, a + sh u, b + sw v] = sum_(o, ki, kj) w[o, c, ki, kj] gypad[o, u + δ,
/// v + ε]` over the phase's taps, into a buffer of the phase's planes whose rows are then
/// scattered into the image. A phase narrower than the vectors (a 4-pixel row of an 8 x 8
/// input at stride 2) is computed with the channels as columns instead of its rows.
fn conv_transpose_strided<T: ImplicitGemm>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) {
    let (og, cg, taps) = (geo.og(), geo.cg(), geo.kh * geo.kw);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * geo.ho * geo.wo);
    let (sh, sw) = geo.opts.stride;
    let phases = Phase::all(geo);
    // The output gradient, padded so that every shift of every phase reads inside it:
    // `top` rows and `left` columns before it, and room after it for the last rows.
    let most_negative =
        |shifts: &mut dyn Iterator<Item = isize>| (-shifts.min().unwrap_or(0)).max(0);
    let top = most_negative(&mut phases.iter().flat_map(|p| p.tap_rows.iter().map(|t| t.1)));
    let left = most_negative(&mut phases.iter().flat_map(|p| p.tap_cols.iter().map(|t| t.1)));
    let reach = |extent: usize, shifts: &mut dyn Iterator<Item = isize>, before: isize| {
        shifts.map(|shift| (extent as isize + shift + before) as usize).max().unwrap_or(0)
    };
    let hq = phases
        .iter()
        .map(|p| reach(p.rows, &mut p.tap_rows.iter().map(|t| t.1), top))
        .max()
        .unwrap_or(0)
        .max(geo.ho + top as usize);
    let wq = phases
        .iter()
        .map(|p| reach(p.cols, &mut p.tap_cols.iter().map(|t| t.1), left))
        .max()
        .unwrap_or(0)
        .max(geo.wo + left as usize);
    // Offset in the padded gradient of what tap `(di, dj)` of channel `o` reads first.
    let offset = |o: usize, di: isize, dj: isize| {
        o * hq * wq + (di + top) as usize * wq + (dj + left) as usize
    };
    let largest = phases.iter().map(|p| p.rows * p.cols).max().unwrap_or(0);
    let (pixel_batch, image_stride) = (images_per_product(largest), geo.o * hq * wq);
    // Per group and phase: the operands of the phase's taps `reached`, `(ki, kj, δ, ε)`.
    let products: Vec<Vec<Option<PhaseProduct<T>>>> = (0..geo.opts.groups)
        .map(|g| {
            phases
                .iter()
                .map(|phase| {
                    let reached: Vec<(usize, usize, isize, isize)> = phase
                        .tap_rows
                        .iter()
                        .flat_map(|&(ki, di)| {
                            phase.tap_cols.iter().map(move |&(kj, dj)| (ki, kj, di, dj))
                        })
                        .collect();
                    if reached.is_empty() {
                        return None;
                    }
                    let per_o = reached.len();
                    let w_at = |o: usize, c: usize, r: usize| {
                        let (ki, kj, _, _) = reached[r];
                        weight[((g * og + o) * cg + c) * taps + ki * geo.kw + kj]
                    };
                    let offsets = (g * og..(g + 1) * og)
                        .flat_map(|o| reached.iter().map(move |&(_, _, di, dj)| offset(o, di, dj)))
                        .collect();
                    Some(if channels_as_columns::<T>(cg, phase.cols, og * per_o) {
                        let mut b = vec![T::ZERO; og * per_o * cg + B_SLACK];
                        for (p, row) in b.chunks_exact_mut(cg).take(og * per_o).enumerate() {
                            for (c, v) in row.iter_mut().enumerate() {
                                *v = w_at(p / per_o, c, p % per_o);
                            }
                        }
                        let b_rows = (0..og * per_o).map(|p| p * cg).collect();
                        let pixels = pixel_offsets(phase.rows, phase.cols, wq);
                        let rows = for_images(&pixels, pixel_batch, image_stride);
                        PhaseProduct::Pixels { rows, cols: offsets, b, b_rows }
                    } else {
                        let packed =
                            PackedLhs::new(cg, og * per_o, |c, p| w_at(p / per_o, c, p % per_o));
                        PhaseProduct::Rows { packed, b_rows: offsets }
                    })
                })
                .collect()
        })
        .collect();
    // Images share a product when their phases run pixel by pixel.
    let by_pixel =
        products.iter().flatten().any(|p| matches!(p, Some(PhaseProduct::Pixels { .. })));
    let batch = if by_pixel { pixel_batch } else { 1 };
    for_chunks(geo, Split::PerThread, |first, count| {
        let batch = batch.min(count);
        let mut pad = Padded::new(batch * geo.o, (geo.ho, geo.wo), (hq, wq), (1, 1), (top, left));
        let mut phase_out = vec![T::ZERO; cg * largest];
        let mut pixel_major = vec![T::ZERO; if by_pixel { batch * cg * largest } else { 0 }];
        for (start, images) in image_batches(first, count, batch) {
            let gypad = pad.of(&gy[start * out_img..(start + images) * out_img]);
            let dx_images = dx.take(start, images);
            for (g, group) in products.iter().enumerate() {
                for (phase, product) in phases.iter().zip(group) {
                    let plane = phase.rows * phase.cols;
                    if let Some(PhaseProduct::Pixels { rows, cols, b, b_rows }) = product {
                        let rows = &rows[..images * plane];
                        let ops = Operands::new(Lhs::Gathered { a: gypad, rows, cols }, b, b_rows);
                        implicit_gemm(
                            &ops,
                            0,
                            cg,
                            &mut pixel_major[..images * cg * plane],
                            cg,
                            false,
                        );
                    }
                    for (image, dx_img) in dx_images.chunks_exact_mut(in_img).enumerate() {
                        let values = &mut phase_out[..cg * plane];
                        match product {
                            Some(PhaseProduct::Rows { packed, b_rows }) => {
                                let ops = Operands::new(Lhs::Packed(packed), gypad, b_rows);
                                for u in 0..phase.rows {
                                    let c = &mut values[u * phase.cols..];
                                    let b_offset = image * image_stride + u * wq;
                                    implicit_gemm(&ops, b_offset, phase.cols, c, plane, false);
                                }
                            }
                            Some(PhaseProduct::Pixels { .. }) => {
                                let block = &pixel_major[image * cg * plane..][..cg * plane];
                                T::transpose(block, plane, cg, values);
                            }
                            // No tap reaches these pixels: their gradient is zero.
                            None => values.fill(T::ZERO),
                        }
                        let dx_group = &mut dx_img[g * cg * geo.h * geo.w..][..cg * geo.h * geo.w];
                        let (a, b) = phase.origin;
                        for (c, rows) in values.chunks_exact(plane).enumerate() {
                            for (u, row) in rows.chunks_exact(phase.cols).enumerate() {
                                let start = c * geo.h * geo.w + (a + sh * u) * geo.w + b;
                                let dst = dx_group[start..].iter_mut().step_by(sw);
                                dst.zip(row).for_each(|(d, &v)| *d = v);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// `dx = conv_transpose(gy, w)` with the input's pixels as rows of one GEMM per image and
/// group: `dxT[p, c] = sum_(o, t) gypad[p + (o, t)] w[o, c, flip(t)]`.
fn conv_transpose_by_pixel<T: ImplicitGemm>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) {
    let (og, cg, hw) = (geo.og(), geo.cg(), geo.ho * geo.wo);
    let out_img = geo.o * hw;
    let (dh, dw) = geo.opts.dilation;
    let ((hq, wq), top, left) = gradient_window(geo);
    let taps = geo.kh * geo.kw;
    let pixels = pixel_offsets(geo.h, geo.w, wq);
    let b_rows: Vec<usize> = (0..og * taps).map(|p| p * cg).collect();
    let groups: Vec<(Vec<T>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            // B((o, ki, kj), c) = w[o, c, kh - 1 - ki, kw - 1 - kj]: the flipped kernel.
            let mut flipped = vec![T::ZERO; og * taps * cg + B_SLACK];
            let mut offsets = Vec::with_capacity(og * taps);
            for o in 0..og {
                for ki in 0..geo.kh {
                    for kj in 0..geo.kw {
                        let p = (o * geo.kh + ki) * geo.kw + kj;
                        for c in 0..cg {
                            let tap = (geo.kh - 1 - ki) * geo.kw + (geo.kw - 1 - kj);
                            flipped[p * cg + c] = weight[((g * og + o) * cg + c) * taps + tap];
                        }
                        offsets.push((g * og + o) * hq * wq + ki * dh * wq + kj * dw);
                    }
                }
            }
            (flipped, offsets)
        })
        .collect();
    let product = PixelProduct {
        pixels: &pixels,
        image_stride: geo.o * hq * wq,
        b_rows: &b_rows,
        groups: &groups,
        channels: cg,
    };
    let pad = |images| Padded::new(images * geo.o, (geo.ho, geo.wo), (hq, wq), (1, 1), (top, left));
    product.run(geo, (gy, out_img), dx, ChannelBias::none(), pad);
}

/// `dw = conv_weight(x, gy)`, as its transpose: `dwT[t, o] = sum_p xpad[t + p] gyT[p, o]`
/// over the output pixels `p`, accumulated over images.
pub(super) fn conv_weight<T: ImplicitGemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
    let (window, new_pad) = padded_input(geo);
    // The shared dimension runs over the pixels of a batch of images, image by image.
    let batch = images_per_product(hw);
    let a_cols = for_images(&output_pixels(geo, &window), batch, geo.c * window.plane());
    let groups: Vec<(Vec<usize>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            let b_rows = (0..batch * hw).map(|p| p * geo.o + g * og).collect();
            (tap_offsets(geo, g * geo.cg(), &window), b_rows)
        })
        .collect();
    let partials = std::sync::Mutex::new(Vec::new());
    for_chunks(geo, Split::Fixed, |first, count| {
        // [groups][k][og]
        let mut acc = vec![T::ZERO; geo.o * k];
        let mut gy_t = vec![T::ZERO; batch.min(count) * hw * geo.o + B_SLACK];
        let mut pad = new_pad(batch.min(count));
        for (start, images) in image_batches(first, count, batch) {
            let xpad = pad.of(&x[start * in_img..(start + images) * in_img]);
            for (i, gy_img) in
                gy[start * out_img..(start + images) * out_img].chunks_exact(out_img).enumerate()
            {
                T::transpose(gy_img, geo.o, hw, &mut gy_t[i * hw * geo.o..]);
            }
            let depth = images * hw;
            for (g, (a_rows, b_rows)) in groups.iter().enumerate() {
                let lhs = Lhs::Gathered { a: xpad, rows: a_rows, cols: &a_cols[..depth] };
                let ops = Operands::new(lhs, &gy_t, &b_rows[..depth]);
                implicit_gemm(&ops, 0, og, &mut acc[g * k * og..(g + 1) * k * og], og, true);
            }
        }
        partials.lock().expect("no task panicked").push((first, acc));
    });
    let total = sum_in_image_order(partials, geo.o * k);
    // [groups][k][og] -> [O, k], a transposition per group.
    let mut dw = vec![T::ZERO; geo.o * k];
    for (sums, dw_group) in total.chunks_exact(k * og).zip(dw.chunks_exact_mut(og * k)) {
        T::transpose(sums, k, og, dw_group);
    }
    dw
}
