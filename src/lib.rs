//! tapegrad: tape-based reverse-mode automatic differentiation in plain Rust, with
//! PyTorch's names.
//!
//! ```
//! use tapegrad::prelude::*;
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).requires_grad();
//! let y = Tensor::from_vec(vec![0.5f32, -1.0, 2.0], &[3]).requires_grad();
//! let f = (&x * &y).tanh().sum(); // f = sum(tanh(x * y))
//! f.backward();
//! println!("df/dx = {}", x.grad().unwrap());
//! println!("df/dy = {}", y.grad().unwrap());
//! ```
//!
//! The crates behind it: [`tape`] (tensors, the tape, backward, gradcheck), [`ops`] (the
//! differentiable operations), [`nn`] (modules, layers, optimizers, parameter files) and
//! [`data`] (MNIST-format data sets and batching).

#![forbid(unsafe_code)]

/// Sets how many threads kernels may use (rayon's global pool; call it before any tensor
/// work). Returns an error if the pool was already started.
///
/// The calling thread becomes one of the `threads` (as OpenMP's main thread does), so
/// `threads` workers never compete with it for `threads` cores: a parallel kernel called
/// from it runs on it and `threads - 1` helpers instead of waking `threads` others while
/// it waits. Other threads' kernels still run on the pool. Its parallel kernels keep a
/// worker spinning for a while after each (see [`set_spin_time`]).
///
/// ```
/// let _ = tapegrad::set_num_threads(2);
/// ```
pub fn set_num_threads(threads: usize) -> std::result::Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .use_current_thread()
        .build_global()
        .map_err(|e| e.to_string())?;
    tapegrad_kernels::parallel::mark_driver();
    Ok(())
}

pub use tapegrad_kernels::parallel::set_spin_time;
pub use tapegrad_kernels::subnormal::set_flush_denormal;

pub use tapegrad_data as data;
/// Data-parallel training (features `distributed`, and `mpi` for the MPI backend).
#[cfg(feature = "distributed")]
pub use tapegrad_distributed as distributed;
pub use tapegrad_nn as nn;
pub use tapegrad_ops as ops;
pub use tapegrad_tape as tape;
/// Forward-mode differentiation with dual tensors (PyTorch's `torch.autograd.forward_ad`).
pub use tapegrad_tape::forward_ad;

pub use tapegrad_tape::{
    BackwardOptions, DType, Error, Function, FunctionCtx, GradOptions, GradcheckOptions,
    GradcheckReport, Result, Tensor, apply, enable_grad, grad, gradcheck, gradgradcheck,
    manual_seed, no_grad, set_grad_enabled, tape_stats, try_grad,
};

