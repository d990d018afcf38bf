"""Learning rates PyTorch's schedulers give, for crates/nn/tests/pytorch_fixtures.rs.

Run from the repository root with PyTorch installed: writes
crates/nn/tests/fixtures/lr_schedules.json, one entry per scheduler configuration: the
learning rate at each of 40 epochs (base rate 0.1), and for ReduceLROnPlateau the metric
fed to each step; and crates/nn/tests/fixtures/cyclic_schedules.json: OneCycleLR and
CyclicLR driving a small fit, their rate and momentum before each of 40 steps (and after
the last) and the weights after each.
"""
import json

import torch

EPOCHS = 40
out = {}


def record(name, make, metrics=None):
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=0.1)
    sched = make(opt)
    rates = []
    for epoch in range(EPOCHS):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[epoch])
    entry = {"lr": rates}
    if metrics is not None:
        entry["metrics"] = metrics
    out[name] = entry


S = torch.optim.lr_scheduler
record("MultiStepLR(milestones=[5,12,12,30],gamma=0.5)", lambda o: S.MultiStepLR(o, [5, 12, 12, 30], 0.5))
record("LinearLR(start_factor=0.25,end_factor=0.75,total_iters=8)",
       lambda o: S.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=8))
record("ConstantLR(factor=0.3,total_iters=6)", lambda o: S.ConstantLR(o, factor=0.3, total_iters=6))
record("PolynomialLR(total_iters=25,power=1.7)", lambda o: S.PolynomialLR(o, total_iters=25, power=1.7))
record("CosineAnnealingWarmRestarts(T_0=3,T_mult=2,eta_min=0.002)",
       lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.002))
record("CosineAnnealingWarmRestarts(T_0=7)", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=7))
# A loss that falls, stalls, wobbles within the threshold, and falls again.
loss = [1.0, 0.8, 0.7, 0.7, 0.69995, 0.71, 0.7, 0.72, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5,
        0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3,
        0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
record("ReduceLROnPlateau(patience=2)", lambda o: S.ReduceLROnPlateau(o, patience=2), loss)
record("ReduceLROnPlateau(factor=0.5,patience=1,cooldown=2,min_lr=0.02)",
       lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=2, min_lr=0.02), loss)
accuracy = [1.0 - v for v in loss]
record("ReduceLROnPlateau(mode=max,threshold=0.05,threshold_mode=abs,patience=0)",
       lambda o: S.ReduceLROnPlateau(o, mode="max", threshold=0.05, threshold_mode="abs", patience=0),
       accuracy)

record("LambdaLR(lr_lambda=0.95**epoch)", lambda o: S.LambdaLR(o, lambda e: 0.95**e))
record("SequentialLR([LinearLR(start_factor=0.1,total_iters=5),CosineAnnealingLR(T_max=20,eta_min=0.001)],milestones=[5])",
       lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5),
                                    S.CosineAnnealingLR(o, T_max=20, eta_min=0.001)], milestones=[5]))
record("SequentialLR([ConstantLR(factor=0.5,total_iters=3),ExponentialLR(gamma=0.9),StepLR(step_size=4,gamma=0.5)],milestones=[6,15])",
       lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=3), S.ExponentialLR(o, gamma=0.9),
                                    S.StepLR(o, step_size=4, gamma=0.5)], milestones=[6, 15]))

with open("crates/nn/tests/fixtures/lr_schedules.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "schedules": out}, f, indent=1)
print(f"wrote {len(out)} schedules with torch {torch.__version__}")


# Schedules that also cycle the momentum, stepped after every batch of a small fit in f64
# (loss: sum(c * w^2)), which shows that the momentum reaches the update: for each step the
# rate and momentum in the optimizer before it, and the weights after it.
cycles = {}


def record_cycle(name, make_opt, make):
    torch.manual_seed(0)
    weight = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    coeffs = torch.tensor([0.5, 1.5, 3.0], dtype=torch.float64)
    opt = make_opt([weight])
    sched = make(opt)
    rates, momenta, weights = [], [], []
    for _ in range(EPOCHS):
        group = opt.param_groups[0]
        rates.append(group["lr"])
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        opt.zero_grad()
        (coeffs * weight**2).sum().backward()
        opt.step()
        sched.step()
        weights.append(weight.detach().tolist())
    group = opt.param_groups[0]
    rates.append(group["lr"])
    momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
    cycles[name] = {"lr": rates, "momentum": momenta, "weights": weights}


sgd = lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)
adam = lambda ps: torch.optim.Adam(ps, lr=0.1)
record_cycle("SGD|OneCycleLR(max_lr=0.1,total_steps=40)", sgd, lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=40))
record_cycle("Adam|OneCycleLR(max_lr=0.05,total_steps=40,pct_start=0.25,anneal_strategy=linear,three_phase=True,"
             "div_factor=10,final_div_factor=100,base_momentum=0.8,max_momentum=0.9)", adam,
             lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=40, pct_start=0.25, anneal_strategy="linear",
                                    three_phase=True, div_factor=10.0, final_div_factor=100.0,
                                    base_momentum=0.8, max_momentum=0.9))
record_cycle("SGD|OneCycleLR(max_lr=0.2,epochs=4,steps_per_epoch=10,pct_start=0.4,cycle_momentum=False)", sgd,
             lambda o: S.OneCycleLR(o, max_lr=0.2, epochs=4, steps_per_epoch=10, pct_start=0.4, cycle_momentum=False))
record_cycle("SGD|CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=5)", sgd,
             lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=5))
record_cycle("Adam|CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=3,step_size_down=7,mode=triangular2)", adam,
             lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3, step_size_down=7, mode="triangular2"))
record_cycle("SGD|CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=4,mode=exp_range,gamma=0.97,base_momentum=0.7,"
             "max_momentum=0.95)", sgd,
             lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4, mode="exp_range", gamma=0.97,
                                  base_momentum=0.7, max_momentum=0.95))
record_cycle("SGD|CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=4,scale_fn=1/(1+0.1x),scale_mode=iterations,"
             "cycle_momentum=False)", sgd,
             lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4, scale_fn=lambda x: 1 / (1 + 0.1 * x),
                                  scale_mode="iterations", cycle_momentum=False))

with open("crates/nn/tests/fixtures/cyclic_schedules.json", "w") as f:
    json.dump({"torch_version": torch.__version__, "schedules": cycles}, f, indent=1)
print(f"wrote {len(cycles)} cycling schedules with torch {torch.__version__}")
