//! Forward values and behaviour that gradients alone do not pin down: exact values, index
//! results, masks, error messages.

use tapegrad_ops::CrossEntropyLoss;
use tapegrad_ops::functional;
use tapegrad_ops::{Reduction, TensorIndex, einsum, prelude::*};
use tapegrad_tape::{DType, Error, Tensor};

fn v64(t: &Tensor) -> Vec<f64> {
    t.to_vec::<f64>()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn unary_values() {
    let x = Tensor::from_vec(vec![-1.5f64, -0.5, 0.0, 0.5, 2.0], &[5]);
    let e = |f: fn(f64) -> f64| x.to_vec::<f64>().into_iter().map(f).collect::<Vec<_>>();
    assert_eq!(v64(&x.abs()), e(f64::abs));
    assert_eq!(v64(&x.sin()), e(f64::sin));
    assert_eq!(v64(&x.cos()), e(f64::cos));
    assert_eq!(v64(&x.square()), e(|v| v * v));
    assert_eq!(v64(&x.relu()), e(|v| v.max(0.0)));
    assert_eq!(v64(&x.leaky_relu()), e(|v| if v > 0.0 { v } else { 0.01 * v }));
    assert!(close(&v64(&x.elu()), &e(|v| if v > 0.0 { v } else { v.exp() - 1.0 }), 1e-15));
    assert!(close(&v64(&x.silu()), &e(|v| v / (1.0 + (-v).exp())), 1e-15));
    assert!(close(&v64(&x.softplus()), &e(|v| (1.0 + v.exp()).ln()), 1e-15));
    // erf(0.5) and GELU(2) from high-precision references.
    assert!((x.erf().to_vec::<f64>()[3] - 0.520_499_877_813_046_5).abs() < 1e-15);
    assert!((x.gelu().to_vec::<f64>()[4] - 1.954_499_736_103_642).abs() < 1e-14);
    assert!(
        (x.gelu_with(tapegrad_ops::GeluApproximate::Tanh).to_vec::<f64>()[4]
            - 1.954_597_694_087_775)
            .abs()
            < 1e-14
    );
    assert_eq!(v64(&x.clamp(Some(-1.0), None)), e(|v| v.max(-1.0)));
    let p = Tensor::from_vec(vec![4.0f32, 0.25], &[2]);
    assert_eq!(p.sqrt().to_vec::<f32>(), vec![2.0, 0.5]);
    assert_eq!(p.rsqrt().to_vec::<f32>(), vec![0.5, 2.0]);
    assert_eq!(p.reciprocal().to_vec::<f32>(), vec![0.25, 4.0]);
    assert_eq!(Tensor::from_vec(vec![1e-10f64], &[1]).log1p().item(), 1e-10f64.ln_1p());
}

#[test]
fn comparisons_are_masks_without_gradient() {
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).requires_grad();
    let b = Tensor::full(&[1], 2.0);
    assert_eq!(a.gt(&b).to_vec::<f32>(), vec![0.0, 0.0, 1.0]);
    assert_eq!(a.ge(&b).to_vec::<f32>(), vec![0.0, 1.0, 1.0]);
    assert_eq!(a.lt(&b).to_vec::<f32>(), vec![1.0, 0.0, 0.0]);
    assert_eq!(a.le(&b).to_vec::<f32>(), vec![1.0, 1.0, 0.0]);
    assert_eq!(a.eq(&b).to_vec::<f32>(), vec![0.0, 1.0, 0.0]);
    assert_eq!(a.ne(&b).to_vec::<f32>(), vec![1.0, 0.0, 1.0]);
    assert!(!a.gt(&b).tracks_grad());
}

#[test]
fn maximum_splits_ties_and_where_selects_without_nan() {
    let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let b = Tensor::from_vec(vec![1.0f64, 0.0], &[2]).requires_grad();
    a.maximum(&b).sum().backward();
    assert_eq!(v64(&a.grad().unwrap()), vec![0.5, 1.0]);
    assert_eq!(v64(&b.grad().unwrap()), vec![0.5, 0.0]);

    let x = Tensor::from_vec(vec![1.0f64, 4.0], &[2]).requires_grad();
    let picked = tapegrad_ops::where_(
        &x.gt(&Tensor::full_dtype(&[1], 2.0, DType::F64)),
        &x.sqrt(),
        &x.mul_scalar(3.0),
    );
    assert_eq!(v64(&picked), vec![3.0, 2.0]);
    picked.sum().backward();
    assert_eq!(v64(&x.grad().unwrap()), vec![3.0, 0.25]);
    // Selection, not arithmetic: an infinity in the branch not taken does not leak.
    let z = Tensor::from_vec(vec![0.0f64, 2.0], &[2]);
    let inv =
        tapegrad_ops::where_(&z.ne(&Tensor::zeros_dtype(&[1], DType::F64)), &z.reciprocal(), &z);
    assert_eq!(v64(&inv), vec![0.0, 0.5]);
}

#[test]
fn reductions_values() {
    let x = Tensor::from_vec(vec![3.0f64, 1.0, 4.0, 1.0, 5.0, 9.0], &[2, 3]);
    assert_eq!(v64(&x.max()), vec![9.0]);
    assert_eq!(v64(&x.min()), vec![1.0]);
    let (m, i) = x.max_dim(0, true);
    assert_eq!(
        (m.shape(), v64(&m), i.to_vec::<i64>()),
        (&[1, 3][..], vec![3.0, 5.0, 9.0], vec![0, 1, 1])
    );
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(x.argmin(Some(1), false).to_vec::<i64>(), vec![1, 0]);
    // First index on ties, as in PyTorch.
    assert_eq!(
        Tensor::from_vec(vec![2.0f32, 5.0, 5.0], &[3]).argmax(None, false).to_vec::<i64>(),
        vec![1]
    );
    assert!(close(&v64(&x.var(1.0)), &[269.0 / 30.0], 1e-14));
    assert!(close(&v64(&x.var_dim(1, 1.0, false)), &[7.0 / 3.0, 16.0], 1e-14));
    assert!(close(
        &v64(&x.logsumexp(1, false)),
        &[
            4.0 + (1.0 + (-1f64).exp() + (-3f64).exp()).ln(),
            9.0 + ((-8f64).exp() + (-4f64).exp() + 1.0).ln()
        ],
        1e-15
    ));
    assert!(close(&v64(&x.norm(2.0)), &[133f64.sqrt()], 1e-15));
    assert_eq!(v64(&x.norm(f64::INFINITY)), vec![9.0]);
    // The gradient of the 2-norm at the origin is 0, not NaN.
    let z = Tensor::zeros_dtype(&[3], DType::F64).requires_grad();
    z.norm(2.0).backward();
    assert_eq!(v64(&z.grad().unwrap()), vec![0.0; 3]);
}

/// `amax`/`amin` split the gradient among ties, give a NaN group NaN throughout (no element
/// equals NaN), keep a 0-d input 0-d, and reduce several dimensions at once, as PyTorch does.
#[test]
fn amax_splits_ties_and_propagates_nan() {
    let x = Tensor::from_vec(vec![2.0f64, 7.0, 7.0, 1.0, f64::NAN, 3.0], &[2, 3]).requires_grad();
    let m = x.amax(&[1], false);
    assert_eq!(v64(&m)[0], 7.0);
    assert!(v64(&m)[1].is_nan());
    m.sum().backward();
    let g = v64(&x.grad().unwrap());
    assert_eq!(g[..3], [0.0, 0.5, 0.5]);
    assert!(g[3..].iter().all(|v| v.is_nan()), "{g:?}");

    let y = Tensor::from_vec((0..24).map(|i| ((i * 7) % 5) as f64).collect(), &[2, 3, 4])
        .requires_grad();
    let m = y.amin(&[0, 2], true);
    assert_eq!(m.shape(), &[1, 3, 1]);
    assert_eq!(v64(&m), vec![0.0; 3]);
    m.sum().backward();
    // The groups (fixed middle index) have their minimum 0 at flat positions {0, 15}, {5}
    // and {10, 20}.
    let mut expected = vec![0.0; 24];
    for (i, share) in [(0, 0.5), (15, 0.5), (5, 1.0), (10, 0.5), (20, 0.5)] {
        expected[i] = share;
    }
    assert_eq!(v64(&y.grad().unwrap()), expected);

    let s = Tensor::scalar(f64::NAN).requires_grad();
    let m = s.amax(&[0], true);
    assert_eq!(m.shape(), &[] as &[usize]);
    m.backward();
    assert!(v64(&s.grad().unwrap())[0].is_nan());
    let err = Tensor::zeros_dtype(&[2, 0], DType::F64).try_amax(&[0, 1], false).unwrap_err();
    assert!(err.to_string().contains("empty dimension 1"), "{err}");
}

#[test]
fn matmul_semantics() {
    let a = Tensor::arange_dtype(0.0, 6.0, 1.0, DType::F64).reshape(&[2, 3]);
    let v = Tensor::from_vec(vec![1.0f64, 0.0, -1.0], &[3]);
    assert_eq!(v64(&a.matmul(&v)), vec![-2.0, -2.0]);
    assert_eq!(v64(&Tensor::from_vec(vec![1.0f64, 1.0], &[2]).matmul(&a)), vec![3.0, 5.0, 7.0]);
    assert_eq!(v64(&v.matmul(&v)), vec![2.0]);
    let batch = Tensor::arange_dtype(0.0, 12.0, 1.0, DType::F64).reshape(&[2, 2, 3]);
    let out = batch.matmul(&a.t());
    assert_eq!(out.shape(), &[2, 2, 2]);
    assert_eq!(v64(&out), vec![5.0, 14.0, 14.0, 50.0, 23.0, 86.0, 32.0, 122.0]);
    let err = Tensor::zeros(&[2, 3]).try_matmul(&Tensor::zeros(&[4])).unwrap_err();
    assert!(err.to_string().starts_with("matmul:") && err.to_string().contains(file!()), "{err}");
}

