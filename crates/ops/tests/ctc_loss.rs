//! `F::ctc_loss` against PyTorch's values and gradients (computed by PyTorch 2.15 in float64:
//! tools/ctc_loss_reference.py -> fixtures/ctc_loss.json), and its errors. Central
//! differences of every order are in the op registry (`tests/common`).

use serde_json::Value;
use tapegrad_ops::functional::{ctc_loss_with, try_ctc_loss_with};
use tapegrad_ops::prelude::*;
use tapegrad_ops::{CTCLoss, Reduction, where_};
use tapegrad_tape::{DType, Tensor};

fn fixture() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ctc_loss.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

/// A loss from the fixture: a number, or the string "inf".
fn loss_value(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| {
        assert_eq!(v.as_str(), Some("inf"));
        f64::INFINITY
    })
}

/// `2 sin(0.37 k + 0.5)` for k = 0.., shaped `[T, N, C]`, as a leaf that requires grad.
fn logits(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let k = Tensor::arange_dtype(0.0, n as f64, 1.0, DType::F64);
    let shape: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    (k.mul_scalar(0.37) + 0.5).sin().mul_scalar(2.0).reshape(&shape).detach().requires_grad()
}

fn assert_loss(got: &Tensor, want: &Value, what: &str) {
    let want: Vec<f64> = want.as_array().unwrap().iter().map(loss_value).collect();
    let got = got.to_vec::<f64>();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let close = if w.is_finite() { (g - w).abs() <= 1e-12 * w.abs().max(1.0) } else { g == w };
        assert!(close, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn matches_pytorch() {
    let data = fixture();
    let mut checked = 0;
    for (name, case) in data["cases"].as_object().unwrap() {
        let (t, c) = (case["T"].as_u64().unwrap() as usize, case["C"].as_u64().unwrap() as usize);
        let batch = case["N"].as_u64().map(|n| n as usize);
        let (input_lengths, target_lengths) =
            (usizes(&case["input_lengths"]), usizes(&case["target_lengths"]));
        let targets = match case["targets"].as_array().unwrap().as_slice() {
            rows @ [Value::Array(_), ..] => {
                let flat: Vec<i64> = rows.iter().flat_map(usizes).map(|v| v as i64).collect();
                Tensor::from_vec(flat, &[rows.len(), rows[0].as_array().unwrap().len()])
            }
            flat => {
                let flat: Vec<i64> = flat.iter().map(|v| v.as_i64().unwrap()).collect();
                let n = flat.len();
                Tensor::from_vec(flat, &[n])
            }
        };
        let blank = case["blank"].as_u64().unwrap() as usize;
        for (key, zero_infinity) in [("plain", false), ("zero_infinity", true)] {
            let want = &case[key];
            let what = format!("{name} ({key})");
            let x = logits(&[t, batch.unwrap_or(1), c]);
            let log_probs = match batch {
                Some(_) => x.log_softmax(2),
                None => x.reshape(&[t as isize, c as isize]).log_softmax(1),
            };
            let loss = CTCLoss::new().blank(blank).zero_infinity(zero_infinity);
            let call = |reduction| {
                ctc_loss_with(
                    &log_probs,
                    &targets,
                    &input_lengths,
                    &target_lengths,
                    loss.clone().reduction(reduction),
                )
            };
            for (reduction, key) in
                [(Reduction::None, "none"), (Reduction::Sum, "sum"), (Reduction::Mean, "mean")]
            {
                assert_loss(&call(reduction), &want[key], &format!("{what} {key}"));
            }
            let each = call(Reduction::None).reshape(&[-1]);
            let weights = Tensor::arange_dtype(0.0, each.numel() as f64, 1.0, DType::F64)
                .mul_scalar(0.5)
                .add_scalar(1.0);
            let finite = each.lt(&Tensor::full_dtype(&[1], f64::INFINITY, DType::F64));
            (&where_(&finite, &each, &Tensor::zeros_dtype(&[1], DType::F64)) * &weights)
                .sum()
                .backward();
            let grad = x.grad().unwrap().to_vec::<f64>();
            for (i, (g, w)) in grad.iter().zip(want["logits_grad"].as_array().unwrap()).enumerate()
            {
                match w.as_f64() {
                    Some(w) => assert!((g - w).abs() <= 1e-12, "{what} gradient [{i}]: {g} vs {w}"),
                    // PyTorch's is NaN for a sequence without an alignment; the loss is
                    // infinite and constant there, so ours is 0.
                    None => assert_eq!(*g, 0.0, "{what} gradient [{i}] of an impossible target"),
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}

#[test]
fn single_precision_agrees_with_double() {
    let x = logits(&[9, 3, 6]);
    let targets = Tensor::from_vec(vec![1i64, 2, 2, 5, 3, 3, 1, 4, 0], &[3, 3]);
    let (inputs, lengths) = ([9, 8, 7], [3, 3, 2]);
    let double = ctc_loss_with(&x.log_softmax(2), &targets, &inputs, &lengths, Reduction::None);
    let xf = x.to_dtype(DType::F32).detach().requires_grad();
    let single = ctc_loss_with(&xf.log_softmax(2), &targets, &inputs, &lengths, Reduction::None);
    assert_eq!(single.dtype(), DType::F32);
    for (s, d) in single.to_vec::<f64>().iter().zip(double.to_vec::<f64>()) {
        assert!((s - d).abs() <= 1e-5 * d.abs(), "{s} vs {d}");
    }
    double.sum().backward();
    single.sum().backward();
    for (s, d) in xf.grad().unwrap().to_vec::<f64>().iter().zip(x.grad().unwrap().to_vec::<f64>()) {
        assert!((s - d).abs() <= 1e-5, "gradient {s} vs {d}");
    }
}

#[test]
fn a_log_probability_of_minus_infinity_is_a_class_never_emitted() {
    // Class 2 masked out at every step: targets using it are impossible, others unaffected.
    let mut values = vec![(1.0f64 / 3.0).ln(); 4 * 3];
    values.iter_mut().skip(2).step_by(3).for_each(|v| *v = f64::NEG_INFINITY);
    let log_probs = Tensor::from_vec(values, &[4, 1, 3]).requires_grad();
    let each = CTCLoss::new().reduction(Reduction::None);
    let uses_two = Tensor::from_vec(vec![2i64], &[1, 1]);
    assert_eq!(each.forward(&log_probs, &uses_two, &[4], &[1]).item(), f64::INFINITY);
    let loss = each.forward(&log_probs, &Tensor::from_vec(vec![1i64], &[1, 1]), &[4], &[1]);
    assert!(loss.item().is_finite());
    loss.backward();
    let grad = log_probs.grad().unwrap().to_vec::<f64>();
    assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    assert!(grad.iter().skip(2).step_by(3).all(|&g| g == 0.0), "{grad:?}");
}

#[test]
fn sequences_without_steps_have_only_the_empty_alignment() {
    let log_probs = Tensor::zeros_dtype(&[3, 2, 4], DType::F64).requires_grad();
    let targets = Tensor::from_vec(vec![1i64, 0], &[2, 1]);
    let each = CTCLoss::new().reduction(Reduction::None);
    let loss = each.forward(&log_probs, &targets, &[0, 0], &[1, 0]);
    assert_eq!(loss.to_vec::<f64>(), [f64::INFINITY, 0.0]);
    let mixed = each.forward(&log_probs, &targets, &[3, 0], &[1, 0]);
    assert_eq!(mixed.to_vec::<f64>()[1], 0.0);
    mixed.sum().backward();
    let grad = log_probs.grad().unwrap().to_vec::<f64>();
    // Sequence 1 reads nothing, so only sequence 0's columns have a gradient.
    assert!(grad.chunks(4).skip(1).step_by(2).all(|row| row.iter().all(|&g| g == 0.0)));
}

#[test]
fn bad_arguments_are_errors_that_say_what_was_wrong() {
    let log_probs = Tensor::zeros(&[4, 2, 3]);
    let targets = Tensor::from_vec(vec![1i64, 2, 2, 1], &[2, 2]);
    let loss = CTCLoss::new();
    let message = |r: tapegrad_tape::Result<Tensor>| r.unwrap_err().to_string();
    let call = |lp: &Tensor, t: &Tensor, i: &[usize], l: &[usize]| {
        message(try_ctc_loss_with(lp, t, i, l, loss.clone()))
    };
    assert!(call(&Tensor::zeros(&[4]), &targets, &[4, 4], &[2, 2]).contains("[T, N, C]"));
    assert!(call(&log_probs, &targets.to_dtype(DType::F32), &[4, 4], &[2, 2]).contains("i64"));
    assert!(call(&log_probs, &targets, &[4], &[2, 2]).contains("input_lengths"));
    assert!(call(&log_probs, &targets, &[4, 5], &[2, 2]).contains("input_lengths[1] is 5"));
    assert!(call(&log_probs, &targets, &[4, 4], &[2, 3]).contains("target_lengths[1] is 3"));
    let flat = Tensor::from_vec(vec![1i64, 2, 2], &[3]);
    assert!(call(&log_probs, &flat, &[4, 4], &[2, 2]).contains("sum(target_lengths)"));
    let out_of_range = Tensor::from_vec(vec![1i64, 3, 2, 1], &[2, 2]);
    assert!(
        call(&log_probs, &out_of_range, &[4, 4], &[2, 2]).contains("label 1 of sequence 0 is 3")
    );
    let negative = Tensor::from_vec(vec![1i64, 2, -1, 1], &[2, 2]);
    assert!(call(&log_probs, &negative, &[4, 4], &[2, 2]).contains("is -1"));
    let blank = message(loss.clone().blank(3).try_forward(&log_probs, &targets, &[4, 4], &[2, 2]));
    assert!(blank.contains("blank 3"), "{blank}");
    let is_blank =
        message(loss.clone().blank(2).try_forward(&log_probs, &targets, &[4, 4], &[2, 2]));
    assert!(is_blank.contains("other than the blank (2)"), "{is_blank}");
    let overflowing = [usize::MAX, 2];
    assert!(call(&log_probs, &flat, &[4, 4], &overflowing).contains("more than usize holds"));
    // Labels past a sequence's length are not read.
    let padded = Tensor::from_vec(vec![1i64, 2, 2, -7], &[2, 2]);
    assert!(try_ctc_loss_with(&log_probs, &padded, &[4, 4], &[2, 1], loss).is_ok());
}

/// The kernels (value, and gradient without a graph) and the recursion as recorded ops
/// (value inside a dual level, gradient with `create_graph`) agree, with sequences of
/// different lengths, one without steps and one no alignment reaches.
#[test]
fn the_kernels_agree_with_the_recorded_ops() {
    use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    use tapegrad_tape::{GradOptions, grad as gradients};
    let targets = Tensor::from_vec(vec![1i64, 2, 2, 3, 3, 1, 4, 1, 1, 2, 2, 4], &[4, 3]);
    let (inputs, lengths) = ([9, 6, 0, 3], [3, 2, 0, 3]); // the last needs 4 steps
    for dtype in [DType::F64, DType::F32] {
        let limit = if dtype == DType::F64 { 1e-12 } else { 2e-5 };
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            assert_eq!(a.shape(), b.shape(), "{what}");
            for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
                let same = x == &y || (x - y).abs() <= limit * (1.0 + y.abs());
                assert!(same, "{dtype} {what}: {x} vs {y}");
            }
        };
        let log_probs = logits(&[10, 4, 5]).detach().to_dtype(dtype).log_softmax(2);
        let each = CTCLoss::new().reduction(Reduction::None);
        let direct = each.forward(&log_probs, &targets, &inputs, &lengths);
        assert!(!direct.tracks_grad());
        let composed = {
            let _level = dual_level();
            let dual = make_dual(&log_probs, &log_probs.ones_like());
            unpack_dual(&each.forward(&dual, &targets, &inputs, &lengths)).primal
        };
        close(&direct, &composed, "losses");
        assert_eq!(direct.to_vec::<f64>()[3], f64::INFINITY);
        let leaf = log_probs.clone().requires_grad();
        let weights = Tensor::from_vec(vec![0.5, -1.5, 2.0, 1.0], &[4]).to_dtype(dtype);
        let gradient = |create_graph: bool| {
            let loss = each.clone().zero_infinity(true).forward(&leaf, &targets, &inputs, &lengths);
            let options = GradOptions::new()
                .grad_outputs(vec![weights.clone().requires_grad()])
                .create_graph(create_graph);
            let found = gradients(&[&loss], &[&leaf], options)[0].clone().unwrap();
            assert_eq!(found.tracks_grad(), create_graph);
            found.detach()
        };
        let (plain, recorded) = (gradient(false), gradient(true));
        close(&plain, &recorded, "gradient");
        // Nothing past a sequence's input length, nor for the unreachable or empty ones.
        let g = plain.to_vec::<f64>();
        for (t, row) in g.chunks(4 * 5).enumerate() {
            for (n, &input) in inputs.iter().enumerate() {
                let read = t < input && n != 3;
                let zero = row[n * 5..][..5].iter().all(|&v| v == 0.0);
                assert_eq!(zero, !read, "{dtype} step {t} sequence {n}");
            }
        }
    }
}

/// NaN log-probabilities give a NaN loss and gradient, with or without `zero_infinity`:
/// a diverged model is not taken for an impossible target.
#[test]
fn nan_stays_nan() {
    let mut values = vec![(0.25f64).ln(); 3 * 2 * 4];
    values[5] = f64::NAN; // step 0, sequence 1, class 1
    let targets = Tensor::from_vec(vec![1i64, 2, 1, 2], &[2, 2]);
    for zero_infinity in [false, true] {
        let log_probs = Tensor::from_vec(values.clone(), &[3, 2, 4]).requires_grad();
        let each = CTCLoss::new().reduction(Reduction::None).zero_infinity(zero_infinity);
        let loss = each.forward(&log_probs, &targets, &[3, 3], &[2, 2]);
        let loss_values = loss.to_vec::<f64>();
        assert!(loss_values[0].is_finite() && loss_values[1].is_nan(), "{loss_values:?}");
        loss.sum().backward();
        let grad = log_probs.grad().unwrap().to_vec::<f64>();
        assert!(grad.iter().any(|g| g.is_nan()), "{grad:?}");
    }
}
