"""Values and gradients of PyTorch's F.grid_sample and F.affine_grid, for
crates/ops/tests/grid_sample.rs.

Run from the repository root with PyTorch installed: writes
crates/ops/tests/fixtures/grid_sample.json. All in float64. The image is sin(0.3 k) for
k = 0.. as [2, 3, 4, 5]; the grid is 1.3 sin(0.7 k + 1) as [2, 3, 4, 2] (reaching past the
edges); theta is the identity plus 0.3 sin(1.1 k) as [2, 2, 3]. Each output is weighted by
cos(0.1 k) before backward, so every element has its own weight.
"""
import json

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def image():
    return (torch.arange(120.0) * 0.3).sin().reshape(2, 3, 4, 5).requires_grad_()


def grid():
    return ((torch.arange(48.0) * 0.7 + 1.0).sin() * 1.3).reshape(2, 3, 4, 2).requires_grad_()


def theta():
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return (identity + 0.3 * (torch.arange(12.0) * 1.1).sin().reshape(2, 2, 3)).requires_grad_()


def weighted_backward(out):
    weights = (torch.arange(out.numel(), dtype=torch.float64) * 0.1).cos().reshape(out.shape)
    (out * weights).sum().backward()


def flat(t):
    return t.detach().flatten().tolist() if t is not None else []


cases = {}
for mode in ["bilinear", "nearest"]:
    for padding in ["zeros", "border"]:
        for align in [False, True]:
            x, g = image(), grid()
            out = F.grid_sample(x, g, mode=mode, padding_mode=padding, align_corners=align)
            weighted_backward(out)
            grid_grad = g.grad if g.grad is not None else torch.zeros_like(g)
            cases[f"{mode}|{padding}|{align}"] = {
                "out": flat(out), "image_grad": flat(x.grad), "grid_grad": flat(grid_grad)}

affine = {}
for align in [False, True]:
    th = theta()
    out = F.affine_grid(th, [2, 3, 4, 5], align_corners=align)
    weighted_backward(out)
    entry = {"grid": flat(out), "theta_grad": flat(th.grad)}
    # The grid sampled: the gradient reaches theta through both.
    th, x = theta(), image()
    warped = F.grid_sample(x, F.affine_grid(th, [2, 3, 3, 6], align_corners=align), align_corners=align)
    weighted_backward(warped)
    entry.update({"warped": flat(warped), "warped_theta_grad": flat(th.grad), "warped_image_grad": flat(x.grad)})
    affine[str(align)] = entry

with open("crates/ops/tests/fixtures/grid_sample.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "grid_sample": cases, "affine_grid": affine}, f)
print(f"wrote {len(cases)} grid_sample cases and {len(affine)} affine_grid cases with torch {torch.__version__}")
