"""PyTorch side of tapegrad's benchmark (cargo bench --bench workloads).

Implements the fixed workloads W1-W10 with the same definitions as the Rust side and
prints one JSON object per run: {"workload", "metric", "value", "unit", ...}.
usage: python bench/torch_workloads.py --workload w1|w2|w3|w4|conv|w5|w6mlp|w6cnn|w7|w8|w9|w10|ops [--threads 2] [--quick]
"""
import argparse, gzip, json, math, resource, statistics, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--workload", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--quick", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
ns = time.perf_counter_ns


def emit(metric, value, unit, **extra):
    print(json.dumps({"workload": a.workload, "metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def chain(numel):
    n = 100 if a.quick else 10000
    x0 = torch.full((numel,), 0.5, dtype=torch.float32, requires_grad=True)
    fwd, tot = [], []
    for r in range(2 if a.quick else 6):
        x0.grad = None
        t0 = ns()
        x = x0
        for _ in range(n):
            x = torch.tanh(x * 1.0001 + 0.001)
        t1 = ns()
        (x if numel == 1 else x.sum()).backward()
        t2 = ns()
        if r > 0:
            fwd.append((t1 - t0) / (3 * n))
            tot.append((t2 - t0) / (3 * n))
        del x
    emit("fwd+bwd", statistics.median(tot), "ns/op", fwd=statistics.median(fwd))


def timed(step, warmup, count):
    """Median milliseconds of `step()` over `count` calls after `warmup` untimed ones."""
    times = []
    for i in range(warmup + count):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def steps(model, opt, x, y, warmup, count):
    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return timed(step, warmup, count)


def mlp():
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def fmnist(model_name):
    d = "/usr/share/datasets/fashion-mnist/"

    def idx(path):
        with gzip.open(d + path, "rb") as f:
            data = f.read()
        rank = data[3]
        dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)

    xtr = torch.tensor(idx("train-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255
    ytr = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.int64)
    xte = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).unsqueeze(1) / 255
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.int64)
    torch.manual_seed(0)
    if model_name == "mlp":
        model, bs, epochs = nn.Sequential(nn.Flatten(), *mlp()), 128, 10
    else:
        model, bs, epochs = cnn(), 64, 3
    if a.quick:
        epochs, xtr, ytr = 1, xtr[:2000], ytr[:2000]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr), bs):
            b = perm[i:i + bs]
            opt.zero_grad()
            F.cross_entropy(model(xtr[b]), ytr[b]).backward()
            opt.step()
        with torch.no_grad():
            acc = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                      for i in range(0, len(yte), 1000)) / len(yte)
    emit("train wall time", time.perf_counter() - t0, "s", accuracy=acc)


w = a.workload
if w == "w1":
    chain(1)
elif w == "w2":
    chain(64)
