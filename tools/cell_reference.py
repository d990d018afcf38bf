"""Writes crates/nn/tests/fixtures/cells.safetensors: PyTorch's nn.LSTMCell, nn.GRUCell and
nn.RNNCell stepped over short sequences, and nn.RNN with relu, for crates/nn/tests/cells.rs.

Each case's parameters (PyTorch's initialisation, seed 0, float32, PyTorch's names) and
inputs are stored under its prefix; its outputs (the states of every step, stacked), final
states and the gradients of `sum(out * c)` are computed from the same values in float64.
Cases:

- lstm_cell: LSTMCell(4, 5), input [3, 2, 4] stepped over its first dimension from a given
  h0 and c0 [2, 5]; final c; gradients for the input, h0, c0, weight_hh and bias_ih.
- gru_cell: GRUCell(4, 5), input [3, 2, 4] from a zero state (no state passed at the first
  step); gradients for the input, weight_ih and bias_hh.
- rnn_cell: RNNCell(4, 5, bias=False, nonlinearity='relu'), unbatched input [3, 4] from a
  given h0 [5]; gradients for the input, h0 and weight_hh.
- rnn_relu: RNN(4, 5, num_layers=2, nonlinearity='relu'), input [6, 3, 4]; gradients for
  the input and weight_ih_l1.

    python tools/cell_reference.py   # needs torch
"""
import pathlib

import torch
import torch.nn as nn

from recurrent_reference import run
from transformer_reference import pattern, write_safetensors


def main():
    torch.manual_seed(0)
    out = {}

    lstm = nn.LSTMCell(4, 5)
    inputs = {"input": pattern([3, 2, 4], 7, 13), "h0": pattern([2, 5], 5, 11), "c0": pattern([2, 5], 3, 7)}

    def lstm_call(m, x):
        h, c, hs = x["h0"], x["c0"], []
        for step in x["input"]:
            h, c = m(step, (h, c))
            hs.append(h)
        return {"out": torch.stack(hs), "c_n": c}

    run(lstm, "lstm_cell", inputs, lstm_call, ["input", "h0", "c0", "weight_hh", "bias_ih"], out)

    gru = nn.GRUCell(4, 5)
    inputs = {"input": pattern([3, 2, 4], 5, 19)}

    def gru_call(m, x):
        h, hs = None, []
        for step in x["input"]:
            h = m(step, h)
            hs.append(h)
        return {"out": torch.stack(hs)}

    run(gru, "gru_cell", inputs, gru_call, ["input", "weight_ih", "bias_hh"], out)

    rnn = nn.RNNCell(4, 5, bias=False, nonlinearity="relu")
    inputs = {"input": pattern([3, 4], 3, 17), "h0": pattern([5], 2, 9)}

    def rnn_call(m, x):
        h, hs = x["h0"], []
        for step in x["input"]:
            h = m(step, h)
            hs.append(h)
        return {"out": torch.stack(hs)}

    run(rnn, "rnn_cell", inputs, rnn_call, ["input", "h0", "weight_hh"], out)

    stack = nn.RNN(4, 5, num_layers=2, nonlinearity="relu")
    inputs = {"input": pattern([6, 3, 4], 3, 17)}

    def stack_call(m, x):
        y, h = m(x["input"])
        return {"out": y, "h_n": h}

    run(stack, "rnn_relu", inputs, stack_call, ["input", "weight_ih_l1"], out)

    source = f"PyTorch {torch.__version__}, by tools/cell_reference.py"
    path = pathlib.Path(__file__).parent.parent / "crates/nn/tests/fixtures/cells.safetensors"
    write_safetensors(path, out, source)


if __name__ == "__main__":
    main()
