"""Writes crates/ops/tests/fixtures/torch_hessian.json: torch.func.hessian of a small
network's loss with respect to both weight matrices, for fixed float64 inputs, so the
transforms' test checks against PyTorch without needing torch.

Run from the repository root with a Python that has torch and numpy:
    python tools/torch_func_reference.py
"""
import json

import numpy as np
import torch

rng = np.random.default_rng(20261130)


def t(*shape):
    return torch.tensor(rng.uniform(-1.0, 1.0, size=shape), dtype=torch.float64)


x, y, w1, w2 = t(5, 3), t(5, 1), t(4, 3), t(1, 4)


def loss(w1, w2):
    return ((torch.tanh(x @ w1.T) @ w2.T - y) ** 2).mean()


h = torch.func.hessian(loss, argnums=(0, 1))(w1, w2)


def enc(v):
    return {"shape": list(v.shape), "data": v.reshape(-1).tolist()}


out = {
    "torch_version": torch.__version__,
    "x": enc(x), "y": enc(y), "w1": enc(w1), "w2": enc(w2),
    "loss": loss(w1, w2).item(),
    "hessian": [[enc(h[i][j]) for j in range(2)] for i in range(2)],
}
with open("crates/ops/tests/fixtures/torch_hessian.json", "w") as f:
    json.dump(out, f)
print(f"wrote the Hessian with torch {torch.__version__}")
