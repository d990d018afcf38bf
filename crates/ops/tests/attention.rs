//! Scaled dot-product attention against PyTorch 2.15 (`fixtures/sdpa.json`, written by
//! `tools/attention_reference.py` in float64 with the inputs built below and the loss
//! `sum(y * c)`): outputs and the gradients of queries, keys, values and a float mask, for
//! no mask, causal attention, a bool mask with a row that masks every key, and a float mask
//! with an explicit scale.

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
    let f64_mask = Tensor::ones_dtype(&[2, 3], tapegrad_tape::DType::F64);
    let cases = [
        (AttentionOptions::default().attn_mask(&mask).is_causal(true), "not both"),
        (AttentionOptions::default().dropout_p(1.5), "dropout_p 1.5 is outside [0, 1]"),
        (AttentionOptions::default().attn_mask(&f64_mask), "dtype mismatch"),
        // A float mask that does not broadcast to the [2, 3] scores.
        (AttentionOptions::default().attn_mask(&Tensor::ones(&[2, 7])), "broadcast"),
    ];
    for (options, message) in cases {
        let err = F::try_scaled_dot_product_attention_with(&q, &k, &v, options).unwrap_err();
        let err = err.to_string();
        assert!(err.contains(message), "{err}");
    }
    let other_length = Tensor::randn(&[4, 2]);
    let err = F::try_scaled_dot_product_attention_with(&q, &k, &other_length, Default::default());
    assert!(err.unwrap_err().to_string().contains("one sequence length"));
}

/// With the identity as values, the output is the attention weights themselves: after
/// dropout each weight is either dropped or scaled by `1 / (1 - p)`, and some are dropped.
#[test]
fn dropout_drops_or_rescales_each_weight() {
    tapegrad_tape::manual_seed(3);
    let (q, k) = (Tensor::randn(&[6, 8]), Tensor::randn(&[5, 8]));
    let identity =
        Tensor::from_vec((0..25).map(|i| if i % 6 == 0 { 1.0f32 } else { 0.0 }).collect(), &[5, 5]);
    let weights = F::scaled_dot_product_attention(&q, &k, &identity).to_vec::<f32>();
    let p = 0.4;
    let options = AttentionOptions::default().dropout_p(p);
    let dropped = F::scaled_dot_product_attention_with(&q, &k, &identity, options).to_vec::<f32>();
    let scale = 1.0 / (1.0 - p as f32);
    for (w, d) in weights.iter().zip(&dropped) {
        assert!(*d == 0.0 || (d - w * scale).abs() <= 1e-6 * scale, "{d} from weight {w}");
    }
    let zeros = dropped.iter().filter(|&&d| d == 0.0).count();
    assert!(zeros > 0 && zeros < dropped.len(), "{zeros} of {} dropped", dropped.len());
    // p = 1 drops everything (as PyTorch allows).
    let all = AttentionOptions::default().dropout_p(1.0);
    let none_left = F::scaled_dot_product_attention_with(&q, &k, &identity, all);
    assert!(none_left.to_vec::<f32>().iter().all(|&d| d == 0.0));
}

/// No keys: the output is empty along the keys and zero, with or without a mask.
#[test]
fn attention_over_no_keys_is_zero() {
    let (q, k, v) = (Tensor::randn(&[3, 4]), Tensor::zeros(&[0, 4]), Tensor::zeros(&[0, 2]));
    let masked = AttentionOptions::default()
        .attn_mask(&Tensor::zeros_dtype(&[3, 0], tapegrad_tape::DType::Bool));
    for options in [AttentionOptions::default(), masked] {
        let y = F::scaled_dot_product_attention_with(&q, &k, &v, options);
        assert_eq!((y.shape(), y.to_vec::<f32>()), (&[3, 2][..], vec![0.0; 6]));
    }
}

/// Attention written out of single ops: `where(mask, q kᵀ scale, -inf)`, softmax, times
/// `v` (for masks that leave every query a key).
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
    let scores = q.matmul(&k.transpose(-2, -1)).mul_scalar(scale);
    let hidden = Tensor::full_dtype(&[], f64::NEG_INFINITY, q.dtype());
    tapegrad_ops::where_(mask, &scores, &hidden).softmax(-1).matmul(v)
}

