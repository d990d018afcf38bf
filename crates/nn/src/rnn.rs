//! Recurrent layers (PyTorch's `nn.RNN`, `nn.GRU`, `nn.LSTM`): multi-layer, optional
//! `batch_first`, `bidirectional` and dropout between layers, initial state in and final
//! state out. Each time step is composed from recorded ops (the LSTM's whole recurrence is
//! one), so backward runs through time automatically.

use tapegrad_ops::functional::{
    DropoutOptions, dropout_with, gru_recurrence, linear, lstm_recurrence, rnn_relu_recurrence,
    rnn_tanh_recurrence,
};
use tapegrad_ops::{cat, prelude::*, stack};
use tapegrad_tape::Tensor;

use crate::cells::Nonlinearity;
use crate::field::TrainingFlag;
use crate::init;
use crate::module::{Forward, Module, Slot, join_name};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CellKind {
    Elman,
    Gru,
    Lstm,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Elman => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }
}

/// One layer's weights, with PyTorch's names and gate order.
struct LayerWeights {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
}

/// What the three recurrent layers share.
struct Recurrent {
    kind: CellKind,
    input: usize,
    hidden: usize,
    num_layers: usize,
    batch_first: bool,
    bidirectional: bool,
    /// Dropout on each layer's output but the last, in training mode.
    dropout: f64,
    /// The Elman layer's activation.
    nonlinearity: Nonlinearity,
    training: TrainingFlag,
    /// Layer `l`, direction `d` at `l * directions + d` (PyTorch's order).
    layers: Vec<LayerWeights>,
}

impl Recurrent {
    fn new(kind: CellKind, input: usize, hidden: usize, num_layers: usize) -> Self {
        let mut r = Recurrent {
            kind,
            input,
            hidden,
            num_layers,
            batch_first: false,
            bidirectional: false,
            dropout: 0.0,
            nonlinearity: Nonlinearity::Tanh,
            training: TrainingFlag::default(),
            layers: Vec::new(),
        };
        r.init_weights();
        r
    }

    fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Fresh weights for every layer and direction: PyTorch's uniform in `±1/sqrt(hidden)`.
    fn init_weights(&mut self) {
        let (hidden, dirs) = (self.hidden, self.directions());
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let g = self.kind.gates() * hidden;
        let u = |shape: &[usize]| init::uniform(shape, -bound, bound).requires_grad();
        self.layers = (0..self.num_layers * dirs)
            .map(|i| LayerWeights {
                weight_ih: u(&[g, if i < dirs { self.input } else { hidden * dirs }]),
                weight_hh: u(&[g, hidden]),
                bias_ih: u(&[g]),
                bias_hh: u(&[g]),
            })
            .collect();
    }

    /// A parameter's name: `weight_ih_l0`, or `weight_ih_l0_reverse` for the backward
    /// direction.
    fn name(&self, base: &str, i: usize) -> String {
        let (l, d) = (i / self.directions(), i % self.directions());
        format!("{base}_l{l}{}", if d == 1 { "_reverse" } else { "" })
    }

    /// Runs the stack over `x`; `h0` and `c0` are `[layers * directions, batch, hidden]`.
    /// Returns the last layer's outputs (both directions side by side) and the final `h`
    /// (and `c` for LSTM) of every layer and direction.
    #[track_caller]
    fn run(
        &self,
        x: &Tensor,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
    ) -> (Tensor, Tensor, Option<Tensor>) {
        assert!(x.dim() == 3, "recurrent layer: expects a 3-D input, got shape {:?}", x.shape());
        // Work time-major: [T, B, features].
        let mut seq = if self.batch_first { x.transpose(0, 1) } else { x.clone() };
        let batch = seq.shape()[1];
        let dirs = self.directions();
        for (name, state) in [("h0", h0), ("c0", c0)] {
            let expected = [self.num_layers * dirs, batch, self.hidden];
            if let Some(s) = state.filter(|s| s.shape() != expected) {
                panic!("recurrent layer: {name} has shape {:?}, expected {expected:?}", s.shape());
            }
        }
        let zeros = || Tensor::zeros_dtype(&[batch, self.hidden], x.dtype());
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for l in 0..self.num_layers {
            let mut outputs = Vec::with_capacity(dirs);
            for d in 0..dirs {
                let i = l * dirs + d;
                let h = h0.map_or_else(zeros, |h| h.select(0, i as isize));
                let c = c0.map_or_else(zeros, |c| c.select(0, i as isize));
                // The backward direction reads the sequence from its end.
                let input = if d == 1 { seq.flip(&[0]) } else { seq.clone() };
                let (out, h_last, c_last) = self.direction(&input, &self.layers[i], h, c);
                outputs.push(if d == 1 { out.flip(&[0]) } else { out });
                h_n.push(h_last);
                c_n.push(c_last);
            }
            seq = if dirs == 1 {
                outputs.pop().expect("one direction")
            } else {
                cat(&[&outputs[0], &outputs[1]], -1)
            };
            if l + 1 < self.num_layers && self.dropout > 0.0 && self.training.get() {
                seq = dropout_with(&seq, DropoutOptions::default().p(self.dropout));
            }
        }
        let out = if self.batch_first { seq.transpose(0, 1) } else { seq };
        let h_refs: Vec<&Tensor> = h_n.iter().collect();
        let c_refs: Vec<&Tensor> = c_n.iter().collect();
        let c = (self.kind == CellKind::Lstm).then(|| stack(&c_refs, 0));
        (out, stack(&h_refs, 0), c)
    }