/// What most programs need, in one import: `use tapegrad::prelude::*;`.
///
/// ```
/// use tapegrad::prelude::*;
/// let w = Tensor::randn(&[3, 2]).requires_grad();
/// let loss = Tensor::ones(&[4, 3]).matmul(&w).relu().mean();
/// loss.backward();
/// assert_eq!(w.grad().unwrap().shape(), &[3, 2]);
/// ```
pub mod prelude {
    pub use tapegrad_data::{DataLoader, Mnist};
    pub use tapegrad_nn::{
        Adadelta, Adagrad, Adam, AdamW, Adamax, AdaptiveAvgPool1d, AdaptiveAvgPool2d,
        AdaptiveMaxPool1d, AdaptiveMaxPool2d, AnnealStrategy, AvgPool1d, AvgPool2d, BCELoss,
        BCEWithLogitsLoss, BatchNorm1d, BatchNorm2d, Bilinear, CELU, CTCLoss, Checkpoint,
        ConstantLR, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, CosineAnnealingLR,
        CosineAnnealingWarmRestarts, CosineEmbeddingLoss, CosineSimilarity, CrossEntropyLoss,
        CyclicLR, CyclicMode, Dropout, ELU, Embedding, EmbeddingBag, ExponentialLR, Flatten, Fold,
        Forward, GELU, GLU, GRU, GRUCell, GaussianNLLLoss, GroupNorm, Hardsigmoid, Hardswish,
        Hardtanh, HingeEmbeddingLoss, HuberLoss, Identity, InstanceNorm1d, InstanceNorm2d,
        KLDivLoss, L1Loss, LBFGS, LSTM, LSTMCell, LambdaLR, Layer, LayerNorm, LeakyReLU,
        LineSearch, Linear, LinearLR, LinearWarmup, LogSigmoid, LogSoftmax, LrScheduler, MSELoss,
        MarginRankingLoss, MaxPool1d, MaxPool2d, Mish, Module, MultiStepLR, MultiheadAttention,
        MultiheadAttentionOptions, NAdam, NLLLoss, Nonlinearity, OneCycleLR, Optimizer, PReLU,
        PairwiseDistance, PixelShuffle, PixelUnshuffle, PlateauMode, PoissonNLLLoss, PolynomialLR,
        RAdam, RMSprop, RNN, RNNCell, ReLU, ReLU6, ReduceLROnPlateau, SELU, SGD, ScaleMode,
        SchedulerState, Sequential, SequentialLR, SiLU, Sigmoid, SmoothL1Loss, SoftMarginLoss,
        Softmax, Softplus, Softsign, StepLR, Tanh, Tanhshrink, ThresholdMode, TrainingFlag,
        Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerDecoderOptions,
        TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOptions, TripletMarginLoss,
        Unflatten, Unfold, Upsample, clip_grad_norm, clip_grad_value, load, load_checkpoint,
        load_tensors, load_with, save, save_checkpoint, save_tensors,
    };
    pub use tapegrad_ops::functional::{self as F};
    pub use tapegrad_ops::prelude::*;
    pub use tapegrad_ops::{
        AttentionOptions, AvgPool1dOptions, AvgPool2dOptions, BatchNormOptions, ConvOptions,
        CosineSimilarityOptions, GeluApproximate, GroupNormOptions, InstanceNormOptions,
        InterpolateMode, InterpolateOptions, IntoPair, LayerNormOptions, MaxPool1dOptions,
        MaxPool2dOptions, NormalizeOptions, PadMode, Padding, PairwiseDistanceOptions,
        SoftplusOptions, UnfoldOptions, step_by,
    };
    pub use tapegrad_ops::{Reduction, cat, cdist, einsum, linalg, stack, where_};
    pub use tapegrad_tape::{
        BackwardOptions, DType, Function, FunctionCtx, GradOptions, GradcheckOptions, Tensor,
        apply, grad, gradcheck, gradgradcheck, manual_seed, no_grad,
    };
}

/// The README's examples, compiled and run as doctests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The chapters of the book (`docs/book`), included here so that `cargo test` compiles and
/// runs every code block in them: the book cannot drift from the code.
#[cfg(doctest)]
pub mod book {
    #[doc = include_str!("../docs/book/src/introduction.md")]
    pub struct Introduction;
    #[doc = include_str!("../docs/book/src/scalar-reverse-mode.md")]
    pub struct ScalarReverseMode;
    #[doc = include_str!("../docs/book/src/wengert-list.md")]
    pub struct WengertList;
    #[doc = include_str!("../docs/book/src/vector-jacobian-products.md")]
    pub struct VectorJacobianProducts;
    #[doc = include_str!("../docs/book/src/forward-mode.md")]
    pub struct ForwardMode;
    #[doc = include_str!("../docs/book/src/broadcasting.md")]
    pub struct Broadcasting;
    #[doc = include_str!("../docs/book/src/higher-order.md")]
    pub struct HigherOrder;
    #[doc = include_str!("../docs/book/src/gradcheck.md")]
    pub struct Gradcheck;
    #[doc = include_str!("../docs/book/src/mlp.md")]
    pub struct Mlp;
    #[doc = include_str!("../docs/book/src/speed.md")]
    pub struct Speed;
    #[doc = include_str!("../docs/book/src/exercises.md")]
    pub struct Exercises;
    #[doc = include_str!("../docs/book/src/glossary.md")]
    pub struct Glossary;
}
