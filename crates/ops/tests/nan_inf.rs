//! NaN, infinities and signed zeros where the fixture comparison (tests/torch_values.rs)
//! cannot look: the sign of a zero, long tensors that take the vectorised and parallel
//! paths, and planes large enough for the pooling kernels' parallel split. Every expected
//! value was checked against PyTorch 2.15 (CPU, f32 and f64).

use tapegrad_ops::functional::max_pool2d_with_indices;
use tapegrad_ops::{MaxPool2dOptions, prelude::*};
use tapegrad_tape::{BackwardOptions, DType, GradOptions, Tensor, grad};

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

fn t(data: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape).to_dtype(dtype)
}

/// Signs of the elements (true for -0 and negative numbers).
fn sign_bits(x: &Tensor) -> Vec<bool> {
    x.to_vec::<f64>().iter().map(|v| v.is_sign_negative()).collect()
}

#[test]
fn zero_signs_follow_pytorch() {
    for dtype in DTYPES {
        let neg_zero = t(&[-0.0], &[1], dtype);
        let zero = t(&[0.0], &[1], dtype);
        // relu, leaky_relu, elu and clamp keep a -0 input (torch.relu(-0.) is -0.).
        assert_eq!(sign_bits(&neg_zero.relu()), [true], "{dtype:?} relu");
        assert_eq!(sign_bits(&neg_zero.leaky_relu_with(0.1)), [true], "{dtype:?} leaky_relu");
        assert_eq!(sign_bits(&neg_zero.elu()), [true], "{dtype:?} elu");
        assert_eq!(
            sign_bits(&neg_zero.clamp(Some(0.0), None)),
            [true],
            "{dtype:?} clamp(-0, min=0)"
        );
        assert_eq!(
            sign_bits(&neg_zero.clamp(None, Some(0.0))),
            [true],
            "{dtype:?} clamp(-0, max=0)"
        );
        assert_eq!(sign_bits(&zero.clamp(Some(-0.0), None)), [false], "{dtype:?} clamp(0, min=-0)");
        assert_eq!(sign_bits(&neg_zero.abs()), [false], "{dtype:?} abs");
        // max / min along a dimension return the first of tied zeros, with its sign.
        let x = t(&[-0.0, 0.0, -0.0, 0.0, -0.0, 0.0], &[2, 3], dtype);
        for (v, i) in [x.max_dim(1, false), x.min_dim(1, false)] {
            assert_eq!(
                (sign_bits(&v), i.to_vec::<i64>()),
                (vec![true, false], vec![0, 0]),
                "{dtype:?}"
            );
        }
        // Max pooling keeps the first of tied zeros too.
        for (data, sign) in [([-0.0, 0.0, 0.0, -0.0], true), ([0.0, -0.0, 0.0, -0.0], false)] {
            let (v, i) =
                max_pool2d_with_indices(&t(&data, &[1, 1, 2, 2], dtype), 2, Default::default());
            assert_eq!(
                (sign_bits(&v), i.to_vec::<i64>()),
                (vec![sign], vec![0]),
                "{dtype:?} {data:?}"
            );
        }
    }
}

/// A vector long enough for the kernels' vector loops and their tails (1001 elements).
fn long_specials(dtype: DType) -> Tensor {
    let pattern = [f64::NAN, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1.0, -2.0, 0.0];
    let data: Vec<f64> = (0..1001).map(|i| pattern[i % 7]).collect();
    t(&data, &[1001], dtype)
}

#[test]
fn relu_propagates_nan_through_the_vector_loop() {
    for dtype in DTYPES {
        for create_graph in [false, true] {
            let x = long_specials(dtype).requires_grad();
            let y = x.relu();
            let values = y.to_vec::<f64>();
            let g = if create_graph {
                let opts = GradOptions::new()
                    .grad_outputs(vec![Tensor::ones_dtype(&[1001], dtype)])
                    .create_graph(true);
                grad(&[&y], &[&x], opts)[0].clone().unwrap()
            } else {
                y.backward_with(Some(&Tensor::ones_dtype(&[1001], dtype)), BackwardOptions::new());
                x.grad().unwrap()
            };
            let grads = g.to_vec::<f64>();
            // PyTorch: relu = [nan, -0, inf, 0, 1, 0, 0], gradient [1, 0, 1, 0, 1, 0, 0].
            for start in [0, 994] {
                let v = &values[start..start + 7];
                assert!(v[0].is_nan(), "{dtype:?} at {start}: {v:?}");
                assert_eq!(
                    &v[1..],
                    &[0.0, f64::INFINITY, 0.0, 1.0, 0.0, 0.0],
                    "{dtype:?} at {start}"
                );
                assert!(
                    v[1].is_sign_negative() && !v[3].is_sign_negative(),
                    "{dtype:?} zero signs at {start}"
                );
                assert_eq!(
                    &grads[start..start + 7],
                    &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0],
                    "{dtype:?} {create_graph}"
                );
            }
        }
    }
}

