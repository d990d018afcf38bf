//! The differentiable operations of tapegrad.
//!
//! Operations are methods of one extension trait per family, all in [`prelude`] (and in
//! tapegrad's), and functions of [`functional`] (PyTorch's `torch.nn.functional`), named as
//! in PyTorch. Each
//! computes its value with a kernel of tapegrad-kernels and records a backward rule
//! written with the same operations, so that every rule can itself be differentiated.
//!
//! ```
//! use tapegrad_ops::prelude::*;
//! use tapegrad_tape::Tensor;
//! let w = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]).requires_grad();
//! let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]);
//! let loss = w.matmul(&x).tanh().sum();
//! loss.backward();
//! assert_eq!(w.grad().unwrap().shape(), &[2, 2]);
//! ```
//!
//! Each family is one file holding its forwards, their backward rules and its methods:
//!
//! | file | methods | free functions |
//! |---|---|---|
//! | `unary.rs` | [`UnaryOps`]: exp, log, tanh, relu, gelu, clamp, pow, ... | |
//! | `activation.rs` | [`ActivationOps`]: hardswish, relu6, selu, mish, logsigmoid, glu, prelu, ... | |
//! | `math.rs` | [`MathOps`]: tan, atan, atan2, sinh, asinh, expm1, log2, logaddexp, sign, floor, round, lgamma, digamma, polygamma, ... | |
//! | `linalg.rs` | | [`linalg::cholesky`], [`linalg::solve_triangular`], [`linalg::solve`], [`linalg::inv`], [`linalg::det`], [`linalg::slogdet`], [`linalg::qr`], [`linalg::lstsq`], [`linalg::cross`], [`linalg::matrix_power`] (PyTorch's `torch.linalg`; `linalg/qr.rs` the QR op, `linalg/composed.rs` the ops made of others) |
//! | `special.rs` | the gamma family's values and rules (`lgamma`, `digamma`, `polygamma`) | |
//! | `binary.rs` | [`BinaryOps`]: maximum, minimum, eq, gt, ... | [`where_`] |
//! | `reduce.rs` | [`ReduceOps`]: sum, mean, prod, cumsum, var, std, max, amax, argmax, norm, logsumexp, softmax | |
//! | `shape.rs` | [`ShapeOps`]: reshape, transpose, permute, narrow, slice, pad, repeat, ... | [`cat`], [`stack`] |
//! | `index.rs` | [`IndexOps`]: select, `i` (slicing), index_select, index_add, gather, scatter_add, masked_fill, tril, triu | [`step_by`] |
//! | `sort.rs` | [`SortOps`]: sort, argsort, topk | |
//! | `matmul.rs` | [`MatmulOps`]: matmul, mm, bmm, mv, dot, outer (and `functional::linear`) | |
//! | `einsum.rs` | | [`einsum`] |
//! | `distance.rs` | | [`cdist`] (and in [`functional`]: normalize, cosine_similarity, one_hot) |
//! | `conv.rs`, `pool.rs`, `pool1d.rs`, `norm.rs`, `attention.rs` | | in [`functional`]: convolutions, pooling, norms, embedding, attention |
//! | `functional.rs` | | softmaxes, losses, dropout and the rest of `torch.nn.functional` |
//! | `func.rs` | | [`func`]: vjp, jvp, jacrev, jacfwd, jacobian, hessian, hvp (`torch.func`) |
//!
//! Every method panics on bad arguments with a message that names the operation, the
//! shapes and the caller's line; `try_` forms return [`tapegrad_tape::Result`] instead.
//! Dimensions are `isize`: negative values count from the end. Adding an operation means
//! its family file (forward, rule, method) and its entry in the test registry
//! (`tests/common/mod.rs`), which drives the gradient checks and docs/OPS.md.

#![forbid(unsafe_code)]

mod activation;
mod attention;
mod binary;
mod conv;
mod derivative;
mod dims;
mod distance;
mod einsum;
mod elementwise;
mod embedding_bag;
pub mod func;
pub mod functional;
mod grid_sample;
mod index;
mod interpolate;
pub mod linalg;
mod loss;
mod math;
mod matmul;
mod norm;
mod options;
mod pool;
mod pool1d;
mod rearrange;
mod recurrent;
mod reduce;
mod shape;
mod sort;
mod special;
mod tangent;
mod unary;
mod unfold;

pub use activation::ActivationOps;
pub use attention::AttentionOptions;
pub use binary::{BinaryOps, try_where, where_};
pub use conv::{ConvOptions, IntoPair, Padding, set_winograd_enabled, winograd_enabled};
pub use distance::{
    CosineSimilarityOptions, NormalizeOptions, PairwiseDistanceOptions, cdist, try_cdist,
};
pub use einsum::{einsum, try_einsum};
pub use embedding_bag::{EmbeddingBagMode, EmbeddingBagOptions};
pub use grid_sample::{GridSampleMode, GridSampleOptions, GridSamplePadding};
pub use index::{IndexOps, Indices, TensorIndex, step_by};
pub use interpolate::{InterpolateMode, InterpolateOptions};
pub use loss::{
    BCELoss, BCEWithLogitsLoss, CTCLoss, CosineEmbeddingLoss, CrossEntropyLoss, GaussianNLLLoss,
    HingeEmbeddingLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, MarginRankingLoss, NLLLoss,
    PoissonNLLLoss, Reduction, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss,
};
pub use math::MathOps;
pub use matmul::MatmulOps;
pub use norm::{BatchNormOptions, GroupNormOptions, InstanceNormOptions, LayerNormOptions};
pub use pool::{AvgPool2dOptions, MaxPool2dOptions};
pub use pool1d::{AvgPool1dOptions, MaxPool1dOptions};
pub use reduce::ReduceOps;
pub use shape::{PadMode, ShapeOps, cat, stack, try_cat, try_stack};
pub use sort::SortOps;
pub use unary::{Exponent, GeluApproximate, SoftplusOptions, UnaryOps};
pub use unfold::UnfoldOptions;

/// The operation traits, to bring every tensor method into scope at once.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, -2.0], &[2]);
/// assert_eq!(x.abs().reshape(&[1, 2]).sum_dim(1, false).to_vec::<f32>(), vec![3.0]);
/// ```
pub mod prelude {
    pub use crate::{
        ActivationOps, BinaryOps, IndexOps, MathOps, MatmulOps, ReduceOps, ShapeOps, SortOps,
        UnaryOps,
    };
}