    /// One layer in one direction over the time-major `seq` from `(h, c)`: its outputs
    /// `[T, B, H]` and its final `h` and `c` (`c` unchanged but for LSTM).
    fn direction(
        &self,
        seq: &Tensor,
        w: &LayerWeights,
        h: Tensor,
        c: Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        // Input projections of every step in one product: [T, B, gates * H].
        let xi = linear(seq, &w.weight_ih, Some(&w.bias_ih));
        // The whole recurrence as one op (its time loop in a kernel).
        let (out, h) = match (self.kind, self.nonlinearity) {
            (CellKind::Lstm, _) => {
                return lstm_recurrence(&xi, &h, &c, &w.weight_hh, &w.bias_hh);
            }
            (CellKind::Gru, _) => gru_recurrence(&xi, &h, &w.weight_hh, &w.bias_hh),
            (CellKind::Elman, Nonlinearity::Tanh) => {
                rnn_tanh_recurrence(&xi, &h, &w.weight_hh, &w.bias_hh)
            }
            (CellKind::Elman, Nonlinearity::Relu) => {
                rnn_relu_recurrence(&xi, &h, &w.weight_hh, &w.bias_hh)
            }
        };
        (out, h, c)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        for (i, w) in self.layers.iter().enumerate() {
            for (name, t) in [
                ("weight_ih", &w.weight_ih),
                ("weight_hh", &w.weight_hh),
                ("bias_ih", &w.bias_ih),
                ("bias_hh", &w.bias_hh),
            ] {
                f(&join_name(prefix, &self.name(name, i)), t, Slot::Parameter);
            }
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        let names: Vec<String> = (0..self.layers.len())
            .flat_map(|i| {
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|name| self.name(name, i))
            })
            .collect();
        let tensors = self
            .layers
            .iter_mut()
            .flat_map(|w| [&mut w.weight_ih, &mut w.weight_hh, &mut w.bias_ih, &mut w.bias_hh]);
        for (name, t) in names.iter().zip(tensors) {
            f(&join_name(prefix, name), t, Slot::Parameter);
        }
    }
}

