"""Speed of the potential engine against the paper's reference scheme (P §2.1).

Both compute q(x) = −log p_{t_ε}(x) on the same prior, the same images, the same
RK45 tolerance and the same number of Hutchinson probes:

* engine: ``prior_landscape.landscape.potential.potential`` — all images in one batch,
  per-sample adaptive Dormand–Prince steps (torchode), P probes sharing one
  trajectory per image;
* reference: ``potential_reference`` — scipy ``solve_ivp`` (RK45), one image and
  one probe at a time, a host round-trip per evaluation, as score_sde's
  likelihood code does.

It prints seconds, images per second, function evaluations and the throughput
ratio, for the analytic mixture prior and for the demo score network.

    python benchmarks/potential_engine.py [--images 16] [--probes 4] [--results results/demo] \
        [--scorenet results/demo/priors/scorenet-natural/model.pt]

The score network is the demo's trained one when present: ``--scorenet``, by default
``<results>/priors/scorenet-natural/model.pt`` with ``<results>`` config.yaml's ``results``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _configured_results() -> str:
    """The demo configuration's results folder (config.yaml's ``results``)."""
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())["results"]


def _demo_data(n_images: int):
    from prior_landscape.io.images import crop_positions, extract_crops, load_photographs

    train = load_photographs(["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "china"], 2)
    held = load_photographs(["flower", "clock", "brick", "gravel", "grass"], 2)
    crops = extract_crops(train, crop_positions(train, 6000, 16, seed=0))
    images = extract_crops(held, crop_positions(held, n_images, 16, seed=1, margin=15, min_std=0.05))
    return crops, images


def _priors(crops, scorenet_path: Path | None):
    from prior_landscape.priors import GaussianMixturePrior, load_prior
    from prior_landscape.priors.schedules import VESchedule
    from prior_landscape.priors.training import train_dsm

    schedule = VESchedule(0.01, 20.0, 1e-3)
    gmm = GaussianMixturePrior.fit(crops.numpy(), (1, 16, 16), schedule, n_components=8, rank=32, name="gmm-natural")
    if scorenet_path is not None and scorenet_path.exists():
        net = load_prior(scorenet_path)
        note = f"trained checkpoint {scorenet_path}"
    else:
        print("no trained score network given: training one briefly (400 steps) for timing only", file=sys.stderr)
        net, _ = train_dsm(crops, schedule, steps=400, batch_size=128, lr=2e-3, seed=0, name="scorenet-natural")
        note = "briefly trained network (400 steps)"
    return [(gmm, "analytic mixture"), (net, note)]


def _time(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--probes", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--results", default=None, help="the run's results folder (default: config.yaml's results)")
    ap.add_argument("--scorenet", type=Path, default=None, help="default: RESULTS/priors/scorenet-natural/model.pt")
    args = ap.parse_args(argv)
    if args.scorenet is None:
        args.scorenet = REPO / (args.results or _configured_results()) / "priors/scorenet-natural/model.pt"

    from prior_landscape.landscape.potential import PotentialSettings, potential, potential_reference

    crops, images = _demo_data(args.images)
    settings = PotentialSettings(n_probes=args.probes, atol=args.tol, rtol=args.tol)
    print(
        f"potential engine vs reference: {args.images} images of 1×16×16, {args.probes} probes, "
        f"atol = rtol = {args.tol:g}, torch threads {torch.get_num_threads()}"
    )
    rows = []
    for prior, note in _priors(crops, args.scorenet):
        potential(prior, images[:2], settings)  # warm-up
        eng, t_eng = _time(lambda p=prior: potential(p, images, settings))
        ref, t_ref = _time(lambda p=prior: potential_reference(p, images, settings))
        diff = np.abs(eng.q - ref.q)
        tol = 3 * np.hypot(eng.stderr, ref.stderr) + 1e-3 * np.abs(ref.q)
        rows.append((prior.name, note, t_eng, t_ref, eng.nfe.mean(), ref.nfe.mean(), (diff <= tol).mean()))
    print()
    print(
        f"{'prior':<18}{'engine s':>10}{'img/s':>9}{'NFE/img':>9}{'ref s':>10}{'img/s':>9}{'NFE/img':>9}"
        f"{'ratio':>8}{'agree':>7}"
    )
    for name, _note, t_eng, t_ref, nfe_eng, nfe_ref, agree in rows:
        n = args.images
        print(
            f"{name:<18}{t_eng:>10.2f}{n / t_eng:>9.2f}{nfe_eng:>9.0f}{t_ref:>10.2f}{n / t_ref:>9.2f}"
            f"{nfe_ref:>9.0f}{t_ref / t_eng:>7.1f}×{agree:>7.0%}"
        )
    print()
    for name, note, *_ in rows:
        print(f"  {name}: {note}")
    print("  NFE/img: right-hand-side evaluations per image (reference: summed over its one-probe solves);")
    print("  agree: share of images where |q_engine − q_ref| ≤ 3 combined standard errors + 1e-3·|q|.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
