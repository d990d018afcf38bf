//! Normalisation and embedding lookups. Batch norm with running statistics and embeddings
//! are composed from recorded ops (so their backward, including the second-order one, comes
//! from the pieces); layer norm and batch norm with the batch's statistics are one recorded
//! op over a kernel each, and group norm likewise. When a rule must be differentiated,
//! layer norm's input gradient is one recorded op again (`layer_norm_backward`, whose own
//! rules are a kernel pass or that op), and group norm's and batch norm's the same op on
//! their groups or channels as rows.

use std::panic::Location;

use tapegrad_kernels::{batch_norm, group_norm, layer_norm};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Element, Error, InputGrads, Result, Storage, Tensor, ensure_float,
    is_grad_enabled, no_grad, record_with_tangent,
};

use crate::options::setters;
use crate::{reduce, shape, unary};

/// Layer normalisation over the trailing dimensions `normalized_shape`, with optional
/// elementwise affine `weight` and `bias` of that shape.
#[track_caller]
pub(crate) fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("layer_norm", x, location)?;
    let k = normalized_shape.len();
    if k == 0 || k > x.dim() || &x.shape()[x.dim() - k..] != normalized_shape {
        return Err(Error::Shape {
            op: "layer_norm",
            message: format!(
                "normalized shape {normalized_shape:?} is not the trailing shape of input {:?}",
                x.shape()
            ),
            location,
        });
    }
    same_dtype("layer_norm", x, &[weight, bias], location)?;
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t
            && t.shape() != normalized_shape
        {
            return Err(Error::Shape {
                op: "layer_norm",
                message: format!("{name} has shape {:?}, expected {normalized_shape:?}", t.shape()),
                location,
            });
        }
    }
    let d: usize = normalized_shape.iter().product();
    let rows = x.numel() / d.max(1);
    let xs = x.contiguous_storage();
    let (ws, bs) = (weight.map(Tensor::contiguous_storage), bias.map(Tensor::contiguous_storage));
    /// The output, and each row's mean and inverse deviation, as tensors.
    fn forward<T: Element>(
        x: &Storage,
        (w, b): (Option<&Storage>, Option<&Storage>),
        shape: &[usize],
        sizes: (usize, usize),
        eps: f64,
    ) -> [Tensor; 3] {
        let eps = T::from_f64(eps);
        let inverse_deviation = |var: T| T::ONE / (var + eps).sqrt();
        let (y, mean, invstd) =
            layer_norm::forward(slice(x), sizes, w.map(slice), b.map(slice), inverse_deviation);
        [
            Tensor::from_vec(y, shape),
            Tensor::from_vec(mean, &[sizes.0]),
            Tensor::from_vec(invstd, &[sizes.0]),
        ]
    }
    let affine = (ws.as_ref(), bs.as_ref());
    let [value, mean, invstd] = match x.dtype() {
        DType::F32 => forward::<f32>(&xs, affine, x.shape(), (rows, d), eps),
        DType::F64 => forward::<f64>(&xs, affine, x.shape(), (rows, d), eps),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    };
    let inputs: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    let rows = Rows { mean, invstd, normalized_shape: normalized_shape.to_vec(), eps };
    let make_backward = || {
        let rows = rows.clone();
        affine_backward(x, weight, bias.is_some(), move |g, x, w, parameters| {
            if is_grad_enabled() {
                layer_norm_grad_recorded(g, x, w, &rows, parameters)
            } else {
                layer_norm_grad_fused(g, x, w, &rows, parameters)
            }
        })
    };
    Ok(record_with_tangent("layer_norm", location, &inputs, value, make_backward, |ctx| {
        layer_norm_tangent(ctx, (x, weight), &rows)
    }))
}

/// What the rules of a [`layer_norm`] need besides its tensors: each row's mean and inverse
/// deviation (values from the forward pass, recorded nowhere: the rules that depend on them
/// through `x` say how themselves), the normalised shape and eps.
#[derive(Clone)]
struct Rows {
    mean: Tensor,
    invstd: Tensor,
    normalized_shape: Vec<usize>,
    eps: f64,
}

impl Rows {
    /// `[rows, d]`: the shape of `x` as the kernels see it.
    fn matrix(&self) -> [usize; 2] {
        [self.mean.numel(), self.normalized_shape.iter().product()]
    }

    /// `t` (of the input's shape) summed over its rows, in the normalised shape.
    fn sum_rows(&self, t: &Tensor) -> Tensor {
        let sums = reduce::sum_dim(&shape::reshape_to(t, &self.matrix()), 0, false);
        shape::reshape_to(&sums.expect("2-D rows"), &self.normalized_shape)
    }
}

/// The gradients of a normalisation's input, weight and bias; the last two `None` where
/// they were not asked for.
type NormGrads = (Tensor, Option<Tensor>, Option<Tensor>);