#[test]
fn shape_and_index_values() {
    let x = Tensor::arange_dtype(0.0, 6.0, 1.0, DType::F64).reshape(&[2, 3]);
    assert_eq!(v64(&x.permute(&[1, 0])), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(v64(&x.narrow(1, 1, 2)), vec![1.0, 2.0, 4.0, 5.0]);
    assert_eq!(v64(&x.slice(1, 0, 3, 2)), vec![0.0, 2.0, 3.0, 5.0]);
    assert_eq!(v64(&tapegrad_ops::cat(&[&x, &x.mul_scalar(10.0)], 0)).len(), 12);
    assert_eq!(tapegrad_ops::stack(&[&x, &x], 1).shape(), &[2, 2, 3]);
    assert_eq!(v64(&x.pad(&[(1, 0)], -1.0)), vec![-1.0, 0.0, 1.0, 2.0, -1.0, 3.0, 4.0, 5.0]);
    assert_eq!(x.repeat(&[2, 1, 2]).shape(), &[2, 2, 6]);
    let idx = Tensor::from_vec(vec![2i64, 0, 2], &[3]);
    assert_eq!(v64(&x.index_select(1, &idx)), vec![2.0, 0.0, 2.0, 5.0, 3.0, 5.0]);
    let g = Tensor::from_vec(vec![0i64, 0, 1, 0], &[2, 2]);
    assert_eq!(v64(&x.gather(1, &g)), vec![0.0, 0.0, 4.0, 3.0]);
    let err = x.try_gather(1, &Tensor::from_vec(vec![3i64], &[1, 1])).unwrap_err();
    assert!(err.to_string().contains("index 3 at position [0, 0] is out of range"), "{err}");
    let err = x.try_index_select(0, &Tensor::from_vec(vec![0.0f32], &[1])).unwrap_err();
    assert!(err.to_string().contains("int64"), "{err}");
    let err =
        tapegrad_ops::try_cat(&[&x, &Tensor::zeros_dtype(&[3, 3], DType::F64)], 1).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "cat", .. }), "{err}");
}

/// `reshape` is a view where strides can express it (a time-major slice of rows, a
/// transposed pair of dimensions kept together), a copy where they cannot, and always a copy
/// of a broadcast tensor, so that `repeat` gives every element its own place; the values are
/// those of the row-major copy either way.
#[test]
fn reshape_views_strided_tensors_and_copies_broadcast_ones() {
    let buffer = Tensor::arange_dtype(0.0, 48.0, 1.0, DType::F64).reshape(&[3, 4, 4]);
    let rows = buffer.narrow(2, 0, 2); // [3, 4, 2], rows 4 apart
    let merged = rows.reshape(&[12, 2]);
    assert!(!merged.is_contiguous(), "a view, not a copy");
    assert_eq!(v64(&merged), v64(&rows.contiguous()));
    let split = rows.reshape(&[3, 2, 2, 2]);
    assert_eq!(v64(&split), v64(&rows.contiguous()));
    // Columns of a transposed matrix cannot be one run: copied.
    let t = buffer.narrow(0, 0, 1).reshape(&[4, 4]).t();
    let flat = t.reshape(&[16]);
    assert!(flat.is_contiguous());
    assert_eq!(v64(&flat), v64(&t.contiguous()));
    // A repeated row, as `repeat` and broadcast gradients make: copied, every element its own.
    let row = Tensor::arange_dtype(0.0, 3.0, 1.0, DType::F64);
    let tiled = row.repeat(&[4, 1]);
    assert!(tiled.is_contiguous());
    assert_eq!(v64(&tiled), [0.0, 1.0, 2.0].repeat(4));
    let wide = row.reshape(&[1, 3]).expand(&[4, 3]).reshape(&[2, 6]);
    assert!(wide.is_contiguous());
    assert_eq!(v64(&wide), [0.0, 1.0, 2.0].repeat(4));
    // Gradients flow through the views as through the copies.
    let x = Tensor::arange_dtype(0.0, 24.0, 1.0, DType::F64).reshape(&[2, 3, 4]).requires_grad();
    let y = x.narrow(2, 1, 2).reshape(&[6, 2]).mul_scalar(3.0).sum();
    y.backward();
    let want: Vec<f64> =
        (0..24).map(|i| if (1..3).contains(&(i % 4)) { 3.0 } else { 0.0 }).collect();
    assert_eq!(v64(&x.grad().unwrap()), want);
}

#[test]
fn cat_places_every_block_of_every_input_along_any_dimension() {
    // Pieces of 1, 2 and 3 along the joined dimension, one of them a transposed view.
    let a = Tensor::arange_dtype(0.0, 6.0, 1.0, DType::F64).reshape(&[2, 1, 3]);
    let b = Tensor::arange_dtype(10.0, 22.0, 1.0, DType::F64).reshape(&[2, 3, 2]).transpose(1, 2);
    let c = Tensor::arange_dtype(30.0, 48.0, 1.0, DType::F64).reshape(&[2, 3, 3]);
    let joined = tapegrad_ops::cat(&[&a, &b, &c], 1);
    assert_eq!(joined.shape(), &[2, 6, 3]);
    for (i, j, k) in (0..2).flat_map(|i| (0..6).flat_map(move |j| (0..3).map(move |k| (i, j, k)))) {
        let (source, at) = match j {
            0 => (&a, 0),
            1 | 2 => (&b, j - 1),
            _ => (&c, j - 3),
        };
        let expected = source.narrow(0, i, 1).narrow(1, at, 1).narrow(2, k, 1).item();
        assert_eq!(joined.narrow(0, i, 1).narrow(1, j, 1).narrow(2, k, 1).item(), expected);
    }
    // The first and last dimensions; an empty piece adds nothing.
    let x = Tensor::from_vec(vec![1i64, 2, 3, 4], &[2, 2]);
    let none = Tensor::from_vec(Vec::<i64>::new(), &[0, 2]);
    assert_eq!(
        tapegrad_ops::cat(&[&x, &none, &x], 0).to_vec::<i64>(),
        vec![1, 2, 3, 4, 1, 2, 3, 4]
    );
    assert_eq!(tapegrad_ops::cat(&[&x, &x], -1).to_vec::<i64>(), vec![1, 2, 1, 2, 3, 4, 3, 4]);
    let masks = [Tensor::from_vec(vec![true, false], &[2]), Tensor::from_vec(vec![false], &[1])];
    let mask = tapegrad_ops::cat(&[&masks[0], &masks[1]], 0);
    assert_eq!((mask.dtype(), mask.to_vec::<bool>()), (DType::Bool, vec![true, false, false]));
    // Many pieces, as a recurrent layer stacks its steps.
    let steps: Vec<Tensor> =
        (0..300).map(|t| Tensor::full_dtype(&[2, 3], t as f64, DType::F64)).collect();
    let stacked = tapegrad_ops::stack(&steps.iter().collect::<Vec<_>>(), 1);
    assert_eq!(stacked.shape(), &[2, 300, 3]);
    let expected: Vec<f64> = (0..2).flat_map(|_| (0..300).flat_map(|t| [t as f64; 3])).collect();
    assert_eq!(v64(&stacked), expected);
}

/// Pieces that are slices of wider rows (what `chunk` hands out) are joined where they lie,
/// and the gradient of each slice is added into the whole's where it lies; small and large
/// enough to be shared among threads.
#[test]
fn chunks_joined_again_keep_values_and_gradients() {
    for (rows, cols) in [(3usize, 8usize), (600, 256)] {
        let x = Tensor::arange_dtype(0.0, (rows * cols) as f64, 1.0, DType::F64)
            .reshape(&[rows as isize, cols as isize])
            .requires_grad();
        let parts = x.chunk(4, 1);
        // Reordered, and one piece also cut along the rows (an offset into the storage).
        let last = parts[3].narrow(0, 1, rows - 1);
        let first = parts[0].narrow(0, 1, rows - 1);
        let joined = tapegrad_ops::cat(&[&parts[2], &parts[1]], 1);
        let ends = tapegrad_ops::cat(&[&last, &first], 1);
        let q = cols / 4;
        let got = v64(&joined);
        for r in 0..rows {
            for j in 0..2 * q {
                let c = if j < q { 2 * q + j } else { j };
                assert_eq!(got[r * 2 * q + j], (r * cols + c) as f64, "({r}, {j})");
            }
        }
        let got = v64(&ends);
        for r in 0..rows - 1 {
            for j in 0..2 * q {
                let c = if j < q { 3 * q + j } else { j - q };
                assert_eq!(got[r * 2 * q + j], ((r + 1) * cols + c) as f64, "ends ({r}, {j})");
            }
        }
        // Weights that differ per element, so every gradient element lands in one place.
        let w1 = joined.detach().mul_scalar(0.5);
        let w2 = ends.detach().add_scalar(1.0);
        ((&joined * &w1).sum() + (&ends * &w2).sum()).backward();
        let g = v64(&x.grad().unwrap());
        for r in 0..rows {
            for c in 0..cols {
                let v = (r * cols + c) as f64;
                let mut want = if (q..3 * q).contains(&c) { 0.5 * v } else { 0.0 };
                if r > 0 && (c < q || c >= 3 * q) {
                    want += v + 1.0;
                }
                assert_eq!(g[r * cols + c], want, "gradient at ({r}, {c})");
            }
        }
    }
}

#[test]
fn integer_tensors_are_indices_not_numbers() {
    let labels = Tensor::from_vec(vec![3i64, 1, 2], &[3]);
    assert_eq!(labels.dtype(), DType::I64);
    assert_eq!(labels.to_string(), "tensor([3, 1, 2], dtype=int64)");
    assert_eq!(labels.to_dtype(DType::F32).to_vec::<f32>(), vec![3.0, 1.0, 2.0]);
    assert_eq!(
        Tensor::from_vec(vec![-1.7f64, 2.9], &[2]).to_dtype(DType::I64).to_vec::<i64>(),
        vec![-1, 2]
    );
    let err = labels.clone().try_requires_grad().unwrap_err();
    assert!(err.to_string().contains("only float tensors"), "{err}");
    let err = labels.try_add(&labels).unwrap_err();
    assert!(err.to_string().contains("int64"), "{err}");
}

