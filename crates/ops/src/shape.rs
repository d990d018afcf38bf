//! Shape operations: views and copies that rearrange elements without arithmetic.
//!
//! The methods are at the end of the file: [`ShapeOps`], and the free functions [`cat`] and
//! [`stack`].

use std::panic::Location;

use tapegrad_tape::layout::{Layout, checked_numel, checked_size, numel, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Error, Result, Storage, StorageElement, Tensor, or_panic, record_with_tangent,
};

use crate::dims::{blocks, resolve};

/// `x` with a new shape of the same element count (a view where strides can express it).
#[track_caller]
pub(crate) fn reshape_to(x: &Tensor, shape: &[usize]) -> Tensor {
    if x.shape() == shape {
        return x.clone();
    }
    // A view of the same storage where strides can express it, as PyTorch's `reshape`;
    // else a contiguous copy first. A broadcast tensor (elements repeated by zero strides)
    // is copied, as before: `repeat` must give every element its own place, and so must a
    // gradient that later ops update in place.
    let view = if x.layout().overlaps() { None } else { x.layout().reshaped(shape) };
    let (base, layout) = match view {
        Some(layout) => (x.clone(), layout),
        None => {
            let base = x.contiguous();
            let layout = base.layout().reshaped(shape).expect("reshape_to: element counts agree");
            (base, layout)
        }
    };
    let value = Tensor::from_storage(base.storage(), layout);
    record_with_tangent(
        "reshape",
        Location::caller(),
        &[&base],
        value,
        || {
            let from = x.shape().to_vec();
            Backward::new(move |ctx| smallvec![Some(reshape_to(ctx.grad(), &from))])
        },
        |ctx| ctx.map(|v| reshape_to(v, shape)),
    )
}

#[track_caller]
pub(crate) fn reshape(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    let bad = |message: String| Error::Shape { op: "reshape", message, location };
    let inferred: Vec<usize> =
        shape.iter().enumerate().filter(|&(_, &d)| d == -1).map(|(i, _)| i).collect();
    if inferred.len() > 1 || shape.iter().any(|&d| d < -1) {
        return Err(bad(format!(
            "invalid shape {shape:?}: at most one -1 and no other negative sizes"
        )));
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let sizes: Vec<usize> = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).collect();
    let known = checked_numel(&sizes).ok_or_else(|| {
        bad(format!(
            "shape {shape:?} has too many elements for input of shape {:?} (the product of its \
            sizes overflows)",
            x.shape()
        ))
    })?;
    if let Some(&i) = inferred.first() {
        if known == 0 || !x.numel().is_multiple_of(known) {
            return Err(bad(format!(
                "shape {shape:?} is invalid for input of shape {:?}",
                x.shape()
            )));
        }
        out[i] = x.numel() / known;
    }
    if numel(&out) != x.numel() {
        return Err(bad(format!(
            "shape {shape:?} is invalid for input of shape {:?} ({} elements)",
            x.shape(),
            x.numel()
        )));
    }
    Ok(reshape_to(x, &out))
}

#[track_caller]
pub(crate) fn transpose(x: &Tensor, a: isize, b: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Ok(x.clone());
    }
    let a = resolve("transpose", x, a, location)?;
    let b = resolve("transpose", x, b, location)?;
    if a == b {
        return Ok(x.clone());
    }
    let value = Tensor::from_storage(x.storage(), x.layout().transpose(a, b));
    let (a, b) = (a as isize, b as isize);
    Ok(record_with_tangent(
        "transpose",
        location,
        &[x],
        value,
        || {
            Backward::new(move |ctx| {
                smallvec![Some(transpose(ctx.grad(), a, b).expect("dims checked in forward"))]
            })
        },
        |ctx| ctx.map(|v| transpose(v, a, b).expect("dims checked in forward")),
    ))
}

/// An invalid-argument error of `op` (a bad dimension, size or index).
pub(crate) fn invalid_argument(
    op: &'static str,
    message: String,
    location: &'static Location<'static>,
) -> Error {
    Error::InvalidArgument { op, message, location }
}

/// The dimensions reordered so that result dimension `i` is input dimension `dims[i]`.
#[track_caller]
pub(crate) fn permute(x: &Tensor, dims: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    let not_a_permutation = || Error::Shape {
        op: "permute",
        message: format!(
            "{dims:?} is not a permutation of the {} dimensions of shape {:?}",
            x.dim(),
            x.shape()
        ),
        location,
    };
    if dims.len() != x.dim() {
        return Err(not_a_permutation());
    }
    let resolved: Vec<usize> =
        dims.iter().map(|&d| resolve("permute", x, d, location)).collect::<Result<_>>()?;
    let mut seen = vec![false; x.dim()];
    for &d in &resolved {
        seen[d] = true;
    }
    if seen.iter().any(|s| !s) {
        return Err(not_a_permutation());
    }
    let value = Tensor::from_storage(x.storage(), x.layout().permute(&resolved));
    let mut inverse = vec![0isize; resolved.len()];
    for (i, &d) in resolved.iter().enumerate() {
        inverse[d] = i as isize;
    }
    let order: Vec<isize> = resolved.iter().map(|&d| d as isize).collect();
    Ok(record_with_tangent(
        "permute",
        location,
        &[x],
        value,
        || {
            let inverse = inverse.clone();
            Backward::new(move |ctx| {
                smallvec![Some(permute(ctx.grad(), &inverse).expect("inverse permutation"))]
            })
        },
        |ctx| ctx.map(|v| permute(v, &order).expect("a permutation")),
    ))
}

#[track_caller]
pub(crate) fn unsqueeze(x: &Tensor, dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let d = crate::dims::resolve_rank("unsqueeze", x.shape(), dim, x.dim() + 1, location)?;
    let mut shape = x.shape().to_vec();
    shape.insert(d, 1);
    Ok(reshape_to(x, &shape))
}

#[track_caller]
pub(crate) fn squeeze(x: &Tensor, dim: Option<isize>) -> Result<Tensor> {
    let location = Location::caller();
    let shape: Vec<usize> = match dim {
        None => x.shape().iter().copied().filter(|&n| n != 1).collect(),
        Some(dim) => {
            if x.dim() == 0 {
                return Ok(x.clone());
            }
            let d = resolve("squeeze", x, dim, location)?;
            let mut s = x.shape().to_vec();
            if s[d] == 1 {
                s.remove(d);
            }
            s
        }
    };
    Ok(reshape_to(x, &shape))
}

