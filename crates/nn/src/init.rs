//! Initialisers (PyTorch's `torch.nn.init`), drawing from the seeded generator of
//! `manual_seed`. Each returns a new f32 tensor of the given shape.

use tapegrad_tape::Tensor;

/// Fan-in and fan-out of a weight shape as PyTorch computes them (`[out, in, k...]`).
///
/// ```
/// assert_eq!(tapegrad_nn::init::fans(&[16, 3, 5, 5]), (75, 400));
/// ```
pub fn fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    (fan_in, fan_out)
}

/// Uniform in `[low, high)`.
///
/// ```
/// let t = tapegrad_nn::init::uniform(&[100], -1.0, 1.0);
/// assert!(t.to_vec::<f32>().iter().all(|v| (-1.0..1.0).contains(v)));
/// ```
pub fn uniform(shape: &[usize], low: f64, high: f64) -> Tensor {
    Tensor::uniform(shape, low, high)
}

/// Normal with the given mean and standard deviation.
///
/// ```
/// let t = tapegrad_nn::init::normal(&[1000], 5.0, 0.1);
/// let mean: f32 = t.to_vec::<f32>().iter().sum::<f32>() / 1000.0;
/// assert!((mean - 5.0).abs() < 0.05);
/// ```
pub fn normal(shape: &[usize], mean: f64, std: f64) -> Tensor {
    Tensor::randn(shape).mul_scalar(std).add_scalar(mean)
}

/// Xavier/Glorot uniform: bound `gain * sqrt(6 / (fan_in + fan_out))`.
///
/// ```
/// let t = tapegrad_nn::init::xavier_uniform(&[10, 20], 1.0);
/// let bound = (6.0f32 / 30.0).sqrt();
/// assert!(t.to_vec::<f32>().iter().all(|v| v.abs() <= bound));
/// ```
pub fn xavier_uniform(shape: &[usize], gain: f64) -> Tensor {
    let (fi, fo) = fans(shape);
    let bound = gain * (6.0 / (fi + fo) as f64).sqrt();
    uniform(shape, -bound, bound)
}

/// Xavier/Glorot normal: std `gain * sqrt(2 / (fan_in + fan_out))`.
///
/// ```
/// assert_eq!(tapegrad_nn::init::xavier_normal(&[4, 4], 1.0).shape(), &[4, 4]);
/// ```
pub fn xavier_normal(shape: &[usize], gain: f64) -> Tensor {
    let (fi, fo) = fans(shape);
    normal(shape, 0.0, gain * (2.0 / (fi + fo) as f64).sqrt())
}

/// Kaiming/He uniform for a leaky-ReLU slope `a` (0 for ReLU), fan-in mode: bound
/// `sqrt(6 / ((1 + a^2) fan_in))`. With `a = sqrt(5)` this is PyTorch's default for
/// `Linear` and `Conv` weights.
///
/// ```
/// let t = tapegrad_nn::init::kaiming_uniform(&[8, 25], 5f64.sqrt());
/// assert!(t.to_vec::<f32>().iter().all(|v| v.abs() <= 0.2));
/// ```
pub fn kaiming_uniform(shape: &[usize], a: f64) -> Tensor {
    let (fi, _) = fans(shape);
    let bound = (6.0 / ((1.0 + a * a) * fi.max(1) as f64)).sqrt();
    uniform(shape, -bound, bound)
}

/// Kaiming/He normal, fan-in mode: std `sqrt(2 / ((1 + a^2) fan_in))`.
///
/// ```
/// assert_eq!(tapegrad_nn::init::kaiming_normal(&[8, 25], 0.0).shape(), &[8, 25]);
/// ```
pub fn kaiming_normal(shape: &[usize], a: f64) -> Tensor {
    let (fi, _) = fans(shape);
    normal(shape, 0.0, (2.0 / ((1.0 + a * a) * fi.max(1) as f64)).sqrt())
}
