//! Multi-head attention, the transformer encoder and decoder against PyTorch: the fixture
//! (tests/fixtures/transformer.safetensors, from tools/transformer_reference.py) holds
//! PyTorch's parameters and inputs and the outputs and gradients it computed in float64.
//! Each case runs in float64 (agreement to rounding) and in float32 (float32 tolerance).

mod common;

use common::{Case, DTYPES, assert_close};
use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

#[test]
fn multihead_attention_with_masks_and_weights_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "mha");
    for (dtype, tolerance) in DTYPES {
        let mut mha = MultiheadAttention::new(8, 2);
        case.load(&mut mha, dtype);
        let (q, k, v) =
            (case.input("query", dtype), case.input("key", dtype), case.input("value", dtype));
        let options = MultiheadAttentionOptions::default()
            .key_padding_mask(&case.get("key_padding_mask"))
            .attn_mask(&case.get("attn_mask").to_dtype(dtype));
        let (out, weights) = mha.forward_with(&q, &k, &v, options.clone());
        let (_, head_weights) = mha.forward_with(&q, &k, &v, options.average_attn_weights(false));
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("weights", &weights.unwrap(), &case.get("expected.weights"), tolerance);
        assert_close(
            "head weights",
            &head_weights.unwrap(),
            &case.get("expected.head_weights"),
            tolerance,
        );
        case.backward(&out);
        for (name, t) in [("query", &q), ("key", &k), ("value", &v)] {
            assert_close(name, &t.grad().unwrap(), &case.get(&format!("grad.{name}")), tolerance);
        }
        let w = mha.in_proj_weight.as_ref().unwrap().grad().unwrap();
        assert_close("in_proj_weight", &w, &case.get("grad.in_proj_weight"), tolerance);
    }
}

#[test]
fn attention_with_own_key_and_value_widths_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "mha_kv");
    for (dtype, tolerance) in DTYPES {
        let mut mha = MultiheadAttention::new(8, 2).kdim_vdim(6, 7).batch_first(true);
        case.load(&mut mha, dtype);
        let (q, k, v) =
            (case.input("query", dtype), case.input("key", dtype), case.input("value", dtype));
        let options = MultiheadAttentionOptions::default()
            .attn_mask(&case.get("attn_mask"))
            .need_weights(false);
        let (out, weights) = mha.forward_with(&q, &k, &v, options.clone());
        assert!(weights.is_none());
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        let per_head = options.need_weights(true).average_attn_weights(false);
        let (_, head_weights) = mha.forward_with(&q, &k, &v, per_head);
        assert_close(
            "head weights",
            &head_weights.unwrap(),
            &case.get("expected.head_weights"),
            tolerance,
        );
        case.backward(&out);
        assert_close("query", &q.grad().unwrap(), &case.get("grad.query"), tolerance);
        let w = mha.k_proj_weight.as_ref().unwrap().grad().unwrap();
        assert_close("k_proj_weight", &w, &case.get("grad.k_proj_weight"), tolerance);
    }
}

#[test]
fn post_norm_causal_encoder_layer_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "post");
    for (dtype, tolerance) in DTYPES {
        let mut layer = TransformerEncoderLayer::new(8, 2).dim_feedforward(16).dropout(0.0);
        case.load(&mut layer, dtype);
        let src = case.input("src", dtype);
        // PyTorch was given the causal mask itself; is_causal alone builds it here.
        let out = layer.forward_with(&src, TransformerEncoderOptions::default().is_causal(true));
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("src", &src.grad().unwrap(), &case.get("grad.src"), tolerance);
        let w = layer.linear2.weight.grad().unwrap();
        assert_close("linear2.weight", &w, &case.get("grad.linear2.weight"), tolerance);
    }
}

