//! Custom differentiable operations: forward on values, backward as a vector-Jacobian
//! product (PyTorch's `torch.autograd.Function`).

use std::panic::Location;
use std::rc::Rc;

use crate::{Backward, Tensor, no_grad, record_with_tangent};

/// What a custom function's backward sees: its inputs and its output.
///
/// ```
/// # use tapegrad_tape::{Function, FunctionCtx, Tensor};
/// # struct F;
/// # impl Function for F {
/// #   fn name(&self) -> &'static str { "f" }
/// #   fn forward(&self, x: &[Tensor]) -> Tensor { x[0].clone() }
/// fn backward(&self, ctx: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
///     let _x = ctx.input(0);
///     let _y = ctx.output();
///     vec![Some(grad.clone())]
/// }
/// # }
/// ```
pub struct FunctionCtx<'a> {
    inputs: &'a [Tensor],
    output: &'a Tensor,
}

impl FunctionCtx<'_> {
    /// Input `i`, as passed to [`apply`].
    ///
    /// ```
    /// use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Mul; // ab: each input's gradient is the other input
    /// impl Function for Mul {
    ///     fn name(&self) -> &'static str {
    ///         "mul"
    ///     }
    ///     fn forward(&self, x: &[Tensor]) -> Tensor {
    ///         &x[0] * &x[1]
    ///     }
    ///     fn backward(&self, ctx: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
    ///         vec![Some(g * ctx.input(1)), Some(g * ctx.input(0))]
    ///     }
    /// }
    /// let (a, b) = (Tensor::full(&[1], 2.0).requires_grad(), Tensor::full(&[1], 5.0).requires_grad());
    /// apply(Mul, &[&a, &b]).backward();
    /// assert_eq!((a.grad().unwrap().item(), b.grad().unwrap().item()), (5.0, 2.0));
    /// ```
    #[track_caller]
    pub fn input(&self, i: usize) -> &Tensor {
        match self.inputs.get(i) {
            Some(t) => t,
            None => {
                panic!("FunctionCtx::input({i}): the function has {} inputs", self.inputs.len())
            }
        }
    }

    /// All inputs.
    ///
    /// ```
    /// use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Sum; // any number of inputs, each with gradient 1
    /// impl Function for Sum {
    ///     fn name(&self) -> &'static str {
    ///         "sum"
    ///     }
    ///     fn forward(&self, x: &[Tensor]) -> Tensor {
    ///         x.iter().fold(x[0].zeros_like(), |s, t| &s + t)
    ///     }
    ///     fn backward(&self, ctx: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
    ///         ctx.inputs().iter().map(|_| Some(g.clone())).collect()
    ///     }
    /// }
    /// let xs: Vec<Tensor> = (0..3).map(|_| Tensor::ones(&[1]).requires_grad()).collect();
    /// let y = apply(Sum, &xs.iter().collect::<Vec<_>>());
    /// assert_eq!(y.item(), 3.0);
    /// y.backward();
    /// assert!(xs.iter().all(|x| x.grad().unwrap().item() == 1.0));
    /// ```
    pub fn inputs(&self) -> &[Tensor] {
        self.inputs
    }

    /// The output `forward` returned.
    ///
    /// ```
    /// use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Exp; // e^x, whose derivative is its own output
    /// impl Function for Exp {
    ///     fn name(&self) -> &'static str {
    ///         "exp"
    ///     }
    ///     fn forward(&self, x: &[Tensor]) -> Tensor {
    ///         Tensor::from_vec(x[0].to_vec::<f64>().iter().map(|v| v.exp()).collect(), x[0].shape())
    ///     }
    ///     fn backward(&self, ctx: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
    ///         vec![Some(g * ctx.output())]
    ///     }
    /// }
    /// let x = Tensor::from_vec(vec![1.0f64], &[1]).requires_grad();
    /// apply(Exp, &[&x]).backward();
    /// assert_eq!(x.grad().unwrap().item(), 1f64.exp());
    /// ```
    pub fn output(&self) -> &Tensor {
        self.output
    }
}