#[track_caller]
pub(crate) fn flatten(x: &Tensor, start: isize, end: isize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Ok(reshape_to(x, &[1]));
    }
    let s = resolve("flatten", x, start, location)?;
    let e = resolve("flatten", x, end, location)?;
    if s > e {
        return Err(invalid_argument(
            "flatten",
            format!("start dim {start} comes after end dim {end}"),
            location,
        ));
    }
    let shape = x.shape();
    let merged: usize = shape[s..=e].iter().product();
    let out: Vec<usize> =
        shape[..s].iter().copied().chain([merged]).chain(shape[e + 1..].iter().copied()).collect();
    Ok(reshape_to(x, &out))
}

/// `len` elements of dimension `dim` from `start`: a view.
#[track_caller]
pub(crate) fn narrow(x: &Tensor, dim: isize, start: usize, len: usize) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "narrow",
            "cannot be applied to a zero-dimensional tensor".into(),
            location,
        ));
    }
    let d = resolve("narrow", x, dim, location)?;
    let n = x.shape()[d];
    if start.checked_add(len).is_none_or(|end| end > n) {
        return Err(invalid_argument(
            "narrow",
            format!(
                "{len} elements from {start} are outside dimension {d} of size {n} (shape {:?})",
                x.shape()
            ),
            location,
        ));
    }
    let value = Tensor::from_storage(x.storage(), x.layout().narrow(d, start, len));
    let make_backward = || {
        let in_shape = x.shape().to_vec();
        Backward::new(move |ctx| {
            // The gradient covers the narrowed part: added into the input's gathered
            // gradient when it may (a time loop narrows one tensor many times), else
            // zero-padded to the whole input.
            let g = match ctx.take_input_grad(0) {
                Some(gathered) => {
                    add_into_part(&gathered, ctx.grad(), d, start);
                    gathered
                }
                None if !tapegrad_tape::is_grad_enabled() => {
                    zeros_with_part(&in_shape, ctx.grad(), d, start)
                }
                None => pad_dim(ctx.grad(), d, start, n - start - len, 0.0),
            };
            smallvec![Some(g)]
        })
    };
    Ok(record_with_tangent("narrow", location, &[x], value, make_backward, |ctx| {
        ctx.map(|v| narrow(v, d as isize, start, len).expect("in range"))
    }))
}

/// Adds `part` into positions `start..start + part.shape()[d]` of dimension `d` of the
/// contiguous float tensor `whole`, in place (nothing recorded).
fn add_into_part(whole: &Tensor, part: &Tensor, d: usize, start: usize) {
    zip_into_part(whole, part, d, start, |a, b| a + b, |a, b| a + b);
}

/// A gradient of `shape` that is zero but for `part` at positions `start..` of dimension
/// `d`, as a plain value (nothing recorded): `pad_dim`'s values without its full copy.
fn zeros_with_part(shape: &[usize], part: &Tensor, d: usize, start: usize) -> Tensor {
    let whole = Tensor::zeros_dtype(shape, part.dtype());
    // Written, not added: a negative zero stays negative.
    zip_into_part(&whole, part, d, start, |_, b| b, |_, b| b);
    whole
}

/// `whole[.., start + i, ..] = f(whole[.., start + i, ..], part[.., i, ..])` along dimension
/// `d` of the contiguous float tensor `whole`, in place, with `f32` and `f64` the forms of
/// `f` for the two float types.
fn zip_into_part(
    whole: &Tensor,
    part: &Tensor,
    d: usize,
    start: usize,
    f32: impl Fn(f32, f32) -> f32 + Copy + Send + Sync,
    f64: impl Fn(f64, f64) -> f64 + Copy + Send + Sync,
) {
    use tapegrad_kernels::strided::zip_block_in_place;
    let shape = whole.shape();
    let (outer, _, inner) = blocks(shape, d);
    let (rows, block) = (shape[d] * inner, part.shape()[d] * inner);
    if outer == 0 || block == 0 {
        return;
    }
    // A slice of a larger gradient (cat's backward hands out such views) or a broadcast
    // one (what `sum()` sends back) is read where it lies; other layouts are gathered first.
    let (src, place) = match BlockPlace::of(part.layout(), d) {
        Some(place) => (part.storage(), place),
        None => (part.contiguous_storage(), BlockPlace::adjacent(block)),
    };
    whole.update_storage(|storage, layout| {
        let (off, at) = (layout.offset(), start * inner);
        match &src {
            Storage::F32(v) => {
                let dst = &mut storage.make_mut::<f32>().expect("f32")[off..off + outer * rows];
                zip_block_in_place(dst, rows, at, place.blocks(v, block), f32);
            }
            Storage::F64(v) => {
                let dst = &mut storage.make_mut::<f64>().expect("f64")[off..off + outer * rows];
                zip_block_in_place(dst, rows, at, place.blocks(v, block), f64);
            }
            Storage::I64(_) | Storage::Bool(_) => unreachable!("gradients are float"),
        }
    });
}

/// Where the blocks of a view lie, one block per index of the dimensions before `d`, when
/// its dimensions from `d` on step as one run and the dimensions before `d` step as one.
#[derive(Clone, Copy)]
struct BlockPlace {
    /// The first block's first element.
    start: usize,
    /// From one block to the next.
    stride: usize,
    /// From one element of a block to the next: 1 for adjacent elements, 0 for a
    /// broadcast.
    step: usize,
}

impl BlockPlace {
    /// The place of `layout`'s blocks, or `None` when its dimensions do not merge so.
    fn of(layout: &Layout, d: usize) -> Option<Self> {
        let (shape, strides) = (layout.shape(), layout.strides());
        // Size-1 dimensions never step.
        let merged = |dims: std::ops::Range<usize>| -> Option<(Option<usize>, usize)> {
            let (mut step, mut span) = (None, 1);
            for k in dims.rev().filter(|&k| shape[k] != 1) {
                match step {
                    None => step = Some(strides[k]),
                    Some(s) if strides[k] == s * span => {}
                    Some(_) => return None,
                }
                span *= shape[k];
            }
            Some((step, span))
        };
        let (step, block) = merged(d..shape.len())?;
        let (stride, _) = merged(0..d)?;
        Some(BlockPlace {
            start: layout.offset(),
            stride: stride.unwrap_or(block),
            step: step.unwrap_or(1),
        })
    }