/// `is_causal` without returned weights reaches the attention op as its causal flag, alone
/// or with the causal mask (bool or float) it hints at; with more keys than queries as with
/// fewer, outputs and gradients are those of the explicit mask. A mask that is not causal
/// is used as it is, hint or not.
#[test]
fn causal_hints_match_the_explicit_masks() {
    for (dtype, tolerance) in DTYPES {
        for (l, s) in [(5, 5), (3, 6), (6, 3)] {
            tapegrad_tape::manual_seed(7);
            let mut mha = MultiheadAttention::new(8, 2).batch_first(true);
            mha.to_dtype(dtype);
            let q = Tensor::randn(&[2, l, 8]).to_dtype(dtype).requires_grad();
            let kv = Tensor::randn(&[2, s, 8]).to_dtype(dtype).requires_grad();
            let bits = |hide: &dyn Fn(usize, usize) -> bool| {
                let hidden: Vec<bool> = (0..l * s).map(|p| hide(p / s, p % s)).collect();
                Tensor::from_vec(hidden, &[l, s])
            };
            let causal = bits(&|i, j| j > i);
            let causal_float = tapegrad_ops::where_(
                &causal,
                &Tensor::full_dtype(&[], f64::NEG_INFINITY, dtype),
                &Tensor::zeros_dtype(&[], dtype),
            );
            let other = bits(&|i, j| j > i + 1 || (i + j) % 4 == 3);
            let run = |options: MultiheadAttentionOptions| {
                let (out, _) = mha.forward_with(&q, &kv, &kv, options.need_weights(false));
                (&out * &out).sum().backward();
                let w = mha.in_proj_weight.as_ref().unwrap();
                let got = [out.detach(), q.grad().unwrap(), kv.grad().unwrap(), w.grad().unwrap()];
                for t in [&q, &kv, w] {
                    t.zero_grad();
                }
                got
            };
            let plain = MultiheadAttentionOptions::default;
            let cases = [
                ("the flag alone", plain().is_causal(true), plain().attn_mask(&causal)),
                (
                    "the flag and the bool mask",
                    plain().is_causal(true).attn_mask(&causal),
                    plain().attn_mask(&causal),
                ),
                (
                    "the flag and the float mask",
                    plain().is_causal(true).attn_mask(&causal_float),
                    plain().attn_mask(&causal),
                ),
                (
                    "a wrong hint",
                    plain().is_causal(true).attn_mask(&other),
                    plain().attn_mask(&other),
                ),
            ];
            for (case, hinted, explicit) in cases {
                let (got, want) = (run(hinted), run(explicit));
                let names = ["out", "query grad", "key/value grad", "in_proj_weight grad"];
                for (name, (a, b)) in names.iter().zip(got.iter().zip(&want)) {
                    assert_close(&format!("{case}: {name} at L {l}, S {s}"), a, b, tolerance);
                }
            }
        }
    }
}

#[test]
fn pre_norm_encoder_stack_with_padding_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "encoder");
    for (dtype, tolerance) in DTYPES {
        let layer = || {
            TransformerEncoderLayer::new(8, 2)
                .dim_feedforward(16)
                .dropout(0.0)
                .activation(|x| x.gelu())
                .batch_first(true)
                .norm_first(true)
        };
        let mut encoder =
            TransformerEncoder::new(vec![layer(), layer()]).norm(LayerNorm::new(&[8]));
        case.load(&mut encoder, dtype);
        let src = case.input("src", dtype);
        let padding = case.get("src_key_padding_mask");
        let options = TransformerEncoderOptions::default().src_key_padding_mask(&padding);
        let out = encoder.forward_with(&src, options);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("src", &src.grad().unwrap(), &case.get("grad.src"), tolerance);
        let w = encoder.layers[0].linear1.weight.grad().unwrap();
        assert_close(
            "layers.0.linear1.weight",
            &w,
            &case.get("grad.layers.0.linear1.weight"),
            tolerance,
        );
    }
}

#[test]
fn self_attention_takes_one_product_and_agrees_with_three() {
    // One tensor passed as query, key and value takes the stacked projection at once;
    // equal copies take three products. Both must give the same values and gradients.
    let mut mha = MultiheadAttention::new(8, 2);
    mha.to_dtype(DType::F64);
    let x0 = Tensor::randn(&[4, 2, 8]).to_dtype(DType::F64);
    let x = x0.detach().requires_grad();
    let (shared, _) = mha.forward(&x, &x, &x);
    case_free_backward(&shared);
    let shared_w = mha.in_proj_weight.as_ref().unwrap().grad().unwrap();
    mha.zero_grad();
    let leaf = || x0.detach().requires_grad();
    let (q, k, v) = (leaf(), leaf(), leaf());
    let (separate, _) = mha.forward(&q, &k, &v);
    case_free_backward(&separate);
    assert_close("values", &shared, &separate, 1e-13);
    let summed = &(&q.grad().unwrap() + &k.grad().unwrap()) + &v.grad().unwrap();
    assert_close("input gradient", &x.grad().unwrap(), &summed, 1e-12);
    let separate_w = mha.in_proj_weight.as_ref().unwrap().grad().unwrap();
    assert_close("in_proj_weight gradient", &shared_w, &separate_w, 1e-12);
}