/// The backward of a normalisation of `x` with an optional affine `weight` and bias (its
/// inputs `[x, weight?, bias?]`): saves `x` and the weight and runs `rule(g, x, weight,
/// parameters)`, `parameters` telling whether the weight or the bias needs a gradient.
fn affine_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    has_bias: bool,
    rule: impl Fn(&Tensor, &Tensor, Option<&Tensor>, bool) -> NormGrads + 'static,
) -> Backward {
    let has_weight = weight.is_some();
    let backward = Backward::new(move |ctx| {
        let (x, w) = (ctx.saved(0), has_weight.then(|| ctx.saved(1)));
        let bias_input = if has_weight { 2 } else { 1 };
        let parameters = (has_weight && ctx.needs_input_grad(1))
            || (has_bias && ctx.needs_input_grad(bias_input));
        let (dx, dw, db) = rule(ctx.grad(), x, w, parameters);
        let mut grads: InputGrads = smallvec![ctx.needs_input_grad(0).then_some(dx)];
        if has_weight {
            grads.push(ctx.needs_input_grad(1).then_some(dw).flatten());
        }
        if has_bias {
            grads.push(ctx.needs_input_grad(bias_input).then_some(db).flatten());
        }
        grads
    })
    .save(x);
    match weight {
        Some(w) => backward.save(w),
        None => backward,
    }
}

/// The gradients of [`layer_norm`] in one kernel pass (nothing recorded); those of the
/// weight and bias only with `parameters`.
fn layer_norm_grad_fused(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    rows: &Rows,
    parameters: bool,
) -> NormGrads {
    let (gs, xs) = (g.contiguous_storage(), x.contiguous_storage());
    let (ms, is) = (rows.mean.contiguous_storage(), rows.invstd.contiguous_storage());
    let ws = weight.map(Tensor::contiguous_storage);
    let [r, d] = rows.matrix();
    let (sizes, normalized_shape) = ((r, d), &rows.normalized_shape[..]);
    fn run<T: Element>(
        g: &Storage,
        x: &Storage,
        (m, i): (&Storage, &Storage),
        w: Option<&Storage>,
        sizes: (usize, usize),
        parameters: bool,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (g, x, m, i) = (slice(g), slice(x), slice(m), slice(i));
        layer_norm::backward(g, x, sizes, m, i, w.map(slice), parameters)
    }
    let shape = x.shape();
    macro_rules! tensors {
        ($t:ty) => {{
            let (dx, dw, db) = run::<$t>(&gs, &xs, (&ms, &is), ws.as_ref(), sizes, parameters);
            let per_element =
                |v: Vec<$t>| parameters.then(|| Tensor::from_vec(v, normalized_shape));
            (Tensor::from_vec(dx, shape), per_element(dw), per_element(db))
        }};
    }
    match x.dtype() {
        DType::F32 => tensors!(f32),
        DType::F64 => tensors!(f64),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    }
}

/// `x` (shaped `[rows, d]` for the `d` values of `normalized_shape`) standardised per row
/// with recorded ops, and its inverse deviations (`[rows, 1]`).
fn row_standardized(x: &Tensor, d: usize, eps: f64) -> (Tensor, Tensor) {
    let flat = shape::reshape_to(x, &[x.numel() / d.max(1), d]);
    let mean = reduce::mean_dim(&flat, -1, true).expect("2-D rows");
    let centered = &flat - &mean;
    let var = reduce::mean_dim(&unary::square(&centered), -1, true).expect("2-D rows");
    let invstd = unary::rsqrt(&var.add_scalar(eps));
    (&centered * &invstd, invstd)
}

/// The gradients of [`layer_norm`] as recorded ops, so that they can be differentiated
/// again: the input's as one op ([`layer_norm_backward`]); with `parameters`, `dweight =
/// sum_rows(g xhat)` and `dbias = sum_rows(g)`, `xhat` being the layer norm of `x` without
/// affine parameters (one op again).
fn layer_norm_grad_recorded(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    rows: &Rows,
    parameters: bool,
) -> NormGrads {
    let dx = layer_norm_backward(g, x, weight, rows);
    if !parameters {
        return (dx, None, None);
    }
    let xhat = layer_norm(x, &rows.normalized_shape, None, None, rows.eps)
        .expect("the forward pass checked the shapes");
    (dx, Some(rows.sum_rows(&(g * &xhat))), Some(rows.sum_rows(g)))
}

/// The input gradient of [`layer_norm`], `dx = invstd (h - mean(h) - xhat mean(h xhat))` per
/// row with `h = g weight`, as one recorded op of `g`, `x` and the weight (PyTorch's
/// `native_layer_norm_backward`): one kernel pass. It is linear in `g` and in the weight,
/// `dx = S (g weight)` with `S` symmetric, so its rules for them are this op again; for
/// `x`, [`layer_norm_second`].
fn layer_norm_backward(g: &Tensor, x: &Tensor, weight: Option<&Tensor>, rows: &Rows) -> Tensor {
    let value = layer_norm_grad_fused(g, x, weight, rows, false).0;
    let inputs: Vec<&Tensor> = [Some(g), Some(x), weight].into_iter().flatten().collect();
    let make_backward = || {
        let rows = rows.clone();
        let has_weight = weight.is_some();
        let backward = Backward::new(move |ctx| {
            let (g, x, v) = (ctx.saved(0), ctx.saved(1), ctx.grad());
            let w = has_weight.then(|| ctx.saved(2));
            let needs_weight = has_weight && ctx.needs_input_grad(2);
            // S v, for the gradients of g and of the weight.
            let s_v = (ctx.needs_input_grad(0) || needs_weight)
                .then(|| layer_norm_backward(v, x, None, &rows));
            let mut grads: InputGrads = smallvec![
                ctx.needs_input_grad(0).then(|| match (&s_v, w) {
                    (Some(s_v), Some(w)) => s_v * w,
                    (s_v, _) => s_v.clone().expect("computed when needed"),
                }),
                ctx.needs_input_grad(1).then(|| layer_norm_second(g, x, w, v, &rows)),
            ];
            if has_weight {
                grads
                    .push(needs_weight.then(|| {
                        rows.sum_rows(&(g * s_v.as_ref().expect("computed when needed")))
                    }));
            }
            grads
        })
        .save(g)
        .save(x);
        match weight {
            Some(w) => backward.save(w),
            None => backward,
        }
    };
    record_with_tangent(
        "layer_norm_backward",
        Location::caller(),
        &inputs,
        value,
        make_backward,
        |ctx| {
            ctx.sum(|i, t| match i {
                0 => layer_norm_backward(t, x, weight, rows),
                1 => layer_norm_second(g, x, weight, t, rows),
                _ => layer_norm_backward(&(g * t), x, None, rows),
            })
        },
    )
}