    /// Blocks of `block` adjacent elements, one after another from the start.
    fn adjacent(block: usize) -> Self {
        BlockPlace { start: 0, stride: block, step: 1 }
    }

    /// The blocks, `block` elements each, in `data`.
    fn blocks<T>(self, data: &[T], block: usize) -> tapegrad_kernels::strided::Blocks<'_, T> {
        let BlockPlace { start, stride, step } = self;
        tapegrad_kernels::strided::Blocks { data, start, stride, block, step }
    }
}

/// `x` with `before` and `after` elements of `value` added around dimension `d`.
#[track_caller]
pub(crate) fn pad_dim(x: &Tensor, d: usize, before: usize, after: usize, value: f64) -> Tensor {
    let mut pads = vec![(0, 0); x.dim()];
    pads[d] = (before, after);
    pad_dims(x, &pads, value)
}

/// `x` with `pads[k] = (before, after)` elements of `value` added around each dimension `k`,
/// in one pass; the gradient is the middle of the output's, a view.
#[track_caller]
fn pad_dims(x: &Tensor, pads: &[(usize, usize)], value: f64) -> Tensor {
    if pads.iter().all(|&p| p == (0, 0)) {
        return x.clone();
    }
    let location = Location::caller();
    let shape: Vec<usize> = x.shape().iter().zip(pads).map(|(&n, &(b, a))| b + n + a).collect();
    use tapegrad_kernels::pad::pad_constant;
    let src = x.contiguous_storage();
    let storage = match &src {
        Storage::F32(v) => Storage::from_vec(pad_constant(v, x.shape(), pads, value as f32)),
        Storage::F64(v) => Storage::from_vec(pad_constant(v, x.shape(), pads, value)),
        Storage::I64(v) => Storage::from_vec(pad_constant(v, x.shape(), pads, value as i64)),
        Storage::Bool(v) => Storage::from_vec(pad_constant(v, x.shape(), pads, value != 0.0)),
    };
    let out = Tensor::from_storage(storage, tapegrad_tape::layout::Layout::contiguous(&shape));
    record_with_tangent(
        "pad",
        location,
        &[x],
        out,
        || {
            let (pads, in_shape) = (pads.to_vec(), x.shape().to_vec());
            Backward::new(move |ctx| {
                let mut g = ctx.grad().clone();
                for (d, (&(before, _), &n)) in pads.iter().zip(&in_shape).enumerate() {
                    if g.shape()[d] != n {
                        g = narrow(&g, d as isize, before, n).expect("in range");
                    }
                }
                smallvec![Some(g)]
            })
        },
        |ctx| ctx.map(|v| pad_dims(v, pads, 0.0)),
    )
}

/// PyTorch's `F.pad` with a constant: `pads` pairs `(before, after)` starting from the last
/// dimension.
#[track_caller]
pub(crate) fn pad(x: &Tensor, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
    let location = Location::caller();
    if pads.len() > x.dim() {
        return Err(invalid_argument(
            "pad",
            format!("{} padding pairs for a tensor of {} dimensions", pads.len(), x.dim()),
            location,
        ));
    }
    let mut shape = x.shape().to_vec();
    for (i, &(before, after)) in pads.iter().enumerate() {
        let n = &mut shape[x.dim() - 1 - i];
        let what = format!("size {n} padded by {before} and {after}");
        *n = checked_size(
            "pad",
            &what,
            n.checked_add(before).and_then(|m| m.checked_add(after)),
            location,
        )?;
    }
    try_numel("pad", &shape, location)?;
    let mut by_dim = vec![(0, 0); x.dim()];
    for (i, &pair) in pads.iter().enumerate() {
        by_dim[x.dim() - 1 - i] = pair;
    }
    Ok(pad_dims(x, &by_dim, value))
}

/// What `F.pad` puts in the new places: PyTorch's `mode` with its `value`.
///
/// ```
/// use tapegrad_ops::{PadMode, functional as F};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[1, 3]);
/// let pad = |mode| F::pad_with(&x, &[2, 1], mode).to_vec::<f32>();
/// assert_eq!(pad(PadMode::Constant(0.0)), vec![0.0, 0.0, 1.0, 2.0, 3.0, 0.0]);
/// assert_eq!(pad(PadMode::Reflect), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
/// assert_eq!(pad(PadMode::Replicate), vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
/// assert_eq!(pad(PadMode::Circular), vec![2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant (PyTorch's `mode="constant", value=...`).
    Constant(f64),
    /// The mirror image without the edge (`"reflect"`).
    Reflect,
    /// The edge element repeated (`"replicate"`).
    Replicate,
    /// The other end wrapped around (`"circular"`).
    Circular,
}

impl Default for PadMode {
    fn default() -> Self {
        PadMode::Constant(0.0)
    }
}

