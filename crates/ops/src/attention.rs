//! Scaled dot-product attention, two ways. Without dropout, over operands of one batch
//! shape, and with no mask, the causal one, or a mask that gets no gradient, it is one
//! recorded op over the blocked kernel (queries in blocks, the scores in cache). Otherwise
//! it is the two products around the attention weights (the scale, a causal, bool or float
//! mask and the softmax as one recorded op) and dropout. Both ops' backwards under
//! `create_graph` are written with recorded ops, so they differentiate again.

use std::panic::Location;

use tapegrad_kernels::softmax::{self as kernels, Keys};
use tapegrad_kernels::strided;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Element, Error, Result, Storage, Tensor, ensure_float, record_with_tangent,
};

use crate::options::setters;
use crate::{matmul, reduce, shape};

/// The keywords of `scaled_dot_product_attention`: `attn_mask` (a bool mask, true where a
/// query may attend to a key, or a float mask added to the scores; broadcast to
/// `[..., L, S]`), `dropout_p` (0; applied to the attention weights whenever it is
/// positive, as in PyTorch, so pass 0 outside training), `is_causal` (false; true: query
/// `i` attends to keys `0..=i`, the lower triangle from the top left) and `scale` (`None`:
/// `1 / sqrt(E)`).
///
/// ```
/// use tapegrad_ops::{AttentionOptions, functional as F};
/// use tapegrad_tape::Tensor;
/// let (q, k, v) = (Tensor::randn(&[2, 4, 8]), Tensor::randn(&[2, 4, 8]), Tensor::randn(&[2, 4, 8]));
/// let y = F::scaled_dot_product_attention_with(&q, &k, &v, AttentionOptions::default().is_causal(true));
/// // The first query sees only the first key: its output is the first value.
/// assert_eq!(y.to_vec::<f32>()[..8], v.to_vec::<f32>()[..8]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    /// A bool mask (true: attend) or a float mask added to the scores, or `None`.
    pub attn_mask: Option<Tensor>,
    /// Dropout probability on the attention weights.
    pub dropout_p: f64,
    /// Whether each query attends only to keys at or before its own position.
    pub is_causal: bool,
    /// Factor on the scores, `None` for `1 / sqrt(E)`.
    pub scale: Option<f64>,
}

setters!(AttentionOptions {
    /// Sets `attn_mask`.
    attn_mask(&Tensor) => Some(attn_mask.clone()), example &tapegrad_tape::Tensor::ones(&[2, 2]) => o.attn_mask.is_some();
    /// Sets `dropout_p`.
    dropout_p(f64) => dropout_p, example 0.1 => o.dropout_p == 0.1;
    /// Sets `is_causal`.
    is_causal(bool) => is_causal, example true => o.is_causal;
    /// Sets `scale`.
    scale(f64) => Some(scale), example 0.5 => o.scale == Some(0.5);
});