/// Backward of `sum(out * c)` for a fixed, uneven `c`.
fn case_free_backward(out: &Tensor) {
    let c: Vec<f64> = (0..out.numel()).map(|i| ((i * 7) % 13) as f64 / 13.0 - 0.4).collect();
    (out * &Tensor::from_vec(c, out.shape())).sum().backward();
}

#[test]
fn unbatched_and_batch_first_inputs_agree_with_sequence_major_batches() {
    let mut mha = MultiheadAttention::new(8, 2);
    mha.to_dtype(DType::F64);
    let (q, kv) =
        (Tensor::randn(&[5, 8]).to_dtype(DType::F64), Tensor::randn(&[3, 8]).to_dtype(DType::F64));
    let mask = Tensor::from_vec(vec![false, true, false], &[3]);
    let options = MultiheadAttentionOptions::default().key_padding_mask(&mask);
    let (single, weights) = mha.forward_with(&q, &kv, &kv, options);
    // The same as a batch of one, sequence-major ([L, 1, E]) ...
    let batch_mask = mask.reshape(&[1, 3]);
    let options = MultiheadAttentionOptions::default().key_padding_mask(&batch_mask);
    let (batched, batch_weights) =
        mha.forward_with(&q.unsqueeze(1), &kv.unsqueeze(1), &kv.unsqueeze(1), options.clone());
    assert_close("unbatched", &single, &batched.squeeze_dim(1), 1e-14);
    assert_close(
        "unbatched weights",
        &weights.unwrap(),
        &batch_weights.unwrap().squeeze_dim(0),
        1e-14,
    );
    // ... and as batch-major ([1, L, E]) with batch_first.
    mha.batch_first = true;
    let (batch_major, _) =
        mha.forward_with(&q.unsqueeze(0), &kv.unsqueeze(0), &kv.unsqueeze(0), options);
    assert_close("batch_first", &single, &batch_major.squeeze_dim(0), 1e-14);
    // And an empty batch gives an empty output.
    mha.batch_first = false;
    let empty = Tensor::zeros_dtype(&[5, 0, 8], DType::F64);
    assert_eq!(mha.forward(&empty, &empty, &empty).0.shape(), &[5, 0, 8]);
}

#[test]
fn bad_shapes_and_masks_are_errors_that_name_them() {
    let mha = MultiheadAttention::new(8, 2);
    let (q, kv) = (Tensor::randn(&[5, 3, 8]), Tensor::randn(&[4, 3, 8]));
    let error = |options: MultiheadAttentionOptions| {
        mha.try_forward_with(&q, &kv, &kv, options).unwrap_err().to_string()
    };
    let wrong_padding = Tensor::from_vec(vec![false; 5], &[1, 5]);
    let message = error(MultiheadAttentionOptions::default().key_padding_mask(&wrong_padding));
    assert!(
        message.contains("key_padding_mask of shape [1, 5] does not fit: expected [3, 4]"),
        "{message}"
    );
    let message = error(MultiheadAttentionOptions::default().attn_mask(&Tensor::zeros(&[4, 5])));
    assert!(message.contains("expected [5, 4] or [6, 5, 4]"), "{message}");
    let integer_mask = Tensor::zeros_dtype(&[5, 4], DType::I64);
    let message = error(MultiheadAttentionOptions::default().attn_mask(&integer_mask));
    assert!(message.contains("attn_mask must be bool or"), "{message}");
    let other_batch = Tensor::randn(&[4, 2, 8]);
    let message = mha
        .try_forward_with(&q, &other_batch, &other_batch, Default::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("one batch size"), "{message}");
    let result = std::panic::catch_unwind(|| MultiheadAttention::new(10, 3));
    assert!(result.is_err(), "10 features do not split into 3 heads");
    let mut no_heads = MultiheadAttention::new(8, 2);
    no_heads.num_heads = 3;
    let message =
        no_heads.try_forward_with(&q, &kv, &kv, Default::default()).unwrap_err().to_string();
    assert!(message.contains("embed_dim 8 is not divisible by num_heads 3"), "{message}");
    // The encoder checks its source before the first layer norm runs on it.
    let layer = TransformerEncoderLayer::new(8, 2).norm_first(true);
    let message = layer
        .try_forward_with(&Tensor::randn(&[4, 2, 6]), Default::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("expects a source of shape [..., 8]"), "{message}");
    let message = layer
        .try_forward_with(&Tensor::randn(&[4, 2, 8]).to_dtype(DType::F64), Default::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("dtype mismatch"), "{message}");
    let only_norm = TransformerEncoder::new(Vec::new()).norm(LayerNorm::new(&[8]));
    assert!(only_norm.try_forward_with(&Tensor::randn(&[4, 6]), Default::default()).is_err());
    // A final norm over more than the last dimension is any module's right, as in PyTorch.
    let wide_norm = TransformerEncoder::new(vec![TransformerEncoderLayer::new(8, 2)])
        .norm(LayerNorm::new(&[4, 8]));
    let out =
        wide_norm.try_forward_with(&Tensor::randn(&[4, 2, 8]).transpose(0, 1), Default::default());
    assert_eq!(out.unwrap().shape(), &[2, 4, 8]);
}