/// PyTorch's `F.pad`: `pads` lists `(before, after)` for the last dimension, then the one
/// before it, ...; negative amounts crop. The non-constant modes pick source positions with
/// `index_select`, so their gradients (any order) come from its rule.
#[track_caller]
pub(crate) fn pad_with(x: &Tensor, pads: &[isize], mode: PadMode) -> Result<Tensor> {
    let location = Location::caller();
    let op = "pad";
    if !pads.len().is_multiple_of(2) || pads.len() / 2 > x.dim() {
        return Err(invalid_argument(
            op,
            format!(
                "pads must hold a (before, after) pair per padded dimension, at most {} pairs \
                 for shape {:?}; got {} values",
                x.dim(),
                x.shape(),
                pads.len()
            ),
            location,
        ));
    }
    let mut out = x.clone();
    // Constant padding is added in one pass after the crops.
    let mut constant = vec![(0, 0); pads.len() / 2];
    for (i, pair) in pads.chunks(2).enumerate() {
        let d = x.dim() - 1 - i;
        let (before, after) = (pair[0], pair[1]);
        let n = out.shape()[d] as isize;
        // Crop first, then pad what remains.
        let (cut_before, cut_after) = ((-before).max(0), (-after).max(0));
        if cut_before + cut_after > n {
            return Err(invalid_argument(
                op,
                format!(
                    "cropping {cut_before} and {cut_after} from dimension {d} of size {n} \
                     leaves nothing"
                ),
                location,
            ));
        }
        if cut_before + cut_after > 0 {
            out = narrow(
                &out,
                d as isize,
                cut_before as usize,
                (n - cut_before - cut_after) as usize,
            )?;
        }
        let (add_before, add_after) = (before.max(0) as usize, after.max(0) as usize);
        if add_before + add_after == 0 {
            continue;
        }
        let n = out.shape()[d];
        let source = |k: isize| -> Option<usize> {
            let n = n as isize;
            match mode {
                PadMode::Constant(_) => None,
                PadMode::Reflect => Some(if k < 0 {
                    -k
                } else if k >= n {
                    2 * (n - 1) - k
                } else {
                    k
                } as usize),
                PadMode::Replicate => Some(k.clamp(0, n - 1) as usize),
                PadMode::Circular => Some(k.rem_euclid(n) as usize),
            }
        };
        match mode {
            PadMode::Constant(_) => constant[i] = (add_before, add_after),
            _ => {
                let limit = match mode {
                    PadMode::Reflect => n.saturating_sub(1),
                    PadMode::Circular => n,
                    _ => usize::MAX,
                };
                if n == 0 || add_before > limit || add_after > limit {
                    return Err(invalid_argument(
                        op,
                        format!(
                            "{mode:?} padding of ({add_before}, {add_after}) needs each amount at \
                             most {limit} for dimension {d} of size {n}"
                        ),
                        location,
                    ));
                }
                let picks: Vec<i64> = (-(add_before as isize)..(n + add_after) as isize)
                    .map(|k| source(k).expect("a non-constant mode") as i64)
                    .collect();
                let len = picks.len();
                out =
                    crate::index::index_select(&out, d as isize, &Tensor::from_vec(picks, &[len]))?;
            }
        }
    }
    match mode {
        PadMode::Constant(value) => pad(&out, &constant, value),
        _ => Ok(out),
    }
}

/// Tensors joined along an existing dimension (PyTorch's `torch.cat`).
///
/// ```
/// use tapegrad_tape::Tensor;
/// let c = tapegrad_ops::cat(&[&Tensor::zeros(&[2, 1]), &Tensor::ones(&[2, 2])], 1);
/// assert_eq!(c.to_vec::<f32>(), vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
/// ```
#[track_caller]
pub fn cat(tensors: &[&Tensor], dim: isize) -> Tensor {
    or_panic(try_cat(tensors, dim))
}

/// [`cat`], returning an error instead of panicking.
///
/// Tensors joined along `dim`; all shapes must agree elsewhere.
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(tapegrad_ops::try_cat(&[&Tensor::zeros(&[2]), &Tensor::zeros(&[2, 1])], 0).is_err());
/// ```
#[track_caller]
pub fn try_cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let Some(first) = tensors.first() else {
        return Err(invalid_argument("cat", "needs at least one tensor".into(), location));
    };
    if first.dim() == 0 {
        return Err(invalid_argument(
            "cat",
            "zero-dimensional tensors cannot be concatenated".into(),
            location,
        ));
    }
    let d = resolve("cat", first, dim, location)?;
    let mut shape = first.shape().to_vec();
    shape[d] = 0;
    for (i, t) in tensors.iter().enumerate() {
        let compatible = t.dim() == first.dim()
            && t.shape().iter().zip(first.shape()).enumerate().all(|(k, (a, b))| k == d || a == b);
        if !compatible {
            return Err(Error::Shape {
                op: "cat",
                message: format!(
                    "tensor {i} has shape {:?}, which does not match {:?} outside dimension {d}",
                    t.shape(),
                    first.shape()
                ),
                location,
            });
        }
        if t.dtype() != first.dtype() {
            return Err(Error::DType { op: "cat", lhs: first.dtype(), rhs: t.dtype(), location });
        }
        let joined = shape[d].checked_add(t.shape()[d]);
        shape[d] =
            checked_size("cat", &format!("dimension {d} of the joined tensors"), joined, location)?;
    }
    try_numel("cat", &shape, location)?;
    let out = joined(tensors, d, &shape);
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut at = 0;
    for t in tensors {
        sizes.push((at, t.shape()[d]));
        at += t.shape()[d];
    }
    let make_backward = || {
        let sizes = sizes.clone();
        Backward::new(move |ctx| {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &(start, len))| {
                    ctx.needs_input_grad(i)
                        .then(|| narrow(ctx.grad(), d as isize, start, len).expect("in range"))
                })
                .collect()
        })
    };
    Ok(record_with_tangent("cat", location, tensors, out, make_backward, |ctx| {
        let parts: Vec<Tensor> = (0..tensors.len())
            .map(|i| ctx.tangent(i).cloned().unwrap_or_else(|| tensors[i].zeros_like()))
            .collect();
        try_cat(&parts.iter().collect::<Vec<_>>(), d as isize).expect("shapes checked")
    }))
}

/// The values of `tensors` joined along dimension `d` into `shape` (checked by the caller),
/// nothing recorded. Each output element is written once, in order: block `o` of the
/// output is block `o` of every input in turn.
fn joined(tensors: &[&Tensor], d: usize, shape: &[usize]) -> Tensor {
    use tapegrad_kernels::strided::{Blocks, join_blocks};
    fn join<T: StorageElement + Send + Sync>(
        parts: &[(Storage, BlockPlace, usize)],
        outer: usize,
    ) -> Storage {
        let blocks: Vec<Blocks<'_, T>> = parts
            .iter()
            .map(|(values, place, block)| {
                place.blocks(values.as_slice::<T>().expect("dtypes checked"), *block)
            })
            .collect();
        Storage::from_vec(join_blocks(&blocks, outer))
    }
    let total = numel(shape);
    let layout = Layout::contiguous(shape);
    if total == 0 {
        // No blocks to copy; their sizes could overflow for huge empty shapes.
        return Tensor::zeros_dtype(shape, tensors[0].dtype());
    }
    let (outer, _, inner) = blocks(shape, d);
    // Each input read where it lies when its blocks are runs (a contiguous tensor, a slice
    // of one such as `chunk` hands out, a broadcast), else gathered first.
    let parts: Vec<(Storage, BlockPlace, usize)> = tensors
        .iter()
        .map(|t| {
            let block = t.shape()[d] * inner;
            match BlockPlace::of(t.layout(), d) {
                Some(place) => (t.storage(), place, block),
                None => (t.contiguous_storage(), BlockPlace::adjacent(block), block),
            }
        })
        .collect();
    let storage = match tensors[0].dtype() {
        DType::F32 => join::<f32>(&parts, outer),
        DType::F64 => join::<f64>(&parts, outer),
        DType::I64 => join::<i64>(&parts, outer),
        DType::Bool => join::<bool>(&parts, outer),
    };
    Tensor::from_storage(storage, layout)
}