#[test]
fn losses_match_their_definitions() {
    let logits = Tensor::from_vec(vec![2.0f64, 1.0, 0.1, 0.5, 2.5, 0.3], &[2, 3]);
    let target = Tensor::from_vec(vec![0i64, 2], &[2]);
    let lse = |r: &[f64]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
    let l0 = lse(&[2.0, 1.0, 0.1]) - 2.0;
    let l1 = lse(&[0.5, 2.5, 0.3]) - 0.3;
    assert!(close(&v64(&functional::cross_entropy(&logits, &target)), &[(l0 + l1) / 2.0], 1e-15));
    let ignore = CrossEntropyLoss::new().ignore_index(2);
    assert!(close(&v64(&functional::cross_entropy_with(&logits, &target, ignore)), &[l0], 1e-15));
    let none = Reduction::None;
    assert!(close(&v64(&functional::cross_entropy_with(&logits, &target, none)), &[l0, l1], 1e-15));
    let err =
        functional::try_cross_entropy_with(&logits, &Tensor::from_vec(vec![0i64], &[1]), none)
            .unwrap_err();
    assert!(err.to_string().contains("target shape [1]"), "{err}");

    let a = Tensor::from_vec(vec![0.0f64, 2.0], &[2]);
    let b = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
    assert_eq!(v64(&functional::mse_loss(&a, &b)), vec![(0.25 + 9.0) / 2.0]);
    assert_eq!(v64(&functional::l1_loss(&a, &b)), vec![1.75]);
    assert_eq!(v64(&functional::smooth_l1_loss_with(&a, &b, Reduction::None)), vec![0.125, 2.5]);
}

#[test]
fn dropout_scales_and_is_seeded() {
    let x = Tensor::ones(&[10_000]);
    tapegrad_tape::manual_seed(5);
    let a = functional::dropout_with(&x, functional::DropoutOptions::default().p(0.25));
    tapegrad_tape::manual_seed(5);
    let b = functional::dropout_with(&x, functional::DropoutOptions::default().p(0.25));
    assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    let kept = a.to_vec::<f32>().iter().filter(|&&v| v != 0.0).count();
    assert!((7300..7700).contains(&kept), "{kept}");
    assert!(a.to_vec::<f32>().iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
}

/// 5 x 5 and 3 x 3 convolutions in f32 take Winograd's algorithm where the CPU has
/// AVX-512; their values and both gradients stay within 1e-5 of the largest value of the
/// f64 result, and with the algorithm forbidden they match the direct f32 sum's bound
/// (1e-6). The switch is
/// process-wide and the other tests of this binary run meanwhile; none of them depends on
/// which algorithm a convolution takes.
#[test]
fn f32_convolutions_stay_close_to_f64_with_and_without_winograd() {
    use tapegrad_ops::set_winograd_enabled;
    tapegrad_tape::manual_seed(3);
    for k in [5, 3] {
        // Eight images: enough tiles for Winograd to apply.
        let x64 = Tensor::randn_dtype(&[8, 16, 9, 9], DType::F64).relu();
        let w64 = Tensor::randn_dtype(&[32, 16, k, k], DType::F64) * 0.07;
        let gy64 = Tensor::randn_dtype(&[8, 32, 9, 9], DType::F64);
        let opts = tapegrad_ops::ConvOptions::default().padding(k / 2);
        let run = |x: &Tensor, w: &Tensor, gy: &Tensor| {
            let (x, w) = (x.detach().requires_grad(), w.detach().requires_grad());
            let y = functional::conv2d_with(&x, &w, None, opts);
            (y.mul(gy).sum()).backward();
            [y.detach(), x.grad().unwrap(), w.grad().unwrap()].map(|t| v64(&t))
        };
        let want = run(&x64, &w64, &gy64);
        let f32s = |t: &Tensor| t.to_dtype(DType::F32);
        for (winograd, bound) in [(true, 1e-5), (false, 1e-6)] {
            let before = set_winograd_enabled(winograd);
            let got = run(&f32s(&x64), &f32s(&w64), &f32s(&gy64));
            set_winograd_enabled(before);
            for (name, (g, w)) in
                ["output", "input gradient", "weight gradient"].iter().zip(got.iter().zip(&want))
            {
                let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let worst = g.iter().zip(w).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst <= bound * scale,
                    "{k}x{k}, winograd {winograd}: {name} off by {worst:e} of {scale:e}"
                );
            }
        }
    }
}

/// Broadcast tensors (the gradient `sum()` sends back, an `expand`ed row) are read where
/// they lie by `cat` and by the gradient of `narrow`, with the values a gathered copy has;
/// a negative zero in a slice's gradient stays negative in the whole's, as a zero-padded
/// copy keeps it.
#[test]
fn broadcast_pieces_are_joined_and_sliced_where_they_lie() {
    for (rows, cols) in [(3usize, 8usize), (600, 256)] {
        let column = Tensor::arange_dtype(0.0, rows as f64, 1.0, DType::F64)
            .reshape(&[rows as isize, 1])
            .expand(&[rows as isize, 2]);
        let row = Tensor::from_vec(vec![7.0f64, 8.0, 9.0], &[1, 3]).expand(&[rows as isize, 3]);
        let joined = tapegrad_ops::cat(&[&column, &row.t().t()], 1);
        let want: Vec<f64> = (0..rows).flat_map(|r| [r as f64, r as f64, 7.0, 8.0, 9.0]).collect();
        assert_eq!(v64(&joined), want, "{rows} rows");

        // Every piece of a chunked tensor gets the broadcast ones of `sum()` (one piece
        // scaled), each added where it lies.
        let x = Tensor::zeros_dtype(&[rows, cols], DType::F64).requires_grad();
        let parts = x.chunk(4, 1);
        let loss = tapegrad_ops::cat(&[&parts[0], &parts[1], &parts[3]], 1).sum()
            + parts[2].mul_scalar(3.0).sum();
        loss.backward();
        let q = cols / 4;
        let want: Vec<f64> =
            (0..rows * cols).map(|i| if (i % cols) / q == 2 { 3.0 } else { 1.0 }).collect();
        assert_eq!(v64(&x.grad().unwrap()), want, "{rows} rows");

        // One slice's gradient of negative zeros, written into the whole's zeros.
        let x = Tensor::zeros_dtype(&[rows, cols], DType::F64).requires_grad();
        x.narrow(1, q, q).mul_scalar(-0.0).sum().backward();
        for (i, v) in v64(&x.grad().unwrap()).iter().enumerate() {
            let inside = (i % cols) / q == 1;
            assert!(*v == 0.0 && v.is_sign_negative() == inside, "[{i}] = {v}");
        }
    }
}

/// `atan2`'s plain backward (one fused pass) and its recorded rule (`create_graph`) give
/// the same gradients bit for bit, at the origin (0) and for broadcast operands too; its
/// f32 values agree with f64's rounded.
#[test]
fn atan2_gradients_agree_fused_and_recorded() {
    let ys: Vec<f32> = vec![1.0, -2.0, 0.0, 0.0, -0.0, 3.5, 1e-30, -7.0, f32::INFINITY];
    let xs: Vec<f32> = vec![1.0, 0.5, 0.0, -1.0, -2.0, -0.0, 1e-30, 1e3, 2.0];
    let n = ys.len();
    let weights = Tensor::from_vec((0..n).map(|i| i as f32 - 3.5).collect(), &[n]);
    let fresh = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[n]).requires_grad();
    let (y, x) = (fresh(&ys), fresh(&xs));
    let angle = y.atan2(&x);
    for ((&a, &b), &got) in ys.iter().zip(&xs).zip(&angle.to_vec::<f32>()) {
        assert_eq!(got.to_bits(), (f64::from(a).atan2(f64::from(b)) as f32).to_bits());
    }
    (&angle * &weights).sum().backward();
    let (y2, x2) = (fresh(&ys), fresh(&xs));
    let options = tapegrad_tape::GradOptions::new().create_graph(true);
    let recorded = tapegrad_tape::grad(&[&(&y2.atan2(&x2) * &weights).sum()], &[&y2, &x2], options);
    for (plain, recorded) in [y.grad().unwrap(), x.grad().unwrap()].iter().zip(&recorded) {
        let (p, r) = (plain.to_vec::<f32>(), recorded.as_ref().unwrap().to_vec::<f32>());
        let same = |(a, b): (&f32, &f32)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        assert!(p.iter().zip(&r).all(same), "{p:?} {r:?}");
    }
    assert_eq!(y.grad().unwrap().to_vec::<f32>()[2], 0.0); // the origin
    // A broadcast operand: its gradient summed over the broadcast dimension.
    let row = Tensor::from_vec(vec![1.0f64, -1.0], &[1, 2]).requires_grad();
    let col = Tensor::from_vec(vec![2.0f64, 3.0], &[2, 1]).requires_grad();
    row.atan2(&col).sum().backward();
    let d = |x: f64, y: f64| x / (x * x + y * y);
    assert!(close(&v64(&row.grad().unwrap()), &[d(2.0, 1.0) + d(3.0, 1.0); 2], 1e-15));
    assert!(v64(&col.grad().unwrap()).iter().all(|v| v.abs() < 1e-15));
}

/// GLU's plain backward (one pass into both halves) and its recorded rule give the same
/// gradient bit for bit, along the first, a middle and the last dimension.
#[test]
fn glu_gradients_agree_fused_and_recorded() {
    let shape = [4, 6, 10];
    let data: Vec<f32> = (0..240).map(|i| ((i * 37) % 101) as f32 / 17.0 - 3.0).collect();
    let weights: Vec<f32> = (0..120).map(|i| (i % 13) as f32 - 6.0).collect();
    for dim in [0isize, 1, -1] {
        let fresh = || Tensor::from_vec(data.clone(), &shape).requires_grad();
        let (x, x2) = (fresh(), fresh());
        let y = x.glu(dim);
        let halves = x.detach().chunk(2, dim);
        let expected = &halves[0] * &halves[1].sigmoid();
        assert_eq!(y.to_vec::<f32>(), expected.to_vec::<f32>(), "dim {dim}");
        let w = Tensor::from_vec(weights.clone(), y.shape());
        (&y * &w).sum().backward();
        let options = tapegrad_tape::GradOptions::new().create_graph(true);
        let recorded = tapegrad_tape::grad(&[&(&x2.glu(dim) * &w).sum()], &[&x2], options);
        let (p, r) =
            (x.grad().unwrap().to_vec::<f32>(), recorded[0].as_ref().unwrap().to_vec::<f32>());
        assert!(
            p.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits()),
            "dim {dim}: {p:?} {r:?}"
        );
    }
}

