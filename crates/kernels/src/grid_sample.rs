//! Sampling images at arbitrary points (`grid_sample`'s value and both of its gradients),
//! straight from contiguous buffers: images `[n, c, h, w]`, sampling points `[n, points, 2]`
//! (x then y, each from -1 to 1 across the image), sampled values `[n, c, points]`.
//!
//! Points are taken sixteen at a time: a block is located (pixel positions, neighbours,
//! weights) by loops without branches on the points, which compile to vector code in the
//! copies [`run_widest`] makes, and then every channel reads the block's neighbours with one
//! gather per neighbour and vector of points. Work is split by images and blocks of
//! channels (or runs of points, for the grid's gradient), so that every buffer a task writes
//! is one contiguous run, and each value is summed in the same order at any thread count.

use rayon::prelude::*;

use crate::Real;
use crate::simd::{WidestLoop, run_widest};

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
        assert!(
            h.max(w) <= MAX_SIDE,
            "grid_sample {what}: an image of {h} x {w} pixels (sides up to {MAX_SIDE})"
        );
        if let Some(len) = image {
            assert_eq!(len, n * c * h * w, "grid_sample {what}: image buffer size");
        }
        assert_eq!(grid, n * points * 2, "grid_sample {what}: grid buffer size");
        if let Some(len) = values {
            assert_eq!(len, n * c * points, "grid_sample {what}: sampled buffer size");
        }
    }
}

/// The longest side of an image the kernels take: pixel positions are whole numbers of
/// `i32` up to the side plus one.
///
/// ```
/// assert_eq!(tapegrad_kernels::grid_sample::MAX_SIDE, i32::MAX as usize - 2);
/// ```
pub const MAX_SIDE: usize = i32::MAX as usize - 2;

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
    let clamped = if p < T::ZERO {
        T::ZERO
    } else if p > last {
        last
    } else {
        p
    }; // NaN stays
    let moving = (p > T::ZERO) & (p < last);
    (clamped, if moving { slope } else { T::ZERO })
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
        run_widest(SampleTask { image, grid, out: run, sizes, how });
    });
    out
}

/// Per point of a block, along one axis of an image: the whole pixel at or before the
/// position (the nearest one, for nearest sampling), as an integer and a value, and whether
/// it and the next pixel lie inside.
struct Axis<T> {
    low: [i32; BLOCK],
    low_value: [T; BLOCK],
    inside: [[bool; BLOCK]; 2],
}

impl<T: Real> Axis<T> {
    #[inline(always)]
    fn of(positions: &[T; BLOCK], size: usize, nearest: bool) -> Self {
        let (size, lowest) = (T::from_count(size), T::round_from(-2.0));
        let highest = size + T::ONE;
        let mut axis =
            Axis { low: [0; BLOCK], low_value: [T::ZERO; BLOCK], inside: [[false; BLOCK]; 2] };
        for (i, &p) in positions.iter().enumerate() {
            // Outside -2..=size+1 no neighbour lies inside either way: clamped there (NaN
            // to -2), every position converts to a small integer.
            let v = if p >= lowest { if p <= highest { p } else { highest } } else { lowest };
            let low = if nearest { v.round_ties_even() } else { v.floor() };
            let next = low + T::ONE;
            axis.low[i] = low.widen() as i32;
            axis.low_value[i] = low;
            axis.inside[0][i] = (low >= T::ZERO) & (low < size);
            axis.inside[1][i] = (next >= T::ZERO) & (next < size);
        }
        axis
    }
}

/// Points located together: a block's worth of gathers per channel.
const BLOCK: usize = 16;

/// A block of points located: for neighbour `k` of point `i`, its offset in a plane (0 when
/// outside, so that every read is in bounds), whether it is inside, and its weight.
struct Located<T> {
    at: [[usize; BLOCK]; 4],
    inside: [[bool; BLOCK]; 4],
    weight: [[T; BLOCK]; 4],
    by_x: [[T; BLOCK]; 4],
    by_y: [[T; BLOCK]; 4],
    slope: [[T; BLOCK]; 2],
    /// Pixels in a plane: every offset in `at` is below it.
    plane: usize,
}