/// The rule of [`layer_norm_backward`] for `x`: the gradient in `x` of `<v, dx>`, which is
/// also `dx`'s derivative along `v` (the Hessian of `<g, y>` in `x` is symmetric). Per row,
/// with `a = mean(h)`, `b = mean(h xhat)`, `mv = mean(v)`, `mvx = mean(v xhat)`, `mvh =
/// mean(v h)`: `-invstd² ((h - a) mvx + (v - mv) b + xhat (mvh - a mv - 3 b mvx))`. One
/// kernel pass while nothing records it; recorded ops (the statistics recomputed from `x`)
/// for a third derivative.
fn layer_norm_second(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    v: &Tensor,
    rows: &Rows,
) -> Tensor {
    if !is_grad_enabled() && g.dtype() == x.dtype() && v.dtype() == x.dtype() {
        let (gs, xs, vs) = (g.contiguous_storage(), x.contiguous_storage(), v.contiguous_storage());
        let (ms, is) = (rows.mean.contiguous_storage(), rows.invstd.contiguous_storage());
        let ws = weight.map(Tensor::contiguous_storage);
        let [r, d] = rows.matrix();
        fn run<T: Element>(
            (g, x, v): (&Storage, &Storage, &Storage),
            (m, i): (&Storage, &Storage),
            w: Option<&Storage>,
            sizes: (usize, usize),
        ) -> Vec<T> {
            let (g, x, v, m, i) = (slice(g), slice(x), slice(v), slice(m), slice(i));
            layer_norm::double_backward((g, x, v), sizes, (m, i), w.map(slice))
        }
        let (tensors, stats) = ((&gs, &xs, &vs), (&ms, &is));
        return match x.dtype() {
            DType::F32 => {
                Tensor::from_vec(run::<f32>(tensors, stats, ws.as_ref(), (r, d)), x.shape())
            }
            DType::F64 => {
                Tensor::from_vec(run::<f64>(tensors, stats, ws.as_ref(), (r, d)), x.shape())
            }
            DType::I64 | DType::Bool => unreachable!("float checked"),
        };
    }
    let [_, d] = rows.matrix();
    let (xhat, invstd) = row_standardized(x, d, rows.eps);
    let flat = |t: &Tensor| shape::reshape_to(t, xhat.shape());
    let (g, v) = (flat(g), flat(v));
    let h = match weight {
        Some(w) => &g * &shape::reshape_to(w, &[d]),
        None => g,
    };
    let mean = |t: &Tensor| reduce::mean_dim(t, -1, true).expect("2-D rows");
    let (a, b) = (mean(&h), mean(&(&h * &xhat)));
    let (mv, mvx, mvh) = (mean(&v), mean(&(&v * &xhat)), mean(&(&v * &h)));
    let coefficient = &(&mvh - &(&a * &mv)) - &(&(&b * &mvx) * 3.0);
    let sum = &(&(&(&h - &a) * &mvx) + &(&(&v - &mv) * &b)) + &(&xhat * &coefficient);
    let second = &-&unary::square(&invstd) * &sum;
    shape::reshape_to(&second, x.shape())
}

/// The tangent of layer normalisation. Per row, the Jacobian in `x` is `diag(weight) S`
/// with `S = invstd (I - 1 1ᵀ/d - x̂ x̂ᵀ/d)` symmetric, so `S v` is the backward rule's
/// (without weight), scaled by the weight; the output `x̂ weight + bias` is linear in the
/// weight and bias.
fn layer_norm_tangent(
    ctx: &tapegrad_tape::TangentCtx<'_>,
    (x, weight): (&Tensor, Option<&Tensor>),
    rows: &Rows,
) -> Tensor {
    ctx.sum(|i, v| match i {
        0 => {
            let s_v = layer_norm_backward(v, x, None, rows);
            match weight {
                Some(w) => &s_v * w,
                None => s_v,
            }
        }
        1 if weight.is_some() => {
            let xhat = layer_norm(x, &rows.normalized_shape, None, None, rows.eps);
            &xhat.expect("the forward pass checked the shapes") * v
        }
        _ => v.clone(), // the bias, broadcast along the leading dimensions
    })
}

/// Group normalisation of `[N, C, ...]`: the channels split into `num_groups` groups, each
/// group of each sample standardised over its channels and positions, then an optional
/// per-channel `weight` and `bias` (`[C]`); one recorded op over tapegrad-kernels'
/// `group_norm`, its rule under `create_graph` layer norm's on the groups as rows.
#[track_caller]
pub(crate) fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    normalize_groups("group_norm", x, num_groups, weight, bias, eps)
}

