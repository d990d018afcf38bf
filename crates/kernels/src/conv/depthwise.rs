//! Depthwise convolutions (one input channel per group, as in MobileNet's blocks) as direct
//! sums over each plane.
//!
//! With one input channel per group, a convolution is `kH x kW` multiply-adds per output
//! pixel: a GEMM of depth `kH kW` and one output row per group, too thin for the packing
//! kernels (whose work is in blocks of many rows and a deep sum). Each plane is copied,
//! zero-padded, into its stride phases ([`Padded`]: at stride `s`, the padded pixels
//! whose row and column leave remainders `a` and `b` when divided by `s`), and the output
//! is computed "wide" (rows as long as a phase's rows, the extra columns dropped
//! afterwards): every kernel tap then reads one phase at one fixed offset, so an output
//! vector is one load and one multiply-add per tap, held in registers, at any stride (at
//! stride 1 there is one phase, the padded plane). The weight gradient is one running dot
//! product per tap between the wide output gradient and the phase the tap reads. The input
//! gradient at stride 1 is the correlation of the padded output gradient with the flipped
//! kernel; at larger strides each phase of the padded input gradient is that correlation
//! over the taps that read the phase, and the phases are woven back into the plane.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::padded::{Padded, tap_offsets};
use super::{ChannelBias, Geometry, parallel};
use crate::Real;
use crate::parallel::cleared;
use crate::short_copy::copy_row;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// Whether `geo` takes this path: grouped, with one input channel per group (any number of
/// output channels per group, stride, padding and dilation).
pub(super) fn applies(geo: &Geometry) -> bool {
    geo.opts.groups > 1 && geo.cg() == 1
}

/// Planes per rayon task: about a few tasks per thread, each at least one plane.
fn planes_per_task(planes: usize) -> usize {
    planes.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `y[n, oc] = Σ_taps w[oc, tap] * window(x[n, oc / og], tap)` (plus the bias) for every
/// output plane, through the input's phases and wide outputs.
pub(super) fn conv<T: Real>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &mut [MaybeUninit<T>],
) {
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let planes = |first: usize, out: &mut [MaybeUninit<T>]| {
        let (mut phases, offsets) = padded_input(geo);
        let cols = phases.window().phase_len;
        let mut wide = vec![T::ZERO; wide_len(geo.ho, cols)];
        for (i, plane) in out.chunks_exact_mut(out_plane).enumerate() {
            let (img, oc) = ((first + i) / geo.o, (first + i) % geo.o);
            let ic = img * geo.c + oc / og;
            let src = phases.of(&x[ic * in_plane..(ic + 1) * in_plane]);
            run_widest(Correlate {
                src,
                weights: &weight[oc * k..(oc + 1) * k],
                offsets: &offsets,
                out: &mut wide,
            });
            let bias = bias.values.map(|values| values[oc]);
            run_widest(Emit {
                wide: &wide,
                cols,
                wo: geo.wo,
                bias,
                plane: cleared(plane, T::ZERO),
            });
        }
    };
    each_plane_block(y, out_plane, geo, planes);
}

/// `dx[n, ic] = Σ_{oc of ic's group} Σ_taps w[oc, tap] * spread(gy[n, oc], tap)` for every
/// input plane.
pub(super) fn conv_transpose<T: Real>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &mut [MaybeUninit<T>],
) {
    if geo.opts.stride == (1, 1) {
        conv_transpose_unit(gy, weight, geo, dx)
    } else {
        conv_transpose_phased(gy, weight, geo, dx)
    }
}

/// `dw[oc, tap] = Σ_n Σ_pixels gy[n, oc] * window(x[n, oc / og], tap)`, each output
/// channel summed over the images in order by one task: the same bits at every thread
/// count.
pub(super) fn conv_weight<T: Real>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let k = geo.kh * geo.kw;
    let mut dw = vec![T::ZERO; geo.o * k];
    let channel = |(oc, out): (usize, &mut [T])| {
        crate::subnormal::flushing(|| weight_wide(x, gy, oc, geo, out))
    };
    if parallel(geo) {
        dw.par_chunks_mut(k).enumerate().for_each(channel);
    } else {
        dw.chunks_mut(k).enumerate().for_each(channel);
    }
    dw
}

