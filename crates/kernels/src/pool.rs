//! Max pooling on flat `[N, C, H, W]` buffers: the forward pass (values and the positions
//! they came from) and its gradient (a scatter to those positions).

use rayon::prelude::*;

use crate::Real;
use crate::parallel::cleared;
use crate::simd::{WidestLoop, run_widest};

mod max2x2;
pub use max2x2::MaxPool2x2;

/// A worker over one plane: (output values, output indices), input plane.
type PlaneFn<'a, T> = dyn Fn(((&mut [T], &mut [i64]), &[T])) + Sync + 'a;

/// The larger of two (value, position) candidates, `a` first in PyTorch's scan order:
/// `b` is taken if it is larger or NaN (PyTorch's CPU kernel tests `val > maxval ||
/// isnan(val)`), so a NaN wins over numbers, among equal values the first is kept, and
/// among NaNs the last. Written without short-circuit operators so that it compiles to
/// selects (on random data the comparison is a coin flip, and mispredicted branches cost
/// more than the arithmetic).
#[inline(always)]
pub(crate) fn pick<T: Real>((a, ia): (T, usize), (b, ib): (T, usize)) -> (T, usize) {
    let take = (b > a) | b.is_nan();
    (if take { b } else { a }, if take { ib } else { ia })
}

/// Max over each `kernel` window of `x` (`[N, C, H, W]`, windows `stride` apart, the plane
/// padded by `padding` on each side), and the flat position (`ih * W + iw`) each came
/// from: outputs `[N, C, Ho, Wo]`. Planes run in parallel; NaN wins (as in PyTorch), and
/// among equal values the first.
///
/// ```
/// use tapegrad_kernels::pool::max_pool2d;
/// let x = [1.0f32, 5.0, 2.0, 3.0];
/// let (values, positions) = max_pool2d(&x, [1, 1, 2, 2], (1, 1), (2, 2), (2, 2), (0, 0));
/// assert_eq!((values, positions), (vec![5.0], vec![1]));
/// ```
pub fn max_pool2d<T: MaxPool2x2>(
    x: &[T],
    [n, c, h, w]: [usize; 4],
    (ho, wo): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
) -> (Vec<T>, Vec<i64>) {
    let plane_out = ho * wo;
    let len = n * c * plane_out;
    if len == 0 {
        return (vec![], vec![]);
    }
    assert!(x.len() >= n * c * h * w, "max_pool2d: the input holds fewer than N C H W values");
    // Each plane's outputs are cleared by the task that writes them, just before, while they
    // are in its cache: not in a serial pass over both buffers first.
    let mut values: Vec<T> = Vec::with_capacity(len);
    let mut indices: Vec<i64> = Vec::with_capacity(len);
    let windows = |((vals, idxs), plane): ((&mut [T], &mut [i64]), &[T])| {
        run_widest(Windows {
            plane,
            vals,
            idxs,
            size: (h, w),
            out: (ho, wo),
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
        });
    };
    let two_by_two = |((vals, idxs), plane): ((&mut [T], &mut [i64]), &[T])| {
        T::forward_plane(plane, (h, w), vals, idxs);
    };
    let parallel = crate::parallel::start_parallel(x.len());
    let per_task = (n * c / rayon::current_num_threads()).max(1);
    let (value_slots, index_slots) =
        (&mut values.spare_capacity_mut()[..len], &mut indices.spare_capacity_mut()[..len]);
    let mut run = |f: &PlaneFn<'_, T>| {
        let on_plane = |((vals, idxs), plane): PlaneSlots<'_, T>| {
            f(((cleared(vals, T::ZERO), cleared(idxs, 0)), plane))
        };
        if parallel {
            value_slots
                .par_chunks_mut(plane_out)
                .zip(index_slots.par_chunks_mut(plane_out))
                .zip(x.par_chunks(h * w))
                .with_min_len(per_task)
                .for_each(on_plane);
        } else {
            value_slots
                .chunks_mut(plane_out)
                .zip(index_slots.chunks_mut(plane_out))
                .zip(x.chunks(h * w))
                .for_each(on_plane);
        }
    };
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0) {
        run(&two_by_two);
    } else {
        run(&windows);
    }
    // SAFETY: the planes (`n c` of them: the input holds as many, asserted above) cover the
    // first `len` slots of both buffers, and each plane's slots were cleared before its
    // writer ran.
    unsafe {
        values.set_len(len);
        indices.set_len(len);
    }
    (values, indices)
}

/// Outputs of a row taken this many at a time: independent chains of comparisons, one per
/// output, that the compiler turns into vector lanes (one output at a time, each window is
/// a chain of dependent selects).
const LANES: usize = 16;

/// One plane pooled: `out` rows and columns of windows `kernel` in size, `stride` apart,
/// over a plane of `size` padded by `padding` on each side. Windows that lie inside the
/// plane (all of them without padding) go a group of a row's outputs at a time; the
/// others, at the borders, are clipped to the plane one at a time. Both scan a window in
/// the same order, so which path an output takes changes nothing.
struct Windows<'a, T> {
    plane: &'a [T],
    vals: &'a mut [T],
    idxs: &'a mut [i64],
    size: (usize, usize),
    out: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
}