/// A plane wide enough for the 2x2 kernel's full vectors, with several planes so that they
/// are pooled in parallel, and a NaN pair in every other window: PyTorch takes the last.
#[test]
fn max_pool_takes_the_last_nan_of_a_window_in_every_kernel() {
    for dtype in DTYPES {
        let (c, h, w) = (3, 8, 64);
        let mut data = vec![0.0; c * h * w];
        for p in 0..c {
            for col in (0..w).step_by(2) {
                data[p * h * w + col] = f64::NAN; // row 0, even columns
            }
            for col in (1..w).step_by(4) {
                data[p * h * w + w + col] = f64::NAN; // row 1, columns 1, 5, 9, ...
            }
        }
        let x = t(&data, &[1, c, h, w], dtype);
        let (values, indices) = max_pool2d_with_indices(&x, 2, Default::default());
        let (values, indices) = (values.to_vec::<f64>(), indices.to_vec::<i64>());
        let per_plane = (h / 2) * (w / 2);
        for p in 0..c {
            // PyTorch: [65, 2, 69, 6, ...]: windows with two NaNs pick the second.
            assert_eq!(
                &indices[p * per_plane..p * per_plane + 4],
                &[65, 2, 69, 6],
                "{dtype:?} plane {p}"
            );
            assert!(
                values[p * per_plane..p * per_plane + w / 2].iter().all(|v| v.is_nan()),
                "{dtype:?}"
            );
        }
        // The same windows through the general (3x3, padded) kernel: window (0, 0) covers
        // rows 0..2 and columns 0..2 (with the padding), whose last NaN is at 65.
        let (_, i3) =
            max_pool2d_with_indices(&x, 3, MaxPool2dOptions::default().stride(2).padding(1));
        assert_eq!(i3.to_vec::<i64>()[0], 65, "{dtype:?}");
    }
}

#[test]
fn elu_gradient_is_finite_at_infinity_under_double_backward() {
    // PyTorch: elu' = [1, 1, e^-1, 0, 1] at [inf, NaN, -1, -inf, 2] (the `x <= 0` branch is
    // taken at neither +inf nor NaN), and elu'' = [0, 0, e^-1, 0, 0].
    let e = (-1.0f64).exp();
    for dtype in DTYPES {
        let x = t(&[f64::INFINITY, f64::NAN, -1.0, f64::NEG_INFINITY, 2.0], &[5], dtype)
            .requires_grad();
        let y = x.elu();
        let opts = GradOptions::new()
            .grad_outputs(vec![Tensor::ones_dtype(&[5], dtype)])
            .create_graph(true);
        let g = grad(&[&y], &[&x], opts)[0].clone().unwrap();
        let gg = grad(&[&g.sum()], &[&x], GradOptions::new())[0].clone().unwrap();
        for (got, want) in [(g, [1.0, 1.0, e, 0.0, 1.0]), (gg, [0.0, 0.0, e, 0.0, 0.0])] {
            let got = got.to_vec::<f64>();
            assert!(
                got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
                "{dtype:?}: {got:?}, PyTorch {want:?}"
            );
        }
    }
}

#[test]
fn clamp_hardtanh_and_relu6_gradients_at_bounds_infinities_and_nan_follow_pytorch() {
    // PyTorch 2.15: the gradient passes strictly inside the bounds, not at NaN (hardtanh and
    // relu6 pass it at NaN only in the scalar tail of their vector loop, for tensors shorter
    // than a vector), and a missing bound tests nothing: clamp(min=0) passes it at +inf.
    // Long enough for the vector loops.
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    let mut data = vec![0.0, 0.5, 1.0, nan, -inf, inf, -1.0, 2.0];
    data.extend((0..100).map(|i| i as f64 / 50.0 - 0.5));
    let expect = |inside: &dyn Fn(f64) -> bool| -> Vec<f64> {
        data.iter().map(|&v| f64::from(u8::from(inside(v)))).collect()
    };
    for dtype in DTYPES {
        let strictly_inside = expect(&|v| v > 0.0 && v < 1.0);
        type Case = (&'static str, fn(&Tensor) -> Tensor, Vec<f64>);
        let cases: [Case; 5] = [
            ("clamp(0, 1)", |x| x.clamp(Some(0.0), Some(1.0)), strictly_inside.clone()),
            ("clamp(min=0)", |x| x.clamp(Some(0.0), None), expect(&|v| v > 0.0)),
            ("clamp(max=1)", |x| x.clamp(None, Some(1.0)), expect(&|v| v < 1.0)),
            ("hardtanh(0, 1)", |x| x.hardtanh_with(0.0, 1.0), strictly_inside.clone()),
            ("relu6(6x) / 6", |x| x.mul_scalar(6.0).relu6().div_scalar(6.0), strictly_inside),
        ];
        for (name, f, want) in cases {
            let x = t(&data, &[data.len()], dtype).requires_grad();
            f(&x).sum().backward();
            assert_eq!(x.grad().unwrap().to_vec::<f64>(), want, "{dtype:?} {name}");
        }
    }
}

#[test]
fn clamp_gradient_is_zero_at_a_bound_in_the_tensors_own_precision() {
    // PyTorch: torch.clamp(tensor([0.1, 0.2]), min=0.1) has gradient [0, 1] in f32 (the f32
    // value 0.1 is the bound the forward clamps to) and in f64.
    for dtype in DTYPES {
        let x = t(&[0.1, 0.2], &[2], dtype).requires_grad();
        x.clamp(Some(0.1), None).sum().backward();
        assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0.0, 1.0], "{dtype:?}");
    }
}