/// Instance normalisation of `[N, C, ...]`: each channel of each sample standardised over
/// its positions (group norm with a group per channel), then an optional per-channel
/// `weight` and `bias`. PyTorch's `F.instance_norm` without running statistics.
#[track_caller]
pub(crate) fn instance_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    let positions = x.shape().get(2..).map_or(0, |s| s.iter().product::<usize>());
    if x.dim() < 3 || positions == 1 {
        return Err(Error::Shape {
            op: "instance_norm",
            message: format!(
                "expects input [N, C, ...] with more than one position per channel, got {:?}",
                x.shape()
            ),
            location,
        });
    }
    if x.numel() == 0 {
        // Nothing to normalise (PyTorch returns the empty input's shape too).
        ensure_float("instance_norm", x, location)?;
        return Ok(x.clone());
    }
    normalize_groups("instance_norm", x, x.shape()[1], weight, bias, eps)
}

/// Group norm under the name of the op the caller offers (`group_norm`, `instance_norm`).
#[track_caller]
fn normalize_groups(
    op: &'static str,
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float(op, x, location)?;
    let shape_error = |message: String| Error::Shape { op, message, location };
    if x.dim() < 2 {
        return Err(shape_error(format!("expects input [N, C, ...], got {:?}", x.shape())));
    }
    let c = x.shape()[1];
    if num_groups == 0 || !c.is_multiple_of(num_groups) {
        return Err(shape_error(format!(
            "{c} channels do not split into {num_groups} groups (input {:?})",
            x.shape()
        )));
    }
    same_dtype(op, x, &[weight, bias], location)?;
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t.filter(|t| t.shape() != [c]) {
            return Err(shape_error(format!("{name} has shape {:?}, expected [{c}]", t.shape())));
        }
    }
    let sizes = group_norm::Groups {
        n: x.shape()[0],
        c,
        hw: x.numel() / (x.shape()[0] * c).max(1),
        groups: num_groups,
    };
    let xs = x.contiguous_storage();
    let (ws, bs) = (weight.map(Tensor::contiguous_storage), bias.map(Tensor::contiguous_storage));
    /// The output, and each group's mean and inverse deviation, as tensors.
    fn forward<T: Element>(
        x: &Storage,
        (w, b): (Option<&Storage>, Option<&Storage>),
        shape: &[usize],
        sizes: group_norm::Groups,
        eps: f64,
    ) -> [Tensor; 3] {
        let eps = T::from_f64(eps);
        let inverse_deviation = |var: T| T::ONE / (var + eps).sqrt();
        let (y, mean, invstd) =
            group_norm::forward(slice(x), sizes, w.map(slice), b.map(slice), inverse_deviation);
        let rows = [sizes.n * sizes.groups];
        [Tensor::from_vec(y, shape), Tensor::from_vec(mean, &rows), Tensor::from_vec(invstd, &rows)]
    }
    let affine = (ws.as_ref(), bs.as_ref());
    let [value, mean, invstd] = match x.dtype() {
        DType::F32 => forward::<f32>(&xs, affine, x.shape(), sizes, eps),
        DType::F64 => forward::<f64>(&xs, affine, x.shape(), sizes, eps),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    };
    let inputs: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    // Each group of each sample is a row of `[N * groups, d]`, standardised as layer norm
    // standardises a row: the rules under `create_graph` are layer norm's on that view.
    let d = x.numel() / (sizes.n * num_groups).max(1);
    let rows = Rows { mean, invstd, normalized_shape: vec![d], eps };
    let make_backward = || {
        let rows = rows.clone();
        affine_backward(x, weight, bias.is_some(), move |g, x, w, parameters| {
            if is_grad_enabled() {
                group_norm_grad_recorded(g, x, w, &rows, parameters)
            } else {
                group_norm_grad_fused(g, x, w, (&rows.mean, &rows.invstd), sizes, parameters)
            }
        })
    };
    Ok(record_with_tangent(op, location, &inputs, value, make_backward, |ctx| {
        group_norm_tangent(ctx, (x, weight), &rows)
    }))
}

/// The gradients of [`group_norm`] in two kernel passes (nothing recorded); those of the
/// weight and bias only with `parameters`.
fn group_norm_grad_fused(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    (mean, invstd): (&Tensor, &Tensor),
    sizes: group_norm::Groups,
    parameters: bool,
) -> NormGrads {
    let (gs, xs) = (g.contiguous_storage(), x.contiguous_storage());
    let (ms, is) = (mean.contiguous_storage(), invstd.contiguous_storage());
    let ws = weight.map(Tensor::contiguous_storage);
    fn run<T: Element>(
        g: &Storage,
        x: &Storage,
        (m, i): (&Storage, &Storage),
        w: Option<&Storage>,
        sizes: group_norm::Groups,
        parameters: bool,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (g, x, m, i) = (slice(g), slice(x), slice(m), slice(i));
        group_norm::backward(g, x, sizes, m, i, w.map(slice), parameters)
    }
    let shape = x.shape();
    macro_rules! tensors {
        ($t:ty) => {{
            let (dx, dw, db) = run::<$t>(&gs, &xs, (&ms, &is), ws.as_ref(), sizes, parameters);
            let per_channel = |v: Vec<$t>| parameters.then(|| Tensor::from_vec(v, &[sizes.c]));
            (Tensor::from_vec(dx, shape), per_channel(dw), per_channel(db))
        }};
    }
    match x.dtype() {
        DType::F32 => tensors!(f32),
        DType::F64 => tensors!(f64),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    }
}

