//! Weight penalties. The loss modules (`MSELoss`, `CrossEntropyLoss`, ...) are the loss
//! types of tapegrad-ops, re-exported at this crate's root: a loss has no parameters, so
//! the module and its keywords are one value (`CrossEntropyLoss::new().label_smoothing(0.1)`),
//! which the functions of `tapegrad_ops::functional` take too.

use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

/// `sum |p|` over all parameters: add `lambda * l1_penalty(...)` to a loss for L1
/// regularisation.
///
/// ```
/// use tapegrad_nn::l1_penalty;
/// use tapegrad_tape::Tensor;
/// assert_eq!(l1_penalty(&[Tensor::full(&[2], -1.5)]).item(), 3.0);
/// ```
#[track_caller]
pub fn l1_penalty(params: &[Tensor]) -> Tensor {
    params
        .iter()
        .map(|p| p.abs().sum())
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| Tensor::scalar(0.0f32))
}

/// `sum p^2` over all parameters: add `lambda * l2_penalty(...)` to a loss for L2
/// regularisation.
///
/// ```
/// use tapegrad_nn::l2_penalty;
/// use tapegrad_tape::Tensor;
/// assert_eq!(l2_penalty(&[Tensor::full(&[2], 3.0)]).item(), 18.0);
/// ```
#[track_caller]
pub fn l2_penalty(params: &[Tensor]) -> Tensor {
    params
        .iter()
        .map(|p| p.square().sum())
        .reduce(|a, b| &a + &b)
        .unwrap_or_else(|| Tensor::scalar(0.0f32))
}
