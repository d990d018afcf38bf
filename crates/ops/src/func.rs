//! Function transforms over functions of one or several tensors (PyTorch's `torch.func` and
//! `torch.autograd.functional`): [`vjp`], [`jvp`], [`jacrev`], [`jacfwd`], [`jacobian`],
//! [`hessian`] and [`hvp`]. Each works inside and outside `no_grad`, and composes: when an
//! input already takes part in an outer computation (it tracks gradients), the result is
//! recorded, so it can be differentiated again, and a function may itself call `grad`
//! (with `create_graph`) or another transform.
//!
//! Cost, in passes over the graph of `f` (m output elements, n input elements in all). A
//! forward pass in forward mode computes each op's tangent beside its value (about twice
//! a plain forward pass); a reverse sweep costs about as much as a forward pass:
//!
//! | transform | forward passes | reverse sweeps |
//! |---|---|---|
//! | `vjp` | 1 | 1 |
//! | `jvp` | 1, in forward mode | 0 |
//! | `jacrev` | 1 | m |
//! | `jacfwd` | n, in forward mode | 0 |
//! | `hvp` | 1 | 2 (the Hessian is never formed) |
//! | `hessian` | 1 | n + 1 |
//!
//! `jvp` and `jacfwd` use [forward mode](tapegrad_tape::forward_ad). Called while a dual
//! level is already open (inside another forward-mode transform), where levels cannot
//! nest, they differentiate the vector-Jacobian product with respect to its vector
//! instead: two reverse sweeps for `jvp`, n + 1 for `jacfwd`.
//!
//! ```
//! use tapegrad_ops::{func, prelude::*};
//! use tapegrad_tape::{DType, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
//! // f(x) = sum(x^3): gradient 3x^2, Hessian diag(6x).
//! let f = |t: &[Tensor]| t[0].pow(3.0).sum();
//! let h = func::hessian(f, &[x.clone()]);
//! assert_eq!(h[0][0].to_vec::<f64>(), vec![6.0, 0.0, 0.0, 12.0]);
//! let (_, hv) = func::hvp(f, &[x], &[Tensor::from_vec(vec![1.0f64, 1.0], &[2])]);
//! assert_eq!(hv[0].to_vec::<f64>(), vec![6.0, 12.0]);
//! ```

use std::panic::Location;

use tapegrad_tape::{
    DType, Error, GradOptions, Result, Tensor, enable_grad, forward_ad, get_rng_state, or_panic,
    set_rng_state, try_grad,
};

use crate::shape::reshape_to;

/// How [`jacobian`] builds the matrix.
///
/// ```
/// assert_eq!(tapegrad_ops::func::Strategy::default(), tapegrad_ops::func::Strategy::Auto);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Rows by reverse mode when there are no more outputs than inputs, else columns.
    #[default]
    Auto,
    /// One reverse sweep per output element ([`jacrev`]).
    Reverse,
    /// One product with a tangent per input element ([`jacfwd`]).
    Forward,
}

/// The inputs as `f` will see them: each one that already tracks gradients as it is (so
/// results stay connected to an outer computation), the others as fresh leaves (a dual
/// tensor's keeping its tangent). Returns them and whether any was tracked or dual (then
/// results keep their graph and tangents).
fn prepare(inputs: &[Tensor]) -> (Vec<Tensor>, bool) {
    let dual = |x: &Tensor| {
        forward_ad::is_dual_level_open() && forward_ad::unpack_dual(x).tangent.is_some()
    };
    let outer = inputs.iter().any(|x| x.tracks_grad() || dual(x));
    let xs = inputs
        .iter()
        .map(|x| {
            if x.tracks_grad() || !x.dtype().is_float() {
                x.clone()
            } else {
                x.clone().requires_grad()
            }
        })
        .collect();
    (xs, outer)
}

/// The results a transform returns: recorded when composing, plain values otherwise.
fn finish(t: Tensor, outer: bool) -> Tensor {
    if outer { t } else { t.detach() }
}

