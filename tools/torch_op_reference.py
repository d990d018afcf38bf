"""Writes crates/ops/tests/fixtures/torch_ops.json: PyTorch's outputs for fixed inputs, so
the ops tests can check tapegrad's forward values against PyTorch without needing torch.

The cases after the first block also record PyTorch's gradients (for an uneven
`grad_output`) and, for max/min/pooling, the chosen indices: NaN, infinities and signed
zeros, where every op must give PyTorch's answer. JSON has no NaN or infinity, so such
numbers are written as the strings "nan", "inf" and "-inf".

Run from the repository root with a Python that has torch and numpy:
    python tools/torch_op_reference.py
"""
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261125)
cases = []


def t(*shape, low=-2.0, high=2.0):
    return torch.tensor(rng.uniform(low, high, size=shape), dtype=torch.float64)


def num(v):
    """A number for JSON: NaN and the infinities as strings (strict JSON has none)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def enc(x):
    x = x.detach()
    if x.dtype == torch.bool:
        x = x.double()
    return {"shape": list(x.shape), "data": [num(v) for v in x.reshape(-1).tolist()]}


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


# NaN, infinities and signed zeros, with gradients. New cases go after this point (the
# cases above draw from `rng` in order; reordering them would change their inputs).
nan, inf = math.nan, math.inf
SPECIAL = [nan, inf, -inf, -0.0, 0.0, -1.5, 0.5, 2.0]


def f64(data):
    return torch.tensor(data, dtype=torch.float64)


def grad_case(name, inputs, fn, grad_output=None, **args):
    """A case with PyTorch's output, indices (if `fn` returns a pair) and the gradient of
    every float input for `grad_output` (by default linspace(0.5, 2), uneven on purpose)."""
    xs = [i.clone().requires_grad_(i.is_floating_point()) for i in inputs]
    out = fn(*xs)
    values, indices = out if isinstance(out, tuple) else (out, None)
    entry = {"name": name, "inputs": [enc(i) for i in inputs], "args": args, "output": enc(values)}
    if indices is not None:
        entry["indices"] = enc(indices)
    if values.requires_grad:
        g = grad_output if grad_output is not None else torch.linspace(0.5, 2.0, values.numel(), dtype=torch.float64)
        g = g.reshape(values.shape)
        grads = torch.autograd.grad(values, [x for x in xs if x.requires_grad], g, allow_unused=True)
        grads = iter(grads)
        entry["grad_output"] = enc(g)
        entry["grads"] = [(lambda d: None if d is None else enc(d))(next(grads)) if x.requires_grad else None
                          for x in xs]
    cases.append(entry)


s = f64(SPECIAL)
for name, fn in [
    ("relu", torch.relu), ("leaky_relu", lambda v: F.leaky_relu(v, 0.1)), ("elu", F.elu),
    ("gelu", F.gelu), ("gelu_tanh", lambda v: F.gelu(v, approximate="tanh")), ("abs", torch.abs),
    ("sigmoid", torch.sigmoid), ("tanh", torch.tanh), ("exp", torch.exp), ("log", torch.log),
    ("log1p", torch.log1p), ("sqrt", torch.sqrt), ("rsqrt", torch.rsqrt), ("square", torch.square),
    ("reciprocal", torch.reciprocal), ("sin", torch.sin), ("cos", torch.cos), ("erf", torch.erf),
    ("silu", F.silu), ("softplus", F.softplus),
]:
    grad_case(name, [s], fn)
grad_case("elu", [s], lambda v: F.elu(v, 1.3), alpha=1.3)
# Bounds hit exactly, one bound, both, and crossed bounds (PyTorch: min(max(x, lo), hi)).
sb = f64(SPECIAL + [-1.0, 1.0, -0.5])
for lo, hi in [(-1.0, 1.0), (0.0, None), (None, 0.5), (-0.0, None), (0.5, 0.5), (1.0, -1.0)]:
    grad_case("clamp", [sb], lambda v: torch.clamp(v, lo, hi), min=lo, max=hi)
# All 64 ordered pairs of the special values.
pa, pb = f64(SPECIAL).repeat_interleave(len(SPECIAL)), f64(SPECIAL).repeat(len(SPECIAL))
grad_case("maximum", [pa, pb], torch.maximum)
grad_case("minimum", [pa, pb], torch.minimum)
for name in ["gt", "ge", "lt", "le", "eq", "ne"]:
    grad_case(name, [pa, pb], getattr(torch, name))
rows = f64([[1.0, -inf, 0.5, -inf], [nan, 2.0, nan, 3.0], [2.0, nan, 5.0, nan], [inf, inf, 1.0, -inf],
            [-inf, -inf, -inf, -inf], [3.0, 1.0, 3.0, 0.0], [-0.0, 0.0, -0.0, 0.0], [0.0, -0.0, 0.0, -0.0],
            [inf, nan, -inf, 0.0], [-1.0, -2.0, -1.0, -3.0]])
for dim, keep in [(1, False), (0, True)]:
    grad_case("max_dim", [rows], lambda v: torch.max(v, dim, keepdim=keep), dim=dim, keepdim=keep)
    grad_case("min_dim", [rows], lambda v: torch.min(v, dim, keepdim=keep), dim=dim, keepdim=keep)
    grad_case("argmax", [rows], lambda v: torch.argmax(v, dim, keepdim=keep), dim=dim, keepdim=keep)
    grad_case("argmin", [rows], lambda v: torch.argmin(v, dim, keepdim=keep), dim=dim, keepdim=keep)
vectors = [[1.0, 3.0, 3.0, 2.0], [nan, 1.0, nan, 5.0], [inf, inf, 2.0, -inf], [-inf, -inf], [0.0, -0.0, 0.0],
           [3.0, 3.0, nan], [-1.0, -1.0, 4.0, -1.0]]
for v in vectors:
    grad_case("argmax", [f64(v)], lambda t: torch.argmax(t), dim=None, keepdim=False)
    grad_case("argmin", [f64(v)], lambda t: torch.argmin(t), dim=None, keepdim=False)
    # The gradient is split evenly among the tied maxima (or among the NaNs).
    grad_case("max", [f64(v)], torch.max, grad_output=f64(1.5))
    grad_case("min", [f64(v)], torch.min, grad_output=f64(1.5))
    for p in [inf, -inf]:
        grad_case("norm", [f64(v)], lambda t: torch.linalg.vector_norm(t, p), grad_output=f64(1.5), p=num(p), dim=None)
grad_case("max", [rows], torch.max, grad_output=f64(1.5))
grad_case("min", [rows[5:]], torch.min, grad_output=f64(1.5))
ties = f64([[1.0, -3.0, 3.0, 2.0], [nan, 1.0, nan, 5.0], [inf, -inf, 2.0, inf], [0.0, -0.0, 0.0, 0.0],
            [-1.0, -2.0, 0.5, 2.0]])
for p in [inf, -inf]:
    grad_case("norm", [ties], lambda t: torch.linalg.vector_norm(t, p, dim=1), p=num(p), dim=1)
lse_rows = f64([[inf, 1.0, 2.0], [-inf, 1.0, 2.0], [inf, inf, 1.0], [-inf, -inf, -inf], [nan, 1.0, 2.0],
                [inf, -inf, 0.0], [1.0, 2.0, 3.0], [-0.0, 0.0, -inf]])
grad_case("softmax", [lse_rows], lambda t: torch.softmax(t, 1), dim=1)
grad_case("log_softmax", [lse_rows], lambda t: torch.log_softmax(t, 1), dim=1)
grad_case("logsumexp", [lse_rows], lambda t: torch.logsumexp(t, 1), dim=1)
# Max pooling over planes of a few levels, NaN and infinities included, so that windows
# hold ties and several NaNs (PyTorch takes the first maximum but the last NaN). The
# first is 2x2 / stride 2 with 18 outputs a row (the f32 AVX-512 kernel: one full vector
# and a partial one) and an odd edge; then a padded 3x3 and an unpadded overlapping one.
rng2 = np.random.default_rng(20261126)
LEVELS = [nan, nan, inf, -inf, -0.0, 0.0, 1.0, 2.0, -1.0]


def levels(*shape):
    return f64(rng2.choice(LEVELS, size=shape).tolist())


for shape, kernel, stride, padding in [((2, 2, 5, 37), (2, 2), (2, 2), (0, 0)), ((1, 2, 5, 7), (3, 3), (2, 2), (1, 1)),
                                       ((1, 2, 4, 6), (2, 2), (1, 1), (0, 0)), ((1, 1, 6, 5), (3, 2), (2, 1), (1, 1))]:
    img = levels(*shape)
    grad_case("max_pool2d", [img], lambda v: F.max_pool2d(v, kernel, stride, padding, return_indices=True),
              kernel=list(kernel), stride=list(stride), padding=list(padding))
# Infinite and NaN incoming gradients: rules that select (mask) must give 0 where they
# drop the gradient, not inf * 0 = NaN; rules that multiply give NaN as PyTorch does.
gbad = f64([inf, nan, -inf, inf, nan, inf, -inf, nan])
for name, fn in [("relu", torch.relu), ("abs", torch.abs), ("leaky_relu", lambda v: F.leaky_relu(v, 0.1)),
                 ("elu", F.elu), ("sigmoid", torch.sigmoid)]:
    grad_case(name, [s], fn, grad_output=gbad)
grad_case("clamp", [s], lambda v: torch.clamp(v, -1.0, 1.0), grad_output=gbad, min=-1.0, max=1.0)
grad_case("maximum", [f64(SPECIAL), f64(SPECIAL[::-1])], torch.maximum, grad_output=gbad)
grad_case("minimum", [f64(SPECIAL), f64(SPECIAL[::-1])], torch.minimum, grad_output=gbad)
grad_case("max_dim", [rows[:8]], lambda v: torch.max(v, 1), grad_output=gbad, dim=1, keepdim=False)
grad_case("max", [f64([1.0, 3.0, 3.0, -inf])], torch.max, grad_output=f64(inf))
grad_case("norm", [f64([1.0, -3.0, 3.0, 2.0])], lambda t: torch.linalg.vector_norm(t, inf), grad_output=f64(inf),
          p="inf", dim=None)
grad_case("where", [f64([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), s, f64(SPECIAL[::-1])],
          lambda c, a, b: torch.where(c != 0, a, b), grad_output=gbad)
grad_case("max_pool2d", [f64([[[[1.0, 2.0, nan], [3.0, -inf, 0.0]]]])],
          lambda v: F.max_pool2d(v, (2, 2), (1, 1), return_indices=True), grad_output=f64([inf, nan]),
          kernel=[2, 2], stride=[1, 1], padding=[0, 0])
# The Euclidean norm at zero, overflow, infinities and NaN (and with an infinite gradient).
for v, g in [([0.0, 0.0, -0.0], 1.5), ([0.0, 0.0], inf), ([inf, 1.0], 1.5), ([nan, 1.0], 1.5), ([1e200, 1e200], 1.5)]:
    grad_case("norm", [f64(v)], lambda t: torch.linalg.vector_norm(t, 2), grad_output=f64(g), p=2.0, dim=None)
grad_case("norm", [f64([[0.0, 0.0], [inf, 1.0], [nan, 2.0], [3.0, -4.0]])], lambda t: torch.linalg.vector_norm(t, 2, dim=1),
          p=2.0, dim=1)
# Powers with a number exponent, and both operands special (all 64 pairs).
for e in [2.0, 3.0, 0.5, 0.0, -1.0]:
    grad_case("pow", [s], lambda t: torch.pow(t, e), p=e)
grad_case("pow_tensor", [pa, pb], torch.pow)

# Keywords of the options convention (issue 15), with gradients.
rng3 = np.random.default_rng(20261130)


def u(*shape, low=-2.0, high=2.0):
    return torch.tensor(rng3.uniform(low, high, size=shape), dtype=torch.float64)


logits = u(5, 4)
labels = torch.tensor([0, 3, 1, 1, 2])
cw = u(4, low=0.5, high=2.0)
for ignore, ls, red in [(1, 0.15, "mean"), (-100, 0.3, "sum"), (0, 0.2, "none")]:
    grad_case("cross_entropy_opts", [logits, labels],
              lambda l, y: F.cross_entropy(l, y, weight=cw, ignore_index=ignore, label_smoothing=ls, reduction=red),
              weight=cw.tolist(), ignore_index=ignore, label_smoothing=ls, reduction=red)
soft = torch.softmax(u(5, 4), 1)
grad_case("cross_entropy_soft_ls", [logits, soft], lambda l, t: F.cross_entropy(l, t, label_smoothing=0.25),
          label_smoothing=0.25)
yb = u(3, 4, low=0.0, high=1.0)
pw, bw = u(4, low=0.5, high=3.0), u(3, 1, low=0.5, high=1.5)
grad_case("bce_logits_pos_weight", [u(3, 4), yb],
          lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight=bw, pos_weight=pw),
          weight=enc(bw), pos_weight=enc(pw))
ew = u(3, 4, low=0.5, high=1.5)
grad_case("bce_weight", [u(3, 4, low=0.05, high=0.95), yb], lambda p, y: F.binary_cross_entropy(p, y, weight=ew),
          weight=enc(ew))
grad_case("huber_loss", [u(3, 4), u(3, 4)], lambda a, b: F.huber_loss(a, b, delta=0.6), delta=0.6)
img = u(2, 3, 7, 6)
for k, d in [((4, 3), (1, 2)), ((2, 2), (1, 1))]:
    w = u(4, 3, *k)
    grad_case("conv2d_same", [img, w, u(4)], lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=d),
              dilation=list(d))
grad_case("conv1d_same", [u(2, 3, 9), u(4, 3, 4)], lambda x, w: F.conv1d(x, w, padding="same"))
for kernel, stride, padding, dilation in [((3, 2), (2, 2), (1, 1), (1, 1)), ((2, 3), (2, 1), (1, 1), (2, 2))]:
    grad_case("max_pool2d_opts", [img],
              lambda v: F.max_pool2d(v, kernel, stride, padding, dilation=dilation, ceil_mode=True, return_indices=True),
              kernel=list(kernel), stride=list(stride), padding=list(padding), dilation=list(dilation))
for include in [True, False]:
    grad_case("avg_pool2d_opts", [img],
              lambda v: F.avg_pool2d(v, (3, 2), (2, 2), (1, 1), ceil_mode=True, count_include_pad=include),
              kernel=[3, 2], stride=[2, 2], padding=[1, 1], count_include_pad=include)
grad_case("avg_pool2d_divisor", [img], lambda v: F.avg_pool2d(v, 2, divisor_override=3), divisor=3)
for mode in ["reflect", "replicate", "circular"]:
    grad_case("pad", [img], lambda v: F.pad(v, (2, 1, 1, 3), mode=mode), pads=[2, 1, 1, 3], mode=mode)
grad_case("pad", [img], lambda v: F.pad(v, (-1, 2, 1, -2), value=0.5), pads=[-1, 2, 1, -2], mode="constant", value=0.5)
zeros = f64([[1.5, 0.0, -2.0], [0.5, 3.0, -1.0], [0.0, 0.0, 2.0]])
grad_case("prod_dim", [zeros], lambda v: torch.prod(v, 1), dim=1)
grad_case("prod_dim", [u(3, 4)], lambda v: torch.prod(v, 0), dim=0)
grad_case("cumsum", [u(3, 4)], lambda v: torch.cumsum(v, 1), dim=1)
grad_case("softplus_opts", [u(3, 4)], lambda v: F.softplus(v, beta=2.0, threshold=1.5), beta=2.0, threshold=1.5)

# Resizing (F.interpolate), with gradients.
rng4 = np.random.default_rng(20261203)


def v(*shape):
    return torch.tensor(rng4.uniform(-2.0, 2.0, size=shape), dtype=torch.float64)


def resize(x, size=None, scale=None, mode="nearest", align=None, recompute=False):
    one = (lambda l: l[0] if l is not None and len(l) == 1 else l)
    kw = dict(size=one(size), scale_factor=one(scale), mode=mode, align_corners=align, recompute_scale_factor=recompute)
    grad_case("interpolate", [x], lambda t: F.interpolate(t, **kw), size=size, scale=scale, mode=mode,
              align=align, recompute=recompute)


im = v(2, 3, 5, 4)
resize(im, size=[7, 9])
resize(im, scale=[1.5])
resize(im, size=[3, 3], mode="nearest-exact")
resize(im, scale=[2.0], mode="bilinear")
resize(im, size=[7, 5], mode="bilinear", align=True)
resize(im, size=[3, 2], mode="bilinear")
resize(im, scale=[1.7, 0.8], mode="bilinear", recompute=True)
resize(im, scale=[1.3, 2.6], mode="bilinear")
seq = v(2, 3, 6)
resize(seq, size=[11], mode="linear")
resize(seq, scale=[0.6], mode="linear")
resize(seq, size=[1], mode="linear", align=True)
resize(v(1, 2, 3, 4, 3), size=[5, 2, 4], mode="trilinear")
resize(v(1, 2, 3, 4, 3), scale=[2.0], mode="nearest")

# Normalising, cosine similarity and one-hot labels.
grad_case("normalize", [v(3, 4)], lambda t: F.normalize(t), p=2.0, dim=1, eps=1e-12)
grad_case("normalize", [v(2, 3, 4)], lambda t: F.normalize(t, p=1.0, dim=-1, eps=0.5), p=1.0, dim=-1, eps=0.5)
grad_case("normalize", [f64([[0.0, 0.0], [3.0, -4.0]])], lambda t: F.normalize(t, p=2.0, dim=1, eps=1e-3),
          p=2.0, dim=1, eps=1e-3)
grad_case("cosine_similarity", [v(3, 4), v(1, 4)], lambda a, b: F.cosine_similarity(a, b), dim=1, eps=1e-8)
grad_case("cosine_similarity", [v(2, 3, 5), v(2, 3, 5)], lambda a, b: F.cosine_similarity(a, b, dim=-1, eps=0.3),
          dim=-1, eps=0.3)
grad_case("cosine_similarity", [0.1 * v(3, 4), v(3, 4)], lambda a, b: F.cosine_similarity(a, b, eps=0.5),
          dim=1, eps=0.5)
grad_case("one_hot", [torch.tensor([[2, 0], [1, 4]])], lambda y: F.one_hot(y, 6), num_classes=6)
grad_case("one_hot", [torch.tensor([3, 1])], lambda y: F.one_hot(y))

# Activations. Special values come in cases of at most 8 elements: there PyTorch runs its
# scalar loops, whose gradient at NaN (the incoming gradient, for the ELU family and
# hardswish) its vectorised loops do not keep.
edges = f64([-3.0, 3.0, -1.0, 1.0, 6.0, -25.0, 25.0, 0.25])
for inp in [s, edges]:
    for name, fn in [("hardtanh", F.hardtanh), ("relu6", F.relu6), ("hardswish", F.hardswish), ("mish", F.mish),
                     ("selu", F.selu), ("logsigmoid", F.logsigmoid), ("softsign", F.softsign),
                     ("tanhshrink", F.tanhshrink)]:
        grad_case(name, [inp], fn)
    # PyTorch's celu backward rounds 1 / alpha to f32, in f64 too: the gradients are checked
    # at alphas whose reciprocal is exact, the values also at one whose reciprocal is not.
    grad_case("celu", [inp], lambda t: F.celu(t, 0.5), alpha=0.5)
    case("celu", [inp], F.celu(inp, 0.7), alpha=0.7)
    case("hardsigmoid", [inp], F.hardsigmoid(inp))
    # PyTorch's hardsigmoid backward multiplies by 1/6 rounded to f32, in f64 too; the same
    # function written as a clamp has the exact sixth, which tapegrad gives.
    grad_case("hardsigmoid", [inp], lambda t: torch.clamp(t + 3, 0, 6) / 6)
grad_case("hardtanh", [sb], lambda t: F.hardtanh(t, -0.5, 2.0), min=-0.5, max=2.0)
for name, fn in [("relu6", F.relu6), ("hardtanh", F.hardtanh), ("hardswish", F.hardswish)]:
    grad_case(name, [s], fn, grad_output=gbad)
grad_case("mish", [v(3, 4)], F.mish)
grad_case("glu", [v(3, 4)], lambda t: F.glu(t, -1), dim=-1)
grad_case("glu", [v(2, 6, 3)], lambda t: F.glu(t, 1), dim=1)
grad_case("prelu", [v(2, 3, 4), f64([0.25, -0.5, 1.5])], F.prelu)
grad_case("prelu", [s.reshape(2, 4), f64([0.25])], F.prelu)

# Ordering (NaN above every number, ties in their order), standard deviations (0 where a
# sample is constant, and its gradient 0) and triangles.
order_rows = f64([[3.0, nan, 1.0, 3.0], [-inf, 2.0, nan, 1.0], [0.5, -0.0, 0.0, inf]])
for dim, descending in [(1, False), (1, True), (0, True)]:
    grad_case("sort", [order_rows], lambda t: torch.sort(t, dim=dim, descending=descending, stable=True),
              dim=dim, descending=descending)
    grad_case("argsort", [order_rows], lambda t: torch.argsort(t, dim=dim, descending=descending, stable=True),
              dim=dim, descending=descending)
distinct = v(3, 5)
for dim, k, largest in [(1, 2, True), (0, 3, False), (-1, 5, True)]:
    grad_case("topk", [distinct], lambda t: torch.topk(t, k, dim, largest=largest), dim=dim, k=k, largest=largest)
grad_case("topk", [f64([[1.0, nan, -inf, 4.0]])], lambda t: torch.topk(t, 2, 1), dim=1, k=2, largest=True)
std_rows = f64([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
grad_case("std", [std_rows], lambda t: torch.std(t, 1), dim=1, correction=1.0)
grad_case("std", [v(3, 4)], lambda t: torch.std(t, 0, correction=0, keepdim=True), dim=0, correction=0.0, keepdim=True)
grad_case("std", [v(2, 3, 4)], lambda t: torch.std(t), dim=None, correction=1.0)
for k in [0, -1, 2]:
    grad_case("tril", [v(2, 3, 4)], lambda t: torch.tril(t, k), diagonal=k)
    grad_case("triu", [v(4, 3)], lambda t: torch.triu(t, k), diagonal=k)

# einsum: batched products, implicit outputs, diagonals, ellipses, broadcasting.
for equation, shapes in [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij,kj", [(3, 4), (5, 4)]),
                         ("ii->i", [(4, 4)]), ("bii", [(2, 3, 3)]), ("...ij,jk->...ki", [(2, 2, 3, 4), (4, 5)]),
                         ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 1, 5, 4)]), ("i,j,ij->", [(3,), (4,), (3, 4)]),
                         ("BiJ,J->Bi", [(2, 3, 4), (4,)])]:
    grad_case("einsum", [v(*shape) for shape in shapes], lambda *ts: torch.einsum(equation, *ts), equation=equation)

# Kullback-Leibler divergence (targets of 0 add 0; with a zero target PyTorch's target
# gradient is NaN, so that case records values only).
log_q = torch.log_softmax(v(3, 4), 1)
p_pos = torch.softmax(v(3, 4), 1)
for reduction in ["batchmean", "sum", "mean", "none"]:
    grad_case("kl_div", [log_q, p_pos], lambda a, b: F.kl_div(a, b, reduction=reduction), reduction=reduction, log_target=False)
grad_case("kl_div", [log_q, torch.log(p_pos)], lambda a, b: F.kl_div(a, b, reduction="batchmean", log_target=True),
          reduction="batchmean", log_target=True)
p_zero = f64([[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
case("kl_div", [log_q, p_zero], F.kl_div(log_q, p_zero, reduction="none"), reduction="none", log_target=False)

# Circular shifts and sub-pixel shuffles.
grad_case("roll", [v(3, 4)], lambda t: torch.roll(t, (1, -5), (0, 1)), shifts=[1, -5], dims=[0, 1])
grad_case("roll", [v(2, 3)], lambda t: torch.roll(t, 2), shifts=[2], dims=[])
grad_case("pixel_shuffle", [v(2, 8, 2, 3)], lambda t: F.pixel_shuffle(t, 2), factor=2)
grad_case("pixel_unshuffle", [v(1, 2, 6, 3)], lambda t: F.pixel_unshuffle(t, 3), factor=3)

# Trigonometric, hyperbolic, exponential and rounding functions, atan2 and logaddexp: values
# in each domain, then the special values (8 elements: PyTorch's scalar loops).
unit = f64([-0.9, -0.5, -0.1, 0.0, 0.3, 0.7, 0.95, 0.45])
for name, fn, inp in [("tan", torch.tan, v(3, 4)), ("asin", torch.asin, unit), ("acos", torch.acos, unit),
                      ("atan", torch.atan, v(3, 4)), ("sinh", torch.sinh, v(3, 4)), ("cosh", torch.cosh, v(3, 4)),
                      ("asinh", torch.asinh, v(3, 4)), ("acosh", torch.acosh, 1.5 + v(3, 4).abs()),
                      ("atanh", torch.atanh, unit), ("expm1", torch.expm1, v(3, 4)), ("exp2", torch.exp2, v(3, 4)),
                      ("log2", torch.log2, 0.5 + v(3, 4).abs()), ("log10", torch.log10, 0.5 + v(3, 4).abs()),
                      ("sign", torch.sign, v(3, 4)), ("floor", torch.floor, 3 * v(3, 4)),
                      ("ceil", torch.ceil, 3 * v(3, 4)), ("round", torch.round, 3 * v(3, 4)),
                      ("trunc", torch.trunc, 3 * v(3, 4)), ("frac", torch.frac, 3 * v(3, 4))]:
    grad_case(name, [inp], fn)
    grad_case(name, [s], fn)
grad_case("round", [f64([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 1e300])], torch.round)
grad_case("atan2", [v(3, 4), v(1, 4)], torch.atan2)
grad_case("atan2", [pa, pb], torch.atan2)
grad_case("logaddexp", [v(3, 1), v(1, 4)], torch.logaddexp)
grad_case("logaddexp", [pa, pb], torch.logaddexp)
grad_case("logaddexp", [f64([800.0, -800.0, 3.0]), f64([800.0, -800.0, -700.0])], torch.logaddexp)

# amax / amin: ties split evenly, a NaN maximum gives its whole group a NaN gradient.
grad_case("amax", [v(2, 3, 4)], lambda t: torch.amax(t, dim=(0, 2), keepdim=True), dims=[0, 2], keepdim=True)
grad_case("amin", [v(2, 3, 4)], lambda t: torch.amin(t, dim=(-1,)), dims=[-1], keepdim=False)
ties = f64([[1.0, 3.0, 3.0, nan], [2.0, 2.0, 0.0, 2.0]])
grad_case("amax", [ties], lambda t: torch.amax(t, dim=(1,)), dims=[1], keepdim=False)
grad_case("amin", [ties], lambda t: torch.amin(t, dim=(0, 1)), dims=[0, 1], keepdim=False)
grad_case("amax", [ties[1:]], lambda t: torch.amax(t, dim=(1, 0), keepdim=True), dims=[1, 0], keepdim=True)

# 1-d pooling and adaptive max pooling (overlapping windows, ties, NaN).
seq = v(2, 3, 9)
grad_case("max_pool1d", [seq], lambda t: F.max_pool1d(t, 3, 2, 1, dilation=2, ceil_mode=True, return_indices=True),
          kernel=3, stride=2, padding=1, dilation=2, ceil_mode=True)
grad_case("max_pool1d", [seq], lambda t: F.max_pool1d(t, 2, return_indices=True), kernel=2)
grad_case("avg_pool1d", [seq], lambda t: F.avg_pool1d(t, 4, 3, 2, ceil_mode=True, count_include_pad=False),
          kernel=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)
grad_case("avg_pool1d", [seq], lambda t: F.avg_pool1d(t, 3, 1, 1), kernel=3, stride=1, padding=1)
grad_case("adaptive_avg_pool1d", [seq], lambda t: F.adaptive_avg_pool1d(t, 4), size=4)
grad_case("adaptive_max_pool1d", [seq], lambda t: F.adaptive_max_pool1d(t, 4), size=4)
grad_case("adaptive_max_pool1d", [seq], lambda t: F.adaptive_max_pool1d(t, 1), size=1)
grad_case("adaptive_max_pool2d", [v(2, 2, 5, 7)], lambda t: F.adaptive_max_pool2d(t, (3, 4)), size=[3, 4])
grad_case("adaptive_max_pool2d", [v(1, 2, 4, 6)], lambda t: F.adaptive_max_pool2d(t, (2, 3)), size=[2, 3])
grad_case("adaptive_max_pool2d", [v(1, 1, 3, 3)], lambda t: F.adaptive_max_pool2d(t, (5, 4)), size=[5, 4])
grad_case("adaptive_max_pool2d", [f64([[[[1.0, 2.0, 2.0], [nan, 0.0, 2.0]]]])],
          lambda t: F.adaptive_max_pool2d(t, (1, 2)), size=[1, 2])

# Transposed 1-d convolutions: strides, padding, dilation, output padding, groups.
grad_case("conv_transpose1d", [v(2, 4, 6), v(4, 3, 3), v(6)],
          lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1, groups=2, dilation=1),
          stride=2, padding=1, output_padding=1, groups=2, dilation=1)
grad_case("conv_transpose1d", [v(1, 3, 5), v(3, 2, 2), v(2)],
          lambda x, w, b: F.conv_transpose1d(x, w, b, stride=3, dilation=2, output_padding=2),
          stride=3, padding=0, output_padding=2, groups=1, dilation=2)

# Margin and likelihood losses.
pm1 = f64([1.0, -1.0, -1.0, 1.0])
grad_case("margin_ranking_loss", [v(4), v(4), pm1], lambda a, b, y: F.margin_ranking_loss(a, b, y, margin=0.3),
          margin=0.3, reduction="mean")
grad_case("triplet_margin_loss", [v(4, 3), v(4, 3), v(4, 3)], lambda a, p, n: F.triplet_margin_loss(a, p, n),
          margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean")
grad_case("triplet_margin_loss", [v(4, 3), v(4, 3), v(4, 3)],
          lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=2.0, p=1.5, swap=True, reduction="none"),
          margin=2.0, p=1.5, eps=1e-6, swap=True, reduction="none")
grad_case("cosine_embedding_loss", [v(4, 3), v(4, 3), pm1],
          lambda a, b, y: F.cosine_embedding_loss(a, b, y, margin=-0.2, reduction="sum"), margin=-0.2, reduction="sum")
grad_case("cosine_embedding_loss", [v(3), v(3), f64(-1.0)],
          lambda a, b, y: F.cosine_embedding_loss(a, b, y), margin=0.0, reduction="mean")
grad_case("hinge_embedding_loss", [v(2, 4), pm1], lambda x, y: F.hinge_embedding_loss(x, y, margin=0.5, reduction="none"),
          margin=0.5, reduction="none")
grad_case("soft_margin_loss", [v(2, 4), pm1], lambda x, y: F.soft_margin_loss(x, y.detach()), reduction="mean")
counts = f64([0.0, 1.0, 2.0, 5.0, 0.5, 3.0, 1.5, 7.0]).reshape(2, 4)
# (Stirling's term masked with masked_fill gives PyTorch a NaN target gradient at a count of
# exactly 0, where the term is 0: the full case's smallest count is 0.25.)
grad_case("poisson_nll_loss", [v(2, 4), counts.clamp(min=0.25)], lambda x, y: F.poisson_nll_loss(x, y, full=True),
          log_input=True, full=True, eps=1e-8, reduction="mean")
grad_case("poisson_nll_loss", [v(2, 4).abs(), counts],
          lambda x, y: F.poisson_nll_loss(x, y, log_input=False, eps=0.01, reduction="sum"),
          log_input=False, full=False, eps=0.01, reduction="sum")
var = 0.1 + v(2, 4).square()
var[0, 1] = 1e-9
grad_case("gaussian_nll_loss", [v(2, 4), v(2, 4), var], lambda x, y, s: F.gaussian_nll_loss(x, y, s, full=True, eps=1e-4),
          full=True, eps=1e-4, reduction="mean")
grad_case("gaussian_nll_loss", [v(2, 4), v(2, 4), 0.1 + v(2).square()],
          lambda x, y, s: F.gaussian_nll_loss(x, y, s, reduction="none"), full=False, eps=1e-6, reduction="none")

# PyTorch's strict products and pairwise distances (the difference path, with a repeated
# row for a zero distance, and the matrix product path above 25 rows).
grad_case("mm", [v(2, 3), v(3, 4)], torch.mm)
grad_case("bmm", [v(2, 2, 3), v(2, 3, 4)], torch.bmm)
grad_case("mv", [v(2, 3), v(3)], torch.mv)
grad_case("dot", [v(3), v(3)], torch.dot)
grad_case("outer", [v(3), v(2)], torch.outer)
near = v(2, 4, 3)
far = torch.cat([v(3, 3), near[0, :1]], 0)
for p in [2.0, 1.0, 3.0]:
    grad_case("cdist", [near, far], lambda a, b: torch.cdist(a, b, p=p), p=p)
# The matrix-product path loses digits for close points (in f32 a zero distance comes out
# as about 1e-3, in PyTorch too): there the points lie apart.
many = v(30, 3)
grad_case("cdist", [many, 4.0 + v(3, 3)], lambda a, b: torch.cdist(a, b), p=2.0)

# Diagonals, traces and differences.
for offset, d1, d2 in [(0, 0, 1), (1, 0, 1), (-2, 1, 2), (1, 2, 0), (5, 1, 2)]:
    grad_case("diagonal", [v(3, 4, 5)], lambda t: torch.diagonal(t, offset, d1, d2), offset=offset, dim1=d1, dim2=d2)
grad_case("trace", [v(3, 4)], torch.trace)
grad_case("diff", [v(3, 5)], lambda t: torch.diff(t, n=2, dim=-1), n=2, dim=-1)
grad_case("diff", [v(4, 2)], lambda t: torch.diff(t, dim=0), n=1, dim=0)

# Distances between paired rows, eps added to each difference.
grad_case("pairwise_distance", [v(4, 3), v(4, 3)], lambda a, b: F.pairwise_distance(a, b), p=2.0, eps=1e-6, keepdim=False)
grad_case("pairwise_distance", [v(4, 3), v(3)], lambda a, b: F.pairwise_distance(a, b, p=1.0, eps=0.1, keepdim=True),
          p=1.0, eps=0.1, keepdim=True)
grad_case("pairwise_distance", [v(2, 3, 5), v(3, 5)], lambda a, b: F.pairwise_distance(a, b, p=3.0, eps=0.0), p=3.0, eps=0.0, keepdim=False)
grad_case("pairwise_distance", [v(3, 4), v(3, 4)], lambda a, b: F.pairwise_distance(a, b, p=-1.5), p=-1.5, eps=1e-6, keepdim=False)

# Running products, with zeros: one, two in a row, and none, along each dimension.
zs = v(3, 5)
zs[0, 2] = 0.0
zs[1, 1] = 0.0
zs[1, 3] = 0.0
grad_case("cumprod", [zs], lambda t: torch.cumprod(t, 1), dim=1)
grad_case("cumprod", [zs], lambda t: torch.cumprod(t, 0), dim=0)
grad_case("cumprod", [v(2, 3, 4)], lambda t: torch.cumprod(t, -1), dim=-1)

# Repeats in place and moved dimensions.
grad_case("repeat_interleave", [v(2, 3)], lambda t: t.repeat_interleave(3, dim=1), repeats=3, dim=1)
grad_case("repeat_interleave", [v(2, 2, 3)], lambda t: t.repeat_interleave(2, dim=-3), repeats=2, dim=-3)
grad_case("movedim", [v(2, 3, 4)], lambda t: torch.movedim(t, -1, 0), source=-1, destination=0)
grad_case("movedim", [v(2, 3, 4)], lambda t: torch.movedim(t, 0, 1), source=0, destination=1)

# The gamma family, on positive arguments and between the negative poles, then at the poles
# and infinities (values only: PyTorch's trigamma is a large finite number at the negative
# integers, tapegrad's +inf). PyTorch's trigamma (digamma's gradient, polygamma(1)) is
# accurate to about 1e-9, so those cases carry a wider tolerance.
gpos = 0.2 + 3 * v(3, 4).abs()
gneg = f64([-0.5, -1.5, -2.25, -3.7, -0.1, -10.5, -0.9, -5.25])
for inp in [gpos, gneg]:
    grad_case("lgamma", [inp], torch.lgamma)
    grad_case("digamma", [inp], torch.digamma, tolerance=1e-8)
    for n in [1, 2, 3]:
        grad_case("polygamma", [inp], lambda t: torch.polygamma(n, t), n=n, tolerance=1e-8 if n == 1 else None)
poles = f64([0.0, -0.0, -1.0, -2.0, 1e6, math.inf, -math.inf, math.nan])
case("lgamma", [poles], torch.lgamma(poles))
case("digamma", [poles], torch.digamma(poles))
tri = f64([0.0, -0.0, 1e6, math.inf, 3.5, -3.5])
case("polygamma", [tri], torch.polygamma(1, tri), n=1, tolerance=1e-8)

# Linear algebra: a batch of positive-definite matrices and triangular systems (A with a
# diagonal away from zero, the unread triangle filled to show it is not read), on the left
# and on the right, with a unit diagonal, and with a broadcast batch.
m = v(2, 3, 3)
spd = m @ m.transpose(-2, -1) + 3 * torch.eye(3, dtype=torch.float64)
grad_case("cholesky", [spd], torch.linalg.cholesky)
tri = v(2, 3, 3) + 3 * torch.eye(3, dtype=torch.float64)
for upper, left, unit, rhs in [(False, True, False, v(2, 3, 2)), (True, True, False, v(3, 4)),
                               (False, False, False, v(2, 4, 3)), (True, False, True, v(2, 1, 3))]:
    grad_case("solve_triangular", [tri, rhs],
              lambda a, b: torch.linalg.solve_triangular(a, b, upper=upper, left=left, unitriangular=unit),
              upper=upper, left=left, unitriangular=unit)

# General solves, inverses and determinants: a batch whose first matrix starts with a zero
# (so the factorization pivots), a right-hand side as a matrix, as a vector and broadcast,
# and a negative determinant for slogdet's sign.
gen = v(2, 3, 3) + 2 * torch.eye(3, dtype=torch.float64)
gen[0, 0, 0] = 0.0
grad_case("solve", [gen, v(2, 3, 2)], torch.linalg.solve)
grad_case("solve", [gen, v(2, 3)], torch.linalg.solve)
grad_case("solve", [gen, v(3, 4)], torch.linalg.solve)
grad_case("inv", [gen], torch.linalg.inv)
grad_case("det", [gen], torch.linalg.det)
flip = gen.flip(-2)
grad_case("slogdet", [flip], lambda a: torch.linalg.slogdet(a).logabsdet)
case("slogdet_sign", [flip], torch.linalg.slogdet(flip).sign)


# QR: Q and R flattened side by side; matrices tall, wide and square, LAPACK's signs on
# unshifted entries (negative heads included), each mode PyTorch differentiates; mode "r"
# as values only (PyTorch has no gradient for it).
def qr_flat(mode):
    return lambda a: torch.cat([p.reshape(-1) for p in torch.linalg.qr(a, mode=mode)])


for shape, mode in [((2, 4, 3), "reduced"), ((3, 5), "reduced"), ((3, 3), "complete"),
                    ((2, 3, 4), "complete"), ((5, 2), "reduced")]:
    grad_case("qr", [v(*shape)], qr_flat(mode), mode=mode)
tall = v(4, 3)
case("qr_r", [tall], torch.linalg.qr(tall, mode="r").R)

# Composed linear algebra: cross products along either end (one operand broadcast), least
# squares tall, wide (least norm) and against a vector, powers positive and negative.
grad_case("cross", [v(4, 3), v(1, 3)], lambda a, b: torch.linalg.cross(a, b, dim=-1), dim=-1)
grad_case("cross", [v(3, 2), v(3, 2)], lambda a, b: torch.linalg.cross(a, b, dim=0), dim=0)
grad_case("lstsq", [v(2, 5, 3), v(2, 5, 2)], lambda a, b: torch.linalg.lstsq(a, b).solution)
grad_case("lstsq", [v(2, 4), v(2, 3)], lambda a, b: torch.linalg.lstsq(a, b, driver="gelsd").solution)
grad_case("lstsq", [v(4, 3), v(4)], lambda a, b: torch.linalg.lstsq(a, b.unsqueeze(-1)).solution.squeeze(-1))
for k in [3, -2]:
    grad_case("matrix_power", [gen], lambda a: torch.linalg.matrix_power(a, k), k=k)

# Spectral decompositions. A vector's sign is arbitrary (LAPACK's and tapegrad's Jacobi
# rotations may differ), so the cases take what does not depend on it: the values, the
# squares of the vectors, and U Vᴴ of the first min(m, n) singular vectors.
def sym(*shape):
    a = v(*shape)
    return (a + a.transpose(-2, -1)) / 2


def eigh_flat(a):
    values, vectors = torch.linalg.eigh(a)
    return torch.cat([values.reshape(-1), vectors.square().reshape(-1)])


def svd_flat(full):
    def fn(a):
        u, s, vh = torch.linalg.svd(a, full_matrices=full)
        k = s.shape[-1]
        u, vh = u[..., :k], vh[..., :k, :]
        return torch.cat([p.reshape(-1) for p in [s, u.square(), vh.square(), u @ vh]])
    return fn


grad_case("eigh", [sym(2, 4, 4)], eigh_flat)
grad_case("eigh", [sym(3, 3)], eigh_flat)
grad_case("eigvalsh", [sym(2, 5, 5)], torch.linalg.eigvalsh)
for shape, full in [((2, 5, 3), False), ((3, 4), True), ((4, 4), False), ((2, 3, 5), True)]:
    grad_case("svd", [v(*shape)], svd_flat(full), full=full)
grad_case("svdvals", [v(2, 4, 3)], torch.linalg.svdvals)
# (The square one shifted off singular: the rule's error in f32 grows with the square of
# the condition number.)
for a in [v(5, 3), v(2, 3, 4), v(3, 3) + 3 * torch.eye(3, dtype=torch.float64)]:
    grad_case("pinv", [a], torch.linalg.pinv)
norm_input = v(2, 3, 4)
for ord in ["fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf]:
    name = ord if isinstance(ord, str) else num(float(ord))
    grad_case("matrix_norm", [norm_input], lambda a: torch.linalg.matrix_norm(a, ord=ord), ord=name)
grad_case("matrix_norm", [norm_input], lambda a: torch.linalg.matrix_norm(a, ord="nuc", keepdim=True),
          ord="nuc", keepdim=True)
grad_case("cond", [v(2, 4, 3)], torch.linalg.cond)
deficient = v(2, 4, 1) @ v(2, 1, 3)
case("matrix_rank", [deficient], torch.linalg.matrix_rank(deficient))

with open("crates/ops/tests/fixtures/torch_ops.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": cases}, f, allow_nan=False)
print(f"wrote {len(cases)} cases with torch {torch.__version__}")
