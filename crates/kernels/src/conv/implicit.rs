//! Stride-1 convolutions without im2col: the three primitives as implicit GEMMs that read
//! their windows straight from a zero-padded copy of each image.
//!
//! With stride 1, the input pixels under kernel tap `(c, ki, kj)` for one output row are
//! consecutive in the padded image, so every row of the GEMM's B operand is a slice of it
//! at an offset that depends only on the tap. Padding a 16 x 14 x 14 image costs about
//! 5,000 writes where im2col writes 78,400. Deep products with many channels are computed
//! the other way round (`*_by_pixel`): the padded image is the gathered A, one row per
//! pixel, the weights are B, and the pixel-major result is transposed to planes.

use super::{Geometry, SharedMut, Split, for_chunks, sum_in_image_order};
use crate::implicit_gemm::{
    B_SLACK, ImplicitGemm, Lhs, Operands, PackedLhs, available, implicit_gemm, lanes,
};

/// Whether the implicit kernels handle this geometry on this CPU.
pub(super) fn applies(geo: &Geometry) -> bool {
    geo.opts.stride == (1, 1) && available()
}

/// A zero-padded copy of one image after another: planes of `h x w` placed at (`top`,
/// `left`) (negative values crop) inside planes of `hp x wp`, followed by the kernel's
/// [`B_SLACK`] (needed when the copy is the product's B). Every image fills the same positions, so
/// the zero border is written once per buffer and each image only copies its rows.
struct Padded<T> {
    buf: Vec<T>,
    planes: usize,
    size: (usize, usize),
    padded: (usize, usize),
    top: isize,
    left: isize,
}

impl<T: ImplicitGemm> Padded<T> {
    fn new(
        planes: usize,
        size: (usize, usize),
        padded: (usize, usize),
        top: isize,
        left: isize,
    ) -> Self {
        Padded {
            buf: vec![T::ZERO; planes * padded.0 * padded.1 + B_SLACK],
            planes,
            size,
            padded,
            top,
            left,
        }
    }

    /// The padded copy of `src`.
    fn of(&mut self, src: &[T]) -> &[T] {
        let ((h, w), (hp, wp), (top, left)) = (self.size, self.padded, (self.top, self.left));
        // Source columns that land inside the padded plane.
        let col_lo = (-left).max(0) as usize;
        let col_hi = ((wp as isize - left).max(0) as usize).min(w);
        if col_lo < col_hi {
            for plane in 0..self.planes {
                for r in 0..h {
                    let row = r as isize + top;
                    if row < 0 || row >= hp as isize {
                        continue;
                    }
                    let dst =
                        plane * hp * wp + row as usize * wp + (col_lo as isize + left) as usize;
                    let src_at = (plane * h + r) * w;
                    self.buf[dst..dst + col_hi - col_lo]
                        .copy_from_slice(&src[src_at + col_lo..src_at + col_hi]);
                }
            }
        }
        &self.buf
    }
}

/// Offsets in a padded `[C, hp, wp]` image of the first pixel under each kernel tap of the
/// input channels `first_channel..first_channel + cg`, in weight order `(c, ki, kj)`.
fn tap_offsets(geo: &Geometry, first_channel: usize, (hp, wp): (usize, usize)) -> Vec<usize> {
    let (dh, dw) = geo.opts.dilation;
    let mut offsets = Vec::with_capacity(geo.k());
    for c in first_channel..first_channel + geo.cg() {
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                offsets.push(c * hp * wp + ki * dh * wp + kj * dw);
            }
        }
    }
    offsets
}

