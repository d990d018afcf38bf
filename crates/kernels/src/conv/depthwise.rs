//! Depthwise convolutions (one input channel per group, as in MobileNet's blocks) as direct
//! sums over each plane.
//!
//! With one input channel per group, a convolution is `kH x kW` multiply-adds per output
//! pixel: a GEMM of depth `kH kW` and one output row per group, too thin for the packing
//! kernels (whose work is in blocks of many rows and a deep sum). At stride 1, each plane
//! is copied into a zero-padded plane, and the output is computed "wide" (rows as long as
//! the padded rows, the extra columns dropped afterwards): every kernel tap then reads the
//! padded plane at one fixed offset, so an output vector is one load and one multiply-add
//! per tap, held in registers. The input gradient is the same correlation of the padded
//! output gradient with the flipped kernel, and the weight gradient one running dot product
//! per tap between the wide output gradient and the padded input. Other strides run row by
//! row.

use rayon::prelude::*;

use super::{ChannelBias, Geometry, parallel, valid_range};
use crate::Real;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// Whether `geo` takes this path: grouped, with one input channel per group (any number of
/// output channels per group, stride, padding and dilation).
pub(super) fn applies(geo: &Geometry) -> bool {
    geo.opts.groups > 1 && geo.cg() == 1
}

/// Where kernel tap `(ki, kj)` reads: for output rows `rows.0..rows.1` and columns
/// `cols.0..cols.1` (those whose input pixel lies inside the image), input row
/// `yo * sh + row_offset` and column `xo * sw + col_offset`.
#[derive(Clone, Copy)]
struct Tap {
    rows: (usize, usize),
    cols: (usize, usize),
    row_offset: isize,
    col_offset: isize,
}

impl Tap {
    fn all(geo: &Geometry) -> Vec<Tap> {
        let ((sh, sw), (ph, pw), (dh, dw)) = (geo.opts.stride, geo.opts.padding, geo.opts.dilation);
        let mut taps = Vec::with_capacity(geo.kh * geo.kw);
        for ki in 0..geo.kh {
            let row_offset = (ki * dh) as isize - ph as isize;
            for kj in 0..geo.kw {
                let col_offset = (kj * dw) as isize - pw as isize;
                let cols = valid_range(col_offset, sw, geo.w, geo.wo);
                // A tap that meets no column meets no row either (its first column's
                // input offset may lie before the plane).
                let rows = if cols.0 < cols.1 {
                    valid_range(row_offset, sh, geo.h, geo.ho)
                } else {
                    (0, 0)
                };
                taps.push(Tap { rows, cols, row_offset, col_offset });
            }
        }
        taps
    }

    /// The input offset (in a plane of width `w`) of output pixel `(yo, cols.0)`.
    #[inline(always)]
    fn input_at(&self, yo: usize, (sh, sw): (usize, usize), w: usize) -> usize {
        let yi = (yo * sh) as isize + self.row_offset;
        let xi = (self.cols.0 * sw) as isize + self.col_offset;
        yi as usize * w + xi as usize
    }
}

/// Planes per rayon task: about a few tasks per thread, each at least one plane.
fn planes_per_task(planes: usize) -> usize {
    planes.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `y[n, oc] = Σ_taps w[oc, tap] * window(x[n, oc / og], tap)` (plus the bias) for every
/// output plane; `y` is zeroed.
pub(super) fn conv<T: Real>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &mut [T],
) {
    if geo.opts.stride == (1, 1) {
        return conv_wide(x, weight, geo, bias, y);
    }
    let taps = Tap::all(geo);
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let planes = |first: usize, out: &mut [T]| {
        for (i, plane) in out.chunks_exact_mut(out_plane).enumerate() {
            let (img, oc) = ((first + i) / geo.o, (first + i) % geo.o);
            let ic = img * geo.c + oc / og;
            run_widest(Forward {
                x: &x[ic * in_plane..(ic + 1) * in_plane],
                weights: &weight[oc * k..(oc + 1) * k],
                taps: &taps,
                out: plane,
                geo,
            });
            // Added after the sum, as the other forms do: the same bits as a separate add.
            if let Some(values) = bias.values {
                plane.iter_mut().for_each(|v| *v += values[oc]);
            }
        }
    };
    each_plane_block(y, out_plane, geo, planes);
}