/// `softmax(q kᵀ scale + mask) v` over the last two dimensions of `q` (`[..., L, E]`), `k`
/// (`[..., S, E]`) and `v` (`[..., S, Ev]`), leading dimensions broadcast. Rows whose every
/// key is masked out give zeros (PyTorch's result), not NaN.
#[track_caller]
pub(crate) fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    options: &AttentionOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "scaled_dot_product_attention";
    let shape_error = |message: String| Error::Shape { op, message, location };
    for t in [q, k, v] {
        ensure_float(op, t, location)?;
        if t.dim() < 2 {
            return Err(shape_error(format!("expects [..., L, E] operands, got {:?}", t.shape())));
        }
        if t.dtype() != q.dtype() {
            return Err(Error::DType { op, lhs: q.dtype(), rhs: t.dtype(), location });
        }
    }
    let last = |t: &Tensor, i: usize| t.shape()[t.dim() - i];
    if last(q, 1) != last(k, 1) || last(k, 2) != last(v, 2) {
        return Err(shape_error(format!(
            "query {:?}, key {:?} and value {:?} do not fit: query and key need one last \
             dimension, key and value one sequence length",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if options.is_causal && options.attn_mask.is_some() {
        return Err(shape_error("takes attn_mask or is_causal, not both".into()));
    }
    if !(0.0..=1.0).contains(&options.dropout_p) {
        return Err(Error::InvalidArgument {
            op,
            message: format!("dropout_p {} is outside [0, 1]", options.dropout_p),
            location,
        });
    }
    if let Some(mask) = &options.attn_mask
        && mask.dtype() != DType::Bool
        && mask.dtype() != q.dtype()
    {
        return Err(Error::DType { op, lhs: q.dtype(), rhs: mask.dtype(), location });
    }
    let l = last(q, 2);
    let scale = options.scale.unwrap_or(1.0 / (last(q, 1) as f64).sqrt());
    let leading = |t: &Tensor| t.shape()[..t.dim() - 2].to_vec();
    let mask_layout = |mask: &Tensor, scores: &[usize]| {
        mask.layout().broadcast_to(scores).ok_or_else(|| {
            shape_error(format!(
                "attn_mask {:?} does not broadcast to the scores' shape {scores:?}",
                mask.shape(),
            ))
        })
    };
    // A float mask that may get a gradient (or carries a tangent) is an input of the
    // weights op; the blocked kernel treats masks as constants.
    let constant_mask = options.attn_mask.as_ref().is_none_or(|mask| {
        mask.dtype() == DType::Bool
            || (!tapegrad_tape::will_record(&[mask])
                && tapegrad_tape::forward_ad::unpack_dual(mask).tangent.is_none())
    });
    let in_blocks = constant_mask
        && options.dropout_p == 0.0
        && leading(q) == leading(k)
        && leading(k) == leading(v)
        && [l, last(k, 2), last(q, 1), last(v, 1)].iter().all(|&n| n > 0);
    if in_blocks {
        let mask = match &options.attn_mask {
            Some(mask) => {
                let scores = [leading(q), vec![l, last(k, 2)]].concat();
                Some((mask.clone(), mask_layout(mask, &scores)?))
            }
            None => None,
        };
        return Ok(blocked_attention(q, k, v, scale, options.is_causal, mask, location));
    }
    let scores = matmul::matmul(q, &shape::transpose(k, -2, -1)?)?;
    let visible = match &options.attn_mask {
        Some(mask) => Visible::Mask(mask, mask_layout(mask, scores.shape())?),
        None if options.is_causal => Visible::Causal(l),
        None => Visible::All,
    };
    let weights = attention_weights(&scores, scale, visible, location)?;
    let weights = if options.dropout_p > 0.0 {
        let dropout = crate::functional::DropoutOptions::default().p(options.dropout_p);
        crate::functional::try_dropout_with(&weights, dropout)?
    } else {
        weights
    };
    matmul::matmul(&weights, v)
}

/// Which keys each query sees, as the op receives them.
enum Visible<'a> {
    All,
    /// Causal over `[L, S]` matrices of `L` queries.
    Causal(usize),
    /// A bool mask or a float mask to add, and its layout broadcast to the scores' shape.
    Mask(&'a Tensor, Layout),
}

/// A mask's elements and where each row of `keys` of them starts: read where they lie
/// when the broadcast mask's rows are runs, else copied out once.
fn mask_rows(mask: &Tensor, layout: &Layout, keys: usize) -> (Storage, Vec<usize>) {
    let last = layout.shape().len() - 1;
    let storage = mask.storage();
    if keys <= 1 || layout.strides()[last] == 1 {
        let starts = layout.narrow(last, 0, keys.min(1)).offsets().collect();
        return (storage, starts);
    }
    let rows = layout.numel() / keys;
    let copied = match &storage {
        Storage::Bool(bits) => Storage::from_vec(strided::to_contiguous(bits, layout)),
        Storage::F32(v) => Storage::from_vec(strided::to_contiguous(v, layout)),
        Storage::F64(v) => Storage::from_vec(strided::to_contiguous(v, layout)),
        Storage::I64(_) => unreachable!("mask dtypes checked"),
    };
    (copied, (0..rows).map(|r| r * keys).collect())
}

/// The kernels' form of `visible`, with a mask's elements and row starts from
/// [`mask_rows`].
fn kernel_keys<'a, T: Element>(
    visible: &Visible,
    mask: Option<&'a (Storage, Vec<usize>)>,
) -> Keys<'a, T> {
    match (visible, mask) {
        (Visible::Causal(queries), _) => Keys::Causal { queries: *queries },
        (_, Some((Storage::Bool(bits), starts))) => Keys::Masked { mask: bits, starts },
        (_, Some((added, starts))) => {
            Keys::Added { mask: added.as_slice::<T>().expect("dtype checked"), starts }
        }
        _ => Keys::All,
    }
}

/// `softmax(scores scale + mask)` over the keys each query sees (zero weight at the
/// others), as one recorded op: the kernel reads the scores once and writes the weights
/// once, where the composed form scales, masks and normalises in passes of their own. Rows
/// that see no key, or only scores of `-inf`, under a mask get zeros (PyTorch's result),
/// with zero gradients. A float mask's gradient is the masked scores' gradient, summed
/// over the dimensions it was broadcast along.
fn attention_weights(
    scores: &Tensor,
    scale: f64,
    visible: Visible,
    location: &'static Location<'static>,
) -> Result<Tensor> {
    let keys = scores.shape()[scores.dim() - 1];
    let rows_of_mask = match &visible {
        Visible::Mask(mask, layout) => Some(mask_rows(mask, layout, keys)),
        _ => None,
    };
    fn run<T: Element>(
        x: &[T],
        keys: usize,
        scale: f64,
        visible: &Visible,
        mask: Option<&(Storage, Vec<usize>)>,
    ) -> Vec<T> {
        kernels::attention_weights(x, keys, T::round_from(scale), &kernel_keys(visible, mask))
    }
    let mask_rows = rows_of_mask.as_ref();
    let storage = match &scores.contiguous_storage() {
        Storage::F32(x) => Storage::from_vec(run(x, keys, scale, &visible, mask_rows)),
        Storage::F64(x) => Storage::from_vec(run(x, keys, scale, &visible, mask_rows)),
        _ => unreachable!("float dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(scores.shape()));
    // A float mask is an input: it may be learned, and gradients flow to it.
    let added = match visible {
        Visible::Mask(mask, _) if mask.dtype() != DType::Bool => Some(mask),
        _ => None,
    };
    let inputs: Vec<&Tensor> = [Some(scores), added].into_iter().flatten().collect();
    let mask_shape = added.map(|m| m.shape().to_vec());
    let make_backward = || {
        let mask_shape = mask_shape.clone();
        Backward::new(move |ctx| {
            let mask_grad = |dz: &Tensor| {
                let shape = mask_shape.as_ref().expect("a float mask");
                ctx.needs_input_grad(1).then(|| dz.sum_to_shape(shape))
            };
            if !tapegrad_tape::is_grad_enabled() {
                // A plain backward: one pass over each row of the (contiguous) output. With
                // a float mask to differentiate, the pass leaves out the scale (the mask's
                // gradient), and the scores' gradient is scaled after.
                let for_mask = mask_shape.is_some() && ctx.needs_input_grad(1);
                let factor = if for_mask { 1.0 } else { scale };
                let (ys, layout) = ctx.output_parts();
                let part = layout.offset()..layout.offset() + layout.numel();
                let storage = match (ys, &ctx.grad().contiguous_storage()) {
                    (Storage::F32(y), Storage::F32(g)) => Storage::from_vec(
                        kernels::attention_weights_backward(&y[part], g, keys, factor as f32),
                    ),
                    (Storage::F64(y), Storage::F64(g)) => Storage::from_vec(
                        kernels::attention_weights_backward(&y[part], g, keys, factor),
                    ),
                    _ => unreachable!("float dtypes checked in forward"),
                };
                let dz = Tensor::from_storage(storage, Layout::contiguous(layout.shape()));
                if mask_shape.is_none() {
                    return smallvec![Some(dz)];
                }
                if !for_mask {
                    return smallvec![Some(dz), None];
                }
                let dx = ctx.needs_input_grad(0).then(|| dz.mul_scalar(scale));
                return smallvec![dx, mask_grad(&dz)];
            }
            // Recorded, so that it differentiates again: dz = y (g - Σ g y), dx = scale dz.
            let (g, y) = (ctx.grad(), ctx.output());
            let sums = reduce::sum_dim(&(g * y), -1, true).expect("a last dimension");
            let dz = y * &(g - &sums);
            let dx = ctx.needs_input_grad(0).then(|| dz.mul_scalar(scale));
            if mask_shape.is_none() {
                return smallvec![dx];
            }
            smallvec![dx, mask_grad(&dz)]
        })
        .save_output()
    };
    Ok(record_with_tangent(
        "scaled_dot_product_attention",
        location,
        &inputs,
        value,
        make_backward,
        |ctx| {
            // The Jacobian of the softmax is symmetric: y (ż - Σ y ż), with ż = scale ẋ + ȧ.
            let y = ctx.output();
            ctx.sum(|i, v| {
                let z = if i == 0 { v.mul_scalar(scale) } else { v.clone() };
                let sums = reduce::sum_dim(&(y * &z), -1, true).expect("a last dimension");
                y * &(&z - &sums)
            })
        },
    ))
}

/// A `[..., rows, cols]` tensor as strided matrices for the blocked kernel.
fn operand<'a, T: Element>(
    t: &Tensor,
    data: &'a [T],
    offsets: &'a [usize],
) -> tapegrad_kernels::attention::Operand<'a, T> {
    let (d, layout) = (t.dim(), t.layout());
    let (rows, cols) = (layout.shape()[d - 2], layout.shape()[d - 1]);
    let (rs, cs) = (layout.strides()[d - 2], layout.strides()[d - 1]);
    tapegrad_kernels::attention::Operand { data, offsets, rows, cols, rs, cs }
}

/// Where each `[rows, cols]` matrix of `t` starts in its storage.
fn matrix_offsets(t: &Tensor) -> Vec<usize> {
    let d = t.dim();
    t.layout().narrow(d - 2, 0, 1).narrow(d - 1, 0, 1).offsets().collect()
}

/// Attention without dropout, over operands of one batch shape, with no mask, the causal
/// one, or a bool or float `mask` (with its layout broadcast to the scores' shape) that
/// gets no gradient, as one recorded op: the kernel takes blocks of queries through both
/// products and the softmax in cache, and under the causal mask skips the keys a block
/// does not see. The weights are kept for the backward only when it will run. Its plain
/// backward is the blocked kernel's; under `create_graph` it is the same formulas in
/// recorded ops (the weights recomputed from the saved operands, so they differentiate
/// again).
fn blocked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    causal: bool,
    mask: Option<(Tensor, Layout)>,
    location: &'static Location<'static>,
) -> Tensor {
    let keep_weights = tapegrad_tape::will_record(&[q, k, v]);
    let mut out_shape = q.shape().to_vec();
    *out_shape.last_mut().expect("two dimensions") = v.shape()[v.dim() - 1];
    let queries = q.shape()[q.dim() - 2];
    let visible = match &mask {
        Some((mask, layout)) => Visible::Mask(mask, layout.clone()),
        None if causal => Visible::Causal(queries),
        None => Visible::All,
    };
    let (output, weights) = match q.dtype() {
        DType::F32 => blocked_forward::<f32>([q, k, v], scale, &visible, keep_weights),
        _ => blocked_forward::<f64>([q, k, v], scale, &visible, keep_weights),
    };
    let value = Tensor::from_storage(output, Layout::contiguous(&out_shape));
    // The weights as the differentiable ops compute them, for create_graph and forward mode.
    let recorded_weights = move |q: &Tensor, k: &Tensor| {
        let scores = matmul::matmul(q, &shape::transpose(k, -2, -1).expect("two dimensions"))
            .expect("shapes checked");
        let visible = match &mask {
            Some((mask, layout)) => Visible::Mask(mask, layout.clone()),
            None if causal => Visible::Causal(queries),
            None => Visible::All,
        };
        attention_weights(&scores, scale, visible, location).expect("the mask was checked")
    };
    let mut weights_shape = q.shape().to_vec();
    *weights_shape.last_mut().expect("two dimensions") = k.shape()[k.dim() - 2];
    let make_backward = || {
        let saved_weights =
            Tensor::from_storage(weights.clone(), Layout::contiguous(&weights_shape));
        let recorded_weights = recorded_weights.clone();
        Backward::new(move |ctx| {
            let (q, k, v) = (ctx.saved(0), ctx.saved(1), ctx.saved(2));
            let g = ctx.grad();
            if !tapegrad_tape::is_grad_enabled() {
                let w = ctx.saved(3).storage();
                let grads = match q.dtype() {
                    DType::F32 => blocked_gradients::<f32>([q, k, v, g], &w, scale, causal),
                    _ => blocked_gradients::<f64>([q, k, v, g], &w, scale, causal),
                };
                let [dq, dk, dv] = grads;
                let wrap = |i: usize, s: Storage, like: &Tensor| {
                    ctx.needs_input_grad(i)
                        .then(|| Tensor::from_storage(s, Layout::contiguous(like.shape())))
                };
                return smallvec![wrap(0, dq, q), wrap(1, dk, k), wrap(2, dv, v)];
            }
            // Recorded: dV = Pᵀ g, dP = g Vᵀ, dS = scale P (dP - Σ dP P), dQ = dS K, dK = dSᵀ Q.
            let p = recorded_weights(q, k);
            let t = |x: &Tensor| shape::transpose(x, -2, -1).expect("two dimensions");
            let product = |a: &Tensor, b: &Tensor| matmul::matmul(a, b).expect("shapes agree");
            let dp = product(g, &t(v));
            let sums = reduce::sum_dim(&(&dp * &p), -1, true).expect("a last dimension");
            let ds = (&p * &(&dp - &sums)).mul_scalar(scale);
            smallvec![
                ctx.needs_input_grad(0).then(|| product(&ds, k)),
                ctx.needs_input_grad(1).then(|| product(&t(&ds), q)),
                ctx.needs_input_grad(2).then(|| product(&t(&p), g)),
            ]
        })
        .save(q)
        .save(k)
        .save(v)
        .save(&saved_weights)
    };
    record_with_tangent(
        "scaled_dot_product_attention",
        location,
        &[q, k, v],
        value,
        make_backward,
        |ctx| {
            // Ṗ = scale P (Ṡ - Σ Ṡ P) with Ṡ = Q̇ Kᵀ + Q K̇ᵀ, and Ȯ = Ṗ V + P V̇.
            let (q, k, v) = (ctx.input(0), ctx.input(1), ctx.input(2));
            let p = recorded_weights(q, k);
            let t = |x: &Tensor| shape::transpose(x, -2, -1).expect("two dimensions");
            let product = |a: &Tensor, b: &Tensor| matmul::matmul(a, b).expect("shapes agree");
            let through_weights = |ds: Tensor| {
                let sums = reduce::sum_dim(&(&ds * &p), -1, true).expect("a last dimension");
                product(&(&p * &(&ds - &sums)).mul_scalar(scale), v)
            };
            ctx.sum(|i, dot| match i {
                0 => through_weights(product(dot, &t(k))),
                1 => through_weights(product(q, &t(dot))),
                _ => product(&p, dot),
            })
        },
    )
}