/// Sine and cosine keep their derivative from the forward pass on large f32 tensors: a plain
/// backward gives the bits of the recorded rule, and both the derivative to f32's precision.
#[test]
fn sin_and_cos_gradients_agree_saved_and_recorded() {
    let data: Vec<f32> = (0..6000).map(|i| ((i * 7919) % 6000) as f32 / 150.0 - 20.0).collect();
    let weights: Vec<f32> = (0..6000).map(|i| (i % 13) as f32 - 6.0).collect();
    type Op = fn(&Tensor) -> Tensor;
    type Derivative = fn(f64) -> f64;
    let ops: [(&str, Op, Derivative); 2] =
        [("sin", |x| x.sin(), f64::cos), ("cos", |x| x.cos(), |v| -v.sin())];
    for (name, op, derivative) in ops {
        let fresh = || Tensor::from_vec(data.clone(), &[60, 100]).requires_grad();
        let (x, x2) = (fresh(), fresh());
        let w = Tensor::from_vec(weights.clone(), &[60, 100]);
        (&op(&x) * &w).sum().backward();
        let options = tapegrad_tape::GradOptions::new().create_graph(true);
        let recorded = tapegrad_tape::grad(&[&(&op(&x2) * &w).sum()], &[&x2], options);
        let (p, r) =
            (x.grad().unwrap().to_vec::<f32>(), recorded[0].as_ref().unwrap().to_vec::<f32>());
        assert!(p.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}");
        for ((&got, &v), &w) in p.iter().zip(&data).zip(&weights) {
            let want = f64::from(w) * derivative(f64::from(v));
            assert!((f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{name}'({v})");
        }
    }
}

/// A product's plain backward (one pass per row) gives the bits of its recorded rule, on
/// rows without zeros, with one zero of either sign, with several, and with infinities and
/// NaN, along every dimension and over everything.
#[test]
fn prod_gradients_agree_fused_and_recorded() {
    let shape = [4, 5, 6];
    let mut data: Vec<f32> = (0..120).map(|i| ((i * 37) % 101) as f32 / 17.0 - 3.0).collect();
    for (at, value) in [(5, -0.0), (20, f32::INFINITY), (30, f32::NAN), (40, 0.0), (41, 0.0)] {
        data[at] = value;
    }
    // A row along the last dimension of negative numbers and a negative zero.
    data[6..12].copy_from_slice(&[-1.0, -2.0, -0.0, -4.0, -1.5, -2.5]);
    let weights: Vec<f32> = (0..120).map(|i| (i % 13) as f32 - 6.0).collect();
    let same = |p: &[f32], r: &[f32]| {
        p.iter().zip(r).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
    };
    for dim in [None, Some(0isize), Some(1), Some(-1)] {
        let fresh = || Tensor::from_vec(data.clone(), &shape).requires_grad();
        let (x, x2) = (fresh(), fresh());
        let product = |x: &Tensor| match dim {
            Some(d) => x.prod_dim(d, false),
            None => x.prod(),
        };
        let y = product(&x);
        let w = Tensor::from_vec(weights[..y.numel()].to_vec(), y.shape());
        (&y * &w).sum().backward();
        let options = tapegrad_tape::GradOptions::new().create_graph(true);
        let recorded = tapegrad_tape::grad(&[&(&product(&x2) * &w).sum()], &[&x2], options);
        let (p, r) =
            (x.grad().unwrap().to_vec::<f32>(), recorded[0].as_ref().unwrap().to_vec::<f32>());
        assert!(same(&p, &r), "dim {dim:?}: {p:?} {r:?}");
    }
}

/// A time loop narrows one tensor once per step; the steps' gradients land in the right
/// parts whether they are added in place (plain backward), recorded (`create_graph`), or
/// the gathered gradient is shared with another input and must not be written.
#[test]
fn many_narrows_of_one_tensor_gather_their_gradients() {
    let x = Tensor::from_vec((0..12).map(f64::from).collect(), &[4, 3]).requires_grad();
    let loss = |x: &Tensor| {
        let mut total = Tensor::zeros_dtype(&[], DType::F64);
        for t in 0..4 {
            // Step t weighs its row by t + 1 and, through a second narrow along dim 1, its
            // first column by another 1.
            let row = x.narrow(0, t, 1);
            total = &total + &(&row.sum() * (t as f64 + 1.0));
            total = &total + &row.narrow(1, 0, 1).sum();
        }
        total
    };
    let want: Vec<f64> =
        (0..4).flat_map(|t| [t as f64 + 2.0, t as f64 + 1.0, t as f64 + 1.0]).collect();
    loss(&x).backward();
    assert_eq!(v64(&x.grad().unwrap()), want);

    // Recorded (grad mode on, so each part is zero-padded): the same gradient.
    let x2 = Tensor::from_vec(v64(&x), &[4, 3]).requires_grad();
    let options = tapegrad_tape::GradOptions::new().create_graph(true);
    let g = tapegrad_tape::grad(&[&loss(&x2)], &[&x2], options)[0].clone().unwrap();
    assert_eq!(v64(&g), want);

    // The same narrow's gradient reaching two inputs (x and x again through `+`).
    let x3 = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    let y = &x3.narrow(0, 0, 2) + &x3.narrow(0, 1, 2);
    (&y.sum() + &x3.narrow(0, 2, 1).sum()).backward();
    assert_eq!(v64(&x3.grad().unwrap()), vec![1.0, 2.0, 2.0]);
}

/// `prod`'s gradient where factors are exactly zero: products are multilinear, so central
/// differences are exact there and the checks hold to rounding, also for second derivatives
/// with one zero in a row.
#[test]
fn prod_gradients_at_zeros() {
    use tapegrad_tape::{GradcheckOptions, gradcheck, gradgradcheck};
    let one_zero =
        Tensor::from_vec(vec![2.0f64, 0.0, -3.0, 1.5, 0.5, 4.0], &[2, 3]).requires_grad();
    let opts = GradcheckOptions::default();
    for dim in [0isize, 1] {
        let f = move |t: &[Tensor]| t[0].prod_dim(dim, false).sum();
        assert!(gradcheck(f, std::slice::from_ref(&one_zero), &opts).unwrap().passed, "dim {dim}");
        assert!(
            gradgradcheck(f, std::slice::from_ref(&one_zero), &opts).unwrap().passed,
            "dim {dim}"
        );
    }
    // Wide enough along the columns for the products to run down them in place: columns
    // with no zero and with one (second derivatives too), and then with two (first only).
    let mut values: Vec<f64> = (0..4 * 20).map(|i| 0.5 + ((i * 37) % 23) as f64 / 20.0).collect();
    values[20 + 3] = 0.0;
    values[5] = 0.0;
    let f = |t: &[Tensor]| {
        let weights = Tensor::arange(1.0, 21.0, 1.0).to_dtype(DType::F64);
        (&t[0].prod_dim(0, false) * &weights).sum()
    };
    let wide = Tensor::from_vec(values.clone(), &[4, 20]).requires_grad();
    assert!(gradcheck(f, std::slice::from_ref(&wide), &opts).unwrap().passed, "columns");
    assert!(gradgradcheck(f, std::slice::from_ref(&wide), &opts).unwrap().passed, "columns");
    values[40 + 5] = 0.0;
    let wide = Tensor::from_vec(values, &[4, 20]).requires_grad();
    assert!(gradcheck(f, std::slice::from_ref(&wide), &opts).unwrap().passed, "two zeros");
    let two_zeros = Tensor::from_vec(vec![0.0f64, 2.0, 0.0, 5.0], &[4]).requires_grad();
    assert!(gradcheck(|t| t[0].prod(), std::slice::from_ref(&two_zeros), &opts).unwrap().passed);
    let p = two_zeros.prod();
    p.backward();
    assert_eq!(two_zeros.grad().unwrap().to_vec::<f64>(), vec![0.0; 4]);
}

#[test]
fn cumsum_and_flip_values() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    assert_eq!(x.cumsum(0).to_vec::<f32>(), vec![1.0, 2.0, 4.0, 6.0, 9.0, 12.0]);
    assert_eq!(x.cumsum(-1).to_vec::<f32>(), vec![1.0, 3.0, 3.0, 7.0, 5.0, 11.0]);
    // The gradient of a running sum counts how many sums each element is in.
    let v = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    v.cumsum(0).sum().backward();
    assert_eq!(v.grad().unwrap().to_vec::<f64>(), vec![3.0, 2.0, 1.0]);
    assert_eq!(x.flip(&[0]).to_vec::<f32>(), vec![5.0, 6.0, 3.0, 4.0, 1.0, 2.0]);
    assert_eq!(Tensor::zeros(&[0, 2]).cumsum(0).shape(), &[0, 2]);
}

/// A running sum along a dimension followed by at least a vector of elements runs down the
/// columns in place: its values are f64's running sums of each column, in f32 and f64, from
/// either end (the gradient), and its gradients pass the numerical checks.
#[test]
fn cumsum_down_columns_is_each_columns_running_sum() {
    use tapegrad_tape::{GradcheckOptions, gradcheck, gradgradcheck};
    let shape = [3usize, 7, 40];
    let values: Vec<f64> =
        (0..3 * 7 * 40).map(|i| ((i * 7919) % 1013) as f64 / 97.0 - 5.0).collect();
    let running = |values: &[f64], n: usize, inner: usize| {
        let mut sums = values.to_vec();
        for (o, block) in sums.chunks_mut(n * inner).enumerate() {
            for j in 0..inner {
                let mut total = 0.0;
                for i in 0..n {
                    total += values[o * n * inner + i * inner + j];
                    block[i * inner + j] = total;
                }
            }
        }
        sums
    };
    for dim in [0usize, 1] {
        let (n, inner) = (shape[dim], shape[dim + 1..].iter().product::<usize>());
        let want = running(&values, n, inner);
        let x = Tensor::from_vec(values.clone(), &shape);
        assert_eq!(x.cumsum(dim as isize).to_vec::<f64>(), want, "f64 along {dim}");
        // f32 elements, summed in f64 and rounded once.
        let x32 = x.to_dtype(DType::F32);
        let widened: Vec<f64> = x32.to_vec::<f32>().iter().map(|&v| f64::from(v)).collect();
        let single: Vec<f32> = running(&widened, n, inner).iter().map(|&v| v as f32).collect();
        assert_eq!(x32.cumsum(dim as isize).to_vec::<f32>(), single, "f32 along {dim}");
        // Each element is in the sums after it (before it, for the gradient from the back).
        let leaf = x.requires_grad();
        leaf.cumsum(dim as isize).sum().backward();
        let counts: Vec<f64> = (0..values.len()).map(|k| (n - (k / inner) % n) as f64).collect();
        assert_eq!(leaf.grad().unwrap().to_vec::<f64>(), counts, "gradient along {dim}");
    }
    let small = Tensor::randn(&[2, 3, 16]).to_dtype(DType::F64).requires_grad();
    let opts = GradcheckOptions::default();
    let f = |t: &[Tensor]| (&t[0].cumsum(1) * &t[0]).sum();
    assert!(gradcheck(f, std::slice::from_ref(&small), &opts).unwrap().passed);
    assert!(gradgradcheck(f, std::slice::from_ref(&small), &opts).unwrap().passed);
}

/// `flip` of several dimensions at once, of a strided view, of a broadcast tensor and of
/// integers, and its gradient: the incoming gradient flipped back.
#[test]
fn flip_reverses_any_dimensions_and_its_gradient_flips_back() {
    let x = Tensor::arange(0.0, 24.0, 1.0).to_dtype(DType::F64).reshape(&[2, 3, 4]).requires_grad();
    let y = x.flip(&[0, 2]);
    let expected: Vec<f64> = (0..24)
        .map(|i| {
            let (a, b, c) = (i / 12, (i / 4) % 3, i % 4);
            ((1 - a) * 12 + b * 4 + (3 - c)) as f64
        })
        .collect();
    assert_eq!(v64(&y), expected);
    let weights = Tensor::arange(0.0, 24.0, 1.0).to_dtype(DType::F64).reshape(&[2, 3, 4]);
    (&y * &weights).sum().backward();
    assert_eq!(v64(&x.grad().unwrap()), v64(&weights.flip(&[2, 0])));
    // A transposed view, a broadcast row and integers.
    let t = x.detach().transpose(1, 2).flip(&[1]);
    assert_eq!(t.to_vec::<f64>()[..3], [3.0, 7.0, 11.0]);
    let row = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[1, 3]).expand(&[2, 3]);
    assert_eq!(row.flip(&[0, 1]).to_vec::<f32>(), vec![3.0, 2.0, 1.0, 3.0, 2.0, 1.0]);
    assert_eq!(Tensor::from_vec(vec![1i64, 2, 3], &[3]).flip(&[0]).to_vec::<i64>(), vec![3, 2, 1]);
    assert!(x.try_flip(&[1, -2]).is_err()); // a dimension twice
}

