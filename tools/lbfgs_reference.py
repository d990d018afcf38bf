"""Trajectories of PyTorch's L-BFGS, for crates/nn/tests/lbfgs.rs.

Run from the repository root with PyTorch installed: writes
crates/nn/tests/fixtures/lbfgs.json. Four problems in float64: the least-squares problem of
optimizers.json (a linear layer's mean squared error), the Rosenbrock function in four
variables, and a wavy function of three (sines on a shallow bowl), whose many minima make
the line search bracket and zoom, and `c x + a sin(b x) + x^2 / 100` in one variable. For each configuration (problem, keyword arguments, number
of `step` calls): the loss each `step` returned, the parameters after it, and the counts
L-BFGS keeps in its state (`func_evals`, `n_iter`).
"""
import json

import torch

torch.set_default_dtype(torch.float64)
with open("crates/nn/tests/fixtures/optimizers.json") as f:
    problem = json.load(f)["problem"]
X, Y = torch.tensor(problem["X"]), torch.tensor(problem["Y"])


def least_squares():
    w = torch.tensor(problem["W0"], requires_grad=True)
    b = torch.tensor(problem["b0"], requires_grad=True)
    return [w, b], lambda: ((X @ w.T + b - Y) ** 2).mean()


def rosenbrock():
    x = torch.tensor([-1.5, 2.0, -0.5, 1.2], requires_grad=True)
    return [x], lambda: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def wavy():
    x = torch.tensor([0.3, -1.1, 2.4], requires_grad=True)
    return [x], lambda: (torch.sin(3 * x) + 0.05 * x**2).sum()


def tilted(a, b, c, x0):
    x = torch.tensor(x0, requires_grad=True)
    return [x], lambda: (c * x + a * torch.sin(b * x) + 0.01 * x**2).sum()


def negated_least_squares():
    params, loss = least_squares()
    return params, lambda: -loss()


PROBLEMS = {
    "least_squares": least_squares,
    "rosenbrock": rosenbrock,
    "negated_least_squares": negated_least_squares,
    "wavy": wavy,
    "tilted": tilted,
}
out = []


def record(problem, kwargs, steps, args=None):
    params, loss_fn = PROBLEMS[problem](**(args or {}))
    opt = torch.optim.LBFGS(params, **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    trajectory = []
    for _ in range(steps):
        loss = opt.step(closure)
        state = opt.state[params[0]]
        trajectory.append({
            "loss": float(loss.detach()),
            "params": [p.detach().flatten().tolist() for p in params],
            "func_evals": state["func_evals"],
            "n_iter": state["n_iter"],
        })
    case = {"problem": problem, "kwargs": kwargs, "steps": trajectory}
    if args is not None:
        case["args"] = args
    out.append(case)


record("least_squares", {}, 2)
record("least_squares", {"lr": 0.5, "max_iter": 4, "history_size": 3}, 6)
record("least_squares", {"lr": 0.8, "max_iter": 3, "max_eval": 2}, 4)
record("least_squares", {"line_search_fn": "strong_wolfe", "tolerance_grad": 1e-3}, 2)
record("rosenbrock", {"line_search_fn": "strong_wolfe"}, 4)
record("rosenbrock", {"line_search_fn": "strong_wolfe", "max_iter": 7, "history_size": 4}, 8)
record("rosenbrock", {"line_search_fn": "strong_wolfe", "max_iter": 30, "max_eval": 12}, 3)
record("rosenbrock", {"lr": 0.01, "max_iter": 10, "tolerance_change": 1e-4}, 3)
record("rosenbrock", {"line_search_fn": "strong_wolfe", "lr": 1e-3, "max_iter": 6}, 3)
record("rosenbrock", {"line_search_fn": "strong_wolfe", "lr": 50.0, "max_iter": 6}, 3)
record("least_squares", {"line_search_fn": "strong_wolfe", "lr": 1e-4, "max_eval": 3}, 3)
record("wavy", {"line_search_fn": "strong_wolfe", "lr": 4.0, "max_iter": 5}, 3)
record("wavy", {"line_search_fn": "strong_wolfe", "lr": 0.05, "max_iter": 5}, 3)
# Along one line of `c x + a sin(b x) + x^2 / 100` the search meets the rarer cases: a trial
# higher than the one before, and the zoom's moves away from either end.
record("tilted", {"line_search_fn": "strong_wolfe", "lr": 0.01, "max_iter": 4}, 2,
       {"a": 0.9, "b": 5.0, "c": 0.15, "x0": [-2.2]})
record("tilted", {"line_search_fn": "strong_wolfe", "lr": 1000.0, "max_iter": 4}, 2,
       {"a": 0.6, "b": 3.0, "c": 1.0, "x0": [0.8]})
record("tilted", {"line_search_fn": "strong_wolfe", "lr": 1.0, "max_iter": 4}, 2,
       {"a": 0.44, "b": 3.0, "c": -0.63, "x0": [0.4]})
record("tilted", {"line_search_fn": "strong_wolfe", "lr": 0.01, "max_iter": 4}, 2,
       {"a": 0.31, "b": 40.0, "c": 0.79, "x0": [-0.9]})
record("negated_least_squares", {"line_search_fn": "strong_wolfe", "maximize": True}, 2)

with open("crates/nn/tests/fixtures/lbfgs.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "cases": out}, f, indent=1)
print(f"wrote {len(out)} L-BFGS trajectories with torch {torch.__version__}")
