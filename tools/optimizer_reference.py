"""Trajectories of the optimizers that optimizers.json does not cover, for
crates/nn/tests/pytorch_fixtures.rs.

Run from the repository root with PyTorch installed: writes
crates/nn/tests/fixtures/more_optimizers.json in optimizers.json's format (the same
least-squares problem, float64): for each configuration, the loss before and the parameters
after each of 20 steps.
"""
import json

import torch

torch.set_default_dtype(torch.float64)
with open("crates/nn/tests/fixtures/optimizers.json") as f:
    problem = json.load(f)["problem"]
X, Y = torch.tensor(problem["X"]), torch.tensor(problem["Y"])
CONFIGS = {
    "adamax": ("Adamax", {"lr": 0.05}),
    "adamax_wd": ("Adamax", {"lr": 0.02, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1}),
    "radam": ("RAdam", {"lr": 0.05}),
    "radam_wd": ("RAdam", {"lr": 0.03, "betas": [0.7, 0.9], "eps": 1e-6, "weight_decay": 0.1}),
    "radam_decoupled": ("RAdam", {"lr": 0.03, "weight_decay": 0.2, "decoupled_weight_decay": True}),
    "nadam": ("NAdam", {"lr": 0.05}),
    "nadam_wd": ("NAdam", {"lr": 0.02, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1,
                           "momentum_decay": 0.01}),
    "nadam_decoupled": ("NAdam", {"lr": 0.03, "weight_decay": 0.2, "decoupled_weight_decay": True}),
}
out = {}
for name, (cls, kwargs) in CONFIGS.items():
    w = torch.tensor(problem["W0"], requires_grad=True)
    b = torch.tensor(problem["b0"], requires_grad=True)
    args = dict(kwargs)
    if "betas" in args:
        args["betas"] = tuple(args["betas"])
    opt = getattr(torch.optim, cls)([w, b], **args)
    steps = []
    for _ in range(20):
        loss = ((X @ w.T + b - Y) ** 2).mean()
        before = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append({"loss_before_step": before, "W": w.detach().tolist(), "b": b.detach().tolist()})
    out[name] = {"class": cls, "kwargs": kwargs, "steps": steps}

with open("crates/nn/tests/fixtures/more_optimizers.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "problem": problem, "optimizers": out}, f, indent=1)
print(f"wrote {len(out)} trajectories with torch {torch.__version__}")