/// A recurrent layer type over [`Recurrent`]; `$gates` (the gate count, used only in the
/// examples) stacks that many `hidden x ...` blocks in each weight.
macro_rules! recurrent_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $gates:literal) => {
        $(#[$doc])*
        pub struct $name(Recurrent);

        impl $name {
            /// A stack of `num_layers` layers, inputs time-major (`[T, B, features]`).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let layer = ", stringify!($name), "::new(3, 5, 2);")]
            /// let params = layer.named_parameters(); // weight_ih, weight_hh, bias_ih, bias_hh per layer
            /// assert_eq!((params.len(), params[0].0.as_str()), (8, "weight_ih_l0"));
            #[doc = concat!("assert_eq!(params[0].1.shape(), &[", stringify!($gates), " * 5, 3]); // gates stacked")]
            /// assert_eq!(layer.forward(&Tensor::zeros(&[7, 4, 3])).shape(), &[7, 4, 5]);
            /// ```
            pub fn new(input_size: usize, hidden_size: usize, num_layers: usize) -> Self {
                $name(Recurrent::new($kind, input_size, hidden_size, num_layers))
            }

            /// Inputs and outputs batch-major (`[B, T, features]`).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_ops::prelude::*;
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let time_major = ", stringify!($name), "::new(3, 5, 1);")]
            #[doc = concat!("let mut batch_major = ", stringify!($name), "::new(3, 5, \
                1).batch_first(true);")]
            /// batch_major.load_state_dict(&time_major.state_dict()).unwrap();
            /// let x = Tensor::randn(&[4, 7, 3]); // [B, T, features]
            /// let (a, b) = (batch_major.forward(&x), time_major.forward(&x.transpose(0, 1)).transpose(0, 1));
            /// assert_eq!(a.shape(), &[4, 7, 5]);
            /// assert!(a.to_vec::<f32>().iter().zip(b.to_vec::<f32>()).all(|(a, b)| (a - b).abs() < 1e-6));
            /// ```
            pub fn batch_first(mut self, batch_first: bool) -> Self {
                self.0.batch_first = batch_first;
                self
            }

            /// A second direction per layer, reading the sequence from its end (PyTorch's
            /// `bidirectional`): outputs `2 * hidden` wide (forward then backward), states
            /// `[2 * layers, B, H]`, parameters `..._l{k}_reverse` beside `..._l{k}`. The
            /// weights are initialised afresh.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let layer = ", stringify!($name), "::new(3, 5, 2).bidirectional(true);")]
            /// assert_eq!(layer.forward(&Tensor::zeros(&[7, 4, 3])).shape(), &[7, 4, 10]);
            /// let names: Vec<String> = layer.named_parameters().into_iter().map(|(n, _)| n).collect();
            /// assert_eq!(names.len(), 16);
            /// assert_eq!(names[4], "weight_ih_l0_reverse");
            #[doc = concat!("assert_eq!(layer.named_parameters()[8].1.shape(), &[", stringify!($gates), " * 5, 10]); // layer 1 reads both directions")]
            /// ```
            pub fn bidirectional(mut self, bidirectional: bool) -> Self {
                self.0.bidirectional = bidirectional;
                self.0.init_weights();
                self
            }

            /// Dropout with probability `p` on each layer's output but the last's, in
            /// training mode (PyTorch's `dropout`).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let layer = ", stringify!($name), "::new(3, 5, 2).dropout(0.5);")]
            /// let x = Tensor::randn(&[4, 2, 3]);
            /// layer.eval(); // no dropout: the same output twice
            /// assert_eq!(layer.forward(&x).to_vec::<f32>(), layer.forward(&x).to_vec::<f32>());
            /// ```
            pub fn dropout(mut self, p: f64) -> Self {
                assert!((0.0..=1.0).contains(&p), "dropout probability {p} is not in [0, 1]");
                self.0.dropout = p;
                self
            }

            /// The hidden size.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let layer = ", stringify!($name), "::new(3, 5, 2);")]
            /// assert_eq!(layer.hidden_size(), 5);
            /// assert_eq!(layer.forward(&Tensor::zeros(&[2, 1, 3])).shape()[2], layer.hidden_size());
            /// ```
            pub fn hidden_size(&self) -> usize {
                self.0.hidden
            }
        }

        impl Forward for $name {
            /// The last layer's output at every step (the initial state is zero).
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                self.0.run(x, None, None).0
            }
        }

        impl Module for $name {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
                self.0.visit(prefix, f)
            }
            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
                self.0.visit_mut(prefix, f)
            }
            fn set_training(&self, training: bool) {
                self.0.training.set(training)
            }
        }
    };
}

recurrent_layer!(
    /// Elman RNN: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`, with `tanh` or `relu`
    /// ([`RNN::nonlinearity`]).
    ///
    /// ```
    /// use tapegrad_nn::{Module, RNN};
    /// use tapegrad_tape::Tensor;
    /// let rnn = RNN::new(3, 5, 2).batch_first(true);
    /// let (out, h) = rnn.forward_with_state(&Tensor::randn(&[4, 7, 3]), None);
    /// assert_eq!((out.shape(), h.shape()), (&[4, 7, 5][..], &[2, 4, 5][..]));
    /// ```
    RNN,
    CellKind::Elman,
    1
);
recurrent_layer!(
    /// Gated recurrent unit, PyTorch's gate order (reset, update, new).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GRU, Module};
    /// use tapegrad_tape::Tensor;
    /// let gru = GRU::new(6, 8, 2).batch_first(true);
    /// assert_eq!(gru.forward(&Tensor::randn(&[3, 5, 6])).shape(), &[3, 5, 8]);
    /// ```
    GRU,
    CellKind::Gru,
    3
);
recurrent_layer!(
    /// Long short-term memory, PyTorch's gate order (input, forget, cell, output).
    ///
    /// ```
    /// use tapegrad_nn::{LSTM, Module};
    /// use tapegrad_tape::Tensor;
    /// let lstm = LSTM::new(6, 8, 1).batch_first(true);
    /// let (out, (h, c)) = lstm.forward_with_state(&Tensor::randn(&[3, 5, 6]), None);
    /// assert_eq!((out.shape(), h.shape(), c.shape()), (&[3, 5, 8][..], &[1, 3, 8][..], &[1, 3, 8][..]));
    /// ```
    LSTM,
    CellKind::Lstm,
    4
);

