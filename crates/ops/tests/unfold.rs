//! `F::unfold`, `F::fold` and `x.unfold(dim, size, step)` against values PyTorch 2.15
//! computed for the same inputs (`F.unfold`, `F.fold`, `Tensor.unfold`), with dilation,
//! padding and stride different between rows and columns, and the errors for blocks that do
//! not fit. Their gradients (to the second order) are checked with the other ops' in the
//! registry's property tests.

use tapegrad_ops::functional::{fold_with, try_fold_with, try_unfold_with, unfold_with};
use tapegrad_ops::{UnfoldOptions, prelude::*};
use tapegrad_tape::{DType, Tensor};

/// `sin(0), sin(1), ...` (or `cos`) in f64 of `shape`: inputs both sides can build exactly.
fn wave(shape: &[usize], cos: bool) -> Tensor {
    let n: usize = shape.iter().product();
    let values = (0..n).map(|i| if cos { (i as f64).cos() } else { (i as f64).sin() }).collect();
    Tensor::from_vec(values, shape)
}

/// The first values, the sum, and the sum weighted by `sin(i)` of the flattened tensor:
/// a short fingerprint in which every element and its position count.
fn check(t: &Tensor, shape: &[usize], first: &[f64], sum: f64, weighted: f64) {
    assert_eq!(t.shape(), shape);
    assert_eq!(t.dtype(), DType::F64);
    let v = t.to_vec::<f64>();
    for (i, (a, b)) in v.iter().zip(first).enumerate() {
        assert!((a - b).abs() < 1e-6, "element {i}: {a} against PyTorch's {b}");
    }
    let s: f64 = v.iter().sum();
    let w: f64 = v.iter().enumerate().map(|(i, x)| x * (i as f64).sin()).sum();
    assert!((s - sum).abs() < 1e-6, "sum {s} against PyTorch's {sum}");
    assert!((w - weighted).abs() < 1e-6, "weighted sum {w} against PyTorch's {weighted}");
}

#[test]
fn unfold_and_fold_match_pytorch() {
    let x = wave(&[2, 3, 5, 6], false);
    let plain = UnfoldOptions::default();
    let cols = unfold_with(&x, (2, 3), plain);
    let first = [0.0, 0.841471, 0.909297, 0.141120, -0.279415, 0.656987, 0.989358, 0.412118];
    check(&cols, &[2, 18, 16], &first, 40.816395, 0.487563);
    let back = fold_with(&cols, (5, 6), (2, 3), plain);
    let first = [0.0, 1.682942, 2.727892, 0.423360, -1.513605, -0.958924, -0.558831, 2.627946];
    check(&back, &[2, 3, 5, 6], &first, 40.816395, 287.620360);

    let mixed = UnfoldOptions::default().dilation((2, 1)).padding((1, 2)).stride((2, 1));
    let cols = unfold_with(&x, (3, 2), mixed);
    check(&cols, &[2, 18, 18], &[0.0; 11], 3.106447, -0.232213);
    assert!((cols.to_vec::<f64>()[11] + 0.279415).abs() < 1e-6);
    let back = fold_with(&cols, (5, 6), (3, 2), mixed);
    let first = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.117662, 2.627946, 3.957433, 1.648474, -2.176084];
    check(&back, &[2, 3, 5, 6], &first, 3.106447, 143.093445);

    // 1 x 1 blocks with a stride that skips pixels: fold leaves the skipped ones at zero.
    let strided = UnfoldOptions::default().stride((2, 3));
    let cols = unfold_with(&x, 1, strided);
    let first = [0.0, 0.141120, -0.536573, 0.650288, -0.905578, 0.956376, -0.988032, 0.999912];
    check(&cols, &[2, 3, 6], &first, 0.266699, -0.502545);
    check(
        &fold_with(&cols, (5, 6), 1, strided),
        &[2, 3, 5, 6],
        &[0.0, 0.0, 0.0, 0.141120],
        0.266699,
        18.711331,
    );
}

#[test]
fn unbatched_inputs_keep_their_rank() {
    let x = wave(&[3, 5, 6], false);
    let cols = unfold_with(&x, 2, UnfoldOptions::default());
    assert_eq!(cols.shape(), &[12, 20]);
    let batched = unfold_with(&x.reshape(&[1, 3, 5, 6]), 2, UnfoldOptions::default());
    assert_eq!(cols.to_vec::<f64>(), batched.to_vec::<f64>());
    assert_eq!(fold_with(&cols, (5, 6), 2, UnfoldOptions::default()).shape(), &[3, 5, 6]);
}

