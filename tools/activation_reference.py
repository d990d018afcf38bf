"""Writes crates/nn/tests/fixtures/activations.safetensors: a PyTorch nn.Sequential that
puts every activation layer tapegrad has (with non-default settings where it has them)
between Linear layers, for crates/nn/tests/activations.rs.

The parameters (PyTorch's initialisation, seed 0, biases and PReLU's slopes moved off their
initial values, float32, PyTorch's names) and the input are stored under the prefix `net`;
its output and the gradients of `sum(out * c)` for the input and some parameters are
computed from the same values in float64. Hardsigmoid is left out: PyTorch's float64
backward multiplies by 1/6 rounded to float32 (tapegrad's ops tests check it against the
exact sixth).

    python tools/activation_reference.py   # needs torch
"""
import pathlib

import torch
import torch.nn as nn

from transformer_reference import pattern, run, write_safetensors


def main():
    torch.manual_seed(0)
    out = {}
    net = nn.Sequential(
        nn.Linear(6, 8), nn.PReLU(8),
        nn.Linear(8, 8), nn.Hardswish(),
        nn.Linear(8, 8), nn.Mish(),
        nn.Linear(8, 8), nn.SELU(),
        nn.Linear(8, 8), nn.CELU(0.5),
        nn.Linear(8, 8), nn.LogSigmoid(),
        nn.Linear(8, 8), nn.Softsign(),
        nn.Linear(8, 8), nn.ELU(0.7),
        nn.Linear(8, 8), nn.Softplus(beta=2.0, threshold=1.0),
        nn.Linear(8, 8), nn.Tanhshrink(),
        nn.Linear(8, 8), nn.Hardtanh(-0.5, 0.75),
        nn.Linear(8, 8), nn.ReLU6(),
        nn.Linear(8, 16), nn.GLU(),
        nn.Linear(8, 5), nn.PReLU(), nn.LogSoftmax(dim=1),
    )
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.PReLU):
                layer.weight.copy_(torch.rand_like(layer.weight) - 0.3)
    # Inputs in [-4, 4): the activations' kinks and tails are within reach.
    inputs = {"input": pattern([4, 6], 7, 13) * 8}
    grads = ["input", "0.weight", "1.weight", "12.bias", "26.weight", "27.weight"]
    run(net, "net", inputs, lambda m, x: {"out": m(x["input"])}, grads, out)

    source = f"PyTorch {torch.__version__}, by tools/activation_reference.py"
    path = pathlib.Path(__file__).parent.parent / "crates/nn/tests/fixtures/activations.safetensors"
    write_safetensors(path, out, source)


if __name__ == "__main__":
    main()
