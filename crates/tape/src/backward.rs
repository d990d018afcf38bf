//! What users call to differentiate: `backward()`, `backward_with()` and the functional
//! [`grad`] (PyTorch's `torch.autograd.grad`), with their options. Each checks its
//! arguments, pairs each output with its seed gradient, and hands them to the reverse
//! sweep in `sweep.rs`, where the algorithm is.

use std::panic::Location;

use crate::Tensor;
use crate::error::{Error, Result, or_panic};
use crate::node::NodeKey;
use crate::sweep::sweep;

/// Options of [`Tensor::backward_with`].
///
/// ```
/// use tapegrad_tape::{BackwardOptions, Tensor};
/// let x = Tensor::ones(&[1]).requires_grad();
/// let y = &x * 3.0;
/// y.backward_with(None, BackwardOptions::new().retain_graph(true));
/// y.backward(); // allowed: the first pass kept the graph
/// assert_eq!(x.grad().unwrap().item(), 6.0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BackwardOptions {
    retain_graph: Option<bool>,
    create_graph: bool,
}

impl BackwardOptions {
    /// The defaults: free the graph, record nothing.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 2.0;
    /// y.backward_with(None, BackwardOptions::new()); // the same as y.backward()
    /// assert_eq!(x.grad().unwrap().item(), 2.0);
    /// assert!(y.try_backward().is_err()); // the graph was freed
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the graph's nodes and saved tensors so that backward can run through it again.
    /// Defaults to the value of `create_graph`, as in PyTorch.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 3.0;
    /// y.backward_with(None, BackwardOptions::new().retain_graph(true));
    /// y.backward(); // runs through the kept graph, then frees it
    /// assert!(y.try_backward().is_err());
    /// assert_eq!(x.grad().unwrap().item(), 6.0); // the two passes added up
    /// ```
    pub fn retain_graph(mut self, retain: bool) -> Self {
        self.retain_graph = Some(retain);
        self
    }

    /// Record the backward computation itself, so that the gradients it produces can be
    /// differentiated again (gradients of gradients, Hessian-vector products).
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let y = &(&x * &x) * &x; // x^3
    /// y.backward_with(None, BackwardOptions::new().create_graph(true));
    /// let dy = x.grad().unwrap(); // 3x^2 = 12, itself recorded
    /// assert_eq!((dy.item(), dy.tracks_grad()), (12.0, true));
    /// assert_eq!(grad(&[&dy], &[&x], GradOptions::new())[0].as_ref().unwrap().item(), 12.0); // 6x
    /// ```
    pub fn create_graph(mut self, create: bool) -> Self {
        self.create_graph = create;
        self
    }
}

/// Options of [`grad`], mirroring `torch.autograd.grad`'s keyword arguments.
///
/// ```
/// use tapegrad_tape::GradOptions;
/// let opts = GradOptions::new().create_graph(true).allow_unused(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct GradOptions {
    grad_outputs: Option<Vec<Tensor>>,
    retain_graph: Option<bool>,
    create_graph: bool,
    allow_unused: bool,
}

