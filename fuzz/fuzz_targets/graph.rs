//! A graph fuzzer: the input decodes (with `arbitrary`) into a small program, a few f64
//! input tensors and a sequence of operations on them through the public API (the `try_`
//! forms, and the panicking forms only where the arguments are valid by construction).
//!
//! For every program:
//! - no operation may panic: an `Err` is a documented error, and that operation is skipped
//!   (the program goes on with the tensors it has);
//! - backward from the sum of the last tensor must not panic, and must leave every input a
//!   gradient of the input's shape (or none);
//! - if the program is *checkable* (below), `gradcheck` in f64 must pass.
//!
//! Checkable means: every input and every intermediate value is finite with magnitude at
//! most `BIG`, and every non-smooth or singular operation saw its inputs away from its kinks
//! and poles: `|x| > KINK` for relu, abs, leaky_relu, elu, norm and `where`'s condition,
//! `|a - b| > KINK` for maximum/minimum and clamp's bounds, a gap of `KINK` between the
//! largest two values for max/min/max_dim/min_dim/max_pool2d windows, `x > POLE` for log,
//! sqrt, rsqrt and non-integer powers, `|x| > POLE` for divisors and reciprocals,
//! probabilities in [POLE, 1 - POLE] for binary_cross_entropy; constant factors (scalars,
//! slopes, class weights) at most `MAX_SCALE` and exponents at most `MAX_EXPONENT` in
//! magnitude, since `0 * 1e300` is small but `1e-6 * 1e300` is not. Programs that do not qualify
//! still run forward and backward (NaN and infinity included); they are just not
//! gradchecked, because central differences are wrong there, not the gradients.
//!
//! Sizes: an operation whose output would hold more than `2^18` elements is skipped unless
//! that count overflows `usize` (then the op must return an error, which exercises the
//! overflow checks without exhausting memory), and only tensors of at most `CAP` elements,
//! `CAP` per dimension and rank 8 are kept for later operations.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tapegrad_ops::functional::{self as F, Conv2dOptions, LossOptions};
use tapegrad_ops::{Reduction, prelude::*};
use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck, no_grad};

/// Largest tensor (elements, and size of one dimension) kept for later operations.
const CAP: usize = 1024;
/// Largest output an operation may be asked to allocate (unless the count overflows).
const ALLOC_CAP: u128 = 1 << 18;
const MAX_RANK: usize = 8;
const MAX_OPS: usize = 12;
/// Distance from a kink (relu at 0, ties of max) below which a program is not gradchecked.
const KINK: f64 = 1e-3;
/// Distance from a pole or the edge of a domain (log, sqrt, 1/x) likewise.
const POLE: f64 = 0.1;
/// Largest magnitude of any value in a gradchecked program.
const BIG: f64 = 1e4;
/// Largest constant factor (mul_scalar, slopes, class weights) and exponent in a
/// gradchecked program.
const MAX_SCALE: f64 = 100.0;
const MAX_EXPONENT: f64 = 8.0;
/// Full Jacobian gradcheck up to this many input and output elements, fast mode above.
const FULL_JACOBIAN: usize = 48;
/// Steer around bugs already reported (each place says which), so that a long run finds new
/// ones. Set to false to reproduce them.
const SKIP_KNOWN_BUGS: bool = false;

/// A float: mostly finite values on a fine grid in [-4, 4), sometimes a special one.
#[derive(Clone, Copy, Debug)]
struct Val(f64);

const SPECIAL_F64: [f64; 16] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    0.0,
    1.0,
    -1.0,
    1e300,
    -1e300,
    5e-324,
    f64::MAX,
    f64::MIN_POSITIVE,
    1e-8,
    40.0,
    -40.0,
    710.0,
];

impl<'a> Arbitrary<'a> for Val {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let sel: u8 = u.arbitrary()?;
        if sel < 232 {
            let n: i16 = u.arbitrary()?;
            Ok(Val(f64::from(n) / 8192.0))
        } else {
            Ok(Val(SPECIAL_F64[usize::from(sel - 232) % SPECIAL_F64.len()]))
        }
    }
}

/// A signed dimension: mostly -4..=4, sometimes huge or far out of range.
#[derive(Clone, Copy, Debug)]
struct Dim(isize);

const SPECIAL_DIM: [isize; 16] = [
    isize::MIN,
    isize::MAX,
    isize::MIN + 1,
    -(1 << 32),
    1 << 32,
    i32::MIN as isize,
    i32::MAX as isize,
    100,
    -100,
    5,
    -5,
    8,
    -9,
    255,
    1 << 62,
    -(1 << 62),
];

impl<'a> Arbitrary<'a> for Dim {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Dim(if sel < 240 {
            isize::from(sel % 9) - 4
        } else {
            SPECIAL_DIM[usize::from(sel - 240)]
        }))
    }
}

/// A size: mostly 0..=5, sometimes huge (overflowing when multiplied or added).
#[derive(Clone, Copy, Debug)]
struct Size(usize);