/// `x.i(...)` agrees with Python's slicing rules, checked against hand-written picks.
#[test]
fn basic_indexing_follows_python() {
    use tapegrad_ops::step_by;
    let x = Tensor::arange(0.0, 10.0, 1.0);
    let cases: Vec<(tapegrad_ops::Indices, Vec<f32>)> = vec![
        ((..).into(), (0..10).map(|v| v as f32).collect()),
        ((-3..).into(), vec![7.0, 8.0, 9.0]),
        ((..-8).into(), vec![0.0, 1.0]),
        ((2..=4).into(), vec![2.0, 3.0, 4.0]),
        ((-2..=-1).into(), vec![8.0, 9.0]),
        (TensorIndex::Slice { start: Some(5), end: Some(2), step: 1 }.into(), vec![]),
        ((-100..100).into(), (0..10).map(|v| v as f32).collect()),
        (step_by(1.., 4).into(), vec![1.0, 5.0, 9.0]),
        (step_by(..-1, 3).into(), vec![0.0, 3.0, 6.0]),
    ];
    for (index, expected) in cases {
        assert_eq!(x.i(index.clone()).to_vec::<f32>(), expected, "{index:?}");
    }
    assert_eq!(x.i(-1).item(), 9.0);
    assert_eq!(x.i(3usize).item(), 3.0);
    let m = Tensor::arange(0.0, 12.0, 1.0).reshape(&[3, 4]);
    assert_eq!(m.i((.., -1)).to_vec::<f32>(), vec![3.0, 7.0, 11.0]);
    assert_eq!(m.i((1.., 1..3)).to_vec::<f32>(), vec![5.0, 6.0, 9.0, 10.0]);
    assert_eq!(m.i(-1).to_vec::<f32>(), vec![8.0, 9.0, 10.0, 11.0]);
    let err = m.try_i((.., 4)).unwrap_err().to_string();
    assert!(err.contains("index 4 is out of range for dimension 1 of size 4"), "{err}");
    assert!(m.try_i((.., step_by(.., 0))).is_err());
    // Gradients land where the elements were taken from.
    let w = Tensor::arange(0.0, 12.0, 1.0).reshape(&[3, 4]).requires_grad();
    w.i((step_by(.., 2), -1)).sum().backward();
    let mut expected = vec![0.0f32; 12];
    expected[3] = 1.0;
    expected[11] = 1.0;
    assert_eq!(w.grad().unwrap().to_vec::<f32>(), expected);
}

/// `isnan`, `isinf` and `isfinite` classify every kind of value in each dtype, on views
/// too, and record nothing.
#[test]
fn value_classes() {
    let special =
        [0.0, -0.0, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE / 4.0];
    let nan = [false, false, false, true, false, false, false];
    let inf = [false, false, false, false, true, true, false];
    let finite = [true, true, true, false, false, false, true];
    let x64 = Tensor::from_vec(special.to_vec(), &[7]).requires_grad();
    let x32 = x64.detach().to_dtype(DType::F32);
    for x in [&x64, &x32] {
        assert_eq!(x.isnan().to_vec::<bool>(), nan, "{}", x.dtype());
        assert_eq!(x.isinf().to_vec::<bool>(), inf, "{}", x.dtype());
        assert_eq!(x.isfinite().to_vec::<bool>(), finite, "{}", x.dtype());
        assert!(!x.isfinite().tracks_grad() && x.isfinite().grad_fn().is_none());
    }
    // A transposed view: values in the view's order.
    let m = Tensor::from_vec(vec![1.0f32, f32::NAN, f32::INFINITY, 2.0], &[2, 2]).t();
    assert_eq!(m.isfinite().to_vec::<bool>(), vec![true, false, false, true]);
    let ints = Tensor::from_vec(vec![i64::MAX, -3], &[2]);
    assert_eq!(
        (
            ints.isnan().to_vec::<bool>(),
            ints.isinf().to_vec::<bool>(),
            ints.isfinite().to_vec::<bool>()
        ),
        (vec![false, false], vec![false, false], vec![true, true])
    );
}

/// Comparisons give bool tensors, which `where_`, `masked_fill`, `masked_select` and the
/// logical operations take, and which convert to and from numbers as PyTorch's do.
#[test]
fn bool_masks() {
    let x = Tensor::from_vec(vec![-1.0f32, 0.0, 2.0, f32::NAN], &[4]);
    let positive = x.gt(&Tensor::zeros(&[1]));
    assert_eq!(positive.dtype(), DType::Bool);
    assert_eq!(positive.to_vec::<bool>(), vec![false, false, true, false]); // NaN > 0 is false
    assert_eq!(x.ne(&x).to_vec::<bool>(), vec![false, false, false, true]);
    assert_eq!(positive.to_dtype(DType::F32).to_vec::<f32>(), vec![0.0, 0.0, 1.0, 0.0]);
    assert_eq!(x.to_dtype(DType::Bool).to_vec::<bool>(), vec![true, false, true, true]); // non-zero
    let not = positive.logical_not();
    assert_eq!(positive.logical_or(&not).to_vec::<bool>(), vec![true; 4]);
    assert_eq!(positive.logical_and(&not).to_vec::<bool>(), vec![false; 4]);
    assert!(positive.clone().try_requires_grad().is_err()); // masks carry no gradient
    // Selections route gradients only to what they keep.
    let w = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3]).requires_grad();
    let keep = Tensor::from_vec(vec![true, false, true], &[3]);
    w.masked_select(&keep).sum().backward();
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![1.0, 0.0, 1.0]);
    w.zero_grad();
    w.masked_fill(&keep, 0.0).sum().backward();
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![0.0, 1.0, 0.0]);
    assert_eq!(
        tapegrad_ops::where_(&keep, &w, &w.zeros_like()).to_vec::<f64>(),
        vec![1.0, 0.0, 3.0]
    );
    assert!(w.try_masked_fill(&keep.to_dtype(DType::F64), 0.0).is_err()); // masks are bool
}

/// Normalisation parameters of another dtype than the input are an error naming the op,
/// not a panic inside the kernel.
#[test]
fn normalisation_parameters_of_another_dtype_are_errors() {
    use tapegrad_ops::{BatchNormOptions, LayerNormOptions};
    let w = Tensor::ones_dtype(&[3], DType::F64);
    let err = functional::try_layer_norm_with(
        &Tensor::ones(&[2, 3]),
        &[3],
        LayerNormOptions::default().bias(&w),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("layer_norm: dtype mismatch, float32 and float64"), "{err}");
    let err = functional::try_batch_norm_with(
        &Tensor::ones(&[2, 3, 2]),
        None,
        BatchNormOptions::default().weight(&w).training(true),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("batch_norm: dtype mismatch, float32 and float64"), "{err}");
}

