//! Sizes that overflow, or that are too large to allocate, give a clear error (or a panic
//! naming the operation) at every constructor and shape operation: never a wrapped element
//! count, a wrong answer or an out-of-bounds read.

use std::panic::{AssertUnwindSafe, catch_unwind};

use proptest::prelude::*;
use tapegrad_ops::functional::{self, AvgPool2dOptions, ConvOptions, MaxPool2dOptions};
use tapegrad_ops::{prelude::*, try_cat};
use tapegrad_tape::layout::{Layout, MAX_NUMEL};
use tapegrad_tape::{DType, Storage, Tensor};

/// The true element count of `shape`, if it fits in a tensor.
fn true_numel(shape: &[usize]) -> Option<usize> {
    let product = shape.iter().try_fold(1u128, |n, &d| n.checked_mul(d as u128));
    match product {
        Some(n) if n <= MAX_NUMEL as u128 => Some(n as usize),
        _ if shape.contains(&0) => Some(0),
        _ => None,
    }
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn the_reported_cases_are_errors() {
    // The product wraps to 2 in plain arithmetic, which used to be accepted and then read
    // out of bounds in `a.t().matmul(&a)`.
    let err =
        Tensor::try_from_vec(vec![1.0f32, 2.0], &[(1usize << 63) + 1, 2]).unwrap_err().to_string();
    assert!(
        err.starts_with("from_vec: shape [9223372036854775809, 2] has too many elements"),
        "{err}"
    );
    assert!(err.contains(file!()), "{err}");

    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[6]);
    let err = a.try_reshape(&[6, 3074457345618258603]).unwrap_err().to_string();
    assert!(err.starts_with("reshape:") && err.contains("too many elements"), "{err}");

    let line = line!() + 1;
    let message = panic_message(|| drop(Tensor::zeros(&[1 << 40, 1 << 40])));
    assert!(
        message.starts_with("full: shape [1099511627776, 1099511627776] has too many elements"),
        "{message}"
    );
    assert!(message.contains(&format!("{}:{line}", file!())), "{message}");

    let line = line!() + 1;
    let message = panic_message(|| drop(Tensor::randn(&[1 << 40, 1 << 40])));
    assert!(
        message.starts_with("randn:") && message.contains(&format!("{}:{line}", file!())),
        "{message}"
    );
}

#[test]
fn empty_shapes_stay_legal_however_large_the_other_sizes() {
    let t = Tensor::zeros(&[0, 1 << 40, 1 << 40]);
    assert_eq!((t.numel(), t.sum().item()), (0, 0.0));
    assert_eq!(Tensor::scalar(1.0f32).broadcast_to(&[1 << 40, 0, 1 << 40]).numel(), 0);
}

#[test]
fn counts_that_fit_but_cannot_be_allocated_are_errors() {
    // 2^62 elements fit in a layout, but 2^64 bytes of f32 do not fit in memory.
    let err = Tensor::try_full_dtype(&[1 << 31, 1 << 31], 0.0, DType::F32).unwrap_err().to_string();
    assert!(err.starts_with("full: cannot allocate 4611686018427387904 elements"), "{err}");
    let message = panic_message(|| drop(Tensor::rand_dtype(&[1 << 62], DType::F64)));
    assert!(message.starts_with("rand: cannot allocate"), "{message}");
    let message = panic_message(|| drop(Tensor::arange(0.0, 1e300, 1.0)));
    assert!(message.starts_with("arange:") && message.contains("too many"), "{message}");
}

#[test]
fn views_of_too_many_elements_are_errors() {
    let one = Tensor::scalar(1.0f32);
    assert!(one.try_broadcast_to(&[1 << 62, 4]).is_err());
    // Views that fit, whatever their memory, are fine: PyTorch's expand allows them too.
    assert_eq!(one.broadcast_to(&[1 << 31, 1 << 31]).numel(), 1 << 62);

    // Two broadcast operands whose product has more elements than either: a C of 7 x n that
    // used to be allocated with the wrapped count of 1 element.
    let a = one.broadcast_to(&[7, 1]);
    let b = one.broadcast_to(&[1, 7905747460161236407]);
    let err = a.try_matmul(&b).unwrap_err().to_string();
    assert!(err.starts_with("matmul:") && err.contains("too many elements"), "{err}");
    let message =
        panic_message(|| drop(&one.broadcast_to(&[1 << 40, 1]) + &one.broadcast_to(&[1, 1 << 40])));
    assert!(message.starts_with("add:") && message.contains("too many elements"), "{message}");

    let big = one.broadcast_to(&[1 << 62]);
    let err = try_cat(&[&big, &big, &big], 0).unwrap_err().to_string();
    assert!(err.starts_with("cat:") && err.contains("overflows"), "{err}");
    let err = try_cat(&[&one, &one], 0).unwrap_err().to_string();
    assert!(err.contains("zero-dimensional"), "{err}");
}

