//! Matrix products and convolutions read and write subnormal numbers as zero (the kernels'
//! default, for speed on Intel cores), `set_flush_denormal(false)` gives the IEEE results
//! back, and the caller's own arithmetic keeps subnormal numbers either way.
//!
//! One test function: the switch is process-wide, and tests in one file share a process.
//! The large product and the convolution run on rayon's threads when it has more than one
//! (the test thread is not one of them), so a worker that did not flush shows; with a
//! single thread they run on the test thread.

use tapegrad::prelude::*;

/// Every product of two such numbers (1e-40) is subnormal in f32.
const SMALL_F32: f32 = 1e-20;
/// And of two such numbers (1e-320) in f64.
const SMALL_F64: f64 = 1e-160;

fn filled<T: tapegrad::tape::StorageElement + Copy>(value: T, shape: &[usize]) -> Tensor {
    Tensor::from_vec(vec![value; shape.iter().product()], shape)
}

#[test]
fn products_flush_subnormal_numbers_unless_told_not_to() {
    let run = || {
        let x = filled(SMALL_F32, &[64, 64]);
        let product = x.matmul(&x).to_vec::<f32>();
        // Large enough to be split across threads (each block sets its thread's mode).
        let large = filled(SMALL_F32, &[256, 256]);
        let large_product = large.matmul(&large).to_vec::<f32>();
        let small = filled(SMALL_F32, &[4, 4]);
        let small_product = small.matmul(&small).to_vec::<f32>();
        let y = filled(SMALL_F64, &[8, 8]);
        let product_f64 = y.matmul(&y).to_vec::<f64>();
        let image = filled(SMALL_F32, &[8, 16, 32, 32]);
        let conv = F::conv2d(&image, &filled(SMALL_F32, &[16, 16, 3, 3]), None).to_vec::<f32>();
        let depthwise = F::conv2d_with(
            &image,
            &filled(SMALL_F32, &[16, 1, 3, 3]),
            None,
            ConvOptions::default().groups(16),
        )
        .to_vec::<f32>();
        // Values below the smallest normal number, averaged by attention's weights.
        let (q, v) = (filled(1.0f32, &[1, 2, 8, 16]), filled(1e-39f32, &[1, 2, 8, 16]));
        let attended = F::scaled_dot_product_attention(&q, &q, &v).to_vec::<f32>();
        let zero = |v: &[f32]| v.iter().all(|&e| e == 0.0);
        vec![
            zero(&product),
            zero(&large_product),
            zero(&small_product),
            zero(&conv),
            zero(&depthwise),
            zero(&attended),
            product_f64.iter().all(|&e| e == 0.0),
        ]
    };
    let what = [
        "64 x 64 f32 product",
        "256 x 256 f32 product",
        "4 x 4 f32 product",
        "convolution",
        "depthwise",
        "attention",
        "f64 product",
    ];

    let flushed = run();
    for (name, zero) in what.iter().zip(&flushed) {
        assert!(zero, "{name}: subnormal results should read as zero by default");
    }
    // The caller's thread keeps its own arithmetic.
    let own = std::hint::black_box(SMALL_F32) * std::hint::black_box(SMALL_F32);
    assert!(own > 0.0 && own < f32::MIN_POSITIVE, "the caller's arithmetic is unchanged");

    assert_eq!(tapegrad::set_flush_denormal(false), cfg!(target_arch = "x86_64"));
    if cfg!(target_arch = "x86_64") {
        let kept = run();
        for (name, zero) in what.iter().zip(&kept) {
            assert!(!zero, "{name}: with flushing off, the IEEE subnormal results");
        }
        let x = filled(SMALL_F32, &[64, 64]);
        let value = x.matmul(&x).to_vec::<f32>()[0];
        let exact = 64.0 * 1e-40;
        assert!((value as f64 - exact).abs() < 1e-41, "{value} against {exact}");
    }
    tapegrad::set_flush_denormal(true);
    assert!(run().iter().all(|&zero| zero));
}