/// `dx[n, ic] = Σ_{oc of ic's group} Σ_taps w[oc, tap] * spread(gy[n, oc], tap)` for every
/// input plane; `dx` is zeroed.
pub(super) fn conv_transpose<T: Real>(gy: &[T], weight: &[T], geo: &Geometry, dx: &mut [T]) {
    if geo.opts.stride == (1, 1) {
        return conv_transpose_wide(gy, weight, geo, dx);
    }
    let taps = Tap::all(geo);
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let planes = |first: usize, out: &mut [T]| {
        for (i, plane) in out.chunks_exact_mut(in_plane).enumerate() {
            let (img, ic) = ((first + i) / geo.c, (first + i) % geo.c);
            for oc in ic * og..(ic + 1) * og {
                let at = (img * geo.o + oc) * out_plane;
                run_widest(InputGradient {
                    gy: &gy[at..at + out_plane],
                    weights: &weight[oc * k..(oc + 1) * k],
                    taps: &taps,
                    dx: plane,
                    geo,
                });
            }
        }
    };
    each_plane_block(dx, in_plane, geo, planes);
}

/// `dw[oc, tap] = Σ_n Σ_pixels gy[n, oc] * window(x[n, oc / og], tap)`, each output
/// channel summed over the images in order by one task: the same bits at every thread
/// count.
pub(super) fn conv_weight<T: Real>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let wide = geo.opts.stride == (1, 1);
    // The row form's tap list; the wide form finds its taps in the padded plane.
    let taps = if wide { vec![] } else { Tap::all(geo) };
    let k = geo.kh * geo.kw;
    let mut dw = vec![T::ZERO; geo.o * k];
    let channel = |oc: usize, out: &mut [T]| {
        if wide {
            weight_wide(x, gy, oc, geo, out);
        } else {
            run_widest(WeightGradient { x, gy, oc, taps: &taps, dw: out, geo });
        }
    };
    if parallel(geo) {
        dw.par_chunks_mut(k).enumerate().for_each(|(oc, out)| channel(oc, out));
    } else {
        dw.chunks_mut(k).enumerate().for_each(|(oc, out)| channel(oc, out));
    }
    dw
}

/// Runs `planes(first_plane, block)` over blocks of whole planes of `out`, on rayon's
/// threads when the convolution is large enough.
fn each_plane_block<T: Send>(
    out: &mut [T],
    plane: usize,
    geo: &Geometry,
    planes: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if parallel(geo) {
        let per_task = planes_per_task(out.len() / plane);
        out.par_chunks_mut(per_task * plane)
            .enumerate()
            .for_each(|(i, block)| planes(i * per_task, block));
    } else {
        planes(0, out);
    }
}

/// A zero-padded plane that source planes of `size` are copied into at (`top`, `left`)
/// (negative values crop), `rows x cols` with slack after it for the last vector of a wide
/// product. Every copy fills the same positions, so the zero border is written once.
struct PaddedPlane<T> {
    buf: Vec<T>,
    size: (usize, usize),
    padded: (usize, usize),
    at: (isize, isize),
}

impl<T: Real> PaddedPlane<T> {
    fn new(size: (usize, usize), (rows, cols): (usize, usize), at: (isize, isize)) -> Self {
        // A row and a vector of slack: a wide product's last vector reads up to the
        // bottom-right tap's offset past the last output's start.
        let buf = vec![T::ZERO; (rows + 1) * cols + LANES];
        PaddedPlane { buf, size, padded: (rows, cols), at }
    }

