"""Writes crates/ops/tests/fixtures/torch_ops.json: PyTorch's outputs for fixed inputs, so
the ops tests can check tapegrad's forward values against PyTorch without needing torch.

Run from the repository root with a Python that has torch and numpy:
    python tools/torch_op_reference.py
"""
import json

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261125)
cases = []


def t(*shape, low=-2.0, high=2.0):
    return torch.tensor(rng.uniform(low, high, size=shape), dtype=torch.float64)


def enc(x):
    return {"shape": list(x.shape), "data": x.detach().reshape(-1).tolist()}


def case(name, inputs, output, **args):
    cases.append({"name": name, "inputs": [enc(i) for i in inputs], "args": args, "output": enc(output)})


x = t(3, 4)
for name, fn in [
    ("exp", torch.exp), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("relu", torch.relu),
    ("abs", torch.abs), ("sin", torch.sin), ("cos", torch.cos), ("erf", torch.erf),
    ("silu", F.silu), ("gelu", F.gelu), ("gelu_tanh", lambda v: F.gelu(v, approximate="tanh")),
    ("softplus", F.softplus), ("elu", F.elu), ("leaky_relu", lambda v: F.leaky_relu(v, 0.1)),
    ("square", torch.square),
]:
    case(name, [x], fn(x))
p = t(3, 4, low=0.1, high=3.0)
for name, fn in [("log", torch.log), ("log1p", torch.log1p), ("sqrt", torch.sqrt), ("rsqrt", torch.rsqrt),
                 ("reciprocal", torch.reciprocal)]:
    case(name, [p], fn(p))
case("softmax", [x], torch.softmax(x, 1), dim=1)
case("log_softmax", [x], torch.log_softmax(x, 0), dim=0)
case("logsumexp", [x], torch.logsumexp(x, 1), dim=1)
case("var", [x], torch.var(x, 0, correction=1), dim=0)
case("norm", [x], torch.linalg.vector_norm(x, 2, dim=1), dim=1)
a, b = t(2, 1, 3, 4), t(3, 4, 5)
case("matmul", [a, b], torch.matmul(a, b))
logits, target = t(5, 4), torch.tensor([0, 3, 1, 1, 2])
case("cross_entropy", [logits, target.double()], F.cross_entropy(logits, target))
probs = t(5, 4, low=0.05, high=0.95)
y = torch.tensor(rng.uniform(0, 1, size=(5, 4)))
case("binary_cross_entropy", [probs, y], F.binary_cross_entropy(probs, y))
case("binary_cross_entropy_with_logits", [logits, y], F.binary_cross_entropy_with_logits(logits, y))
case("smooth_l1_loss", [logits, y], F.smooth_l1_loss(logits, y, beta=0.7), beta=0.7)
img = t(2, 4, 7, 6)
w = t(6, 2, 3, 2)
bias = t(6)
case("conv2d", [img, w, bias], F.conv2d(img, w, bias, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
     stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2)
wt, bt = t(4, 3, 3, 3), t(3)
case("conv_transpose2d", [img, wt, bt], F.conv_transpose2d(img, wt, bt, stride=2, padding=1, output_padding=1),
     stride=[2, 2], padding=[1, 1], output_padding=[1, 1])
case("max_pool2d", [img], F.max_pool2d(img, (3, 2), (2, 2), (1, 1)), kernel=[3, 2], stride=[2, 2], padding=[1, 1])
case("avg_pool2d", [img], F.avg_pool2d(img, (3, 3), (2, 1), (1, 0)), kernel=[3, 3], stride=[2, 1], padding=[1, 0])
case("adaptive_avg_pool2d", [img], F.adaptive_avg_pool2d(img, (3, 4)), size=[3, 4])
lw, lb = t(6), t(6)
case("layer_norm", [img, lw, lb], F.layer_norm(img, (6,), lw, lb, 1e-5))
bw, bb = t(4), t(4)
rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
out = F.batch_norm(img, rm, rv, bw, bb, training=True, momentum=0.1, eps=1e-5)
case("batch_norm", [img, bw, bb], out)
cases.append({"name": "batch_norm_running", "inputs": [], "args": {},
              "output": {"shape": [2, 4], "data": rm.tolist() + rv.tolist()}})

with open("crates/ops/tests/fixtures/torch_ops.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases with torch {torch.__version__}")
