//! The registry of op test cases (in the spirit of PyTorch's OpInfo): one entry per
//! differentiable op, with how to sample its inputs and how to call it. The gradient tests
//! and the table in docs/OPS.md are both generated from it, so they cannot drift apart.

#![allow(dead_code)]

use proptest::prelude::*;
use tapegrad_ops::functional::{
    self, BatchNormStats, EmbeddingBagMode, EmbeddingBagOptions, GridSampleMode, GridSampleOptions,
    GridSamplePadding,
};
use tapegrad_ops::{
    AttentionOptions, AvgPool1dOptions, AvgPool2dOptions, BCELoss, BCEWithLogitsLoss,
    BatchNormOptions, CTCLoss, ConvOptions, CosineEmbeddingLoss, CosineSimilarityOptions,
    CrossEntropyLoss, GaussianNLLLoss, GeluApproximate, GroupNormOptions, HuberLoss,
    InstanceNormOptions, InterpolateMode, InterpolateOptions, KLDivLoss, LayerNormOptions,
    MarginRankingLoss, MaxPool1dOptions, MaxPool2dOptions, NLLLoss, NormalizeOptions, PadMode,
    Padding, PairwiseDistanceOptions, PoissonNLLLoss, SmoothL1Loss, SoftplusOptions,
    TripletMarginLoss, UnfoldOptions,
};
use tapegrad_ops::{Reduction, linalg, prelude::*, step_by, where_};
use tapegrad_tape::testing::{broadcast_shapes, shape, shape_with_empty, tensor_f64};
use tapegrad_tape::{DType, Tensor};

/// Inputs of one test case: tensors (float ones are differentiated) and integer parameters
/// (dimensions, flags, sizes) drawn with them.
#[derive(Debug, Clone)]
pub struct Sample {
    pub tensors: Vec<Tensor>,
    pub ints: Vec<i64>,
}

pub type Call = fn(&[Tensor], &[i64]) -> Tensor;

/// One registered op.
pub struct OpCase {
    /// The tapegrad call, as a user writes it.
    pub name: &'static str,
    /// The PyTorch counterpart.
    pub torch: &'static str,
    /// Whether second derivatives are checked (false only where they do not exist).
    pub second_order: bool,
    /// Input sampler.
    pub sample: fn() -> BoxedStrategy<Sample>,
    /// The call under test.
    pub call: Call,
}

fn one(range: std::ops::Range<f64>) -> BoxedStrategy<Sample> {
    tensor_f64(shape_with_empty(3, 3), range)
        .prop_map(|t| Sample { tensors: vec![t], ints: vec![] })
        .boxed()
}

fn nonempty(range: std::ops::Range<f64>) -> BoxedStrategy<Sample> {
    tensor_f64(shape(3, 3), range).prop_map(|t| Sample { tensors: vec![t], ints: vec![] }).boxed()
}

fn pair(a: std::ops::Range<f64>, b: std::ops::Range<f64>) -> BoxedStrategy<Sample> {
    broadcast_shapes(3, 3)
        .prop_flat_map(move |(sa, sb)| {
            (tensor_f64(Just(sa), a.clone()), tensor_f64(Just(sb), b.clone()))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

/// A tensor of rank 1..=3 (sizes `min_size..=3`), a valid dimension (possibly negative)
/// and a boolean flag.
fn with_dim(range: std::ops::Range<f64>, min_size: usize) -> BoxedStrategy<Sample> {
    tensor_f64(proptest::collection::vec(min_size..=3, 1..=3), range)
        .prop_flat_map(|t| {
            let r = t.dim() as i64;
            (Just(t), -r..r, 0i64..2)
        })
        .prop_map(|(t, d, flag)| Sample { tensors: vec![t], ints: vec![d, flag] })
        .boxed()
}

/// A [`with_dim`] sample whose elements below 0.8 in magnitude are exact zeros (about
/// two in five): rows with none, one, or several.
fn with_zeros() -> BoxedStrategy<Sample> {
    with_dim(-2.0..2.0, 1)
        .prop_map(|mut s| {
            let t = &s.tensors[0];
            let v: Vec<f64> = t
                .to_vec::<f64>()
                .into_iter()
                .map(|x| if x.abs() < 0.8 { 0.0 } else { x })
                .collect();
            s.tensors[0] = Tensor::from_vec(v, t.shape());
            s
        })
        .boxed()
}

/// The dimension `d` of `t` and, when `t` has two or more, the next one (wrapping round)
/// counted from the end: the dimensions a multi-dimension reduction of a `with_dim` sample
/// takes.
fn two_dims(t: &Tensor, d: i64) -> Vec<isize> {
    let (rank, d) = (t.dim() as isize, d as isize);
    if rank < 2 {
        return vec![d];
    }
    let next = (d.rem_euclid(rank) + 1) % rank;
    vec![d, next - rank]
}

fn matmul_shapes() -> BoxedStrategy<Sample> {
    // Ranks 1..=4 on each side with broadcast batch dimensions.
    (broadcast_shapes(2, 2), 1usize..=3, 1usize..=3, 1usize..=3, 0usize..4)
        .prop_flat_map(|((ba, bb), m, k, n, kind)| {
            let (sa, sb) = match kind {
                0 => (vec![k], vec![k]),
                1 => (vec![k], [bb.clone(), vec![k, n]].concat()),
                2 => ([ba.clone(), vec![m, k]].concat(), vec![k]),
                _ => ([ba.clone(), vec![m, k]].concat(), [bb.clone(), vec![k, n]].concat()),
            };
            (tensor_f64(Just(sa), -2.0..2.0), tensor_f64(Just(sb), -2.0..2.0))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

fn classification(probabilities: bool) -> BoxedStrategy<Sample> {
    (1usize..=4, 2usize..=4, 0i64..3)
        .prop_flat_map(move |(n, c, reduction)| {
            let logits = tensor_f64(Just(vec![n, c]), -3.0..3.0);
            let labels = proptest::collection::vec(0..c as i64, n);
            let probs = tensor_f64(Just(vec![n, c]), 0.0..1.0);
            (logits, labels, probs, Just(reduction))
        })
        .prop_map(move |(logits, labels, probs, reduction)| {
            let n = logits.shape()[0];
            let target = if probabilities {
                probs.softmax(1).detach() // rows sum to 1
            } else {
                Tensor::from_vec(labels, &[n])
            };
            Sample { tensors: vec![logits, target], ints: vec![reduction] }
        })
        .boxed()
}

/// `cross_entropy` of the logits `t[0]` against the classes `t[1]` with class weights, class
/// 1 ignored (unless every sample has it: a mean over nothing is NaN), and `smoothing`.
fn weighted_cross_entropy(t: &[Tensor], reduction_code: i64, smoothing: f64) -> Tensor {
    let w = Tensor::from_vec(vec![0.5f64, 2.0, 1.0, 1.5], &[4]).narrow(0, 0, t[0].shape()[1]);
    let ignored = if t[1].to_vec::<i64>().iter().all(|&c| c == 1) { -100 } else { 1 };
    let loss = CrossEntropyLoss::new()
        .reduction(reduction(reduction_code))
        .weight(&w)
        .ignore_index(ignored)
        .label_smoothing(smoothing);
    functional::cross_entropy_with(&t[0], &t[1], loss)
}

fn reduction(code: i64) -> Reduction {
    match code {
        0 => Reduction::Mean,
        1 => Reduction::Sum,
        _ => Reduction::None,
    }
}

fn indices(len: usize, bound: usize, values: Vec<u64>) -> Tensor {
    Tensor::from_vec(
        values.into_iter().take(len).map(|v| (v % bound as u64) as i64).collect::<Vec<_>>(),
        &[len],
    )
}

/// A tensor, a dimension and a 1-D int64 index into it.
fn with_index() -> BoxedStrategy<Sample> {
    (
        tensor_f64(proptest::collection::vec(1usize..=3, 1..=3), -2.0..2.0),
        0usize..4,
        proptest::collection::vec(any::<u64>(), 4),
    )
        .prop_flat_map(|(t, len, vals)| {
            let r = t.dim();
            (Just(t), 0..r, Just(len), Just(vals))
        })
        .prop_map(|(t, d, len, vals)| {
            let idx = indices(len, t.shape()[d], vals);
            Sample { tensors: vec![t, idx], ints: vec![d as i64] }
        })
        .boxed()
}

/// A tensor, a dimension, and an index of the same rank for gather / scatter_add.
fn with_gather_index() -> BoxedStrategy<Sample> {
    (
        proptest::collection::vec(1usize..=3, 1..=3),
        proptest::collection::vec(any::<u64>(), 27),
        any::<u64>(),
    )
        .prop_flat_map(|(s, vals, pick)| {
            let r = s.len();
            (tensor_f64(Just(s), -2.0..2.0), 0..r, Just(vals), Just(pick))
        })
        .prop_map(|(t, d, vals, pick)| {
            // Index shape: no larger than the input outside `d`, any size 1..=3 along it.
            let shape: Vec<usize> = t
                .shape()
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    if k == d {
                        1 + (pick as usize) % 3
                    } else {
                        1 + (pick as usize >> (k * 2)) % s
                    }
                })
                .collect();
            let n: usize = shape.iter().product();
            let bound = t.shape()[d] as u64;
            let idx: Vec<i64> = vals.into_iter().take(n).map(|v| (v % bound) as i64).collect();
            let src = Tensor::randn_dtype(&shape, DType::F64);
            Sample { tensors: vec![t, Tensor::from_vec(idx, &shape), src], ints: vec![d as i64] }
        })
        .boxed()
}

/// A convolution case: input, weight, bias, and (stride, padding, dilation, groups) in
/// `ints`, with sizes small enough for full Jacobians.
fn conv_case(transposed: bool) -> BoxedStrategy<Sample> {
    (
        1usize..=2,
        1usize..=2,
        1usize..=2,
        1usize..=2,
        1usize..=3,
        1usize..=2,
        0usize..=1,
        1usize..=2,
        any::<u64>(),
    )
        .prop_flat_map(move |(n, groups, cg, og, k, stride, padding, dilation, seed)| {
            let span = dilation * (k - 1) + 1;
            // A transposed convolution must still produce at least one row and column.
            let padding = if transposed && span <= 2 * padding { 0 } else { padding };
            let min_hw = span.saturating_sub(2 * padding).max(1);
            (
                Just((n, groups, cg, og, k, stride, padding, dilation, seed)),
                min_hw..=min_hw + 2,
                min_hw..=min_hw + 2,
            )
        })
        .prop_map(move |((n, groups, cg, og, k, stride, padding, dilation, seed), h, w)| {
            tapegrad_tape::manual_seed(seed);
            let (x, weight, bias) = if transposed {
                // conv_transpose2d: input has groups * og channels, weight [C_in, C_out/groups, k,
                // k].
                (
                    Tensor::randn_dtype(&[n, groups * og, h, w], DType::F64),
                    Tensor::randn_dtype(&[groups * og, cg, k, k], DType::F64),
                    Tensor::randn_dtype(&[groups * cg], DType::F64),
                )
            } else {
                (
                    Tensor::randn_dtype(&[n, groups * cg, h, w], DType::F64),
                    Tensor::randn_dtype(&[groups * og, cg, k, k], DType::F64),
                    Tensor::randn_dtype(&[groups * og], DType::F64),
                )
            };
            let ints = vec![stride as i64, padding as i64, dilation as i64, groups as i64];
            Sample { tensors: vec![x, weight, bias], ints }
        })
        .boxed()
}

fn conv_options(i: &[i64]) -> ConvOptions {
    let (s, p, d) = (i[0] as usize, i[1] as usize, i[2] as usize);
    ConvOptions::default().stride(s).padding(p).dilation(d).groups(i[3] as usize)
}

/// An image batch `[N, C, H, W]` with a pooling kernel, stride and padding in `ints`.
fn pool_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=2, 1usize..=3, 1usize..=2, 0usize..=1, 0usize..=2, 0usize..=2)
        .prop_flat_map(|(n, c, k, stride, pad, dh, dw)| {
            let pad = pad.min(k / 2);
            let base = k.max(1);
            (tensor_f64(Just(vec![n, c, base + dh, base + dw]), -2.0..2.0), Just((k, stride, pad)))
        })
        .prop_map(|(t, (k, s, p))| Sample {
            tensors: vec![t],
            ints: vec![k as i64, s as i64, p as i64],
        })
        .boxed()
}

fn image(max_hw: usize) -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=3, 1usize..=max_hw, 1usize..=max_hw)
        .prop_flat_map(|(n, c, h, w)| tensor_f64(Just(vec![n, c, h, w]), -2.0..2.0))
        .prop_map(|t| Sample { tensors: vec![t], ints: vec![] })
        .boxed()
}

/// An image `[n, c, h, w]`, a sampling grid `[n, ho, wo, 2]` reaching a little past the
/// image's edges, and affine maps `[n, 2, 3]` near the identity.
fn image_grid_theta() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=2, 1usize..=4, 1usize..=4, 1usize..=3, 1usize..=3)
        .prop_flat_map(|(n, c, h, w, ho, wo)| {
            (
                tensor_f64(Just(vec![n, c, h, w]), -2.0..2.0),
                tensor_f64(Just(vec![n, ho, wo, 2]), -1.3..1.3),
                tensor_f64(Just(vec![n, 2, 3]), -0.4..0.4),
            )
        })
        .prop_map(|(image, grid, theta)| Sample { tensors: vec![image, grid, theta], ints: vec![] })
        .boxed()
}