/// `[C]` viewed per channel of `x` (`[1, C, 1, ...]`).
fn channel_view(t: &Tensor, x: &Tensor) -> Tensor {
    let mut shape = vec![1; x.dim()];
    shape[1] = x.shape()[1];
    shape::reshape_to(t, &shape)
}

/// `x` standardised per group, in `x`'s shape: layer norm without affine parameters on
/// the rows of `rows` (one recorded op).
fn group_standardized(x: &Tensor, rows: &Rows) -> Tensor {
    let flat = shape::reshape_to(x, &rows.matrix());
    let xhat = layer_norm(&flat, &rows.normalized_shape, None, None, rows.eps);
    shape::reshape_to(&xhat.expect("the forward pass checked the shapes"), x.shape())
}

/// `S (g weight[ch])`, the input gradient of [`group_norm`]: [`layer_norm_backward`] on the
/// rows of `rows`, of `g` scaled per channel.
fn group_norm_input_grad(g: &Tensor, x: &Tensor, weight: Option<&Tensor>, rows: &Rows) -> Tensor {
    let h = match weight {
        Some(w) => g * &channel_view(w, x),
        None => g.clone(),
    };
    let flat = |t: &Tensor| shape::reshape_to(t, &rows.matrix());
    shape::reshape_to(&layer_norm_backward(&flat(&h), &flat(x), None, rows), x.shape())
}

/// The gradients of [`group_norm`] as recorded ops, so that they can be differentiated
/// again: the input's as [`group_norm_input_grad`]; with `parameters`, `dweight[ch] = sum(g
/// xhat)` and `dbias[ch] = sum(g)` over the channel's values in every sample.
fn group_norm_grad_recorded(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    rows: &Rows,
    parameters: bool,
) -> NormGrads {
    let dx = group_norm_input_grad(g, x, weight, rows);
    if !parameters {
        return (dx, None, None);
    }
    let c = x.shape()[1];
    let mut channel_shape = vec![1; x.dim()];
    channel_shape[1] = c;
    let per_channel = |t: &Tensor| shape::reshape_to(&t.sum_to_shape(&channel_shape), &[c]);
    let xhat = group_standardized(x, rows);
    (dx, Some(per_channel(&(g * &xhat))), Some(per_channel(g)))
}

/// The tangent of group normalisation: per group the Jacobian in `x` is `diag(weight[ch])
/// S` with `S` the symmetric Jacobian of standardising the group (the backward rule's
/// without a weight); the output `xhat weight + bias` is linear in the weight and bias.
fn group_norm_tangent(
    ctx: &tapegrad_tape::TangentCtx<'_>,
    (x, weight): (&Tensor, Option<&Tensor>),
    rows: &Rows,
) -> Tensor {
    ctx.sum(|i, v| match i {
        0 => {
            let s_v = group_norm_input_grad(v, x, None, rows);
            match weight {
                Some(w) => &s_v * &channel_view(w, x),
                None => s_v,
            }
        }
        1 if weight.is_some() => &group_standardized(x, rows) * &channel_view(v, x),
        _ => channel_view(v, x), // the bias
    })
}

/// Running statistics of batch normalisation, updated in place during training.
///
/// ```
/// use tapegrad_ops::functional::BatchNormStats;
/// let stats = BatchNormStats::new(3, tapegrad_tape::DType::F32);
/// assert_eq!(stats.running_var.to_vec::<f32>(), vec![1.0; 3]);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNormStats {
    /// Per-channel mean, starting at 0.
    pub running_mean: Tensor,
    /// Per-channel (unbiased) variance, starting at 1.
    pub running_var: Tensor,
}

impl BatchNormStats {
    /// Fresh statistics for `channels` channels.
    ///
    /// ```
    /// use tapegrad_ops::{BatchNormOptions, functional::{BatchNormStats, batch_norm_with}};
    /// use tapegrad_tape::{DType, Tensor};
    /// let stats = BatchNormStats::new(2, DType::F64);
    /// assert_eq!(stats.running_mean.to_vec::<f64>(), vec![0.0, 0.0]);
    /// // Mean 0 and variance 1: in evaluation (with eps 0) the input passes unchanged.
    /// let x = Tensor::from_vec(vec![1.0f64, -2.0], &[1, 2]);
    /// assert_eq!(
    ///     batch_norm_with(&x, Some(&stats), BatchNormOptions::default().eps(0.0)).to_vec::<f64>(),
    ///     vec![1.0, -2.0]
    /// );
    /// ```
    pub fn new(channels: usize, dtype: DType) -> Self {
        BatchNormStats {
            running_mean: Tensor::zeros_dtype(&[channels], dtype),
            running_var: Tensor::ones_dtype(&[channels], dtype),
        }
    }
}