impl GradOptions {
    /// The defaults: outputs must be scalars, the graph is freed, nothing is recorded, and
    /// every input must be used.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    /// let y = &x * &x;
    /// let dy = grad(&[&y], &[&x], GradOptions::new());
    /// let dy = dy[0].as_ref().unwrap();
    /// assert_eq!((dy.item(), dy.tracks_grad()), (6.0, false)); // 2x, not recorded
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The vector in the vector-Jacobian product, one tensor per output, shaped like it.
    /// Without it, every output must have one element and is seeded with 1.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = &x * 3.0; // not a scalar, so it needs a vector to multiply the Jacobian by
    /// let v = Tensor::from_vec(vec![1.0f32, 10.0], &[2]);
    /// let g = grad(&[&y], &[&x], GradOptions::new().grad_outputs(vec![v]));
    /// assert_eq!(g[0].as_ref().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    pub fn grad_outputs(mut self, grad_outputs: Vec<Tensor>) -> Self {
        self.grad_outputs = Some(grad_outputs);
        self
    }

    /// Keep the graph for another pass (defaults to `create_graph`).
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad, try_grad};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 3.0;
    /// let first = grad(&[&y], &[&x], GradOptions::new().retain_graph(true));
    /// let second = grad(&[&y], &[&x], GradOptions::new()); // the graph was kept; now freed
    /// assert_eq!((first[0].as_ref().unwrap().item(), second[0].as_ref().unwrap().item()), (3.0, 3.0));
    /// assert!(try_grad(&[&y], &[&x], GradOptions::new()).is_err());
    /// ```
    pub fn retain_graph(mut self, retain: bool) -> Self {
        self.retain_graph = Some(retain);
        self
    }

    /// Record the backward computation so the returned gradients are differentiable.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let y = &x * &x;
    /// let dy = grad(&[&y], &[&x], GradOptions::new().create_graph(true)); // 2x
    /// let dy = dy[0].as_ref().unwrap();
    /// assert!(dy.tracks_grad());
    /// assert_eq!(grad(&[dy], &[&x], GradOptions::new())[0].as_ref().unwrap().item(), 2.0);
    /// ```
    pub fn create_graph(mut self, create: bool) -> Self {
        self.create_graph = create;
        self
    }

    /// Return `None` for an input the outputs do not depend on, instead of an error.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let unused = Tensor::ones(&[1]).requires_grad();
    /// let g = grad(&[&(&x * 2.0)], &[&x, &unused], GradOptions::new().allow_unused(true));
    /// assert_eq!((g[0].as_ref().unwrap().item(), g[1].is_none()), (2.0, true));
    /// ```
    pub fn allow_unused(mut self, allow: bool) -> Self {
        self.allow_unused = allow;
        self
    }
}

/// Gradients of `outputs` with respect to `inputs`, returned rather than accumulated into
/// `.grad`: PyTorch's `torch.autograd.grad`. `inputs` may be leaves or interior tensors.
/// Panics with a clear message on misuse; see [`try_grad`].
///
/// ```
/// use tapegrad_tape::{GradOptions, Tensor, grad};
/// let x = Tensor::full(&[1], 3.0f64).to_dtype(tapegrad_tape::DType::F64).requires_grad();
/// let y = &(&x * &x) * &x; // x^3
/// let dy = grad(&[&y], &[&x], GradOptions::new().create_graph(true));
/// let dy = dy[0].as_ref().unwrap();
/// assert_eq!(dy.item(), 27.0); // 3x^2
/// let d2y = grad(&[dy], &[&x], GradOptions::new());
/// assert_eq!(d2y[0].as_ref().unwrap().item(), 18.0); // 6x
/// assert!(x.grad().is_none()); // nothing was accumulated
/// ```
#[track_caller]
pub fn grad(outputs: &[&Tensor], inputs: &[&Tensor], options: GradOptions) -> Vec<Option<Tensor>> {
    or_panic(try_grad(outputs, inputs, options))
}

/// [`grad`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::{GradOptions, Tensor, try_grad};
/// let x = Tensor::ones(&[1]).requires_grad();
/// let unused = Tensor::ones(&[1]).requires_grad();
/// let y = &x * 2.0;
/// assert!(try_grad(&[&y], &[&unused], GradOptions::new()).is_err());
/// ```
#[track_caller]
pub fn try_grad(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    options: GradOptions,
) -> Result<Vec<Option<Tensor>>> {
    let location = Location::caller();
    let seeds = seeds("grad", outputs, options.grad_outputs.as_deref(), location)?;
    let mut captures = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let Some(key) = input.node_key() else {
            return Err(Error::Backward {
                op: "grad",
                message: format!(
                    "input {i} does not require a gradient (call requires_grad() on it)"
                ),
                location,
            });
        };
        captures.push(key);
    }
    let retain = options.retain_graph.unwrap_or(options.create_graph);
    let grads = sweep(&seeds, Some(&captures), retain, options.create_graph, location)?;
    if !options.allow_unused
        && let Some(i) = grads.iter().position(Option::is_none)
    {
        return Err(Error::Backward {
            op: "grad",
            message: format!(
                "input {i} was not used to compute the outputs; pass allow_unused(true) to get \
                None for it"
            ),
            location,
        });
    }
    Ok(grads)
}