const SPECIAL_SIZE: [usize; 16] = [
    usize::MAX,
    usize::MAX - 1,
    usize::MAX / 2,
    usize::MAX / 2 + 1,
    1 << 63,
    1 << 62,
    1 << 33,
    1 << 32,
    u32::MAX as usize,
    1 << 31,
    1 << 20,
    1 << 16,
    1000,
    7,
    8,
    9,
];

impl<'a> Arbitrary<'a> for Size {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Size(if sel < 240 {
            usize::from(sel % 6)
        } else {
            SPECIAL_SIZE[usize::from(sel - 240)]
        }))
    }
}

/// An int64 index or class: mostly -1..=5, sometimes huge.
#[derive(Clone, Copy, Debug)]
struct Index(i64);

const SPECIAL_INDEX: [i64; 16] = [
    i64::MIN,
    i64::MAX,
    i64::MIN + 1,
    -(1 << 32),
    1 << 32,
    i32::MIN as i64,
    i32::MAX as i64,
    -100,
    100,
    -2,
    6,
    7,
    -101,
    1 << 62,
    u32::MAX as i64,
    -(1 << 62),
];

impl<'a> Arbitrary<'a> for Index {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Index(if sel < 240 {
            i64::from(sel % 7) - 1
        } else {
            SPECIAL_INDEX[usize::from(sel - 240)]
        }))
    }
}

/// A list of at most 6 items.
#[derive(Clone, Debug)]
struct Short<T>(Vec<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Short<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=6)?;
        (0..n).map(|_| T::arbitrary(u)).collect::<arbitrary::Result<_>>().map(Short)
    }
}

/// A tensor in the program's pool, by position (modulo the pool's length).
#[derive(Clone, Copy, Debug, Arbitrary)]
struct Ref(u8);

#[derive(Clone, Copy, Debug, Arbitrary)]
enum Unary {
    Exp,
    Log,
    Log1p,
    Sqrt,
    Rsqrt,
    Square,
    Reciprocal,
    Sin,
    Cos,
    Abs,
    Tanh,
    Sigmoid,
    Relu,
    Erf,
    Silu,
    Gelu,
    GeluTanh,
    Softplus,
    Neg,
    Sum,
    Mean,
    Max,
    Min,
    Squeeze,
    Contiguous,
}

#[derive(Clone, Copy, Debug, Arbitrary)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Pow,
}

#[derive(Clone, Copy, Debug, Arbitrary)]
enum DimReduce {
    Sum,
    Mean,
    Var(u8),
    Max,
    Min,
    Logsumexp,
    Norm(u8),
    Softmax,
    LogSoftmax,
}

#[derive(Clone, Copy, Debug, Arbitrary)]
enum Red {
    Mean,
    Sum,
    None,
}

impl Red {
    fn get(self) -> Reduction {
        match self {
            Red::Mean => Reduction::Mean,
            Red::Sum => Reduction::Sum,
            Red::None => Reduction::None,
        }
    }
}

/// Int64 index values and the shape they are laid out in (values repeat cyclically, or are
/// zero when none are given).
#[derive(Clone, Debug, Arbitrary)]
struct IndexSpec {
    shape: Short<u8>,
    values: Short<Index>,
}

impl IndexSpec {
    fn tensor(&self) -> Tensor {
        let shape: Vec<usize> = self.shape.0.iter().map(|&d| usize::from(d % 5)).collect();
        let n: usize = shape.iter().product();
        let values: Vec<i64> = (0..n)
            .map(|i| {
                if self.values.0.is_empty() { 0 } else { self.values.0[i % self.values.0.len()].0 }
            })
            .collect();
        Tensor::from_vec(values, &shape)
    }

    /// The same values as a 1-d tensor.
    fn vector(&self) -> Tensor {
        let values: Vec<i64> = self.values.0.iter().map(|i| i.0).collect();
        let n = values.len();
        Tensor::from_vec(values, &[n])
    }
}

