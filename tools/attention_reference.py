"""Writes crates/ops/tests/fixtures/sdpa.json: F.scaled_dot_product_attention in float64
for the inputs crates/ops/tests/attention.rs builds (`((i * a) mod b) / b - 0.5`), with the
loss sum(y * c): outputs and gradients for no mask, causal attention, a bool mask with a
row that masks every key, and a float mask with scale 0.7.

    python tools/attention_reference.py   # needs torch
"""
import json
import pathlib

import torch
import torch.nn.functional as F


def values(shape, a, b):
    n = 1
    for s in shape:
        n *= s
    return torch.tensor([((i * a) % b) / b - 0.5 for i in range(n)], dtype=torch.float64).reshape(shape)


def main():
    q0, k0, v0 = values([2, 3, 4], 7, 13), values([2, 5, 4], 5, 11), values([2, 5, 3], 3, 7)
    c = values([2, 3, 3], 11, 17)
    bool_mask = torch.tensor([[True, False, True, False, True], [False] * 5, [True] * 5])
    cases = {}
    for name in ["plain", "causal", "bool", "float"]:
        q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
        float_mask = values([3, 5], 2, 9).requires_grad_()
        keywords = {
            "plain": {},
            "causal": {"is_causal": True},
            "bool": {"attn_mask": bool_mask},
            "float": {"attn_mask": float_mask, "scale": 0.7},
        }[name]
        y = F.scaled_dot_product_attention(q, k, v, **keywords)
        (y * c).sum().backward()
        flat = lambda t: t.detach().flatten().tolist()
        case = {"y": flat(y), "gq": flat(q.grad), "gk": flat(k.grad), "gv": flat(v.grad)}
        if name == "float":
            case["gm"] = flat(float_mask.grad)
        cases[name] = case
    source = f"PyTorch {torch.__version__} F.scaled_dot_product_attention in float64, by tools/attention_reference.py"
    path = pathlib.Path(__file__).parent.parent / "crates/ops/tests/fixtures/sdpa.json"
    path.write_text(json.dumps({"source": source, "cases": cases}))


if __name__ == "__main__":
    main()