impl<T: Real> Located<T> {
    /// The points of `grid` (up to [`BLOCK`] pairs) located. Each step is a loop over the
    /// whole block without branches on the points, so that it compiles to vector code
    /// (in the copies [`run_widest`] makes, where `floor` and rounding are instructions).
    /// `MOVES`: whether to work out how the weights move with the point (`by_x`, `by_y`),
    /// which only the grid's gradient needs.
    #[inline(always)]
    fn block<const MOVES: bool>(grid: &[T], Sizes { h, w, .. }: Sizes, how: Sampling) -> Self {
        let zeros = [T::ZERO; BLOCK];
        let (mut gx, mut gy) = (zeros, zeros);
        for (i, g) in grid.chunks_exact(2).take(BLOCK).enumerate() {
            (gx[i], gy[i]) = (g[0], g[1]);
        }
        let (mut x, mut y, mut slope_x, mut slope_y) = (zeros, zeros, zeros, zeros);
        for i in 0..BLOCK {
            (x[i], slope_x[i]) = to_pixel(gx[i], w, how);
            (y[i], slope_y[i]) = to_pixel(gy[i], h, how);
        }
        let (column, row) = (Axis::of(&x, w, how.nearest), Axis::of(&y, h, how.nearest));
        let mut located = Located {
            at: [[0; BLOCK]; 4],
            inside: [[false; BLOCK]; 4],
            weight: [zeros; 4],
            by_x: [zeros; 4],
            by_y: [zeros; 4],
            slope: [slope_x, slope_y],
            plane: h * w,
        };
        let corners = [(false, false), (true, false), (false, true), (true, true)];
        for (k, &(right, below)) in corners.iter().enumerate().take(if how.nearest { 1 } else { 4 })
        {
            let step = right as i64 + if below { w as i64 } else { 0 };
            for i in 0..BLOCK {
                let inside = column.inside[right as usize][i] & row.inside[below as usize][i];
                let offset = row.low[i] as i64 * w as i64 + column.low[i] as i64 + step;
                located.inside[k][i] = inside;
                located.at[k][i] = if inside { offset as usize } else { 0 };
            }
        }
        if how.nearest {
            located.weight[0] = [T::ONE; BLOCK];
            located.slope = [zeros; 2];
            return located;
        }
        for i in 0..BLOCK {
            // The distances to the far side, as PyTorch's weights: (x1 - x) for the left
            // neighbour, (x - x0) for the right.
            let (east, west) = (x[i] - column.low_value[i], column.low_value[i] + T::ONE - x[i]);
            let (south, north) = (y[i] - row.low_value[i], row.low_value[i] + T::ONE - y[i]);
            let weights = [west * north, east * north, west * south, east * south];
            for (k, weight) in weights.into_iter().enumerate() {
                located.weight[k][i] = weight;
            }
            if MOVES {
                let by_x = [-north, north, -south, south];
                let by_y = [-west, -east, west, east];
                for k in 0..4 {
                    located.by_x[k][i] = by_x[k];
                    located.by_y[k][i] = by_y[k];
                }
            }
        }
        located
    }

    /// `row[i]`: the `K` neighbours of point `i` read from `src`, times their weights,
    /// summed in order (what lies outside adds nothing): one gather per neighbour for a
    /// vector of points.
    #[inline(always)]
    fn read<const K: usize>(&self, src: &[T], row: &mut [T]) {
        assert!(row.len() <= BLOCK && src.len() >= self.plane);
        for (i, value) in row.iter_mut().enumerate() {
            let mut acc = T::ZERO;
            for k in 0..K {
                // SAFETY: every offset in `at` is below `self.plane` (`block` stores an
                // offset only for a neighbour inside the image, 0 otherwise, and the plane
                // is not empty), and `src` holds at least `self.plane` values (asserted).
                let v = unsafe { *src.get_unchecked(self.at[k][i]) };
                acc += if self.inside[k][i] { v * self.weight[k][i] } else { T::ZERO };
            }
            *value = acc;
        }
    }

    /// `dst[at] += weight g[i]` for the `K` neighbours inside of each point `i`.
    #[inline(always)]
    fn spread<const K: usize>(&self, g: &[T], dst: &mut [T]) {
        for (i, &g) in g.iter().enumerate().take(BLOCK) {
            for k in 0..K {
                if self.inside[k][i] {
                    dst[self.at[k][i]] += self.weight[k][i] * g;
                }
            }
        }
    }

    /// `sums[i] += g[i] (how the sampled value moves with x, with y)` for the four
    /// neighbours of each point `i`, read from `src`.
    #[inline(always)]
    fn moves(&self, src: &[T], g: &[T], sums: &mut [[T; BLOCK]; 2]) {
        assert!(g.len() <= BLOCK && src.len() >= self.plane);
        for (i, &g) in g.iter().enumerate() {
            let (mut dx, mut dy) = (T::ZERO, T::ZERO);
            for k in 0..4 {
                // SAFETY: as in `read`.
                let v = unsafe { *src.get_unchecked(self.at[k][i]) };
                // An outside neighbour adds nothing, even where a point at infinity makes
                // its weight's derivative infinite.
                let inside = self.inside[k][i];
                dx += if inside { v * self.by_x[k][i] } else { T::ZERO };
                dy += if inside { v * self.by_y[k][i] } else { T::ZERO };
            }
            sums[0][i] += g * dx;
            sums[1][i] += g * dy;
        }
    }
}