#[derive(Clone, Debug, Arbitrary)]
enum Op {
    Unary(Unary, Ref),
    LeakyRelu(Ref, Val),
    Elu(Ref, Val),
    Clamp(Ref, Option<Val>, Option<Val>),
    AddScalar(Ref, Val),
    MulScalar(Ref, Val),
    PowScalar(Ref, Val),
    Binary(Binary, Ref, Ref),
    DimReduce(DimReduce, Ref, Dim, bool),
    Matmul(Ref, Ref),
    Reshape(Ref, Short<Dim>),
    Flatten(Ref, Dim, Dim),
    SqueezeDim(Ref, Dim),
    Unsqueeze(Ref, Dim),
    Transpose(Ref, Dim, Dim),
    Permute(Ref, Short<Dim>),
    BroadcastTo(Ref, Short<Size>),
    Narrow(Ref, Dim, Size, Size),
    Slice(Ref, Dim, Size, Size, Size),
    Split(Ref, Size, Dim, u8),
    Chunk(Ref, Size, Dim, u8),
    Cat(Short<Ref>, Dim),
    Stack(Short<Ref>, Dim),
    Pad(Ref, Short<(Size, Size)>, Val),
    Repeat(Ref, Short<Size>),
    IndexSelect(Ref, Dim, IndexSpec),
    Gather(Ref, Dim, IndexSpec),
    IndexAdd(Ref, Dim, IndexSpec, Ref),
    ScatterAdd(Ref, Dim, IndexSpec, Ref),
    Where(Ref, Ref, Ref),
    Conv2d {
        x: Ref,
        w: Ref,
        bias: Option<Ref>,
        stride: (Size, Size),
        padding: (Size, Size),
        dilation: (Size, Size),
        groups: Size,
    },
    MaxPool2d {
        x: Ref,
        kernel: (Size, Size),
        stride: (Size, Size),
        padding: (Size, Size),
    },
    CrossEntropy {
        logits: Ref,
        target: IndexSpec,
        reduction: Red,
        ignore_index: Index,
        weight: Option<Short<Val>>,
    },
    NllLoss {
        log_probs: Ref,
        target: IndexSpec,
        reduction: Red,
        ignore_index: Index,
        weight: Option<Short<Val>>,
    },
    Bce {
        input: Ref,
        target: Ref,
        sigmoid_input: bool,
        sigmoid_target: bool,
        reduction: Red,
    },
    Mse(Ref, Ref, Red),
}

#[derive(Clone, Debug)]
struct Input {
    shape: Vec<usize>,
    values: Vec<f64>,
}

#[derive(Clone, Debug)]
struct Program {
    inputs: Vec<Input>,
    ops: Vec<Op>,
    seed: u64,
}

impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(1..=3)?;
        let mut inputs = Vec::with_capacity(n);
        for _ in 0..n {
            let rank = u.int_in_range(0..=4)?;
            let shape: Vec<usize> =
                (0..rank).map(|_| u.int_in_range(0..=4)).collect::<arbitrary::Result<_>>()?;
            let numel = shape.iter().product();
            let values = (0..numel)
                .map(|_| Val::arbitrary(u).map(|v| v.0))
                .collect::<arbitrary::Result<_>>()?;
            inputs.push(Input { shape, values });
        }
        let seed = u.arbitrary()?;
        let mut ops = Vec::new();
        while ops.len() < MAX_OPS && !u.is_empty() {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Program { inputs, ops, seed })
    }
}

/// Whether an operation with an output of `count` elements (`None`: more than u128 holds)
/// should run: yes when it fits the allocation cap, and when the count overflows `usize`
/// (the operation must then return an error); no in between.
fn affordable(count: Option<u128>) -> bool {
    match count {
        None => true,
        Some(c) => c <= ALLOC_CAP || c > usize::MAX as u128,
    }
}

fn product(dims: impl IntoIterator<Item = u128>) -> Option<u128> {
    dims.into_iter().try_fold(1u128, |a, d| a.checked_mul(d))
}

/// Elements of the broadcast of several shapes (ignoring incompatibility: the op checks).
fn broadcast_count(shapes: &[&[usize]]) -> Option<u128> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    product((0..rank).map(|i| {
        shapes
            .iter()
            .map(|s| if i + s.len() >= rank { s[i + s.len() - rank] as u128 } else { 1 })
            .max()
            .unwrap_or(1)
    }))
}

