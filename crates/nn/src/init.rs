//! Initialisers (PyTorch's `torch.nn.init`), drawing from the seeded generator of
//! `manual_seed`. Each returns a new f32 tensor of the given shape.

use tapegrad_ops::{linalg, prelude::*};
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

/// A nonlinearity whose recommended gain [`calculate_gain`] gives (PyTorch's names).
///
/// ```
/// use tapegrad_nn::init::{Nonlinearity, calculate_gain};
/// assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// No nonlinearity, a convolution or a transposed one: gain 1.
    Linear,
    /// Gain 1.
    Sigmoid,
    /// Gain 5/3.
    Tanh,
    /// Gain `sqrt(2)`.
    Relu,
    /// Leaky ReLU with this negative slope (PyTorch's default is 0.01): gain
    /// `sqrt(2 / (1 + slope^2))`.
    LeakyRelu(f64),
    /// Gain 3/4 (PyTorch's choice for self-normalising networks).
    Selu,
}

/// The factor PyTorch recommends scaling an initialiser's standard deviation by for a layer
/// followed by `nonlinearity` (`torch.nn.init.calculate_gain`): the `gain` of
/// [`xavier_uniform`], [`xavier_normal`] and [`orthogonal`].
///
/// ```
/// use tapegrad_nn::init::{Nonlinearity, calculate_gain};
/// assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
/// assert_eq!(calculate_gain(Nonlinearity::LeakyRelu(1.0)), 1.0);
/// ```
pub fn calculate_gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// A (semi-)orthogonal matrix times `gain` (PyTorch's `torch.nn.init.orthogonal_`), for a
/// shape of at least two dimensions read as `[rows, everything else]`: orthonormal rows
/// when there are fewer rows than columns, orthonormal columns otherwise. Drawn as PyTorch
/// does, uniformly among such matrices: the QR factorization of a standard normal matrix,
/// each column of `Q` signed by `R`'s diagonal. Panics for fewer than two dimensions.
///
/// ```
/// use tapegrad_nn::init::orthogonal;
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let w = orthogonal(&[3, 5], 1.0); // orthonormal rows: W Wᵀ = I
/// let gram = w.matmul(&w.transpose(0, 1));
/// assert!((&gram - &Tensor::eye(3)).abs().max().item() < 1e-6);
/// ```
#[track_caller]
pub fn orthogonal(shape: &[usize], gain: f64) -> Tensor {
    assert!(
        shape.len() >= 2,
        "orthogonal: needs a shape of at least 2 dimensions, got {shape:?} (at {})",
        std::panic::Location::caller()
    );
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    if rows * cols == 0 {
        return Tensor::zeros(shape);
    }
    let wide = rows < cols;
    let normal = Tensor::randn_dtype(&[rows, cols], tapegrad_tape::DType::F64);
    let tall = if wide { normal.transpose(0, 1) } else { normal };
    let (q, r) = linalg::qr(&tall);
    let signs = r.diagonal(0, 0, 1).sign();
    let q = &q * &signs.unsqueeze(0);
    let q = if wide { q.transpose(0, 1) } else { q };
    let dims: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    q.mul_scalar(gain).to_dtype(tapegrad_tape::DType::F32).contiguous().reshape(&dims)
}

/// Normal with the given mean and standard deviation, truncated to `[a, b]` (absolute
/// bounds, as PyTorch's `torch.nn.init.trunc_normal_`, whose defaults are `-2` and `2`):
/// drawn by the inverse of the normal distribution function from a uniform draw between
/// the bounds' probabilities, so narrow or one-sided intervals cost no more than wide ones.
/// Panics unless `std > 0` and `a < b`.
///
/// ```
/// let t = tapegrad_nn::init::trunc_normal(&[1000], 0.0, 0.02, -0.04, 0.04);
/// assert!(t.to_vec::<f32>().iter().all(|v| (-0.04..=0.04).contains(v)));
/// ```
#[track_caller]
pub fn trunc_normal(shape: &[usize], mean: f64, std: f64, a: f64, b: f64) -> Tensor {
    assert!(
        std > 0.0 && a < b,
        "trunc_normal: needs std > 0 and a < b, got std {std}, a {a}, b {b} (at {})",
        std::panic::Location::caller()
    );
    // Standardized bounds. Above the mean the distribution function rounds to 1 (past
    // about 8 deviations the interval has no width), so the draw is made in the mirrored
    // interval below, where it keeps its digits, and mirrored back.
    let (low, high) = ((a - mean) / std, (b - mean) / std);
    let mirrored = low > 0.0;
    let (low, high) = if mirrored { (-high, -low) } else { (low, high) };
    let cdf = |z: f64| 0.5 * libm::erfc(-z / std::f64::consts::SQRT_2);
    let uniform = Tensor::uniform_dtype(shape, cdf(low), cdf(high), tapegrad_tape::DType::F64);
    let values: Vec<f32> = uniform
        .to_vec::<f64>()
        .into_iter()
        .map(|p| {
            let z = standard_normal_quantile(p);
            (mean + std * if mirrored { -z } else { z }).clamp(a, b) as f32
        })
        .collect();
    Tensor::from_vec(values, shape)
}

/// `x` with `Φ(x) = p` for the standard normal distribution function `Φ`: Acklam's
/// rational approximation (relative error 1e-9), then two steps of Halley's method on
/// `Φ(x) - p` to full precision. `±inf` at 0 and 1.
fn standard_normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let poly = |coefficients: &[f64], x: f64| coefficients.iter().fold(0.0, |acc, &c| acc * x + c);
    let tail = |q: f64| {
        let s = (-2.0 * q.ln()).sqrt();
        poly(&C, s) / (poly(&D, s) * s + 1.0)
    };
    let mut x = if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        poly(&A, r) * q / (poly(&B, r) * r + 1.0)
    };
    for _ in 0..2 {
        let error = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - p;
        let u = error * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
        let step = u / (1.0 + x * u / 2.0);
        // Deep in a tail (p below about 1e-300) the density underflows: keep the estimate.
        if step.is_finite() {
            x -= step;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::standard_normal_quantile;

    #[test]
    fn the_normal_quantile_inverts_the_distribution_function_to_full_precision() {
        let cdf = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        for p in [1e-300, 1e-30, 1e-10, 0.001, 0.02425, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999, 1.0 - 1e-10]
        {
            let x = standard_normal_quantile(p);
            let relative = (cdf(x) - p).abs() / p.min(1.0 - p);
            assert!(relative < 1e-12, "p {p}: x {x}, relative error {relative}");
        }
        assert_eq!(standard_normal_quantile(0.5), 0.0);
        assert!(standard_normal_quantile(1e-320).is_finite());
        assert_eq!(standard_normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(standard_normal_quantile(1.0), f64::INFINITY);
    }
}