/// Instance norm's values and gradients against PyTorch 2.15 (`F.instance_norm(x,
/// weight=w, bias=b, eps=1e-5)` on the inputs below, in float64, loss `sum(y * c)`), and the
/// same as group norm with a group per channel.
#[test]
fn instance_norm_matches_pytorch() {
    use tapegrad_ops::{GroupNormOptions, InstanceNormOptions};
    let x =
        Tensor::from_vec((0..24).map(|i| ((i * 7) % 11) as f64 / 4.0 - 1.0).collect(), &[2, 3, 4])
            .requires_grad();
    let w = Tensor::from_vec(vec![0.5f64, 1.0, 1.5], &[3]).requires_grad();
    let b = Tensor::from_vec(vec![0.0f64, 0.1, 0.2], &[3]).requires_grad();
    let c = Tensor::from_vec((0..24).map(|i| (i % 5) as f64 - 2.0).collect(), &[2, 3, 4]);
    let y = functional::instance_norm_with(&x, InstanceNormOptions::default().weight(&w).bias(&b));
    (&y * &c).sum().backward();
    let expected_y = [
        -0.6565285420821659,
        0.2626114168328664,
        -0.2626114168328664,
        0.6565285420821659,
        0.29999744004915097,
        -1.2999820803440567,
        1.4999820803440567,
        -0.09999744004915095,
        -0.8843371395292912,
        2.4891561834507256,
        0.5614457131764303,
        -1.366264757097865,
        0.09999872002457547,
        -0.6999910401720284,
        0.6999910401720284,
        -0.0999987200245755,
        -0.6228914263528608,
        1.626104122300484,
        0.34096380878428695,
        -0.9441765047319101,
        1.766264757097865,
        -0.16144571317643036,
        -2.0891561834507257,
        1.284337139529291,
    ];
    let expected_gx = [
        -0.19922894910412098,
        -0.4980535373906576,
        0.4980535373906576,
        0.19922894910412098,
        3.455959450307775,
        -1.7920028666495202,
        -2.207945934333499,
        0.5439893506752438,
        2.935078013702081,
        1.7287561266454885,
        -4.191210121691186,
        -0.4726240186563832,
        -0.2719946753376219,
        1.1039729671667495,
        0.8960014333247601,
        -1.7279797251538875,
        -2.1888798333852026,
        -0.09121261241284961,
        0.729626611128401,
        1.5504658346696514,
        -2.325698752004477,
        -1.0944399166926015,
        0.13681891861927442,
        3.283319750077804,
    ];
    let close = |got: Vec<f64>, expected: &[f64]| {
        assert_eq!(got.len(), expected.len());
        got.iter().zip(expected).all(|(g, e)| (g - e).abs() <= 1e-12 * e.abs().max(1.0))
    };
    assert!(close(y.to_vec::<f64>(), &expected_y), "{:?}", y.to_vec::<f64>());
    assert!(close(x.grad().unwrap().to_vec::<f64>(), &expected_gx));
    assert!(close(
        w.grad().unwrap().to_vec::<f64>(),
        &[5.213925379269622, 0.6754791861156861, 1.7670679310847706]
    ));
    assert!(close(b.grad().unwrap().to_vec::<f64>(), &[-1.0, 1.0, -2.0]));
    let grouped =
        functional::group_norm_with(&x, 3, GroupNormOptions::default().weight(&w).bias(&b));
    assert_eq!(grouped.to_vec::<f64>(), y.to_vec::<f64>());
}

/// Group norm's values and gradients against PyTorch 2.15 (`F.group_norm(x, 2, w, b, 1e-5)`
/// on the inputs below, in float64, loss `sum(y * c)`).
#[test]
fn group_norm_matches_pytorch() {
    use tapegrad_ops::GroupNormOptions;
    let x =
        Tensor::from_vec((0..24).map(|i| ((i * 7) % 11) as f64 / 4.0 - 1.0).collect(), &[2, 4, 3])
            .requires_grad();
    let w = Tensor::from_vec(vec![0.5f64, 1.0, 1.5, 2.0], &[4]).requires_grad();
    let b = Tensor::from_vec(vec![0.0f64, 0.1, 0.2, 0.3], &[4]).requires_grad();
    let c = Tensor::from_vec((0..24).map(|i| (i % 5) as f64 - 2.0).collect(), &[2, 4, 3]);
    let y = functional::group_norm_with(&x, 2, GroupNormOptions::default().weight(&w).bias(&b));
    (&y * &c).sum().backward();
    let expected_y = [
        -0.6965210678659888,
        0.3482605339329944,
        -0.24875752423785313,
        1.6920481551222601,
        0.49801203878056505,
        -0.69602407756113,
        2.242939781729636,
        0.4269933090810707,
        -1.3889531635674943,
        2.4186042180899925,
        -0.002657745441427394,
        -2.4239197089728473,
        0.14314823189006892,
        -0.5439632811822621,
        0.6584818666943173,
        0.042740707243972276,
        -1.33148231890069,
        1.073407976852469,
        0.6294446956702069,
        -1.4318898435467864,
        2.175445600082952,
        0.18548141448794478,
        -2.5629646378013797,
        2.246815953704938,
    ];
    let expected_gx = [
        0.2984891681737827,
        -1.1940261858858745,
        0.5970109649881186,
        -0.2984863309006911,
        2.0895688781441493,
        -1.4925564945194851,
        -2.4936375364563093,
        0.2834064689889794,
        3.060450474434268,
        4.405107246454277,
        -4.318843074874679,
        -0.9364835785465355,
        0.1914929655502433,
        1.6085058753550012,
        1.0182899441455855,
        -2.3744777375559742,
        -0.27035331467888535,
        -0.1734577328159701,
        2.027536319874373,
        2.602034680562349,
        -3.0413401638798434,
        -3.153953316264199,
        -1.8923434425038923,
        3.458065922211213,
    ];
    let expected_gw = [3.6355641080107106, 5.526121292218395, -6.944746091257599, 4.81388908762634];
    assert!(close(&v64(&y), &expected_y, 1e-12), "{:?}", v64(&y));
    assert!(close(&v64(&x.grad().unwrap()), &expected_gx, 1e-12));
    assert!(close(&v64(&w.grad().unwrap()), &expected_gw, 1e-12));
    assert!(close(&v64(&b.grad().unwrap()), &[0.0, -2.0, 1.0, -1.0], 1e-12));
}

/// Batch norm in evaluation mode (running statistics) against PyTorch 2.15
/// (`F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-5)` in float64, loss `sum(y * c)`;
/// `c` sums to a different non-zero value in each channel, so the bias gradient and the
/// weight's path through the shift are tested).
#[test]
fn batch_norm_with_running_statistics_matches_pytorch() {
    use tapegrad_ops::BatchNormOptions;
    let x =
        Tensor::from_vec((0..12).map(|i| ((i * 5) % 9) as f64 / 3.0 - 1.0).collect(), &[2, 3, 2])
            .requires_grad();
    let stats = functional::BatchNormStats::new(3, DType::F64);
    stats.running_mean.set_data(&Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3]));
    stats.running_var.set_data(&Tensor::from_vec(vec![0.25f64, 4.0, 1.5], &[3]));
    let w = Tensor::from_vec(vec![1.5f64, -0.5, 2.0], &[3]).requires_grad();
    let b = Tensor::from_vec(vec![0.1f64, 0.2, -0.3], &[3]).requires_grad();
    let c = Tensor::from_vec((0..12).map(|i| (i % 5) as f64 * 0.5 - 0.25).collect(), &[2, 3, 2]);
    let options = BatchNormOptions::default().weight(&w).bias(&b).training(false);
    let y = functional::batch_norm_with(&x, Some(&stats), options);
    (&y * &c).sum().backward();
    let expected_y = [
        -4.39991000269991,
        0.5999900002999903,
        0.11666677083313805,
        -0.29999937500117185,
        -4.1103046766683,
        -1.3886584790480856,
        -1.3999700008999698,
        3.5999300020999296,
        -0.13333291666744787,
        0.2,
        -2.4773169580961714,
        -4.654633916192344,
    ];
    let expected_gx = [
        -0.749985000449985,
        0.749985000449985,
        -0.18749976562543946,
        -0.3124996093757324,
        2.8577285075012258,
        -0.4082469296430322,
        0.749985000449985,
        2.2499550013499547,
        -0.3124996093757324,
        -0.4374994531260254,
        -0.4082469296430322,
        0.4082469296430322,
    ];
    assert!(close(&v64(&y), &expected_y, 1e-12), "{:?}", v64(&y));
    assert!(close(&v64(&x.grad().unwrap()), &expected_gx, 1e-12));
    let expected_gw = [2.3332866680666196, 2.208330572921842, -3.4700989019657746];
    assert!(close(&v64(&w.grad().unwrap()), &expected_gw, 1e-12));
    assert!(close(&v64(&b.grad().unwrap()), &[1.0, 5.0, 1.5], 1e-12));
}

/// With no input features every output row is the bias (as in PyTorch), and the gradients
/// have the inputs' empty shapes.
#[test]
fn linear_with_no_input_features_gives_the_bias() {
    let x = Tensor::zeros(&[3, 0]).to_dtype(DType::F64).requires_grad();
    let w = Tensor::zeros(&[2, 0]).to_dtype(DType::F64).requires_grad();
    let b = Tensor::from_vec(vec![1.5f64, -2.0], &[2]).requires_grad();
    let y = functional::linear(&x, &w, Some(&b));
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(v64(&y), vec![1.5, -2.0, 1.5, -2.0, 1.5, -2.0]);
    y.sum().backward();
    assert_eq!(x.grad().unwrap().shape(), &[3, 0]);
    assert_eq!(w.grad().unwrap().shape(), &[2, 0]);
    assert_eq!(v64(&b.grad().unwrap()), vec![3.0, 3.0]);
}

/// f32 sine, cosine, log, log1p and erf against f64's, within one step of f32: sine and
/// cosine in the vectorised range and, for a tensor holding a value past it (and infinity),
/// through libm; the logarithms across exponents and log at its special values; erf where
/// it is not yet 1, and past.
#[test]
fn f32_sin_cos_logs_and_erf_are_within_one_step_of_f64() {
    let steps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    let check = |values: Vec<f32>| {
        let x = Tensor::from_vec(values.clone(), &[values.len()]);
        for (name, got, exact) in
            [("sin", x.sin(), f64::sin as fn(f64) -> f64), ("cos", x.cos(), f64::cos)]
        {
            for (&v, g) in values.iter().zip(got.to_vec::<f32>()) {
                let want = exact(f64::from(v)) as f32;
                let same = g.is_nan() && want.is_nan() || steps(g, want) <= 1;
                assert!(same, "{name}({v:e}) = {g:e}, want {want:e}");
            }
        }
    };
    let in_range: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.37).collect();
    check([in_range.clone(), vec![0.0, -0.0, 1e-30, 3.0e5, -1.0e6]].concat());
    check([in_range, vec![3.0e7, -1.0e30, f32::INFINITY]].concat());

    let positive: Vec<f32> = (1..4000).map(|i| f32::from_bits(i * 531_441)).collect();
    let x = Tensor::from_vec(positive.clone(), &[positive.len()]);
    for (&v, g) in positive.iter().zip(x.log().to_vec::<f32>()) {
        assert!(steps(g, f64::from(v).ln() as f32) <= 1, "log({v:e}) = {g:e}");
    }
    let special = Tensor::from_vec(vec![0.0f32, -1.0, f32::INFINITY], &[3]).log().to_vec::<f32>();
    assert!(special[0] == f32::NEG_INFINITY && special[1].is_nan() && special[2] == f32::INFINITY);

    let above_minus_one: Vec<f32> =
        (1..4000).map(|i| -1.0 + f32::from_bits(i * 531_441)).filter(|v| *v > -1.0).collect();
    let x = Tensor::from_vec(above_minus_one.clone(), &[above_minus_one.len()]);
    for (&v, g) in above_minus_one.iter().zip(x.log1p().to_vec::<f32>()) {
        assert!(steps(g, f64::from(v).ln_1p() as f32) <= 1, "log1p({v:e}) = {g:e}");
    }

    let mut around_zero: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.0023).collect();
    around_zero.extend([1e-30, -1e-40, 0.9, -0.9, 3.99, 4.0, -1e30, f32::INFINITY]);
    let x = Tensor::from_vec(around_zero.clone(), &[around_zero.len()]);
    for (&v, g) in around_zero.iter().zip(x.erf().to_vec::<f32>()) {
        assert!(steps(g, libm::erf(f64::from(v)) as f32) <= 1, "erf({v:e}) = {g:e}");
    }
}

