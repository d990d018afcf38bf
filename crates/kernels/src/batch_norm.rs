//! Batch normalisation in training mode on a contiguous `[N, C, ...]` buffer, seen as
//! `[n, c, hw]`: each channel's statistics over its `n * hw` values, the normalised output,
//! and the gradient in one pass per channel.

use crate::Real;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::lane_sum;

/// Each channel's mean and (biased) variance over `x` of shape `[n, c, hw]`, summed in two
/// passes (the mean, then the squared deviations from it).
///
/// ```
/// use tapegrad_kernels::batch_norm::channel_stats;
/// // Two images, one channel of two values: 1, 3 and 5, 7.
/// let (mean, var) = channel_stats(&[1.0f64, 3.0, 5.0, 7.0], (2, 1, 2));
/// assert_eq!((mean, var), (vec![4.0], vec![5.0]));
/// ```
///
/// # Panics
/// If `x` does not hold `n * c * hw` values.
pub fn channel_stats<T: Real>(x: &[T], (n, c, hw): (usize, usize, usize)) -> (Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * hw, "channel_stats: buffer size");
    let count = T::from_count(n * hw);
    let rows = |ch: usize| (0..n).map(move |i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
    let mean: Vec<T> =
        (0..c).map(|ch| rows(ch).map(lane_sum).fold(T::ZERO, |a, s| a + s) / count).collect();
    let var = (0..c)
        .map(|ch| {
            let m = mean[ch];
            rows(ch)
                .map(|r| r.iter().map(|&v| (v - m) * (v - m)).sum::<T>())
                .fold(T::ZERO, |a, s| a + s)
                / count
        })
        .collect();
    (mean, var)
}

/// `(x - mean) * invstd * weight + bias` per channel of `x` (`[n, c, hw]`); `weight` and
/// `bias` default to 1 and 0.
///
/// ```
/// use tapegrad_kernels::batch_norm::normalize;
/// let y = normalize(&[1.0f32, 3.0], (1, 1, 2), &[2.0], &[1.0], Some(&[10.0]), Some(&[0.5]));
/// assert_eq!(y, vec![-9.5, 10.5]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn normalize<T: Real>(
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> Vec<T> {
    assert_eq!(x.len(), n * c * hw, "normalize: buffer size");
    let mut y = vec![T::ZERO; x.len()];
    for (row, (src, dst)) in x.chunks(hw.max(1)).zip(y.chunks_mut(hw.max(1))).enumerate() {
        let ch = row % c;
        let scale = invstd[ch] * weight.map_or(T::ONE, |w| w[ch]);
        let shift = bias.map_or(T::ZERO, |b| b[ch]) - mean[ch] * scale;
        run_widest(Affine { src, dst, scale, shift });
    }
    y
}

/// `dst = src * scale + shift`.
struct Affine<'a, T> {
    src: &'a [T],
    dst: &'a mut [T],
    scale: T,
    shift: T,
}

impl<T: Real> WidestLoop for Affine<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (d, &v) in self.dst.iter_mut().zip(self.src) {
            *d = v * self.scale + self.shift;
        }
    }
}

/// The gradients of [`normalize`] with batch statistics, given the output gradient `g`:
/// `(dx, dweight, dbias)` with `dx = weight invstd (g - mean(g) - xhat mean(g xhat))` per
/// channel, `dweight = sum(g xhat)`, `dbias = sum(g)`, `xhat = (x - mean) invstd`.
///
/// ```
/// use tapegrad_kernels::batch_norm::backward;
/// // A constant output gradient moves no normalised value: dx = 0, dbias = the count.
/// let (dx, dw, db) = backward(&[1.0f64; 2], &[1.0, 3.0], (1, 1, 2), &[2.0], &[1.0], None);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![0.0], vec![2.0]));
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn backward<T: Real>(
    g: &[T],
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert!(g.len() == n * c * hw && x.len() == g.len(), "batch_norm backward: buffer sizes");
    let (mut sum_g, mut sum_gx) = (vec![T::ZERO; c], vec![T::ZERO; c]);
    for (row, (gs, xs)) in g.chunks(hw.max(1)).zip(x.chunks(hw.max(1))).enumerate() {
        let ch = row % c;
        let (m, s) = (mean[ch], invstd[ch]);
        sum_g[ch] += lane_sum(gs);
        sum_gx[ch] += gs.iter().zip(xs).map(|(&g, &v)| g * ((v - m) * s)).sum::<T>();
    }
    let count = T::from_count(n * hw);
    let mut dx = vec![T::ZERO; x.len()];
    for (row, ((d, gs), xs)) in
        dx.chunks_mut(hw.max(1)).zip(g.chunks(hw.max(1))).zip(x.chunks(hw.max(1))).enumerate()
    {
        let ch = row % c;
        let k = invstd[ch] * weight.map_or(T::ONE, |w| w[ch]);
        let (mg, mgx) = (sum_g[ch] / count, sum_gx[ch] / count);
        let (m, s) = (mean[ch], invstd[ch]);
        for ((d, &g), &v) in d.iter_mut().zip(gs).zip(xs) {
            *d = k * (g - mg - (v - m) * s * mgx);
        }
    }
    (dx, sum_gx, sum_g)
}
