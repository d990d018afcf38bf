//! Proptest strategies that generate tensors, for property tests of gradients (enabled by
//! the `proptest` feature). They are what tapegrad's own op tests use.
//!
//! ```
//! use proptest::prelude::*;
//! use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck, testing};
//!
//! proptest!(ProptestConfig::with_cases(8), |(x in testing::tensor_f64(testing::shape(2, 3), -2.0..2.0))| {
//!     let report = gradcheck(|xs: &[Tensor]| &xs[0] * &xs[0], &[x.requires_grad()],
//!                            &GradcheckOptions::default()).unwrap();
//!     prop_assert!(report.passed, "{}", report);
//! });
//! ```

use std::ops::Range;

use proptest::prelude::*;

use crate::{DType, Tensor};

/// Shapes of rank `0..=max_rank` with each dimension in `1..=max_dim`.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let s = tapegrad_tape::testing::shape(3, 4).new_tree(&mut runner).unwrap().current();
/// assert!(s.len() <= 3 && s.iter().all(|&d| (1..=4).contains(&d)));
/// ```
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> + Clone {
    proptest::collection::vec(1..=max_dim.max(1), 0..=max_rank)
}

/// Like [`shape`] but dimensions may also be 0 (empty tensors).
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let s = tapegrad_tape::testing::shape_with_empty(2, 3).new_tree(&mut runner).unwrap().current();
/// assert!(s.len() <= 2);
/// ```
pub fn shape_with_empty(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = Vec<usize>> + Clone {
    proptest::collection::vec(0..=max_dim, 0..=max_rank)
}

/// Two shapes that broadcast together under NumPy's rules: a common shape, then for each
/// operand some leading dimensions dropped and some dimensions set to 1.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let (a, b) =
///     tapegrad_tape::testing::broadcast_shapes(3, 3).new_tree(&mut runner).unwrap().current();
/// assert!(tapegrad_tape::layout::broadcast_shapes(&a, &b).is_some());
/// ```
pub fn broadcast_shapes(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> + Clone {
    shape(max_rank, max_dim).prop_flat_map(|full| {
        let n = full.len();
        let one_side = move |full: Vec<usize>| {
            (0..=n, proptest::collection::vec(any::<bool>(), n)).prop_map(move |(drop, ones)| {
                full.iter()
                    .zip(&ones)
                    .skip(drop)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .collect::<Vec<_>>()
            })
        };
        (one_side(full.clone()), one_side(full))
    })
}

/// Tensors of the given dtype whose shapes come from `shape` and values are uniform in
/// `range`.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// use tapegrad_tape::{DType, testing};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let t = testing::tensor(DType::F32, testing::shape(2, 3), -1.0..1.0)
///     .new_tree(&mut runner)
///     .unwrap()
///     .current();
/// assert_eq!(t.dtype(), DType::F32);
/// ```
pub fn tensor(
    dtype: DType,
    shape: impl Strategy<Value = Vec<usize>>,
    range: Range<f64>,
) -> impl Strategy<Value = Tensor> {
    shape.prop_flat_map(move |s| {
        let n: usize = s.iter().product();
        proptest::collection::vec(range.clone(), n)
            .prop_map(move |values| Tensor::from_vec(values, &s).to_dtype(dtype))
    })
}

/// f64 tensors, what gradient checks need.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let t = tapegrad_tape::testing::tensor_f64(tapegrad_tape::testing::shape(1, 4), 0.5..1.0)
///     .new_tree(&mut runner)
///     .unwrap()
///     .current();
/// assert!(t.to_vec::<f64>().iter().all(|v| (0.5..1.0).contains(v)));
/// ```
pub fn tensor_f64(
    shape: impl Strategy<Value = Vec<usize>>,
    range: Range<f64>,
) -> impl Strategy<Value = Tensor> {
    tensor(DType::F64, shape, range)
}

/// Two f64 tensors whose shapes broadcast together.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let (a, b) = tapegrad_tape::testing::broadcast_pair_f64(3, 3, -1.0..1.0)
///     .new_tree(&mut runner)
///     .unwrap()
///     .current();
/// let _ = a.add(&b);
/// ```
pub fn broadcast_pair_f64(
    max_rank: usize,
    max_dim: usize,
    range: Range<f64>,
) -> impl Strategy<Value = (Tensor, Tensor)> {
    broadcast_shapes(max_rank, max_dim).prop_flat_map(move |(a, b)| {
        (tensor_f64(Just(a), range.clone()), tensor_f64(Just(b), range.clone()))
    })
}

/// An f64 matrix pair `(m x k, k x n)` for matrix products.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::default();
/// let (a, b) = tapegrad_tape::testing::matmul_pair_f64(4, -1.0..1.0)
///     .new_tree(&mut runner)
///     .unwrap()
///     .current();
/// assert_eq!(a.shape()[1], b.shape()[0]);
/// ```
pub fn matmul_pair_f64(
    max_dim: usize,
    range: Range<f64>,
) -> impl Strategy<Value = (Tensor, Tensor)> {
    (1..=max_dim, 1..=max_dim, 1..=max_dim).prop_flat_map(move |(m, k, n)| {
        (tensor_f64(Just(vec![m, k]), range.clone()), tensor_f64(Just(vec![k, n]), range.clone()))
    })
}
