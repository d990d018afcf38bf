//! The instance norm layers' input forms, as PyTorch takes them.

use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

#[test]
fn unbatched_images_are_one_sample_even_when_height_equals_channels() {
    // [C, H, W] with H == C: read as one image, not as a batch of sequences.
    let norm = InstanceNorm2d::new(4).affine(true);
    let image = Tensor::randn(&[4, 4, 6]);
    let single = norm.forward(&image);
    let batched = norm.forward(&image.unsqueeze(0)).squeeze_dim(0);
    assert_eq!(single.to_vec::<f32>(), batched.to_vec::<f32>());
    // Each channel of the image is standardised over its 24 positions.
    let means = single.reshape(&[4, 24]).mean_dim(1, false).to_vec::<f32>();
    assert!(means.iter().all(|m| m.abs() < 1e-5), "{means:?}");
    // And a sequence layer takes [C, L] unbatched.
    let seq = InstanceNorm1d::new(3).forward(&Tensor::randn(&[3, 5]));
    assert_eq!(seq.shape(), &[3, 5]);
}

#[test]
fn wrong_ranks_are_named_and_channels_are_checked_with_affine_only() {
    let message = |f: Box<dyn Fn()>| {
        let f = std::panic::AssertUnwindSafe(f);
        *std::panic::catch_unwind(f).unwrap_err().downcast::<String>().unwrap()
    };
    let text = message(Box::new(|| {
        InstanceNorm1d::new(3).forward(&Tensor::randn(&[2, 3, 4, 4]));
    }));
    assert!(text.contains("InstanceNorm1d: expects a 3-D or 2-D input"), "{text}");
    let text = message(Box::new(|| {
        InstanceNorm2d::new(3).affine(true).forward(&Tensor::randn(&[2, 5, 4, 4]));
    }));
    assert!(text.contains("expects 3 channels"), "{text}");
    // Without affine parameters the count is unused, as in PyTorch (which only warns).
    assert_eq!(
        InstanceNorm2d::new(3).forward(&Tensor::randn(&[2, 5, 4, 4])).shape(),
        &[2, 5, 4, 4]
    );
    // An empty batch gives an empty output.
    assert_eq!(
        InstanceNorm2d::new(3).forward(&Tensor::zeros(&[0, 3, 4, 4])).shape(),
        &[0, 3, 4, 4]
    );
}
