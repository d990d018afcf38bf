//! Numerically delicate ops stay finite at extreme logits (±1e4), in value and gradient.

use tapegrad_ops::functional;
use tapegrad_ops::{Reduction, prelude::*};
use tapegrad_tape::{DType, Tensor};

fn all_finite(t: &Tensor) -> bool {
    t.to_vec::<f64>().iter().all(|v| v.is_finite())
}

fn extreme(dtype: DType) -> Tensor {
    Tensor::from_vec(vec![1e4f64, -1e4, 0.0, 1e4, 1e4, -1e4], &[2, 3])
        .to_dtype(dtype)
        .requires_grad()
}

#[test]
fn softmax_and_log_softmax_at_extreme_logits() {
    for dtype in [DType::F32, DType::F64] {
        let x = extreme(dtype);
        let p = x.softmax(1);
        assert!(all_finite(&p));
        assert_eq!(p.to_vec::<f64>(), vec![1.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
        (&p * &Tensor::arange_dtype(0.0, 6.0, 1.0, dtype).reshape(&[2, 3])).sum().backward();
        assert!(all_finite(&x.grad().unwrap()));

        let x = extreme(dtype);
        let lp = x.log_softmax(1);
        assert!(all_finite(&lp));
        let v = lp.to_vec::<f64>();
        assert_eq!(v[0], 0.0);
        assert_eq!(v[1], -2e4);
        assert!((v[3] + 2f64.ln()).abs() < 1e-6);
        lp.sum().backward();
        assert!(all_finite(&x.grad().unwrap()));
    }
}

#[test]
fn cross_entropy_at_extreme_logits() {
    for dtype in [DType::F32, DType::F64] {
        let x = extreme(dtype);
        let target = Tensor::from_vec(vec![1i64, 2], &[2]);
        let loss = functional::cross_entropy(&x, &target);
        // Row 0 picks a logit 2e4 below the max; row 1 one 2e4 below two equal maxima.
        assert!((loss.item() - (2e4 + (2e4 + 2f64.ln())) / 2.0).abs() < 1e-2, "{loss}");
        loss.backward();
        let g = x.grad().unwrap().to_vec::<f64>();
        assert!(g.iter().all(|v| v.is_finite()));
        assert!((g[0] - 0.5).abs() < 1e-6 && (g[1] + 0.5).abs() < 1e-6, "{g:?}");

        let x = extreme(dtype);
        let probs = Tensor::full_dtype(&[2, 3], 1.0 / 3.0, dtype);
        let loss = functional::cross_entropy(&x, &probs);
        assert!(loss.item().is_finite());
        loss.backward();
        assert!(all_finite(&x.grad().unwrap()));
    }
}

#[test]
fn binary_cross_entropy_with_logits_at_extreme_logits() {
    for dtype in [DType::F32, DType::F64] {
        let x =
            Tensor::from_vec(vec![1e4f64, -1e4, 1e4, -1e4], &[4]).to_dtype(dtype).requires_grad();
        let y = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], &[4]).to_dtype(dtype);
        let loss = functional::binary_cross_entropy_with_logits_with(&x, &y, Reduction::None);
        assert_eq!(loss.to_vec::<f64>(), vec![0.0, 0.0, 1e4, 1e4]);
        loss.sum().backward();
        assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.0, 1.0, -1.0]);
    }
}

#[test]
fn logsumexp_and_sigmoid_at_extremes() {
    let x = Tensor::from_vec(vec![1e4f32, -1e4], &[2]).requires_grad();
    let l = x.logsumexp(0, false);
    assert_eq!(l.item(), 1e4);
    l.backward();
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![1.0, 0.0]);
    let s = Tensor::from_vec(vec![-1e4f32, 1e4], &[2]).sigmoid();
    assert_eq!(s.to_vec::<f32>(), vec![0.0, 1.0]);
}

