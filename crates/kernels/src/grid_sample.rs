//! Sampling images at arbitrary points (`grid_sample`'s value and both of its gradients),
//! straight from contiguous buffers: images `[n, c, h, w]`, sampling points `[n, points, 2]`
//! (x then y, each from -1 to 1 across the image), sampled values `[n, c, points]`.
//!
//! Each point is located once per task (its pixel position, its neighbours and their
//! weights), then every channel reads the same neighbours. Work is split by samples and
//! blocks of channels (or of points, for the grid's gradient), so every buffer a task writes
//! is one contiguous run, and each value is summed in the same order at any thread count.

use rayon::prelude::*;

use crate::Real;

/// How the image is read: PyTorch's `mode`, `padding_mode` and `align_corners`.
///
/// ```
/// use tapegrad_kernels::grid_sample::Sampling;
/// let bilinear = Sampling { nearest: false, border: false, align_corners: false };
/// # let _ = bilinear;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sampling {
    /// The nearest pixel (halves round to even) instead of the four around the point.
    pub nearest: bool,
    /// Positions clamped into the image (the border pixels repeat) instead of zeros
    /// outside it.
    pub border: bool,
    /// -1 and 1 are the centres of the corner pixels rather than their outer edges.
    pub align_corners: bool,
}

/// The sizes of a sampling: `n` images of `c` channels of `h` x `w` pixels, each read at
/// `points` points.
///
/// ```
/// use tapegrad_kernels::grid_sample::Sizes;
/// let sizes = Sizes { n: 2, c: 3, h: 28, w: 28, points: 14 * 14 };
/// # let _ = sizes;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Images.
    pub n: usize,
    /// Channels per image.
    pub c: usize,
    /// Rows of pixels.
    pub h: usize,
    /// Columns of pixels.
    pub w: usize,
    /// Sampling points per image.
    pub points: usize,
}

impl Sizes {
    fn check(self, image: Option<usize>, grid: usize, values: Option<usize>, what: &str) {
        let Sizes { n, c, h, w, points } = self;
        assert!(h > 0 && w > 0, "grid_sample {what}: an image of {h} x {w} pixels");
        if let Some(len) = image {
            assert_eq!(len, n * c * h * w, "grid_sample {what}: image buffer size");
        }
        assert_eq!(grid, n * points * 2, "grid_sample {what}: grid buffer size");
        if let Some(len) = values {
            assert_eq!(len, n * c * points, "grid_sample {what}: sampled buffer size");
        }
    }
}

/// A coordinate from -1..1 to pixels, and how far it moves per unit of the grid's (zero
/// where the border clamps it: PyTorch passes the gradient strictly inside the bounds).
#[inline(always)]
fn to_pixel<T: Real>(g: T, size: usize, how: Sampling) -> (T, T) {
    let (one, two) = (T::ONE, T::ONE + T::ONE);
    let (size_t, last) = (T::from_count(size), T::round_from(size as f64 - 1.0));
    let (p, slope) = if how.align_corners {
        ((g + one) / two * last, last / two)
    } else {
        (((g + one) * size_t - one) / two, size_t / two)
    };
    if !how.border {
        return (p, slope);
    }
    if p < T::ZERO {
        (T::ZERO, T::ZERO)
    } else if p > last {
        (last, T::ZERO)
    } else if p > T::ZERO && p < last {
        (p, slope)
    } else {
        (p, T::ZERO)
    }
}

/// Marks a neighbour outside the image.
const OUTSIDE: usize = usize::MAX;

/// A point's neighbours: their offsets in a plane ([`OUTSIDE`] for none), their weights,
/// and how each weight moves with the point's pixel x and y; then how the pixel position
/// moves with the grid's coordinates.
#[derive(Clone, Copy)]
struct Neighbours<T> {
    at: [usize; 4],
    weight: [T; 4],
    by_x: [T; 4],
    by_y: [T; 4],
    count: usize,
    slope: [T; 2],
}

/// `x.floor()` as an integer, for `x` from -1 up to the size of an image (no call into the
/// maths library: the baseline x86-64 target has no rounding instruction).
#[inline(always)]
fn floor(x: f64) -> i64 {
    let t = x as i64;
    t - ((t as f64) > x) as i64
}

