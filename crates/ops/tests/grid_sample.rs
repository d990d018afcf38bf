//! `F::grid_sample` and `F::affine_grid` against PyTorch's values and gradients (computed
//! by PyTorch 2.15 in float64: tools/grid_sample_reference.py -> fixtures/grid_sample.json),
//! and their errors.

use serde_json::Value;
use tapegrad_ops::functional::{
    GridSampleMode, GridSampleOptions, GridSamplePadding, affine_grid, grid_sample,
    grid_sample_with, try_affine_grid, try_grid_sample_with,
};
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

fn fixture() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grid_sample.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// `scale sin(rate k + phase)` for k = 0.., shaped, as a leaf that requires grad.
fn wave(shape: &[usize], rate: f64, phase: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let k = Tensor::arange_dtype(0.0, n as f64, 1.0, DType::F64);
    let shape: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    (k.mul_scalar(rate) + phase).sin().mul_scalar(scale).reshape(&shape).detach().requires_grad()
}

fn image() -> Tensor {
    wave(&[2, 3, 4, 5], 0.3, 0.0, 1.0)
}

fn grid() -> Tensor {
    wave(&[2, 3, 4, 2], 0.7, 1.0, 1.3)
}

fn theta() -> Tensor {
    let identity = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 0.0, 1.0, 0.0], &[1, 2, 3]);
    (&wave(&[2, 2, 3], 1.1, 0.0, 0.3) + &identity).detach().requires_grad()
}

/// `sum(out * cos(0.1 k))` backward, so each output element has its own weight.
fn weighted_backward(out: &Tensor) {
    let k = Tensor::arange_dtype(0.0, out.numel() as f64, 1.0, DType::F64);
    (&out.reshape(&[-1]) * &k.mul_scalar(0.1).cos()).sum().backward();
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-12, "{what}[{i}]: {g} vs {w}");
    }
}

fn grad(t: &Tensor) -> Vec<f64> {
    t.grad().map_or_else(|| vec![0.0; t.numel()], |g| g.to_vec::<f64>())
}

#[test]
fn every_mode_and_padding_matches_pytorch() {
    let data = fixture();
    let cases = data["grid_sample"].as_object().unwrap();
    assert_eq!(cases.len(), 8);
    for (name, want) in cases {
        let parts: Vec<&str> = name.split('|').collect();
        let mode = match parts[0] {
            "bilinear" => GridSampleMode::Bilinear,
            _ => GridSampleMode::Nearest,
        };
        let padding = match parts[1] {
            "zeros" => GridSamplePadding::Zeros,
            _ => GridSamplePadding::Border,
        };
        let options = GridSampleOptions::default()
            .mode(mode)
            .padding_mode(padding)
            .align_corners(parts[2] == "True");
        let (x, g) = (image(), grid());
        let out = grid_sample_with(&x, &g, options);
        assert_eq!(out.shape(), [2, 3, 3, 4], "{name}");
        weighted_backward(&out);
        assert_close(&out.to_vec::<f64>(), &floats(&want["out"]), &format!("{name} out"));
        assert_close(&grad(&x), &floats(&want["image_grad"]), &format!("{name} image grad"));
        assert_close(&grad(&g), &floats(&want["grid_grad"]), &format!("{name} grid grad"));
    }
}

#[test]
fn affine_grids_and_their_warps_match_pytorch() {
    let data = fixture();
    for align in [false, true] {
        let want = &data["affine_grid"][if align { "True" } else { "False" }];
        let th = theta();
        let out = affine_grid(&th, &[2, 3, 4, 5], align);
        assert_eq!(out.shape(), [2, 4, 5, 2]);
        weighted_backward(&out);
        assert_close(&out.to_vec::<f64>(), &floats(&want["grid"]), "grid");
        assert_close(&grad(&th), &floats(&want["theta_grad"]), "theta grad");

        let (th, x) = (theta(), image());
        let options = GridSampleOptions::default().align_corners(align);
        let warped = grid_sample_with(&x, &affine_grid(&th, &[2, 3, 3, 6], align), options);
        weighted_backward(&warped);
        assert_close(&warped.to_vec::<f64>(), &floats(&want["warped"]), "warped");
        assert_close(&grad(&th), &floats(&want["warped_theta_grad"]), "warped theta grad");
        assert_close(&grad(&x), &floats(&want["warped_image_grad"]), "warped image grad");
    }
}