elif w == "w3":
    torch.manual_seed(0)
    model = mlp()
    emit("step", steps(model, torch.optim.Adam(model.parameters(), lr=1e-3), torch.randn(128, 784),
                       torch.randint(0, 10, (128,)), 2 if a.quick else 20, 5 if a.quick else 200), "ms",
         peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
elif w == "w4":
    torch.manual_seed(0)
    model = cnn()
    emit("step", steps(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                       torch.randn(64 if not a.quick else 8, 1, 28, 28), torch.randint(0, 10, (64 if not a.quick else 8,)),
                       1 if a.quick else 5, 3 if a.quick else 50), "ms")
elif w == "conv":
    torch.manual_seed(0)
    n = 4 if a.quick else 64
    x = torch.randn(n, 1, 28, 28, requires_grad=True)
    wt = torch.randn(16, 1, 5, 5, requires_grad=True)
    b = torch.randn(16, requires_grad=True)
    gy = torch.randn(n, 16, 28, 28)
    times = []
    for step in range(3 if a.quick else 60):
        t0 = time.perf_counter()
        F.conv2d(x, wt, b, padding=2).backward(gy)
        if step >= 10 or a.quick:
            times.append((time.perf_counter() - t0) * 1e3)
        x.grad = wt.grad = b.grad = None
    emit("fwd+bwd", statistics.median(times), "ms")
elif w == "w5":
    for n in ([64] if a.quick else [128, 256, 512, 1024]):
        A, B, C = torch.rand(n, n) * 2 - 1, torch.rand(n, n) * 2 - 1, torch.empty(n, n)
        for _ in range(3):
            torch.mm(A, B, out=C)
        t0 = time.perf_counter(); torch.mm(A, B, out=C); est = time.perf_counter() - t0
        inner = max(1, math.ceil(0.05 / max(est, 1e-7)))
        gf = []
        for _ in range(3 if a.quick else 11):
            t = time.perf_counter()
            for _ in range(inner):
                torch.mm(A, B, out=C)
            gf.append(2 * n ** 3 / ((time.perf_counter() - t) / inner) / 1e9)
        emit(f"sgemm n={n}", statistics.median(gf), "GFLOP/s")
elif w == "w7":
    torch.manual_seed(0)
    batch, steps_, vocab = (4, 5, 50) if a.quick else (32, 35, 1000)
    emb, lstm, head = nn.Embedding(vocab, 64), nn.LSTM(64, 128, 1, batch_first=True), nn.Linear(128, vocab)
    params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    tokens = torch.randint(0, vocab, (batch, steps_))
    targets = torch.randint(0, vocab, (batch * steps_,))

    def lm_step():
        opt.zero_grad()
        hidden, _ = lstm(emb(tokens))
        F.cross_entropy(head(hidden).reshape(-1, vocab), targets).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    emit("step", timed(lm_step, *((1, 3) if a.quick else (5, 30))), "ms")
elif w == "w8":
    torch.manual_seed(0)
    B, T, D, H = (2, 8, 16, 4) if a.quick else (16, 64, 128, 4)

    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            s.ln1, s.qkv, s.proj = nn.LayerNorm(D), nn.Linear(D, 3 * D), nn.Linear(D, D)
            s.ln2, s.fc1, s.fc2 = nn.LayerNorm(D), nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(s, x):
            q, k, v = s.qkv(s.ln1(x)).split(D, dim=-1)
            q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
            att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // H), dim=-1)
            x = x + s.proj((att @ v).transpose(1, 2).reshape(B, T, D))
            return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))

    x, target = torch.randn(B, T, D), torch.randn(B, T, D)
    warmup, count = (1, 3) if a.quick else (5, 50)

    def block_steps(model):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

        def step():
            opt.zero_grad()
            F.mse_loss(model(x), target).backward()
            opt.step()
        return timed(step, warmup, count)

    emit("step", block_steps(Block()), "ms")
    fused = nn.TransformerEncoderLayer(D, H, 4 * D, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    emit("fused step", block_steps(fused), "ms")
elif w == "w9":
    torch.manual_seed(0)
    batch, (warmup, count) = (8, (1, 2)) if a.quick else (128, (5, 50))
    mlp = nn.Sequential(nn.Linear(784, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 10))
    params = list(mlp.parameters())
    x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
    v = [torch.randn_like(q) for q in params]

    def hvp():
        g = torch.autograd.grad(F.cross_entropy(mlp(x), y), params, create_graph=True)
        torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)

    emit("hvp", timed(hvp, warmup, count), "ms")
    n = 16 if a.quick else 256
    critic = nn.Sequential(nn.Linear(2, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 1))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.5, 0.9))
    real, fake, eps = torch.randn(n, 2), torch.randn(n, 2) + 2.0, torch.rand(n, 1)

    def critic_step():
        opt.zero_grad()
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        g, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        gp = ((g.norm(2, dim=1) - 1) ** 2).mean()
        (critic(fake).mean() - critic(real).mean() + 10 * gp).backward()
        opt.step()

    emit("wgan-gp step", timed(critic_step, warmup, count), "ms")
