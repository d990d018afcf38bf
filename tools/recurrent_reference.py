"""Writes crates/nn/tests/fixtures/bidirectional.safetensors: PyTorch's bidirectional
nn.LSTM, nn.GRU and nn.RNN, for crates/nn/tests/bidirectional.rs.

Each case's parameters (PyTorch's initialisation, seed 0, float32, PyTorch's names such as
`weight_ih_l0_reverse`) and inputs are stored under its prefix; its outputs, final states
and the gradients of `sum(out * c)` are computed from the same values in float64. Cases:

- lstm: LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True), input [3, 6, 4],
  given h0 and c0 [4, 3, 5]; gradients for the input, weight_ih_l1_reverse and h0.
- gru: GRU(4, 5, num_layers=2, bidirectional=True), sequence-major input [6, 3, 4], zero
  initial state; gradients for the input and weight_hh_l0_reverse.
- rnn: RNN(4, 5, num_layers=1, bidirectional=True), input [6, 3, 4]; gradient for the input.

    python tools/recurrent_reference.py   # needs torch
"""
import pathlib

import torch
import torch.nn as nn

from transformer_reference import pattern, write_safetensors
from transformer_reference import run as run_case


def run(model, prefix, inputs, call, grads_of, out):
    """The transformer fixtures' run, with PyTorch's initialisation kept as it is."""
    run_case(model, prefix, inputs, call, grads_of, out, move_off_init=False)


def main():
    torch.manual_seed(0)
    out = {}
    lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
    inputs = {"input": pattern([3, 6, 4], 7, 13), "h0": pattern([4, 3, 5], 5, 11), "c0": pattern([4, 3, 5], 3, 7)}

    def lstm_call(m, x):
        y, (h, c) = m(x["input"], (x["h0"], x["c0"]))
        return {"out": y, "h_n": h, "c_n": c}

    run(lstm, "lstm", inputs, lstm_call, ["input", "weight_ih_l1_reverse", "h0"], out)

    gru = nn.GRU(4, 5, num_layers=2, bidirectional=True)
    inputs = {"input": pattern([6, 3, 4], 5, 19)}

    def gru_call(m, x):
        y, h = m(x["input"])
        return {"out": y, "h_n": h}

    run(gru, "gru", inputs, gru_call, ["input", "weight_hh_l0_reverse"], out)

    rnn = nn.RNN(4, 5, num_layers=1, bidirectional=True)
    inputs = {"input": pattern([6, 3, 4], 3, 17)}
    run(rnn, "rnn", inputs, gru_call, ["input"], out)

    source = f"PyTorch {torch.__version__}, by tools/recurrent_reference.py"
    path = pathlib.Path(__file__).parent.parent / "crates/nn/tests/fixtures/bidirectional.safetensors"
    write_safetensors(path, out, source)


if __name__ == "__main__":
    main()
