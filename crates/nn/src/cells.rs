//! Single-step recurrent cells (PyTorch's `nn.RNNCell`, `nn.GRUCell`, `nn.LSTMCell`): one
//! time step from an input and a state, for the loops a model writes itself (a decoder
//! that feeds back its output, attention over a memory at every step). The step's
//! arithmetic is shared with the multi-layer [`RNN`](crate::RNN) and [`GRU`](crate::GRU).

use tapegrad_ops::functional::{linear, lstm_gates};
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

use crate::Module;
use crate::init;
use crate::module::Forward;

/// The activation of an Elman cell: PyTorch's `nonlinearity='tanh'` (the default) or
/// `'relu'`.
///
/// ```
/// use tapegrad_nn::{Nonlinearity, RNNCell};
/// let cell = RNNCell::new(3, 4).nonlinearity(Nonlinearity::Relu);
/// assert_eq!(Nonlinearity::default(), Nonlinearity::Tanh);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nonlinearity {
    /// `tanh`.
    #[default]
    Tanh,
    /// `relu`.
    Relu,
}

/// `act(gi + gh)`: an Elman step from its input and hidden projections.
fn elman_step(gi: &Tensor, gh: &Tensor, nonlinearity: Nonlinearity) -> Tensor {
    let sum = gi + gh;
    match nonlinearity {
        Nonlinearity::Tanh => sum.tanh(),
        Nonlinearity::Relu => sum.relu(),
    }
}

/// A GRU step from its input and hidden projections `[B, 3H]` (reset, update, new) and the
/// state `h`: `h' = (1 - z) n + z h`, the reset gate applied to the hidden projection of
/// `n`, as PyTorch does.
fn gru_step(gi: &Tensor, gh: &Tensor, h: &Tensor) -> Tensor {
    let hidden = h.shape()[h.dim() - 1];
    let part = |g: &Tensor, k: usize| g.narrow(-1, k * hidden, hidden);
    let r = (&part(gi, 0) + &part(gh, 0)).sigmoid();
    let z = (&part(gi, 1) + &part(gh, 1)).sigmoid();
    let n = (&part(gi, 2) + &(&r * &part(gh, 2))).tanh();
    &(&z.rsub_scalar(1.0) * &n) + &(&z * h)
}

/// A cell's weights, PyTorch's initialisation: uniform in `±1/sqrt(hidden)`, `gates`
/// blocks of `hidden` rows stacked.
fn cell_weights(gates: usize, input: usize, hidden: usize) -> [Tensor; 4] {
    let bound = 1.0 / (hidden.max(1) as f64).sqrt();
    let u = |shape: &[usize]| init::uniform(shape, -bound, bound).requires_grad();
    [
        u(&[gates * hidden, input]),
        u(&[gates * hidden, hidden]),
        u(&[gates * hidden]),
        u(&[gates * hidden]),
    ]
}

/// The input as a batch (`[B, I]`, or `[I]` as a batch of one) and whether it was one
/// sample; panics naming the cell if its shape is neither.
#[track_caller]
fn batched(cell: &str, x: &Tensor, input: usize) -> (Tensor, bool) {
    match x.shape() {
        [i] if *i == input => (x.unsqueeze(0), true),
        [_, i] if *i == input => (x.clone(), false),
        shape => {
            panic!("{cell}: input has shape {shape:?}, expected [batch, {input}] or [{input}]")
        }
    }
}

/// A state of the input's batch (`[B, H]`, or `[H]` for one sample), or zeros; panics
/// naming the cell and the state if its shape does not match.
#[track_caller]
fn state(
    cell: &str,
    name: &str,
    s: Option<&Tensor>,
    x: &Tensor,
    unbatched: bool,
    hidden: usize,
) -> Tensor {
    let batch = x.shape()[0];
    match s {
        None => Tensor::zeros_dtype(&[batch, hidden], x.dtype()),
        Some(s) => {
            let expected: &[usize] = if unbatched { &[hidden] } else { &[batch, hidden] };
            assert!(
                s.shape() == expected,
                "{cell}: {name} has shape {:?}, expected {expected:?} for an input of shape {:?}",
                s.shape(),
                if unbatched { &x.shape()[1..] } else { x.shape() }
            );
            if unbatched { s.unsqueeze(0) } else { s.clone() }
        }
    }
}

/// Back to one sample's shape when the input was one sample.
fn unbatch(t: Tensor, unbatched: bool) -> Tensor {
    if unbatched { t.squeeze_dim(0) } else { t }
}

/// The input and hidden projections `x W_ihᵀ + b_ih` and `h W_hhᵀ + b_hh`.
fn projections(
    x: &Tensor,
    h: &Tensor,
    [w_ih, w_hh]: [&Tensor; 2],
    [b_ih, b_hh]: [Option<&Tensor>; 2],
) -> (Tensor, Tensor) {
    (linear(x, w_ih, b_ih), linear(h, w_hh, b_hh))
}