#[test]
fn float32_follows_float64() {
    let (x, g) = (image().detach(), grid().detach());
    let want = grid_sample(&x, &g).to_vec::<f64>();
    let got = grid_sample(&x.to_dtype(DType::F32), &g.to_dtype(DType::F32)).to_vec::<f64>();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn bad_inputs_name_what_is_wrong() {
    let options = GridSampleOptions::default();
    let message = |r: tapegrad_tape::Result<Tensor>| r.unwrap_err().to_string();
    let img = Tensor::ones(&[1, 2, 3, 3]);
    let err = message(try_grid_sample_with(
        &Tensor::ones(&[2, 3, 3]),
        &Tensor::zeros(&[1, 2, 2, 2]),
        options,
    ));
    assert!(err.contains("input must be [N, C, H, W]"), "{err}");
    let err = message(try_grid_sample_with(&img, &Tensor::zeros(&[2, 2, 2, 2]), options));
    assert!(err.contains("with the input's N = 1, got shape [2, 2, 2, 2]"), "{err}");
    let err = message(try_grid_sample_with(
        &img,
        &Tensor::zeros_dtype(&[1, 2, 2, 2], DType::F64),
        options,
    ));
    assert!(err.contains("grid is float64 but input is float32"), "{err}");
    let err = message(try_grid_sample_with(
        &Tensor::ones(&[1, 1, 0, 3]),
        &Tensor::zeros(&[1, 1, 1, 2]),
        options,
    ));
    assert!(err.contains("input has no pixels"), "{err}");
    let err = message(try_affine_grid(&Tensor::zeros(&[1, 2, 3]), &[1, 1, 2, 2, 2], false));
    assert!(err.contains("size must be [N, C, H, W]"), "{err}");
    let err = message(try_affine_grid(&Tensor::zeros(&[1, 3, 3]), &[1, 1, 2, 2], false));
    assert!(err.contains("theta must be [N, 2, 3]"), "{err}");
}

/// The kernels' loops (the value, and the gradients of a plain backward) give what the
/// sampling written as recorded ops gives (the value inside a dual level, the gradients
/// when their graph is recorded), in every mode, in both precisions.
#[test]
fn the_kernels_agree_with_the_recorded_ops() {
    use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    use tapegrad_tape::{GradOptions, grad as gradients};
    for dtype in [DType::F64, DType::F32] {
        let limit = if dtype == DType::F64 { 1e-13 } else { 1e-5 };
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            assert_eq!(a.shape(), b.shape(), "{what}");
            for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
                assert!((x - y).abs() <= limit * (1.0 + y.abs()), "{what}: {x} vs {y}");
            }
        };
        let (x, g) = (image().detach().to_dtype(dtype), grid().detach().to_dtype(dtype));
        let weights = Tensor::arange_dtype(0.0, 2.0 * 3.0 * 3.0 * 4.0, 1.0, dtype)
            .mul_scalar(0.37)
            .sin()
            .reshape(&[2, 3, 3, 4]);
        for mode in [GridSampleMode::Bilinear, GridSampleMode::Nearest] {
            for padding in [GridSamplePadding::Zeros, GridSamplePadding::Border] {
                for align in [false, true] {
                    let o = GridSampleOptions::default()
                        .mode(mode)
                        .padding_mode(padding)
                        .align_corners(align);
                    let what = format!("{dtype} {o:?}");
                    let direct = grid_sample_with(&x, &g, o);
                    assert!(!direct.tracks_grad());
                    let composed = {
                        let _level = dual_level();
                        let out = grid_sample_with(&make_dual(&x, &x.ones_like()), &g, o);
                        unpack_dual(&out).primal
                    };
                    close(&direct, &composed, &format!("{what} value"));
                    let (xr, gr) = (x.clone().requires_grad(), g.clone().requires_grad());
                    let both = |create_graph: bool| {
                        let out = grid_sample_with(&xr, &gr, o);
                        let options = GradOptions::new()
                            .grad_outputs(vec![weights.clone().requires_grad()])
                            .create_graph(create_graph);
                        let found = gradients(&[&out], &[&xr, &gr], options);
                        let [a, b] = [&found[0], &found[1]].map(|t| t.clone().unwrap());
                        assert_eq!(a.tracks_grad(), create_graph, "{what}");
                        (a.detach(), b.detach())
                    };
                    let (plain, recorded) = (both(false), both(true));
                    close(&plain.0, &recorded.0, &format!("{what} image gradient"));
                    close(&plain.1, &recorded.1, &format!("{what} grid gradient"));
                }
            }
        }
    }
}