/// Batch normalisation of `[N, C, ...]` over every dimension but the channels. In training
/// it normalises with the batch statistics and moves `stats` toward them by `momentum`
/// (PyTorch's convention: `new = (1 - momentum) old + momentum batch`, unbiased variance);
/// in evaluation it uses `stats`.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub(crate) fn batch_norm(
    x: &Tensor,
    stats: Option<&BatchNormStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("batch_norm", x, location)?;
    if x.dim() < 2 {
        return Err(Error::Shape {
            op: "batch_norm",
            message: format!("expects input [N, C, ...], got {:?}", x.shape()),
            location,
        });
    }
    let c = x.shape()[1];
    let bad = |what: &str, t: &Tensor| Error::Shape {
        op: "batch_norm",
        message: format!("{what} has shape {:?}, expected [{c}]", t.shape()),
        location,
    };
    let running = stats.map(|s| [Some(&s.running_mean), Some(&s.running_var)]);
    same_dtype("batch_norm", x, &[[weight, bias], running.unwrap_or_default()].concat(), location)?;
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t.filter(|t| t.shape() != [c]) {
            return Err(bad(name, t));
        }
    }
    if let Some(s) = stats {
        for (name, t) in [("running_mean", &s.running_mean), ("running_var", &s.running_var)] {
            if t.shape() != [c] {
                return Err(bad(name, t));
            }
        }
    }
    // Without running statistics to use, the batch's own (PyTorch does the same in eval
    // mode when there are none).
    let Some(running) = stats.filter(|_| !training) else {
        if training && x.numel() / c.max(1) <= 1 {
            return Err(Error::InvalidArgument {
                op: "batch_norm",
                message: format!(
                    "needs more than one value per channel in training, got input {:?}",
                    x.shape()
                ),
                location,
            });
        }
        return Ok(batch_norm_batch_stats(x, stats, weight, bias, momentum, eps));
    };
    let mut bshape = vec![1; x.dim()];
    bshape[1] = c;
    let per_channel = |t: &Tensor| shape::reshape_to(t, &bshape);
    let (mean, var) = (running.running_mean.detach(), running.running_var.detach());
    // y = x scale + shift with per-channel scale = invstd weight and shift = bias - mean
    // scale (PyTorch's CPU inference form): two full-size ops, the rest on [C].
    let invstd = unary::rsqrt(&var.add_scalar(eps));
    let scale = match weight {
        Some(w) => &invstd * w,
        None => invstd,
    };
    let shift = match bias {
        Some(b) => b - &(&mean * &scale),
        None => -&(&mean * &scale),
    };
    Ok(&(x * &per_channel(&scale)) + &per_channel(&shift))
}

/// Batch normalisation with the batch's own statistics, as one recorded op: the
/// statistics, the output and (in a plain backward) the gradient each in one kernel pass
/// (tapegrad-kernels' `batch_norm`), where the composed form takes some ten full-size ops
/// each way. Under `create_graph` the rule is layer norm's on the channels as rows
/// ([`batch_norm_grad_recorded`]), so it can be differentiated again. `stats`, if given,
/// gets the running averages.
#[track_caller]
fn batch_norm_batch_stats(
    x: &Tensor,
    stats: Option<&BatchNormStats>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    momentum: f64,
    eps: f64,
) -> Tensor {
    let location = Location::caller();
    let c = x.shape()[1];
    let sizes = (x.shape()[0], c, x.numel() / (x.shape()[0] * c).max(1));
    let count = sizes.0 * sizes.2;
    let xs = x.contiguous_storage();
    let (ws, bs) = (weight.map(Tensor::contiguous_storage), bias.map(Tensor::contiguous_storage));
    /// The output, mean, variance and inverse deviation, as tensors.
    fn forward<T: Element>(
        x: &Storage,
        (w, b): (Option<&Storage>, Option<&Storage>),
        shape: &[usize],
        sizes: (usize, usize, usize),
        eps: f64,
    ) -> [Tensor; 4] {
        let x = slice::<T>(x);
        let (mean, var) = batch_norm::channel_stats(x, sizes);
        let invstd: Vec<T> = var.iter().map(|&v| T::ONE / (v + T::from_f64(eps)).sqrt()).collect();
        let y = batch_norm::normalize(x, sizes, &mean, &invstd, w.map(slice), b.map(slice));
        let c = [sizes.1];
        [
            Tensor::from_vec(y, shape),
            Tensor::from_vec(mean, &c),
            Tensor::from_vec(var, &c),
            Tensor::from_vec(invstd, &c),
        ]
    }
    let affine = (ws.as_ref(), bs.as_ref());
    let [value, mean, var, invstd] = match x.dtype() {
        DType::F32 => forward::<f32>(&xs, affine, x.shape(), sizes, eps),
        DType::F64 => forward::<f64>(&xs, affine, x.shape(), sizes, eps),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    };
    if let Some(s) = stats {
        let _guard = no_grad();
        let unbiased = var.mul_scalar(count as f64 / (count as f64 - 1.0));
        s.running_mean
            .set_data(&(&s.running_mean.mul_scalar(1.0 - momentum) + &mean.mul_scalar(momentum)));
        s.running_var.set_data(
            &(&s.running_var.mul_scalar(1.0 - momentum) + &unbiased.mul_scalar(momentum)),
        );
    }
    let inputs: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    // Each channel is a row of `[C, N * HW]` (a transposed copy), standardised as layer
    // norm standardises a row: the rules under `create_graph` are layer norm's on it.
    let rows = Rows { mean, invstd, normalized_shape: vec![count], eps };
    let make_backward = || {
        let rows = rows.clone();
        affine_backward(x, weight, bias.is_some(), move |g, x, w, parameters| {
            if is_grad_enabled() {
                batch_norm_grad_recorded(g, x, w, &rows, parameters)
            } else {
                let (dx, dw, db) =
                    batch_norm_grad_fused(g, x, w, (&rows.mean, &rows.invstd), sizes);
                (dx, Some(dw), Some(db))
            }
        })
    };
    record_with_tangent("batch_norm", location, &inputs, value, make_backward, |ctx| {
        batch_norm_tangent(ctx, (x, weight), &rows)
    })
}

