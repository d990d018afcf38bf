//! Crashes found by the `graph` fuzz target (fuzz/fuzz_targets/graph.rs, docs/FUZZING.md),
//! replayed through the same public API. Each test names the fuzz input that found it; the
//! inputs are kept in fuzz/regressions/graph/ and replay with
//! `cargo +nightly fuzz run graph regressions/graph/<name>` from fuzz/ (for a bug still
//! open, with the target's `SKIP_KNOWN_BUGS` set to false).
//!
//! A `try_` form or a `_with` form that returns `Result` must return an error for bad
//! arguments, never panic.

use tapegrad_ops::functional::{try_cross_entropy_with, try_nll_loss_with};
use tapegrad_ops::prelude::*;
use tapegrad_ops::{CrossEntropyLoss, NLLLoss};
use tapegrad_tape::Tensor;

/// fuzz/regressions/graph/1-nll_loss-0d-input: the program `nll_loss_with(x, target)` with a
/// 0-d input x = -1.0 and a 0-d target 0 (ignore_index -1). nll_loss_with read
/// `input.shape()[1]` of the 0-d input: "index out of bounds: the len is 0 but the index
/// is 1" at crates/ops/src/functional.rs (`let classes = input.shape()[1]`).
#[allow(dead_code)]
const CRASH_1: [u8; 17] = [
    0x6d, 0xff, 0xfe, 0xff, 0xfe, 0xf4, 0xdf, 0x25, 0x0e, 0x7e, 0xec, 0xf4, 0xdf, 0x25, 0x0e, 0x7e,
    0xec,
];

#[test]
fn nll_loss_of_a_zero_dimensional_input_is_an_error() {
    let x = Tensor::from_vec(vec![-1.0f64], &[]);
    let target = Tensor::from_vec(vec![0i64], &[]);
    assert!(try_nll_loss_with(&x, &target, NLLLoss::new().ignore_index(-1)).is_err());
    assert!(try_cross_entropy_with(&x, &target, CrossEntropyLoss::new().ignore_index(-1)).is_err());
}

/// fuzz/regressions/graph/2-nll_loss-1d-input-empty-target: an unbatched input of shape
/// [0] with a target of shape [0, 0, 0]. nll_loss_with reshaped the target to [1] without
/// checking its element count: "reshape_to: element counts agree" (an `expect`) at
/// crates/ops/src/shape.rs, called from functional.rs's unbatched branch.
#[allow(dead_code)]
const CRASH_2: [u8; 17] = [
    0x00, 0x01, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff,
    0x3b,
];

#[test]
fn nll_loss_of_an_unbatched_input_checks_the_target_size() {
    let options = NLLLoss::new().ignore_index(-1);
    let empty_target = Tensor::from_vec(Vec::<i64>::new(), &[0, 0, 0]);
    assert!(
        try_nll_loss_with(
            &Tensor::zeros(&[0]).to_dtype(tapegrad_tape::DType::F64),
            &empty_target,
            options.clone()
        )
        .is_err()
    );
    let two = Tensor::from_vec(vec![0i64, 1], &[2]);
    assert!(try_nll_loss_with(&Tensor::zeros(&[3]), &two, options).is_err());
    let ce = CrossEntropyLoss::new().ignore_index(-1);
    assert!(try_cross_entropy_with(&Tensor::zeros(&[3]), &two, ce).is_err());
}

/// fuzz/regressions/graph/3-chunk-0d: `try_chunk(5, 0)` of a 0-d tensor. The dimension
/// resolver accepts dim 0 (and -1) of a 0-d tensor, as reductions need, and chunk then
/// read `x.shape()[0]`: "index out of bounds: the len is 0 but the index is 0" at
/// crates/ops/src/shape.rs (`chunk`); `split` has the same line.
#[allow(dead_code)]
const CRASH_3: [u8; 20] = [
    0x60, 0x00, 0x00, 0x00, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x00, 0x01, 0x03, 0x2c, 0x03, 0x70,
    0x93, 0x83, 0xb9, 0xca,
];

#[test]
fn split_and_chunk_of_a_zero_dimensional_tensor_are_errors() {
    let x = Tensor::from_vec(vec![1.9375f64], &[]);
    assert!(x.try_chunk(5, 0).is_err());
    assert!(x.try_chunk(1, -1).is_err());
    assert!(x.try_split(1, 0).is_err());
}

/// fuzz/regressions/graph/4-slice-0d: `try_slice(0, 5, 2, 3)` of a 0-d tensor (1e300).
/// Like split and chunk before their fix, slice resolves dim 0 of a 0-d tensor and then
/// reads `x.shape()[0]`: "index out of bounds: the len is 0 but the index is 0" at
/// crates/ops/src/shape.rs (`slice`, `let n = x.shape()[d]`, reached for any step but 0).
#[allow(dead_code)]
const CRASH_4: [u8; 22] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xb5, 0x80, 0x0d,
    0x67, 0x11, 0x02, 0x7b, 0x00, 0x00,
];