/// `x.round_ties_even()` for `|x| < 2^52`: adding and taking away 2^52 rounds to a whole
/// number in the default rounding mode, halves to even.
#[inline(always)]
fn round_ties_even(x: f64) -> f64 {
    let big = 4503599627370496.0f64.copysign(x);
    (x + big) - big
}

#[inline(always)]
fn locate<T: Real>(gx: T, gy: T, Sizes { h, w, .. }: Sizes, how: Sampling) -> Neighbours<T> {
    let ((x, slope_x), (y, slope_y)) = (to_pixel(gx, w, how), to_pixel(gy, h, how));
    let zero = [T::ZERO; 4];
    let nowhere = Neighbours {
        at: [OUTSIDE; 4],
        weight: zero,
        by_x: zero,
        by_y: zero,
        count: 0,
        slope: [slope_x, slope_y],
    };
    let (xf, yf, wf, hf) = (x.widen(), y.widen(), w as f64, h as f64);
    if how.nearest {
        // (NaN fails every comparison, so it reads nothing.)
        if !(xf.abs() < wf + 1.0 && yf.abs() < hf + 1.0) {
            return nowhere;
        }
        let (xr, yr) = (round_ties_even(xf), round_ties_even(yf));
        if !(xr >= 0.0 && xr < wf && yr >= 0.0 && yr < hf) {
            return nowhere;
        }
        let mut weight = zero;
        weight[0] = T::ONE;
        let at = [yr as usize * w + xr as usize, OUTSIDE, OUTSIDE, OUTSIDE];
        return Neighbours { at, weight, by_x: zero, by_y: zero, count: 1, slope: [T::ZERO; 2] };
    }
    // Every neighbour lies outside unless -1 <= x < w and -1 <= y < h (NaN fails too).
    if !(xf >= -1.0 && xf < wf && yf >= -1.0 && yf < hf) {
        return nowhere;
    }
    let (x0, y0) = (floor(xf), floor(yf));
    let (x1, y1) = (x0 + 1, y0 + 1);
    let (w_i, h_i) = (w as i64, h as i64);
    let offset =
        |x: i64, y: i64, inside: bool| if inside { (y * w_i + x) as usize } else { OUTSIDE };
    // The distances to the far side, as PyTorch's weights: (x1 - x) for the left neighbour,
    // (x - x0) for the right. Order: (x0, y0), (x1, y0), (x0, y1), (x1, y1).
    let (east, west) = (x - T::round_from(x0 as f64), T::round_from(x1 as f64) - x);
    let (south, north) = (y - T::round_from(y0 as f64), T::round_from(y1 as f64) - y);
    let (left, right, top, bottom) = (x0 >= 0, x1 < w_i, y0 >= 0, y1 < h_i);
    Neighbours {
        at: [
            offset(x0, y0, left & top),
            offset(x1, y0, right & top),
            offset(x0, y1, left & bottom),
            offset(x1, y1, right & bottom),
        ],
        weight: [west * north, east * north, west * south, east * south],
        by_x: [-north, north, -south, south],
        by_y: [-west, -east, west, east],
        count: 4,
        slope: [slope_x, slope_y],
    }
}

/// `f(b, channels, run)` for every image `b` and block of its channels, `run` being that
/// block's part of `out` (`per_channel` values per channel): in parallel when `work` is
/// large, with enough blocks per image to share among the threads.
fn by_image_and_channels<T: Real>(
    out: &mut [T],
    Sizes { n, c, .. }: Sizes,
    per_channel: usize,
    work: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [T]) + Sync,
) {
    let per_image = (c * per_channel).max(1);
    if !crate::parallel::start_parallel(work) {
        for (b, run) in out.chunks_mut(per_image).enumerate() {
            f(b, 0..c, run);
        }
        return;
    }
    let blocks_per_image = (2 * rayon::current_num_threads()).div_ceil(n.max(1)).clamp(1, c.max(1));
    let channels = c.div_ceil(blocks_per_image).max(1);
    out.par_chunks_mut(per_image).enumerate().for_each(|(b, image)| {
        image.par_chunks_mut(channels * per_channel).enumerate().for_each(|(block, run)| {
            let first = block * channels;
            f(b, first..(first + channels).min(c), run);
        });
    });
}

