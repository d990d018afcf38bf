//! `F::embedding_bag` against PyTorch's values and gradients (computed by PyTorch 2.15 in
//! float64: tools/embedding_bag_reference.py), and its errors.

use tapegrad_ops::functional::{
    EmbeddingBagMode, EmbeddingBagOptions, embedding_bag, embedding_bag_with,
    try_embedding_bag_with,
};
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

/// `sin(0.5 k - 3)` for k = 0..18, as a 6 x 3 table.
fn table() -> Tensor {
    let k = Tensor::arange_dtype(0.0, 18.0, 1.0, DType::F64);
    (k.mul_scalar(0.5) - 3.0).sin().reshape(&[6, 3]).detach().requires_grad()
}

fn ints(values: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape)
}

/// `sum(out * (1, 2, 3, ...))` backward, so each output element has its own weight.
fn backward_weighted(out: &Tensor) {
    let g = Tensor::arange_dtype(1.0, 1.0 + out.numel() as f64, 1.0, DType::F64);
    (&out.reshape(&[-1]) * &g).sum().backward();
}

fn assert_close(got: &Tensor, want: &[f64], what: &str) {
    let got = got.to_vec::<f64>();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-11, "{what}[{i}]: {g} vs {w}");
    }
}

const FLAT: [i64; 7] = [4, 0, 2, 2, 5, 1, 3];

#[test]
fn mean_of_each_row_of_a_2d_input() {
    let w = table();
    let out = embedding_bag(&ints(&[0, 2, 5, 1, 1, 3], &[2, 3]), &w);
    assert_eq!(out.shape(), [2, 3]);
    assert_close(
        &out,
        &[
            -0.372883375242,
            -0.359323626721,
            -0.257788922529,
            -0.332498328868,
            -0.257881514263,
            -0.120126311035,
        ],
        "out",
    );
    backward_weighted(&out);
    let third = 1.0 / 3.0;
    assert_close(
        &w.grad().unwrap(),
        &[
            third,
            2.0 * third,
            1.0,
            8.0 * third,
            10.0 * third,
            4.0,
            third,
            2.0 * third,
            1.0,
            4.0 * third,
            5.0 * third,
            2.0,
            0.0,
            0.0,
            0.0,
            third,
            2.0 * third,
            1.0,
        ],
        "weight grad",
    );
}

#[test]
fn weighted_sums_of_bags_between_offsets_with_an_empty_bag() {
    let (w, psw) = (
        table(),
        Tensor::from_vec(vec![0.5f64, 1.0, 2.0, -1.0, 1.5, 0.25, 3.0], &[7]).requires_grad(),
    );
    let options = EmbeddingBagOptions::default()
        .offsets(&ints(&[0, 3, 3, 5], &[4]))
        .mode(EmbeddingBagMode::Sum)
        .per_sample_weights(&psw);
    let out = embedding_bag_with(&ints(&FLAT, &[7]), &w, options);
    assert_close(
        &out,
        &[
            -0.07056000403,
            0.18498731926,
            0.395243295136,
            0.0,
            0.0,
            0.0,
            -1.466295176498,
            -1.917811950599,
            -1.899781473163,
            2.743111213161,
            2.517524534275,
            1.675560047661,
        ],
        "out",
    );
    backward_weighted(&out);
    assert_close(
        &w.grad().unwrap(),
        &[
            1.0, 2.0, 3.0, 2.5, 2.75, 3.0, -5.0, -4.0, -3.0, 30.0, 33.0, 36.0, 0.5, 1.0, 1.5, 10.5,
            12.0, 13.5,
        ],
        "weight grad",
    );
    assert_close(
        &psw.grad().unwrap(),
        &[
            -2.830853933243,
            -4.065956576745,
            3.483264031632,
            11.408643172105,
            -20.863967951094,
            -24.984237162178,
            27.158887290371,
        ],
        "per-sample weight grad",
    );
}

#[test]
fn maxima_of_bags_send_the_gradient_to_the_largest_rows() {
    let w = table();
    let options = EmbeddingBagOptions::default()
        .offsets(&ints(&[0, 3, 3, 5], &[4]))
        .mode(EmbeddingBagMode::Max);
    let out = embedding_bag_with(&ints(&FLAT, &[7]), &w, options);
    assert_close(
        &out,
        &[
            0.14112000806,
            0.479425538604,
            0.841470984808,
            0.0,
            0.0,
            0.0,
            0.0,
            0.479425538604,
            0.841470984808,
            0.997494986604,
            0.909297426826,
            0.598472144104,
        ],
        "out",
    );
    backward_weighted(&out);
    assert_close(
        &w.grad().unwrap(),
        &[
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0, 10.0, 12.0, 10.0, 11.0, 12.0, 1.0, 0.0, 0.0, 0.0,
            0.0, 0.0,
        ],
        "weight grad",
    );
}