/// An error naming the first of `params` whose dtype is not `x`'s (the kernels read them
/// as one element type).
fn same_dtype(
    op: &'static str,
    x: &Tensor,
    params: &[Option<&Tensor>],
    location: &'static Location<'static>,
) -> Result<()> {
    match params.iter().flatten().find(|t| t.dtype() != x.dtype()) {
        Some(t) => Err(Error::DType { op, lhs: x.dtype(), rhs: t.dtype(), location }),
        None => Ok(()),
    }
}

/// A float storage's elements (its dtype checked by the op).
fn slice<T: Element>(s: &Storage) -> &[T] {
    s.as_slice::<T>().expect("dtype checked")
}

/// The gradients of [`batch_norm_batch_stats`] in one kernel pass (nothing recorded).
fn batch_norm_grad_fused(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    (mean, invstd): (&Tensor, &Tensor),
    sizes: (usize, usize, usize),
) -> (Tensor, Tensor, Tensor) {
    let (gs, xs) = (g.contiguous_storage(), x.contiguous_storage());
    let (ms, is) = (mean.contiguous_storage(), invstd.contiguous_storage());
    let ws = weight.map(Tensor::contiguous_storage);
    fn run<T: Element>(
        g: &Storage,
        x: &Storage,
        (m, i): (&Storage, &Storage),
        w: Option<&Storage>,
        sizes: (usize, usize, usize),
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        batch_norm::backward(slice(g), slice(x), sizes, slice(m), slice(i), w.map(slice))
    }
    let c = sizes.1;
    let shape = x.shape();
    macro_rules! tensors {
        ($t:ty) => {{
            let (dx, dw, db) = run::<$t>(&gs, &xs, (&ms, &is), ws.as_ref(), sizes);
            (Tensor::from_vec(dx, shape), Tensor::from_vec(dw, &[c]), Tensor::from_vec(db, &[c]))
        }};
    }
    match x.dtype() {
        DType::F32 => tensors!(f32),
        DType::F64 => tensors!(f64),
        DType::I64 | DType::Bool => unreachable!("float checked"),
    }
}

/// `t` (shaped like the input `[N, C, ...]`) as the rows of `rows`, `[C, N * HW]`: a
/// recorded transposing copy.
fn channel_rows(t: &Tensor, rows: &Rows) -> Tensor {
    let channels_first = shape::transpose(t, 0, 1).expect("at least 2-D").contiguous();
    shape::reshape_to(&channels_first, &rows.matrix())
}

/// The inverse of [`channel_rows`] for `x`'s shape: a recorded reshape and transposed view.
fn from_channel_rows(t: &Tensor, x: &Tensor) -> Tensor {
    let mut channels_first = x.shape().to_vec();
    channels_first.swap(0, 1);
    shape::transpose(&shape::reshape_to(t, &channels_first), 0, 1).expect("at least 2-D")
}

/// The gradients of [`batch_norm_batch_stats`] as recorded ops, so that they can be
/// differentiated again: on the channels as rows ([`channel_rows`]), `dx = S (g weight)`
/// as [`layer_norm_backward`] (one op, its second derivative one kernel pass), and with
/// `parameters` `dweight = sum(g xhat)` and `dbias = sum(g)` along each row, `xhat` being
/// the rows' layer norm without affine parameters.
fn batch_norm_grad_recorded(
    g: &Tensor,
    x: &Tensor,
    weight: Option<&Tensor>,
    rows: &Rows,
    parameters: bool,
) -> NormGrads {
    let (g_rows, x_rows) = (channel_rows(g, rows), channel_rows(x, rows));
    let h_rows = match weight {
        Some(w) => &g_rows * &shape::reshape_to(w, &[rows.mean.numel(), 1]),
        None => g_rows.clone(),
    };
    let dx = from_channel_rows(&layer_norm_backward(&h_rows, &x_rows, None, rows), x);
    if !parameters {
        return (dx, None, None);
    }
    let xhat = layer_norm(&x_rows, &rows.normalized_shape, None, None, rows.eps)
        .expect("the rows of a batch norm's input");
    let along_rows = |t: &Tensor| reduce::sum_dim(t, 1, false).expect("2-D rows");
    (dx, Some(along_rows(&(&g_rows * &xhat))), Some(along_rows(&g_rows)))
}

/// The tangent of batch normalisation with batch statistics. In `x` the Jacobian is
/// symmetric (`w s (I - 1 1ᵀ/M - x̂ x̂ᵀ/M)` per channel), so that part is the backward
/// rule's; the output is `x̂ w + b`, linear in the weight and bias.
fn batch_norm_tangent(
    ctx: &tapegrad_tape::TangentCtx<'_>,
    (x, weight): (&Tensor, Option<&Tensor>),
    rows: &Rows,
) -> Tensor {
    ctx.sum(|i, v| match i {
        0 => batch_norm_grad_recorded(v, x, weight, rows, false).0,
        1 if weight.is_some() => {
            let xhat =
                layer_norm(&channel_rows(x, rows), &rows.normalized_shape, None, None, rows.eps);
            &from_channel_rows(&xhat.expect("the rows of a batch norm's input"), x)
                * &channel_view(v, x)
        }
        _ => channel_view(v, x), // the bias
    })
}

