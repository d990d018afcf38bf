//! Recurrent layers (PyTorch's `nn.RNN`, `nn.GRU`, `nn.LSTM`): multi-layer, optional
//! `batch_first`, initial state in and final state out. Each time step is composed from
//! recorded ops, so backward runs through time automatically.

use tapegrad_ops::functional::{linear, lstm_recurrence};
use tapegrad_ops::{prelude::*, stack};
use tapegrad_tape::Tensor;

use crate::init;
use crate::module::{Forward, Module, Slot, join_name};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CellKind {
    Tanh,
    Gru,
    Lstm,
}

impl CellKind {
    fn gates(self) -> usize {
        match self {
            CellKind::Tanh => 1,
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
    hidden: usize,
    batch_first: bool,
    layers: Vec<LayerWeights>,
}

impl Recurrent {
    fn new(kind: CellKind, input: usize, hidden: usize, num_layers: usize) -> Self {
        let bound = 1.0 / (hidden.max(1) as f64).sqrt();
        let g = kind.gates() * hidden;
        let u = |shape: &[usize]| init::uniform(shape, -bound, bound).requires_grad();
        let layers = (0..num_layers)
            .map(|l| LayerWeights {
                weight_ih: u(&[g, if l == 0 { input } else { hidden }]),
                weight_hh: u(&[g, hidden]),
                bias_ih: u(&[g]),
                bias_hh: u(&[g]),
            })
            .collect();
        Recurrent { kind, hidden, batch_first: false, layers }
    }

    /// Runs the stack over `x`; `h0` and `c0` are `[layers, batch, hidden]`. Returns the
    /// last layer's outputs and the final `h` (and `c` for LSTM) of every layer.
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
        let (steps, batch) = (seq.shape()[0], seq.shape()[1]);
        let zeros = || Tensor::zeros_dtype(&[batch, self.hidden], x.dtype());
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        let hdim = self.hidden;
        for (l, w) in self.layers.iter().enumerate() {
            let mut h = h0.map_or_else(zeros, |h| h.select(0, l as isize));
            let c = c0.map_or_else(zeros, |c| c.select(0, l as isize));
            // Input projections of every step in one product: [T, B, gates * H].
            let xi = linear(&seq, &w.weight_ih, Some(&w.bias_ih));
            if self.kind == CellKind::Lstm {
                // The whole recurrence as one op (its time loop in a kernel).
                let (out, h_last, c_last) = lstm_recurrence(&xi, &h, &c, &w.weight_hh, &w.bias_hh);
                seq = out;
                h_n.push(h_last);
                c_n.push(c_last);
                continue;
            }
            let mut outputs = Vec::with_capacity(steps);
            for t in 0..steps {
                let gi = xi.select(0, t as isize);
                let gh = linear(&h, &w.weight_hh, Some(&w.bias_hh));
                let part = |g: &Tensor, k: usize| g.narrow(1, k * hdim, hdim);
                h = match self.kind {
                    CellKind::Tanh => (&gi + &gh).tanh(),
                    CellKind::Gru => {
                        let r = (&part(&gi, 0) + &part(&gh, 0)).sigmoid();
                        let z = (&part(&gi, 1) + &part(&gh, 1)).sigmoid();
                        let n = (&part(&gi, 2) + &(&r * &part(&gh, 2))).tanh();
                        // h' = (1 - z) n + z h
                        &(&z.rsub_scalar(1.0) * &n) + &(&z * &h)
                    }
                    CellKind::Lstm => unreachable!("LSTM layers run lstm_recurrence above"),
                };
                outputs.push(h.clone());
            }
            let refs: Vec<&Tensor> = outputs.iter().collect();
            seq = stack(&refs, 0);
            h_n.push(h);
            c_n.push(c);
        }
        let out = if self.batch_first { seq.transpose(0, 1) } else { seq };
        let h_refs: Vec<&Tensor> = h_n.iter().collect();
        let c_refs: Vec<&Tensor> = c_n.iter().collect();
        let c = (self.kind == CellKind::Lstm).then(|| stack(&c_refs, 0));
        (out, stack(&h_refs, 0), c)
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        for (l, w) in self.layers.iter().enumerate() {
            for (name, t) in [
                ("weight_ih", &w.weight_ih),
                ("weight_hh", &w.weight_hh),
                ("bias_ih", &w.bias_ih),
                ("bias_hh", &w.bias_hh),
            ] {
                f(&join_name(prefix, &format!("{name}_l{l}")), t, Slot::Parameter);
            }
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        for (l, w) in self.layers.iter_mut().enumerate() {
            for (name, t) in [
                ("weight_ih", &mut w.weight_ih),
                ("weight_hh", &mut w.weight_hh),
                ("bias_ih", &mut w.bias_ih),
                ("bias_hh", &mut w.bias_hh),
            ] {
                f(&join_name(prefix, &format!("{name}_l{l}")), t, Slot::Parameter);
            }
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
        }
    };
}

recurrent_layer!(
    /// Elman RNN with tanh: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    ///
    /// ```
    /// use tapegrad_nn::{Module, RNN};
    /// use tapegrad_tape::Tensor;
    /// let rnn = RNN::new(3, 5, 2).batch_first(true);
    /// let (out, h) = rnn.forward_with_state(&Tensor::randn(&[4, 7, 3]), None);
    /// assert_eq!((out.shape(), h.shape()), (&[4, 7, 5][..], &[2, 4, 5][..]));
    /// ```
    RNN,
    CellKind::Tanh,
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
    /// The outputs and the final hidden state `[layers, B, H]`, from `h0` (zeros if `None`).
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
    /// The outputs and the final hidden state `[layers, B, H]`, from `h0` (zeros if `None`).
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
    /// The outputs and the final `(h, c)`, each `[layers, B, H]`, from `(h0, c0)` (zeros if
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
