//! The tape of tapegrad: [`Tensor`], recording, the backward sweep, grad mode, custom
//! functions and the gradient checker.
//!
//! Reverse-mode automatic differentiation in one paragraph: every operation on tensors that
//! require gradients appends a node to a per-thread tape (a Wengert list): its inputs, its
//! call site, and a backward rule that maps the gradient of its output to gradients of its
//! inputs. `backward()` walks the nodes the output depends on in reverse record order,
//! applying each rule and summing gradients per input, and leaves the result in the leaves'
//! `.grad` (each leaf as soon as its last user has run). The rules are written with the same tensor operations, so recording them
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
//!
//! # Writing a differentiable operation
//!
//! Compute the value without recording anything, then [`record()`] it with a [`Backward`]:
//! a rule that maps the output's gradient ([`BackwardCtx::grad`]) to one gradient per
//! input, written with tensor operations, and [`Backward::save`] for each tensor the rule
//! reads back ([`BackwardCtx::saved`]). This is the canonical form; every other is a
//! variant of it.
//!
//! ```
//! use std::panic::Location;
//! use tapegrad_tape::smallvec::smallvec;
//! use tapegrad_tape::{Backward, Tensor, record};
//!
//! /// y = x * x * x, whose derivative is 3x^2.
//! #[track_caller]
//! fn cube(x: &Tensor) -> Tensor {
//!     let v = x.detach(); // a value without a node: computing with it records nothing
//!     let value = &(&v * &v) * &v;
//!     record("cube", Location::caller(), &[x], value, || {
//!         Backward::new(|ctx| {
//!             let x = ctx.saved(0);
//!             smallvec![Some(ctx.grad() * &(x * x) * 3.0)]
//!         })
//!         .save(x)
//!     })
//! }
//!
//! let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
//! cube(&x).backward();
//! assert_eq!(x.grad().unwrap().item(), 12.0);
//! ```
//!
//! The variants, each for one situation (details on [`Backward`]):
//!
//! - **scalar** ([`Backward::scalar`]): a number the rule needs, kept beside it rather
//!   than captured, so that the rule's closure costs no allocation;
//! - **saved output** ([`Backward::save_output`]): for derivatives best written in the
//!   output, such as e^x or tanh;
//! - **in-place** ([`BackwardCtx::grad_for_reuse`]): a single-input elementwise rule on
//!   a hot path writes its result over the incoming gradient when no one else sees it;
//! - **in-place accumulation** ([`BackwardCtx::take_input_grad`]): a rule whose gradient
//!   covers part of its input (`narrow`) adds into the gradient gathered for that input
//!   instead of building a zero tensor of the whole input;
//! - **fused**: with nothing recorded, a rule computes its product in one pass instead of
//!   composing recorded operations (tapegrad-ops' `fused_rule`, for tanh, sigmoid, relu);
//! - **custom functions** ([`Function`] and [`apply`]): the same, for code outside the
//!   tapegrad crates, with forward and backward as two methods.
//!
//! # Reading the source
//!
//! To see how the tape works, read in this order (about fifteen minutes):
//!
//! 1. `node.rs` (3 min): what a node holds, and its life from record to free;
//! 2. `record.rs` (3 min): [`record()`] and [`Backward`], how an operation joins the tape;
//! 3. `sweep.rs` (7 min): the reverse sweep, its driver `sweep` first, then one section
//!    per phase: ordering, applying rules, accumulating, freeing;
//! 4. `tape.rs` (2 min): the per-thread slotmap, reference counts, and why freed values
//!    are dropped after the tape's borrow ends.
//!
//! `backward.rs` holds the public entry points and their options, `arith.rs` the
//! arithmetic operators (with the rules written in the canonical form and its variants).

#![forbid(unsafe_code)]

mod anomaly;
pub mod arith;
mod backward;
mod display;
mod dtype;
mod error;
pub mod forward_ad;
mod function;
mod grad_mode;
mod gradcheck;
mod hooks;
mod in_place;
mod inspect;
mod instrument;
pub mod kernels;
pub mod layout;
mod node;
mod random;
mod recompute;
mod record;
mod sampling;
mod storage;
mod sweep;
mod tape;
mod tensor;
#[cfg(feature = "proptest")]
pub mod testing;
mod trace;

pub use anomaly::{AnomalyGuard, detect_anomaly, detect_anomaly_with, is_anomaly_enabled};
pub use backward::{BackwardOptions, GradOptions, grad, try_grad};
pub use dtype::{DType, Element, Float, Real};
pub use error::{Error, Result, ensure_float, or_panic};
pub use function::{Function, FunctionCtx, apply};
pub use grad_mode::{GradModeGuard, enable_grad, is_grad_enabled, no_grad, set_grad_enabled};
pub use gradcheck::{
    CheckOutputs, GradcheckOptions, GradcheckReport, Mismatch, gradcheck, gradgradcheck,
};
pub use hooks::HookHandle;
pub use in_place::Operand;
pub use inspect::{Graph, NodeInfo, tape_nodes};
pub use node::NodeKey;
pub use random::{Generator, RngState, get_rng_state, manual_seed, set_rng_state, with_generator};
pub use recompute::checkpoint;
pub use record::{
    Backward, BackwardCtx, BackwardRule, InputGrads, TangentCtx, record, record_with_tangent,
    will_record,
};
pub use storage::{Buffer, Storage, StorageElement};
pub use tape::{TapeStats, tape_stats};
pub use tensor::Tensor;
pub use trace::{BackwardTrace, GradSummary, TraceStep};

/// Inline vectors used in backward rules' return values (re-exported for op crates).
pub use smallvec;