/// The images sampled at the grid's points: `[n, c, points]`, each value its neighbours
/// times their weights, summed in order (a neighbour outside the image adds nothing).
///
/// ```
/// use tapegrad_kernels::grid_sample::{Sampling, Sizes, sample};
/// // A 1 x 2 image read halfway between its pixels' centres, and at its left edge.
/// let sizes = Sizes { n: 1, c: 1, h: 1, w: 2, points: 2 };
/// let values = sample(&[1.0f64, 3.0], &[0.0, 0.0, -1.0, 0.0], sizes, Sampling::default());
/// assert_eq!(values, vec![2.0, 0.5]); // the edge: half pixel 0, half the zeros outside
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `sizes`, or the image has no pixels.
pub fn sample<T: Real>(image: &[T], grid: &[T], sizes: Sizes, how: Sampling) -> Vec<T> {
    sizes.check(Some(image.len()), grid.len(), None, "sample");
    let Sizes { n, c, h, w, points } = sizes;
    let plane = h * w;
    let mut out = vec![T::ZERO; n * c * points];
    let work = n * c * points * if how.nearest { 1 } else { 4 };
    by_image_and_channels(&mut out, sizes, points, work, |b, channels, run| {
        let image = &image[(b * c + channels.start) * plane..(b * c + channels.end) * plane];
        let grid = &grid[b * points * 2..(b + 1) * points * 2];
        // Point by point, all the block's channels: each point is located once, and the
        // reads and writes walk along `channels.len()` rows together.
        for (p, g) in grid.chunks_exact(2).enumerate() {
            let point = locate(g[0], g[1], sizes, how);
            for (src, row) in image.chunks_exact(plane).zip(run.chunks_exact_mut(points)) {
                let mut acc = T::ZERO;
                for k in 0..point.count {
                    if point.at[k] != OUTSIDE {
                        acc += src[point.at[k]] * point.weight[k];
                    }
                }
                row[p] = acc;
            }
        }
    });
    out
}

/// The gradient of [`sample`] with respect to the images: each sampled value's gradient
/// `grad` (`[n, c, points]`) spread back onto the neighbours it was read from, by their
/// weights: `[n, c, h, w]`.
///
/// ```
/// use tapegrad_kernels::grid_sample::{Sampling, Sizes, image_gradient};
/// let sizes = Sizes { n: 1, c: 1, h: 1, w: 2, points: 2 };
/// let g = image_gradient(&[0.0f64, 0.0, -1.0, 0.0], &[1.0, 1.0], sizes, Sampling::default());
/// assert_eq!(g, vec![1.0, 0.5]);
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `sizes`, or the image has no pixels.
pub fn image_gradient<T: Real>(grid: &[T], grad: &[T], sizes: Sizes, how: Sampling) -> Vec<T> {
    sizes.check(None, grid.len(), Some(grad.len()), "image gradient");
    let Sizes { n, c, h, w, points } = sizes;
    let plane = h * w;
    let mut out = vec![T::ZERO; n * c * plane];
    let work = n * c * points * if how.nearest { 1 } else { 4 };
    by_image_and_channels(&mut out, sizes, plane, work, |b, channels, run| {
        let grad = &grad[(b * c + channels.start) * points..(b * c + channels.end) * points];
        let grid = &grid[b * points * 2..(b + 1) * points * 2];
        for (p, g) in grid.chunks_exact(2).enumerate() {
            let point = locate(g[0], g[1], sizes, how);
            for (g, dst) in grad.chunks_exact(points).zip(run.chunks_exact_mut(plane)) {
                let g = g[p];
                for k in 0..point.count {
                    if point.at[k] != OUTSIDE {
                        dst[point.at[k]] += point.weight[k] * g;
                    }
                }
            }
        }
    });
    out
}

/// Points per task of [`grid_gradient`] when it runs on several threads.
const POINTS_PER_BLOCK: usize = 256;

