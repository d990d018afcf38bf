//! The error type: every message names the operation, the values involved and the caller's
//! file and line.

use std::panic::Location;

use crate::DType;

/// Everything that can go wrong in tapegrad.
///
/// Tensor code panics with this error's message by default; each operation's `try_` form
/// returns it instead for code that wants to recover.
///
/// ```
/// use tapegrad_tape::{Error, Tensor};
/// let a = Tensor::zeros(&[2, 3]);
/// let b = Tensor::zeros(&[4]);
/// let err = a.try_add(&b).unwrap_err();
/// assert!(matches!(err, Error::Shape { op: "add", .. }));
/// assert!(err.to_string().contains("[2, 3] and [4]"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shapes that the operation cannot combine.
    #[error("{op}: {message} (at {location})")]
    Shape {
        /// The operation, by its PyTorch name.
        op: &'static str,
        /// What is wrong, with the shapes involved.
        message: String,
        /// The user's call site.
        location: &'static Location<'static>,
    },
    /// Operands of different dtypes.
    #[error("{op}: dtype mismatch, {lhs} and {rhs} (at {location}); convert one with `to_dtype`")]
    DType {
        /// The operation.
        op: &'static str,
        /// The first operand's dtype.
        lhs: DType,
        /// The second operand's dtype.
        rhs: DType,
        /// The user's call site.
        location: &'static Location<'static>,
    },
    /// A dimension index outside `-rank..rank`.
    #[error(
        "{op}: dimension {dim} is out of range for a tensor of shape {shape:?} (at {location})"
    )]
    Dim {
        /// The operation.
        op: &'static str,
        /// The dimension asked for.
        dim: isize,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// The user's call site.
        location: &'static Location<'static>,
    },
    /// Any other argument the operation cannot accept.
    #[error("{op}: {message} (at {location})")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        message: String,
        /// The user's call site.
        location: &'static Location<'static>,
    },
    /// Backward reached a part of the graph that an earlier backward already freed.
    #[error(
        "backward: the graph behind `{op}` (recorded at {location}) was already freed by an \
         earlier backward(); to run backward through it again, pass retain_graph = true to \
         the first backward (`BackwardOptions::new().retain_graph(true)`)"
    )]
    FreedGraph {
        /// The operation whose input was freed.
        op: &'static str,
        /// Where that operation was recorded.
        location: &'static Location<'static>,
    },
    /// A backward or grad request that cannot be carried out.
    #[error("{op}: {message} (at {location})")]
    Backward {
        /// `backward` or `grad`, or the op whose backward rule misbehaved.
        op: &'static str,
        /// What is wrong.
        message: String,
        /// The user's call site.
        location: &'static Location<'static>,
    },
    /// Anomaly mode found a NaN or an infinity (see `detect_anomaly`).
    #[error("anomaly: {message}; the op `{op}` was recorded at {location}")]
    Anomaly {
        /// The operation whose forward or backward produced it.
        op: &'static str,
        /// What was found, and where in the tensor.
        message: String,
        /// Where the operation was called.
        location: &'static Location<'static>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file or data set whose contents are not what was expected.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong and where in the file.
        message: String,
    },
}

/// `Result` with tapegrad's [`Error`].
///
/// ```
/// fn f() -> tapegrad_tape::Result<()> {
///     Ok(())
/// }
/// assert!(f().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error unless `t` is a floating-point tensor: what every differentiable op checks first.
///
/// ```
/// use tapegrad_tape::{Tensor, ensure_float};
/// let labels = Tensor::from_vec(vec![1i64, 0], &[2]);
/// assert!(ensure_float("exp", &labels, std::panic::Location::caller()).is_err());
/// ```
pub fn ensure_float(
    op: &'static str,
    t: &crate::Tensor,
    location: &'static Location<'static>,
) -> Result<()> {
    if t.dtype().is_float() {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        op,
        message: format!(
            "expects a float32 or float64 tensor, got {}; convert with to_dtype",
            t.dtype()
        ),
        location,
    })
}

/// Unwraps the result of a `try_` form, panicking with the error's message at the caller's
/// line. This is how every panicking operation reports its error.
///
/// ```
/// let v: i32 = tapegrad_tape::or_panic(Ok(3));
/// assert_eq!(v, 3);
/// ```
#[track_caller]
pub fn or_panic<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
