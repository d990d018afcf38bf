"""Values and gradients of PyTorch's F.embedding_bag, for crates/ops/tests/embedding_bag.rs.

Run with PyTorch installed; prints each case's output and gradients (float64), which the test
holds as literals. The table is sin(0.5 k - 3) for k = 0..18 as 6 x 3; each output is weighted
by 1, 2, 3, ... before backward.
"""
import torch, torch.nn.functional as F
torch.set_default_dtype(torch.float64)
def table():
    return (torch.arange(18.).reshape(6, 3) * 0.5 - 3.0).sin().requires_grad_()
def show(name, out, *grads):
    print(name, "out", [round(v, 12) for v in out.detach().flatten().tolist()])
    for i, g in enumerate(grads):
        print(name, f"grad{i}", [round(v, 12) for v in (g.flatten().tolist() if g is not None else [])])
flat = torch.tensor([4, 0, 2, 2, 5, 1, 3])
# 1
w = table(); x = torch.tensor([[0, 2, 5], [1, 1, 3]])
out = F.embedding_bag(x, w, mode="mean"); G = torch.arange(out.numel()).reshape(out.shape) + 1.0
(out * G).sum().backward(); show("mean2d", out, w.grad)
# 2
w = table(); psw = torch.tensor([0.5, 1, 2, -1, 1.5, 0.25, 3], requires_grad=True)
out = F.embedding_bag(flat, w, torch.tensor([0, 3, 3, 5]), mode="sum", per_sample_weights=psw); G = torch.arange(out.numel()).reshape(out.shape) + 1.0
(out * G).sum().backward(); show("sumpsw", out, w.grad, psw.grad)
# 3
w = table()
out = F.embedding_bag(flat, w, torch.tensor([0, 3, 3, 5]), mode="max"); G = torch.arange(out.numel()).reshape(out.shape) + 1.0
(out * G).sum().backward(); show("max1d", out, w.grad)
# 4
w = table()
out = F.embedding_bag(flat, w, torch.tensor([0, 2, 5, 7]), mode="mean", include_last_offset=True, padding_idx=2); G = torch.arange(out.numel()).reshape(out.shape) + 1.0
(out * G).sum().backward(); show("meanlast", out, w.grad)
# 5
w = table()
out = F.embedding_bag(torch.tensor([[5, 5], [0, 5]]), w, mode="max", padding_idx=-1); G = torch.arange(out.numel()).reshape(out.shape) + 1.0
(out * G).sum().backward(); show("maxpad", out, w.grad)