/// Layer norm's input `[n, a, b]` normalised over its last `k` dimensions (`ints[0]`, 1 or
/// 2), a weight and a bias of that shape, and which of them apply (`ints[1]`: none, the
/// weight, both, the bias).
fn layer_norm_case() -> BoxedStrategy<Sample> {
    (1usize..=3, 1usize..=3, 2usize..=4, 1usize..=2, 0i64..4)
        .prop_flat_map(|(n, a, b, k, affine)| {
            let normalized = if k == 1 { vec![b] } else { vec![a, b] };
            (
                tensor_f64(Just(vec![n, a, b]), -2.0..2.0),
                tensor_f64(Just(normalized.clone()), 0.5..1.5),
                tensor_f64(Just(normalized), -1.0..1.0),
                Just((k as i64, affine)),
            )
        })
        .prop_map(|(x, w, b, (k, affine))| Sample { tensors: vec![x, w, b], ints: vec![k, affine] })
        .boxed()
}

/// Attention's queries `[b, l, e]`, keys `[b, s, e]`, values `[b, s, ev]`, a float mask
/// `[l, s]`, and which mask applies (`ints[0]`: none, causal, the float mask, a bool one).
fn attention_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=3, 1usize..=3, 1usize..=3, 1usize..=2, 0i64..4)
        .prop_flat_map(|(b, l, s, e, ev, mode)| {
            (
                tensor_f64(Just(vec![b, l, e]), -1.5..1.5),
                tensor_f64(Just(vec![b, s, e]), -1.5..1.5),
                tensor_f64(Just(vec![b, s, ev]), -1.5..1.5),
                tensor_f64(Just(vec![l, s]), -1.0..1.0),
                Just(mode),
            )
        })
        .prop_map(|(q, k, v, mask, mode)| Sample { tensors: vec![q, k, v, mask], ints: vec![mode] })
        .boxed()
}

/// Group norm's input `[n, groups * per, h]` (`ints[0]` groups), a weight and a bias per
/// channel, and which of them apply (`ints[1]`: none, the weight, both, the bias).
fn group_norm_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=3, 1usize..=2, 1usize..=3, 0i64..4)
        .prop_flat_map(|(n, groups, per, h, affine)| {
            let c = groups * per;
            (
                tensor_f64(Just(vec![n, c, h]), -2.0..2.0),
                tensor_f64(Just(vec![c]), 0.5..1.5),
                tensor_f64(Just(vec![c]), -1.0..1.0),
                Just((groups as i64, affine)),
            )
        })
        .prop_map(|(x, w, b, (groups, affine))| Sample {
            tensors: vec![x, w, b],
            ints: vec![groups, affine],
        })
        .boxed()
}

/// Instance norm's input `[n, c, h]` (more than one position per channel), a weight and a
/// bias per channel, and which of them apply (`ints[0]`: none, the weight, both, the bias).
fn instance_norm_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=3, 2usize..=4, 0i64..4)
        .prop_flat_map(|(n, c, h, affine)| {
            (
                tensor_f64(Just(vec![n, c, h]), -2.0..2.0),
                tensor_f64(Just(vec![c]), 0.5..1.5),
                tensor_f64(Just(vec![c]), -1.0..1.0),
                Just(affine),
            )
        })
        .prop_map(|(x, w, b, affine)| Sample { tensors: vec![x, w, b], ints: vec![affine] })
        .boxed()
}

/// A tensor of rank 1..=3 whose dimension `ints[0]` (counted from the end) has an even
/// size: what GLU halves.
fn glu_case() -> BoxedStrategy<Sample> {
    (proptest::collection::vec(1usize..=3, 1..=3), 1usize..=3)
        .prop_flat_map(|(shape, d)| {
            let d = d.min(shape.len());
            let mut shape = shape;
            let at = shape.len() - d;
            shape[at] *= 2;
            (tensor_f64(Just(shape), -2.0..2.0), Just(-(d as i64)))
        })
        .prop_map(|(x, d)| Sample { tensors: vec![x], ints: vec![d] })
        .boxed()
}

/// The equations of the `einsum` entry, each with its operands' shapes from sizes
/// `[b, i, j, k]`.
pub const EINSUM_EQUATIONS: [&str; 7] =
    ["bij,bjk->bik", "ij,kj", "bi,bi->b", "ii,i->i", "...ij,jk->...ik", "i,j", "bij,j->"];

fn einsum_shapes(which: usize, [b, i, j, k]: [usize; 4]) -> [Vec<usize>; 2] {
    match which {
        0 => [vec![b, i, j], vec![b, j, k]],
        1 => [vec![i, j], vec![k, j]],
        2 => [vec![b, i], vec![b, i]],
        3 => [vec![i, i], vec![i]],
        4 => [vec![b, i, j], vec![j, k]],
        5 => [vec![i], vec![j]],
        _ => [vec![b, i, j], vec![j]],
    }
}

/// Two operands for one of [`EINSUM_EQUATIONS`] (`ints[0]`).
fn einsum_case() -> BoxedStrategy<Sample> {
    (0..EINSUM_EQUATIONS.len(), proptest::array::uniform4(1usize..=3))
        .prop_flat_map(|(which, sizes)| {
            let [a, b] = einsum_shapes(which, sizes);
            (tensor_f64(Just(a), -2.0..2.0), tensor_f64(Just(b), -2.0..2.0), Just(which as i64))
        })
        .prop_map(|(a, b, which)| Sample { tensors: vec![a, b], ints: vec![which] })
        .boxed()
}

/// `[n, 4c, h, w]`: what a pixel shuffle by 2 takes.
fn shuffle_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=2, 1usize..=3, 1usize..=3)
        .prop_flat_map(|(n, c, h, w)| tensor_f64(Just(vec![n, 4 * c, h, w]), -2.0..2.0))
        .prop_map(|x| Sample { tensors: vec![x], ints: vec![] })
        .boxed()
}

/// A tensor of rank 2..=3 and a diagonal offset in -2..=2 (`ints[0]`).
fn matrices() -> BoxedStrategy<Sample> {
    (tensor_f64(proptest::collection::vec(1usize..=3, 2..=3), -2.0..2.0), -2i64..=2)
        .prop_map(|(x, k)| Sample { tensors: vec![x], ints: vec![k] })
        .boxed()
}

/// PReLU's input `[n, c, h]` and a slope per channel, or one for all (`ints[0]` = 1).
fn prelu_case() -> BoxedStrategy<Sample> {
    (1usize..=2, 1usize..=3, 1usize..=3, 0i64..2)
        .prop_flat_map(|(n, c, h, shared)| {
            let w = if shared == 1 { 1 } else { c };
            (
                tensor_f64(Just(vec![n, c, h]), -2.0..2.0),
                tensor_f64(Just(vec![w]), -1.0..1.0),
                Just(shared),
            )
        })
        .prop_map(|(x, w, shared)| Sample { tensors: vec![x, w], ints: vec![shared] })
        .boxed()
}

/// Gate pre-activations `[B, 4H]` and a cell state `[B, H]`.
fn lstm_case() -> BoxedStrategy<Sample> {
    (1usize..=3, 1usize..=3)
        .prop_flat_map(|(b, h)| {
            (tensor_f64(Just(vec![b, 4 * h]), -2.0..2.0), tensor_f64(Just(vec![b, h]), -2.0..2.0))
        })
        .prop_map(|(gates, c)| Sample { tensors: vec![gates, c], ints: vec![] })
        .boxed()
}

/// An LSTM recurrence: xi [T, B, 4H], h0 and c0 [B, H], w_hh [4H, H], b_hh [4H] (T from 0).
fn lstm_sequence_case() -> BoxedStrategy<Sample> {
    (0usize..=3, 1usize..=3, 1usize..=2)
        .prop_flat_map(|(t, b, h)| {
            let state = || tensor_f64(Just(vec![b, h]), -1.0..1.0);
            (
                tensor_f64(Just(vec![t, b, 4 * h]), -1.5..1.5),
                (state(), state()),
                tensor_f64(Just(vec![4 * h, h]), -1.0..1.0),
                tensor_f64(Just(vec![4 * h]), -0.5..0.5),
            )
        })
        .prop_map(|(xi, (h0, c0), w, b)| Sample { tensors: vec![xi, h0, c0, w, b], ints: vec![] })
        .boxed()
}

/// A GRU recurrence: xi [T, B, 3H], h0 [B, H], w_hh [3H, H], b_hh [3H] (T from 0).
fn gru_sequence_case() -> BoxedStrategy<Sample> {
    (0usize..=3, 1usize..=3, 1usize..=2)
        .prop_flat_map(|(t, b, h)| {
            (
                tensor_f64(Just(vec![t, b, 3 * h]), -1.5..1.5),
                tensor_f64(Just(vec![b, h]), -1.0..1.0),
                tensor_f64(Just(vec![3 * h, h]), -1.0..1.0),
                tensor_f64(Just(vec![3 * h]), -0.5..0.5),
            )
        })
        .prop_map(|(xi, h0, w, b)| Sample { tensors: vec![xi, h0, w, b], ints: vec![] })
        .boxed()
}

/// An Elman recurrence: xi [T, B, H], h0 [B, H], w_hh [H, H], b_hh [H] (T from 0). With
/// `clear_of_zero`, every pre-activation stays at least 0.1 from zero (relu's kink): `|xi|`
/// is at least 0.6 and the recurrent terms add at most 0.5 (weights and bias within 0.1,
/// states within 2).
fn elman_sequence_case(clear_of_zero: bool) -> BoxedStrategy<Sample> {
    let (w, b) = if clear_of_zero { (0.1, 0.1) } else { (1.0, 0.5) };
    (0usize..=3, 1usize..=3, 1usize..=2)
        .prop_flat_map(move |(t, bs, h)| {
            (
                tensor_f64(Just(vec![t, bs, h]), -1.5..1.5),
                tensor_f64(Just(vec![bs, h]), -1.0..1.0),
                tensor_f64(Just(vec![h, h]), -w..w),
                tensor_f64(Just(vec![h]), -b..b),
            )
        })
        .prop_map(move |(xi, h0, w, b)| {
            let xi = if clear_of_zero {
                let v: Vec<f64> = xi.to_vec::<f64>();
                let away = v.iter().map(|&x| x.signum() * (0.6 + 0.6 * x.abs())).collect();
                Tensor::from_vec::<f64>(away, xi.shape())
            } else {
                xi
            };
            Sample { tensors: vec![xi, h0, w, b], ints: vec![] }
        })
        .boxed()
}

/// Ops that are piecewise smooth: their derivative jumps where two inputs tie (max,
/// pooling, |a - b|, a `where` that compares its operands, and sort and topk, whose
/// order swaps) or where an input crosses zero (relu, abs, prelu, and elu and selu, whose
/// slope is `alpha` (times `scale`) below zero and 1 (`scale`) above; celu and softsign,
/// whose second derivative jumps there).
pub const PIECEWISE: &[&str] = &[
    "where_",
    "x.sort",
    "x.topk",
    "x.abs",
    "x.relu",
    "x.leaky_relu",
    "x.elu",
    "x.selu",
    "x.celu",
    "x.softsign",
    "x.prelu",
    "a.maximum",
    "a.minimum",
    "x.max",
    "x.min",
    "max_pool2d",
    "max_pool1d",
    "adaptive_max_pool",
    "l1_loss",
    "x.norm",
    "x.sign",
    "x.amax",
    "x.amin",
];

/// Central differences step 1e-6 either side; inputs this close to a tie or to zero would
/// straddle a kink and compare a one-sided derivative with the average of two.
pub const KINK_MARGIN: f64 = 1e-5;

/// Whether a sample of a piecewise op sits within [`KINK_MARGIN`] of one of its kinks.
fn near_kink(sample: &Sample) -> bool {
    let mut values: Vec<f64> = sample
        .tensors
        .iter()
        .filter(|t| t.dtype().is_float())
        .flat_map(|t| t.to_vec::<f64>())
        .collect();
    values.sort_by(f64::total_cmp);
    values.windows(2).any(|w| w[1] - w[0] < KINK_MARGIN)
        || values.iter().any(|v| v.abs() < KINK_MARGIN)
}

/// Ops whose derivative jumps at fixed inputs (their registry cases' bounds): the name
/// prefix and the kinks.
const KINKS_AT: &[(&str, &[f64])] = &[
    ("x.hardtanh_with", &[-0.8, 1.2]),
    ("x.relu6", &[0.0, 6.0]),
    ("x.hardsigmoid", &[-3.0, 3.0]),
    ("x.hardswish", &[-3.0, 3.0]),
    ("x.clamp(min, max)", &[-0.7, 0.9]),
];

/// Whether a float value of `sample` lies within [`KINK_MARGIN`] of one of `kinks`.
fn near_fixed_kinks(sample: &Sample, kinks: &[f64]) -> bool {
    sample.tensors.iter().filter(|t| t.dtype().is_float()).any(|t| {
        t.to_vec::<f64>().iter().any(|v| kinks.iter().any(|k| (v - k).abs() < KINK_MARGIN))
    })
}

