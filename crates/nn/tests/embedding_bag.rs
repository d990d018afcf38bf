//! `nn::EmbeddingBag`: its parameter, its padding row, and its bags against a lookup
//! followed by a reduction.

use tapegrad_nn::*;
use tapegrad_ops::EmbeddingBagMode;
use tapegrad_ops::functional as F;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

#[test]
fn bags_match_a_lookup_then_a_reduction_and_padding_gets_no_gradient() {
    tapegrad_tape::manual_seed(4);
    let bag = EmbeddingBag::new(7, 5).mode(EmbeddingBagMode::Sum).padding_idx(3);
    let names: Vec<String> = bag.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
    assert_eq!(bag.weight.to_vec::<f32>()[15..20], [0.0; 5]);

    let tokens = Tensor::from_vec(vec![1i64, 3, 6, 6, 0, 2], &[2, 3]);
    let out = bag.forward(&tokens);
    // The padding row is zero, so a plain lookup summed over each row gives the same.
    let looked_up = F::embedding(&tokens, &bag.weight).sum_dim(1, false);
    let (a, b) = (out.to_vec::<f32>(), looked_up.to_vec::<f32>());
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} vs {b:?}");

    out.square().sum().backward();
    let grad = bag.weight.grad().unwrap().to_vec::<f32>();
    assert_eq!(grad[15..20], [0.0; 5], "the padding row gets no gradient");
    assert!(grad[5..10].iter().any(|&g| g != 0.0), "row 1 does");

    let maxed = EmbeddingBag::new(7, 5).mode(EmbeddingBagMode::Max);
    let flat = Tensor::from_vec(vec![2i64, 4, 5], &[3]);
    let offsets = Tensor::from_vec(vec![0i64, 1, 3], &[3]);
    let out = maxed.forward_bags(&flat, Some(&offsets), None);
    let w = maxed.weight.to_vec::<f32>();
    let expected: Vec<f32> = (0..5)
        .map(|j| w[10 + j])
        .chain((0..5).map(|j| w[20 + j].max(w[25 + j])))
        .chain([0.0; 5])
        .collect();
    assert_eq!(out.to_vec::<f32>(), expected);
}

#[test]
#[should_panic(expected = "padding_idx 7 is outside a table of 7 rows")]
fn a_padding_index_outside_the_table_panics() {
    let _ = EmbeddingBag::new(7, 2).padding_idx(7);
}