/// Points at infinity, NaN and far away read nothing (or, with the border clamp, the
/// border), in the kernels and in the recorded ops alike; the image's gradient stays
/// finite, with its graph recorded or not.
#[test]
fn far_points_read_the_same_in_both_paths() {
    use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    use tapegrad_tape::{GradOptions, grad as gradients};
    let x = image().detach();
    let mut points = grid().detach().to_vec::<f64>();
    points[..6].copy_from_slice(&[f64::INFINITY, 0.2, f64::NAN, -0.3, -1e300, f64::NEG_INFINITY]);
    let g = Tensor::from_vec(points, &[2, 3, 4, 2]);
    for padding in [GridSamplePadding::Zeros, GridSamplePadding::Border] {
        for mode in [GridSampleMode::Bilinear, GridSampleMode::Nearest] {
            let o = GridSampleOptions::default().mode(mode).padding_mode(padding);
            let direct = grid_sample_with(&x, &g, o).to_vec::<f64>();
            let composed = {
                let _level = dual_level();
                unpack_dual(&grid_sample_with(&make_dual(&x, &x.ones_like()), &g, o)).primal
            };
            assert!(direct.iter().all(|v| v.is_finite()), "{o:?}: {direct:?}");
            assert_close(&direct, &composed.to_vec::<f64>(), &format!("{o:?} value"));
            let xr = x.clone().requires_grad();
            let image_grad = |create_graph: bool| {
                let out = grid_sample_with(&xr, &g, o).sum();
                let found =
                    gradients(&[&out], &[&xr], GradOptions::new().create_graph(create_graph));
                found[0].clone().unwrap().detach().to_vec::<f64>()
            };
            let plain = image_grad(false);
            assert!(plain.iter().all(|v| v.is_finite()), "{o:?}: {plain:?}");
            assert_close(&plain, &image_grad(true), &format!("{o:?} image gradient"));
        }
    }
}

/// An input without channels samples to an empty output, and both gradients (plain or
/// recorded) come back with the inputs' shapes.
#[test]
fn inputs_without_channels_sample_to_nothing() {
    use tapegrad_tape::{GradOptions, grad as gradients};
    let x = Tensor::zeros_dtype(&[2, 0, 4, 5], DType::F64).requires_grad();
    let g = grid();
    for create_graph in [false, true] {
        let out = grid_sample(&x, &g);
        assert_eq!(out.shape(), [2, 0, 3, 4]);
        let found =
            gradients(&[&out.sum()], &[&x, &g], GradOptions::new().create_graph(create_graph));
        assert_eq!(found[0].as_ref().unwrap().shape(), [2, 0, 4, 5]);
        let by_grid = found[1].as_ref().unwrap();
        assert_eq!(by_grid.shape(), [2, 3, 4, 2]);
        assert!(by_grid.to_vec::<f64>().iter().all(|&v| v == 0.0));
    }
}