    /// The padded copy of `src` (one plane of `size`).
    fn of(&mut self, src: &[T]) -> &[T] {
        let ((h, w), (top, left), (rows, cols)) = (self.size, self.at, self.padded);
        // Source columns that land inside the padded row, and where they land.
        let first_col = (-left).max(0) as usize;
        let last_col = (w as isize).min(cols as isize - left).max(first_col as isize) as usize;
        for r in 0..h {
            let to = r as isize + top;
            if to < 0 || to as usize >= rows || first_col >= last_col {
                continue;
            }
            let start = to as usize * cols + (first_col as isize + left) as usize;
            self.buf[start..start + last_col - first_col]
                .copy_from_slice(&src[r * w + first_col..r * w + last_col]);
        }
        &self.buf
    }
}

/// Offsets of the kernel taps (row-major) in a padded plane of `cols` columns.
fn tap_offsets(geo: &Geometry, cols: usize) -> Vec<usize> {
    let (dh, dw) = geo.opts.dilation;
    (0..geo.kh).flat_map(|ki| (0..geo.kw).map(move |kj| ki * dh * cols + kj * dw)).collect()
}

/// Output elements of a wide product over `rows` rows of `cols`, rounded up to whole
/// vectors of [`LANES`].
fn wide_len(rows: usize, cols: usize) -> usize {
    (rows * cols).next_multiple_of(LANES)
}

/// The forward convolution at stride 1 through padded planes and wide outputs.
fn conv_wide<T: Real>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &mut [T],
) {
    let (ph, pw) = geo.opts.padding;
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let cols = geo.w + 2 * pw;
    let padded_rows = geo.h + 2 * ph;
    let offsets = tap_offsets(geo, cols);
    let planes = |first: usize, out: &mut [T]| {
        let mut padded =
            PaddedPlane::new((geo.h, geo.w), (padded_rows, cols), (ph as isize, pw as isize));
        let mut wide = vec![T::ZERO; wide_len(geo.ho, cols)];
        for (i, plane) in out.chunks_exact_mut(out_plane).enumerate() {
            let (img, oc) = ((first + i) / geo.o, (first + i) % geo.o);
            let ic = img * geo.c + oc / og;
            let src = padded.of(&x[ic * in_plane..(ic + 1) * in_plane]);
            run_widest(Correlate {
                src,
                weights: &weight[oc * k..(oc + 1) * k],
                offsets: &offsets,
                out: &mut wide,
            });
            for (row, wide_row) in plane.chunks_exact_mut(geo.wo).zip(wide.chunks(cols)) {
                row.copy_from_slice(&wide_row[..geo.wo]);
            }
            // Added after the sum, as the other forms do: the same bits as a separate add.
            if let Some(values) = bias.values {
                plane.iter_mut().for_each(|v| *v += values[oc]);
            }
        }
    };
    each_plane_block(y, out_plane, geo, planes);
}

/// The input gradient at stride 1: each output gradient plane, padded, correlated with the
/// flipped kernel, and added into its input channel's plane.
fn conv_transpose_wide<T: Real>(gy: &[T], weight: &[T], geo: &Geometry, dx: &mut [T]) {
    let ((ph, pw), (dh, dw)) = (geo.opts.padding, geo.opts.dilation);
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let (reach_h, reach_w) = ((geo.kh - 1) * dh, (geo.kw - 1) * dw);
    let cols = geo.w + reach_w;
    let at = (reach_h as isize - ph as isize, reach_w as isize - pw as isize);
    let offsets = tap_offsets(geo, cols);
    let flipped: Vec<T> =
        (0..geo.o).flat_map(|oc| weight[oc * k..(oc + 1) * k].iter().rev().copied()).collect();
    let planes = |first: usize, out: &mut [T]| {
        let mut padded = PaddedPlane::new((geo.ho, geo.wo), (geo.h + reach_h, cols), at);
        let mut wide = vec![T::ZERO; wide_len(geo.h, cols)];
        for (i, plane) in out.chunks_exact_mut(in_plane).enumerate() {
            let (img, ic) = ((first + i) / geo.c, (first + i) % geo.c);
            for oc in ic * og..(ic + 1) * og {
                let at = (img * geo.o + oc) * out_plane;
                let src = padded.of(&gy[at..at + out_plane]);
                run_widest(Correlate {
                    src,
                    weights: &flipped[oc * k..(oc + 1) * k],
                    offsets: &offsets,
                    out: &mut wide,
                });
                for (row, wide_row) in plane.chunks_exact_mut(geo.w).zip(wide.chunks(cols)) {
                    row.iter_mut().zip(wide_row).for_each(|(d, &v)| *d += v);
                }
            }
        }
    };
    each_plane_block(dx, in_plane, geo, planes);
}