/// Runs `planes(first_plane, block)` over blocks of whole planes of `out`, on rayon's
/// threads when the convolution is large enough. `planes` clears each plane just before it
/// writes it, while the plane is in the core's first-level cache: a pass over the whole
/// output beforehand took it out to memory and back. Subnormal numbers are flushed on the
/// threads that run `planes` ([`crate::subnormal`]).
fn each_plane_block<T: Send>(
    out: &mut [MaybeUninit<T>],
    plane: usize,
    geo: &Geometry,
    planes: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if parallel(geo) {
        let per_task = planes_per_task(out.len() / plane);
        out.par_chunks_mut(per_task * plane)
            .enumerate()
            .for_each(|(i, block)| crate::subnormal::flushing(|| planes(i * per_task, block)));
    } else {
        crate::subnormal::flushing(|| planes(0, out));
    }
}

/// The zero-padded input plane, in the convolution's stride phases, and where each kernel
/// tap reads it.
fn padded_input<T: Real>(geo: &Geometry) -> (Padded<T>, Vec<usize>) {
    let (ph, pw) = geo.opts.padding;
    let grid = (geo.h + 2 * ph, geo.w + 2 * pw);
    let padded = Padded::new(1, (geo.h, geo.w), grid, geo.opts.stride, (ph as isize, pw as isize));
    let offsets = tap_offsets(geo, 0, &padded.window());
    (padded, offsets)
}

/// Output elements of a wide product over `rows` rows of `cols`, rounded up to whole
/// vectors of [`LANES`].
fn wide_len(rows: usize, cols: usize) -> usize {
    (rows * cols).next_multiple_of(LANES)
}