/// Tensors of one shape joined along a new dimension (PyTorch's `torch.stack`).
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert_eq!(
///     tapegrad_ops::stack(&[&Tensor::zeros(&[3]), &Tensor::ones(&[3])], 0).shape(),
///     &[2, 3]
/// );
/// ```
#[track_caller]
pub fn stack(tensors: &[&Tensor], dim: isize) -> Tensor {
    or_panic(try_stack(tensors, dim))
}

/// [`stack`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(tapegrad_ops::try_stack(&[&Tensor::zeros(&[3]), &Tensor::ones(&[2])], 0).is_err());
/// ```
#[track_caller]
pub fn try_stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
    let location = Location::caller();
    let Some(first) = tensors.first() else {
        return Err(invalid_argument("stack", "needs at least one tensor".into(), location));
    };
    if let Some(i) = tensors.iter().position(|t| t.shape() != first.shape()) {
        return Err(Error::Shape {
            op: "stack",
            message: format!(
                "tensor {i} has shape {:?}, tensor 0 has {:?}",
                tensors[i].shape(),
                first.shape()
            ),
            location,
        });
    }
    let mut expanded = Vec::with_capacity(tensors.len());
    for t in tensors {
        // A loop, not a closure: the caller's location reaches unsqueeze's errors.
        expanded.push(unsqueeze(t, dim)?);
    }
    let refs: Vec<&Tensor> = expanded.iter().collect();
    try_cat(&refs, dim)
}

#[track_caller]
pub(crate) fn split(x: &Tensor, size: usize, dim: isize) -> Result<Vec<Tensor>> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "split",
            "a zero-dimensional tensor cannot be split".into(),
            location,
        ));
    }
    let d = resolve("split", x, dim, location)?;
    if size == 0 {
        return Err(invalid_argument("split", "split size must be positive".into(), location));
    }
    let n = x.shape()[d];
    (0..n.div_ceil(size)).map(|i| narrow(x, d as isize, i * size, size.min(n - i * size))).collect()
}

/// Every slice of `x` along `dim`, that dimension dropped (PyTorch's `unbind`).
#[track_caller]
pub(crate) fn unbind(x: &Tensor, dim: isize) -> Result<Vec<Tensor>> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "unbind",
            "a zero-dimensional tensor has no dimension to unbind".into(),
            location,
        ));
    }
    let d = resolve("unbind", x, dim, location)?;
    (0..x.shape()[d]).map(|i| squeeze(&narrow(x, d as isize, i, 1)?, Some(d as isize))).collect()
}

#[track_caller]
pub(crate) fn chunk(x: &Tensor, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "chunk",
            "a zero-dimensional tensor cannot be chunked".into(),
            location,
        ));
    }
    let d = resolve("chunk", x, dim, location)?;
    if chunks == 0 {
        return Err(invalid_argument(
            "chunk",
            "number of chunks must be positive".into(),
            location,
        ));
    }
    split(x, x.shape()[d].div_ceil(chunks).max(1), d as isize)
}

/// `x` tiled `reps[i]` times along each dimension (PyTorch's `repeat`), built from
/// differentiable views so its gradient sums the tiles.
#[track_caller]
pub(crate) fn repeat(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    let location = Location::caller();
    if reps.len() < x.dim() {
        return Err(invalid_argument(
            "repeat",
            format!("{} repeat counts for a tensor of {} dimensions", reps.len(), x.dim()),
            location,
        ));
    }
    let lead = reps.len() - x.dim();
    let shape: Vec<usize> = std::iter::repeat_n(1, lead).chain(x.shape().iter().copied()).collect();
    let interleaved: Vec<usize> = shape.iter().flat_map(|&s| [1, s]).collect();
    let target: Vec<usize> = shape.iter().zip(reps).flat_map(|(&s, &r)| [r, s]).collect();
    let out = shape
        .iter()
        .zip(reps)
        .map(|(&s, &r)| {
            checked_size(
                "repeat",
                &format!("size {s} repeated {r} times"),
                s.checked_mul(r),
                location,
            )
        })
        .collect::<Result<Vec<usize>>>()?;
    try_numel("repeat", &out, location)?;
    let tiled = reshape_to(x, &interleaved).broadcast_to(&target);
    Ok(reshape_to(&tiled, &out))
}

/// `x[start:end:step]` along `dim`: a view for step 1, a gather otherwise.
#[track_caller]
pub(crate) fn slice(
    x: &Tensor,
    dim: isize,
    start: usize,
    end: usize,
    step: usize,
) -> Result<Tensor> {
    let location = Location::caller();
    if x.dim() == 0 {
        return Err(invalid_argument(
            "slice",
            "cannot be applied to a zero-dimensional tensor".into(),
            location,
        ));
    }
    let d = resolve("slice", x, dim, location)?;
    if step == 0 {
        return Err(invalid_argument("slice", "step must be positive".into(), location));
    }
    let n = x.shape()[d];
    let end = end.min(n);
    let start = start.min(end);
    if step == 1 {
        return narrow(x, d as isize, start, end - start);
    }
    let picks: Vec<i64> = (start..end).step_by(step).map(|i| i as i64).collect();
    let len = picks.len();
    crate::index::index_select(x, d as isize, &Tensor::from_vec(picks, &[len]))
}

/// `x` reversed along each of `dims`, one recorded op whose gradient (and tangent) is the
/// incoming one flipped the same way.
#[track_caller]
pub(crate) fn flip(x: &Tensor, dims: &[isize]) -> Result<Tensor> {
    let location = Location::caller();
    let mut flipped = vec![false; x.dim()];
    for &dim in dims {
        let d = resolve("flip", x, dim, location)?;
        if flipped[d] {
            return Err(invalid_argument(
                "flip",
                format!("dimension {d} appears more than once in {dims:?}"),
                location,
            ));
        }
        flipped[d] = true;
    }
    Ok(flip_dims(x, &flipped, location))
}