/// The weight gradient of output channel `oc` at stride 1: per tap, the dot product of the
/// wide output gradient with the padded input at the tap's offset, summed over the images
/// in order.
fn weight_wide<T: Real>(x: &[T], gy: &[T], oc: usize, geo: &Geometry, dw: &mut [T]) {
    let (ph, pw) = geo.opts.padding;
    let (in_plane, out_plane) = (geo.h * geo.w, geo.ho * geo.wo);
    let cols = geo.w + 2 * pw;
    let offsets = tap_offsets(geo, cols);
    let mut padded =
        PaddedPlane::new((geo.h, geo.w), (geo.h + 2 * ph, cols), (ph as isize, pw as isize));
    // The output gradient in wide rows; the extra columns stay zero.
    let mut wide = vec![T::ZERO; wide_len(geo.ho, cols)];
    let mut sums = vec![[T::ZERO; LANES]; offsets.len()];
    let ic = oc / geo.og();
    for img in 0..geo.n {
        let g = &gy[(img * geo.o + oc) * out_plane..][..out_plane];
        for (wide_row, row) in wide.chunks_mut(cols).zip(g.chunks_exact(geo.wo)) {
            wide_row[..geo.wo].copy_from_slice(row);
        }
        let src = padded.of(&x[(img * geo.c + ic) * in_plane..][..in_plane]);
        run_widest(Dots { a: &wide, src, offsets: &offsets, sums: &mut sums });
    }
    for (slot, lanes) in dw.iter_mut().zip(sums) {
        *slot = combine_lanes(lanes);
    }
}

/// `out[p] = Σ_t weights[t] * src[p + offsets[t]]` for every `p` of `out` (whole vectors):
/// one output vector's sums stay in registers across the taps.
struct Correlate<'a, T> {
    src: &'a [T],
    weights: &'a [T],
    offsets: &'a [usize],
    out: &'a mut [T],
}

impl<T: Real> WidestLoop for Correlate<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Correlate { src, weights, offsets, out } = self;
        for (p, chunk) in out.chunks_exact_mut(LANES).enumerate() {
            let mut acc = [T::ZERO; LANES];
            for (&w, &off) in weights.iter().zip(offsets) {
                let from = p * LANES + off;
                let v: &[T; LANES] = src[from..from + LANES].try_into().expect("one vector");
                for k in 0..LANES {
                    acc[k] += w * v[k];
                }
            }
            chunk.copy_from_slice(&acc);
        }
    }
}

/// `sums[t] += a[p] * src[p + offsets[t]]` over every `p` of `a` (whole vectors), in lanes.
struct Dots<'a, T> {
    a: &'a [T],
    src: &'a [T],
    offsets: &'a [usize],
    sums: &'a mut [[T; LANES]],
}

impl<T: Real> WidestLoop for Dots<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Dots { a, src, offsets, sums } = self;
        for (&off, lanes) in offsets.iter().zip(sums.iter_mut()) {
            let mut acc = *lanes;
            for (p, g) in a.chunks_exact(LANES).enumerate() {
                let g: &[T; LANES] = g.try_into().expect("one vector");
                let from = p * LANES + off;
                let v: &[T; LANES] = src[from..from + LANES].try_into().expect("one vector");
                for k in 0..LANES {
                    acc[k] += g[k] * v[k];
                }
            }
            *lanes = acc;
        }
    }
}

