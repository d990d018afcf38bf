//! The all-reduce as a recorded op (PyTorch's `torch.distributed.nn.functional.all_reduce`):
//! what makes statistics over the global batch differentiable.

use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};

use crate::group::{ProcessGroup, ReduceOp};

struct AllReduce {
    group: ProcessGroup,
}

impl Function for AllReduce {
    fn name(&self) -> &'static str {
        "all_reduce"
    }

    fn forward(&self, inputs: &[Tensor]) -> Tensor {
        self.group.all_reduce(&inputs[0], ReduceOp::Sum)
    }

    // Every rank's output is the sum of all inputs, so the gradient of rank r's input is the
    // sum of the gradients that reached every rank's output: another all-reduce, recorded
    // (gradients of gradients work).
    fn backward(&self, _: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(all_reduce(grad, &self.group))]
    }

    fn jvp(&self, ctx: &FunctionCtx<'_>, tangents: &[Option<Tensor>]) -> Option<Tensor> {
        // Collective: every rank reduces, with zeros where it has no tangent.
        let t = tangents[0].clone().unwrap_or_else(|| ctx.input(0).zeros_like());
        Some(all_reduce(&t, &self.group))
    }
}

/// The sum of `x` over the ranks of `group`, recorded on the tape: its backward all-reduces
/// the incoming gradients. Collective, forward and backward: every rank must call it.
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, all_reduce};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let ranks: Vec<_> = ProcessGroup::threads(2)
///     .into_iter()
///     .map(|group| std::thread::spawn(move || {
///         let x = Tensor::full(&[2], group.rank() as f64 + 1.0).requires_grad();
///         let total = all_reduce(&x, &group); // [3, 3] on both ranks
///         (&total * &total).sum().backward(); // each rank's loss: sum of total^2
///         x.grad().unwrap().to_vec::<f32>()
///     }))
///     .collect();
/// for r in ranks {
///     // d/dx_r of (loss_0 + loss_1) = 2 * total + 2 * total
///     assert_eq!(r.join().unwrap(), vec![12.0, 12.0]);
/// }
/// ```
#[track_caller]
pub fn all_reduce(x: &Tensor, group: &ProcessGroup) -> Tensor {
    apply(AllReduce { group: group.clone() }, &[x])
}