/// [`flip`] of the dimensions marked in `flipped`, checked.
fn flip_dims(x: &Tensor, flipped: &[bool], location: &'static Location<'static>) -> Tensor {
    use tapegrad_kernels::flip::flip as kernel;
    // Reversing a dimension that repeats one element (stride 0) changes nothing: a
    // broadcast gradient stays a view (one that cannot be written in place).
    let strides = x.layout().strides();
    let flipped: Vec<bool> = (flipped.iter().zip(strides).zip(x.shape()))
        .map(|((&f, &s), &n)| f && (s != 0 || n == 1))
        .collect();
    if !flipped.iter().any(|&f| f) {
        return x.clone();
    }
    let flipped = &flipped[..];
    let shape = x.shape();
    let storage =
        tapegrad_tape::map_storage!(&x.contiguous_storage(), v => kernel(v, shape, flipped));
    let out = Tensor::from_storage(storage, Layout::contiguous(shape));
    record_with_tangent(
        "flip",
        location,
        &[x],
        out,
        || {
            let flipped = flipped.to_vec();
            Backward::new(move |ctx| smallvec![Some(flip_dims(ctx.grad(), &flipped, location))])
        },
        |ctx| ctx.map(|v| flip_dims(v, flipped, location)),
    )
}

/// Shape operations (views where possible, copies otherwise), as methods. In the prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 6.0, 1.0);
/// let y = x.reshape(&[2, 3]).t();
/// assert_eq!(y.shape(), &[3, 2]);
/// assert_eq!(y.narrow(0, 1, 1).to_vec::<f32>(), vec![1.0, 4.0]);
/// ```
pub trait ShapeOps {
    /// The same elements in a new shape; one size may be `-1` to be inferred. A view of the
    /// same storage where strides can express it (always when the tensor is contiguous), as
    /// PyTorch's `reshape`; otherwise, and for a broadcast tensor (one that repeats elements
    /// through zero strides), a copy.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 6]).reshape(&[3, -1]).shape(), &[3, 4]);
    /// ```
    #[track_caller]
    fn reshape(&self, shape: &[isize]) -> Tensor {
        or_panic(self.try_reshape(shape))
    }

    /// [`ShapeOps::reshape`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2, 3]);
    /// assert!(x.try_reshape(&[4, -1]).is_err()); // 6 elements do not fill rows of 4
    /// assert!(x.try_reshape(&[-1, -1]).is_err()); // only one size may be inferred
    /// ```
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> Result<Tensor>;

    /// Dimensions `start..=end` merged into one.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).flatten(1, -1).shape(), &[2, 12]);
    /// ```
    #[track_caller]
    fn flatten(&self, start: isize, end: isize) -> Tensor {
        or_panic(self.try_flatten(start, end))
    }

    /// [`ShapeOps::flatten`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3, 4]).try_flatten(2, 1).is_err()); // start after end
    /// ```
    #[track_caller]
    fn try_flatten(&self, start: isize, end: isize) -> Result<Tensor>;

    /// All size-1 dimensions removed.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1, 3, 1]).squeeze().shape(), &[3]);
    /// ```
    #[track_caller]
    fn squeeze(&self) -> Tensor;

    /// Dimension `dim` removed if it has size 1.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1, 3, 1]).squeeze_dim(0).shape(), &[3, 1]);
    /// ```
    #[track_caller]
    fn squeeze_dim(&self, dim: isize) -> Tensor {
        or_panic(self.try_squeeze_dim(dim))
    }

    /// [`ShapeOps::squeeze_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[1, 3]).try_squeeze_dim(2).is_err());
    /// ```
    #[track_caller]
    fn try_squeeze_dim(&self, dim: isize) -> Result<Tensor>;

    /// A size-1 dimension inserted at `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[3]).unsqueeze(-1).shape(), &[3, 1]);
    /// ```
    #[track_caller]
    fn unsqueeze(&self, dim: isize) -> Tensor {
        or_panic(self.try_unsqueeze(dim))
    }

    /// [`ShapeOps::unsqueeze`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3]);
    /// assert_eq!(x.try_unsqueeze(1).unwrap().shape(), &[3, 1]); // one past the last is allowed
    /// assert!(x.try_unsqueeze(2).is_err());
    /// ```
    #[track_caller]
    fn try_unsqueeze(&self, dim: isize) -> Result<Tensor>;

    /// The view with dimensions `a` and `b` swapped (no copy).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).transpose(0, -1).shape(), &[4, 3, 2]);
    /// ```
    #[track_caller]
    fn transpose(&self, a: isize, b: isize) -> Tensor {
        or_panic(self.try_transpose(a, b))
    }

    /// [`ShapeOps::transpose`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_transpose(0, 2).is_err());
    /// ```
    #[track_caller]
    fn try_transpose(&self, a: isize, b: isize) -> Result<Tensor>;

    /// The transpose of a matrix (PyTorch's `t()`); vectors are returned unchanged.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3]).t().shape(), &[3, 2]);
    /// ```
    #[track_caller]
    fn t(&self) -> Tensor {
        self.transpose(0, -1)
    }

    /// The view whose dimension `i` is this tensor's dimension `dims[i]`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).permute(&[2, 0, 1]).shape(), &[4, 2, 3]);
    /// ```
    #[track_caller]
    fn permute(&self, dims: &[isize]) -> Tensor {
        or_panic(self.try_permute(dims))
    }

    /// [`ShapeOps::permute`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_permute(&[0, 0]).is_err()); // not a permutation
    /// ```
    #[track_caller]
    fn try_permute(&self, dims: &[isize]) -> Result<Tensor>;

    /// The view broadcast to `shape`, where `-1` keeps a dimension (PyTorch's `expand`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[3, 1]).expand(&[-1, 4]).shape(), &[3, 4]);
    /// ```
    #[track_caller]
    fn expand(&self, shape: &[isize]) -> Tensor;

    /// `len` elements of `dim` from `start`, as a view.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]);
    /// assert_eq!(x.narrow(1, 1, 2).to_vec::<f32>(), vec![1.0, 2.0, 4.0, 5.0]);
    /// ```
    #[track_caller]
    fn narrow(&self, dim: isize, start: usize, len: usize) -> Tensor {
        or_panic(self.try_narrow(dim, start, len))
    }