/// `v`-weighted gradients of `y` with respect to `xs` (zeros where `y` does not depend on
/// an input).
#[track_caller]
fn pullback(y: &Tensor, xs: &[Tensor], v: &Tensor, create_graph: bool) -> Result<Vec<Tensor>> {
    if !y.tracks_grad() {
        return Ok(xs.iter().map(Tensor::zeros_like).collect());
    }
    let inputs: Vec<&Tensor> = xs.iter().filter(|x| x.tracks_grad()).collect();
    let options = GradOptions::new()
        .grad_outputs(vec![v.clone()])
        .retain_graph(true)
        .create_graph(create_graph)
        .allow_unused(true);
    let mut grads = try_grad(&[y], &inputs, options)?.into_iter();
    Ok(xs
        .iter()
        .map(|x| {
            let g = if x.tracks_grad() { grads.next().flatten() } else { None };
            g.unwrap_or_else(|| x.zeros_like())
        })
        .collect())
}

#[track_caller]
fn check_like(op: &'static str, what: &str, given: &[Tensor], like: &[&Tensor]) -> Result<()> {
    let location = Location::caller();
    if given.len() != like.len() {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{} {what} for {} tensors", given.len(), like.len()),
            location,
        });
    }
    for (i, (g, l)) in given.iter().zip(like).enumerate() {
        if g.shape() != l.shape() {
            return Err(Error::Shape {
                op,
                message: format!(
                    "{what} {i} has shape {:?}, its tensor has shape {:?}",
                    g.shape(),
                    l.shape()
                ),
                location,
            });
        }
    }
    Ok(())
}

/// `f(inputs)` and the vector-Jacobian products `vᵀ ∂f/∂inputsᵢ` (PyTorch's `vjp`); `v` is
/// shaped like the output. One forward pass, one reverse sweep.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let (y, g) = func::vjp(|t| t[0].square(), &[x], &Tensor::from_vec(vec![1.0f64, 10.0], &[2]));
/// assert_eq!((y.to_vec::<f64>(), g[0].to_vec::<f64>()), (vec![1.0, 4.0], vec![2.0, 40.0]));
/// ```
#[track_caller]
pub fn vjp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    v: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    or_panic(try_vjp(f, inputs, v))
}

/// [`vjp`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2]);
/// assert!(func::try_vjp(|t| t[0].square(), &[x], &Tensor::ones(&[3])).is_err()); // v's shape
/// ```
#[track_caller]
pub fn try_vjp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    v: &Tensor,
) -> Result<(Tensor, Vec<Tensor>)> {
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    let y = f(&xs);
    check_like("vjp", "v", std::slice::from_ref(v), &[&y])?;
    let grads = pullback(&y, &xs, &v.to_dtype(y.dtype()), outer)?;
    Ok((finish(y, outer), grads.into_iter().map(|g| finish(g, outer)).collect()))
}

/// `f(inputs)` and the Jacobian-vector product `Σᵢ ∂f/∂inputsᵢ · tangentsᵢ` (PyTorch's
/// `jvp`): one forward pass in forward mode, each input carrying its tangent.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let (x, y) = (Tensor::from_vec(vec![3.0f64], &[1]), Tensor::from_vec(vec![5.0f64], &[1]));
/// // f(x, y) = x y: the derivative along (1, 2) is y + 2x.
/// let (_, d) = func::jvp(|t| &t[0] * &t[1], &[x, y], &[Tensor::ones_dtype(&[1], tapegrad_tape::DType::F64), Tensor::full_dtype(&[1], 2.0, tapegrad_tape::DType::F64)]);
/// assert_eq!(d.item(), 11.0);
/// ```
#[track_caller]
pub fn jvp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    tangents: &[Tensor],
) -> (Tensor, Tensor) {
    or_panic(try_jvp(f, inputs, tangents))
}