#[test]
fn shape_ops_check_their_size_arithmetic() {
    let x = Tensor::ones(&[2, 3]);
    assert!(x.try_narrow(0, usize::MAX, 2).is_err());
    assert!(x.try_narrow(1, 2, usize::MAX).is_err());
    let err = x.try_pad(&[(usize::MAX, 1)], 0.0).unwrap_err().to_string();
    assert!(err.starts_with("pad: size 3 padded by") && err.contains("overflows"), "{err}");
    assert!(x.try_pad(&[(1 << 40, 1 << 40), (1 << 40, 0)], 0.0).is_err());
    let err = x.try_repeat(&[usize::MAX, 2]).unwrap_err().to_string();
    assert!(err.starts_with("repeat: size 2 repeated") && err.contains("overflows"), "{err}");
    assert!(x.try_repeat(&[1 << 40, 1 << 40]).is_err());
    assert!(x.try_reshape(&[-1, 1 << 62, 4]).is_err());
}

#[test]
fn a_layout_reaching_outside_its_storage_is_refused() {
    let storage = Storage::from_vec(vec![1.0f32, 2.0]);
    let message = panic_message(|| {
        drop(Tensor::from_storage(storage.clone(), Layout::from_parts(&[3], &[1], 0)))
    });
    assert!(message.contains("from_storage"), "{message}");
    // A stride whose last offset wraps to a small number.
    let message = panic_message(|| {
        drop(Tensor::from_storage(
            storage,
            Layout::from_parts(&[2, 2], &[usize::MAX / 2 + 1, 1], 0),
        ))
    });
    assert!(message.contains("from_storage"), "{message}");
    let message = panic_message(|| drop(Layout::from_parts(&[(1 << 63) + 1, 2], &[2, 1], 0)));
    assert!(message.contains("too many elements"), "{message}");
}

#[test]
fn convolution_and_pooling_sizes_are_checked() {
    let x = Tensor::ones(&[1, 1, 4, 4]);
    let w = Tensor::ones(&[1, 1, 3, 3]);
    for options in [
        ConvOptions::default().padding((3, 3952873730080618203)),
        ConvOptions::default().padding((usize::MAX / 2, 0)),
        ConvOptions::default().dilation((usize::MAX / 2, 1)),
    ] {
        let err = functional::try_conv2d_with(&x, &w, None, options).unwrap_err().to_string();
        assert!(err.starts_with("conv2d:"), "{err}");
    }
    let message = panic_message(|| {
        let options = ConvOptions::default().stride((usize::MAX / 2, 1));
        drop(functional::conv_transpose2d_with(&x, &w, None, options))
    });
    assert!(message.starts_with("conv_transpose2d:") && message.contains("overflows"), "{message}");
    let pool = |stride: usize, padding: (usize, usize)| {
        MaxPool2dOptions::default().stride(stride).padding(padding)
    };
    assert!(
        functional::try_max_pool2d_with_indices(&x, (usize::MAX, 3), pool(1, (usize::MAX / 2, 0)))
            .is_err()
    );
    assert!(functional::try_max_pool2d_with_indices(&x, 2, pool(1, (1 << 62, 0))).is_err());
    let message = panic_message(|| {
        let options = AvgPool2dOptions::default().stride(1).padding(1 << 39);
        drop(functional::avg_pool2d_with(&x, 1 << 40, options))
    });
    assert!(message.starts_with("avg_pool2d:"), "{message}");
    let message = panic_message(|| drop(functional::adaptive_avg_pool2d(&x, 1 << 62)));
    assert!(
        message.starts_with("adaptive_avg_pool2d:") && message.contains("too many elements"),
        "{message}"
    );
}

