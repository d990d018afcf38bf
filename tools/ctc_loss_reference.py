"""Values and gradients of PyTorch's F.ctc_loss, for crates/ops/tests/ctc_loss.rs.

Run from the repository root with PyTorch installed: writes
crates/ops/tests/fixtures/ctc_loss.json. All in float64. The logits are 2 sin(0.37 k + 0.5)
for k = 0.., shaped [T, N, C]; the log-probabilities are their log_softmax over C, and the
gradients are the logits', so that they do not depend on PyTorch's convention for a raw
log-probability input (its backward assumes a log_softmax before it). The loss with
reduction 'none' is weighted by 1 + 0.5 k before backward (infinite losses left out). JSON has
no infinity or NaN: an infinite loss is written as the string "inf", a NaN gradient as null.
"""
import json

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def logits(t, n, c):
    k = torch.arange(float(t * n * c))
    return (2.0 * (0.37 * k + 0.5).sin()).reshape(t, n, c).requires_grad_()


# name: (T, N, C, targets (padded rows, or one flat list), input_lengths, target_lengths, blank)
CASES = {
    "padded": (6, 3, 5, [[1, 2, 2], [3, 4, 0], [2, 0, 0]], [6, 5, 4], [3, 2, 1], 0),
    "flat": (6, 3, 5, [1, 2, 2, 3, 4, 2], [6, 5, 4], [3, 2, 1], 0),
    "repeats": (7, 2, 4, [[1, 1, 1], [2, 3, 2]], [7, 7], [3, 3], 0),
    "blank last": (5, 2, 4, [[0, 1], [2, 2]], [5, 4], [2, 2], 3),
    "empty target": (4, 2, 3, [[1, 2], [0, 0]], [4, 3], [2, 0], 0),
    "impossible": (3, 2, 4, [[1, 1, 2], [3, 0, 0]], [3, 3], [3, 1], 0),
    "unbatched": (5, None, 4, [1, 3], [5], [2], 0),
}

cases = {}
for name, (t, n, c, targets, input_lengths, target_lengths, blank) in CASES.items():
    entry = {"T": t, "N": n, "C": c, "targets": targets, "input_lengths": input_lengths,
             "target_lengths": target_lengths, "blank": blank}
    for zero_infinity in [False, True]:
        x = logits(t, 1 if n is None else n, c)
        xs = x[:, 0] if n is None else x
        lp = xs.log_softmax(-1)
        tg = torch.tensor(targets)
        il = torch.tensor(input_lengths if n is not None else input_lengths[0])
        tl = torch.tensor(target_lengths if n is not None else target_lengths[0])
        out = {}
        for reduction in ["none", "sum", "mean"]:
            loss = F.ctc_loss(lp, tg, il, tl, blank=blank, reduction=reduction,
                              zero_infinity=zero_infinity)
            out[reduction] = ["inf" if v == float("inf") else v
                              for v in loss.detach().flatten().tolist()]
        loss = F.ctc_loss(lp, tg, il, tl, blank=blank, reduction="none",
                          zero_infinity=zero_infinity).reshape(-1)
        weights = 1.0 + 0.5 * torch.arange(float(loss.numel()))
        finite = torch.isfinite(loss)
        (torch.where(finite, loss, 0.0) * weights).sum().backward()
        # PyTorch's gradient is NaN for a sample without an alignment unless zero_infinity:
        # written as null (JSON has no NaN).
        out["logits_grad"] = [None if v != v else v for v in x.grad.flatten().tolist()]
        entry["zero_infinity" if zero_infinity else "plain"] = out
    cases[name] = entry

with open("crates/ops/tests/fixtures/ctc_loss.json", "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1, allow_nan=False)
    f.write("\n")