/// Output size of a convolution or pooling window along one axis, exactly (None: no output
/// or a zero stride; the op reports those).
fn window_out(
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<u128> {
    let span = (dilation as i128).checked_mul(kernel as i128 - 1)?.checked_add(1)?;
    let room = size as i128 + 2 * padding as i128 - span;
    if stride == 0 || room < 0 {
        return None;
    }
    Some((room / stride as i128 + 1) as u128)
}

fn values(t: &Tensor) -> Vec<f64> {
    let _g = no_grad();
    t.to_vec::<f64>()
}

/// Smallest gap between the largest two values of each group along `dim` (of a contiguous
/// row-major array), infinite when every group has one value.
fn top_gap(vals: &[f64], shape: &[usize], dim: usize) -> f64 {
    if shape.is_empty() || vals.is_empty() {
        return f64::INFINITY;
    }
    let n = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    let mut gap = f64::INFINITY;
    for o in 0..outer {
        for i in 0..inner {
            let group = (0..n).map(|j| vals[(o * n + j) * inner + i]);
            gap = gap.min(gap_of(group));
        }
    }
    gap
}

fn gap_of(values: impl Iterator<Item = f64>) -> f64 {
    let (mut a, mut b) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for v in values {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    if b == f64::NEG_INFINITY { f64::INFINITY } else { a - b }
}

fn resolve(dim: isize, rank: usize) -> Option<usize> {
    let r = rank.max(1) as isize;
    let d = if dim < 0 { dim.checked_add(r)? } else { dim };
    (0..r).contains(&d).then_some(d as usize).filter(|&d| rank > 0 || d == 0)
}

struct Run {
    pool: Vec<Tensor>,
    /// Look at values to decide whether the program is gradcheckable (only on the first run).
    analyse: bool,
    checkable: bool,
    why_not: &'static str,
}

impl Run {
    fn get(&self, r: Ref) -> &Tensor {
        &self.pool[usize::from(r.0) % self.pool.len()]
    }

    fn not_checkable(&mut self, why: &'static str) {
        if self.checkable {
            self.checkable = false;
            self.why_not = why;
        }
    }

    /// Requires `ok` of every value of `t` for the program to be checkable.
    fn require(&mut self, t: &Tensor, why: &'static str, ok: impl Fn(f64) -> bool) {
        if self.analyse && self.checkable && !values(t).into_iter().all(ok) {
            self.not_checkable(why);
        }
    }

    /// A constant factor: large ones make a function steep around a point where it is
    /// small, and central differences step into overflow (0 * 1e300 is 0, 1e-6 * 1e300 is not).
    fn scale(&mut self, s: f64) {
        if !(s.abs() <= MAX_SCALE) {
            self.not_checkable("a large constant factor");
        }
    }

    fn keep(&mut self, t: tapegrad_tape::Result<Tensor>) {
        let Ok(t) = t else { return };
        if t.numel() > CAP || t.dim() > MAX_RANK || t.shape().iter().any(|&d| d > CAP) {
            return;
        }
        self.require(&t, "an intermediate value is not finite or is large", |v| {
            v.is_finite() && v.abs() <= BIG
        });
        self.pool.push(t);
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Unary(kind, r) => {
                let x = self.get(*r).clone();
                let y = match kind {
                    Unary::Exp => x.exp(),
                    Unary::Log => {
                        self.require(&x, "log near or below 0", |v| v > POLE);
                        x.log()
                    }
                    Unary::Log1p => {
                        self.require(&x, "log1p near or below -1", |v| v > -1.0 + POLE);
                        x.log1p()
                    }
                    Unary::Sqrt => {
                        self.require(&x, "sqrt near or below 0", |v| v > POLE);
                        x.sqrt()
                    }
                    Unary::Rsqrt => {
                        self.require(&x, "rsqrt near or below 0", |v| v > POLE);
                        x.rsqrt()
                    }
                    Unary::Square => x.square(),
                    Unary::Reciprocal => {
                        self.require(&x, "reciprocal near 0", |v| v.abs() > POLE);
                        x.reciprocal()
                    }
                    Unary::Sin => x.sin(),
                    Unary::Cos => x.cos(),
                    Unary::Abs => {
                        self.require(&x, "abs at its kink", |v| v.abs() > KINK);
                        x.abs()
                    }
                    Unary::Tanh => x.tanh(),
                    Unary::Sigmoid => x.sigmoid(),
                    Unary::Relu => {
                        self.require(&x, "relu at its kink", |v| v.abs() > KINK);
                        x.relu()
                    }
                    Unary::Erf => x.erf(),
                    Unary::Silu => x.silu(),
                    Unary::Gelu => x.gelu(),
                    Unary::GeluTanh => x.gelu_tanh(),
                    Unary::Softplus => x.softplus(),
                    Unary::Neg => x.neg(),
                    Unary::Sum => x.sum(),
                    Unary::Mean => x.mean(),
                    Unary::Max | Unary::Min => {
                        // The panicking form: an empty tensor has no maximum.
                        if x.numel() == 0 {
                            return;
                        }
                        let sign = if matches!(kind, Unary::Max) { 1.0 } else { -1.0 };
                        if self.analyse && gap_of(values(&x).into_iter().map(|v| sign * v)) <= KINK
                        {
                            self.not_checkable("max/min with a tie");
                        }
                        if sign > 0.0 { x.max() } else { x.min() }
                    }
                    Unary::Squeeze => x.squeeze(),
                    Unary::Contiguous => x.contiguous(),
                };
                self.keep(Ok(y));
            }
            Op::LeakyRelu(r, slope) => {
                let x = self.get(*r).clone();
                self.scale(slope.0);
                self.require(&x, "leaky_relu at its kink", |v| v.abs() > KINK);
                self.keep(Ok(x.leaky_relu(slope.0)));
            }
            Op::Elu(r, alpha) => {
                let x = self.get(*r).clone();
                self.scale(alpha.0);
                self.require(&x, "elu at its kink", |v| v.abs() > KINK);
                self.keep(Ok(x.elu(alpha.0)));
            }
            Op::Clamp(r, lo, hi) => {
                let x = self.get(*r).clone();
                for bound in [lo, hi].into_iter().flatten() {
                    let b = bound.0;
                    self.require(&x, "clamp at a bound", |v| (v - b).abs() > KINK);
                }
                self.keep(Ok(x.clamp(lo.map(|v| v.0), hi.map(|v| v.0))));
            }
            Op::AddScalar(r, s) => {
                let x = self.get(*r).clone();
                self.keep(Ok(x.add_scalar(s.0)));
            }
            Op::MulScalar(r, s) => {
                let x = self.get(*r).clone();
                self.scale(s.0);
                self.keep(Ok(x.mul_scalar(s.0)));
            }
            Op::PowScalar(r, e) => {
                let x = self.get(*r).clone();
                let e = e.0;
                if !(e.abs() <= MAX_EXPONENT) {
                    // Also NaN: 1^NaN is 1 but its derivative is NaN.
                    self.not_checkable("a large exponent");
                }
                if e.fract() != 0.0 || !e.is_finite() {
                    self.require(&x, "non-integer power near or below 0", |v| v > POLE);
                } else if e < 0.0 {
                    self.require(&x, "negative power near 0", |v| v.abs() > POLE);
                }
                self.keep(x.try_pow(e));
            }
            Op::Binary(kind, a, b) => {
                let (a, b) = (self.get(*a).clone(), self.get(*b).clone());
                if !affordable(broadcast_count(&[a.shape(), b.shape()])) {
                    return;
                }
                let y = match kind {
                    Binary::Add => a.try_add(&b),
                    Binary::Sub => a.try_sub(&b),
                    Binary::Mul => a.try_mul(&b),
                    Binary::Div => {
                        self.require(&b, "divisor near 0", |v| v.abs() > POLE);
                        a.try_div(&b)
                    }
                    Binary::Maximum | Binary::Minimum => {
                        if self.analyse {
                            let _g = no_grad();
                            if let Ok(d) = a.try_sub(&b) {
                                self.require(&d, "maximum/minimum of near-equal values", |v| {
                                    v.abs() > KINK
                                });
                            }
                        }
                        if matches!(kind, Binary::Maximum) {
                            a.try_maximum(&b)
                        } else {
                            a.try_minimum(&b)
                        }
                    }
                    Binary::Pow => {
                        self.require(&a, "power of a base near or below 0", |v| v > POLE);
                        a.try_pow(&b)
                    }
                };
                self.keep(y);
            }
            Op::DimReduce(kind, r, dim, keepdim) => {
                let x = self.get(*r).clone();
                let (d, k) = (dim.0, *keepdim);
                let y = match kind {
                    DimReduce::Sum => x.try_sum_dim(d, k),
                    DimReduce::Mean => x.try_mean_dim(d, k),
                    DimReduce::Var(c) => x.try_var_dim(d, f64::from(c % 3), k),
                    DimReduce::Max | DimReduce::Min => {
                        let max = matches!(kind, DimReduce::Max);
                        if self.analyse
                            && let Some(rd) = resolve(d, x.dim())
                        {
                            let sign = if max { 1.0 } else { -1.0 };
                            let v: Vec<f64> = values(&x).into_iter().map(|v| sign * v).collect();
                            if top_gap(&v, x.shape(), rd.min(x.dim().saturating_sub(1))) <= KINK {
                                self.not_checkable("max_dim/min_dim with a tie");
                            }
                        }
                        let r = if max { x.try_max_dim(d, k) } else { x.try_min_dim(d, k) };
                        r.map(|(values, _indices)| values)
                    }
                    DimReduce::Logsumexp => x.try_logsumexp(d, k),
                    DimReduce::Norm(p) => {
                        let p = [1.0, 2.0, 3.0, 0.5, f64::INFINITY, 0.0, -1.0][usize::from(*p % 7)];
                        if p >= 1.0 && p.is_finite() {
                            self.require(&x, "norm near 0", |v| v.abs() > KINK);
                        } else {
                            self.not_checkable("norm with p < 1 or p = inf");
                        }
                        x.try_norm_dim(p, d, k)
                    }
                    DimReduce::Softmax => x.try_softmax(d),
                    DimReduce::LogSoftmax => x.try_log_softmax(d),
                };
                self.keep(y);
            }
            Op::Matmul(a, b) => {
                let (a, b) = (self.get(*a).clone(), self.get(*b).clone());
                let (sa, sb) = (a.shape(), b.shape());
                // Batch dimensions broadcast; the matrix dimensions give n x m.
                let batch =
                    |s: &[usize]| if s.len() > 2 { s[..s.len() - 2].to_vec() } else { vec![] };
                let n = if sa.len() >= 2 { sa[sa.len() - 2] } else { 1 } as u128;
                let m = if sb.len() >= 2 { sb[sb.len() - 1] } else { 1 } as u128;
                let count =
                    broadcast_count(&[&batch(sa), &batch(sb)]).and_then(|c| product([c, n, m]));
                if affordable(count) {
                    self.keep(a.try_matmul(&b));
                }
            }
            Op::Reshape(r, dims) => {
                let x = self.get(*r).clone();
                let dims: Vec<isize> = dims.0.iter().map(|d| d.0).collect();
                self.keep(x.try_reshape(&dims));
            }
            Op::Flatten(r, a, b) => {
                let x = self.get(*r).clone();
                self.keep(x.try_flatten(a.0, b.0));
            }
            Op::SqueezeDim(r, d) => {
                let x = self.get(*r).clone();
                self.keep(x.try_squeeze_dim(d.0));
            }
            Op::Unsqueeze(r, d) => {
                let x = self.get(*r).clone();
                self.keep(x.try_unsqueeze(d.0));
            }
            Op::Transpose(r, a, b) => {
                let x = self.get(*r).clone();
                self.keep(x.try_transpose(a.0, b.0));
            }
            Op::Permute(r, dims) => {
                let x = self.get(*r).clone();
                // KNOWN BUG (docs/FUZZING.md, crash 6): permute of a 0-d tensor with a dim
                // indexes an empty vector. Remove once it returns an error.
                if SKIP_KNOWN_BUGS && x.dim() == 0 && !dims.0.is_empty() {
                    return;
                }
                let dims: Vec<isize> = dims.0.iter().map(|d| d.0).collect();
                self.keep(x.try_permute(&dims));
            }
            Op::BroadcastTo(r, shape) => {
                // A view: no allocation whatever the size, so huge shapes are fine.
                let x = self.get(*r).clone();
                let shape: Vec<usize> = shape.0.iter().map(|s| s.0).collect();
                self.keep(x.try_broadcast_to(&shape));
            }
            Op::Narrow(r, d, start, len) => {
                let x = self.get(*r).clone();
                // KNOWN BUG (docs/FUZZING.md, crash 5): narrow accepts dim 0 of a 0-d tensor and
                // then indexes its empty shape. Remove once it returns an error.
                if SKIP_KNOWN_BUGS && x.dim() == 0 {
                    return;
                }
                self.keep(x.try_narrow(d.0, start.0, len.0));
            }
            Op::Slice(r, d, start, end, step) => {
                let x = self.get(*r).clone();
                // KNOWN BUG (docs/FUZZING.md, crash 4): slice accepts dim 0 of a 0-d tensor and
                // then indexes its empty shape. Remove once it returns an error.
                if SKIP_KNOWN_BUGS && x.dim() == 0 {
                    return;
                }
                self.keep(x.try_slice(d.0, start.0, end.0, step.0));
            }
            Op::Split(r, size, d, pick) | Op::Chunk(r, size, d, pick) => {
                let x = self.get(*r).clone();
                // Splitting into size-1 pieces of a big dimension is still at most CAP views.
                let pieces = if matches!(op, Op::Split(..)) {
                    x.try_split(size.0, d.0)
                } else {
                    x.try_chunk(size.0, d.0)
                };
                if let Ok(pieces) = pieces
                    && !pieces.is_empty()
                {
                    let i = usize::from(*pick) % pieces.len();
                    self.keep(Ok(pieces[i].clone()));
                }
            }
            Op::Cat(refs, d) | Op::Stack(refs, d) => {
                let ts: Vec<Tensor> = refs.0.iter().map(|&r| self.get(r).clone()).collect();
                let refs: Vec<&Tensor> = ts.iter().collect();
                let y = if matches!(op, Op::Cat(..)) {
                    tapegrad_ops::try_cat(&refs, d.0)
                } else {
                    tapegrad_ops::try_stack(&refs, d.0)
                };
                self.keep(y);
            }
            Op::Pad(r, pads, value) => {
                let x = self.get(*r).clone();
                let pads: Vec<(usize, usize)> = pads.0.iter().map(|(a, b)| (a.0, b.0)).collect();
                let s = x.shape();
                let count = product(s.iter().enumerate().map(|(i, &d)| {
                    // pads[0] is the last dimension's.
                    let p = pads.get(s.len() - 1 - i).map_or(0, |&(a, b)| a as u128 + b as u128);
                    d as u128 + p
                }));
                // KNOWN BUG (docs/FUZZING.md, crash 7): padding an empty tensor by amounts
                // whose padded sizes multiply past usize overflows in the copy. Remove once
                // pad handles it.
                let padded_overflow = {
                    let sizes = s.iter().enumerate().map(|(i, &d)| {
                        let p =
                            pads.get(s.len() - 1 - i).map_or(0, |&(a, b)| a as u128 + b as u128);
                        d as u128 + p
                    });
                    product(sizes.filter(|&d| d != 0)).is_none_or(|c| c > usize::MAX as u128)
                };
                if SKIP_KNOWN_BUGS && x.numel() == 0 && padded_overflow {
                    return;
                }
                if affordable(count) {
                    self.keep(x.try_pad(&pads, value.0));
                }
            }
            Op::Repeat(r, reps) => {
                let x = self.get(*r).clone();
                let reps: Vec<usize> = reps.0.iter().map(|s| s.0).collect();
                let s = x.shape();
                let count =
                    if reps.len() < s.len() {
                        Some(0) // an error
                    } else {
                        let lead = reps.len() - s.len();
                        product(reps.iter().enumerate().map(|(i, &r)| {
                            r as u128 * if i >= lead { s[i - lead] } else { 1 } as u128
                        }))
                    };
                if affordable(count) {
                    self.keep(x.try_repeat(&reps));
                }
            }
            Op::IndexSelect(r, d, index) => {
                let x = self.get(*r).clone();
                self.keep(x.try_index_select(d.0, &index.vector()));
            }
            Op::Gather(r, d, index) => {
                let x = self.get(*r).clone();
                self.keep(x.try_gather(d.0, &index.tensor()));
            }
            Op::IndexAdd(r, d, index, src) => {
                let (x, src) = (self.get(*r).clone(), self.get(*src).clone());
                self.keep(x.try_index_add(d.0, &index.vector(), &src));
            }
            Op::ScatterAdd(r, d, index, src) => {
                let (x, src) = (self.get(*r).clone(), self.get(*src).clone());
                self.keep(x.try_scatter_add(d.0, &index.tensor(), &src));
            }
            Op::Where(c, a, b) => {
                let (c, a, b) = (self.get(*c).clone(), self.get(*a).clone(), self.get(*b).clone());
                if !affordable(broadcast_count(&[c.shape(), a.shape(), b.shape()])) {
                    return;
                }
                self.require(&c, "where's condition near its switch", |v| v.abs() > KINK);
                let cond = c.gt(&Tensor::scalar(0.0f64));
                self.keep(tapegrad_ops::try_where(&cond, &a, &b));
            }
            Op::Conv2d { x, w, bias, stride, padding, dilation, groups } => {
                let (x, w) = (self.get(*x).clone(), self.get(*w).clone());
                let bias = bias.map(|b| self.get(b).clone());
                let options = Conv2dOptions {
                    stride: (stride.0.0, stride.1.0),
                    padding: (padding.0.0, padding.1.0),
                    dilation: (dilation.0.0, dilation.1.0),
                    groups: groups.0,
                };
                if let ([n, c, h, wd], [o, _, kh, kw]) = (x.shape(), w.shape()) {
                    let ho = window_out(
                        *h,
                        *kh,
                        options.stride.0,
                        options.padding.0,
                        options.dilation.0,
                    );
                    let wo = window_out(
                        *wd,
                        *kw,
                        options.stride.1,
                        options.padding.1,
                        options.dilation.1,
                    );
                    if let (Some(ho), Some(wo)) = (ho, wo) {
                        // The output, and the im2col matrix (or padded input) it may build.
                        let out = product([*n as u128, *o as u128, ho, wo]);
                        let cols =
                            product([*n as u128, *c as u128, *kh as u128, *kw as u128, ho, wo]);
                        let padded = product([
                            *n as u128,
                            *c as u128,
                            *h as u128 + 2 * options.padding.0 as u128,
                            *wd as u128 + 2 * options.padding.1 as u128,
                        ]);
                        if !(affordable(out) && affordable(cols) && affordable(padded)) {
                            return;
                        }
                    }
                }
                self.keep(F::try_conv2d(&x, &w, bias.as_ref(), options));
            }
            Op::MaxPool2d { x, kernel, stride, padding } => {
                let x = self.get(*x).clone();
                let (k, s, p) = (
                    (kernel.0.0, kernel.1.0),
                    (stride.0.0, stride.1.0),
                    (padding.0.0, padding.1.0),
                );
                if let [n, c, h, w] = *x.shape()
                    && let (Some(ho), Some(wo)) =
                        (window_out(h, k.0, s.0, p.0, 1), window_out(w, k.1, s.1, p.1, 1))
                    && !affordable(product([n as u128, c as u128, ho, wo]))
                {
                    return;
                }
                let y = F::max_pool2d_with_indices(&x, k, s, p).map(|(values, _)| values);
                if self.analyse
                    && self.checkable
                    && let Ok(y) = &y
                    && let (&[n, c, h, w], &[_, _, ho, wo]) = (x.shape(), y.shape())
                {
                    // Ties inside a window are kinks. (The op accepted the arguments, so the
                    // window arithmetic is in range; saturate anyway.)
                    let v = values(&x);
                    let mut gap = f64::INFINITY;
                    for plane in 0..n * c {
                        for i in 0..ho {
                            for j in 0..wo {
                                let (r0, c0) = (i.saturating_mul(s.0), j.saturating_mul(s.1));
                                let rows = r0.saturating_sub(p.0)
                                    ..r0.saturating_add(k.0).saturating_sub(p.0).min(h);
                                let cols = c0.saturating_sub(p.1)
                                    ..c0.saturating_add(k.1).saturating_sub(p.1).min(w);
                                let window = rows.flat_map(|a| cols.clone().map(move |b| (a, b)));
                                gap = gap
                                    .min(gap_of(window.map(|(a, b)| v[(plane * h + a) * w + b])));
                            }
                        }
                    }
                    if gap <= KINK {
                        self.not_checkable("max_pool2d window with a tie");
                    }
                }
                self.keep(y);
            }
            Op::CrossEntropy { logits: x, target, reduction, ignore_index, weight }
            | Op::NllLoss { log_probs: x, target, reduction, ignore_index, weight } => {
                let x = self.get(*x).clone();
                let weight = weight.as_ref().map(|w| {
                    let values: Vec<f64> = w.0.iter().map(|v| v.0).collect();
                    for &v in &values {
                        self.scale(v);
                    }
                    let n = values.len();
                    Tensor::from_vec(values, &[n])
                });
                let options = LossOptions {
                    reduction: reduction.get(),
                    ignore_index: ignore_index.0,
                    weight,
                };
                let target = target.tensor();
                let y = if matches!(op, Op::CrossEntropy { .. }) {
                    F::cross_entropy_with(&x, &target, &options)
                } else {
                    F::nll_loss_with(&x, &target, &options)
                };
                self.keep(y);
            }
            Op::Bce { input, target, sigmoid_input, sigmoid_target, reduction } => {
                let (mut p, mut y) = (self.get(*input).clone(), self.get(*target).clone());
                if !affordable(broadcast_count(&[p.shape(), y.shape()])) {
                    return;
                }
                if *sigmoid_input {
                    p = p.sigmoid();
                }
                if *sigmoid_target {
                    y = y.sigmoid();
                }
                // Near 0 and 1 a perturbation can leave [0, 1], which is an error.
                self.require(&p, "binary_cross_entropy input near 0 or 1", |v| {
                    (POLE..=1.0 - POLE).contains(&v)
                });
                self.require(&y, "binary_cross_entropy target near 0 or 1", |v| {
                    (POLE..=1.0 - POLE).contains(&v)
                });
                self.keep(F::try_binary_cross_entropy(&p, &y, reduction.get()));
            }
            Op::Mse(a, b, reduction) => {
                let (a, b) = (self.get(*a).clone(), self.get(*b).clone());
                if !affordable(broadcast_count(&[a.shape(), b.shape()])) {
                    return;
                }
                // mse_loss_with panics on shapes that do not broadcast; check them first.
                if a.try_sub(&b).is_ok() {
                    self.keep(Ok(F::mse_loss_with(&a, &b, reduction.get())));
                }
            }
        }
    }
}

/// Runs the program on `inputs`; returns the last tensor computed (or the last input) and,
/// when `analyse`, why the program cannot be gradchecked.
fn run(program: &Program, inputs: &[Tensor], analyse: bool) -> (Tensor, Option<&'static str>) {
    let mut run = Run { pool: inputs.to_vec(), analyse, checkable: true, why_not: "" };
    for x in inputs {
        run.require(x, "an input is not finite or is large", |v| v.is_finite() && v.abs() <= BIG);
    }
    for op in &program.ops {
        run.step(op);
    }
    let out = run.pool.pop().expect("the pool holds the inputs");
    (out, (!run.checkable).then_some(run.why_not))
}

fn leaves(program: &Program) -> Vec<Tensor> {
    program
        .inputs
        .iter()
        .map(|i| Tensor::from_vec(i.values.clone(), &i.shape).requires_grad())
        .collect()
}

/// With `TAPEGRAD_FUZZ_STATS` set, how many programs ran and how many were gradchecked
/// (printed every 1024 programs; e.g. over a corpus with `-runs=0`).
fn count(gradchecked: bool, full: bool) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static COUNTS: [AtomicUsize; 3] =
        [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("TAPEGRAD_FUZZ_STATS").is_some()) {
        return;
    }
    let runs = COUNTS[0].fetch_add(1, Relaxed) + 1;
    COUNTS[1].fetch_add(usize::from(gradchecked), Relaxed);
    COUNTS[2].fetch_add(usize::from(full), Relaxed);
    if runs % 1024 == 0 {
        eprintln!(
            "graph: {runs} programs, {} gradchecked ({} full Jacobian)",
            COUNTS[1].load(Relaxed),
            COUNTS[2].load(Relaxed)
        );
    }
}

