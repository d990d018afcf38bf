//! Numerically delicate ops stay finite at extreme logits (±1e4), in value and gradient.

use tapegrad_ops::functional::{self, LossOptions};
use tapegrad_ops::{Reduction, TensorOps};
use tapegrad_tape::{DType, Tensor};

fn all_finite(t: &Tensor) -> bool {
    t.to_vec::<f64>().iter().all(|v| v.is_finite())
}

fn extreme(dtype: DType) -> Tensor {
    Tensor::from_vec(vec![1e4f64, -1e4, 0.0, 1e4, 1e4, -1e4], &[2, 3]).to_dtype(dtype).requires_grad()
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
        let loss = functional::cross_entropy_with(&x, &probs, &LossOptions::default()).unwrap();
        assert!(loss.item().is_finite());
        loss.backward();
        assert!(all_finite(&x.grad().unwrap()));
    }
}

#[test]
fn binary_cross_entropy_with_logits_at_extreme_logits() {
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::from_vec(vec![1e4f64, -1e4, 1e4, -1e4], &[4]).to_dtype(dtype).requires_grad();
        let y = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], &[4]).to_dtype(dtype);
        let loss = functional::binary_cross_entropy_with_logits(&x, &y, Reduction::None);
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
