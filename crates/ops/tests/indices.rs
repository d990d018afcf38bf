//! Index values as PyTorch checks them: negative or too-large indices are errors that name
//! the operation, the index, its position and the valid range (PyTorch 2.15 raises for
//! every case below; only advanced indexing counts from the end there).

use std::panic::{AssertUnwindSafe, catch_unwind};

use tapegrad_ops::Reduction;
use tapegrad_ops::functional;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

fn x() -> Tensor {
    Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3])
}

fn ids(values: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape)
}

fn assert_index_error(err: String, op: &str, value: i64, position: &str) {
    let expected = format!(
        "{op}: index {value} at position {position} is out of range for a dimension of size 3"
    );
    assert!(err.starts_with(&expected), "{err}\nexpected: {expected}");
    assert!(err.contains("valid indices are 0..=2") && err.contains(file!()), "{err}");
}

#[test]
fn negative_and_too_large_indices_are_errors() {
    for bad in [-1i64, 3, i64::MIN] {
        let err = x().try_index_select(1, &ids(&[0, bad], &[2])).unwrap_err().to_string();
        assert_index_error(err, "index_select", bad, "[1]");
        let err = x().try_gather(1, &ids(&[0, bad], &[2, 1])).unwrap_err().to_string();
        assert_index_error(err, "gather", bad, "[1, 0]");
        let err = x()
            .try_scatter_add(1, &ids(&[bad, 0], &[2, 1]), &Tensor::ones(&[2, 1]))
            .unwrap_err()
            .to_string();
        assert_index_error(err, "scatter_add", bad, "[0, 0]");
        let err = x()
            .try_index_add(1, &ids(&[bad], &[1]), &Tensor::ones(&[2, 1]))
            .unwrap_err()
            .to_string();
        assert_index_error(err, "index_add", bad, "[0]");
    }
}

#[test]
fn embedding_names_itself() {
    let weight = Tensor::ones(&[3, 4]);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        drop(functional::embedding(&ids(&[0, 1, -1], &[3]), &weight))
    }));
    let message = payload.unwrap_err().downcast_ref::<String>().cloned().unwrap();
    assert_index_error(message, "embedding", -1, "[2]");
    assert_eq!(functional::embedding(&ids(&[2, 0], &[2]), &weight).shape(), &[2, 4]);
}

#[test]
fn class_targets_are_checked_except_the_ignored_index() {
    let logits = x().log_softmax(1);
    let err =
        functional::try_nll_loss_with(&logits, &ids(&[0, -1], &[2]), Reduction::Mean).unwrap_err();
    assert_index_error(err.to_string(), "nll_loss", -1, "[1]");
    let err =
        functional::try_cross_entropy_with(&x(), &ids(&[3, 0], &[2]), Reduction::Mean).unwrap_err();
    assert_index_error(err.to_string(), "nll_loss", 3, "[0]");
    // The default ignore_index, -100, is skipped, as in PyTorch (-3 there, the mean over
    // the one counted row).
    let loss = functional::nll_loss(&x(), &ids(&[-100, 0], &[2]));
    assert_eq!(loss.item(), -3.0);
}

#[test]
fn valid_indices_still_work_and_zero_dimensional_inputs_do_not_panic() {
    assert_eq!(x().index_select(1, &ids(&[2, 0], &[2])).to_vec::<f32>(), vec![2.0, 0.0, 5.0, 3.0]);
    assert_eq!(x().gather(1, &ids(&[2, 1], &[2, 1])).to_vec::<f32>(), vec![2.0, 4.0]);
    // PyTorch gathers from a 0-d tensor as from one of size 1.
    assert_eq!(Tensor::scalar(5.0f32).gather(0, &ids(&[0], &[])).item(), 5.0);
    assert!(Tensor::scalar(5.0f32).try_gather(0, &ids(&[1], &[])).is_err());
    assert!(Tensor::scalar(5.0f32).try_index_select(0, &ids(&[0], &[1])).is_err());
}

/// An index that repeats one 1-D index over the other dimensions (message passing's
/// `idx.unsqueeze(1).expand(-1, n)`) picks and adds whole rows: values and gradients are
/// those of the same index written out element by element, and an error names the
/// element's place in the whole index.
#[test]
fn repeated_indices_give_what_written_out_ones_give() {
    use tapegrad_tape::{DType, GradOptions, grad};
    let idx = ids(&[2, 0, 2, 1, 2], &[5]);
    for dim in [0usize, 1] {
        let (x_shape, index) = match dim {
            0 => ([3, 4], idx.unsqueeze(1).expand(&[5, 4])),
            _ => ([4, 3], idx.unsqueeze(0).expand(&[4, 5])),
        };
        let written = index.contiguous();
        let x = Tensor::randn_dtype(&x_shape, DType::F64).requires_grad();
        let src = Tensor::randn_dtype(index.shape(), DType::F64).requires_grad();
        let weights = Tensor::randn_dtype(index.shape(), DType::F64);
        let bits = |t: &Tensor| t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let run = |index: &Tensor| {
            let picked = x.gather(dim as isize, index);
            let added = x.scatter_add(dim as isize, index, &src);
            let loss = &(&picked * &weights).sum() + &added.square().sum();
            let options = GradOptions::new().create_graph(true);
            let first = grad(&[&loss], &[&x, &src], options.clone());
            let (gx, gs) = (first[0].clone().unwrap(), first[1].clone().unwrap());
            // A second derivative through gather's recorded backward (scatter_add).
            let second = grad(&[&(&gx.square().sum() + &gs.square().sum())], &[&x], options);
            [picked, added, gx, gs, second[0].clone().unwrap()].map(|t| bits(&t))
        };
        assert_eq!(run(&index), run(&written), "dim {dim}");
    }
    let bad = ids(&[2, 0, 2, 3, 2], &[5]).unsqueeze(1).expand(&[5, 4]);
    let err = Tensor::ones(&[3, 4]).try_gather(0, &bad).unwrap_err().to_string();
    assert!(err.contains("gather: index 3 at position [3, 0] is out of range"), "{err}");
}