/// Rows of `weight` (`[num_embeddings, dim]`) for every int64 index in `indices`, shaped
/// `[indices.., dim]`.
#[track_caller]
pub(crate) fn embedding(indices: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if weight.dim() != 2 {
        return Err(Error::Shape {
            op: "embedding",
            message: format!("weight must be [num_embeddings, dim], got {:?}", weight.shape()),
            location,
        });
    }
    // Checked here so that errors name embedding rather than the index_select inside it.
    crate::index::index_values("embedding", indices, weight.shape()[0], location)?;
    let flat = shape::reshape_to(indices, &[indices.numel()]);
    let rows = crate::index::index_select(weight, 0, &flat)?;
    let out: Vec<usize> = indices.shape().iter().copied().chain([weight.shape()[1]]).collect();
    Ok(shape::reshape_to(&rows, &out))
}

/// The keywords of `layer_norm`: `weight` and `bias` (of the normalised shape) and `eps`
/// (1e-5).
///
/// ```
/// use tapegrad_ops::{LayerNormOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2]);
/// let opts = LayerNormOptions::default().bias(&Tensor::full(&[2], 10.0)).eps(0.0);
/// assert_eq!(F::layer_norm_with(&x, &[2], opts).to_vec::<f32>(), vec![9.0, 11.0]);
/// ```
#[derive(Clone, Debug)]
pub struct LayerNormOptions {
    /// Elementwise scale, or `None`.
    pub weight: Option<Tensor>,
    /// Elementwise shift, or `None`.
    pub bias: Option<Tensor>,
    /// Added to the variance.
    pub eps: f64,
}

impl Default for LayerNormOptions {
    fn default() -> Self {
        LayerNormOptions { weight: None, bias: None, eps: 1e-5 }
    }
}

setters!(LayerNormOptions {
    /// Sets `weight`.
    weight(&Tensor) => Some(weight.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.weight.is_some();
    /// Sets `bias`.
    bias(&Tensor) => Some(bias.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.bias.is_some();
    /// Sets `eps`.
    eps(f64) => eps, example 1e-6 => o.eps == 1e-6;
});

/// The keywords of `group_norm`: `weight` and `bias` (per channel) and `eps` (1e-5).
///
/// ```
/// use tapegrad_ops::{GroupNormOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// // One sample, two channels of one value each, one group: standardised together.
/// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2, 1]);
/// let opts = GroupNormOptions::default().bias(&Tensor::full(&[2], 10.0)).eps(0.0);
/// assert_eq!(F::group_norm_with(&x, 1, opts).to_vec::<f32>(), vec![9.0, 11.0]);
/// ```
#[derive(Clone, Debug)]
pub struct GroupNormOptions {
    /// Per-channel scale, or `None`.
    pub weight: Option<Tensor>,
    /// Per-channel shift, or `None`.
    pub bias: Option<Tensor>,
    /// Added to the variance.
    pub eps: f64,
}

impl Default for GroupNormOptions {
    fn default() -> Self {
        GroupNormOptions { weight: None, bias: None, eps: 1e-5 }
    }
}

setters!(GroupNormOptions {
    /// Sets `weight`.
    weight(&Tensor) => Some(weight.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.weight.is_some();
    /// Sets `bias`.
    bias(&Tensor) => Some(bias.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.bias.is_some();
    /// Sets `eps`.
    eps(f64) => eps, example 1e-6 => o.eps == 1e-6;
});

/// The keywords of `instance_norm`, group norm's: `weight` and `bias` (per channel;
/// PyTorch's `affine` layer parameters) and `eps` (1e-5). PyTorch's running statistics
/// (`running_mean`, `running_var`, `use_input_stats`, `momentum`) are not offered: every call
/// normalises with the input's own statistics, as PyTorch does by default.
///
/// ```
/// use tapegrad_ops::{InstanceNormOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 9.0], &[1, 2, 2]);
/// let opts = InstanceNormOptions::default().bias(&Tensor::full(&[2], 10.0)).eps(0.0);
/// assert_eq!(F::instance_norm_with(&x, opts).to_vec::<f32>(), vec![9.0, 11.0, 9.0, 11.0]);
/// ```
pub type InstanceNormOptions = GroupNormOptions;

/// The keywords of `batch_norm`: `weight` and `bias` (per channel), `training` (false:
/// normalise with the running statistics), `momentum` (0.1) and `eps` (1e-5).
///
/// ```
/// use tapegrad_ops::{BatchNormOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[2, 1]);
/// // Batch statistics, no running ones: each channel gets mean 0 and variance 1.
/// let y = F::batch_norm_with(&x, None, BatchNormOptions::default().training(true).eps(0.0));
/// assert_eq!(y.to_vec::<f32>(), vec![-1.0, 1.0]);
/// ```
#[derive(Clone, Debug)]
pub struct BatchNormOptions {
    /// Scale per channel, or `None`.
    pub weight: Option<Tensor>,
    /// Shift per channel, or `None`.
    pub bias: Option<Tensor>,
    /// Normalise with the batch's statistics (and update the running ones).
    pub training: bool,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions { weight: None, bias: None, training: false, momentum: 0.1, eps: 1e-5 }
    }
}

setters!(BatchNormOptions {
    /// Sets `weight`.
    weight(&Tensor) => Some(weight.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.weight.is_some();
    /// Sets `bias`.
    bias(&Tensor) => Some(bias.clone()), example &tapegrad_tape::Tensor::ones(&[2]) => o.bias.is_some();
    /// Sets `training`.
    training(bool) => training, example true => o.training;
    /// Sets `momentum`.
    momentum(f64) => momentum, example 0.01 => o.momentum == 0.01;
    /// Sets `eps`.
    eps(f64) => eps, example 1e-3 => o.eps == 1e-3;
});
