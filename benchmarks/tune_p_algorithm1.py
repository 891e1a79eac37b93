"""The kernel step γ_θ of P's Algorithm 1 in the demo benchmark, chosen by convergence on a tuning draw.

Runs the configured ``p-alg1-large`` and ``p-alg1-small`` entries of ``config.yaml`` over a grid of
γ_θ on the tuning draw of the demo benchmark's specification (``demo-photographs`` with seed 12 instead
of the test set's 11), with the prior of a finished demo run, and prints per γ_θ and start the median
aligned PSNR and kernel error, the no-blur rate and the largest relative kernel change at K (the
criterion: ≤ ``kernel_tol``). The configuration takes the smallest γ_θ at which every run meets it
(docs/tuning_p_algorithms.md).

    python benchmarks/tune_p_algorithm1.py --prior results/demo/priors/epll-natural/model.pt
"""

from __future__ import annotations

import argparse
import re
import time

import yaml

from prior_landscape.methods import method_context
from prior_landscape.methods.benchmark import make_testset, run_on_testset, testset_tensors
from prior_landscape.priors.ddpm_prior import load_benchmark_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", required=True, help="model.pt of the entries' prior (a finished demo run's)")
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--seed", type=int, default=12, help="the tuning draw (the test set is seed 11)")
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.002, 0.01, 0.02, 0.05, 0.1, 0.2])
    args = ap.parse_args()
    cfg = yaml.safe_load(open(args.config))
    spec = {**cfg["benchmark"]["datasets"]["demo-photographs"], "seed": args.seed}
    testset = make_testset(spec, cfg["data"])
    x, _, _ = testset_tensors(testset)
    prior = load_benchmark_prior(args.prior, "cpu")
    print("| γ_θ | start | median PSNR (dB) | median kernel error | no-blur rate | max kernel change at K | met |")
    print("|---|---|---|---|---|---|---|")
    for gamma in args.gammas:
        for name in ("p-alg1-large", "p-alg1-small"):
            entry = {**cfg["benchmark"]["methods"][name], "gamma_theta": gamma}
            ctx, hyper = method_context(entry, x.shape[1:], float(spec["sigma_y"]), prior=prior)
            t0 = time.perf_counter()
            runs, _ = run_on_testset(name, entry["method"], hyper, testset, ctx)
            change = max(float(re.search(r"kernel change (\S+)", n).group(1)) for n in runs.note)
            print(f"| {gamma:g} | {entry['init']} | {runs.psnr.median():.2f} | {runs.kernel_error.median():.3f} | "
                  f"{runs.no_blur.mean():.0%} | {change:.2e} | {'yes' if runs.converged.all() else 'no'} |"
                  f"  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