#[test]
fn padding_is_left_out_of_means_and_maxima() {
    let w = table();
    let options = EmbeddingBagOptions::default()
        .offsets(&ints(&[0, 2, 5, 7], &[4]))
        .include_last_offset(true)
        .padding_idx(2);
    let out = embedding_bag_with(&ints(&FLAT, &[7]), &w, options);
    assert_close(
        &out,
        &[
            0.0,
            -0.474627685897,
            -0.833049961067,
            -0.977530117665,
            -0.958924274663,
            -0.70554032557,
            0.0,
            0.033913221009,
            0.05952330275,
        ],
        "mean out",
    );
    backward_weighted(&out);
    assert_close(
        &w.grad().unwrap(),
        &[0.5, 1.0, 1.5, 3.5, 4.0, 4.5, 0.0, 0.0, 0.0, 3.5, 4.0, 4.5, 0.5, 1.0, 1.5, 4.0, 5.0, 6.0],
        "mean weight grad",
    );

    let w = table();
    let options = EmbeddingBagOptions::default().mode(EmbeddingBagMode::Max).padding_idx(-1);
    let out = embedding_bag_with(&ints(&[5, 5, 0, 5], &[2, 2]), &w, options);
    assert_close(
        &out,
        &[0.0, 0.0, 0.0, -0.14112000806, -0.598472144104, -0.909297426826],
        "max out",
    );
    backward_weighted(&out);
    let mut want = vec![0.0; 18];
    want[..3].copy_from_slice(&[4.0, 5.0, 6.0]);
    assert_close(&w.grad().unwrap(), &want, "max weight grad");
}

#[test]
fn bad_bags_are_named() {
    let w = Tensor::ones(&[4, 2]);
    let flat = ints(&[0, 1, 2], &[3]);
    let err = |input: &Tensor, options: EmbeddingBagOptions| {
        try_embedding_bag_with(input, &w, options).unwrap_err().to_string()
    };
    let with =
        |offsets: &[i64]| EmbeddingBagOptions::default().offsets(&ints(offsets, &[offsets.len()]));
    for (message, got) in [
        ("offsets must start at 0, got 1", err(&flat, with(&[1, 2]))),
        ("offsets must not decrease", err(&flat, with(&[0, 2, 1]))),
        ("nor pass the input's 3 indices, got 0 then 4", err(&flat, with(&[0, 4]))),
        ("offsets must be None for a 2-D input", err(&ints(&[0, 1], &[1, 2]), with(&[0]))),
        (
            "input must be 1-D (with offsets) or 2-D",
            err(&ints(&[0], &[1, 1, 1]), EmbeddingBagOptions::default()),
        ),
        (
            "padding_idx 4 is outside a table of 4 rows",
            err(&ints(&[0], &[1, 1]), EmbeddingBagOptions::default().padding_idx(4)),
        ),
        (
            "per_sample_weights need mode Sum, got Mean",
            err(
                &ints(&[0], &[1, 1]),
                EmbeddingBagOptions::default().per_sample_weights(&Tensor::ones(&[1, 1])),
            ),
        ),
        (
            "per_sample_weights must be float32 shaped like the input [1, 1], got float32 of shape [1]",
            err(
                &ints(&[0], &[1, 1]),
                EmbeddingBagOptions::default()
                    .mode(EmbeddingBagMode::Sum)
                    .per_sample_weights(&Tensor::ones(&[1])),
            ),
        ),
        (
            "index 7 at position [0, 0] is out of range",
            err(&ints(&[7], &[1, 1]), EmbeddingBagOptions::default()),
        ),
        ("offsets is empty", err(&flat, with(&[]))),
        (
            "the last offset ends the last bag and must be the input's length 3, got 2",
            err(&flat, with(&[0, 2]).include_last_offset(true)),
        ),
    ] {
        assert!(got.contains(message), "expected `{message}` in: {got}");
    }
    // Empty inputs: bags with nothing in them.
    let none = embedding_bag_with(&ints(&[], &[0]), &w, with(&[0, 0]));
    assert_eq!((none.shape(), none.to_vec::<f32>()), (&[2, 2][..], vec![0.0; 4]));
}

#[test]
fn empty_bags_give_zeros_that_lead_back_to_the_table() {
    // Every bag empty (all padding), in max mode: zeros, and backward reaches the table.
    let w = table();
    let options = EmbeddingBagOptions::default().mode(EmbeddingBagMode::Max).padding_idx(1);
    let out = embedding_bag_with(&ints(&[1, 1, 1, 1], &[2, 2]), &w, options);
    assert_eq!(out.to_vec::<f64>(), vec![0.0; 6]);
    out.sum().backward();
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![0.0; 18]);

    // An empty bag beside a full one, with an infinity in the table's first row (the row an
    // empty bag stands in with): still zeros, not NaN.
    let with_inf = Tensor::from_vec(vec![f64::INFINITY, 1.0, 2.0, 3.0], &[2, 2]).requires_grad();
    let options =
        EmbeddingBagOptions::default().offsets(&ints(&[0, 0], &[2])).mode(EmbeddingBagMode::Max);
    let out = embedding_bag_with(&ints(&[1], &[1]), &with_inf, options);
    assert_eq!(out.to_vec::<f64>(), vec![0.0, 0.0, 2.0, 3.0]);
    out.sum().backward();
    assert_eq!(with_inf.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.0, 1.0, 1.0]);
}