/// Integer powers PyTorch computes as products and reciprocals come out with those values
/// (not `powf`'s, which differ in the last bit): x^3 = x * x * x, x^-1 = 1 / x, x^-2 =
/// 1 / (x * x); other exponents through `powf`.
#[test]
fn special_powers_are_products_as_in_pytorch() {
    let values: Vec<f32> = (1..2000).map(|i| (i as f32 - 1000.5) * 0.0137).collect();
    let x = Tensor::from_vec(values.clone(), &[values.len()]);
    type Reference = fn(f32) -> f32;
    let cases: [(f64, Reference); 4] = [
        (3.0, |v| v * v * v),
        (-1.0, |v| 1.0 / v),
        (-2.0, |v| 1.0 / (v * v)),
        (1.7, |v| v.powf(1.7)),
    ];
    for (p, want) in cases {
        for (&v, got) in values.iter().zip(x.pow(p).to_vec::<f32>()) {
            let w = want(v);
            assert!(
                got.to_bits() == w.to_bits() || got.is_nan() && w.is_nan(),
                "{v}^{p}: {got} vs {w}"
            );
        }
    }
}

#[test]
fn ordering_int64_zero_dimensional_and_empty_tensors() {
    let labels = Tensor::from_vec(vec![3i64, -1, 3, 0], &[4]);
    let (sorted, at) = labels.sort(0, true);
    assert_eq!(sorted.to_vec::<i64>(), vec![3, 3, 0, -1]);
    assert_eq!(at.to_vec::<i64>(), vec![0, 2, 3, 1]);
    // Beyond 2^53, where a float comparison would call these equal.
    let big = Tensor::from_vec(vec![(1i64 << 60) + 1, 1i64 << 60], &[2]);
    assert_eq!(big.argsort(0, false).to_vec::<i64>(), vec![1, 0]);

    let scalar = Tensor::full(&[], 2.5);
    let (value, index) = scalar.sort(0, false);
    assert_eq!((value.item(), index.to_vec::<i64>()), (2.5, vec![0]));
    assert_eq!(scalar.topk(1, -1).0.item(), 2.5);

    let empty = Tensor::zeros(&[2, 0]);
    let (values, indices) = empty.sort(1, false);
    assert_eq!((values.shape(), indices.shape()), (&[2usize, 0][..], &[2usize, 0][..]));
    assert_eq!(empty.topk(0, 1).0.shape(), &[2, 0]);

    let masks = Tensor::from_vec(vec![true, false], &[2]);
    let err = masks.try_sort(0, false).unwrap_err();
    assert!(err.to_string().contains("cannot order a bool tensor"), "{err}");
}

#[test]
fn std_is_the_root_of_var_with_a_zero_gradient_for_constant_samples() {
    let x = Tensor::from_vec(vec![2.0f64, 2.0, 2.0, 1.0, 2.0, 4.0], &[2, 3]).requires_grad();
    let s = x.std_dim(1, 1.0, false);
    let v = x.detach().var_dim(1, 1.0, false);
    assert_eq!(v64(&s), v64(&v).into_iter().map(f64::sqrt).collect::<Vec<_>>());
    s.sum().backward();
    let g = v64(&x.grad().unwrap());
    assert_eq!(&g[..3], &[0.0, 0.0, 0.0]);
    assert!(g[3..].iter().all(|v| v.is_finite() && *v != 0.0));
}

#[test]
fn triangles_keep_their_side_of_the_diagonal_in_every_matrix_of_a_batch() {
    let x = Tensor::arange(1.0, 13.0, 1.0).reshape(&[2, 2, 3]);
    let lower = x.tril(0).to_vec::<f32>();
    assert_eq!(lower, vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0, 7.0, 0.0, 0.0, 10.0, 11.0, 0.0]);
    let upper = x.triu(-1).to_vec::<f32>();
    assert_eq!(upper, x.to_vec::<f32>()); // every element of 2 x 3 is at or above diagonal -1
    let causal = Tensor::ones(&[3, 3]).triu(1).to_vec::<f32>();
    assert_eq!(causal, vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    let mask = Tensor::from_vec(vec![true; 6], &[2, 3]).tril(-1).to_vec::<bool>();
    assert_eq!(mask, vec![false, false, false, true, false, false]);
    // The gradient reaches the kept elements only.
    let w = Tensor::ones_dtype(&[2, 2, 3], DType::F64).requires_grad();
    (&w.triu(0) * &Tensor::full_dtype(&[2, 2, 3], 2.0, DType::F64)).sum().backward();
    assert_eq!(v64(&w.grad().unwrap()), [2.0, 2.0, 2.0, 0.0, 2.0, 2.0].repeat(2));
    let err = Tensor::ones(&[4]).try_tril(0).unwrap_err();
    assert!(err.to_string().contains("tril: needs at least 2 dimensions, got shape [4]"), "{err}");
}

#[test]
fn einsum_agrees_with_the_ops_it_names() {
    let (a, b) = (
        Tensor::randn(&[2, 3, 4]).to_dtype(DType::F64),
        Tensor::randn(&[2, 4, 5]).to_dtype(DType::F64),
    );
    let m = Tensor::randn(&[4, 4]).to_dtype(DType::F64);
    let same = |x: &Tensor, y: &Tensor| {
        assert_eq!(x.shape(), y.shape());
        assert!(close(&v64(x), &v64(y), 1e-12), "{:?} vs {:?}", v64(x), v64(y));
    };
    same(&einsum("bij,bjk->bik", &[&a, &b]), &a.matmul(&b));
    // Implicit output: the labels that appear once (b appears twice, so it is summed).
    same(&einsum("bij,bjk", &[&a, &b]), &a.matmul(&b).sum_dim(0, false));
    same(&einsum("b i j -> b j i", &[&a]), &a.transpose(1, 2));
    same(&einsum("...j->...", &[&a]), &a.sum_dim(-1, false));
    same(
        &einsum("ii->i", &[&m]),
        &m.mul(&Tensor::ones(&[4, 4]).tril(0).triu(0).to_dtype(DType::F64)).sum_dim(1, false),
    );
    same(&einsum("ii", &[&m]), &einsum("ii->i", &[&m]).sum());
    same(&einsum("bij,bij->", &[&a, &a]), &a.square().sum());
    // Outer product, three operands, and an ellipsis broadcast against a plain term.
    let (u, w) = (a.select(0, 0).select(0, 0), b.select(0, 0).select(0, 0));
    same(&einsum("i,j->ij", &[&u, &w]), &u.reshape(&[4, 1]).matmul(&w.reshape(&[1, 5])));
    same(&einsum("bij,bjk,k->bi", &[&a, &b, &w]), &a.matmul(&b).matmul(&w));
    same(&einsum("...ij,jk->...ik", &[&a, &b.select(0, 1)]), &a.matmul(&b.select(0, 1)));
    // Size-1 dimensions broadcast.
    let one = a.narrow(0, 0, 1);
    same(&einsum("bij,bjk->bik", &[&one, &b]), &one.matmul(&b));
}

#[test]
fn einsum_names_what_does_not_fit() {
    let a = Tensor::zeros(&[2, 3]);
    let message = |eq: &str, ops: &[&Tensor]| einsum_error(eq, ops);
    assert!(message("ij,jk", &[&a]).contains("names 2 operands, 1 tensors were given"));
    assert!(message("ijk", &[&a]).contains("operand 0 has shape [2, 3], but its term names 3"));
    assert!(message("i1", &[&a]).contains("`1` is not a label"));
    assert!(message("ij->ii", &[&a]).contains("output label i appears twice"));
    assert!(message("ij->k", &[&a]).contains("output label k is in no operand"));
    assert!(message("ii", &[&a]).contains("label i has size 2 in one place and 3 in operand 0"));
    let row = Tensor::zeros(&[1, 3]);
    assert!(message("ii", &[&row]).contains("label i repeats over sizes 1 and 3"));
    assert!(message("i..j", &[&a]).contains("a lone `.`"));
}

fn einsum_error(equation: &str, operands: &[&Tensor]) -> String {
    let err = tapegrad_ops::try_einsum(equation, operands).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { op: "einsum", .. }), "{err}");
    err.to_string()
}

#[test]
fn solve_with_a_broadcast_matrix_matches_the_copies_and_sums_its_gradient() {
    let a = Tensor::from_vec(vec![4.0f64, 1.0, 0.0, 2.0, 5.0, 1.0, 0.0, 1.0, 3.0], &[3, 3]);
    let copies = a.broadcast_to(&[2, 4, 3, 3]).contiguous();
    let b = Tensor::from_vec((0..48).map(|i| (i as f64 * 0.37).sin()).collect(), &[2, 4, 3, 2]);
    let shared = a.clone().requires_grad();
    let x = tapegrad_ops::linalg::solve(&shared, &b);
    let x_copies = tapegrad_ops::linalg::solve(&copies, &b);
    assert!(close(&v64(&x), &v64(&x_copies), 1e-14));
    x.sum().backward();
    // The shared matrix's gradient is the sum of the gradients of its eight copies.
    let each = copies.requires_grad();
    tapegrad_ops::linalg::solve(&each, &b).sum().backward();
    let summed = each.grad().unwrap().sum_dim(0, false).sum_dim(0, false);
    assert!(close(&v64(&shared.grad().unwrap()), &v64(&summed), 1e-13));
    // A batch of two matrices against four right sides each: [2, 1, 3, 3] with [2, 4, 3, 2].
    let pair = tapegrad_ops::stack(&[&a, &a.transpose(0, 1)], 0).unsqueeze(1);
    let x_pair = tapegrad_ops::linalg::solve(&pair, &b);
    let pair_copies = pair.broadcast_to(&[2, 4, 3, 3]).contiguous();
    assert!(close(&v64(&x_pair), &v64(&tapegrad_ops::linalg::solve(&pair_copies, &b)), 1e-14));
}