macro_rules! cell {
    ($(#[$doc:meta])* $name:ident, $gates:literal, { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Module)]
        pub struct $name {
            #[doc = concat!("`", stringify!($gates), " * hidden x input`: the input's weights of each gate, stacked.")]
            pub weight_ih: Tensor,
            #[doc = concat!("`", stringify!($gates), " * hidden x hidden`: the state's weights of each gate, stacked.")]
            pub weight_hh: Tensor,
            /// The input projection's bias, if the cell has biases.
            pub bias_ih: Option<Tensor>,
            /// The hidden projection's bias, if the cell has biases.
            pub bias_hh: Option<Tensor>,
            $($extra)*
        }

        impl $name {
            /// The cell's input size.
            ///
            /// ```
            #[doc = concat!("let cell = tapegrad_nn::", stringify!($name), "::new(3, 5);")]
            /// assert_eq!((cell.input_size(), cell.hidden_size()), (3, 5));
            /// ```
            pub fn input_size(&self) -> usize {
                self.weight_ih.shape()[1]
            }

            /// The cell's hidden size.
            ///
            /// ```
            #[doc = concat!("let cell = tapegrad_nn::", stringify!($name), "::new(3, 5);")]
            #[doc = concat!("assert_eq!(cell.weight_hh.shape(), &[", stringify!($gates), " * cell.hidden_size(), 5]);")]
            /// ```
            pub fn hidden_size(&self) -> usize {
                self.weight_hh.shape()[1]
            }

            /// The cell without its two biases (PyTorch's `bias=False`).
            ///
            /// ```
            /// use tapegrad_nn::Module;
            #[doc = concat!("let cell = tapegrad_nn::", stringify!($name), "::new(3, 5).no_bias();")]
            /// assert!(cell.bias_ih.is_none() && cell.bias_hh.is_none());
            /// assert_eq!(cell.parameters().len(), 2);
            /// ```
            pub fn no_bias(self) -> Self {
                $name { bias_ih: None, bias_hh: None, ..self }
            }

            fn weights(&self) -> [&Tensor; 2] {
                [&self.weight_ih, &self.weight_hh]
            }

            fn biases(&self) -> [Option<&Tensor>; 2] {
                [self.bias_ih.as_ref(), self.bias_hh.as_ref()]
            }
        }
    };
}

cell!(
    /// An Elman RNN cell (PyTorch's `nn.RNNCell`): `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`
    /// with `tanh` or `relu`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, RNNCell};
    /// use tapegrad_tape::Tensor;
    /// let cell = RNNCell::new(3, 5);
    /// let mut h = Tensor::zeros(&[2, 5]);
    /// for _ in 0..4 {
    ///     h = cell.forward_with_state(&Tensor::randn(&[2, 3]), Some(&h));
    /// }
    /// assert_eq!(h.shape(), &[2, 5]);
    /// assert_eq!(cell.forward(&Tensor::randn(&[3])).shape(), &[5]); // one sample, zero state
    /// ```
    RNNCell,
    1,
    {
        /// `tanh` or `relu`.
        #[module(skip)]
        pub nonlinearity: Nonlinearity,
    }
);
cell!(
    /// A gated recurrent unit cell (PyTorch's `nn.GRUCell`; gates reset, update, new).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GRUCell};
    /// use tapegrad_tape::Tensor;
    /// let cell = GRUCell::new(3, 5);
    /// let h = cell.forward(&Tensor::randn(&[2, 3])); // from a zero state
    /// let h = cell.forward_with_state(&Tensor::randn(&[2, 3]), Some(&h));
    /// assert_eq!(h.shape(), &[2, 5]);
    /// ```
    GRUCell,
    3,
    {}
);
cell!(
    /// A long short-term memory cell (PyTorch's `nn.LSTMCell`; gates input, forget, cell,
    /// output): the step takes and returns the pair `(h, c)`.
    ///
    /// ```
    /// use tapegrad_nn::LSTMCell;
    /// use tapegrad_tape::Tensor;
    /// let cell = LSTMCell::new(3, 5);
    /// let (h, c) = cell.forward_with_state(&Tensor::randn(&[2, 3]), None);
    /// let (h, c) = cell.forward_with_state(&Tensor::randn(&[2, 3]), Some((&h, &c)));
    /// assert_eq!((h.shape(), c.shape()), (&[2, 5][..], &[2, 5][..]));
    /// ```
    LSTMCell,
    4,
    {}
);

impl RNNCell {
    /// A cell with biases and `tanh`.
    ///
    /// ```
    /// use tapegrad_nn::{Module, RNNCell};
    /// let cell = RNNCell::new(3, 5);
    /// let names: Vec<String> = cell.named_parameters().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
    /// // PyTorch's initialisation: uniform in ±1/sqrt(hidden).
    /// assert!(cell.weight_ih.to_vec::<f32>().iter().all(|w| w.abs() <= 1.0 / 5f32.sqrt()));
    /// ```
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        let [weight_ih, weight_hh, bias_ih, bias_hh] = cell_weights(1, input_size, hidden_size);
        RNNCell {
            weight_ih,
            weight_hh,
            bias_ih: Some(bias_ih),
            bias_hh: Some(bias_hh),
            nonlinearity: Nonlinearity::Tanh,
        }
    }

    /// The activation (PyTorch's `nonlinearity`).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Nonlinearity, RNNCell};
    /// use tapegrad_tape::Tensor;
    /// let cell = RNNCell::new(3, 5).nonlinearity(Nonlinearity::Relu);
    /// assert!(cell.forward(&Tensor::randn(&[4, 3])).to_vec::<f32>().iter().all(|&h| h >= 0.0));
    /// ```
    pub fn nonlinearity(mut self, nonlinearity: Nonlinearity) -> Self {
        self.nonlinearity = nonlinearity;
        self
    }

    /// One step: the new state from the input `[B, input]` (or `[input]`) and the state
    /// `[B, hidden]` (or `[hidden]`; zeros if `None`).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, RNNCell};
    /// use tapegrad_tape::Tensor;
    /// let cell = RNNCell::new(2, 3);
    /// let x = Tensor::randn(&[4, 2]);
    /// // A zero state is the default.
    /// let (a, b) = (cell.forward_with_state(&x, Some(&Tensor::zeros(&[4, 3]))), cell.forward(&x));
    /// assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    /// ```
    ///
    /// # Panics
    /// If the input or the state has another shape.
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h: Option<&Tensor>) -> Tensor {
        let (xb, one) = batched("RNNCell", x, self.input_size());
        let h = state("RNNCell", "h", h, &xb, one, self.hidden_size());
        let (gi, gh) = projections(&xb, &h, self.weights(), self.biases());
        unbatch(elman_step(&gi, &gh, self.nonlinearity), one)
    }
}