    /// [`ShapeOps::narrow`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_narrow(0, 2, 3).is_err()); // runs past the end
    /// ```
    #[track_caller]
    fn try_narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor>;

    /// Windows of `size` elements along `dim`, `step` apart (PyTorch's `Tensor.unfold`):
    /// `dim` becomes the number of windows, and a last dimension of `size` is added.
    /// Differentiable to any order (overlapping windows sum their gradients). Unlike
    /// PyTorch's, the result is a copy, not a view: overlapping windows hold their shared
    /// elements once each.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 5.0, 1.0);
    /// let w = x.unfold(0, 2, 2); // [0, 1], [2, 3]: the last element starts no whole window
    /// assert_eq!((w.shape(), w.to_vec::<f32>()), (&[2, 2][..], vec![0.0, 1.0, 2.0, 3.0]));
    /// ```
    #[track_caller]
    fn unfold(&self, dim: isize, size: usize, step: usize) -> Tensor {
        or_panic(self.try_unfold(dim, size, step))
    }

    /// [`ShapeOps::unfold`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[3]).try_unfold(0, 4, 1).is_err()); // wider than the dimension
    /// ```
    #[track_caller]
    fn try_unfold(&self, dim: isize, size: usize, step: usize) -> Result<Tensor>;

    /// Elements `start..end` of `dim` taking every `step`-th (Python's `x[start:end:step]`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(
    ///     Tensor::arange(0.0, 6.0, 1.0).slice(0, 1, 6, 2).to_vec::<f32>(),
    ///     vec![1.0, 3.0, 5.0]
    /// );
    /// ```
    #[track_caller]
    fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Tensor {
        or_panic(self.try_slice(dim, start, end, step))
    }

    /// [`ShapeOps::slice`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 4.0, 1.0);
    /// assert_eq!(x.try_slice(0, 2, 99, 1).unwrap().to_vec::<f32>(), vec![2.0, 3.0]); // end is clamped
    /// assert!(x.try_slice(0, 0, 4, 0).is_err()); // step 0
    /// ```
    #[track_caller]
    fn try_slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor>;

    /// Pieces of `size` along `dim` (the last may be smaller), as views.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let parts = Tensor::zeros(&[5, 2]).split(2, 0);
    /// assert_eq!(parts.iter().map(|p| p.shape()[0]).collect::<Vec<_>>(), vec![2, 2, 1]);
    /// ```
    #[track_caller]
    fn split(&self, size: usize, dim: isize) -> Vec<Tensor> {
        or_panic(self.try_split(size, dim))
    }

    /// [`ShapeOps::split`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_split(0, 0).is_err());
    /// ```
    #[track_caller]
    fn try_split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>>;

    /// The slices along `dim`, that dimension dropped, as views: PyTorch's `unbind`, the
    /// steps of a sequence one by one.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let steps = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]).unbind(1);
    /// assert_eq!(steps.len(), 3);
    /// assert_eq!(steps[2].to_vec::<f32>(), vec![2.0, 5.0]);
    /// ```
    #[track_caller]
    fn unbind(&self, dim: isize) -> Vec<Tensor> {
        or_panic(self.try_unbind(dim))
    }

    /// [`ShapeOps::unbind`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_unbind(2).is_err());
    /// ```
    #[track_caller]
    fn try_unbind(&self, dim: isize) -> Result<Vec<Tensor>>;

    /// `chunks` pieces of (nearly) equal size along `dim`.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[6]).chunk(3, 0).len(), 3);
    /// ```
    #[track_caller]
    fn chunk(&self, chunks: usize, dim: isize) -> Vec<Tensor> {
        or_panic(self.try_chunk(chunks, dim))
    }

    /// [`ShapeOps::chunk`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[4]).try_chunk(0, 0).is_err());
    /// ```
    #[track_caller]
    fn try_chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>>;

    /// Constant padding: `pads[i] = (before, after)` for the `i`-th dimension from the end
    /// (PyTorch's `F.pad` order).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 2]).pad(&[(1, 1), (0, 2)], 0.0).shape(), &[4, 4]);
    /// ```
    #[track_caller]
    fn pad(&self, pads: &[(usize, usize)], value: f64) -> Tensor {
        or_panic(self.try_pad(pads, value))
    }

    /// [`ShapeOps::pad`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_pad(&[(1, 1), (1, 1)], 0.0).is_err()); // more pads than dimensions
    /// ```
    #[track_caller]
    fn try_pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor>;