impl<T: Real> Windows<'_, T> {
    /// The columns `lo..hi` of outputs whose windows lie inside the plane's columns.
    fn inside_columns(&self) -> (usize, usize) {
        let ((_, w), (_, wo), (_, kw), (_, sw), (_, pw)) =
            (self.size, self.out, self.kernel, self.stride, self.padding);
        if w + pw < kw {
            return (0, 0);
        }
        let lo = pw.div_ceil(sw).min(wo);
        (lo, ((w + pw - kw) / sw + 1).clamp(lo, wo))
    }

    /// The window of output `(oh, ow)` clipped to the plane: its maximum and position.
    #[inline(always)]
    fn clipped(&self, oh: usize, ow: usize) -> (T, usize) {
        let ((h, w), (kh, kw), (sh, sw), (ph, pw)) =
            (self.size, self.kernel, self.stride, self.padding);
        let h0 = (oh * sh) as isize - ph as isize;
        let (hs, he) = (h0.max(0) as usize, ((h0 + kh as isize) as usize).min(h));
        let w0 = (ow * sw) as isize - pw as isize;
        let (ws, we) = (w0.max(0) as usize, ((w0 + kw as isize) as usize).min(w));
        let mut max = (self.plane[hs * w + ws], hs * w + ws);
        for ih in hs..he {
            let row = &self.plane[ih * w..ih * w + we];
            for (iw, &v) in row.iter().enumerate().skip(ws) {
                max = pick(max, (v, ih * w + iw));
            }
        }
        max
    }

    /// Outputs `ow..ow + N` of row `oh`, whose windows lie inside the plane (their rows
    /// start at `row`), as `N` independent lanes.
    #[inline(always)]
    fn group<const N: usize>(&mut self, row: usize, (oh, ow): (usize, usize)) {
        let (w, wo) = (self.size.1, self.out.1);
        let ((kh, kw), sw, pw) = (self.kernel, self.stride.1, self.padding.1);
        let plane = self.plane;
        // The group's windows start at column ow sw - pw >= 0 and the last ends inside the
        // plane.
        let first = row + ow * sw - pw;
        let last = first + (N - 1) * sw + (kh - 1) * w + kw - 1;
        assert!(last < plane.len(), "max_pool2d: a window outside its plane");
        let mut best: [T; N] = std::array::from_fn(|l| plane[first + l * sw]);
        let mut at: [usize; N] = std::array::from_fn(|l| first + l * sw);
        for i in 0..kh {
            for j in 0..kw {
                let origin = first + i * w + j;
                for l in 0..N {
                    let p = origin + l * sw;
                    // SAFETY: p <= last < plane.len() (asserted above): i < kh, j < kw,
                    // l < N.
                    let v = unsafe { *plane.get_unchecked(p) };
                    (best[l], at[l]) = pick((best[l], at[l]), (v, p));
                }
            }
        }
        let at_out = oh * wo + ow;
        self.vals[at_out..at_out + N].copy_from_slice(&best);
        for (slot, &p) in self.idxs[at_out..at_out + N].iter_mut().zip(&at) {
            *slot = p as i64;
        }
    }
}

impl<T: Real> WidestLoop for Windows<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(mut self) {
        let ((h, w), (ho, wo), kh, sh, ph) =
            (self.size, self.out, self.kernel.0, self.stride.0, self.padding.0);
        let (lo, hi) = self.inside_columns();
        for oh in 0..ho {
            let top = (oh * sh) as isize - ph as isize;
            let rows_inside = top >= 0 && top as usize + kh <= h;
            let mut ow = 0;
            // Border columns before the inside ones (all of them in a border row).
            let inside_start = if rows_inside { lo } else { wo };
            while ow < inside_start {
                let (v, p) = self.clipped(oh, ow);
                self.vals[oh * wo + ow] = v;
                self.idxs[oh * wo + ow] = p as i64;
                ow += 1;
            }
            if rows_inside {
                let row = top as usize * w;
                while ow + LANES <= hi {
                    self.group::<LANES>(row, (oh, ow));
                    ow += LANES;
                }
                if ow + LANES / 2 <= hi {
                    self.group::<{ LANES / 2 }>(row, (oh, ow));
                    ow += LANES / 2;
                }
            }
            // What is left of the row: fewer than a group inside, and the border after.
            while ow < wo {
                let (v, p) = self.clipped(oh, ow);
                self.vals[oh * wo + ow] = v;
                self.idxs[oh * wo + ow] = p as i64;
                ow += 1;
            }
        }
    }
}

