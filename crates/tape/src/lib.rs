//! The tape of tapegrad: [`Tensor`], recording, the backward sweep, grad mode, custom
//! functions and the gradient checker.
//!
//! Reverse-mode automatic differentiation in one paragraph: every operation on tensors that
//! require gradients appends a node to a per-thread tape (a Wengert list): its inputs, its
//! call site, and a backward rule that maps the gradient of its output to gradients of its
//! inputs. `backward()` walks the nodes the output depends on in reverse record order,
//! applying each rule and summing gradients per input, and leaves the result in the leaves'
//! `.grad`. The rules are written with the same tensor operations, so recording them
//! (`create_graph`) differentiates gradients again.
//!
//! ```
//! use tapegrad_tape::Tensor;
//! let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
//! let y = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
//! let z = &(&x * &y) + &x; // z = xy + x
//! z.backward();
//! assert_eq!(x.grad().unwrap().item(), 4.0); // y + 1
//! assert_eq!(y.grad().unwrap().item(), 2.0); // x
//! ```

#![forbid(unsafe_code)]

pub mod arith;
mod backward;
mod display;
mod dtype;
mod error;
mod function;
mod grad_mode;
mod gradcheck;
mod inspect;
pub mod kernels;
pub mod layout;
mod random;
mod storage;
mod tape;
mod tensor;
#[cfg(feature = "proptest")]
pub mod testing;

pub use backward::{BackwardOptions, GradOptions, grad, try_grad};
pub use dtype::{DType, Element, Float, Real};
pub use error::{Error, Result, ensure_float, or_panic};
pub use function::{Function, FunctionCtx, apply};
pub use grad_mode::{GradModeGuard, enable_grad, is_grad_enabled, no_grad, set_grad_enabled};
pub use gradcheck::{CheckOutputs, GradcheckOptions, GradcheckReport, Mismatch, gradcheck, gradgradcheck};
pub use inspect::{Graph, NodeInfo, tape_nodes};
pub use random::{Generator, RngState, get_rng_state, manual_seed, set_rng_state, with_generator};
pub use storage::{Buffer, Storage, StorageElement};
pub use tape::{Backward, BackwardCtx, BackwardRule, InputGrads, NodeKey, TapeStats, record, tape_stats, will_record};
pub use tensor::Tensor;

/// Inline vectors used in backward rules' return values (re-exported for op crates).
pub use smallvec;