    /// This tensor tiled `reps[i]` times along each dimension (PyTorch's `repeat`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(x.repeat(&[2, 2]).to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    fn repeat(&self, reps: &[usize]) -> Tensor {
        or_panic(self.try_repeat(reps))
    }

    /// [`ShapeOps::repeat`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 2]).try_repeat(&[2]).is_err()); // fewer reps than dimensions
    /// ```
    #[track_caller]
    fn try_repeat(&self, reps: &[usize]) -> Result<Tensor>;

    /// The elements in reverse order along each of `dims` (PyTorch's `torch.flip`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]);
    /// assert_eq!(x.flip(&[-1]).to_vec::<f32>(), vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    /// assert_eq!(x.flip(&[0, 1]).to_vec::<f32>(), vec![5.0, 4.0, 3.0, 2.0, 1.0, 0.0]);
    /// ```
    #[track_caller]
    fn flip(&self, dims: &[isize]) -> Tensor {
        or_panic(self.try_flip(dims))
    }

    /// [`ShapeOps::flip`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_flip(&[0, -1]).is_err()); // the same dimension twice
    /// ```
    #[track_caller]
    fn try_flip(&self, dims: &[isize]) -> Result<Tensor>;

    /// The elements shifted circularly by `shifts[i]` along `dims[i]`: those leaving one end
    /// come back at the other (PyTorch's `torch.roll`). With no `dims`, one shift over the
    /// flattened tensor, keeping its shape.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 6.0, 1.0).reshape(&[2, 3]);
    /// assert_eq!(x.roll(&[1], &[1]).to_vec::<f32>(), vec![2.0, 0.0, 1.0, 5.0, 3.0, 4.0]);
    /// assert_eq!(x.roll(&[-1], &[]).to_vec::<f32>(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 0.0]);
    /// ```
    #[track_caller]
    fn roll(&self, shifts: &[isize], dims: &[isize]) -> Tensor {
        or_panic(self.try_roll(shifts, dims))
    }

    /// [`ShapeOps::roll`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 2]).try_roll(&[1, 1], &[0]).is_err()); // one shift per dim
    /// ```
    #[track_caller]
    fn try_roll(&self, shifts: &[isize], dims: &[isize]) -> Result<Tensor>;

    /// Each element repeated `repeats` times in a row along `dim` (PyTorch's
    /// `repeat_interleave(repeats, dim)`): `[a, b]` twice is `[a, a, b, b]`. Grouped-query
    /// attention uses it to share each key and value head among several query heads.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::arange(0.0, 4.0, 1.0).reshape(&[2, 2]);
    /// assert_eq!(x.repeat_interleave(2, 0).to_vec::<f32>(), vec![0., 1., 0., 1., 2., 3., 2., 3.]);
    /// assert_eq!(x.repeat_interleave(2, -1).to_vec::<f32>(), vec![0., 0., 1., 1., 2., 2., 3., 3.]);
    /// ```
    #[track_caller]
    fn repeat_interleave(&self, repeats: usize, dim: isize) -> Tensor {
        or_panic(self.try_repeat_interleave(repeats, dim))
    }

    /// [`ShapeOps::repeat_interleave`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_repeat_interleave(2, 2).is_err()); // no dimension 2
    /// ```
    #[track_caller]
    fn try_repeat_interleave(&self, repeats: usize, dim: isize) -> Result<Tensor>;

    /// The view with dimension `source` moved to position `destination` and the others in
    /// their order (PyTorch's `torch.movedim`), e.g. channels last to channels first.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 5, 5, 3]).movedim(-1, 1).shape(), &[2, 3, 5, 5]);
    /// ```
    #[track_caller]
    fn movedim(&self, source: isize, destination: isize) -> Tensor {
        or_panic(self.try_movedim(source, destination))
    }

    /// [`ShapeOps::movedim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_movedim(0, 2).is_err()); // no position 2
    /// ```
    #[track_caller]
    fn try_movedim(&self, source: isize, destination: isize) -> Result<Tensor>;

    /// The view broadcast to `other`'s shape (PyTorch's `expand_as`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let bias = Tensor::ones(&[1, 3]);
    /// assert_eq!(bias.expand_as(&Tensor::zeros(&[4, 3])).shape(), &[4, 3]);
    /// ```
    #[track_caller]
    fn expand_as(&self, other: &Tensor) -> Tensor;

    /// The same elements in `other`'s shape (PyTorch's `reshape_as`); panics, as
    /// [`ShapeOps::reshape`] does, when the element counts differ.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let flat = Tensor::arange(0.0, 6.0, 1.0);
    /// assert_eq!(flat.reshape_as(&Tensor::zeros(&[2, 3])).shape(), &[2, 3]);
    /// ```
    #[track_caller]
    fn reshape_as(&self, other: &Tensor) -> Tensor;
}

impl ShapeOps for Tensor {
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> Result<Tensor> {
        reshape(self, shape)
    }
    #[track_caller]
    fn try_flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        flatten(self, start, end)
    }
    #[track_caller]
    fn squeeze(&self) -> Tensor {
        or_panic(squeeze(self, None))
    }
    #[track_caller]
    fn try_squeeze_dim(&self, dim: isize) -> Result<Tensor> {
        squeeze(self, Some(dim))
    }
    #[track_caller]
    fn try_unsqueeze(&self, dim: isize) -> Result<Tensor> {
        unsqueeze(self, dim)
    }
    #[track_caller]
    fn try_transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        transpose(self, a, b)
    }
    #[track_caller]
    fn try_permute(&self, dims: &[isize]) -> Result<Tensor> {
        permute(self, dims)
    }
    #[track_caller]
    fn expand(&self, shape: &[isize]) -> Tensor {
        let lead = shape.len().saturating_sub(self.dim());
        let target: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(
                |(i, &s)| {
                    if s < 0 && i >= lead { self.shape()[i - lead] } else { s.max(0) as usize }
                },
            )
            .collect();
        self.broadcast_to(&target)
    }
    #[track_caller]
    fn try_narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        narrow(self, dim, start, len)
    }
    #[track_caller]
    fn try_unfold(&self, dim: isize, size: usize, step: usize) -> Result<Tensor> {
        crate::unfold::windows(self, dim, size, step)
    }
    #[track_caller]
    fn try_slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        slice(self, dim, start, end, step)
    }
    #[track_caller]
    fn try_split(&self, size: usize, dim: isize) -> Result<Vec<Tensor>> {
        split(self, size, dim)
    }
    #[track_caller]
    fn try_unbind(&self, dim: isize) -> Result<Vec<Tensor>> {
        unbind(self, dim)
    }
    #[track_caller]
    fn try_chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        chunk(self, chunks, dim)
    }
    #[track_caller]
    fn try_pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
        pad(self, pads, value)
    }
    #[track_caller]
    fn try_repeat(&self, reps: &[usize]) -> Result<Tensor> {
        repeat(self, reps)
    }
    #[track_caller]
    fn try_roll(&self, shifts: &[isize], dims: &[isize]) -> Result<Tensor> {
        crate::rearrange::roll(self, shifts, dims)
    }
    #[track_caller]
    fn expand_as(&self, other: &Tensor) -> Tensor {
        self.broadcast_to(other.shape())
    }
    #[track_caller]
    fn reshape_as(&self, other: &Tensor) -> Tensor {
        let shape: Vec<isize> = other.shape().iter().map(|&s| s as isize).collect();
        self.reshape(&shape)
    }
    #[track_caller]
    fn try_movedim(&self, source: isize, destination: isize) -> Result<Tensor> {
        crate::rearrange::movedim(self, source, destination)
    }
    #[track_caller]
    fn try_repeat_interleave(&self, repeats: usize, dim: isize) -> Result<Tensor> {
        crate::rearrange::repeat_interleave(self, repeats, dim)
    }
    #[track_caller]
    fn try_flip(&self, dims: &[isize]) -> Result<Tensor> {
        flip(self, dims)
    }
}