fuzz_target!(|program: Program| {
    let inputs = leaves(&program);
    let (out, why_not) = run(&program, &inputs, true);

    // Backward through whatever the program computed, NaN and all.
    if out.tracks_grad() {
        out.sum().try_backward().expect("backward from a scalar of a tracked graph");
        for (i, x) in inputs.iter().enumerate() {
            if let Some(g) = x.grad() {
                assert_eq!(
                    g.shape(),
                    x.shape(),
                    "gradient of input {i} has the wrong shape\n{program:#?}"
                );
            }
        }
    }
    drop(out);
    if why_not.is_some() {
        count(false, false);
        return;
    }

    let in_numel: usize = inputs.iter().map(|x| x.numel()).sum();
    let out_numel = run(&program, &inputs, false).0.numel();
    let options = GradcheckOptions {
        fast_mode: in_numel > FULL_JACOBIAN || out_numel > FULL_JACOBIAN,
        seed: program.seed,
        ..Default::default()
    };
    let fresh = leaves(&program);
    let report = gradcheck(|xs: &[Tensor]| run(&program, xs, false).0, &fresh, &options)
        .expect("gradcheck of f64 inputs that require gradients");
    assert!(report.passed, "{report}\n{program:#?}");
    count(true, !options.fast_mode);
});