impl RNN {
    /// The activation (PyTorch's `nonlinearity`): `tanh` by default, or `relu`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Nonlinearity, RNN};
    /// use tapegrad_tape::Tensor;
    /// let rnn = RNN::new(3, 5, 2).nonlinearity(Nonlinearity::Relu);
    /// assert!(rnn.forward(&Tensor::randn(&[7, 4, 3])).to_vec::<f32>().iter().all(|&h| h >= 0.0));
    /// ```
    pub fn nonlinearity(mut self, nonlinearity: Nonlinearity) -> Self {
        self.0.nonlinearity = nonlinearity;
        self
    }

    /// The outputs and the final hidden state `[layers * directions, B, H]`, from `h0` (zeros if `None`).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, RNN};
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let rnn = RNN::new(2, 3, 1);
    /// let x = Tensor::randn(&[5, 4, 2]);
    /// let (out, h) = rnn.forward_with_state(&x, Some(&Tensor::ones(&[1, 4, 3])));
    /// assert_eq!(out.narrow(0, 4, 1).to_vec::<f32>(), h.to_vec::<f32>()); // h is the last step's output
    /// // Without h0 the state starts at zero, as in `forward`.
    /// assert_eq!(rnn.forward_with_state(&x, None).0.to_vec::<f32>(), rnn.forward(&x).to_vec::<f32>());
    /// ```
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
        let (out, h, _) = self.0.run(x, h0, None);
        (out, h)
    }
}

impl GRU {
    /// The outputs and the final hidden state `[layers * directions, B, H]`, from `h0` (zeros if `None`).
    ///
    /// ```
    /// use tapegrad_nn::GRU;
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let gru = GRU::new(2, 3, 2);
    /// let x = Tensor::randn(&[5, 1, 2]);
    /// let (out, h) = gru.forward_with_state(&x, None);
    /// assert_eq!(h.shape(), &[2, 1, 3]); // one state per layer; the top one is the last output
    /// assert_eq!(h.narrow(0, 1, 1).to_vec::<f32>(), out.narrow(0, 4, 1).to_vec::<f32>());
    /// ```
    #[track_caller]
    pub fn forward_with_state(&self, x: &Tensor, h0: Option<&Tensor>) -> (Tensor, Tensor) {
        let (out, h, _) = self.0.run(x, h0, None);
        (out, h)
    }
}

impl LSTM {
    /// The outputs and the final `(h, c)`, each `[layers * directions, B, H]`, from `(h0, c0)` (zeros if
    /// `None`).
    ///
    /// ```
    /// use tapegrad_nn::LSTM;
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let lstm = LSTM::new(2, 3, 1);
    /// let x = Tensor::randn(&[5, 1, 2]);
    /// let (full, _) = lstm.forward_with_state(&x, None);
    /// // Running the first 3 steps, then the last 2 from the state they left, is the same.
    /// let (_, (h, c)) = lstm.forward_with_state(&x.narrow(0, 0, 3), None);
    /// let (rest, _) = lstm.forward_with_state(&x.narrow(0, 3, 2), Some((&h, &c)));
    /// let (rest, full) = (rest.to_vec::<f32>(), full.narrow(0, 3, 2).to_vec::<f32>());
    /// assert!(rest.iter().zip(&full).all(|(a, b)| (a - b).abs() < 1e-6));
    /// ```
    #[track_caller]
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<(&Tensor, &Tensor)>,
    ) -> (Tensor, (Tensor, Tensor)) {
        let (out, h, c) = self.0.run(x, state.map(|s| s.0), state.map(|s| s.1));
        (out, (h, c.expect("LSTM keeps a cell state")))
    }
}