/// Whether `sample` of `op` sits on a kink of a piecewise op, where central differences
/// do not give its derivative (the sample is skipped).
pub fn on_a_kink(op: &OpCase, sample: &Sample) -> bool {
    (PIECEWISE.iter().any(|p| op.name.starts_with(p)) && near_kink(sample))
        || (op.name.starts_with("grid_sample") && samples_near_pixel_kinks(sample))
        || KINKS_AT
            .iter()
            .any(|(p, kinks)| op.name.starts_with(p) && near_fixed_kinks(sample, kinks))
}

/// Whether a point that the `grid_sample` registry case samples (the grid and its `sin`,
/// and the affine grids of the identity plus theta, at either alignment) lies within
/// [`KINK_MARGIN`] pixels of a whole or half pixel: bilinear sampling has a kink at every
/// whole pixel (and the border clamp at the first and last), nearest sampling a jump at
/// every half.
fn samples_near_pixel_kinks(sample: &Sample) -> bool {
    let shape = sample.tensors[0].shape();
    let (n, h, w) = (shape[0], shape[2], shape[3]);
    let grid = sample.tensors[1].to_vec::<f64>();
    let theta = sample.tensors[2].to_vec::<f64>();
    // (coordinate from -1 to 1, the side it runs along)
    let mut coords: Vec<(f64, usize)> = Vec::new();
    for (i, &g) in grid.iter().enumerate() {
        let side = if i % 2 == 0 { w } else { h };
        coords.extend([(g, side), (g.sin(), side)]);
    }
    let positions = |steps: usize, align: bool| -> Vec<f64> {
        (0..steps)
            .map(|i| match steps {
                1 => 0.0,
                _ => {
                    let v = -1.0 + 2.0 * i as f64 / (steps - 1) as f64;
                    if align { v } else { v * (steps - 1) as f64 / steps as f64 }
                }
            })
            .collect()
    };
    for align in [false, true] {
        for t in theta.chunks(6).take(n) {
            for &y in &positions(h, align) {
                for &x in &positions(w, align) {
                    coords.push(((t[0] + 1.0) * x + t[1] * y + t[2], w));
                    coords.push((t[3] * x + (t[4] + 1.0) * y + t[5], h));
                }
            }
        }
    }
    coords.iter().any(|&(g, side)| {
        let side = side as f64;
        let pixels = [((g + 1.0) * side - 1.0) / 2.0, (g + 1.0) / 2.0 * (side - 1.0)];
        // With one pixel and aligned corners every point maps to 0: constant, no kink.
        let count = if side > 1.0 { 2 } else { 1 };
        pixels[..count].iter().any(|p| ((2.0 * p) - (2.0 * p).round()).abs() / 2.0 < KINK_MARGIN)
    })
}

macro_rules! op {
    ($name:literal, $torch:literal, $second:expr, $sample:expr, |$t:ident, $i:ident| $call:expr) => {
        OpCase {
            name: $name,
            torch: $torch,
            second_order: $second,
            sample: || $sample,
            call: |$t: &[Tensor], $i: &[i64]| {
                let _ = $i;
                $call
            },
        }
    };
}

/// CTC's operands: log-probabilities `[T, N, C]` (in any range: the loss is smooth in
/// them), padded label rows `[N, S]` of classes 1.. (0 is the blank), and in `ints` the
/// reduction's code, then each sequence's input length, then each target length. Every
/// input length is at least what its labels need (one step per label and one more per
/// repeat), so every loss is finite.
fn ctc_operands() -> BoxedStrategy<Sample> {
    let sequence = |c: usize| (proptest::collection::vec(1..c as i64, 0..=3), 0usize..=2);
    (1usize..=3, 2usize..=4, 0i64..3)
        .prop_flat_map(move |(n, c, reduction)| {
            (proptest::collection::vec(sequence(c), n), Just(c), Just(reduction), 0usize..=1)
        })
        .prop_flat_map(|(sequences, c, reduction, spare_steps)| {
            let needed =
                |labels: &[i64]| labels.len() + labels.windows(2).filter(|w| w[0] == w[1]).count();
            let inputs: Vec<usize> =
                sequences.iter().map(|(labels, extra)| needed(labels) + extra).collect();
            let steps = inputs.iter().max().unwrap() + spare_steps;
            let width = sequences.iter().map(|(labels, _)| labels.len()).max().unwrap();
            let mut rows = Vec::new();
            for (labels, _) in &sequences {
                rows.extend(labels.iter().copied().chain(std::iter::repeat(1)).take(width));
            }
            let targets = Tensor::from_vec(rows, &[sequences.len(), width]);
            let mut ints = vec![reduction];
            ints.extend(inputs.iter().map(|&l| l as i64));
            ints.extend(sequences.iter().map(|(labels, _)| labels.len() as i64));
            let log_probs = tensor_f64(Just(vec![steps, sequences.len(), c]), -3.0..0.5);
            (log_probs, Just(targets), Just(ints))
        })
        .prop_map(|(log_probs, targets, ints)| Sample { tensors: vec![log_probs, targets], ints })
        .boxed()
}

/// Three tensors `[n, d]` (a loss's anchors, positives and negatives, or two inputs and
/// a source of targets).
fn triple() -> BoxedStrategy<Sample> {
    (1usize..=3, 1usize..=3)
        .prop_flat_map(|(n, d)| {
            let t = || tensor_f64(Just(vec![n, d]), -2.0..2.0);
            (t(), t(), t())
        })
        .prop_map(|(a, b, c)| Sample { tensors: vec![a, b, c], ints: vec![] })
        .boxed()
}

/// [`triple`] with every pair of the three tensors at least 0.01 apart elementwise: a
/// `p`-norm of their differences with `1 < p < 2` has a second derivative like
/// `|x|^(p - 2)`, unbounded at zero, which central differences cannot follow near it.
fn triple_apart() -> BoxedStrategy<Sample> {
    triple()
        .prop_filter("differences near zero", |s| {
            let v: Vec<Vec<f64>> = s.tensors.iter().map(|t| t.to_vec::<f64>()).collect();
            let apart = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(a, b)| (a - b).abs() >= 0.01);
            apart(&v[0], &v[1]) && apart(&v[0], &v[2]) && apart(&v[1], &v[2])
        })
        .boxed()
}

/// `strategy`'s triples (anchors, positives, negatives) whose triplet hinge
/// `margin + d(a, p) - d(a, n)` (with `d(a, n)` the smaller of it and `d(p, n)` under
/// `swap`) stays [`KINK_MARGIN`] from zero in every row, as do the two distances `swap`
/// chooses between: the loss's derivative jumps at both, and central differences straddling
/// either compare a one-sided derivative with the average of two.
fn hinge_clear(
    strategy: BoxedStrategy<Sample>,
    margin: f64,
    p: f64,
    swap: bool,
) -> BoxedStrategy<Sample> {
    strategy
        .prop_filter("a triplet on its hinge", move |s| {
            let d = s.tensors[0].shape()[1];
            let v: Vec<Vec<f64>> = s.tensors.iter().map(|t| t.to_vec::<f64>()).collect();
            // PyTorch's pairwise_distance: the p-norm of x - y + 1e-6.
            let dist = |x: &[f64], y: &[f64]| {
                x.iter()
                    .zip(y)
                    .map(|(a, b)| (a - b + 1e-6).abs().powf(p))
                    .sum::<f64>()
                    .powf(1.0 / p)
            };
            v[0].chunks(d).zip(v[1].chunks(d)).zip(v[2].chunks(d)).all(|((a, pos), neg)| {
                let (ap, an, pn) = (dist(a, pos), dist(a, neg), dist(pos, neg));
                let far = if swap { an.min(pn) } else { an };
                (margin + ap - far).abs() >= KINK_MARGIN
                    && (!swap || (an - pn).abs() >= KINK_MARGIN)
            })
        })
        .boxed()
}

/// A mask that keeps every element but each third, fixed by position rather than by value:
/// a mask read from the values would flip under gradcheck's perturbation of an element near
/// its threshold, changing the function being differentiated (and, for `masked_select`, the
/// shape of its output).
fn positional_mask(x: &Tensor) -> Tensor {
    let keep: Vec<bool> = (0..x.numel()).map(|k| k % 3 != 1).collect();
    Tensor::from_vec(keep, x.shape())
}

/// `strategy`'s samples with every float element at least 0.01 in magnitude. A norm of a
/// single element is its magnitude, and the second derivatives of `x / ‖x‖` are sums of
/// terms like `1 / x²` that cancel: near zero their rounding (about `1e-16 / x²`) exceeds
/// the tolerance the two modes are held to, though both are right.
fn away_from_zero(strategy: BoxedStrategy<Sample>) -> BoxedStrategy<Sample> {
    strategy
        .prop_filter("an element near zero", |s| {
            s.tensors
                .iter()
                .filter(|t| t.dtype().is_float())
                .all(|t| t.to_vec::<f64>().iter().all(|x| x.abs() >= 0.01))
        })
        .boxed()
}

/// A [`pair`] whose broadcast differences stay [`KINK_MARGIN`] away from `±beta`, where
/// a smooth L1 or Huber loss switches from quadratic to linear: its second derivative jumps
/// there, which central differences of the gradient cannot follow.
fn pair_off_kink(beta: f64) -> BoxedStrategy<Sample> {
    pair(-2.0..2.0, -2.0..2.0)
        .prop_filter("a difference at the quadratic's edge", move |s| {
            let gap = (&s.tensors[0] - &s.tensors[1]).abs().to_vec::<f64>();
            gap.iter().all(|g| (g - beta).abs() >= KINK_MARGIN)
        })
        .boxed()
}

/// Targets of ±1 from the signs of a tensor's first column (as a constant).
fn signs(t: &Tensor) -> Tensor {
    let s = t.narrow(1, 0, 1).squeeze_dim(1).detach().sign();
    let zero = Tensor::zeros_dtype(&[], s.dtype());
    where_(&s.eq(&zero), &s.ones_like(), &s)
}