/// One plane's output slots (values, positions) and its input plane.
type PlaneSlots<'a, T> =
    ((&'a mut [std::mem::MaybeUninit<T>], &'a mut [std::mem::MaybeUninit<i64>]), &'a [T]);

/// The gradient of max pooling: each output gradient `g` (`planes` planes of `plane_out`)
/// added at the input position `idx` it was taken from, into `planes` planes of
/// `plane_in` zeros.
///
/// ```
/// use tapegrad_kernels::pool::max_pool2d_scatter;
/// assert_eq!(max_pool2d_scatter(&[1.0f32, 2.0], &[3, 3], 1, 4, 2), vec![0.0, 0.0, 0.0, 3.0]);
/// ```
///
/// # Panics
/// If a position lies outside its plane.
pub fn max_pool2d_scatter<T: Real>(
    g: &[T],
    idx: &[i64],
    planes: usize,
    plane_in: usize,
    plane_out: usize,
) -> Vec<T> {
    // Each plane is cleared just before its gradients land, while it is in cache: one pass
    // over memory instead of a zeroed allocation and then the scatter. (A position outside
    // its plane panics.)
    let per_task = (planes / rayon::current_num_threads()).max(1);
    crate::parallel::written_in_chunks(planes * plane_in, plane_in, per_task, |p, out| {
        let at = p * plane_out..(p + 1) * plane_out;
        for (&i, &v) in idx[at.clone()].iter().zip(&g[at]) {
            out[i as usize] += v;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{max_pool2d, max_pool2d_scatter, pick};

    /// Max pooling by its definition: each window's positions inside the plane scanned in
    /// row-major order, `pick`ing (padding is never picked).
    fn by_definition(
        x: &[f32],
        [h, w]: [usize; 2],
        (ho, wo): (usize, usize),
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> (Vec<f32>, Vec<i64>) {
        let mut out = (vec![], vec![]);
        for plane in x.chunks(h * w) {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut max: Option<(f32, usize)> = None;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (r, c) = (
                                (oh * sh + i) as isize - ph as isize,
                                (ow * sw + j) as isize - pw as isize,
                            );
                            if r < 0 || c < 0 || r as usize >= h || c as usize >= w {
                                continue;
                            }
                            let p = r as usize * w + c as usize;
                            max = Some(match max {
                                None => (plane[p], p),
                                Some(m) => pick(m, (plane[p], p)),
                            });
                        }
                    }
                    let max = max.expect("every window holds a position of the plane");
                    out.0.push(max.0);
                    out.1.push(max.1 as i64);
                }
            }
        }
        out
    }

    /// Windows taken a group of outputs at a time along each row give what one window at a
    /// time gives: values and positions, with ties (first kept) and NaN (wins), for rows of
    /// fewer outputs than a group, whole groups and groups plus a remainder, overlapping
    /// and spaced windows, one and two dimensions, with and without padding.
    #[test]
    fn windows_in_groups_equal_the_definition() {
        let cases = [
            // (h, w), (kh, kw), (sh, sw), (ph, pw)
            ((1, 8000), (1, 4), (1, 4), (0, 0)),
            ((1, 100), (1, 3), (1, 1), (0, 0)),
            ((1, 70), (1, 5), (1, 2), (0, 0)),
            ((9, 40), (3, 3), (2, 2), (0, 0)),
            ((7, 50), (3, 2), (3, 3), (0, 0)),
            ((5, 12), (2, 3), (1, 3), (0, 0)),
            ((33, 35), (1, 1), (1, 1), (0, 0)),
            ((56, 56), (3, 3), (2, 2), (1, 1)),
            ((20, 75), (3, 5), (1, 2), (1, 2)),
            ((3, 40), (3, 3), (1, 1), (1, 0)),
            ((1, 90), (1, 7), (1, 3), (0, 3)),
            ((4, 4), (3, 3), (2, 2), (1, 1)),
        ];
        for ((h, w), (kh, kw), (sh, sw), (ph, pw)) in cases {
            let (ho, wo) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
            let planes = 3;
            // Few distinct values, so windows hold ties; a NaN here and there.
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| if i % 97 == 13 { f32::NAN } else { ((i * 7919) % 11) as f32 - 5.0 })
                .collect();
            let (kernel, stride, padding) = ((kh, kw), (sh, sw), (ph, pw));
            let got = max_pool2d(&x, [1, planes, h, w], (ho, wo), kernel, stride, padding);
            let want = by_definition(&x, [h, w], (ho, wo), kernel, stride, padding);
            let case = format!("{h}x{w} by {kh}x{kw} every {sh}x{sw} padded {ph}x{pw}");
            assert_eq!(got.1, want.1, "positions, {case}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0), "values, {case}");
        }
    }

    #[test]
    fn the_scatter_fills_every_plane() {
        for &(planes, plane_in) in &[(3, 16), (64, 4096), (1, 1)] {
            let plane_out = plane_in / 4 + 1;
            // Leave non-zero values in freed memory of the size the scatter allocates.
            drop(vec![f32::NAN; planes * plane_in]);
            let idx: Vec<i64> =
                (0..planes * plane_out).map(|o| ((o * 7919) % plane_in) as i64).collect();
            let g: Vec<f32> = (0..planes * plane_out).map(|o| (o % 13) as f32 - 6.0).collect();
            let mut want = vec![0.0f32; planes * plane_in];
            for (o, (&i, &v)) in idx.iter().zip(&g).enumerate() {
                want[o / plane_out * plane_in + i as usize] += v;
            }
            let got = max_pool2d_scatter(&g, &idx, planes, plane_in, plane_out);
            assert_eq!(got, want, "{planes} planes of {plane_in}");
        }
    }
}
