//! Scaled dot-product attention against PyTorch 2.15 (`fixtures/sdpa.json`, computed in
//! float64 with the inputs built below and the loss `sum(y * c)`): outputs and the
//! gradients of queries, keys, values and a float mask, for no mask, causal attention, a
//! bool mask with a row that masks every key, and a float mask with an explicit scale.

use serde_json::Value;
use tapegrad_ops::{AttentionOptions, functional as F, prelude::*};
use tapegrad_tape::Tensor;

/// The fixture's inputs: `((i * a) mod b) / b - 0.5` in row-major order.
fn input(shape: &[usize], a: usize, b: usize) -> Tensor {
    let n = shape.iter().product::<usize>();
    let values = (0..n).map(|i| ((i * a) % b) as f64 / b as f64 - 0.5).collect();
    Tensor::from_vec(values, shape)
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn assert_close(got: &Tensor, expected: &Value, what: &str) {
    let (got, expected) = (got.to_vec::<f64>(), numbers(expected));
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() <= 1e-12 * (1.0 + e.abs()), "{what}[{i}]: {g} against {e}");
    }
}

#[test]
fn attention_matches_pytorch() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/sdpa.json")).expect("valid fixture");
    let bool_mask = Tensor::from_vec(
        [[true, false, true, false, true], [false; 5], [true; 5]].concat(),
        &[3, 5],
    );
    let float_mask = input(&[3, 5], 2, 9).requires_grad();
    for (name, case) in fixture["cases"].as_object().expect("cases") {
        let q = input(&[2, 3, 4], 7, 13).requires_grad();
        let k = input(&[2, 5, 4], 5, 11).requires_grad();
        let v = input(&[2, 5, 3], 3, 7).requires_grad();
        let options = match name.as_str() {
            "plain" => AttentionOptions::default(),
            "causal" => AttentionOptions::default().is_causal(true),
            "bool" => AttentionOptions::default().attn_mask(&bool_mask),
            "float" => AttentionOptions::default().attn_mask(&float_mask).scale(0.7),
            other => panic!("unknown case {other}"),
        };
        let y = F::scaled_dot_product_attention_with(&q, &k, &v, options);
        (&y * &input(&[2, 3, 3], 11, 17)).sum().backward();
        assert_close(&y, &case["y"], &format!("{name}: y"));
        for (t, key) in [(&q, "gq"), (&k, "gk"), (&v, "gv")] {
            assert_close(&t.grad().expect("a gradient"), &case[key], &format!("{name}: {key}"));
        }
        if name == "float" {
            assert_close(&float_mask.grad().expect("a gradient"), &case["gm"], "float: gm");
        }
    }
}

#[test]
fn bad_arguments_are_errors_naming_the_op() {
    let (q, k, v) = (Tensor::randn(&[2, 4]), Tensor::randn(&[3, 4]), Tensor::randn(&[3, 2]));
    let mask = Tensor::ones(&[2, 3]);
    let cases = [
        (AttentionOptions::default().attn_mask(&mask).is_causal(true), "not both"),
        (AttentionOptions::default().dropout_p(1.0), "dropout_p 1 is outside [0, 1)"),
        (
            AttentionOptions::default()
                .attn_mask(&Tensor::ones_dtype(&[2, 3], tapegrad_tape::DType::F64)),
            "dtype mismatch",
        ),
    ];
    for (options, message) in cases {
        let err = F::try_scaled_dot_product_attention_with(&q, &k, &v, options).unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with("scaled_dot_product_attention") && err.contains(message), "{err}");
    }
    let err = F::try_scaled_dot_product_attention_with(
        &q,
        &k,
        &Tensor::randn(&[4, 2]),
        AttentionOptions::default(),
    );
    assert!(err.unwrap_err().to_string().contains("one sequence length"));
}

#[test]
fn dropout_zeroes_weights_and_zero_probability_is_the_identity() {
    tapegrad_tape::manual_seed(3);
    let (q, k, v) = (Tensor::randn(&[4, 8]), Tensor::randn(&[6, 8]), Tensor::ones(&[6, 1]));
    let plain = F::scaled_dot_product_attention(&q, &k, &v);
    let no_drop = F::scaled_dot_product_attention_with(
        &q,
        &k,
        &v,
        AttentionOptions::default().dropout_p(0.0),
    );
    assert_eq!(plain.to_vec::<f32>(), no_drop.to_vec::<f32>());
    // With values of one, each output is the sum of the kept weights, scaled by 1 / (1 - p):
    // not every output stays 1.
    let dropped = F::scaled_dot_product_attention_with(
        &q,
        &k,
        &v,
        AttentionOptions::default().dropout_p(0.5),
    );
    assert!(dropped.to_vec::<f32>().iter().any(|&y| (y - 1.0).abs() > 1e-3));
}