/// Operands of PyTorch's strict products: `kind` 0 is `mm` (`[n, k]`, `[k, m]`), 1 `bmm`
/// (`[b, n, k]`, `[b, k, m]`), 2 `mv` (`[n, k]`, `[k]`), 3 `dot` and 4 `outer` (vectors).
fn strict_product(kind: usize) -> BoxedStrategy<Sample> {
    (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3)
        .prop_flat_map(move |(b, n, k, m)| {
            let (sa, sb) = match kind {
                0 => (vec![n, k], vec![k, m]),
                1 => (vec![b, n, k], vec![b, k, m]),
                2 => (vec![n, k], vec![k]),
                3 => (vec![k], vec![k]),
                _ => (vec![n], vec![m]),
            };
            (tensor_f64(Just(sa), -2.0..2.0), tensor_f64(Just(sb), -2.0..2.0))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

/// A triangular solve's operands: `A` `[*, n, n]` and `B` `[*, n, k]` (or `[*, k, n]` when
/// `A` is on the right) with broadcast batch dimensions, and in `ints` the flags `upper`,
/// `left` and `unitriangular`.
/// Two tensors with 3 at the dimension given (-1 or 0), the second broadcast or not.
fn cross_case() -> BoxedStrategy<Sample> {
    (1usize..=3, any::<bool>(), any::<bool>())
        .prop_flat_map(|(rows, last, broadcast)| {
            let other = if broadcast { 1 } else { rows };
            let (sa, sb, dim) = if last {
                (vec![rows, 3], vec![other, 3], -1)
            } else {
                (vec![3, rows], vec![3, other], 0)
            };
            (tensor_f64(Just(sa), -2.0..2.0), tensor_f64(Just(sb), -2.0..2.0), Just(vec![dim]))
        })
        .prop_map(|(a, b, ints)| Sample { tensors: vec![a, b], ints })
        .boxed()
}

/// `A` of `m x n` (each 1 to 4) and `B` of `m x k` or a vector of `m`.
fn lstsq_case() -> BoxedStrategy<Sample> {
    (1usize..=4, 1usize..=4, 1usize..=2, any::<bool>())
        .prop_flat_map(|(m, n, k, vector)| {
            let sb = if vector { vec![m] } else { vec![m, k] };
            (tensor_f64(Just(vec![m, n]), -1.0..1.0), tensor_f64(Just(sb), -2.0..2.0))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

/// A square matrix (or a batch of two), 1 to 3 on a side, and a power in -2..=3 but 0 (whose
/// identity has no gradient).
fn power_case() -> BoxedStrategy<Sample> {
    (any::<bool>(), 1usize..=3, prop::sample::select(vec![-2i64, -1, 1, 2, 3]))
        .prop_flat_map(|(batched, n, k)| {
            let shape = if batched { vec![2, n, n] } else { vec![n, n] };
            (tensor_f64(Just(shape), -1.0..1.0), Just(vec![k]))
        })
        .prop_map(|(a, ints)| Sample { tensors: vec![a], ints })
        .boxed()
}

/// A matrix or a batch of two, `m x n` with each of 1 to 4, and a QR mode (0, 1 or 2).
fn qr_case() -> BoxedStrategy<Sample> {
    (0usize..=1, 1usize..=4, 1usize..=4, 0i64..3)
        .prop_flat_map(|(batched, m, n, mode)| {
            let shape = if batched == 1 { vec![2, m, n] } else { vec![m, n] };
            (tensor_f64(Just(shape), -1.0..1.0), Just(vec![mode]))
        })
        .prop_map(|(a, ints)| Sample { tensors: vec![a], ints })
        .boxed()
}

/// A matrix or a batch of two, `m x n` with each of 1 to 4 (square with `square`), and in
/// `ints` a choice in `0..choices`.
fn matrix_case(square: bool, choices: i64) -> BoxedStrategy<Sample> {
    (any::<bool>(), 1usize..=4, 1usize..=4, 0..choices)
        .prop_flat_map(move |(batched, m, n, choice)| {
            let n = if square { m } else { n };
            let shape = if batched { vec![2, m, n] } else { vec![m, n] };
            (tensor_f64(Just(shape), -1.0..1.0), Just(vec![choice]))
        })
        .prop_map(|(a, ints)| Sample { tensors: vec![a], ints })
        .boxed()
}

/// `a` plus the `m x n` diagonal `(0, 10, 20, 30)[..min(m, n)]` scaled by `step / 10`:
/// with `a`'s entries below 1 and at most 4 x 4 (norm below 4), a step of 10 keeps the
/// eigenvalues of a symmetric `a` (or the singular values, from 10 on) 2 apart, where
/// the spectral rules divide by their gaps.
fn spread_diagonal(a: &Tensor, first: f64, step: f64) -> Tensor {
    let (m, n) = (a.shape()[a.dim() - 2], a.shape()[a.dim() - 1]);
    let k = m.min(n);
    let mut d = vec![0.0; m * n];
    (0..k).for_each(|i| d[i * n + i] = first + step * i as f64);
    a + &Tensor::from_vec(d, &[m, n]).to_dtype(a.dtype())
}

/// The symmetric part of the square matrices `a`.
fn symmetric(a: &Tensor) -> Tensor {
    (a + &a.transpose(-2, -1)).mul_scalar(0.5)
}

fn triangular_system() -> BoxedStrategy<Sample> {
    (broadcast_shapes(2, 2), 1usize..=3, 1usize..=3, 0i64..2, 0i64..2, 0i64..2)
        .prop_flat_map(|((ba, bb), n, k, upper, left, unit)| {
            let sb = if left == 1 {
                [bb.clone(), vec![n, k]].concat()
            } else {
                [bb, vec![k, n]].concat()
            };
            let a = tensor_f64(Just([ba, vec![n, n]].concat()), -1.0..1.0);
            (a, tensor_f64(Just(sb), -2.0..2.0), Just(vec![upper, left, unit]))
        })
        .prop_map(|(a, b, ints)| Sample { tensors: vec![a, b], ints })
        .boxed()
}

/// A general solve's operands: `A` `[*, n, n]` and `B` `[*, n, k]`, or `B` `[*, n]` with
/// `A`'s batch (one right-hand side per matrix).
fn square_system() -> BoxedStrategy<Sample> {
    (broadcast_shapes(2, 2), 1usize..=3, 1usize..=3, any::<bool>())
        .prop_flat_map(|((ba, bb), n, k, vector)| {
            let sb =
                if vector { [ba.clone(), vec![n]].concat() } else { [bb, vec![n, k]].concat() };
            let a = tensor_f64(Just([ba, vec![n, n]].concat()), -1.0..1.0);
            (a, tensor_f64(Just(sb), -2.0..2.0))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

/// The `n x n` identity in `like`'s dtype, where `n` is `like`'s last size.
fn identity_like(like: &Tensor) -> Tensor {
    Tensor::eye_dtype(like.shape()[like.dim() - 1], like.dtype())
}

/// `cdist`'s operands: `[b, p, m]` and `[r, m]` (broadcast batch), with `big` 26..=27 rows
/// on the left (the matrix-product path, whose f32 values lose digits for close points as
/// PyTorch's do: there the right-hand points lie apart from the left-hand ones). Every
/// coordinate of a left point is at least 0.01 from the same coordinate of every right
/// point: a `p`-norm with `1 < p < 2` has second derivatives like `|d|^(p - 2)` in each
/// coordinate difference `d`, unbounded at zero, which central differences cannot follow.
fn cdist_case(big: bool) -> BoxedStrategy<Sample> {
    let (rows, right) = if big { (26usize..=27, 4.0..6.0) } else { (1usize..=3, -2.0..2.0) };
    (1usize..=2, rows, 1usize..=3, 1usize..=3)
        .prop_flat_map(move |(b, p, r, m)| {
            let x2 = tensor_f64(Just(vec![r, m]), right.clone());
            (tensor_f64(Just(vec![b, p, m]), -2.0..2.0), x2)
        })
        .prop_filter("a coordinate difference near zero", |(a, b)| {
            let m = b.shape()[1];
            let (a, b) = (a.to_vec::<f64>(), b.to_vec::<f64>());
            a.iter()
                .enumerate()
                .all(|(i, x)| b.iter().skip(i % m).step_by(m).all(|y| (x - y).abs() >= 0.01))
        })
        .prop_map(|(a, b)| Sample { tensors: vec![a, b], ints: vec![] })
        .boxed()
}

/// A tensor of rank 2 or 3 (sizes 1..=3), two different dimensions of it (possibly
/// negative) and a diagonal offset in -2..=2.
fn diagonal_case() -> BoxedStrategy<Sample> {
    tensor_f64(proptest::collection::vec(1usize..=3, 2..=3), -2.0..2.0)
        .prop_flat_map(|t| {
            let r = t.dim() as i64;
            (Just(t), 0..r, 1..r, -2i64..=2, any::<bool>())
        })
        .prop_map(|(t, d1, shift, offset, negative)| {
            let r = t.dim() as i64;
            let d2 = (d1 + shift) % r;
            let d1 = if negative { d1 - r } else { d1 };
            Sample { tensors: vec![t], ints: vec![d1, d2, offset] }
        })
        .boxed()
}

/// Every registered op.
pub fn registry() -> Vec<OpCase> {
    vec![
        // Arithmetic (tapegrad-tape).
        op!("a + b", "torch.add", true, pair(-2.0..2.0, -2.0..2.0), |t, i| &t[0] + &t[1]),
        op!("a - b", "torch.sub", true, pair(-2.0..2.0, -2.0..2.0), |t, i| &t[0] - &t[1]),
        op!("a * b", "torch.mul", true, pair(-2.0..2.0, -2.0..2.0), |t, i| &t[0] * &t[1]),
        op!("a / b", "torch.div", true, pair(-2.0..2.0, 0.5..2.0), |t, i| &t[0] / &t[1]),
        op!("-x", "torch.neg", true, one(-2.0..2.0), |t, i| -&t[0]),
        op!(
            "x + s, x - s, s - x",
            "torch.add / sub / rsub (scalar)",
            true,
            one(-2.0..2.0),
            |t, i| &(&(&t[0] + 1.5) - 0.25) + &(0.5 - &t[0]).mul_scalar(2.0)
        ),
        op!("x * s, x / s, s / x", "torch.mul / div (scalar)", true, one(0.5..2.0), |t, i| {
            &(&(&t[0] * 1.5) / 3.0) + &(2.0 / &t[0])
        }),
        op!("x.broadcast_to(shape)", "Tensor.expand", true, pair(-2.0..2.0, -2.0..2.0), |t, i| {
            let target =
                tapegrad_tape::layout::broadcast_shapes(t[0].shape(), t[1].shape()).unwrap();
            t[0].broadcast_to(&target)
        }),
        op!(
            "x.sum_to_shape(shape)",
            "Tensor.sum_to_size",
            true,
            pair(-2.0..2.0, -2.0..2.0),
            |t, i| {
                let big =
                    tapegrad_tape::layout::broadcast_shapes(t[0].shape(), t[1].shape()).unwrap();
                t[0].broadcast_to(&big).mul_scalar(1.0).sum_to_shape(t[1].shape())
            }
        ),
        op!("x.contiguous()", "Tensor.contiguous", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].transpose(0, i[0] as isize).contiguous()
        }),
        op!("x.to_dtype(F64)", "Tensor.to", true, one(-2.0..2.0), |t, i| t[0].to_dtype(DType::F64)),
        // Unary.
        op!("x.exp()", "torch.exp", true, one(-2.0..2.0), |t, i| t[0].exp()),
        op!("x.log()", "torch.log", true, one(0.5..3.0), |t, i| t[0].log()),
        op!("x.log1p()", "torch.log1p", true, one(-0.5..2.0), |t, i| t[0].log1p()),
        op!("x.sqrt()", "torch.sqrt", true, one(0.5..3.0), |t, i| t[0].sqrt()),
        op!("x.rsqrt()", "torch.rsqrt", true, one(0.5..3.0), |t, i| t[0].rsqrt()),
        op!("x.square()", "torch.square", true, one(-2.0..2.0), |t, i| t[0].square()),
        op!("x.reciprocal()", "torch.reciprocal", true, one(0.5..2.0), |t, i| t[0].reciprocal()),
        op!("x.sin()", "torch.sin", true, one(-3.0..3.0), |t, i| t[0].sin()),
        op!("x.cos()", "torch.cos", true, one(-3.0..3.0), |t, i| t[0].cos()),
        op!("x.abs()", "torch.abs", true, one(-2.0..2.0), |t, i| t[0].abs()),
        op!("x.tanh()", "torch.tanh", true, one(-2.0..2.0), |t, i| t[0].tanh()),
        op!("x.sigmoid()", "torch.sigmoid", true, one(-3.0..3.0), |t, i| t[0].sigmoid()),
        op!("x.relu()", "torch.relu", true, one(-2.0..2.0), |t, i| t[0].relu()),
        op!("x.leaky_relu_with(0.1)", "F.leaky_relu", true, one(-2.0..2.0), |t, i| t[0]
            .leaky_relu_with(0.1)),
        op!("x.elu_with(1.3)", "F.elu", true, one(-2.0..2.0), |t, i| t[0].elu_with(1.3)),
        op!("x.gelu()", "F.gelu", true, one(-3.0..3.0), |t, i| t[0].gelu()),
        op!(
            "x.gelu_with(GeluApproximate::Tanh)",
            "F.gelu(approximate='tanh')",
            true,
            one(-3.0..3.0),
            |t, i| t[0].gelu_with(GeluApproximate::Tanh)
        ),
        op!("x.silu()", "F.silu", true, one(-3.0..3.0), |t, i| t[0].silu()),
        op!("x.softplus()", "F.softplus", true, one(-3.0..3.0), |t, i| t[0].softplus()),
        op!(
            "x.softplus_with(beta, threshold)",
            "F.softplus(beta=2, threshold=1)",
            true,
            one(-3.0..3.0),
            |t, i| t[0].softplus_with(SoftplusOptions::default().beta(2.0).threshold(1.0))
        ),
        op!("x.erf()", "torch.erf", true, one(-2.0..2.0), |t, i| t[0].erf()),
        // Mathematics (math.rs).
        op!("x.tan()", "torch.tan", true, one(-1.2..1.2), |t, i| t[0].tan()),
        op!("x.asin()", "torch.asin", true, one(-0.8..0.8), |t, i| t[0].asin()),
        op!("x.acos()", "torch.acos", true, one(-0.8..0.8), |t, i| t[0].acos()),
        op!("x.atan()", "torch.atan", true, one(-2.0..2.0), |t, i| t[0].atan()),
        op!("a.atan2(&b)", "torch.atan2", true, pair(-2.0..2.0, 0.5..2.0), |t, i| t[0]
            .atan2(&t[1])),
        op!("x.sinh()", "torch.sinh", true, one(-2.0..2.0), |t, i| t[0].sinh()),
        op!("x.cosh()", "torch.cosh", true, one(-2.0..2.0), |t, i| t[0].cosh()),
        op!("x.asinh()", "torch.asinh", true, one(-2.0..2.0), |t, i| t[0].asinh()),
        op!("x.acosh()", "torch.acosh", true, one(1.2..3.0), |t, i| t[0].acosh()),
        op!("x.atanh()", "torch.atanh", true, one(-0.8..0.8), |t, i| t[0].atanh()),
        op!("x.expm1()", "torch.expm1", true, one(-2.0..2.0), |t, i| t[0].expm1()),
        op!("x.exp2()", "torch.exp2", true, one(-2.0..2.0), |t, i| t[0].exp2()),
        op!("x.log2()", "torch.log2", true, one(0.5..3.0), |t, i| t[0].log2()),
        // The gamma family at x in 0.3..0.9 and, shifted by 3, between the poles -3 and -2:
        // the recurrence and the reflection.
        op!("x.lgamma()", "torch.lgamma", true, one(0.3..0.9), |t, i| {
            &t[0].lgamma() + &t[0].sub_scalar(3.0).lgamma()
        }),
        op!("x.digamma()", "torch.digamma", true, one(0.3..0.9), |t, i| {
            &t[0].digamma() + &t[0].sub_scalar(3.0).digamma()
        }),
        op!("x.polygamma(n)", "torch.polygamma", true, one(0.3..0.9), |t, i| {
            &(&t[0].polygamma(1) + &t[0].sub_scalar(3.0).polygamma(2))
                + &t[0].add_scalar(8.0).polygamma(3)
        }),
        op!("x.log10()", "torch.log10", true, one(0.5..3.0), |t, i| t[0].log10()),
        op!("a.logaddexp(&b)", "torch.logaddexp", true, pair(-2.0..2.0, -2.0..2.0), |t, i| t[0]
            .logaddexp(&t[1])),
        op!("x.sign()", "torch.sign", true, one(-2.0..2.0), |t, i| &t[0].sign() * &t[0]),
        op!("x.floor()", "torch.floor", true, one(-0.9..-0.1), |t, i| &t[0].floor() * &t[0]),
        op!("x.ceil()", "torch.ceil", true, one(0.1..0.9), |t, i| &t[0].ceil() * &t[0]),
        op!("x.round()", "torch.round", true, one(0.55..1.45), |t, i| &t[0].round() * &t[0]),
        op!("x.trunc()", "torch.trunc", true, one(1.1..1.9), |t, i| &t[0].trunc() * &t[0]),
        op!("x.frac()", "torch.frac", true, one(-0.9..0.9), |t, i| t[0].frac()),
        // Activations (activation.rs).
        op!("x.hardtanh_with(min, max)", "F.hardtanh", true, one(-2.0..2.0), |t, i| t[0]
            .hardtanh_with(-0.8, 1.2)),
        op!("x.relu6()", "F.relu6", true, one(-2.0..8.0), |t, i| t[0].relu6()),
        op!("x.hardsigmoid()", "F.hardsigmoid", true, one(-5.0..5.0), |t, i| t[0].hardsigmoid()),
        op!("x.hardswish()", "F.hardswish", true, one(-5.0..5.0), |t, i| t[0].hardswish()),
        op!("x.mish()", "F.mish", true, one(-4.0..4.0), |t, i| t[0].mish()),
        op!("x.selu()", "F.selu", true, one(-2.0..2.0), |t, i| t[0].selu()),
        op!("x.celu_with(alpha)", "F.celu", true, one(-2.0..2.0), |t, i| t[0].celu_with(0.7)),
        op!("x.logsigmoid()", "F.logsigmoid", true, one(-4.0..4.0), |t, i| t[0].logsigmoid()),
        op!("x.softsign()", "F.softsign", true, one(-3.0..3.0), |t, i| t[0].softsign()),
        op!("x.tanhshrink()", "F.tanhshrink", true, one(-2.0..2.0), |t, i| t[0].tanhshrink()),
        op!("x.glu(d)", "F.glu", true, glu_case(), |t, i| t[0].glu(i[0] as isize)),
        op!("x.prelu(&w)", "F.prelu", true, prelu_case(), |t, i| t[0].prelu(&t[1])),
        op!("x.clamp(min, max)", "torch.clamp", true, one(-2.0..2.0), |t, i| t[0]
            .clamp(Some(-0.7), Some(0.9))),
        op!("x.pow(p)", "torch.pow (scalar)", true, one(0.5..2.0), |t, i| {
            &(&t[0].pow(-1.5) + &t[0].pow(0.5)) + &(&t[0].pow(3.0) + &t[0].pow(0.0))
        }),
        // Binary.
        op!("a.pow(&b)", "torch.pow", true, pair(0.5..2.0, -2.0..2.0), |t, i| t[0].pow(&t[1])),
        op!("a.maximum(&b)", "torch.maximum", true, pair(-2.0..2.0, -2.0..2.0), |t, i| t[0]
            .maximum(&t[1])),
        op!("a.minimum(&b)", "torch.minimum", true, pair(-2.0..2.0, -2.0..2.0), |t, i| t[0]
            .minimum(&t[1])),
        op!("where_(cond, a, b)", "torch.where", true, pair(-2.0..2.0, -2.0..2.0), |t, i| {
            let cond = t[0].gt(&t[1].detach());
            tapegrad_ops::where_(&cond, &t[0], &t[1])
        }),
        // Reductions.
        op!("x.sum()", "torch.sum", true, one(-2.0..2.0), |t, i| t[0].sum()),
        op!("x.mean()", "torch.mean", true, nonempty(-2.0..2.0), |t, i| t[0].mean()),
        op!("x.sum_dim(d, keepdim)", "torch.sum(dim)", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].sum_dim(i[0] as isize, i[1] == 1)
        }),
        op!("x.mean_dim(d, keepdim)", "torch.mean(dim)", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].mean_dim(i[0] as isize, i[1] == 1)
        }),
        op!(
            "x.sum_dims(dims, keepdim)",
            "torch.sum(dim=tuple)",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].sum_dims(&two_dims(&t[0], i[0]), i[1] == 1)
        ),
        op!(
            "x.mean_dims(dims, keepdim)",
            "torch.mean(dim=tuple)",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].mean_dims(&two_dims(&t[0], i[0]), i[1] == 1)
        ),
        op!("x.var(correction)", "torch.var", true, with_dim(-2.0..2.0, 2), |t, i| t[0]
            .var(i[1] as f64)),
        op!(
            "x.var_dim(d, correction, keepdim)",
            "torch.var(dim)",
            true,
            with_dim(-2.0..2.0, 2),
            |t, i| t[0].var_dim(i[0] as isize, i[1] as f64, i[1] == 0)
        ),
        op!(
            "x.var_dims(dims, correction, keepdim)",
            "torch.var(dim=tuple)",
            true,
            with_dim(-2.0..2.0, 2),
            |t, i| t[0].var_dims(&two_dims(&t[0], i[0]), i[1] as f64, i[1] == 0)
        ),
        op!("x.std(correction)", "torch.std", true, with_dim(-2.0..2.0, 2), |t, i| t[0]
            .std(i[1] as f64)),
        op!(
            "x.std_dim(d, correction, keepdim)",
            "torch.std(dim)",
            true,
            with_dim(-2.0..2.0, 2),
            |t, i| t[0].std_dim(i[0] as isize, i[1] as f64, i[1] == 0)
        ),
        op!(
            "x.std_dims(dims, correction, keepdim)",
            "torch.std(dim=tuple)",
            true,
            with_dim(-2.0..2.0, 2),
            |t, i| t[0].std_dims(&two_dims(&t[0], i[0]), i[1] as f64, i[1] == 0)
        ),
        op!("x.max(), x.min()", "torch.max / min", true, nonempty(-2.0..2.0), |t, i| &t[0].max()
            + &t[0].min()),
        op!("x.max_dim(d, keepdim)", "torch.max(dim)", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].max_dim(i[0] as isize, i[1] == 1).0
        }),
        op!("x.min_dim(d, keepdim)", "torch.min(dim)", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].min_dim(i[0] as isize, i[1] == 1).0
        }),
        op!("x.amax(dims, keepdim)", "torch.amax", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].amax(&two_dims(&t[0], i[0]), i[1] == 1)
        }),
        op!("x.amin(dims, keepdim)", "torch.amin", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].amin(&[i[0] as isize], i[1] == 1)
        }),
        op!("x.prod()", "torch.prod", true, one(-2.0..2.0), |t, i| t[0].prod()),
        op!("x.prod_dim(d, keepdim)", "torch.prod(dim)", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].prod_dim(i[0] as isize, i[1] == 1)
        }),
        op!("x.cumsum(d)", "torch.cumsum", true, with_dim(-2.0..2.0, 1), |t, i| t[0]
            .cumsum(i[0] as isize)),
        op!("x.cumprod(d)", "torch.cumprod", true, with_dim(-2.0..2.0, 1), |t, i| t[0]
            .cumprod(i[0] as isize)),
        op!("x.cumprod(d) with zeros", "torch.cumprod", true, with_zeros(), |t, i| t[0]
            .cumprod(i[0] as isize)),
        op!("x.logsumexp(d, keepdim)", "torch.logsumexp", true, with_dim(-3.0..3.0, 1), |t, i| {
            t[0].logsumexp(i[0] as isize, i[1] == 1)
        }),
        op!("x.norm(p)", "torch.linalg.vector_norm", true, nonempty(0.5..2.0), |t, i| {
            &(&t[0].norm(2.0) + &t[0].norm(1.0)) + &t[0].norm(3.0)
        }),
        op!(
            "x.norm_dim(2, d, keepdim)",
            "torch.linalg.vector_norm(dim)",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].norm_dim(2.0, i[0] as isize, i[1] == 1)
        ),
        // Shape and indexing.
        op!("x.reshape(shape)", "torch.reshape", true, nonempty(-2.0..2.0), |t, i| t[0]
            .t()
            .reshape(&[1, -1])),
        op!("x.flatten(start, end)", "torch.flatten", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].flatten(0, i[0] as isize)
        }),
        op!(
            "x.squeeze() / unsqueeze(d)",
            "torch.squeeze / unsqueeze",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].unsqueeze(i[0] as isize).squeeze()
        ),
        op!("x.transpose(a, b)", "torch.transpose", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].transpose(0, i[0] as isize)
        }),
        op!("x.permute(dims)", "torch.permute", true, with_dim(-2.0..2.0, 1), |t, i| {
            let r = t[0].dim() as isize;
            let dims: Vec<isize> = (0..r).rev().collect();
            t[0].permute(&dims)
        }),
        op!("x.expand(shape)", "Tensor.expand", true, with_dim(-2.0..2.0, 1), |t, i| {
            let mut s: Vec<isize> = vec![2];
            s.extend(std::iter::repeat_n(-1, t[0].dim()));
            t[0].expand(&s)
        }),
        op!("x.narrow(d, start, len)", "torch.narrow", true, with_dim(-2.0..2.0, 2), |t, i| {
            let d = i[0] as isize;
            t[0].narrow(d, 1, t[0].shape()[i[0].rem_euclid(t[0].dim() as i64) as usize] - 1)
        }),
        op!(
            "x.slice(d, start, end, step)",
            "x[start:end:step]",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].slice(i[0] as isize, 0, 3, 2)
        ),
        op!(
            "x.select(d, index)",
            "torch.select / x[:, -1]",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].select(i[0] as isize, -1)
        ),
        op!(
            "x.i((a, b..c, step_by(.., s)))",
            "x[a, b:c, ::s]",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| match t[0].dim() {
                1 => t[0].i(step_by(-3.., 2)),
                2 => t[0].i((-1, ..-1)),
                _ => t[0].i((.., 1.., step_by(.., 2))),
            }
        ),
        op!("x.masked_fill(mask, v)", "Tensor.masked_fill", true, one(-2.0..2.0), |t, i| {
            t[0].masked_fill(&positional_mask(&t[0]), -0.5)
        }),
        op!("x.masked_select(mask)", "torch.masked_select", true, one(-2.0..2.0), |t, i| {
            t[0].masked_select(&positional_mask(&t[0]))
        }),
        op!("x.roll(shifts, dims)", "torch.roll", true, with_dim(-2.0..2.0, 1), |t, i| {
            &t[0].roll(&[i[0] as isize + 2], &[i[0] as isize])
                + &t[0].roll(&[-1], &[]).mul_scalar(0.5)
        }),
        op!(
            "pixel_shuffle(x, r) / pixel_unshuffle",
            "F.pixel_shuffle / pixel_unshuffle",
            true,
            shuffle_case(),
            |t, i| {
                let up = functional::pixel_shuffle(&t[0], 2);
                &functional::pixel_unshuffle(&up.mul_scalar(1.5), 2) + &t[0]
            }
        ),
        op!(
            "F::unfold_with(x, k, options) / F::fold_with",
            "F.unfold / F.fold",
            true,
            image(4),
            |t, i| {
                let (h, w) = (t[0].shape()[2], t[0].shape()[3]);
                let plain = UnfoldOptions::default().padding((1, 0));
                let spaced = UnfoldOptions::default().dilation((2, 1)).padding(1).stride((2, 1));
                let a = functional::unfold_with(&t[0], (2, 1), plain);
                let b = functional::unfold_with(&t[0], 2, spaced);
                let back = functional::fold_with(&(&a * &a), (h, w), (2, 1), plain);
                &(&back + &functional::fold_with(&b.sin(), (h, w), 2, spaced)) + &t[0]
            }
        ),
        op!("x.unfold(d, size, step)", "Tensor.unfold", true, with_dim(-2.0..2.0, 1), |t, i| {
            let d = i[0] as isize;
            let extent = t[0].shape()[d.rem_euclid(t[0].dim() as isize) as usize];
            let windows = t[0].unfold(d, extent.min(2), 1 + i[1] as usize);
            &windows * &windows
        }),
        op!("x.tril(k) / x.triu(k)", "torch.tril / triu", true, matrices(), |t, i| {
            &t[0].tril(i[0]) + &t[0].triu(i[0] + 1).mul_scalar(0.5)
        }),
        op!("x.sort(d, descending)", "torch.sort", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].sort(i[0] as isize, i[1] == 1).0
        }),
        op!("x.topk_with(k, d, largest)", "torch.topk", true, with_dim(-2.0..2.0, 1), |t, i| {
            let d = i[0] as isize;
            let size = t[0].shape()[d.rem_euclid(t[0].dim() as isize) as usize];
            t[0].topk_with(size.min(2), d, i[1] == 1).0
        }),
        op!("x.flip(dims)", "torch.flip", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].flip(&[i[0] as isize])
        }),
        op!(
            "x.split(size, d) / chunk",
            "torch.split / chunk",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| {
                let parts = t[0].split(2, i[0] as isize);
                let chunks = t[0].chunk(2, i[0] as isize);
                &parts[0].sum() + &chunks.last().unwrap().mul_scalar(2.0).sum()
            }
        ),
        op!("x.unbind(d)", "torch.unbind", true, with_dim(-2.0..2.0, 1), |t, i| {
            // Each slice weighted differently, so that a slice sent to the wrong place shows.
            let slices = t[0].unbind(i[0] as isize);
            let weighted: Vec<Tensor> =
                slices.iter().enumerate().map(|(k, s)| s.mul_scalar(k as f64 + 1.0)).collect();
            tapegrad_ops::stack(&weighted.iter().collect::<Vec<_>>(), 0)
        }),
        op!("cat(tensors, d)", "torch.cat", true, with_dim(-2.0..2.0, 1), |t, i| {
            tapegrad_ops::cat(&[&t[0], &t[0].mul_scalar(2.0)], i[0] as isize)
        }),
        op!("stack(tensors, d)", "torch.stack", true, with_dim(-2.0..2.0, 1), |t, i| {
            tapegrad_ops::stack(&[&t[0], &t[0].exp()], i[0] as isize)
        }),
        op!("x.index_select(d, index)", "torch.index_select", true, with_index(), |t, i| {
            t[0].index_select(i[0] as isize, &t[1])
        }),
        op!("x.index_add(d, index, src)", "Tensor.index_add", true, with_index(), |t, i| {
            let src = t[0].index_select(i[0] as isize, &t[1]).mul_scalar(1.5);
            t[0].index_add(i[0] as isize, &t[1], &src)
        }),
        op!("x.gather(d, index)", "torch.gather", true, with_gather_index(), |t, i| t[0]
            .gather(i[0] as isize, &t[1])),
        op!(
            "x.scatter_add(d, index, src)",
            "Tensor.scatter_add",
            true,
            with_gather_index(),
            |t, i| t[0].scatter_add(i[0] as isize, &t[1], &t[2])
        ),
        op!(
            "x.pad(pads, value)",
            "F.pad(mode='constant')",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].pad(&[(1, 2)], 0.5)
        ),
        op!("x.repeat(reps)", "Tensor.repeat", true, with_dim(-2.0..2.0, 1), |t, i| {
            let mut reps = vec![2usize; t[0].dim()];
            reps.insert(0, 1);
            t[0].repeat(&reps)
        }),
        op!(
            "x.repeat_interleave(repeats, dim)",
            "Tensor.repeat_interleave",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| t[0].repeat_interleave(2 + i[1] as usize, i[0] as isize)
        ),
        op!(
            "x.movedim(source, destination)",
            "torch.movedim",
            true,
            with_dim(-2.0..2.0, 1),
            |t, i| {
                // A changing weight per position tells a moved dimension from the original.
                let moved = t[0].movedim(i[0] as isize, if i[1] == 1 { 0 } else { -1 });
                let weights =
                    Tensor::arange_dtype(1.0, 1.0 + moved.numel() as f64, 1.0, moved.dtype());
                &moved * &weights.reshape_as(&moved)
            }
        ),
        // Matrix products.
        op!("a.matmul(&b)", "torch.matmul", true, matmul_shapes(), |t, i| t[0].matmul(&t[1])),
        op!("einsum(equation, operands)", "torch.einsum", true, einsum_case(), |t, i| {
            tapegrad_ops::einsum(EINSUM_EQUATIONS[i[0] as usize], &[&t[0], &t[1]])
        }),
        op!("linear(x, w, b)", "F.linear", true, matmul_shapes(), |t, i| {
            // Reuse the matmul sampler: x [..., k] against a weight [n, k] made from b.
            let x = if t[0].dim() == 1 { t[0].unsqueeze(0) } else { t[0].clone() };
            let k = *x.shape().last().unwrap();
            let w =
                t[1].reshape(&[-1]).narrow(0, 0, t[1].numel() / k * k).reshape(&[-1, k as isize]);
            let b = w.sum_dim(1, false).mul_scalar(0.5);
            functional::linear(&x, &w, Some(&b))
        }),
        // Neural-network functions.
        op!("x.softmax(d)", "torch.softmax", true, with_dim(-3.0..3.0, 1), |t, i| t[0]
            .softmax(i[0] as isize)),
        op!("x.log_softmax(d)", "torch.log_softmax", true, with_dim(-3.0..3.0, 1), |t, i| {
            t[0].log_softmax(i[0] as isize)
        }),
        op!(
            "cross_entropy(logits, classes)",
            "F.cross_entropy",
            true,
            classification(false),
            |t, i| functional::cross_entropy_with(&t[0], &t[1], reduction(i[0]))
        ),
        op!(
            "cross_entropy_with(weight, ignore_index)",
            "F.cross_entropy(weight=, ignore_index=)",
            true,
            classification(false),
            |t, i| weighted_cross_entropy(t, i[0], 0.0)
        ),
        op!(
            "cross_entropy_with(weight, ignore_index, label_smoothing)",
            "F.cross_entropy(weight=, ignore_index=, label_smoothing=)",
            true,
            classification(false),
            |t, i| weighted_cross_entropy(t, i[0], 0.2)
        ),
        op!(
            "cross_entropy(logits, probabilities)",
            "F.cross_entropy (soft targets)",
            true,
            classification(true),
            |t, i| {
                let loss = CrossEntropyLoss::new().reduction(reduction(i[0])).label_smoothing(0.1);
                functional::cross_entropy_with(&t[0], &t[1], loss)
            }
        ),
        op!("nll_loss(log_probs, classes)", "F.nll_loss", true, classification(false), |t, i| {
            let w =
                Tensor::from_vec(vec![0.5f64, 2.0, 1.0, 1.5], &[4]).narrow(0, 0, t[0].shape()[1]);
            functional::nll_loss_with(
                &t[0],
                &t[1],
                NLLLoss::new().reduction(reduction(i[0])).weight(&w),
            )
        }),
        op!(
            "kl_div(input, target)",
            "F.kl_div(reduction='batchmean')",
            true,
            pair(-3.0..0.0, 0.1..1.0),
            |t, i| KLDivLoss::new().batchmean().forward(&t[0], &t[1])
        ),
        op!(
            "kl_div(log_target)",
            "F.kl_div(log_target=True)",
            true,
            pair(-3.0..0.0, -3.0..0.0),
            |t, i| {
                KLDivLoss::new().log_target(true).reduction(Reduction::None).forward(&t[0], &t[1])
            }
        ),
        op!("mse_loss(a, b)", "F.mse_loss", true, pair(-2.0..2.0, -2.0..2.0), |t, i| {
            functional::mse_loss_with(&t[0], &t[1], Reduction::Sum)
        }),
        op!("l1_loss(a, b)", "F.l1_loss", true, pair(-2.0..2.0, -2.0..2.0), |t, i| {
            functional::l1_loss_with(&t[0], &t[1], Reduction::Sum)
        }),
        op!("smooth_l1_loss(a, b, beta)", "F.smooth_l1_loss", true, pair_off_kink(0.8), |t, i| {
            let loss = SmoothL1Loss::new().beta(0.8).reduction(Reduction::Sum);
            functional::smooth_l1_loss_with(&t[0], &t[1], loss)
        }),
        op!("huber_loss(a, b, delta)", "F.huber_loss", true, pair_off_kink(0.7), |t, i| {
            functional::huber_loss_with(&t[0], &t[1], HuberLoss::new().delta(0.7))
        }),
        op!(
            "binary_cross_entropy(p, y)",
            "F.binary_cross_entropy",
            true,
            pair(0.05..0.95, 0.01..0.99),
            |t, i| {
                // Per-element weights that depend on the shape only.
                let n = t[1].numel() as f64;
                let w = Tensor::arange_dtype(0.0, n, 1.0, t[0].dtype())
                    .reshape(&t[1].shape().iter().map(|&d| d as isize).collect::<Vec<_>>())
                    .mul_scalar(0.25)
                    .add_scalar(0.5);
                let loss = BCELoss::new().reduction(Reduction::Sum).weight(&w);
                functional::binary_cross_entropy_with(&t[0], &t[1], loss)
            }
        ),
        op!(
            "binary_cross_entropy_with_logits(x, y)",
            "F.binary_cross_entropy_with_logits",
            true,
            pair(-3.0..3.0, 0.0..1.0),
            |t, i| functional::binary_cross_entropy_with_logits_with(&t[0], &t[1], Reduction::Sum)
        ),
        op!(
            "binary_cross_entropy_with_logits(pos_weight)",
            "F.binary_cross_entropy_with_logits(pos_weight=)",
            true,
            pair(-3.0..3.0, 0.0..1.0),
            |t, i| {
                let pw = Tensor::full_dtype(&[1], 2.5, DType::F64);
                let loss = BCEWithLogitsLoss::new().pos_weight(&pw);
                functional::binary_cross_entropy_with_logits_with(&t[0], &t[1], loss)
            }
        ),
        op!("dropout(x, p, training)", "F.dropout", true, one(-2.0..2.0), |t, i| {
            tapegrad_tape::manual_seed(7); // the same mask on every evaluation
            functional::dropout_with(&t[0], functional::DropoutOptions::default().p(0.3))
        }),
        // Convolution, pooling, normalisation, embedding.
        op!("conv2d(x, w, b, options)", "F.conv2d", true, conv_case(false), |t, i| {
            functional::conv2d_with(&t[0], &t[1], Some(&t[2]), conv_options(i))
        }),
        op!(
            "conv2d(padding='same')",
            "F.conv2d(padding='same')",
            true,
            conv_case(false),
            |t, i| {
                let o = conv_options(i).stride(1).padding(Padding::Same);
                functional::conv2d_with(&t[0], &t[1], Some(&t[2]), o)
            }
        ),
        op!("conv1d(x, w, b, ...)", "F.conv1d", true, conv_case(false), |t, i| {
            let (x, w) = (t[0].narrow(2, 0, 1).squeeze_dim(2), t[1].narrow(2, 0, 1).squeeze_dim(2));
            functional::conv1d_with(&x, &w, Some(&t[2]), conv_options(i))
        }),
        op!(
            "conv_transpose2d(x, w, b, options, output_padding)",
            "F.conv_transpose2d",
            true,
            conv_case(true),
            |t, i| {
                let o = conv_options(i);
                let extra = (o.stride.0.max(o.dilation.0) - 1).min(1);
                functional::conv_transpose2d_with(
                    &t[0],
                    &t[1],
                    Some(&t[2]),
                    o.output_padding((extra, 0)),
                )
            }
        ),
        op!(
            "conv_transpose1d(x, w, b, options, output_padding)",
            "F.conv_transpose1d",
            true,
            conv_case(true),
            |t, i| {
                let (x, w) =
                    (t[0].narrow(2, 0, 1).squeeze_dim(2), t[1].narrow(2, 0, 1).squeeze_dim(2));
                let o = conv_options(i);
                let extra = (o.stride.0.max(o.dilation.0) - 1).min(1);
                functional::conv_transpose1d_with(&x, &w, Some(&t[2]), o.output_padding(extra))
            }
        ),
        op!("margin_ranking_loss(x1, x2, y)", "F.margin_ranking_loss", true, triple(), |t, i| {
            let o = MarginRankingLoss::new().margin(0.3).reduction(Reduction::Sum);
            o.forward(
                &t[0].flatten(0, -1),
                &t[1].flatten(0, -1),
                &t[2].flatten(0, -1).detach().sign(),
            )
        }),
        op!(
            "triplet_margin_loss(a, p, n)",
            "F.triplet_margin_loss",
            true,
            hinge_clear(triple(), 1.0, 2.0, false),
            |t, i| functional::triplet_margin_loss(&t[0], &t[1], &t[2])
        ),
        op!(
            "triplet_margin_loss(p=1, swap)",
            "F.triplet_margin_loss(p=1, swap=True)",
            true,
            hinge_clear(triple_apart(), 2.0, 1.5, true),
            |t, i| functional::triplet_margin_loss_with(
                &t[0],
                &t[1],
                &t[2],
                TripletMarginLoss::new().p(1.5).swap(true).margin(2.0)
            )
        ),
        op!(
            "cosine_embedding_loss(x1, x2, y)",
            "F.cosine_embedding_loss",
            true,
            away_from_zero(triple()),
            |t, i| {
                let o = CosineEmbeddingLoss::new().margin(-0.5);
                o.forward(&t[0], &t[1], &signs(&t[2]))
            }
        ),
        op!("gaussian_nll_loss(x, y, var)", "F.gaussian_nll_loss", true, triple(), |t, i| {
            let var = t[2].square().add_scalar(0.2);
            functional::gaussian_nll_loss_with(
                &t[0],
                &t[1],
                &var,
                GaussianNLLLoss::new().full(true),
            )
        }),
        op!(
            "hinge_embedding_loss(x, y)",
            "F.hinge_embedding_loss",
            true,
            pair(-2.0..2.0, -2.0..2.0),
            |t, i| functional::hinge_embedding_loss(&t[0], &t[1].detach().sign())
        ),
        op!(
            "soft_margin_loss(x, y)",
            "F.soft_margin_loss",
            true,
            pair(-2.0..2.0, -2.0..2.0),
            |t, i| functional::soft_margin_loss(&t[0], &t[1])
        ),
        op!(
            "poisson_nll_loss(x, y)",
            "F.poisson_nll_loss(full=True)",
            true,
            pair(-2.0..2.0, 0.5..4.0),
            |t, i| {
                functional::poisson_nll_loss_with(&t[0], &t[1], PoissonNLLLoss::new().full(true))
            }
        ),
        op!(
            "poisson_nll_loss(log_input=false)",
            "F.poisson_nll_loss(log_input=False)",
            true,
            pair(0.5..3.0, 0.0..4.0),
            |t, i| functional::poisson_nll_loss_with(
                &t[0],
                &t[1],
                PoissonNLLLoss::new().log_input(false)
            )
        ),
        op!("x.diagonal(offset, dim1, dim2)", "torch.diagonal", true, diagonal_case(), |t, i| {
            t[0].diagonal(i[2], i[0] as isize, i[1] as isize)
        }),
        op!("x.trace()", "torch.trace", true, strict_product(0), |t, i| t[0].trace()),
        op!("x.diff(n, dim)", "torch.diff", true, with_dim(-2.0..2.0, 1), |t, i| {
            t[0].diff(1 + i[1] as usize, i[0] as isize)
        }),
        // Linear algebra: a positive-definite M Mᵀ + n I, and triangles kept off singular by
        // a diagonal of 2 to 4.
        op!("linalg::cholesky(a)", "torch.linalg.cholesky", true, strict_product(1), |t, i| {
            let gram = t[0].matmul(&t[0].transpose(-2, -1));
            let n = gram.shape()[2] as f64;
            linalg::cholesky(&(&gram + &identity_like(&gram).mul_scalar(n)))
        }),
        op!(
            "linalg::solve_triangular_with(a, b, upper, options)",
            "torch.linalg.solve_triangular",
            true,
            triangular_system(),
            |t, i| {
                let a = &t[0] + &identity_like(&t[0]).mul_scalar(3.0);
                let options = linalg::SolveTriangularOptions::default()
                    .left(i[1] == 1)
                    .unitriangular(i[2] == 1);
                linalg::solve_triangular_with(&a, &t[1], i[0] == 1, options)
            }
        ),
        // General matrices A + 3 I: entries of A below 1 in magnitude, at most 3 x 3, so the
        // shifted matrix is diagonally dominant and far from singular.
        op!("linalg::solve(a, b)", "torch.linalg.solve", true, square_system(), |t, i| {
            linalg::solve(&(&t[0] + &identity_like(&t[0]).mul_scalar(3.0)), &t[1])
        }),
        op!("linalg::inv(a)", "torch.linalg.inv", true, square_system(), |t, i| {
            linalg::inv(&(&t[0] + &identity_like(&t[0]).mul_scalar(3.0)))
        }),
        op!("linalg::det(a)", "torch.linalg.det", true, square_system(), |t, i| {
            linalg::det(&(&t[0] + &identity_like(&t[0]).mul_scalar(3.0)))
        }),
        op!("linalg::slogdet(a)", "torch.linalg.slogdet", true, square_system(), |t, i| {
            // Shifted by -3 the determinant may be negative: the sign times the log.
            let (sign, log_abs) = linalg::slogdet(&(&t[0] - &identity_like(&t[0]).mul_scalar(3.0)));
            &sign * &log_abs
        }),
        // QR of A + 3 E (E the m x n identity): the first min(m, n) columns independent, so
        // the rule's R⁻¹ exists; each reflection's head near 3, far from where LAPACK's sign
        // choice flips. Q and R flattened side by side, in each mode (complete only where
        // it is differentiable: m <= n).
        op!("linalg::qr_with(a, mode)", "torch.linalg.qr", true, qr_case(), |t, i| {
            let (m, n) = (t[0].shape()[t[0].dim() - 2], t[0].shape()[t[0].dim() - 1]);
            let shifted = &t[0]
                + &Tensor::eye_dtype(m.max(n), t[0].dtype())
                    .narrow(0, 0, m)
                    .narrow(1, 0, n)
                    .mul_scalar(3.0);
            let mode = match i[0] {
                0 => linalg::QrMode::Reduced,
                1 if m <= n => linalg::QrMode::Complete,
                1 => linalg::QrMode::Reduced,
                _ => linalg::QrMode::R,
            };
            let (q, r) = linalg::qr_with(&shifted, mode);
            tapegrad_ops::cat(&[&q.reshape(&[-1]), &r.reshape(&[-1])], 0)
        }),
        // Symmetric eigendecompositions of (A + Aᵀ) / 2 with eigenvalues 2 apart; an
        // eigenvector's sign is arbitrary, so its squares (and V diag(L) Vᵀ's products).
        op!("linalg::eigh(a)", "torch.linalg.eigh", true, matrix_case(true, 1), |t, i| {
            let (l, v) = linalg::eigh(&spread_diagonal(&symmetric(&t[0]), 0.0, 10.0));
            tapegrad_ops::cat(&[&l.reshape(&[-1]), &v.square().reshape(&[-1])], 0)
        }),
        op!("linalg::eigvalsh(a)", "torch.linalg.eigvalsh", true, matrix_case(true, 1), |t, i| {
            linalg::eigvalsh(&spread_diagonal(&symmetric(&t[0]), 0.0, 10.0))
        }),
        // Singular value decompositions of A plus a diagonal from 10 in steps of 10 (distinct,
        // non-zero singular values), reduced or full: S, the squares of U and Vᴴ, and U Vᴴ
        // (a pair's common sign is arbitrary), the first min(m, n) vectors (the rest are
        // constants to the rule, as in PyTorch).
        op!(
            "linalg::svd_with(a, options)",
            "torch.linalg.svd",
            true,
            matrix_case(false, 2),
            |t, i| {
                let a = spread_diagonal(&t[0], 10.0, 10.0);
                let (m, n) = (a.shape()[a.dim() - 2], a.shape()[a.dim() - 1]);
                let k = m.min(n);
                let options = linalg::SvdOptions::default().full_matrices(i[0] == 1);
                let (u, s, vh) = linalg::svd_with(&a, options);
                let (u, vh) = (u.narrow(-1, 0, k), vh.narrow(-2, 0, k));
                let flat = |x: &Tensor| x.reshape(&[-1]);
                let (squares_u, squares_vh) = (flat(&u.square()), flat(&vh.square()));
                tapegrad_ops::cat(&[&flat(&s), &squares_u, &squares_vh, &flat(&u.matmul(&vh))], 0)
            }
        ),
        op!("linalg::svdvals(a)", "torch.linalg.svdvals", true, matrix_case(false, 1), |t, i| {
            linalg::svdvals(&spread_diagonal(&t[0], 10.0, 10.0))
        }),
        // The pseudo-inverse of a full-rank A (tall, square or wide), and the norms and
        // condition number, each on A plus a spread diagonal.
        op!("linalg::pinv(a)", "torch.linalg.pinv", true, matrix_case(false, 1), |t, i| {
            linalg::pinv(&spread_diagonal(&t[0], 10.0, 10.0))
        }),
        op!(
            "linalg::matrix_norm_with(a, options)",
            "torch.linalg.matrix_norm",
            true,
            matrix_case(false, 16),
            |t, i| {
                use linalg::MatrixOrd::*;
                let ord = [Fro, Nuc, Two, NegTwo, One, NegOne, Inf, NegInf][i[0] as usize % 8];
                let options = linalg::MatrixNormOptions::default().ord(ord).keepdim(i[0] >= 8);
                linalg::matrix_norm_with(&spread_diagonal(&t[0], 10.0, 10.0), options)
            }
        ),
        op!("linalg::cond(a)", "torch.linalg.cond", true, matrix_case(false, 1), |t, i| {
            linalg::cond(&spread_diagonal(&t[0], 10.0, 10.0))
        }),
        op!("linalg::cross(a, b, dim)", "torch.linalg.cross", true, cross_case(), |t, i| {
            linalg::cross(&t[0], &t[1], i[0] as isize)
        }),
        // Least squares of A + 3 E (full rank), tall, square and wide.
        op!("linalg::lstsq(a, b)", "torch.linalg.lstsq", true, lstsq_case(), |t, i| {
            let (m, n) = (t[0].shape()[0], t[0].shape()[1]);
            let shift = Tensor::eye_dtype(m.max(n), t[0].dtype()).narrow(0, 0, m).narrow(1, 0, n);
            linalg::lstsq(&(&t[0] + &shift.mul_scalar(3.0)), &t[1])
        }),
        op!(
            "linalg::matrix_power(a, k)",
            "torch.linalg.matrix_power",
            true,
            power_case(),
            |t, i| {
                let shifted = &t[0] + &identity_like(&t[0]).mul_scalar(3.0);
                linalg::matrix_power(&shifted, i[0])
            }
        ),
        op!("a.mm(&b)", "torch.mm", true, strict_product(0), |t, i| t[0].mm(&t[1])),
        op!("a.bmm(&b)", "torch.bmm", true, strict_product(1), |t, i| t[0].bmm(&t[1])),
        op!("a.mv(&v)", "torch.mv", true, strict_product(2), |t, i| t[0].mv(&t[1])),
        op!("a.dot(&b)", "torch.dot", true, strict_product(3), |t, i| t[0].dot(&t[1])),
        op!("a.outer(&b)", "torch.outer", true, strict_product(4), |t, i| t[0].outer(&t[1])),
        op!("cdist(a, b, p)", "torch.cdist", true, cdist_case(false), |t, i| {
            &(&tapegrad_ops::cdist(&t[0], &t[1], 2.0) + &tapegrad_ops::cdist(&t[0], &t[1], 1.5))
                + &tapegrad_ops::cdist(&t[0], &t[1], 3.0)
        }),
        op!(
            "cdist(a, b, 2) (matrix products)",
            "torch.cdist (p=2, over 25 rows)",
            true,
            cdist_case(true),
            |t, i| tapegrad_ops::cdist(&t[0], &t[1], 2.0)
        ),
        op!("max_pool2d(x, kernel, stride, padding)", "F.max_pool2d", true, pool_case(), |t, i| {
            let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
            functional::max_pool2d_with(&t[0], k, MaxPool2dOptions::default().stride(s).padding(p))
        }),
        op!(
            "max_pool2d(ceil_mode, dilation)",
            "F.max_pool2d(ceil_mode=True, dilation=)",
            true,
            pool_case(),
            |t, i| {
                let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
                let d =
                    if k > 1 && t[0].shape()[2] > 2 * k && t[0].shape()[3] > 2 * k { 2 } else { 1 };
                let o =
                    MaxPool2dOptions::default().stride(s).padding(p).ceil_mode(true).dilation(d);
                functional::max_pool2d_with(&t[0], k, o)
            }
        ),
        op!("max_pool1d(x, kernel, stride, padding)", "F.max_pool1d", true, pool_case(), |t, i| {
            let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
            let o = MaxPool1dOptions::default().stride(s).padding(p).ceil_mode(s > 1);
            functional::max_pool1d_with(&t[0].flatten(2, -1), k, o)
        }),
        op!("avg_pool1d(x, kernel, stride, padding)", "F.avg_pool1d", true, pool_case(), |t, i| {
            let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
            let o = AvgPool1dOptions::default().stride(s).padding(p).count_include_pad(s > 1);
            functional::avg_pool1d_with(&t[0].flatten(2, -1), k, o)
        }),
        op!("adaptive_avg_pool1d(x, size)", "F.adaptive_avg_pool1d", true, image(5), |t, i| {
            functional::adaptive_avg_pool1d(&t[0].flatten(2, -1), 3)
        }),
        op!("adaptive_max_pool1d(x, size)", "F.adaptive_max_pool1d", true, image(5), |t, i| {
            functional::adaptive_max_pool1d(&t[0].flatten(2, -1), 3)
        }),
        op!("adaptive_max_pool2d(x, size)", "F.adaptive_max_pool2d", true, image(5), |t, i| {
            functional::adaptive_max_pool2d(&t[0], (2, 3))
        }),
        op!("avg_pool2d(x, kernel, stride, padding)", "F.avg_pool2d", true, pool_case(), |t, i| {
            let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
            functional::avg_pool2d_with(&t[0], k, AvgPool2dOptions::default().stride(s).padding(p))
        }),
        op!(
            "avg_pool2d(ceil_mode, count_include_pad=false)",
            "F.avg_pool2d(ceil_mode=True, count_include_pad=False)",
            true,
            pool_case(),
            |t, i| {
                let (k, s, p) = (i[0] as usize, i[1] as usize, i[2] as usize);
                let o = AvgPool2dOptions::default()
                    .stride(s)
                    .padding(p)
                    .ceil_mode(true)
                    .count_include_pad(false);
                functional::avg_pool2d_with(&t[0], k, o)
            }
        ),
        op!(
            "pad(x, pads, mode)",
            "F.pad(mode='reflect'/'replicate'/'circular')",
            true,
            image(4),
            |t, i| {
                let (h, w) = (t[0].shape()[2] as isize, t[0].shape()[3] as isize);
                let reflect = functional::pad_with(
                    &t[0],
                    &[(w - 1).min(1), 0, 0, (h - 1).min(1)],
                    PadMode::Reflect,
                );
                let replicate = functional::pad_with(&t[0], &[2, 1, 1, 0], PadMode::Replicate);
                let circular =
                    functional::pad_with(&t[0], &[w.min(1), 0, 0, h.min(1)], PadMode::Circular);
                &(&reflect.sum() + &replicate.square().sum()) + &circular.exp().sum()
            }
        ),
        op!("adaptive_avg_pool2d(x, size)", "F.adaptive_avg_pool2d", true, image(5), |t, i| {
            functional::adaptive_avg_pool2d(&t[0], (2, 3))
        }),
        op!("interpolate(x, size)", "F.interpolate (nearest)", true, image(4), |t, i| {
            let (h, w) = (t[0].shape()[2], t[0].shape()[3]);
            let up = functional::interpolate(&t[0], &[2 * h + 1, w + 1]);
            let exact =
                InterpolateOptions::size(&[h.div_ceil(2), 3]).mode(InterpolateMode::NearestExact);
            &up.square().sum() + &functional::interpolate_with(&t[0], exact).exp().sum()
        }),
        op!(
            "interpolate_with(x, size or scale, bilinear, align_corners)",
            "F.interpolate (bilinear)",
            true,
            image(4),
            |t, i| {
                let (h, w) = (t[0].shape()[2], t[0].shape()[3]);
                let bilinear = InterpolateOptions::size(&[h + 2, w.div_ceil(2)])
                    .mode(InterpolateMode::Bilinear);
                let aligned = InterpolateOptions::scale_factor(1.5)
                    .mode(InterpolateMode::Bilinear)
                    .align_corners(true);
                let a = functional::interpolate_with(&t[0], bilinear);
                let b = functional::interpolate_with(&t[0], aligned);
                &a.square().sum() + &b.tanh().sum()
            }
        ),
        op!(
            "interpolate_with(x, scale, linear)",
            "F.interpolate (linear)",
            true,
            image(4),
            |t, i| {
                let seq = t[0].flatten(0, 1);
                let linear = InterpolateOptions::scale_factor(1.7).mode(InterpolateMode::Linear);
                functional::interpolate_with(&seq, linear).square()
            }
        ),
        op!(
            "normalize_with(x, p, dim, eps)",
            "F.normalize",
            true,
            away_from_zero(nonempty(-2.0..2.0)),
            |t, i| {
                // A scalar has no dimension to normalise along: taken as one element.
                let x = if t[0].dim() == 0 { t[0].reshape(&[1]) } else { t[0].clone() };
                let dim = x.dim() as isize - 1;
                let two = functional::normalize_with(&x, NormalizeOptions::default().dim(dim));
                let one = NormalizeOptions::default().p(1.0).dim(0).eps(0.1);
                &two.square().sum() + &functional::normalize_with(&x.exp(), one).tanh().sum()
            }
        ),
        op!(
            "cosine_similarity_with(a, b, dim, eps)",
            "F.cosine_similarity",
            true,
            away_from_zero(pair(-2.0..2.0, -2.0..2.0)),
            |t, i| {
                let dims = t[0].dim().max(t[1].dim());
                if dims == 0 {
                    return (&t[0] * &t[1]).square();
                }
                // The default eps: below it the gradient passes through the norms' clamp
                // (PyTorch's choice), which is not the derivative central differences see.
                let options = CosineSimilarityOptions::default().dim(-1);
                functional::cosine_similarity_with(&t[0], &t[1], options).square()
            }
        ),
        op!(
            "pairwise_distance_with(a, b, p)",
            "F.pairwise_distance",
            true,
            pair(-2.0..2.0, -2.0..2.0),
            |t, i| {
                if t[0].dim().max(t[1].dim()) == 0 {
                    return (&t[0] * &t[1]).square();
                }
                let euclid = functional::pairwise_distance(&t[0], &t[1]);
                let options = PairwiseDistanceOptions::default().p(3.0).eps(0.1).keepdim(true);
                &euclid.sum() + &functional::pairwise_distance_with(&t[0], &t[1], options).sum()
            }
        ),
        op!("layer_norm(x, shape, w, b, eps)", "F.layer_norm", true, layer_norm_case(), |t, i| {
            let k = i[0] as usize;
            let normalized = &t[0].shape()[t[0].dim() - k..];
            let mut options = LayerNormOptions::default();
            if i[1] == 1 || i[1] == 2 {
                options = options.weight(&t[1]);
            }
            if i[1] >= 2 {
                options = options.bias(&t[2]);
            }
            functional::layer_norm_with(&t[0], normalized, options)
        }),
        op!(
            "scaled_dot_product_attention(q, k, v, mask, causal)",
            "F.scaled_dot_product_attention",
            true,
            attention_case(),
            |t, i| {
                let (l, s) = (t[0].shape()[1], t[1].shape()[1]);
                let options = match i[0] {
                    1 => AttentionOptions::default().is_causal(true),
                    2 => AttentionOptions::default().attn_mask(&t[3]).scale(0.5),
                    3 => {
                        // Some rows may mask every key (they give zeros).
                        let pattern = (0..l * s).map(|p| (p / s + p % s) % 3 != 0).collect();
                        AttentionOptions::default().attn_mask(&Tensor::from_vec(pattern, &[l, s]))
                    }
                    _ => AttentionOptions::default(),
                };
                functional::scaled_dot_product_attention_with(&t[0], &t[1], &t[2], options)
            }
        ),
        op!("group_norm(x, groups, w, b, eps)", "F.group_norm", true, group_norm_case(), |t, i| {
            let mut options = GroupNormOptions::default();
            if i[1] == 1 || i[1] == 2 {
                options = options.weight(&t[1]);
            }
            if i[1] >= 2 {
                options = options.bias(&t[2]);
            }
            functional::group_norm_with(&t[0], i[0] as usize, options)
        }),
        op!(
            "instance_norm(x, w, b, eps)",
            "F.instance_norm",
            true,
            instance_norm_case(),
            |t, i| {
                let mut options = InstanceNormOptions::default();
                if i[0] == 1 || i[0] == 2 {
                    options = options.weight(&t[1]);
                }
                if i[0] >= 2 {
                    options = options.bias(&t[2]);
                }
                functional::instance_norm_with(&t[0], options)
            }
        ),
        // Up to 5 x 5: rows of a channel shorter and longer than a vector (two kernel paths).
        op!("batch_norm(x, stats, w, b, training)", "F.batch_norm", true, image(5), |t, i| {
            let c = t[0].shape()[1];
            let stats = BatchNormStats::new(c, t[0].dtype());
            let w = Tensor::full_dtype(&[c], 1.5, t[0].dtype());
            let b = Tensor::full_dtype(&[c], -0.5, t[0].dtype());
            let train = t[0].shape()[0] * t[0].shape()[2] * t[0].shape()[3] > 1;
            let o = BatchNormOptions::default().weight(&w).bias(&b).training(train);
            functional::batch_norm_with(&t[0], Some(&stats), o)
        }),
        op!(
            "lstm_gates(gates, c)",
            "the elementwise half of torch.lstm_cell",
            true,
            lstm_case(),
            |t, i| {
                let (h, c) = functional::lstm_gates(&t[0], &t[1]);
                &h.sum() + &c.square().sum()
            }
        ),
        op!(
            "lstm_recurrence(xi, h0, c0, w_hh, b_hh)",
            "the recurrence of torch.nn.LSTM (one layer)",
            true,
            lstm_sequence_case(),
            |t, i| {
                let (out, h, c) = functional::lstm_recurrence(&t[0], &t[1], &t[2], &t[3], &t[4]);
                // Every output, weighted differently: a plain sum would hide a swapped pair.
                let w = Tensor::arange_dtype(1.0, 1.0 + out.numel() as f64, 1.0, out.dtype());
                &(&(&out.reshape(&[-1]) * &w.div_scalar(out.numel().max(1) as f64)).sum()
                    + &h.sum())
                    + &c.square().sum()
            }
        ),
        op!(
            "gru_recurrence(xi, h0, w_hh, b_hh)",
            "the recurrence of torch.nn.GRU (one layer)",
            true,
            gru_sequence_case(),
            |t, i| {
                let (out, h) = functional::gru_recurrence(&t[0], &t[1], &t[2], &t[3]);
                // Every output, weighted differently: a plain sum would hide a swapped pair.
                let w = Tensor::arange_dtype(1.0, 1.0 + out.numel() as f64, 1.0, out.dtype());
                &(&out.reshape(&[-1]) * &w.div_scalar(out.numel().max(1) as f64)).sum()
                    + &h.square().sum()
            }
        ),
        op!(
            "rnn_tanh_recurrence(xi, h0, w_hh, b_hh)",
            "the recurrence of torch.nn.RNN (one layer, tanh)",
            true,
            elman_sequence_case(false),
            |t, i| {
                let (out, h) = functional::rnn_tanh_recurrence(&t[0], &t[1], &t[2], &t[3]);
                let w = Tensor::arange_dtype(1.0, 1.0 + out.numel() as f64, 1.0, out.dtype());
                &(&out.reshape(&[-1]) * &w.div_scalar(out.numel().max(1) as f64)).sum()
                    + &h.square().sum()
            }
        ),
        op!(
            "rnn_relu_recurrence(xi, h0, w_hh, b_hh)",
            "the recurrence of torch.nn.RNN (one layer, relu)",
            true,
            elman_sequence_case(true),
            |t, i| {
                let (out, h) = functional::rnn_relu_recurrence(&t[0], &t[1], &t[2], &t[3]);
                let w = Tensor::arange_dtype(1.0, 1.0 + out.numel() as f64, 1.0, out.dtype());
                &(&out.reshape(&[-1]) * &w.div_scalar(out.numel().max(1) as f64)).sum()
                    + &h.square().sum()
            }
        ),
        op!("embedding(indices, weight)", "F.embedding", true, with_index(), |t, i| {
            let rows = t[0].shape()[0];
            let table = t[0].reshape(&[rows as isize, -1]);
            let ids: Vec<i64> = t[1].to_vec::<i64>().iter().map(|&v| v % rows as i64).collect();
            functional::embedding(&Tensor::from_vec(ids, t[1].shape()), &table)
        }),
        op!(
            "grid_sample_with(input, grid, options), affine_grid(theta, size, align_corners)",
            "F.grid_sample, F.affine_grid",
            true,
            image_grid_theta(),
            |t, i| {
                // Every mode and padding, in the image and the grid; and an affine map's
                // grid (the identity plus theta) sampled, in theta.
                let (image, grid) = (&t[0], &t[1]);
                let shape = image.shape().to_vec();
                let identity = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 0.0, 1.0, 0.0], &[1, 2, 3]);
                let theta = &t[2] + &identity.to_dtype(t[2].dtype());
                let options = GridSampleOptions::default();
                let mut total = functional::grid_sample(image, grid).square().sum();
                for (mode, padding, align) in [
                    (GridSampleMode::Bilinear, GridSamplePadding::Border, true),
                    (GridSampleMode::Bilinear, GridSamplePadding::Zeros, true),
                    (GridSampleMode::Nearest, GridSamplePadding::Zeros, false),
                    (GridSampleMode::Nearest, GridSamplePadding::Border, true),
                ] {
                    let o = options.mode(mode).padding_mode(padding).align_corners(align);
                    total =
                        &total + &functional::grid_sample_with(image, &grid.sin(), o).tanh().sum();
                }
                let warp = functional::affine_grid(&theta, &shape, false);
                let aligned = functional::affine_grid(&theta, &shape, true);
                let border = options.padding_mode(GridSamplePadding::Border).align_corners(true);
                &(&total + &functional::grid_sample(image, &warp).square().sum())
                    + &functional::grid_sample_with(image, &aligned, border).sin().sum()
            }
        ),
        op!("ctc_loss(log_probs, targets, lengths)", "F.ctc_loss", true, ctc_operands(), |t, i| {
            let n = t[0].shape()[1];
            let lengths = |part: &[i64]| part.iter().map(|&l| l as usize).collect::<Vec<_>>();
            let (inputs, targets) = (lengths(&i[1..1 + n]), lengths(&i[1 + n..]));
            let loss = CTCLoss::new().reduction(reduction(i[0]));
            functional::ctc_loss_with(&t[0], &t[1], &inputs, &targets, loss)
        }),
        op!(
            "embedding_bag_with(input, weight, options)",
            "F.embedding_bag",
            true,
            with_index(),
            |t, i| {
                // Two bags of a flat input (the first half, the rest), reduced all three
                // ways; the sum weighted per sample by entries of the table itself.
                let rows = t[0].shape()[0];
                let table = t[0].reshape(&[rows as isize, -1]);
                let ids: Vec<i64> = t[1].to_vec::<i64>().iter().map(|&v| v % rows as i64).collect();
                let n = ids.len();
                let input = Tensor::from_vec(ids, &[n]);
                let offsets = Tensor::from_vec(vec![0i64, (n / 2) as i64], &[2]);
                let picks: Vec<i64> = (0..n as i64).map(|k| k % t[0].numel() as i64).collect();
                let psw = t[0].reshape(&[-1]).index_select(0, &Tensor::from_vec(picks, &[n]));
                let bags = || EmbeddingBagOptions::default().offsets(&offsets);
                let sum = functional::embedding_bag_with(
                    &input,
                    &table,
                    bags().mode(EmbeddingBagMode::Sum).per_sample_weights(&psw),
                );
                let mean = functional::embedding_bag_with(&input, &table, bags());
                let max = functional::embedding_bag_with(
                    &input,
                    &table,
                    bags().mode(EmbeddingBagMode::Max),
                );
                &(&sum + &mean.square()) + &max.sin()
            }
        ),
    ]
}