#[test]
fn matrix_power_zero_is_the_identity_and_lstsq_names_a_rank_deficient_matrix() {
    use tapegrad_ops::linalg;
    let a = Tensor::randn(&[2, 3, 3]);
    let identity = linalg::matrix_power(&a, 0);
    assert_eq!(identity.shape(), &[2, 3, 3]);
    assert_eq!(v64(&identity), v64(&Tensor::eye(3).broadcast_to(&[2, 3, 3]).contiguous()));
    // The second matrix of the batch has two equal columns.
    let a = Tensor::from_vec(
        vec![1.0f64, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0],
        &[2, 3, 2],
    );
    let error = linalg::try_lstsq(&a, &Tensor::ones_dtype(&[2, 3], DType::F64)).unwrap_err();
    assert!(error.to_string().contains("matrix 1 of the batch is rank-deficient"), "{error}");
    // Underdetermined: the solution of least norm, here the projection onto the row space.
    let wide = Tensor::from_vec(vec![1.0f64, 1.0], &[1, 2]);
    let x = linalg::lstsq(&wide, &Tensor::from_vec(vec![2.0f64], &[1]));
    assert!(close(&v64(&x), &[1.0, 1.0], 1e-15));
}

#[test]
fn a_batch_factored_on_the_threads_matches_its_matrices_one_by_one() {
    use tapegrad_ops::linalg;
    // Sixteen 24 x 24 matrices: enough work for the batch to be shared among threads, while
    // a single matrix is factored on the calling thread.
    let (count, n) = (16, 24);
    let a = &Tensor::randn_dtype(&[count, n, n], DType::F64)
        + &Tensor::eye_dtype(n, DType::F64).mul_scalar(8.0);
    let spd = &a.matmul(&a.transpose(1, 2)) + &Tensor::eye_dtype(n, DType::F64);
    let b = Tensor::randn_dtype(&[count, n, 40], DType::F64);
    let every_op = |a: &Tensor, b: &Tensor, spd: &Tensor| {
        [
            linalg::solve(a, b),
            linalg::inv(a),
            linalg::det(a),
            linalg::cholesky(spd),
            linalg::solve_triangular(&linalg::cholesky(spd), b, false),
            linalg::qr(a).0,
            linalg::qr_with(a, linalg::QrMode::R).1,
            linalg::eigh(spd).0,
            linalg::eigvalsh(spd),
            linalg::svd(a).1,
            linalg::svdvals(a),
            linalg::pinv(a),
        ]
    };
    let batched = every_op(&a, &b, &spd);
    for i in 0..count {
        let at = |t: &Tensor| t.select(0, i as isize);
        let single = every_op(&at(&a), &at(&b), &at(&spd));
        for (op, (all, one)) in batched.iter().zip(&single).enumerate() {
            assert_eq!(v64(&all.select(0, i as isize)), v64(one), "op {op}, matrix {i}");
        }
    }
}

#[test]
fn the_gradients_of_eigenvalues_and_singular_values_are_finite_where_they_repeat() {
    use tapegrad_ops::linalg::{self, MatrixNormOptions, MatrixOrd};
    // The identity: every eigenvalue and singular value repeated. The gradient of their sum
    // is V Vᵀ = U Vᵀ = I, where the full decompositions' rules divide by zero gaps.
    let eye = Tensor::eye_dtype(3, DType::F64).requires_grad();
    linalg::eigvalsh(&eye).sum().backward();
    assert_eq!(v64(&eye.grad().unwrap()), v64(&Tensor::eye_dtype(3, DType::F64)));
    let eye = Tensor::eye_dtype(3, DType::F64).requires_grad();
    linalg::svdvals(&eye).sum().backward();
    let gap = (&eye.grad().unwrap() - &Tensor::eye_dtype(3, DType::F64)).abs().max().item();
    assert!(gap < 1e-15, "off by {gap}");
    // The same through the full decompositions when only their values reach the loss.
    let eye = Tensor::eye_dtype(3, DType::F64).requires_grad();
    linalg::eigh(&eye).0.sum().backward();
    assert_eq!(v64(&eye.grad().unwrap()), v64(&Tensor::eye_dtype(3, DType::F64)));
    let eye = Tensor::eye_dtype(3, DType::F64).requires_grad();
    linalg::svd(&eye).1.sum().backward();
    let gap = (&eye.grad().unwrap() - &Tensor::eye_dtype(3, DType::F64)).abs().max().item();
    assert!(gap < 1e-15, "off by {gap}");
    // A singular, rectangular matrix: the nuclear norm's gradient is U Vᵀ, finite. The
    // second pair of vectors (of the zero singular value) is any completion, but ⟨U Vᵀ, A⟩
    // is the nuclear norm, 5, whichever it is.
    let a = Tensor::from_vec(vec![1.0f64, 2.0, 0.0, 2.0, 4.0, 0.0], &[2, 3]).requires_grad();
    let nuclear = MatrixNormOptions::default().ord(MatrixOrd::Nuc);
    linalg::matrix_norm_with(&a, nuclear).backward();
    let g = a.grad().unwrap();
    assert!(v64(&g).iter().all(|x| x.is_finite()));
    assert!(((&g * &a).sum().item() - 5.0).abs() < 1e-14);
}

#[test]
fn svd_bases_are_whole_and_orthonormal_and_rebuild_the_matrix() {
    use tapegrad_ops::linalg::{self, SvdOptions};
    for shape in [[5, 3], [3, 5], [4, 4]] {
        let a = Tensor::randn_dtype(&[2, shape[0], shape[1]], DType::F64);
        let k = shape[0].min(shape[1]);
        for full in [true, false] {
            let (u, s, vh) = linalg::svd_with(&a, SvdOptions::default().full_matrices(full));
            let (u_columns, v_rows) = if full { (shape[0], shape[1]) } else { (k, k) };
            assert_eq!(u.shape(), &[2, shape[0], u_columns]);
            assert_eq!(vh.shape(), &[2, v_rows, shape[1]]);
            let gram_u = u.transpose(1, 2).matmul(&u);
            let gram_v = vh.matmul(&vh.transpose(1, 2));
            for (gram, size) in [(gram_u, u_columns), (gram_v, v_rows)] {
                let off = (&gram - &Tensor::eye_dtype(size, DType::F64)).abs().max().item();
                assert!(off < 1e-14, "{shape:?}, full {full}: off orthonormal by {off}");
            }
            let rebuilt = u.narrow(2, 0, k).matmul(&(&s.unsqueeze(-1) * &vh.narrow(1, 0, k)));
            assert!((&rebuilt - &a).abs().max().item() < 1e-14, "{shape:?}, full {full}");
            let descending = v64(&s).chunks(k).all(|s| s.windows(2).all(|w| w[0] >= w[1]));
            assert!(descending, "{shape:?}");
        }
    }
}

#[test]
fn pinv_meets_the_penrose_conditions_on_a_rank_deficient_matrix() {
    use tapegrad_ops::linalg::{self, RankTolerance};
    // Rank 2 of 4 x 3: the product of 4 x 2 and 2 x 3.
    let a =
        Tensor::randn_dtype(&[4, 2], DType::F64).matmul(&Tensor::randn_dtype(&[2, 3], DType::F64));
    let p = linalg::pinv(&a);
    assert_eq!(p.shape(), &[3, 4]);
    let close = |x: &Tensor, y: &Tensor| (x - y).abs().max().item() < 1e-12;
    let (ap, pa) = (a.matmul(&p), p.matmul(&a));
    assert!(close(&ap.matmul(&a), &a) && close(&pa.matmul(&p), &p));
    assert!(close(&ap, &ap.transpose(0, 1)) && close(&pa, &pa.transpose(0, 1)));
    assert_eq!(linalg::matrix_rank(&a).to_vec::<i64>(), vec![2]);
    // A tolerance above every singular value: rank 0, and a zero pseudo-inverse.
    let huge = RankTolerance::default().atol(1e6);
    assert_eq!(linalg::matrix_rank_with(&a, huge).to_vec::<i64>(), vec![0]);
    assert!(linalg::pinv_with(&a, huge).abs().max().item() == 0.0);
    // NaN stays NaN (not a zero matrix from a NaN tolerance).
    let nan = Tensor::from_vec(vec![1.0f64, f64::NAN, 0.0, 1.0], &[2, 2]);
    assert!(v64(&linalg::pinv(&nan)).iter().all(|x| x.is_nan()));
}

#[test]
fn spectral_ops_name_what_is_wrong_with_their_input() {
    use tapegrad_ops::linalg::{self, MatrixNormOptions, MatrixOrd};
    let message = |e: Error| e.to_string();
    let e = message(linalg::try_eigh(&Tensor::zeros(&[2, 3])).unwrap_err());
    assert!(e.contains("eigh") && e.contains("[2, 3]"), "{e}");
    let e = message(linalg::try_svdvals(&Tensor::zeros(&[4])).unwrap_err());
    assert!(e.contains("svdvals") && e.contains("[4]"), "{e}");
    let spectral = MatrixNormOptions::default().ord(MatrixOrd::Two);
    let e = message(linalg::try_matrix_norm_with(&Tensor::zeros(&[0, 3]), spectral).unwrap_err());
    assert!(e.contains("matrix_norm") && e.contains("[0, 3]"), "{e}");
    // An empty batch is an empty result, and empty matrices have a 0 condition number.
    assert_eq!(linalg::matrix_norm(&Tensor::zeros(&[0, 2, 3])).shape(), &[0]);
    assert_eq!(linalg::cond(&Tensor::zeros(&[2, 3, 0])).to_vec::<f32>(), vec![0.0, 0.0]);
    // Eigenvalues in f32 agree with f64's to f32's precision.
    let a = Tensor::randn_dtype(&[6, 6], DType::F64);
    let sym = &a + &a.transpose(0, 1);
    let (l64, l32) = (linalg::eigvalsh(&sym), linalg::eigvalsh(&sym.to_dtype(DType::F32)));
    assert!((&l64 - &l32.to_dtype(DType::F64)).abs().max().item() < 1e-5);
}
