//! Batch normalisation with statistics over the global batch (PyTorch's `SyncBatchNorm`):
//! each rank sums its part, and the sums are all-reduced, in forward and (by the recorded
//! all-reduce's rule) in backward.

use tapegrad_nn::{BatchNorm2d, Forward, Module, Slot};
use tapegrad_ops::cat;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{Tensor, no_grad};

use crate::functional::all_reduce;
use crate::group::ProcessGroup;

/// Batch normalisation of `[N, C, ...]` inputs whose training statistics are those of the
/// batch of every rank together (PyTorch's `SyncBatchNorm`): training on `k` ranks with `B`
/// samples each normalises as one process would with `kB`. Costs two all-reduces of `C + 1`
/// and `C` values per forward, and one of each size in backward. In evaluation it is a plain
/// batch norm with the running statistics. Names and state dicts are [`BatchNorm2d`]'s.
///
/// With `ProcessGroup::single()` it is a batch norm of the one process's batch. Ranks may
/// have batches of different sizes: the statistics weigh every sample alike.
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
/// use tapegrad_nn::{BatchNorm2d, Forward};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[4, 3, 2, 2]);
/// let sync = SyncBatchNorm::new(3, &ProcessGroup::single());
/// let plain = BatchNorm2d::new(3);
/// let (a, b) = (sync.forward(&x).to_vec::<f32>(), plain.forward(&x).to_vec::<f32>());
/// assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-5)); // one rank: the same layer
/// ```
pub struct SyncBatchNorm {
    /// The layer's tensors and settings; its own forward serves evaluation.
    bn: BatchNorm2d,
    group: ProcessGroup,
}

/// The inner batch norm's names, tensors and training switch.
impl Module for SyncBatchNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        self.bn.visit(prefix, f)
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        self.bn.visit_mut(prefix, f)
    }

    fn set_training(&self, training: bool) {
        self.bn.set_training(training)
    }
}

impl SyncBatchNorm {
    /// Over `channels` channels with PyTorch's defaults (momentum 0.1, eps 1e-5).
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
    /// use tapegrad_nn::Module;
    /// let bn = SyncBatchNorm::new(8, &ProcessGroup::single());
    /// assert_eq!(bn.named_buffers()[1].0, "running_var");
    /// ```
    pub fn new(channels: usize, group: &ProcessGroup) -> Self {
        SyncBatchNorm::from_batch_norm(BatchNorm2d::new(channels), group)
    }

    /// The same layer (its tensors, momentum, eps and mode) with synchronised statistics
    /// (PyTorch's `convert_sync_batchnorm`, one layer at a time).
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
    /// use tapegrad_nn::BatchNorm2d;
    /// let mut bn = BatchNorm2d::new(2);
    /// bn.eps = 1e-3;
    /// assert_eq!(SyncBatchNorm::from_batch_norm(bn, &ProcessGroup::single()).batch_norm().eps, 1e-3);
    /// ```
    pub fn from_batch_norm(bn: BatchNorm2d, group: &ProcessGroup) -> Self {
        SyncBatchNorm { bn, group: group.clone() }
    }

    /// The layer's tensors and settings (weight, bias, running statistics, momentum, eps).
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
    /// let bn = SyncBatchNorm::new(3, &ProcessGroup::single());
    /// assert_eq!(bn.batch_norm().running_var.to_vec::<f32>(), vec![1.0; 3]);
    /// ```
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }

    /// The layer's tensors and settings, to change.
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
    /// let mut bn = SyncBatchNorm::new(3, &ProcessGroup::single());
    /// bn.batch_norm_mut().momentum = 0.01;
    /// assert_eq!(bn.batch_norm().momentum, 0.01);
    /// ```
    pub fn batch_norm_mut(&mut self) -> &mut BatchNorm2d {
        &mut self.bn
    }

    /// The plain layer again, with what it learned (for evaluation in one process).
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, SyncBatchNorm};
    /// let bn = SyncBatchNorm::new(3, &ProcessGroup::single()).into_batch_norm();
    /// assert_eq!(bn.weight.shape(), &[3]);
    /// ```
    pub fn into_batch_norm(self) -> tapegrad_nn::BatchNorm2d {
        self.bn
    }

    /// The normalised input with the statistics of every rank's batch.
    fn forward_training(&self, x: &Tensor) -> Tensor {
        let shape = x.shape().to_vec();
        assert!(
            shape.len() >= 2,
            "SyncBatchNorm: the input needs a batch and a channel dimension, got shape {shape:?}"
        );
        let channels = shape[1];
        assert_eq!(
            channels,
            self.bn.weight.numel(),
            "SyncBatchNorm: input shape {shape:?} has {channels} channels, the layer {}",
            self.bn.weight.numel()
        );
        let x3 = x.reshape(&[shape[0] as isize, channels as isize, -1]);
        let per_channel = |t: &Tensor| t.sum_dim(2, false).sum_dim(0, false);
        // The count travels with the sums (it need not be equal on every rank).
        let local_count = (x3.numel() / channels.max(1)) as f64;
        let count = Tensor::full(&[1], local_count).to_dtype(x.dtype());
        let sums = all_reduce(&cat(&[&per_channel(&x3), &count], 0), &self.group);
        let total = sums.narrow(0, channels, 1).detach().to_vec::<f64>()[0];
        // As PyTorch: one value per channel has no variance to normalise by.
        assert!(
            total > 1.0,
            "SyncBatchNorm: expected more than 1 value per channel over all ranks when training, \
             got input of shape {shape:?} and {total} in all"
        );
        let mean = sums.narrow(0, 0, channels).mul_scalar(1.0 / total);
        let centered = &x3 - &mean.reshape(&[1, channels as isize, 1]);
        // Two passes (mean, then squares about it): as stable as the one-process kernel.
        let var = all_reduce(&per_channel(&centered.square()), &self.group).mul_scalar(1.0 / total);
        let scale = &(&var + self.bn.eps).rsqrt() * &self.bn.weight;
        let y = &(&centered * &scale.reshape(&[1, channels as isize, 1]))
            + &self.bn.bias.reshape(&[1, channels as isize, 1]);
        {
            let _no_grad = no_grad();
            let m = self.bn.momentum;
            let unbiased = total / (total - 1.0);
            let dtype = self.bn.running_mean.dtype();
            let new_mean = &self.bn.running_mean.mul_scalar(1.0 - m)
                + &mean.detach().to_dtype(dtype).mul_scalar(m);
            let new_var = &self.bn.running_var.mul_scalar(1.0 - m)
                + &var.detach().to_dtype(dtype).mul_scalar(m * unbiased);
            self.bn.running_mean.set_data(&new_mean);
            self.bn.running_var.set_data(&new_var);
            let n = self.bn.num_batches_tracked.to_vec::<i64>()[0];
            self.bn.num_batches_tracked.set_data(&Tensor::from_vec(vec![n + 1], &[]));
        }
        y.reshape(&shape.iter().map(|&d| d as isize).collect::<Vec<_>>())
    }
}

impl Forward for SyncBatchNorm {
    /// Collective in training (every rank must call it); local in evaluation.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.bn.is_training() { self.forward_training(x) } else { self.bn.forward(x) }
    }
}