/// One task of [`sample`]: a block of channels of one image.
struct SampleTask<'a, T> {
    image: &'a [T],
    grid: &'a [T],
    out: &'a mut [T],
    sizes: Sizes,
    how: Sampling,
}

impl<T: Real> WidestLoop for SampleTask<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let SampleTask { image, grid, out, sizes, how } = self;
        let (plane, points) = (sizes.h * sizes.w, sizes.points);
        // A block of points at a time, all the task's channels: each point is located
        // once, then read channel by channel.
        for (first, block) in (0..points).step_by(BLOCK).zip(grid.chunks(2 * BLOCK)) {
            let located = Located::block::<false>(block, sizes, how);
            let len = block.len() / 2;
            for (src, row) in image.chunks_exact(plane).zip(out.chunks_exact_mut(points)) {
                let row = &mut row[first..first + len];
                if how.nearest {
                    located.read::<1>(src, row);
                } else {
                    located.read::<4>(src, row);
                }
            }
        }
    }
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
    if points == 0 {
        return out;
    }
    let work = n * c * points * if how.nearest { 1 } else { 4 };
    by_image_and_channels(&mut out, sizes, plane, work, |b, channels, run| {
        let grad = &grad[(b * c + channels.start) * points..(b * c + channels.end) * points];
        let grid = &grid[b * points * 2..(b + 1) * points * 2];
        run_widest(SpreadTask { grid, grad, out: run, sizes, how });
    });
    out
}

/// One task of [`image_gradient`]: a block of channels of one image.
struct SpreadTask<'a, T> {
    grid: &'a [T],
    grad: &'a [T],
    out: &'a mut [T],
    sizes: Sizes,
    how: Sampling,
}

impl<T: Real> WidestLoop for SpreadTask<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let SpreadTask { grid, grad, out, sizes, how } = self;
        let (plane, points) = (sizes.h * sizes.w, sizes.points);
        for (first, block) in (0..points).step_by(BLOCK).zip(grid.chunks(2 * BLOCK)) {
            let located = Located::block::<false>(block, sizes, how);
            let len = block.len() / 2;
            for (g, dst) in grad.chunks_exact(points).zip(out.chunks_exact_mut(plane)) {
                let g = &g[first..first + len];
                if how.nearest {
                    located.spread::<1>(g, dst);
                } else {
                    located.spread::<4>(g, dst);
                }
            }
        }
    }
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
        let grid = &grid[(b * points + first) * 2..][..dst.len()];
        run_widest(MoveTask { image, grid, grad, first, out: dst, spread: None, sizes, how });
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

/// Both gradients of [`sample`], `(image_gradient, grid_gradient)`, in one pass over the
/// points where the images are enough to share among the threads (each point located once,
/// each of its neighbours read once); the same values as the two functions give.
///
/// ```
/// use tapegrad_kernels::grid_sample::{Sampling, Sizes, gradients, grid_gradient, image_gradient};
/// let sizes = Sizes { n: 1, c: 1, h: 1, w: 2, points: 1 };
/// let (image, grid, grad) = ([1.0f64, 3.0], [0.0, 0.0], [1.0]);
/// let how = Sampling::default();
/// assert_eq!(
///     gradients(&image, &grid, &grad, sizes, how),
///     (image_gradient(&grid, &grad, sizes, how), grid_gradient(&image, &grid, &grad, sizes, how))
/// );
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `sizes`, or the image has no pixels.
pub fn gradients<T: Real>(
    image: &[T],
    grid: &[T],
    grad: &[T],
    sizes: Sizes,
    how: Sampling,
) -> (Vec<T>, Vec<T>) {
    sizes.check(Some(image.len()), grid.len(), Some(grad.len()), "gradients");
    let Sizes { n, c, h, w, points } = sizes;
    let work = n * c * points * 4;
    let parallel = crate::parallel::worth_it(work);
    if how.nearest || c == 0 || points == 0 || (parallel && n < 2 * rayon::current_num_threads()) {
        return (
            image_gradient(grid, grad, sizes, how),
            grid_gradient(image, grid, grad, sizes, how),
        );
    }
    let plane = h * w;
    let (mut by_image, mut by_grid) = (vec![T::ZERO; n * c * plane], vec![T::ZERO; n * points * 2]);
    let task = |b: usize, spread: &mut [T], out: &mut [T]| {
        let image = &image[b * c * plane..(b + 1) * c * plane];
        let grad = &grad[b * c * points..(b + 1) * c * points];
        let grid = &grid[b * points * 2..(b + 1) * points * 2];
        run_widest(MoveTask { image, grid, grad, first: 0, out, spread: Some(spread), sizes, how });
    };
    let (per_image, per_grid) = (c * plane, points * 2);
    if crate::parallel::start_parallel(work) {
        by_image
            .par_chunks_mut(per_image)
            .zip(by_grid.par_chunks_mut(per_grid))
            .enumerate()
            .for_each(|(b, (spread, out))| task(b, spread, out));
    } else {
        for (b, (spread, out)) in
            by_image.chunks_mut(per_image).zip(by_grid.chunks_mut(per_grid)).enumerate()
        {
            task(b, spread, out);
        }
    }
    (by_image, by_grid)
}