#[test]
fn slice_of_a_zero_dimensional_tensor_is_an_error() {
    let x = Tensor::from_vec(vec![1e300f64], &[]);
    assert!(x.try_slice(0, 5, 2, 3).is_err());
    assert!(x.try_slice(0, 0, 1, 1).is_err());
    assert!(x.try_slice(-1, 0, 4, 4).is_err());
}

/// fuzz/regressions/graph/5-narrow-0d: `try_narrow(0, 1, 1)` of a 0-d tensor. narrow
/// resolves dim 0 of a 0-d tensor and then reads `x.shape()[0]`: "index out of bounds: the
/// len is 0 but the index is 0" at crates/ops/src/shape.rs (`narrow`, `let n = x.shape()[d]`).
#[allow(dead_code)]
const CRASH_5: [u8; 25] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x04, 0x00, 0x40, 0x00, 0x00, 0xff, 0x99, 0x00, 0xbe, 0xff,
    0x79, 0x79, 0x79, 0x79, 0x79, 0x79, 0x00, 0x92, 0x00,
];

#[test]
fn narrow_of_a_zero_dimensional_tensor_is_an_error() {
    let x = Tensor::from_vec(vec![0.0f64], &[]);
    assert!(x.try_narrow(0, 1, 1).is_err());
    assert!(x.try_narrow(0, 0, 0).is_err());
    assert!(x.try_narrow(-1, 0, 1).is_err());
}

/// fuzz/regressions/graph/6-permute-0d: `try_permute(&[0])` of a 0-d tensor. Each dim is
/// resolved (dim 0 of a 0-d tensor is accepted) and marked in `seen`, a vector of length
/// `x.dim()` = 0, before the length check: "index out of bounds: the len is 0 but the
/// index is 0" at crates/ops/src/shape.rs (`permute`, `seen[d] = true`).
#[allow(dead_code)]
const CRASH_6: [u8; 28] = [
    0x2e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x3a, 0xf9, 0x00, 0x00, 0x71, 0x71,
    0x71, 0x71, 0x71, 0x31, 0x71, 0x00, 0x1c, 0x71, 0x71, 0x71, 0x71, 0x00,
];

#[test]
fn permute_of_a_zero_dimensional_tensor_checks_the_length_first() {
    let x = Tensor::from_vec(vec![1e300f64], &[]);
    assert!(x.try_permute(&[0]).is_err());
    assert!(x.try_permute(&[0, 0]).is_err());
    assert!(x.try_permute(&[-1]).is_err());
    assert_eq!(x.try_permute(&[]).unwrap().shape(), &[] as &[usize]);
}

/// fuzz/regressions/graph/7-pad-empty-huge: `try_pad` of an empty [4, 0, 4, 3] tensor by
/// (4, 2^62) on the last dimension and (2^33, 2) on the one before. The output has zero
/// elements, so the size checks pass, but the copy then multiplies the padded sizes:
/// "attempt to multiply with overflow" at crates/ops/src/shape.rs (`copy_into`,
/// `n_dst * inner`), called from `pad_dim`. (A release build wraps and copies nothing.)
#[allow(dead_code)]
const CRASH_7: [u8; 24] = [
    0x00, 0x2c, 0xd1, 0xbe, 0xea, 0xf3, 0x2b, 0xf6, 0x37, 0x00, 0xea, 0x67, 0xf9, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0x0a, 0xf5, 0xf6, 0xc2,
];

#[test]
fn pad_of_an_empty_tensor_by_huge_amounts_does_not_overflow() {
    let x = Tensor::zeros(&[4, 0, 4, 3]).to_dtype(tapegrad_tape::DType::F64);
    // PyTorch gives the padded shape (still zero elements); an error would also be sound.
    if let Ok(y) = x.try_pad(&[(4, 1 << 62), (1 << 33, 2)], 0.0) {
        assert_eq!(y.shape(), &[4, 0, 4 + (1 << 33) + 2, 3 + 4 + (1 << 62)]);
    }
    let x = Tensor::zeros(&[3, 0]);
    if let Ok(y) = x.try_pad(&[(5, 3), (9, 0)], 0.0) {
        assert_eq!(y.shape(), &[12, 8]);
    }
}

/// fuzz/regressions/graph/8-norm_dim-0d-backward, found by the `graph` target's last run:
/// the 2-norm over dim 0 of a 0-d tensor returned a gradient of shape [1] for a 0-d input
/// ("the backward rule returned a gradient of shape [1] ... for input 0, which has shape []").
#[test]
fn norm_over_a_dim_of_a_zero_dimensional_tensor_has_a_0d_gradient() {
    for keepdim in [false, true] {
        let x = Tensor::from_vec(vec![-3.0f64], &[]).requires_grad();
        let y = x.norm_dim(2.0, 0, keepdim);
        assert_eq!(y.shape(), &[] as &[usize]);
        y.backward();
        assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![-1.0]);
    }
}
