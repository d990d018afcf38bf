//! Modules, layers, optimizers, schedulers and parameter files for tapegrad (PyTorch's
//! `torch.nn` and `torch.optim`). Losses are the functions of
//! `tapegrad_ops::functional` (`cross_entropy`, `mse_loss`, ...).
//!
//! ```
//! use tapegrad_nn::{Adam, Forward, Linear, Module, Optimizer, ReLU, Sequential};
//! use tapegrad_ops::{functional::cross_entropy, prelude::*};
//! use tapegrad_tape::Tensor;
//! let model = Sequential::new().add(Linear::new(4, 8)).add(ReLU).add(Linear::new(8, 3));
//! let mut opt = Adam::new(model.parameters(), 1e-2);
//! let x = Tensor::randn(&[16, 4]);
//! let y = Tensor::from_vec((0..16).map(|i| i % 3).collect::<Vec<i64>>(), &[16]);
//! for _ in 0..5 {
//!     let loss = cross_entropy(&model.forward(&x), &y);
//!     opt.zero_grad();
//!     loss.backward();
//!     opt.step();
//! }
//! ```

#![forbid(unsafe_code)]

// The derive's generated code names this crate `tapegrad_nn`, here as everywhere else.
extern crate self as tapegrad_nn;

mod activation;
mod attention;
mod cells;
mod checkpoint;
mod decoder;
mod distance;
mod embedding_bag;
mod field;
mod hooks;
pub mod init;
mod io;
mod layers;
mod lbfgs;
mod loss;
pub mod metrics;
mod module;
mod optim;
mod pooling;
mod rnn;
mod scheduler;
mod stateless;
mod transformer;

pub use activation::{
    CELU, ELU, GELU, GLU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, LogSigmoid, LogSoftmax,
    Mish, PReLU, ReLU, ReLU6, SELU, SiLU, Sigmoid, Softmax, Softplus, Softsign, Tanh, Tanhshrink,
};
pub use attention::{MultiheadAttention, MultiheadAttentionOptions};
pub use cells::{GRUCell, LSTMCell, Nonlinearity, RNNCell};
pub use checkpoint::{Checkpoint, CheckpointInfo, Resume, load_checkpoint, save_checkpoint};
pub use distance::{CosineSimilarity, PairwiseDistance};
pub use embedding_bag::EmbeddingBag;
pub use field::{ModuleField, TrainingFlag};
pub use hooks::{ForwardHookHandle, Hooked};
pub use io::{load, load_tensors, load_with, save, save_tensors};
pub use layers::{
    BatchNorm1d, BatchNorm2d, Bilinear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, Dropout,
    Embedding, Flatten, Fold, GroupNorm, Identity, InstanceNorm1d, InstanceNorm2d, LayerNorm,
    Linear, PixelShuffle, PixelUnshuffle, Sequential, Unflatten, Unfold, Upsample,
};
pub use lbfgs::{LBFGS, LbfgsOptions, LineSearch};
pub use loss::{l1_penalty, l2_penalty};
pub use module::{Forward, Layer, LoadReport, Module, Slot, join_name};
/// `#[derive(Module)]`: see [`Module`](trait@Module) and [`ModuleField`].
pub use tapegrad_derive::Module;
pub use tapegrad_ops::{
    BCELoss, BCEWithLogitsLoss, CTCLoss, CosineEmbeddingLoss, CrossEntropyLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, MarginRankingLoss, NLLLoss,
    PoissonNLLLoss, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss,
};

/// What `#[derive(Module)]`'s generated code names (not for hand-written code).
#[doc(hidden)]
pub mod __derive {
    pub use crate::field::ModuleField;
    pub use crate::module::{Module, Slot, join_name};
    pub use tapegrad_tape::Tensor;
}
pub use decoder::{
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerDecoderOptions,
};
pub use optim::{
    Adadelta, AdadeltaRule, Adagrad, AdagradRule, Adam, AdamRule, AdamW, AdamWRule, Adamax,
    AdamaxRule, NAdam, NAdamRule, Optim, Optimizer, ParamGroup, RAdam, RAdamRule, RMSprop,
    RmspropRule, SGD, SgdRule, UpdateRule, clip_grad_norm, clip_grad_value,
};
pub use pooling::{
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AvgPool1d,
    AvgPool2d, MaxPool1d, MaxPool2d,
};
pub use rnn::{GRU, LSTM, RNN};
pub use scheduler::{
    AnnealStrategy, ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR,
    CyclicMode, ExponentialLR, LambdaLR, LinearLR, LinearWarmup, LrScheduler, MultiStepLR,
    OneCycleLR, PlateauMode, PolynomialLR, ReduceLROnPlateau, ScaleMode, SchedulerState,
    SequentialLR, StepLR, ThresholdMode,
};
pub use transformer::{TransformerEncoder, TransformerEncoderLayer, TransformerEncoderOptions};