/// One output plane of the forward convolution.
struct Forward<'a, T> {
    x: &'a [T],
    weights: &'a [T],
    taps: &'a [Tap],
    out: &'a mut [T],
    geo: &'a Geometry,
}

impl<T: Real> WidestLoop for Forward<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Forward { x, weights, taps, out, geo } = self;
        let stride = geo.opts.stride;
        for (tap, &w) in taps.iter().zip(weights) {
            let (lo, hi) = tap.cols;
            for yo in tap.rows.0..tap.rows.1 {
                let from = tap.input_at(yo, stride, geo.w);
                let row = &mut out[yo * geo.wo + lo..yo * geo.wo + hi];
                if stride.1 == 1 {
                    for (o, &v) in row.iter_mut().zip(&x[from..from + (hi - lo)]) {
                        *o += w * v;
                    }
                } else {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o += w * x[from + j * stride.1];
                    }
                }
            }
        }
    }
}

/// One output plane's gradient spread back into an input plane.
struct InputGradient<'a, T> {
    gy: &'a [T],
    weights: &'a [T],
    taps: &'a [Tap],
    dx: &'a mut [T],
    geo: &'a Geometry,
}

impl<T: Real> WidestLoop for InputGradient<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let InputGradient { gy, weights, taps, dx, geo } = self;
        let stride = geo.opts.stride;
        for (tap, &w) in taps.iter().zip(weights) {
            let (lo, hi) = tap.cols;
            for yo in tap.rows.0..tap.rows.1 {
                let to = tap.input_at(yo, stride, geo.w);
                let row = &gy[yo * geo.wo + lo..yo * geo.wo + hi];
                if stride.1 == 1 {
                    for (d, &g) in dx[to..to + (hi - lo)].iter_mut().zip(row) {
                        *d += w * g;
                    }
                } else {
                    for (j, &g) in row.iter().enumerate() {
                        dx[to + j * stride.1] += w * g;
                    }
                }
            }
        }
    }
}

/// The weight gradient of one output channel, summed over every image.
struct WeightGradient<'a, T> {
    x: &'a [T],
    gy: &'a [T],
    oc: usize,
    taps: &'a [Tap],
    dw: &'a mut [T],
    geo: &'a Geometry,
}

impl<T: Real> WidestLoop for WeightGradient<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let WeightGradient { x, gy, oc, taps, dw, geo } = self;
        let (stride, in_plane, out_plane) = (geo.opts.stride, geo.h * geo.w, geo.ho * geo.wo);
        let ic = oc / geo.og();
        for (tap, slot) in taps.iter().zip(dw.iter_mut()) {
            let (lo, hi) = tap.cols;
            // Running sums in lanes, so the products vectorise, and one for the ends of
            // rows (indexed only by constants, so the lanes stay in registers); combined in
            // a fixed order.
            let (mut acc, mut ends) = ([T::ZERO; LANES], T::ZERO);
            for img in 0..geo.n {
                let xs = &x[(img * geo.c + ic) * in_plane..][..in_plane];
                let gs = &gy[(img * geo.o + oc) * out_plane..][..out_plane];
                for yo in tap.rows.0..tap.rows.1 {
                    let from = tap.input_at(yo, stride, geo.w);
                    let g = &gs[yo * geo.wo + lo..yo * geo.wo + hi];
                    if stride.1 == 1 {
                        let v = &xs[from..from + (hi - lo)];
                        let (gc, vc) = (g.chunks_exact(LANES), v.chunks_exact(LANES));
                        let (g_rest, v_rest) = (gc.remainder(), vc.remainder());
                        for (gc, vc) in gc.zip(vc) {
                            for k in 0..LANES {
                                acc[k] += gc[k] * vc[k];
                            }
                        }
                        for (&a, &b) in g_rest.iter().zip(v_rest) {
                            ends += a * b;
                        }
                    } else {
                        for (j, &a) in g.iter().enumerate() {
                            ends += a * xs[from + j * stride.1];
                        }
                    }
                }
            }
            *slot = combine_lanes(acc) + ends;
        }
    }
}