/// Size of the padded input that the output rows `0..ho` read from.
fn input_window(geo: &Geometry) -> (usize, usize) {
    let (dh, dw) = geo.opts.dilation;
    (geo.ho + (geo.kh - 1) * dh, geo.wo + (geo.kw - 1) * dw)
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
/// (or, for deep products with many channels, [`conv_by_pixel`]).
pub(super) fn conv<T: ImplicitGemm>(x: &[T], weight: &[T], geo: &Geometry, y: &mut [T]) {
    if channels_as_columns::<T>(geo.og(), geo.wo, geo.k()) {
        return conv_by_pixel(x, weight, geo, y);
    }
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
    let (hp, wp) = input_window(geo);
    let (ph, pw) = geo.opts.padding;
    let groups: Vec<(PackedLhs<T>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            let packed = PackedLhs::new(og, k, |o, t| weight[(g * og + o) * k + t]);
            (packed, tap_offsets(geo, g * geo.cg(), (hp, wp)))
        })
        .collect();
    let out = SharedMut(y.as_mut_ptr());
    for_chunks(geo, Split::PerThread, |first, count| {
        let mut pad = Padded::new(geo.c, (geo.h, geo.w), (hp, wp), ph as isize, pw as isize);
        for img in first..first + count {
            let xpad = pad.of(&x[img * in_img..(img + 1) * in_img]);
            // SAFETY: this chunk's images are written by this task alone.
            let y_img = unsafe { out.slice(img * out_img, out_img) };
            for (g, (packed, b_rows)) in groups.iter().enumerate() {
                let ops = Operands::new(Lhs::Packed(packed), xpad, b_rows);
                for oh in 0..geo.ho {
                    implicit_gemm(
                        &ops,
                        oh * wp,
                        geo.wo,
                        &mut y_img[g * og * hw + oh * geo.wo..],
                        hw,
                        false,
                    );
                }
            }
        }
    });
}

/// `y = conv(x, w)` with the image's pixels as rows of one GEMM per image and group:
/// `yT[p, o] = sum_t xpad[p + t] wT[t, o]`.
fn conv_by_pixel<T: ImplicitGemm>(x: &[T], weight: &[T], geo: &Geometry, y: &mut [T]) {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
    let (hp, wp) = input_window(geo);
    let (ph, pw) = geo.opts.padding;
    let pixels = pixel_offsets(geo.ho, geo.wo, wp);
    let b_rows: Vec<usize> = (0..k).map(|t| t * og).collect();
    let groups: Vec<(Vec<T>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            let mut w_t = vec![T::ZERO; k * og + B_SLACK];
            for o in 0..og {
                for t in 0..k {
                    w_t[t * og + o] = weight[(g * og + o) * k + t];
                }
            }
            (w_t, tap_offsets(geo, g * geo.cg(), (hp, wp)))
        })
        .collect();
    let product = PixelProduct { pixels: &pixels, b_rows: &b_rows, groups: &groups, channels: og };
    let pad = || Padded::new(geo.c, (geo.h, geo.w), (hp, wp), ph as isize, pw as isize);
    product.run(geo, (x, in_img), (y, out_img), pad);
}

/// The products of the by-pixel forms, one per image and group: the image's padded copy is
/// the gathered A (a row per pixel, a column per entry of the group's offsets), the group's
/// matrix is B (`channels` columns), and the pixel-major result is transposed into the
/// group's output planes.
struct PixelProduct<'a, T> {
    /// Offset of each pixel's window in the padded copy.
    pixels: &'a [usize],
    /// Offset of each row of B.
    b_rows: &'a [usize],
    /// Per group: B, and the offsets of A's columns.
    groups: &'a [(Vec<T>, Vec<usize>)],
    channels: usize,
}