#[test]
fn tensor_unfold_matches_pytorch() {
    let y = wave(&[3, 7, 2], true);
    let first = [1.0, -0.416147, -0.653644, 0.540302, -0.989992, 0.283662, -0.653644, 0.960170];
    check(&y.unfold(1, 3, 2), &[3, 3, 2, 3], &first, 0.009165, -0.075008);
    let first = [1.0, 0.540302, -0.416147, -0.989992, -0.653644, 0.283662, 0.960170, 0.753902];
    check(&y.unfold(-1, 2, 1), &[3, 7, 1, 2], &first, -0.138848, 0.086385);
    check(&y.unfold(0, 1, 2), &[2, 7, 2, 1], &first, -0.029817, -7.275407);
    // A scalar has one window of its one element, with dimension 0 or -1, as in PyTorch.
    assert_eq!(Tensor::scalar(4.0f64).unfold(0, 1, 1).to_vec::<f64>(), vec![4.0]);
    assert_eq!(Tensor::scalar(4.0f64).unfold(-1, 1, 1).shape(), &[1]);
    assert_eq!(Tensor::scalar(4.0f64).unfold(0, 0, 1).shape(), &[0]);
    // Empty windows, and windows of an empty tensor, have PyTorch's shapes.
    assert_eq!(Tensor::zeros(&[3, 7]).unfold(1, 0, 2).shape(), &[3, 4, 0]);
    assert_eq!(Tensor::zeros(&[0, 7]).unfold(1, 3, 2).shape(), &[0, 3, 3]);
    // A view's windows are its own elements (a transposed input).
    let t = wave(&[2, 3], false).transpose(0, 1);
    assert_eq!(t.unfold(0, 2, 1).to_vec::<f64>(), t.contiguous().unfold(0, 2, 1).to_vec::<f64>());
}

#[test]
fn blocks_that_do_not_fit_are_clear_errors() {
    let x = Tensor::zeros(&[1, 2, 4, 4]);
    let o = UnfoldOptions::default();
    let err = try_unfold_with(&x, (5, 1), o).unwrap_err().to_string();
    assert!(err.contains("unfold") && err.contains("spans (5, 1)"), "{err}");
    let err = try_unfold_with(&x, 2, o.stride((0, 1))).unwrap_err().to_string();
    assert!(err.contains("stride must be positive"), "{err}");
    let err = try_unfold_with(&Tensor::zeros(&[4, 4]), 2, o).unwrap_err().to_string();
    assert!(err.contains("4-D (batched) or 3-D (unbatched)"), "{err}");
    // 2 x 2 blocks need rows in fours; 9 blocks fit a 4 x 4 output.
    let err = try_fold_with(&Tensor::zeros(&[1, 6, 9]), 4, 2, o).unwrap_err().to_string();
    assert!(err.contains("6 rows of columns cannot be split"), "{err}");
    let err = try_fold_with(&Tensor::zeros(&[1, 4, 8]), 4, 2, o).unwrap_err().to_string();
    assert!(err.contains("8 columns for 9 blocks (3 x 3)"), "{err}");
    let err = Tensor::zeros(&[3]).try_unfold(0, 2, 0).unwrap_err().to_string();
    assert!(err.contains("step must be positive"), "{err}");
    assert!(Tensor::zeros(&[3]).try_unfold(1, 1, 1).is_err()); // no dimension 1
    // Sizes whose padded image or blocks cannot be indexed are errors, not overflows.
    let huge = UnfoldOptions::default().padding(usize::MAX / 2);
    let err = try_unfold_with(&x, 2, huge).unwrap_err().to_string();
    assert!(err.contains("too large to index"), "{err}");
    let wide = UnfoldOptions::default().stride(1 << 40);
    assert!(try_fold_with(&Tensor::zeros(&[1, 4, 1]), (1 << 40, 1 << 40), 2, wide).is_err());
    // Integer columns cannot be summed into an image (as in PyTorch).
    let ints = Tensor::from_vec(vec![1i64; 4], &[1, 4, 1]);
    let err = try_fold_with(&ints, 2, 2, o).unwrap_err().to_string();
    assert!(err.contains("fold"), "{err}");
}
