"""Tuning and cost of the learned peers on the demo (issue 15): each configured hyper-parameter grid on a
*tuning* set (the demo dataset's specification with another seed: other crops of the held-out
photographs, other kernels), one seed, median PSNR and kernel error per setting; and the seconds per
step of each method on the test cases (the budget rule of docs/peers_design.md §8.1). It reads the
priors of a finished demo run (`make demo`: results/demo/priors); the reported tuning is
docs/tuning_peers.md.

    PYTHONPATH=workflow .venv/bin/python benchmarks/tune_peers.py cost
    PYTHONPATH=workflow .venv/bin/python benchmarks/tune_peers.py tune blind-dps-paper
"""

import itertools
import sys
import time

import torch
import yaml

from prior_landscape.methods import Context, Problem, run_method
from prior_landscape.methods.benchmark import evaluate, make_testset, testset_tensors
from prior_landscape.priors import load_prior
from prior_landscape.priors.kernel_priors import load_kernel_prior

torch.set_num_threads(1)
CFG = yaml.safe_load(open("config.yaml"))
PRIORS = f"{CFG['results']}/priors"  # the demo's: results/demo/priors
PRIOR = load_prior(f"{PRIORS}/scorenet-natural/model.pt").at_shape((1, 64, 64))
KP = {k: load_kernel_prior(f"{PRIORS}/{k}/model.pt") for k in ("kernels-uncond", "kernels-cond")}
#: name → (registered method, kernel prior, fixed hyper-parameters, grid)
GRIDS = {
    "blind-dps-paper": ("blind-dps", "kernels-uncond", dict(variant="paper"),
                        dict(step_scale=[10.0, 30.0, 100.0], lam=[0.1])),
    "blind-dps-code": ("blind-dps", "kernels-uncond", dict(variant="code", lam=1.0),
                       dict(step_scale=[1.0, 3.0, 10.0, 30.0, 100.0])),
    "dps-true-kernel": ("dps-true-kernel", None, {}, dict(step_scale=[0.3, 1.0, 3.5, 10.0, 30.0, 100.0])),
    # the grids of the reported tuning (docs/tuning_peers.md)
    "kernel-diff-paper": ("kernel-diff", "kernels-cond", dict(variant="paper"),
                          dict(step_scale=[1.0, 10.0], sigma_f=[0.02, 0.04])),
    "kernel-diff-code": ("kernel-diff", "kernels-cond", dict(variant="code"),
                         dict(step_scale=[1.0, 10.0], sigma_f=[0.02, 0.04])),
}  # fmt: skip


def cases(seed: int):
    spec = dict(CFG["benchmark"]["datasets"]["demo-photographs"], seed=seed)
    return testset_tensors(make_testset(spec, CFG["data"]))


def run(name, n_steps, hyper, x, y, h, seed=0):
    method, kp, fixed, _ = GRIDS[name]
    ctx = Context(prior=PRIOR, true_kernel=h, extra={"kernel_prior": KP[kp]} if kp else {})
    t0 = time.perf_counter()
    est, cost = run_method(method, Problem(y, 0.01, 15, seed), ctx, dict(n_steps=n_steps, **fixed, **hyper))
    scores = evaluate(est.x.double(), est.kernel, x, h)
    return scores, time.perf_counter() - t0


def main(what, names, n_steps=30):
    if what == "cost":
        x, y, h = cases(11)
        for name in names or GRIDS:
            _, wall = run(name, 5, {}, x, y, h)
            print(f"{name}: {wall / 5:.2f} s per step for {len(y)} images (5 steps)", flush=True)
        return
    x, y, h = cases(12)  # the tuning set: not the test set's seed 11
    for name in names:
        grid = GRIDS[name][3]
        for values in itertools.product(*grid.values()):
            hyper = dict(zip(grid, values))
            n = CFG["benchmark"]["methods"].get(name, {}).get("n_steps", n_steps)  # the demo's N
            s, wall = run(name, n, hyper, x, y, h)
            print(f"{name} {hyper}: PSNR {s.psnr.median():.2f}  KE {s.kernel_error.median():.4f}  "
                  f"MNC {s.mnc.median():.3f}  ({wall:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