/// A user-defined differentiable operation.
///
/// `forward` computes the output from the input values (nothing is recorded inside it);
/// `backward` returns, for each input, the gradient of the loss given the gradient of the
/// output: the vector-Jacobian product. Write `backward` with tensor operations and the
/// function is twice differentiable too. Verify it with [`gradcheck`](crate::gradcheck()).
///
/// ```
/// use tapegrad_tape::{Function, FunctionCtx, GradcheckOptions, Tensor, apply, gradcheck};
///
/// /// f(x) = x^3, written by hand.
/// struct Cube;
/// impl Function for Cube {
///     fn name(&self) -> &'static str {
///         "cube"
///     }
///     fn forward(&self, inputs: &[Tensor]) -> Tensor {
///         let x = &inputs[0];
///         &(x * x) * x
///     }
///     fn backward(&self, ctx: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
///         let x = ctx.input(0);
///         vec![Some(grad * &(x * x) * 3.0)]
///     }
/// }
///
/// let x = Tensor::from_vec(vec![0.5f64, -1.5, 2.0], &[3]).requires_grad();
/// let report =
///     gradcheck(|xs: &[Tensor]| apply(Cube, &[&xs[0]]), &[x], &GradcheckOptions::default())
///         .unwrap();
/// assert!(report.passed, "{report}");
/// ```
pub trait Function: 'static {
    /// The name shown in graph dumps and error messages.
    ///
    /// ```
    /// # use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Half;
    /// impl Function for Half {
    ///     fn name(&self) -> &'static str { "half" }
    /// #   fn forward(&self, x: &[Tensor]) -> Tensor { &x[0] * 0.5 }
    /// #   fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> { vec![Some(g * 0.5)] }
    /// }
    /// let y = apply(Half, &[&Tensor::ones(&[1]).requires_grad()]);
    /// assert_eq!(y.grad_fn(), Some("half"));
    /// ```
    fn name(&self) -> &'static str;

    /// The output for these input values.
    ///
    /// ```
    /// # use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Half;
    /// impl Function for Half {
    /// #   fn name(&self) -> &'static str { "half" }
    ///     fn forward(&self, x: &[Tensor]) -> Tensor {
    ///         assert!(!x[0].tracks_grad()); // inputs arrive detached: nothing is recorded here
    ///         &x[0] * 0.5
    ///     }
    /// #   fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> { vec![Some(g * 0.5)] }
    /// }
    /// let x = Tensor::from_vec(vec![2.0f32, 3.0], &[2]).requires_grad();
    /// assert_eq!(apply(Half, &[&x]).to_vec::<f32>(), vec![1.0, 1.5]);
    /// ```
    fn forward(&self, inputs: &[Tensor]) -> Tensor;

    /// One gradient per input (`None` for an input without one), each shaped like its input.
    ///
    /// ```
    /// # use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Scale; // x * s, treating the scale s as a constant
    /// impl Function for Scale {
    /// #   fn name(&self) -> &'static str { "scale" }
    /// #   fn forward(&self, x: &[Tensor]) -> Tensor { &x[0] * &x[1] }
    ///     fn backward(&self, ctx: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
    ///         vec![Some(g * ctx.input(1)), None]
    ///     }
    /// }
    /// let (x, s) = (Tensor::ones(&[2]).requires_grad(), Tensor::full(&[2], 3.0).requires_grad());
    /// apply(Scale, &[&x, &s]).sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]);
    /// assert!(s.grad().is_none());
    /// ```
    fn backward(&self, ctx: &FunctionCtx<'_>, grad_output: &Tensor) -> Vec<Option<Tensor>>;

    /// The forward-mode rule (PyTorch's `Function.jvp`): the output's tangent `J v` from the
    /// inputs' tangents (`None` for an input without one, whose tangent is zero). Used only
    /// in a dual level ([`forward_ad`](crate::forward_ad)); the default has none, and
    /// applying the function to a dual tensor then panics, naming it.
    ///
    /// ```
    /// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
    /// struct Cube;
    /// impl Function for Cube {
    /// #   fn name(&self) -> &'static str { "cube" }
    /// #   fn forward(&self, x: &[Tensor]) -> Tensor { &(&x[0] * &x[0]) * &x[0] }
    /// #   fn backward(&self, c: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> { vec![Some(g * &(c.input(0) * c.input(0)) * 3.0)] }
    ///     fn jvp(&self, ctx: &FunctionCtx<'_>, tangents: &[Option<Tensor>]) -> Option<Tensor> {
    ///         let x = ctx.input(0);
    ///         Some(tangents[0].as_ref()? * &(x * x) * 3.0)
    ///     }
    /// }
    /// let _level = dual_level();
    /// let x = make_dual(&Tensor::full(&[1], 2.0), &Tensor::ones(&[1]));
    /// assert_eq!(unpack_dual(&apply(Cube, &[&x])).tangent.unwrap().item(), 12.0);
    /// ```
    fn jvp(&self, ctx: &FunctionCtx<'_>, tangents: &[Option<Tensor>]) -> Option<Tensor> {
        let _ = (ctx, tangents);
        None
    }
}

/// Runs a custom [`Function`] on `inputs` and records it on the tape like any built-in
/// operation.
///
/// ```
/// # use tapegrad_tape::{Function, FunctionCtx, Tensor, apply};
/// struct Double;
/// impl Function for Double {
///     fn name(&self) -> &'static str {
///         "double"
///     }
///     fn forward(&self, x: &[Tensor]) -> Tensor {
///         &x[0] * 2.0
///     }
///     fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
///         vec![Some(g * 2.0)]
///     }
/// }
/// let x = Tensor::ones(&[1]).requires_grad();
/// let y = apply(Double, &[&x]);
/// assert_eq!(y.grad_fn(), Some("double"));
/// y.backward();
/// assert_eq!(x.grad().unwrap().item(), 2.0);
/// ```
#[track_caller]
pub fn apply<F: Function>(function: F, inputs: &[&Tensor]) -> Tensor {
    let location = Location::caller();
    let values: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let output = {
        let _guard = no_grad();
        function.forward(&values)
    };
    let name = function.name();
    let function = Rc::new(function);
    let make_backward = || {
        let function = Rc::clone(&function);
        let mut backward = Backward::new(move |ctx| {
            let fctx = FunctionCtx { inputs: ctx.saved, output: ctx.output() };
            function.backward(&fctx, ctx.grad()).into_iter().collect()
        })
        .save_output();
        for t in inputs {
            backward = backward.save(t);
        }
        backward
    };
    record_with_tangent(name, location, inputs, output.detach(), make_backward, |ctx| {
        let inputs: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        let tangents: Vec<Option<Tensor>> =
            (0..inputs.len()).map(|i| ctx.tangent(i).cloned()).collect();
        let fctx = FunctionCtx { inputs: &inputs, output: ctx.output() };
        match function.jvp(&fctx, &tangents) {
            Some(t) => t,
            None => panic!(
                "custom Function `{name}` (at {location}) has no forward-mode rule, and an input \
                 carries a tangent: implement `Function::jvp`"
            ),
        }
    })
}