/// The blocked kernel's output and (with `keep_weights`) weights.
fn blocked_forward<T: Element>(
    [q, k, v]: [&Tensor; 3],
    scale: f64,
    visible: &Visible,
    keep_weights: bool,
) -> (Storage, Storage) {
    let storages = [q.storage(), k.storage(), v.storage()];
    let offsets = [q, k, v].map(matrix_offsets);
    let [qs, ks, vs] = [0, 1, 2].map(|i| storages[i].as_slice::<T>().expect("one float dtype"));
    let keys = k.shape()[k.dim() - 2];
    let rows_of_mask = match visible {
        Visible::Mask(mask, layout) => Some(mask_rows(mask, layout, keys)),
        _ => None,
    };
    let seen = kernel_keys(visible, rows_of_mask.as_ref());
    let attended = tapegrad_kernels::attention::attention(
        operand(q, qs, &offsets[0]),
        operand(k, ks, &offsets[1]),
        operand(v, vs, &offsets[2]),
        T::round_from(scale),
        seen,
        keep_weights,
    );
    (Storage::from_vec(attended.output), Storage::from_vec(attended.weights))
}

/// The blocked kernel's gradients of queries, keys and values from the saved operands, the
/// output's gradient and the saved weights.
fn blocked_gradients<T: Element>(
    [q, k, v, g]: [&Tensor; 4],
    weights: &Storage,
    scale: f64,
    causal: bool,
) -> [Storage; 3] {
    let storages = [q.storage(), k.storage(), v.storage(), g.storage()];
    let offsets = [q, k, v, g].map(matrix_offsets);
    let [qs, ks, vs, gs] =
        [0, 1, 2, 3].map(|i| storages[i].as_slice::<T>().expect("one float dtype"));
    let (dq, dk, dv) = tapegrad_kernels::attention::attention_backward(
        operand(q, qs, &offsets[0]),
        operand(k, ks, &offsets[1]),
        operand(v, vs, &offsets[2]),
        weights.as_slice::<T>().expect("one float dtype"),
        operand(g, gs, &offsets[3]),
        T::round_from(scale),
        causal,
    );
    [Storage::from_vec(dq), Storage::from_vec(dk), Storage::from_vec(dv)]
}