impl Tensor {
    /// Computes the gradient of this one-element tensor with respect to every leaf that
    /// requires a gradient, adding it to their `.grad`. Frees the graph afterwards.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::full(&[2], 2.0).requires_grad();
    /// let loss = (&w * &w).sum_to_shape(&[]);
    /// loss.backward();
    /// assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![4.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn backward(&self) {
        or_panic(self.try_backward_with(None, BackwardOptions::new()))
    }

    /// [`Tensor::backward`], returning an error instead of panicking.
    ///
    /// ```
    /// // A tensor that does not track gradients has nothing to differentiate.
    /// assert!(tapegrad_tape::Tensor::ones(&[1]).try_backward().is_err());
    /// ```
    #[track_caller]
    pub fn try_backward(&self) -> Result<()> {
        self.try_backward_with(None, BackwardOptions::new())
    }

    /// Backward with an explicit output gradient (required unless this tensor has one
    /// element) and options.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = &x * 3.0;
    /// y.backward_with(Some(&Tensor::from_vec(vec![1.0f32, 10.0], &[2])), BackwardOptions::new());
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    #[track_caller]
    pub fn backward_with(&self, gradient: Option<&Tensor>, options: BackwardOptions) {
        or_panic(self.try_backward_with(gradient, options))
    }

    /// [`Tensor::backward_with`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let y = &Tensor::ones(&[2]).requires_grad() * 3.0;
    /// assert!(y.try_backward_with(None, BackwardOptions::new()).is_err()); // not a scalar
    /// ```
    #[track_caller]
    pub fn try_backward_with(
        &self,
        gradient: Option<&Tensor>,
        options: BackwardOptions,
    ) -> Result<()> {
        let location = Location::caller();
        let grad_outputs = gradient.map(|g| vec![g.clone()]);
        let seeds = seeds("backward", &[self], grad_outputs.as_deref(), location)?;
        let retain = options.retain_graph.unwrap_or(options.create_graph);
        sweep(&seeds, None, retain, options.create_graph, location)?;
        Ok(())
    }
}

/// Pairs each output's node with its seed gradient, checking shapes and dtypes.
fn seeds(
    op: &'static str,
    outputs: &[&Tensor],
    grad_outputs: Option<&[Tensor]>,
    location: &'static Location<'static>,
) -> Result<Vec<(NodeKey, Tensor)>> {
    let err = |message: String| Error::Backward { op, message, location };
    if let Some(g) = grad_outputs
        && g.len() != outputs.len()
    {
        return Err(err(format!("{} gradients given for {} outputs", g.len(), outputs.len())));
    }
    let mut seeds: Vec<(NodeKey, Tensor)> = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let Some(key) = out.node_key() else {
            return Err(err(format!(
                "output {i} does not require a gradient: nothing that requires one was used to compute \
                 it, or it was computed under no_grad"
            )));
        };
        let seed = match grad_outputs {
            Some(g) => {
                let g = &g[i];
                if g.shape() != out.shape() || g.dtype() != out.dtype() {
                    return Err(err(format!(
                        "gradient for output {i} has shape {:?} and dtype {}, but the output has shape {:?} \
                         and dtype {}",
                        g.shape(),
                        g.dtype(),
                        out.shape(),
                        out.dtype()
                    )));
                }
                g.clone()
            }
            None => {
                if out.numel() != 1 {
                    return Err(err(format!(
                        "a gradient can be created implicitly only for one-element outputs; output {i} has \
                         shape {:?}: pass the output gradient explicitly",
                        out.shape()
                    )));
                }
                out.ones_like()
            }
        };
        match seeds.iter_mut().find(|(k, _)| *k == key) {
            Some((_, prev)) => *prev = &*prev + &seed,
            None => seeds.push((key, seed)),
        }
    }
    Ok(seeds)
}