impl GRUCell {
    /// A cell with biases.
    ///
    /// ```
    /// use tapegrad_nn::GRUCell;
    /// let cell = GRUCell::new(3, 5);
    /// assert_eq!(cell.weight_ih.shape(), &[15, 3]); // reset, update and new gates stacked
    /// ```
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        let [weight_ih, weight_hh, bias_ih, bias_hh] = cell_weights(3, input_size, hidden_size);
        GRUCell { weight_ih, weight_hh, bias_ih: Some(bias_ih), bias_hh: Some(bias_hh) }
    }

    /// One step: the new state from the input `[B, input]` (or `[input]`) and the state
    /// `[B, hidden]` (or `[hidden]`; zeros if `None`).
    ///
    /// ```
    /// use tapegrad_nn::GRUCell;
    /// use tapegrad_tape::Tensor;
    /// let cell = GRUCell::new(2, 3);
    /// let h = cell.forward_with_state(&Tensor::randn(&[2]), Some(&Tensor::ones(&[3])));
    /// assert_eq!(h.shape(), &[3]); // one sample
    /// ```
    ///
    /// # Panics
    /// If the input or the state has another shape.
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h: Option<&Tensor>) -> Tensor {
        let (xb, one) = batched("GRUCell", x, self.input_size());
        let h = state("GRUCell", "h", h, &xb, one, self.hidden_size());
        let (gi, gh) = projections(&xb, &h, self.weights(), self.biases());
        unbatch(gru_step(&gi, &gh, &h), one)
    }
}

impl LSTMCell {
    /// A cell with biases.
    ///
    /// ```
    /// use tapegrad_nn::LSTMCell;
    /// let cell = LSTMCell::new(3, 5);
    /// assert_eq!(cell.weight_hh.shape(), &[20, 5]); // input, forget, cell and output gates
    /// ```
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        let [weight_ih, weight_hh, bias_ih, bias_hh] = cell_weights(4, input_size, hidden_size);
        LSTMCell { weight_ih, weight_hh, bias_ih: Some(bias_ih), bias_hh: Some(bias_hh) }
    }

    /// One step: the new `(h, c)` from the input `[B, input]` (or `[input]`) and the state
    /// `(h, c)`, each `[B, hidden]` (or `[hidden]`; zeros if `None`).
    ///
    /// ```
    /// use tapegrad_nn::LSTMCell;
    /// use tapegrad_tape::Tensor;
    /// let cell = LSTMCell::new(2, 3);
    /// let (h, c) = cell.forward_with_state(&Tensor::randn(&[2]), None);
    /// assert_eq!((h.shape(), c.shape()), (&[3][..], &[3][..]));
    /// ```
    ///
    /// # Panics
    /// If the input or the state has another shape.
    #[track_caller]
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        hc: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, Tensor) {
        let (xb, one) = batched("LSTMCell", x, self.input_size());
        let hidden = self.hidden_size();
        let h = state("LSTMCell", "h", hc.map(|s| s.0), &xb, one, hidden);
        let c = state("LSTMCell", "c", hc.map(|s| s.1), &xb, one, hidden);
        let (gi, gh) = projections(&xb, &h, self.weights(), self.biases());
        let (h, c) = lstm_gates(&(&gi + &gh), &c);
        (unbatch(h, one), unbatch(c, one))
    }
}

impl Forward for RNNCell {
    /// One step from a zero state.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None)
    }
}

impl Forward for GRUCell {
    /// One step from a zero state.
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None)
    }
}