/// The input gradient at stride 1: each output gradient plane, padded, correlated with the
/// flipped kernel, and added into its input channel's plane.
fn conv_transpose_unit<T: Real>(gy: &[T], weight: &[T], geo: &Geometry, dx: &mut [MaybeUninit<T>]) {
    let ((ph, pw), (dh, dw)) = (geo.opts.padding, geo.opts.dilation);
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let (reach_h, reach_w) = ((geo.kh - 1) * dh, (geo.kw - 1) * dw);
    let at = (reach_h as isize - ph as isize, reach_w as isize - pw as isize);
    let grid = (geo.h + reach_h, geo.w + reach_w);
    let flipped: Vec<T> =
        (0..geo.o).flat_map(|oc| weight[oc * k..(oc + 1) * k].iter().rev().copied()).collect();
    let planes = |first: usize, out: &mut [MaybeUninit<T>]| {
        let mut padded = Padded::new(1, (geo.ho, geo.wo), grid, (1, 1), at);
        let offsets = tap_offsets(geo, 0, &padded.window());
        let cols = padded.window().phase_len;
        let mut wide = vec![T::ZERO; wide_len(geo.h, cols)];
        for (i, plane) in out.chunks_exact_mut(in_plane).enumerate() {
            let (img, ic) = ((first + i) / geo.c, (first + i) % geo.c);
            let plane = cleared(plane, T::ZERO);
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

/// The taps that read one phase of the padded input, and where each reads the output
/// gradient when that phase of the input gradient is computed as a wide correlation.
struct PhaseTaps {
    /// Row-major tap indices.
    taps: Vec<usize>,
    /// Offsets in the output gradient's padded plane.
    offsets: Vec<usize>,
}

/// The input gradient at strides above 1. The forward output at `(yo, xo)` reads phase
/// `(a, b)` of the padded input at `(yo + qa, xo + qb)` for a tap at grid offset
/// `(qa * sh + a, qb * sw + b)`, so that phase's gradient at `(i, j)` is
/// `Σ w[tap] gy[i - qa, j - qb]` over its taps: a correlation with the output gradient
/// padded by the largest `(qa, qb)` at the top left. Every phase is computed wide, and the
/// phases are then woven into the input gradient's rows.
fn conv_transpose_phased<T: Real>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &mut [MaybeUninit<T>],
) {
    let ((sh, sw), (ph, pw), (dh, dw)) = (geo.opts.stride, geo.opts.padding, geo.opts.dilation);
    let (og, in_plane, out_plane, k) = (geo.og(), geo.h * geo.w, geo.ho * geo.wo, geo.kh * geo.kw);
    let (rows, cols) = ((geo.h + 2 * ph).div_ceil(sh), (geo.w + 2 * pw).div_ceil(sw));
    let (reach_h, reach_w) = ((geo.kh - 1) * dh / sh, (geo.kw - 1) * dw / sw);
    let mut phases: Vec<PhaseTaps> =
        (0..sh * sw).map(|_| PhaseTaps { taps: vec![], offsets: vec![] }).collect();
    for ki in 0..geo.kh {
        for kj in 0..geo.kw {
            let (down, right) = (ki * dh, kj * dw);
            let phase = &mut phases[(down % sh) * sw + right % sw];
            phase.taps.push(ki * geo.kw + kj);
            phase.offsets.push((reach_h - down / sh) * cols + reach_w - right / sw);
        }
    }
    let wide_phase = wide_len(rows, cols);
    let planes = |first: usize, out: &mut [MaybeUninit<T>]| {
        let at = (reach_h as isize, reach_w as isize);
        let mut padded = Padded::new(1, (geo.ho, geo.wo), (rows + reach_h, cols), (1, 1), at);
        // Phases no tap reads stay zero.
        let mut wide = vec![T::ZERO; sh * sw * wide_phase];
        let mut weights = Vec::with_capacity(k);
        for (i, plane) in out.chunks_exact_mut(in_plane).enumerate() {
            let (img, ic) = ((first + i) / geo.c, (first + i) % geo.c);
            let plane = cleared(plane, T::ZERO);
            for oc in ic * og..(ic + 1) * og {
                let at = (img * geo.o + oc) * out_plane;
                let src = padded.of(&gy[at..at + out_plane]);
                for (taps, out) in phases.iter().zip(wide.chunks_exact_mut(wide_phase)) {
                    if taps.taps.is_empty() {
                        continue;
                    }
                    weights.clear();
                    weights.extend(taps.taps.iter().map(|&t| weight[oc * k + t]));
                    run_widest(Correlate { src, weights: &weights, offsets: &taps.offsets, out });
                }
                run_widest(Weave { wide: &wide, phase_len: wide_phase, cols, geo, plane });
            }
        }
    };
    each_plane_block(dx, in_plane, geo, planes);
}

/// The weight gradient of output channel `oc`: per tap, the dot product of the wide output
/// gradient with the phase the tap reads, summed over the images in order.
fn weight_wide<T: Real>(x: &[T], gy: &[T], oc: usize, geo: &Geometry, dw: &mut [T]) {
    let (in_plane, out_plane) = (geo.h * geo.w, geo.ho * geo.wo);
    let (mut phases, offsets) = padded_input(geo);
    let cols = phases.window().phase_len;
    // The output gradient in wide rows; the extra columns stay zero.
    let mut wide = vec![T::ZERO; wide_len(geo.ho, cols)];
    let mut sums = vec![[T::ZERO; LANES]; offsets.len()];
    let ic = oc / geo.og();
    for img in 0..geo.n {
        let g = &gy[(img * geo.o + oc) * out_plane..][..out_plane];
        for (wide_row, row) in wide.chunks_mut(cols).zip(g.chunks_exact(geo.wo)) {
            copy_row(&mut wide_row[..geo.wo], row);
        }
        let src = phases.of(&x[(img * geo.c + ic) * in_plane..][..in_plane]);
        run_widest(Dots { a: &wide, src, offsets: &offsets, sums: &mut sums });
    }
    for (slot, lanes) in dw.iter_mut().zip(sums) {
        *slot = combine_lanes(lanes);
    }
    // The wide rows' dropped columns multiply input pixels outside each tap's windows by
    // zero: an infinite or NaN input there would turn a tap's sum into NaN where the
    // windows alone give a number, so such a channel is summed again over its windows.
    if dw.iter().any(|v| !v.widen().is_finite()) {
        weight_over_windows(x, gy, oc, geo, dw);
    }
}

/// The weight gradient of output channel `oc` summed over each output row's own pixels
/// only (a plain loop, for inputs with infinities or NaN).
fn weight_over_windows<T: Real>(x: &[T], gy: &[T], oc: usize, geo: &Geometry, dw: &mut [T]) {
    let (in_plane, out_plane) = (geo.h * geo.w, geo.ho * geo.wo);
    let (mut phases, offsets) = padded_input(geo);
    let cols = phases.window().phase_len;
    let ic = oc / geo.og();
    dw.fill(T::ZERO);
    for img in 0..geo.n {
        let g = &gy[(img * geo.o + oc) * out_plane..][..out_plane];
        let src = phases.of(&x[(img * geo.c + ic) * in_plane..][..in_plane]);
        for (slot, &off) in dw.iter_mut().zip(&offsets) {
            for (yo, row) in g.chunks_exact(geo.wo).enumerate() {
                let window = &src[off + yo * cols..][..geo.wo];
                *slot += row.iter().zip(window).fold(T::ZERO, |sum, (&a, &b)| sum + a * b);
            }
        }
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

/// A wide output's rows (`cols` apart) cut to the plane's width, plus the channel's bias:
/// the plane of the forward convolution.
struct Emit<'a, T> {
    wide: &'a [T],
    cols: usize,
    wo: usize,
    bias: Option<T>,
    plane: &'a mut [T],
}

impl<T: Real> WidestLoop for Emit<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Emit { wide, cols, wo, bias, plane } = self;
        for (row, wide_row) in plane.chunks_exact_mut(wo).zip(wide.chunks(cols)) {
            match bias {
                // Added after the sum, as the other forms do: the same bits as a separate add.
                Some(b) => row.iter_mut().zip(wide_row).for_each(|(d, &v)| *d = v + b),
                None => copy_row(row, &wide_row[..wo]),
            }
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

/// The wide phases of a padded input gradient (each `phase_len` long, in rows of `cols`),
/// added into the pixels of `plane` they hold.
struct Weave<'a, T> {
    wide: &'a [T],
    phase_len: usize,
    cols: usize,
    geo: &'a Geometry,
    plane: &'a mut [T],
}

impl<T: Real> WidestLoop for Weave<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Weave { wide, phase_len, cols, geo, plane } = self;
        let ((sh, sw), (ph, pw)) = (geo.opts.stride, geo.opts.padding);
        // The offset of padded pixel `(down, right)`.
        let offset = |down: usize, right: usize| {
            ((down % sh) * sw + right % sw) * phase_len + (down / sh) * cols + right / sw
        };
        for (r, row) in plane.chunks_exact_mut(geo.w).enumerate() {
            let down = r + ph;
            match sw {
                1 => {
                    let from = &wide[offset(down, pw)..][..geo.w];
                    row.iter_mut().zip(from).for_each(|(d, &v)| *d += v);
                }
                2 => {
                    let pairs = geo.w / 2;
                    let (first, second) =
                        (&wide[offset(down, pw)..], &wide[offset(down, pw + 1)..]);
                    let (paired, rest) = row.split_at_mut(2 * pairs);
                    add_pairs(paired, first, second);
                    if let Some(last) = rest.first_mut() {
                        *last += first[pairs];
                    }
                }
                _ => {
                    for (c, d) in row.iter_mut().enumerate() {
                        *d += wide[offset(down, c + pw)];
                    }
                }
            }
        }
    }
}

/// `dst[2m] += first[m]`, `dst[2m + 1] += second[m]`: even and odd columns woven into a
/// row, a block of [`LANES`] pairs at a time.
#[inline(always)]
fn add_pairs<T: Real>(dst: &mut [T], first: &[T], second: &[T]) {
    let done = dst.len() / (2 * LANES) * LANES;
    let (blocks, tail) = dst.split_at_mut(2 * done);
    for ((block, a), b) in blocks
        .chunks_exact_mut(2 * LANES)
        .zip(first.chunks_exact(LANES))
        .zip(second.chunks_exact(LANES))
    {
        let block: &mut [T; 2 * LANES] = block.try_into().expect("a block of pairs");
        let (a, b): (&[T; LANES], &[T; LANES]) =
            (a.try_into().expect("a vector"), b.try_into().expect("a vector"));
        for k in 0..LANES {
            block[2 * k] += a[k];
            block[2 * k + 1] += b[k];
        }
    }
    for (m, pair) in tail.chunks_exact_mut(2).enumerate() {
        pair[0] += first[done + m];
        pair[1] += second[done + m];
    }
}