/// PyTorch 2.15's values: the input gradient divides by `max(p (1 - p), 1e-12)`, so p = 0 or 1
/// gives a large finite gradient (or 0 where p equals the target) instead of `0 * inf`.
#[test]
fn binary_cross_entropy_at_probabilities_zero_and_one() {
    // sigmoid(20) is exactly 1 in f32: the target matches, and the gradient is 0 (was NaN).
    let z = Tensor::from_vec(vec![20.0f32], &[1]).requires_grad();
    let p = z.sigmoid();
    assert_eq!(p.item(), 1.0);
    let loss = functional::binary_cross_entropy(&p, &Tensor::ones(&[1]));
    assert_eq!(loss.item(), 0.0);
    loss.backward();
    assert_eq!(z.grad().unwrap().to_vec::<f32>(), vec![0.0]);

    // p = [0, 1] against y = [1, 0]: PyTorch gives 100 and -/+499999997952 in f32.
    let p = Tensor::from_vec(vec![0.0f32, 1.0], &[2]).requires_grad();
    let loss = functional::binary_cross_entropy(&p, &Tensor::from_vec(vec![1.0f32, 0.0], &[2]));
    assert_eq!(loss.item(), 100.0);
    loss.backward();
    assert_eq!(p.grad().unwrap().to_vec::<f32>(), vec![-499999997952.0, 499999997952.0]);

    // f64, summed, with the target's gradient (unclamped logs: infinite at p = 0 or 1).
    let p = Tensor::from_vec(vec![0.0f64, 1.0, 0.3, 1e-7], &[4]).requires_grad();
    let y = Tensor::from_vec(vec![1.0f64, 0.0, 0.6, 0.0], &[4]).requires_grad();
    let loss = functional::binary_cross_entropy_with(&p, &y, Reduction::Sum);
    assert!((loss.item() - 200.86505376017104).abs() < 1e-12);
    loss.backward();
    let torch_dp = [-1000000003995.8029, 1000000003995.8029, -1.4285714285714286, 1.00000010000001];
    for (ours, torch) in p.grad().unwrap().to_vec::<f64>().iter().zip(torch_dp) {
        assert!((ours - torch).abs() <= 1e-12 * torch.abs(), "{ours} vs {torch}");
    }
    let torch_dy = [f64::INFINITY, f64::NEG_INFINITY, 0.8472978603872036, 16.118095550958316];
    for (ours, torch) in y.grad().unwrap().to_vec::<f64>().iter().zip(torch_dy) {
        assert!(*ours == torch || (ours - torch).abs() <= 1e-12 * torch.abs(), "{ours} vs {torch}");
    }
}

#[test]
fn binary_cross_entropy_rejects_values_outside_zero_one() {
    let half = Tensor::from_vec(vec![0.5f32, 0.5], &[2]);
    for (p, y, what) in [
        (
            vec![0.5f32, 1.5],
            vec![1.0f32, 1.0],
            "input should be between 0 and 1, but element 1 is 1.5",
        ),
        (
            vec![f32::NAN, 0.5],
            vec![1.0, 1.0],
            "input should be between 0 and 1, but element 0 is NaN",
        ),
        (
            vec![0.5, 0.5],
            vec![1.0, -0.5],
            "target should be between 0 and 1, but element 1 is -0.5",
        ),
    ] {
        let (p, y) = (Tensor::from_vec(p, &[2]), Tensor::from_vec(y, &[2]));
        let err = functional::try_binary_cross_entropy_with(&p, &y, Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(err.contains(what) && err.contains(file!()), "{err}");
    }
    assert!(functional::try_binary_cross_entropy_with(&half, &half, Reduction::Mean).is_ok());

    // Past the first few elements, in f64, and through a transposed view: the element named
    // is the view's.
    let mut values = vec![0.25f64; 300];
    values[35 * 3 + 2] = 1.0 + 1e-12; // row 35, column 2: (2, 35) of the view
    let p = Tensor::from_vec(values, &[100, 3]).transpose(0, 1);
    let y = Tensor::full_dtype(&[3, 100], 0.5, DType::F64);
    let err = functional::try_binary_cross_entropy_with(&p, &y, Reduction::Sum).unwrap_err();
    assert!(err.to_string().contains("element 235 is 1.000000000001"), "{err}");
}

/// A plain backward takes the binary cross-entropies' derivatives in one pass each; with
/// `create_graph` they are recorded ops. Both give the same bits, at BCE's clamp (p = 0 or
/// 1), at extreme logits and away from them.
#[test]
fn binary_cross_entropy_gradients_without_and_with_create_graph_agree() {
    use tapegrad_tape::{GradOptions, grad};
    for (dtype, logits) in
        [DType::F32, DType::F64].into_iter().flat_map(|d| [(d, false), (d, true)])
    {
        let mut p: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.618_034).fract()).collect();
        p[..4].copy_from_slice(&[0.0, 1.0, 1e-30, 1.0 - 1e-7]);
        let y: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.414_214).fract()).collect();
        let p = Tensor::from_vec(p, &[10, 100]).to_dtype(dtype);
        // Logits from -40 to 40 (sigmoid saturates in f32 past about 17).
        let p = if logits { (&p - 0.5).mul_scalar(80.0) } else { p }.requires_grad();
        let y = Tensor::from_vec(y, &[10, 100]).to_dtype(dtype).requires_grad();
        let grads = |create_graph: bool| {
            let loss = match logits {
                false => functional::binary_cross_entropy_with(&p, &y, Reduction::Mean),
                true => functional::binary_cross_entropy_with_logits(&p, &y),
            };
            let options = GradOptions::new().create_graph(create_graph);
            grad(&[&loss], &[&p, &y], options)
                .into_iter()
                .map(|g| g.unwrap().to_vec::<f64>())
                .collect::<Vec<_>>()
        };
        let (fused, recorded) = (grads(false), grads(true));
        for (a, b) in fused.iter().zip(&recorded) {
            let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype:?}, logits {logits}: {:?} vs {:?}", &a[..4], &b[..4]);
        }
        assert!(fused[0][..2].iter().all(|v| v.is_finite()), "the input's slope is clamped");
    }
}