elif w == "w10":
    torch.manual_seed(0)
    n, size = (4, 8) if a.quick else (32, 32)

    class Block(nn.Module):
        def __init__(s, cin, cout, stride):
            super().__init__()
            s.conv1, s.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            s.conv2, s.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            s.shortcut = None
            if stride != 1 or cin != cout:
                s.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(s, x):
            y = s.bn2(s.conv2(F.relu(s.bn1(s.conv1(x)))))
            return F.relu(y + (x if s.shortcut is None else s.shortcut(x)))

    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    emit("step", steps(model, opt, torch.randn(n, 3, size, size), torch.randint(0, 10, (n,)),
                       1 if a.quick else 5, 2 if a.quick else 30), "ms")
elif w == "ops":
    q = a.quick
    rows, cols = (64, 32) if q else (4096, 512)
    n, c, hw = (2, 8, 8) if q else (32, 64, 32)
    classes, reps = (10, 2) if q else (1000, 15)

    def op(name, f):
        emit(f"{name} fwd+bwd", timed(f, 2, reps), "ms")

    torch.manual_seed(0)
    x = torch.randn(rows, cols, requires_grad=True)
    bias, column = torch.randn(cols, requires_grad=True), torch.randn(rows, 1, requires_grad=True)
    op("relu", lambda: x.relu().sum().backward())
    op("gelu", lambda: F.gelu(x).sum().backward())
    op("sigmoid", lambda: x.sigmoid().sum().backward())
    op("tanh", lambda: x.tanh().sum().backward())
    op("silu", lambda: F.silu(x).sum().backward())
    op("relu6", lambda: F.relu6(x).sum().backward())
    op("hardswish", lambda: F.hardswish(x).sum().backward())
    op("elu", lambda: F.elu(x).sum().backward())
    op("softplus", lambda: F.softplus(x).sum().backward())
    op("sin", lambda: x.sin().sum().backward())
    op("where(x > 0, x, 0)", lambda: torch.where(x > 0, x, 0.0).sum().backward())
    op("x * x", lambda: (x * x).sum().backward())
    op("x + row", lambda: (x + bias).sum().backward())
    op("x * column", lambda: (x * column).sum().backward())
    op("sum(0)", lambda: x.sum(0).sum().backward())
    op("mean(1)", lambda: x.mean(1).sum().backward())
    op("max(1)", lambda: x.max(1)[0].sum().backward())
    op("cumsum(1)", lambda: x.cumsum(1).sum().backward())
    op("cumsum(0)", lambda: x.cumsum(0).sum().backward())
    op("sort(1)", lambda: x.sort(1)[0].sum().backward())
    op("topk(10, 1)", lambda: x.topk(10, 1)[0].sum().backward())
    picks = torch.randint(0, cols, (rows, cols // 8))
    op("gather(1)", lambda: x.gather(1, picks).sum().backward())
    positive = x.detach() > 0
    op("masked_select", lambda: x.masked_select(positive).sum().backward())
    op("logsumexp(1)", lambda: x.logsumexp(1).sum().backward())
    op("amax(1)", lambda: x.amax(1).sum().backward())
    op("prod(1)", lambda: x.prod(1).sum().backward())
    op("prod(0)", lambda: x.prod(0).sum().backward())
    op("flip(1)", lambda: x.flip(1).square().sum().backward())
    op("tril", lambda: x.tril(0).square().sum().backward())
    op("x.t() * 2", lambda: (x.t() * 2.0).sum().backward())
    op("chunk + cat", lambda: torch.cat(x.chunk(4, 1), 1).sum().backward())
    op("layer_norm", lambda: F.layer_norm(x, [cols]).square().sum().backward())
    op("dropout", lambda: F.dropout(x, 0.5).sum().backward())
    logits = torch.randn(rows // 4, classes, requires_grad=True)
    targets = torch.randint(0, classes, (rows // 4,))
    op("softmax", lambda: logits.softmax(-1).square().sum().backward())
    op("log_softmax", lambda: logits.log_softmax(-1).square().sum().backward())
    op("cross_entropy", lambda: F.cross_entropy(logits, targets).backward())
    target = torch.randn(rows, cols)
    op("smooth_l1_loss", lambda: F.smooth_l1_loss(x, target).backward())
    op("atan2", lambda: torch.atan2(x, target).sum().backward())
    heads = torch.randn(n, c, 8, hw * 2, requires_grad=True)
    op("permute", lambda: (heads.permute(0, 2, 1, 3) * 2.0).sum().backward())
    img = torch.randn(n, c, hw, hw, requires_grad=True)
    conv3, strided = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, 2 * c, 3, padding=1, stride=2)
    conv1, depthwise = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(c, c, 3, padding=1, groups=c)
    depthwise_strided = nn.Conv2d(c, c, 3, padding=1, stride=2, groups=c)
    op("conv 3x3", lambda: conv3(img).sum().backward())
    op("conv 3x3 stride 2", lambda: strided(img).sum().backward())
    op("conv 1x1", lambda: conv1(img).sum().backward())
    op("conv 3x3 depthwise", lambda: depthwise(img).sum().backward())
    op("conv 3x3 depthwise stride 2", lambda: depthwise_strided(img).sum().backward())
    deep_img = torch.randn(n, 2 * c, hw // 4, hw // 4, requires_grad=True)
    deep = nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1)
    op("conv 4x4 stride 2, deep", lambda: deep(deep_img).sum().backward())
    bn = nn.BatchNorm2d(c)
    op("batch_norm", lambda: bn(img).square().sum().backward())
    op("group_norm", lambda: F.group_norm(img, 8).square().sum().backward())
    op("pad 1 (zeros)", lambda: F.pad(img, (1, 1, 1, 1)).sum().backward())
    op("max_pool 2x2", lambda: F.max_pool2d(img, 2).sum().backward())
    op("max_pool 3x3 stride 2", lambda: F.max_pool2d(img, 3, stride=2, padding=1).sum().backward())
    signal = torch.randn(n, c, hw * hw, requires_grad=True)
    op("max_pool1d 4", lambda: F.max_pool1d(signal, 4).sum().backward())
    op("avg_pool 2x2", lambda: F.avg_pool2d(img, 2).sum().backward())
    op("adaptive_avg_pool 1", lambda: F.adaptive_avg_pool2d(img, 1).sum().backward())
    angles = [0.1 * math.sin(i) for i in range(n)]
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.05, math.sin(a), math.cos(a), -0.05] for a in angles]
    ).reshape(n, 2, 3).requires_grad_()
    op(
        "grid_sample, affine warp",
        lambda: F.grid_sample(
            img, F.affine_grid(theta, [n, c, hw, hw], align_corners=False), align_corners=False
        ).sum().backward(),
    )
    table = torch.randn(100 if q else 10000, 256, requires_grad=True)
    ids = torch.randint(0, table.shape[0], (n, 128))
    op("embedding", lambda: F.embedding(ids, table).sum().backward())
    qkv = torch.randn(n, 8, 16 if q else 128, 64, requires_grad=True)
    op("attention", lambda: F.scaled_dot_product_attention(qkv, qkv, qkv).sum().backward())
    a64 = torch.randn(256, 256, dtype=torch.float64, requires_grad=True)
    op("matmul f64 256", lambda: (a64 @ a64).sum().backward())
    tiny = (torch.randn(rows // 16, cols) * 1e-39).requires_grad_()
    weight = torch.randn(cols, cols, requires_grad=True)
    op("linear, subnormal input", lambda: F.linear(tiny, weight).sum().backward())
    gru = nn.GRU(256, 256, 1)
    seq = torch.randn(4 if q else 35, n, 256, requires_grad=True)
    op("gru", lambda: gru(seq)[0].sum().backward())
    steps, labels = (8, 3) if q else (100, 20)
    frames = torch.randn(steps, n, 30, requires_grad=True)
    spoken = torch.tensor([1 + (7 * k + 3) % 29 for k in range(n * labels)]).reshape(n, labels)
    heard, said = torch.full((n,), steps), torch.full((n,), labels)
    op("ctc_loss", lambda: F.ctc_loss(frames.log_softmax(2), spoken, heard, said).backward())
elif w in ("w6mlp", "w6cnn"):
    fmnist(w[2:])
else:
    sys.exit(f"unknown workload {w}")
