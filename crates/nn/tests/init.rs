//! The initialisers against the properties PyTorch's promise: orthogonality, truncation
//! bounds and the truncated distribution's moments, the gains' table, and the seed.

use tapegrad_nn::init::{self, Nonlinearity, calculate_gain};
use tapegrad_ops::prelude::*;
use tapegrad_tape::{Tensor, manual_seed};

/// The largest entry of |W Wᵀ - gain² I| (or of WᵀW, whichever is the smaller square).
fn orthogonality_error(w: &Tensor, gain: f64) -> f64 {
    let rows = w.shape()[0];
    let flat = w.reshape(&[rows as isize, -1]).to_dtype(tapegrad_tape::DType::F64);
    let cols = flat.shape()[1];
    let gram = if rows <= cols {
        flat.matmul(&flat.transpose(0, 1))
    } else {
        flat.transpose(0, 1).matmul(&flat)
    };
    let n = rows.min(cols);
    let identity = Tensor::eye_dtype(n, tapegrad_tape::DType::F64).mul_scalar(gain * gain);
    (&gram - &identity).abs().max().item()
}

#[test]
fn orthogonal_gives_orthonormal_rows_or_columns_times_the_gain() {
    for (shape, gain) in [
        (vec![64, 64], 1.0),
        (vec![100, 30], 2f64.sqrt()),
        (vec![30, 100], 1.0),
        (vec![16, 3, 3, 3], calculate_gain(Nonlinearity::Relu)), // rows 16 of 27
        (vec![64, 8, 3], 0.5),                                   // rows 64 of 24
    ] {
        let w = init::orthogonal(&shape, gain);
        assert_eq!(w.shape(), &shape[..]);
        assert_eq!(w.dtype(), tapegrad_tape::DType::F32);
        let error = orthogonality_error(&w, gain);
        assert!(error < 1e-5, "{shape:?}: |W Wᵀ - gain² I| up to {error}");
    }
}

#[test]
fn orthogonal_follows_the_seed_and_is_not_biased_in_sign() {
    manual_seed(7);
    let first = init::orthogonal(&[32, 32], 1.0).to_vec::<f32>();
    manual_seed(7);
    assert_eq!(first, init::orthogonal(&[32, 32], 1.0).to_vec::<f32>());
    // Signed by R's diagonal, the diagonal of Q is as often negative as positive (without
    // the signs it would lean to LAPACK's choice): over 64 draws of 32, 2048 entries.
    let negative = (0..64)
        .flat_map(|_| {
            let q = init::orthogonal(&[32, 32], 1.0);
            q.diagonal(0, 0, 1).to_vec::<f32>()
        })
        .filter(|&d| d < 0.0)
        .count();
    assert!((824..=1224).contains(&negative), "{negative} of 2048 diagonal entries negative");
}

#[test]
#[should_panic(expected = "at least 2 dimensions")]
fn orthogonal_needs_a_matrix() {
    init::orthogonal(&[5], 1.0);
}

#[test]
fn trunc_normal_stays_in_bounds_with_the_truncated_moments() {
    manual_seed(3);
    // Wide bounds: the normal's own mean and standard deviation.
    let wide = init::trunc_normal(&[20000], 1.0, 0.5, -10.0, 10.0).to_vec::<f32>();
    let (mean, std) = moments(&wide);
    assert!((mean - 1.0).abs() < 0.02 && (std - 0.5).abs() < 0.02, "{mean} {std}");
    // One-sided and narrow, [2, 3] of a standard normal: every draw inside, at the
    // truncated mean (φ(2) - φ(3)) / (Φ(3) - Φ(2)) = 2.3158 and deviation 0.2480.
    let narrow = init::trunc_normal(&[20000], 0.0, 1.0, 2.0, 3.0).to_vec::<f32>();
    assert!(narrow.iter().all(|v| (2.0..=3.0).contains(v)));
    let (mean, std) = moments(&narrow);
    assert!((mean - 2.3158).abs() < 0.01 && (std - 0.2480).abs() < 0.01, "{mean} {std}");
    // Far in the upper tail, [9, 10]: the draws spread over the interval (its mean is
    // (φ(9) - φ(10)) / (Φ(10) - Φ(9)) = 9.1087), not all at one bound.
    let tail = init::trunc_normal(&[20000], 0.0, 1.0, 9.0, 10.0).to_vec::<f32>();
    assert!(tail.iter().all(|v| (9.0..=10.0).contains(v)));
    let (mean, _) = moments(&tail);
    assert!((mean - 9.1087).abs() < 0.01, "{mean}");
    // The same below the mean, by symmetry.
    let (mean, _) = moments(&init::trunc_normal(&[20000], 0.0, 1.0, -10.0, -9.0).to_vec::<f32>());
    assert!((mean + 9.1087).abs() < 0.01, "{mean}");
    // PyTorch's usual call for a transformer's weights.
    let weights = init::trunc_normal(&[256, 64], 0.0, 0.02, -2.0, 2.0);
    let (_, std) = moments(&weights.to_vec::<f32>());
    assert!((std - 0.02).abs() < 0.001, "{std}");
}

#[test]
#[should_panic(expected = "a < b")]
fn trunc_normal_needs_an_interval() {
    init::trunc_normal(&[3], 0.0, 1.0, 1.0, 1.0);
}

fn moments(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn gains_are_pytorchs() {
    assert_eq!(calculate_gain(Nonlinearity::Linear), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Sigmoid), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
    assert_eq!(calculate_gain(Nonlinearity::Relu), 2f64.sqrt());
    assert_eq!(calculate_gain(Nonlinearity::LeakyRelu(0.01)), (2.0 / 1.0001f64).sqrt());
    assert_eq!(calculate_gain(Nonlinearity::Selu), 0.75);
}
