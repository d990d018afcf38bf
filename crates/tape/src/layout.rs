//! Shapes, strides and views: how an n-dimensional index maps into flat storage. The types
//! live in tapegrad-kernels (kernels loop over layouts); this module adds the checks that
//! report errors in tapegrad's [`Error`] type.

use std::panic::Location;

pub use tapegrad_kernels::layout::*;

use crate::{Error, Result};

/// Number of elements of `shape`, or an [`Error::Shape`] naming `op` and the shape if it
/// exceeds [`MAX_NUMEL`]: what every constructor and shape operation checks before it
/// allocates or builds a view.
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::layout::try_numel;
/// assert_eq!(try_numel("zeros", &[2, 3], Location::caller()).unwrap(), 6);
/// let err = try_numel("zeros", &[1 << 40, 1 << 40], Location::caller()).unwrap_err();
/// assert!(
///     err.to_string()
///         .starts_with("zeros: shape [1099511627776, 1099511627776] has too many elements")
/// );
/// ```
pub fn try_numel(
    op: &'static str,
    shape: &[usize],
    location: &'static Location<'static>,
) -> Result<usize> {
    checked_numel(shape).ok_or_else(|| Error::Shape {
        op,
        message: too_many_elements_message(shape),
        location,
    })
}

/// `a * b`, or an [`Error::Shape`] naming `op` and `what` was being computed if the product
/// overflows: for size formulas (output sizes, padded sizes, repeat counts).
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::layout::checked_size;
/// assert_eq!(
///     checked_size(
///         "repeat",
///         "size 3 repeated 4 times",
///         3usize.checked_mul(4),
///         Location::caller()
///     )
///     .unwrap(),
///     12
/// );
/// assert!(
///     checked_size(
///         "repeat",
///         "size 3 repeated 2^63 times",
///         3usize.checked_mul(1 << 63),
///         Location::caller()
///     )
///     .is_err()
/// );
/// ```
pub fn checked_size(
    op: &'static str,
    what: &str,
    value: Option<usize>,
    location: &'static Location<'static>,
) -> Result<usize> {
    value.filter(|&n| n <= MAX_NUMEL).ok_or_else(|| Error::Shape {
        op,
        message: format!("{what} overflows (sizes are limited to {MAX_NUMEL})"),
        location,
    })
}
