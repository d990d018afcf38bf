//! Elementwise functions of one tensor and their backward rules.

use std::panic::Location;

use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Element, Tensor, record};

use crate::elementwise::{map, map_with, unary_fn};

unary_fn!(Exp, |x| x.exp());
unary_fn!(Log, |x| x.ln());
unary_fn!(Tanh, |x| x.tanh());
unary_fn!(Sigmoid, |x| sigmoid(x));
unary_fn!(Relu, |x| if x > T::ZERO { x } else { T::ZERO });
unary_fn!(Step, |x| if x > T::ZERO { T::ONE } else { T::ZERO });

/// A logistic function that never overflows: `exp` is only taken of non-positive values.
#[inline(always)]
fn sigmoid<T: Element>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

#[track_caller]
pub(crate) fn exp(x: &Tensor) -> Tensor {
    record("exp", Location::caller(), &[x], map::<Exp>(x), || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.output())]).save_output()
    })
}

#[track_caller]
pub(crate) fn log(x: &Tensor) -> Tensor {
    record("log", Location::caller(), &[x], map::<Log>(x), || {
        Backward::new(|ctx| smallvec![Some(ctx.grad() / ctx.saved(0))]).save(x)
    })
}

#[track_caller]
pub(crate) fn tanh(x: &Tensor) -> Tensor {
    record("tanh", Location::caller(), &[x], map::<Tanh>(x), || {
        // d tanh = 1 - tanh^2, written in terms of the output so double backward
        // differentiates through it.
        Backward::new(|ctx| {
            let y = ctx.output();
            smallvec![Some(ctx.grad() * &(y * y).rsub_scalar(1.0))]
        })
        .save_output()
    })
}

#[track_caller]
pub(crate) fn sigmoid_op(x: &Tensor) -> Tensor {
    record("sigmoid", Location::caller(), &[x], map::<Sigmoid>(x), || {
        Backward::new(|ctx| {
            let y = ctx.output();
            smallvec![Some(ctx.grad() * &(y * &y.rsub_scalar(1.0)))]
        })
        .save_output()
    })
}

#[track_caller]
pub(crate) fn relu(x: &Tensor) -> Tensor {
    record("relu", Location::caller(), &[x], map::<Relu>(x), || {
        // The mask is a constant: relu's second derivative is zero almost everywhere.
        Backward::new(|ctx| smallvec![Some(ctx.grad() * &map::<Step>(ctx.saved(0)))]).save(x)
    })
}

#[track_caller]
pub(crate) fn pow_scalar(x: &Tensor, p: f64) -> Tensor {
    let value =
        if p == 2.0 { map_with(x, |v| v * v, |v| v * v) } else { map_with(x, |v| v.powf(p as f32), |v| v.powf(p)) };
    record("pow", Location::caller(), &[x], value, || {
        Backward::new(move |ctx| {
            let g = ctx.grad();
            let grad = if p == 0.0 {
                g.zeros_like()
            } else if p == 1.0 {
                g.clone()
            } else {
                g * &pow_scalar(ctx.saved(0), p - 1.0).mul_scalar(p)
            };
            smallvec![Some(grad)]
        })
        .save(x)
    })
}

#[track_caller]
pub(crate) fn pow_tensor(a: &Tensor, b: &Tensor) -> tapegrad_tape::Result<Tensor> {
    let location = Location::caller();
    let shape = tapegrad_tape::arith::broadcast_pair("pow", a, b, location)?;
    let ab = a.broadcast_to(&shape).detach();
    let bb = b.broadcast_to(&shape).detach();
    let la = ab.layout().clone();
    let lb = bb.layout().clone();
    use tapegrad_tape::{Storage, kernels, layout::Layout};
    let storage = match (ab.storage(), bb.storage()) {
        (Storage::F32(x), Storage::F32(y)) => Storage::from_vec(kernels::zip_map(&x, &la, &y, &lb, &shape, f32::powf)),
        (Storage::F64(x), Storage::F64(y)) => Storage::from_vec(kernels::zip_map(&x, &la, &y, &lb, &shape, f64::powf)),
        _ => unreachable!("dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&shape));
    Ok(record("pow", location, &[a, b], value, || {
        Backward::new(|ctx| {
            let (g, a, b, y) = (ctx.grad(), ctx.saved(0), ctx.saved(1), ctx.output());
            let ga = ctx.needs_input_grad(0).then(|| {
                // d a^b / da = b a^(b-1)
                (g * &(b * &pow_tensor(a, &b.sub_scalar(1.0)).expect("shapes checked"))).sum_to_shape(a.shape())
            });
            let gb = ctx.needs_input_grad(1).then(|| {
                // d a^b / db = a^b ln a, defined as 0 where a = 0 and b >= 0 (PyTorch's
                // convention), computed through a safe log so no NaN leaks in.
                let keep = map_with(a, |v| if v == 0.0 { 0.0 } else { 1.0 }, |v| if v == 0.0 { 0.0 } else { 1.0 });
                let safe_a = &(a * &keep) + &keep.rsub_scalar(1.0);
                (g * &(y * &log(&safe_a)) * &keep).sum_to_shape(b.shape())
            });
            smallvec![ga, gb]
        })
        .save(a)
        .save(b)
        .save_output()
    }))
}