#[test]
fn attention_dropout_follows_train_and_eval() {
    let mha = MultiheadAttention::new(8, 2).dropout(0.5);
    let x = Tensor::randn(&[6, 1, 8]);
    let weights = |m: &MultiheadAttention| {
        let options = MultiheadAttentionOptions::default().average_attn_weights(false);
        m.forward_with(&x, &x, &x, options).1.unwrap().to_vec::<f32>()
    };
    mha.eval();
    let kept = weights(&mha);
    let rows: Vec<f32> = kept.chunks(6).map(|r| r.iter().sum()).collect();
    assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-5), "{rows:?}");
    // Training: each weight dropped to zero or doubled (1 / (1 - p)).
    mha.train();
    let training = weights(&mha);
    assert!(training.contains(&0.0));
    assert!(training.iter().zip(&kept).all(|(t, k)| *t == 0.0 || (t - 2.0 * k).abs() < 1e-6));
    // The encoder layer passes eval on to its attention: two evaluations agree.
    let layer = TransformerEncoderLayer::new(8, 2).dropout(0.5);
    layer.eval();
    assert_eq!(layer.forward(&x).to_vec::<f32>(), layer.forward(&x).to_vec::<f32>());
}

#[test]
fn post_norm_decoder_layer_with_causal_target_and_memory_padding_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "decoder_post");
    for (dtype, tolerance) in DTYPES {
        let mut layer = TransformerDecoderLayer::new(8, 2).dim_feedforward(16).dropout(0.0);
        case.load(&mut layer, dtype);
        let (tgt, memory) = (case.input("tgt", dtype), case.input("memory", dtype));
        let options = TransformerDecoderOptions::default()
            .tgt_is_causal(true)
            .memory_key_padding_mask(&case.get("memory_key_padding_mask"));
        let out = layer.forward_with(&tgt, &memory, options);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("tgt", &tgt.grad().unwrap(), &case.get("grad.tgt"), tolerance);
        assert_close("memory", &memory.grad().unwrap(), &case.get("grad.memory"), tolerance);
        let w = layer.multihead_attn.in_proj_weight.as_ref().unwrap().grad().unwrap();
        let name = "multihead_attn.in_proj_weight";
        assert_close(name, &w, &case.get(&format!("grad.{name}")), tolerance);
        let w = layer.linear1.weight.grad().unwrap();
        assert_close("linear1.weight", &w, &case.get("grad.linear1.weight"), tolerance);
    }
}

#[test]
fn pre_norm_encoder_decoder_transformer_matches_pytorch() {
    let case = Case::new("transformer.safetensors", "transformer");
    for (dtype, tolerance) in DTYPES {
        let mut model = Transformer::new(8, 2, 1, 2)
            .dim_feedforward(16)
            .dropout(0.0)
            .activation(|x| x.gelu())
            .batch_first(true)
            .norm_first(true);
        case.load(&mut model, dtype);
        let (src, tgt) = (case.input("src", dtype), case.input("tgt", dtype));
        let padding = case.get("src_key_padding_mask");
        let encoder = TransformerEncoderOptions::default().src_key_padding_mask(&padding);
        let decoder = TransformerDecoderOptions::default()
            .tgt_is_causal(true)
            .memory_key_padding_mask(&padding);
        let out = model.forward_with(&src, &tgt, encoder, decoder);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("src", &src.grad().unwrap(), &case.get("grad.src"), tolerance);
        assert_close("tgt", &tgt.grad().unwrap(), &case.get("grad.tgt"), tolerance);
        for (name, w) in [
            ("encoder.layers.0.linear2.weight", &model.encoder.layers[0].linear2.weight),
            (
                "decoder.layers.1.multihead_attn.out_proj.weight",
                &model.decoder.layers[1].multihead_attn.out_proj.weight,
            ),
        ] {
            assert_close(name, &w.grad().unwrap(), &case.get(&format!("grad.{name}")), tolerance);
        }
    }
}