/// Sizes near the edges: small ones, powers of two and their neighbours, and the largest.
fn edge_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..5,
        (20u32..64, 0usize..3).prop_map(|(k, d)| (1usize << k).wrapping_sub(1).wrapping_add(d)),
        Just(usize::MAX),
        Just(usize::MAX / 3),
        Just(3074457345618258603),
    ]
}

fn edge_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(edge_size(), 0..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every constructor accepts a shape exactly when its element count fits, and then
    /// reports that count.
    #[test]
    fn constructors_accept_exactly_the_shapes_that_fit(shape in edge_shape()) {
        let numel = true_numel(&shape);
        let small = numel.filter(|&n| n <= 1 << 16);
        let from_vec = Tensor::try_from_vec(vec![0.5f64; small.unwrap_or(2)], &shape);
        prop_assert_eq!(from_vec.is_ok(), small.is_some() || numel == Some(2));
        if let Ok(t) = from_vec {
            prop_assert_eq!(t.numel(), numel.unwrap());
        }
        match (numel, small) {
            (None, _) => {
                prop_assert!(Tensor::try_full_dtype(&shape, 1.0, DType::F32).is_err());
                for message in [
                    panic_message(|| drop(Tensor::zeros(&shape))),
                    panic_message(|| drop(Tensor::ones_dtype(&shape, DType::F64))),
                    panic_message(|| drop(Tensor::randn(&shape))),
                    panic_message(|| drop(Tensor::rand(&shape))),
                    panic_message(|| drop(Tensor::uniform(&shape, 0.0, 1.0))),
                ] {
                    prop_assert!(message.contains("too many elements"), "{}", message);
                }
            }
            (Some(_), Some(n)) => {
                let t = Tensor::full_dtype(&shape, 1.0, DType::F64);
                prop_assert_eq!((t.numel(), t.sum().item()), (n, n as f64));
                prop_assert_eq!(Tensor::randn(&shape).numel(), n);
            }
            // Fits, but too large to allocate here: covered by the fixed cases above.
            (Some(_), None) => {}
        }
    }

    /// Views and shape operations on a small tensor: an error exactly when the resulting
    /// count does not fit, and the right count when it does.
    #[test]
    fn shape_ops_accept_exactly_the_shapes_that_fit(shape in edge_shape(), start in edge_size(), len in edge_size()) {
        let numel = true_numel(&shape);
        let one = Tensor::scalar(1.0f32);
        match one.try_broadcast_to(&shape) {
            Ok(view) => prop_assert_eq!(Some(view.numel()), numel),
            Err(e) => prop_assert!(numel.is_none(), "{}", e),
        }
        let signed: Option<Vec<isize>> = shape.iter().map(|&d| isize::try_from(d).ok()).collect();
        if let Some(signed) = signed {
            let six = Tensor::ones(&[6]);
            prop_assert_eq!(six.try_reshape(&signed).is_ok(), numel == Some(6));
        }
        let x = Tensor::ones(&[2, 3]);
        let in_range = start.checked_add(len).is_some_and(|end| end <= 3);
        prop_assert_eq!(x.try_narrow(1, start, len).is_ok(), in_range);
        let padded = 3usize.checked_add(start).and_then(|n| n.checked_add(len)).and_then(|n| true_numel(&[2, n]));
        if padded.is_none_or(|n| n <= 1 << 16) {
            let result = x.try_pad(&[(start, len)], 0.0);
            prop_assert_eq!(result.as_ref().ok().map(|t| t.numel()), padded);
        }
        // Each size must fit on its own, even beside a zero.
        let sizes = [2usize.checked_mul(start), 3usize.checked_mul(len)];
        let repeated = match sizes {
            [Some(a), Some(b)] if a <= MAX_NUMEL && b <= MAX_NUMEL => true_numel(&[a, b]),
            _ => None,
        };
        if repeated.is_none_or(|n| n <= 1 << 16) {
            let result = x.try_repeat(&[start, len]);
            prop_assert_eq!(result.as_ref().ok().map(|t| t.numel()), repeated);
        }
    }
}