/// One task of [`grid_gradient`] (a run of points of one image, from point `first`), or of
/// [`gradients`] (all of an image's points, spreading its gradient as well).
struct MoveTask<'a, T> {
    image: &'a [T],
    grid: &'a [T],
    grad: &'a [T],
    first: usize,
    out: &'a mut [T],
    /// The image's gradient, `[c, h, w]`, when the task also spreads the gradient onto it
    /// (and then covers all the image's points).
    spread: Option<&'a mut [T]>,
    sizes: Sizes,
    how: Sampling,
}

impl<T: Real> WidestLoop for MoveTask<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let MoveTask { image, grid, grad, first, out, mut spread, sizes, how } = self;
        let (plane, points) = (sizes.h * sizes.w, sizes.points);
        for ((start, block), dst) in
            (first..).step_by(BLOCK).zip(grid.chunks(2 * BLOCK)).zip(out.chunks_mut(2 * BLOCK))
        {
            let located = Located::block::<true>(block, sizes, how);
            let len = block.len() / 2;
            let mut sums = [[T::ZERO; BLOCK]; 2];
            for (ch, (src, g)) in
                image.chunks_exact(plane).zip(grad.chunks_exact(points)).enumerate()
            {
                let g = &g[start..start + len];
                located.moves(src, g, &mut sums);
                if let Some(dst) = spread.as_deref_mut() {
                    located.spread::<4>(g, &mut dst[ch * plane..(ch + 1) * plane]);
                }
            }
            for (i, pair) in dst.chunks_exact_mut(2).enumerate() {
                // A clamped coordinate passes nothing on, whatever its sum (PyTorch's mask).
                for (axis, d) in pair.iter_mut().enumerate() {
                    let slope = located.slope[axis][i];
                    *d = if slope == T::ZERO { T::ZERO } else { sums[axis][i] * slope };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Sampling, Sizes, gradients, grid_gradient, image_gradient, sample};

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
    /// clamp, infinities read the border pixels, and only the clamped x is still), without
    /// a panic.
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
            let still = if how.border {
                by_grid.iter().step_by(2).all(|&g| g == 0.0)
            } else {
                by_grid.iter().all(|&g| g == 0.0)
            };
            assert!(still, "{how:?}: {by_grid:?}");
            let by_image = image_gradient(&grid, &grad, sizes, how);
            assert!(by_image.iter().all(|g| g.is_finite()), "{how:?}");
        }
    }

    /// Split across threads (by images and channels, or points) or not, and the gradients
    /// in one pass or two, every value is the same.
    #[test]
    fn a_parallel_split_gives_the_same_values() {
        for n in [3, 9] {
            let sizes = Sizes { n, c: 40, h: 30, w: 30, points: 900 };
            let wave = |len: usize, a: usize, m: usize| -> Vec<f32> {
                (0..len).map(|i| ((i * a % m) as f32 - (m / 2) as f32) * 0.1).collect()
            };
            let (image, grid, grad) =
                (wave(n * 36000, 13, 17), wave(n * 1800, 7, 23), wave(n * 36000, 3, 7));
            let how = Sampling::default();
            let all = || {
                (
                    sample(&image, &grid, sizes, how),
                    image_gradient(&grid, &grad, sizes, how),
                    grid_gradient(&image, &grid, &grad, sizes, how),
                    gradients(&image, &grid, &grad, sizes, how),
                )
            };
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let serial = one.install(all);
            let four = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
            let parallel = four.install(all);
            assert_eq!(serial, parallel, "{n} images");
            assert_eq!(serial.3, (serial.1.clone(), serial.2.clone()), "{n} images");
        }
    }

    /// No points, or no channels: empty or zero results.
    #[test]
    fn empty_sizes_give_empty_or_zero_results() {
        for (c, points) in [(0, 5), (2, 0), (0, 0)] {
            let sizes = Sizes { n: 2, c, h: 3, w: 4, points };
            let (image, grid, grad) = (
                vec![1.0f32; 2 * c * 12],
                vec![0.1f32; 2 * points * 2],
                vec![1.0f32; 2 * c * points],
            );
            for how in every_sampling() {
                assert!(sample(&image, &grid, sizes, how).is_empty());
                let (by_image, by_grid) = gradients(&image, &grid, &grad, sizes, how);
                assert_eq!(by_image, vec![0.0; 2 * c * 12]);
                assert_eq!(by_grid, vec![0.0; 2 * points * 2]);
            }
        }
    }
}