/// Bool masks broadcast from every shape a model passes (a key padding mask per batch, a
/// mask per query, a transposed one read across its rows) and the causal mask give what
/// the op-by-op form gives, values and gradients.
#[test]
fn masks_of_every_broadcast_shape_match_the_composed_form() {
    let (b, h, l, s, e) = (2, 3, 5, 7, 4);
    let q = input(&[b, h, l, e], 7, 13).requires_grad();
    let k = input(&[b, h, s, e], 5, 11).requires_grad();
    let v = input(&[b, h, s, 3], 3, 7).requires_grad();
    let bits = |shape: &[usize], keep: &dyn Fn(usize) -> bool| {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(keep).collect::<Vec<bool>>(), shape)
    };
    let causal = bits(&[l, s], &|p| p % s <= p / s);
    let masks = [
        ("key padding [b, 1, 1, s]", bits(&[b, 1, 1, s], &|p| p % s < 4 + p / s)),
        ("per query [l, 1]", bits(&[l, 1], &|_| true)),
        ("per head [1, h, l, s]", bits(&[1, h, l, s], &|p| (p * 5) % 3 != 0 || p % s == 0)),
        ("transposed [s, l]ᵀ", bits(&[s, l], &|p| p % l >= p / l || p / l == 0).transpose(0, 1)),
        ("causal", causal.clone()),
    ];
    let c = input(&[b, h, l, 3], 11, 17);
    for (name, mask) in masks {
        let options = if name == "causal" {
            AttentionOptions::default().is_causal(true).scale(0.3)
        } else {
            AttentionOptions::default().attn_mask(&mask).scale(0.3)
        };
        let fused = F::scaled_dot_product_attention_with(&q, &k, &v, options);
        let grads = |y: &Tensor| {
            let g = tapegrad_tape::grad(&[&(y * &c).sum()], &[&q, &k, &v], Default::default());
            g.into_iter().map(|g| g.expect("used").to_vec::<f64>()).collect::<Vec<_>>()
        };
        let want = composed(&q, &k, &v, &mask, 0.3);
        for (got, want, what) in [
            (vec![fused.to_vec::<f64>()], vec![want.to_vec::<f64>()], "y"),
            (grads(&fused), grads(&want), "gradients"),
        ] {
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() <= 1e-13 * (1.0 + w.abs()), "{name} {what}: {g} vs {w}");
            }
        }
    }
}

/// Float masks (added to the scaled scores, `-inf` hiding a key, as
/// `nn.Transformer.generate_square_subsequent_mask` makes them) of several broadcast
/// shapes give the op-by-op form's values and gradients, the mask's included.
#[test]
fn float_masks_match_the_composed_form_and_get_gradients() {
    let (b, h, l, s, e) = (2, 3, 5, 7, 4);
    let q = input(&[b, h, l, e], 7, 13).requires_grad();
    let k = input(&[b, h, s, e], 5, 11).requires_grad();
    let v = input(&[b, h, s, 3], 3, 7).requires_grad();
    let c = input(&[b, h, l, 3], 11, 17);
    let float = |shape: &[usize], value: &dyn Fn(usize) -> f64| {
        let n = shape.iter().product::<usize>();
        Tensor::from_vec((0..n).map(value).collect::<Vec<f64>>(), shape)
    };
    let hidden = f64::NEG_INFINITY;
    let masks = [
        float(&[l, s], &|p| if p % s > p / s { hidden } else { 0.0 }),
        float(&[b, 1, 1, s], &|p| if p % s >= 5 + p / s { hidden } else { 0.1 * (p % 3) as f64 }),
        float(&[s, l], &|p| 0.05 * p as f64).transpose(0, 1),
        float(&[h, l, 1], &|p| -0.2 * p as f64),
    ];
    for mask in masks {
        let mask = mask.requires_grad();
        let options = AttentionOptions::default().attn_mask(&mask).scale(0.3);
        let fused = F::scaled_dot_product_attention_with(&q, &k, &v, options);
        let scores = &q.matmul(&k.transpose(-2, -1)).mul_scalar(0.3) + &mask;
        let want = scores.softmax(-1).matmul(&v);
        let grads = |y: &Tensor| {
            let loss = (y * &c).sum();
            let g = tapegrad_tape::grad(&[&loss], &[&q, &k, &v, &mask], Default::default());
            g.into_iter().map(|g| g.expect("used").to_vec::<f64>()).collect::<Vec<_>>()
        };
        let shape = mask.shape().to_vec();
        for (got, want, what) in [
            (vec![fused.to_vec::<f64>()], vec![want.to_vec::<f64>()], "y"),
            (grads(&fused), grads(&want), "gradients"),
        ] {
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() <= 1e-13 * (1.0 + w.abs()), "{shape:?} {what}: {g} vs {w}");
            }
        }
    }
}