impl<T: ImplicitGemm> PixelProduct<'_, T> {
    /// Runs over every image of `input` (`in_img` elements each) into `output` (`out_img`
    /// each), padding each image with a buffer from `new_pad` (one per task).
    fn run(
        &self,
        geo: &Geometry,
        (input, in_img): (&[T], usize),
        (output, out_img): (&mut [T], usize),
        new_pad: impl Fn() -> Padded<T> + Sync,
    ) {
        let (channels, plane) = (self.channels, self.pixels.len());
        let out = SharedMut(output.as_mut_ptr());
        for_chunks(geo, Split::PerThread, |first, count| {
            let mut pad = new_pad();
            let mut by_pixel = vec![T::ZERO; plane * channels];
            for img in first..first + count {
                let a = pad.of(&input[img * in_img..(img + 1) * in_img]);
                // SAFETY: this chunk's images are written by this task alone.
                let planes = unsafe { out.slice(img * out_img, out_img) };
                for (g, (b, offsets)) in self.groups.iter().enumerate() {
                    let ops = Operands::new(
                        Lhs::Gathered { a, rows: self.pixels, cols: offsets },
                        b,
                        self.b_rows,
                    );
                    implicit_gemm(&ops, 0, channels, &mut by_pixel, channels, false);
                    // The [pixel][channel] product into this group's channel planes.
                    let group_planes =
                        &mut planes[g * channels * plane..(g + 1) * channels * plane];
                    T::transpose(&by_pixel, plane, channels, group_planes);
                }
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
    dx: &mut [T],
) {
    let (og, cg, hw) = (geo.og(), geo.cg(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
    let (dh, dw) = geo.opts.dilation;
    let ((hq, wq), top, left) = gradient_window(geo);
    let taps = geo.kh * geo.kw;
    if channels_as_columns::<T>(cg, geo.w, og * taps) {
        return conv_transpose_by_pixel(gy, weight, geo, dx);
    }
    let groups: Vec<(PackedLhs<T>, Vec<usize>)> = (0..geo.opts.groups)
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
    let out = SharedMut(dx.as_mut_ptr());
    for_chunks(geo, Split::PerThread, |first, count| {
        let mut pad = Padded::new(geo.o, (geo.ho, geo.wo), (hq, wq), top, left);
        for img in first..first + count {
            let gypad = pad.of(&gy[img * out_img..(img + 1) * out_img]);
            // SAFETY: this chunk's images are written by this task alone.
            let dx_img = unsafe { out.slice(img * in_img, in_img) };
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

/// `dx = conv_transpose(gy, w)` with the input's pixels as rows of one GEMM per image and
/// group: `dxT[p, c] = sum_(o, t) gypad[p + (o, t)] w[o, c, flip(t)]`.
fn conv_transpose_by_pixel<T: ImplicitGemm>(gy: &[T], weight: &[T], geo: &Geometry, dx: &mut [T]) {
    let (og, cg, hw) = (geo.og(), geo.cg(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
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
    let product = PixelProduct { pixels: &pixels, b_rows: &b_rows, groups: &groups, channels: cg };
    let pad = || Padded::new(geo.o, (geo.ho, geo.wo), (hq, wq), top, left);
    product.run(geo, (gy, out_img), (dx, in_img), pad);
}

/// `dw = conv_weight(x, gy)`, as its transpose: `dwT[t, o] = sum_p xpad[t + p] gyT[p, o]`
/// over the output pixels `p`, accumulated over images.
pub(super) fn conv_weight<T: ImplicitGemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let (og, k, hw) = (geo.og(), geo.k(), geo.ho * geo.wo);
    let (in_img, out_img) = (geo.c * geo.h * geo.w, geo.o * hw);
    let (hp, wp) = input_window(geo);
    let (ph, pw) = geo.opts.padding;
    let a_cols = pixel_offsets(geo.ho, geo.wo, wp);
    let groups: Vec<(Vec<usize>, Vec<usize>)> = (0..geo.opts.groups)
        .map(|g| {
            (
                tap_offsets(geo, g * geo.cg(), (hp, wp)),
                (0..hw).map(|p| p * geo.o + g * og).collect(),
            )
        })
        .collect();
    let partials = std::sync::Mutex::new(Vec::new());
    for_chunks(geo, Split::Fixed, |first, count| {
        // [groups][k][og]
        let mut acc = vec![T::ZERO; geo.o * k];
        let mut gy_t = vec![T::ZERO; hw * geo.o + B_SLACK];
        let mut pad = Padded::new(geo.c, (geo.h, geo.w), (hp, wp), ph as isize, pw as isize);
        for img in first..first + count {
            let xpad = pad.of(&x[img * in_img..(img + 1) * in_img]);
            let gy_img = &gy[img * out_img..(img + 1) * out_img];
            T::transpose(gy_img, geo.o, hw, &mut gy_t);
            for (g, (a_rows, b_rows)) in groups.iter().enumerate() {
                let lhs = Lhs::Gathered { a: xpad, rows: a_rows, cols: &a_cols };
                let ops = Operands::new(lhs, &gy_t, b_rows);
                implicit_gemm(&ops, 0, og, &mut acc[g * k * og..(g + 1) * k * og], og, true);
            }
        }
        partials.lock().expect("no task panicked").push((first, acc));
    });
    let total = sum_in_image_order(partials, geo.o * k);
    // [groups][k][og] -> [O, k]
    let mut dw = vec![T::ZERO; geo.o * k];
    for g in 0..geo.opts.groups {
        for t in 0..k {
            for o in 0..og {
                dw[(g * og + o) * k + t] = total[(g * k + t) * og + o];
            }
        }
    }
    dw
}
