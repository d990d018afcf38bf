//! Max pooling on flat `[N, C, H, W]` buffers: the forward pass (values and the positions
//! they came from) and its gradient (a scatter to those positions).

use rayon::prelude::*;

use crate::Real;
use crate::parallel::cleared;

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
    // Without padding every window lies inside the plane: a tight loop with no clamping.
    let unpadded = |((vals, idxs), plane): ((&mut [T], &mut [i64]), &[T])| {
        for oh in 0..ho {
            for ow in 0..wo {
                let origin = oh * sh * w + ow * sw;
                let mut max = (plane[origin], origin);
                for i in 0..kh {
                    let row = &plane[origin + i * w..origin + i * w + kw];
                    for (j, &v) in row.iter().enumerate() {
                        max = pick(max, (v, origin + i * w + j));
                    }
                }
                vals[oh * wo + ow] = max.0;
                idxs[oh * wo + ow] = max.1 as i64;
            }
        }
    };
    let two_by_two = |((vals, idxs), plane): ((&mut [T], &mut [i64]), &[T])| {
        T::forward_plane(plane, (h, w), vals, idxs);
    };
    let pool_plane = |((vals, idxs), plane): ((&mut [T], &mut [i64]), &[T])| {
        for oh in 0..ho {
            let h0 = (oh * sh) as isize - ph as isize;
            let (hs, he) = (h0.max(0) as usize, ((h0 + kh as isize) as usize).min(h));
            for ow in 0..wo {
                let w0 = (ow * sw) as isize - pw as isize;
                let (ws, we) = (w0.max(0) as usize, ((w0 + kw as isize) as usize).min(w));
                let mut max = (plane[hs * w + ws], hs * w + ws);
                for ih in hs..he {
                    let row = &plane[ih * w..ih * w + we];
                    for (iw, &v) in row.iter().enumerate().skip(ws) {
                        max = pick(max, (v, ih * w + iw));
                    }
                }
                vals[oh * wo + ow] = max.0;
                idxs[oh * wo + ow] = max.1 as i64;
            }
        }
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
    } else if ph == 0 && pw == 0 {
        run(&unpadded);
    } else {
        run(&pool_plane);
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
    use super::max_pool2d_scatter;

    /// Every plane of the gradient is all zeros but the positions its outputs came from,
    /// which sum the gradients sent there (overlapping windows send several), on one thread
    /// and split across planes alike; garbage left in recycled memory never shows through.
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