/// Attention without dropout runs in blocks of queries: with several blocks (and a short
/// last one), heads taken as a transposed view of `[batch, L, heads, E]`, more or fewer
/// keys than queries, without a mask, causal, with a bool key padding mask or a float
/// mask that needs no gradient, in both float types, it gives the op-by-op form's values,
/// gradients, and gradients of gradients.
#[test]
fn blocked_attention_matches_the_composed_form() {
    let kinds = ["none", "causal", "padding", "float"];
    // The mask of each kind for `[b, h, l, s]` scores, as SDPA takes it and as the
    // composed form adds it (0 or -inf, or the float values).
    let masks = |kind: &str, (b, l, s): (usize, usize, usize), dtype| {
        let hidden = f64::NEG_INFINITY;
        let added = |shape: &[usize], value: &dyn Fn(usize) -> f64| {
            let n = shape.iter().product::<usize>();
            Tensor::from_vec((0..n).map(value).collect::<Vec<f64>>(), shape).to_dtype(dtype)
        };
        match kind {
            "causal" => (None, added(&[l, s], &|p| if p % s <= p / s { 0.0 } else { hidden })),
            "padding" => {
                let keeps = |p: usize| p % s < s - 3 * (p / s);
                let bits =
                    Tensor::from_vec((0..b * s).map(keeps).collect::<Vec<_>>(), &[b, 1, 1, s]);
                (Some(bits), added(&[b, 1, 1, s], &|p| if keeps(p) { 0.0 } else { hidden }))
            }
            "float" => {
                let value =
                    |p: usize| if p % s > p / s + 2 { hidden } else { 0.01 * (p % 13) as f64 };
                let mask = added(&[l, s], &value);
                (Some(mask.clone()), mask)
            }
            _ => (None, added(&[1], &|_| 0.0)),
        }
    };
    let composed_attention = |q: &Tensor, k: &Tensor, v: &Tensor, added: &Tensor| {
        let scores = &q.matmul(&k.transpose(-2, -1)).mul_scalar(0.4) + added;
        scores.softmax(-1).matmul(v)
    };
    for dtype in [tapegrad_tape::DType::F64, tapegrad_tape::DType::F32] {
        for (b, h, l, s, e) in [(2, 3, 130, 70, 8), (1, 2, 65, 150, 4)] {
            let heads = |t: usize, a: usize, b_: usize| {
                input(&[b, t, h, e], a, b_).to_dtype(dtype).transpose(1, 2).requires_grad()
            };
            let (q, k, v) = (heads(l, 7, 13), heads(s, 5, 11), heads(s, 3, 7));
            let c = input(&[b, h, l, e], 11, 17).to_dtype(dtype);
            for kind in kinds {
                let (mask, added) = masks(kind, (b, l, s), dtype);
                let mut options =
                    AttentionOptions::default().is_causal(kind == "causal").scale(0.4);
                options.attn_mask = mask;
                let fused = F::scaled_dot_product_attention_with(&q, &k, &v, options.clone());
                let want = composed_attention(&q, &k, &v, &added);
                let tol = if dtype == tapegrad_tape::DType::F64 { 1e-12 } else { 2e-5 };
                let first = |y: &Tensor| {
                    let loss = (y * &c).sum();
                    let g = tapegrad_tape::grad(
                        &[&loss],
                        &[&q, &k, &v],
                        tapegrad_tape::GradOptions::new().create_graph(true),
                    );
                    g.into_iter().map(|g| g.expect("used")).collect::<Vec<_>>()
                };
                let (gf, gw) = (first(&fused), first(&want));
                // A second derivative: of the squared gradients' sum, to the queries.
                let second = |g: &[Tensor]| {
                    let total = g.iter().map(|g| g.square().sum()).reduce(|a, b| &a + &b).unwrap();
                    tapegrad_tape::grad(&[&total], &[&q], Default::default())[0].clone().unwrap()
                };
                let pairs = [
                    (fused.clone(), want.clone(), "y"),
                    (gf[0].clone(), gw[0].clone(), "dq"),
                    (gf[1].clone(), gw[1].clone(), "dk"),
                    (gf[2].clone(), gw[2].clone(), "dv"),
                    (second(&gf), second(&gw), "second"),
                ];
                for (got, want, what) in pairs {
                    let (got, want) = (got.to_vec::<f64>(), want.to_vec::<f64>());
                    assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= tol * (1.0 + w.abs()),
                            "{dtype:?} [{b}, {h}, {l}, {s}] {kind} {what}: {g} vs {w}"
                        );
                    }
                }
                // A plain backward with only the values requiring a gradient.
                let plain_v = v.detach().requires_grad();
                let y = F::scaled_dot_product_attention_with(
                    &q.detach(),
                    &k.detach(),
                    &plain_v,
                    options.clone(),
                );
                (&y * &c).sum().backward();
                let got = plain_v.grad().expect("a gradient").to_vec::<f64>();
                for (g, w) in got.iter().zip(gw[2].to_vec::<f64>()) {
                    assert!((g - w).abs() <= tol * (1.0 + w.abs()), "dv alone: {g} vs {w}");
                }
            }
        }
    }
}