/// The gradient of bilinear [`sample`] with respect to the grid: `[n, points, 2]`, each
/// point's x and y moved by the channels' gradients times how the neighbours' weights move
/// (summed over the channels in order). Nearest sampling has none: zeros.
///
/// ```
/// use tapegrad_kernels::grid_sample::{Sampling, Sizes, grid_gradient};
/// // Halfway between the pixels 1 and 3 of a one-row image: moving right gains 3 - 1 per
/// // pixel (one unit of the grid's x is one pixel here); moving down fades to the zeros
/// // below, 2 per pixel, half a pixel per unit of the grid's y.
/// let sizes = Sizes { n: 1, c: 1, h: 1, w: 2, points: 1 };
/// let g = grid_gradient(&[1.0f64, 3.0], &[0.0, 0.0], &[1.0], sizes, Sampling::default());
/// assert_eq!(g, vec![2.0, -1.0]);
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `sizes`, or the image has no pixels.
pub fn grid_gradient<T: Real>(
    image: &[T],
    grid: &[T],
    grad: &[T],
    sizes: Sizes,
    how: Sampling,
) -> Vec<T> {
    sizes.check(Some(image.len()), grid.len(), Some(grad.len()), "grid gradient");
    let Sizes { n, c, h, w, points } = sizes;
    let mut out = vec![T::ZERO; n * points * 2];
    if how.nearest || points == 0 {
        return out;
    }
    let plane = h * w;
    let block = |b: usize, first: usize, dst: &mut [T]| {
        let image = &image[b * c * plane..(b + 1) * c * plane];
        let grad = &grad[b * c * points..(b + 1) * c * points];
        for (i, pair) in dst.chunks_exact_mut(2).enumerate() {
            let p = first + i;
            let g = (b * points + p) * 2;
            let point = locate(grid[g], grid[g + 1], sizes, how);
            let (mut sum_x, mut sum_y) = (T::ZERO, T::ZERO);
            for (src, grad) in image.chunks_exact(plane).zip(grad.chunks_exact(points)) {
                let (mut dx, mut dy) = (T::ZERO, T::ZERO);
                for k in 0..point.count {
                    if point.at[k] != OUTSIDE {
                        let v = src[point.at[k]];
                        dx += v * point.by_x[k];
                        dy += v * point.by_y[k];
                    }
                }
                sum_x += grad[p] * dx;
                sum_y += grad[p] * dy;
            }
            // A clamped coordinate passes nothing on, whatever its sum (PyTorch's mask).
            for (d, (sum, slope)) in
                pair.iter_mut().zip([(sum_x, point.slope[0]), (sum_y, point.slope[1])])
            {
                *d = if slope == T::ZERO { T::ZERO } else { sum * slope };
            }
        }
    };
    let run = POINTS_PER_BLOCK * 2;
    if crate::parallel::start_parallel(n * c * points * 4) {
        out.par_chunks_mut(points * 2).enumerate().for_each(|(b, image)| {
            image
                .par_chunks_mut(run)
                .enumerate()
                .for_each(|(i, dst)| block(b, i * POINTS_PER_BLOCK, dst));
        });
    } else {
        for (b, image) in out.chunks_mut(points * 2).enumerate() {
            for (i, dst) in image.chunks_mut(run).enumerate() {
                block(b, i * POINTS_PER_BLOCK, dst);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Sampling, Sizes, grid_gradient, image_gradient, sample};

    /// A small image and points inside, near the edges and outside it (none on a whole
    /// pixel, where the sampling has a kink).
    fn case() -> (Vec<f64>, Vec<f64>, Sizes) {
        let sizes = Sizes { n: 2, c: 3, h: 4, w: 5, points: 7 };
        let image = (0..2 * 3 * 4 * 5).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.3).collect();
        let grid = (0..2 * 7 * 2).map(|i| ((i * 5 % 13) as f64 - 6.0) * 0.21 + 0.0137).collect();
        (image, grid, sizes)
    }

    fn every_sampling() -> Vec<Sampling> {
        let mut all = vec![];
        for nearest in [false, true] {
            for border in [false, true] {
                for align_corners in [false, true] {
                    all.push(Sampling { nearest, border, align_corners });
                }
            }
        }
        all
    }

    /// `<grad, sample(image)>` is linear in the image, so its derivative in any pixel is
    /// the image gradient's value there, exactly; the grid's is the central difference.
    #[test]
    fn gradients_are_the_derivatives_of_the_sampled_values() {
        let (image, grid, sizes) = case();
        let weights: Vec<f64> = (0..2 * 3 * 7).map(|i| (i as f64 * 0.37).sin()).collect();
        for how in every_sampling() {
            let score = |image: &[f64], grid: &[f64]| -> f64 {
                sample(image, grid, sizes, how).iter().zip(&weights).map(|(a, b)| a * b).sum()
            };
            let by_image = image_gradient(&grid, &weights, sizes, how);
            for i in 0..image.len() {
                let mut bumped = image.clone();
                bumped[i] += 1.0;
                let change = score(&bumped, &grid) - score(&image, &grid);
                assert!((change - by_image[i]).abs() < 1e-12, "{how:?} pixel {i}");
            }
            let by_grid = grid_gradient(&image, &grid, &weights, sizes, how);
            for i in 0..grid.len() {
                let h = 1e-6;
                let (mut up, mut down) = (grid.clone(), grid.clone());
                up[i] += h;
                down[i] -= h;
                let slope = (score(&image, &up) - score(&image, &down)) / (2.0 * h);
                let want = if how.nearest { 0.0 } else { slope };
                assert!(
                    (want - by_grid[i]).abs() < 1e-6,
                    "{how:?} grid {i}: {want} vs {}",
                    by_grid[i]
                );
            }
        }
    }

    /// Points far outside, at infinity or NaN read nothing and move nothing (with the border
    /// clamp, infinities read the border pixels), without a panic.
    #[test]
    fn points_far_away_read_nothing() {
        let sizes = Sizes { n: 1, c: 2, h: 3, w: 4, points: 6 };
        let image: Vec<f64> = (0..24).map(|i| i as f64 + 1.0).collect();
        let far = [1e30, -1e30, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e16];
        let grid: Vec<f64> = far.iter().flat_map(|&x| [x, 0.0]).collect();
        let grad = vec![1.0; 12];
        for how in every_sampling() {
            let values = sample(&image, &grid, sizes, how);
            for (p, &x) in far.iter().enumerate() {
                let read = [values[p], values[6 + p]];
                if how.border && !x.is_nan() {
                    assert!(read.iter().all(|v| *v != 0.0), "{how:?} {x}: {read:?}");
                } else {
                    assert_eq!(read, [0.0, 0.0], "{how:?} {x}");
                }
            }
            let by_grid = grid_gradient(&image, &grid, &grad, sizes, how);
            assert!(by_grid.iter().step_by(2).all(|&g| g == 0.0), "{how:?}: {by_grid:?}");
            let by_image = image_gradient(&grid, &grad, sizes, how);
            assert!(by_image.iter().all(|g| g.is_finite()), "{how:?}");
        }
    }

    /// Split across threads (many images and channels) or not, every value is the same.
    #[test]
    fn a_parallel_split_gives_the_same_values() {
        let sizes = Sizes { n: 3, c: 40, h: 30, w: 30, points: 900 };
        let image: Vec<f32> =
            (0..3 * 40 * 900).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.1).collect();
        let grid: Vec<f32> = (0..3 * 900 * 2).map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1).collect();
        let grad: Vec<f32> = (0..3 * 40 * 900).map(|i| ((i * 3 % 7) as f32 - 3.0) * 0.5).collect();
        let how = Sampling::default();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let serial = one.install(|| {
            (
                sample(&image, &grid, sizes, how),
                image_gradient(&grid, &grad, sizes, how),
                grid_gradient(&image, &grid, &grad, sizes, how),
            )
        });
        let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let parallel = four.install(|| {
            (
                sample(&image, &grid, sizes, how),
                image_gradient(&grid, &grad, sizes, how),
                grid_gradient(&image, &grid, &grad, sizes, how),
            )
        });
        assert_eq!(serial, parallel);
    }
}