/// [`jvp`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::func;
/// use tapegrad_tape::Tensor;
/// assert!(func::try_jvp(|t| t[0].clone(), &[Tensor::ones(&[2])], &[]).is_err()); // one tangent per input
/// ```
#[track_caller]
pub fn try_jvp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    tangents: &[Tensor],
) -> Result<(Tensor, Tensor)> {
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    check_like("jvp", "tangent", tangents, &xs.iter().collect::<Vec<_>>())?;
    if forward_ad::is_dual_level_open() {
        let y = f(&xs);
        let transposed = Transposed::new(&y, &xs)?;
        let jv = transposed.apply(tangents, outer)?;
        return Ok((finish(y, outer), finish(jv, outer)));
    }
    let (y, jv) = push_forward(&f, &xs, |i, x| Some(tangents[i].to_dtype(x.dtype())))?;
    Ok((finish(y, outer), finish(jv, outer)))
}

/// `f(xs)` and its tangent in a new dual level, input `i` carrying `tangent(i, x)` (none:
/// a constant).
#[track_caller]
fn push_forward(
    f: impl Fn(&[Tensor]) -> Tensor,
    xs: &[Tensor],
    tangent: impl Fn(usize, &Tensor) -> Option<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let _level = forward_ad::try_dual_level()?;
    let duals = xs
        .iter()
        .enumerate()
        .map(|(i, x)| match tangent(i, x) {
            Some(v) if x.dtype().is_float() => forward_ad::try_make_dual(x, &v),
            _ => Ok(x.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    let forward_ad::UnpackedDual { primal, tangent } = forward_ad::unpack_dual(&f(&duals));
    let jv = tangent.unwrap_or_else(|| primal.zeros_like());
    Ok((primal, jv))
}

/// `Jᵀ u` recorded as a function of a free vector `u`: differentiating `Σᵢ (Jᵀu)ᵢ · vᵢ` with
/// respect to `u` gives `J v`, one reverse sweep per `v`.
struct Transposed {
    u: Tensor,
    jt_u: Vec<Tensor>,
    output_shape: Vec<usize>,
}

impl Transposed {
    #[track_caller]
    fn new(y: &Tensor, xs: &[Tensor]) -> Result<Transposed> {
        let u = y.zeros_like().detach().requires_grad();
        let jt_u = pullback(y, xs, &u, true)?;
        Ok(Transposed { u, jt_u, output_shape: y.shape().to_vec() })
    }

    /// `J v` for tangents `v` (one per input).
    #[track_caller]
    fn apply(&self, v: &[Tensor], create_graph: bool) -> Result<Tensor> {
        let Some(total) = dot(&self.jt_u, v) else {
            return Ok(Tensor::zeros_dtype(&self.output_shape, self.u.dtype()));
        };
        let options =
            GradOptions::new().retain_graph(true).create_graph(create_graph).allow_unused(true);
        let jv = try_grad(&[&total], &[&self.u], options)?.remove(0);
        Ok(jv.unwrap_or_else(|| Tensor::zeros_dtype(&self.output_shape, self.u.dtype())))
    }
}

/// `Σᵢ gᵢ · vᵢ` over the gradients that depend on something (recorded, so it can be
/// differentiated); `None` when none does.
fn dot(grads: &[Tensor], v: &[Tensor]) -> Option<Tensor> {
    grads
        .iter()
        .zip(v)
        .filter(|(g, _)| g.tracks_grad())
        .map(|(g, t)| (g * &t.to_dtype(g.dtype())).sum_to_shape(&[]))
        .reduce(|sum, term| &sum + &term)
}

/// A block of a Jacobian (or Hessian) of `shape = outer ++ inner` from its flattened rows
/// or columns, stacked along `dim` (0: rows, 1: columns); zeros when there are none.
fn block(
    parts: &[Tensor],
    dim: usize,
    (outer, inner): (&[usize], &[usize]),
    dtype: DType,
) -> Tensor {
    let shape: Vec<usize> = outer.iter().chain(inner).copied().collect();
    if parts.is_empty() {
        return Tensor::zeros_dtype(&shape, dtype);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    reshape_to(&crate::stack(&refs, dim as isize), &shape)
}

/// One basis vector: 1 at flat position `k` of `shape`.
fn basis(shape: &[usize], k: usize, like: &Tensor) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v = vec![0.0f64; n];
    v[k] = 1.0;
    Tensor::from_vec(v, shape).to_dtype(like.dtype())
}

/// The Jacobian of each input, shaped `output.shape ++ input.shape`, one reverse sweep per
/// output element (PyTorch's `jacrev`).
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let j = func::jacrev(|t| t[0].cumsum(0), &[x]);
/// assert_eq!(j[0].to_vec::<f64>(), vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
/// ```
#[track_caller]
pub fn jacrev(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Vec<Tensor> {
    or_panic(try_jacrev(f, inputs))
}

/// [`jacrev`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::func;
/// use tapegrad_tape::Tensor;
/// assert!(func::try_jacrev(|t| t[0].clone(), &[Tensor::ones(&[2])]).is_ok());
/// ```
#[track_caller]
pub fn try_jacrev(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    let y = f(&xs);
    jacobian_by_rows(&y, &xs, outer)
}

#[track_caller]
fn jacobian_by_rows(y: &Tensor, xs: &[Tensor], outer: bool) -> Result<Vec<Tensor>> {
    let m = y.numel();
    let mut rows: Vec<Vec<Tensor>> = vec![Vec::with_capacity(m); xs.len()];
    for k in 0..m {
        let grads = pullback(y, xs, &basis(y.shape(), k, y), outer)?;
        for (row, g) in rows.iter_mut().zip(grads) {
            row.push(reshape_to(&g, &[g.numel()]));
        }
    }
    Ok(xs
        .iter()
        .zip(rows)
        .map(|(x, row)| finish(block(&row, 0, (y.shape(), x.shape()), y.dtype()), outer))
        .collect())
}

/// The Jacobian of each input, shaped `output.shape ++ input.shape`, one column per input
/// element, each a forward pass in forward mode (PyTorch's `jacfwd`): the cheaper one when
/// the output is larger than the input. `f` runs once per column, each time from the same
/// random state (dropout draws the same mask), so other side effects of `f` (a training
/// BatchNorm's running statistics) happen once per column; integer inputs get zero
/// columns without a pass.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![2.0f64], &[1]);
/// let j = func::jacfwd(|t| t[0].expand(&[3]).mul(&Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])), &[x]);
/// assert_eq!(j[0].to_vec::<f64>(), vec![1.0, 2.0, 3.0]);
/// ```
#[track_caller]
pub fn jacfwd(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Vec<Tensor> {
    or_panic(try_jacfwd(f, inputs))
}

/// [`jacfwd`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::func;
/// use tapegrad_tape::Tensor;
/// assert!(func::try_jacfwd(|t| t[0].clone(), &[Tensor::ones(&[2])]).is_ok());
/// ```
#[track_caller]
pub fn try_jacfwd(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    if forward_ad::is_dual_level_open() {
        let y = f(&xs);
        return jacobian_by_transposed_columns(&y, &xs, outer);
    }
    jacobian_by_forward_columns(&f, &xs, None, outer)
}

/// The Jacobian column by column, one forward-mode pass of `f` per input element. `shape`
/// is the output's if known (it is needed when there are no columns).
#[track_caller]
fn jacobian_by_forward_columns(
    f: &impl Fn(&[Tensor]) -> Tensor,
    xs: &[Tensor],
    mut shape: Option<Vec<usize>>,
    outer: bool,
) -> Result<Vec<Tensor>> {
    let mut columns: Vec<Vec<Tensor>> = vec![Vec::new(); xs.len()];
    let mut dtype = None;
    // Every pass starts from the same random state, so that dropout and other random ops
    // make each column of one and the same function.
    let rng = get_rng_state();
    for (i, x) in xs.iter().enumerate().filter(|(_, x)| x.dtype().is_float()) {
        for k in 0..x.numel() {
            set_rng_state(rng)?;
            let (y, jv) = push_forward(f, xs, |j, x| (j == i).then(|| basis(x.shape(), k, x)))?;
            columns[i].push(reshape_to(&jv, &[y.numel()]));
            (shape, dtype) = (Some(y.shape().to_vec()), Some(y.dtype()));
        }
    }
    let (out_shape, dtype) = match (shape, dtype) {
        (Some(s), Some(d)) => (s, d),
        _ => {
            let y = f(xs);
            (y.shape().to_vec(), y.dtype())
        }
    };
    Ok(xs
        .iter()
        .zip(columns)
        .map(|(x, cols)| finish(block(&cols, 1, (&out_shape, x.shape()), dtype), outer))
        .collect())
}

/// The Jacobian column by column through the transposed graph (inside an open dual level).
#[track_caller]
fn jacobian_by_transposed_columns(y: &Tensor, xs: &[Tensor], outer: bool) -> Result<Vec<Tensor>> {
    let transposed = Transposed::new(y, xs)?;
    let zeros: Vec<Tensor> = xs.iter().map(Tensor::zeros_like).collect();
    let mut out = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        let mut columns = Vec::with_capacity(x.numel());
        for k in 0..x.numel() {
            let mut tangents = zeros.clone();
            tangents[i] = basis(x.shape(), k, x);
            let jv = transposed.apply(&tangents, outer)?;
            columns.push(reshape_to(&jv, &[y.numel()]));
        }
        out.push(finish(block(&columns, 1, (y.shape(), x.shape()), y.dtype()), outer));
    }
    Ok(out)
}

/// The Jacobian of each input by `strategy` (see [`Strategy`]).
///
/// ```
/// use tapegrad_ops::{func::{self, Strategy}, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let f = |t: &[Tensor]| t[0].square();
/// let (a, b) = (func::jacobian(f, &[x.clone()], Strategy::Reverse), func::jacobian(f, &[x], Strategy::Forward));
/// assert_eq!(a[0].to_vec::<f64>(), b[0].to_vec::<f64>());
/// ```
#[track_caller]
pub fn jacobian(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    strategy: Strategy,
) -> Vec<Tensor> {
    or_panic(try_jacobian(f, inputs, strategy))
}

/// [`jacobian`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::func::{self, Strategy};
/// use tapegrad_tape::Tensor;
/// assert!(func::try_jacobian(|t| t[0].clone(), &[Tensor::ones(&[2])], Strategy::Auto).is_ok());
/// ```
#[track_caller]
pub fn try_jacobian(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    strategy: Strategy,
) -> Result<Vec<Tensor>> {
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    // `f` runs once to see its output; by columns in forward mode it runs again per input
    // element, the tangents going along.
    let y = f(&xs);
    let reverse = match strategy {
        Strategy::Reverse => true,
        Strategy::Forward => false,
        Strategy::Auto => y.numel() <= xs.iter().map(Tensor::numel).sum(),
    };
    if reverse {
        jacobian_by_rows(&y, &xs, outer)
    } else if forward_ad::is_dual_level_open() {
        jacobian_by_transposed_columns(&y, &xs, outer)
    } else {
        jacobian_by_forward_columns(&f, &xs, Some(y.shape().to_vec()), outer)
    }
}

/// The second derivatives of a scalar `f`: `h[i][j]` is `∂²f / ∂inputsᵢ ∂inputsⱼ`, shaped
/// `inputs[i].shape ++ inputs[j].shape` (PyTorch's `hessian`). One reverse sweep per input
/// element, after the one that builds the gradient.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let (x, y) = (Tensor::from_vec(vec![2.0f64], &[1]), Tensor::from_vec(vec![3.0f64], &[1]));
/// let h = func::hessian(|t| (&t[0] * &t[1]).square().sum(), &[x, y]); // (x y)^2
/// assert_eq!((h[0][0].item(), h[0][1].item(), h[1][1].item()), (18.0, 24.0, 8.0));
/// ```
#[track_caller]
pub fn hessian(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Vec<Vec<Tensor>> {
    or_panic(try_hessian(f, inputs))
}

/// [`hessian`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::func;
/// use tapegrad_tape::Tensor;
/// assert!(func::try_hessian(|t| t[0].clone(), &[Tensor::ones(&[2])]).is_err()); // not a scalar
/// ```
#[track_caller]
pub fn try_hessian(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<Vec<Vec<Tensor>>> {
    let location = Location::caller();
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    let y = f(&xs);
    if y.numel() != 1 {
        return Err(Error::InvalidArgument {
            op: "hessian",
            message: format!("the function must return one element, got shape {:?}", y.shape()),
            location,
        });
    }
    let grads = pullback(&y, &xs, &y.ones_like(), true)?;
    let mut h: Vec<Vec<Vec<Tensor>>> = vec![vec![Vec::new(); xs.len()]; xs.len()];
    for (i, g) in grads.iter().enumerate() {
        for k in 0..g.numel() {
            let second = pullback(g, &xs, &basis(g.shape(), k, g), outer)?;
            for (j, s) in second.into_iter().enumerate() {
                h[i][j].push(reshape_to(&s, &[s.numel()]));
            }
        }
    }
    Ok(h.into_iter()
        .enumerate()
        .map(|(i, row)| {
            row.into_iter()
                .enumerate()
                .map(|(j, parts)| {
                    finish(block(&parts, 0, (xs[i].shape(), xs[j].shape()), y.dtype()), outer)
                })
                .collect()
        })
        .collect())
}

/// `f(inputs)` and the Hessian-vector product `H v` of a scalar `f`, without forming the
/// Hessian: two reverse sweeps (PyTorch's `hvp`).
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let (y, hv) = func::hvp(|t| t[0].pow(3.0).sum(), &[x], &[Tensor::from_vec(vec![1.0f64, 0.0], &[2])]);
/// assert_eq!((y.item(), hv[0].to_vec::<f64>()), (9.0, vec![6.0, 0.0])); // H = diag(6x)
/// ```
#[track_caller]
pub fn hvp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    v: &[Tensor],
) -> (Tensor, Vec<Tensor>) {
    or_panic(try_hvp(f, inputs, v))
}

/// [`hvp`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_ops::{func, prelude::*};
/// use tapegrad_tape::Tensor;
/// assert!(func::try_hvp(|t| t[0].sum(), &[Tensor::ones(&[2])], &[Tensor::ones(&[3])]).is_err());
/// ```
#[track_caller]
pub fn try_hvp(
    f: impl Fn(&[Tensor]) -> Tensor,
    inputs: &[Tensor],
    v: &[Tensor],
) -> Result<(Tensor, Vec<Tensor>)> {
    let location = Location::caller();
    let _grad = enable_grad();
    let (xs, outer) = prepare(inputs);
    check_like("hvp", "v", v, &xs.iter().collect::<Vec<_>>())?;
    let y = f(&xs);
    if y.numel() != 1 {
        return Err(Error::InvalidArgument {
            op: "hvp",
            message: format!("the function must return one element, got shape {:?}", y.shape()),
            location,
        });
    }
    let grads = pullback(&y, &xs, &y.ones_like(), true)?;
    let hv = match dot(&grads, v) {
        Some(total) => pullback(&total, &xs, &total.ones_like(), outer)?,
        None => xs.iter().map(Tensor::zeros_like).collect(),
    };
    Ok((finish(y, outer), hv.into_iter().map(|h| finish(h, outer)).collect()))
}
