"""Speed of the potential engine against P's scheme and the batched schemes a user would pick (P §2.1).

Every scheme computes q(x) = −log p_{t_ε}(x) on the same prior, the same images, the same
Dormand–Prince tolerance and the same Hutchinson probes (keyed by image), with the same
right-hand side (velocity and P vector–Jacobian products, ``landscape.potential``); each scheme
keeps its own error norm (the peers and P's scheme: over the state x and its accumulators):

* engine: ``prior_landscape.landscape.potential.potential`` — all images in one batch,
  per-sample adaptive steps, P probes sharing one trajectory per image; its error norm runs over x
  alone (the P divergence integrals do not feed back into x), the steps take forward passes only and
  the P products are formed at the 2 Gauss–Legendre nodes of each accepted step (dense output), so
  its NFE counts forward passes and ``n_divergence`` (printed below the table) the product rounds;
* P's scheme: ``potential_reference`` — scipy ``solve_ivp`` (RK45), one image and one probe at
  a time, a host round-trip per evaluation, as P's released code does;
* torchdiffeq: ``torchdiffeq.odeint(method="dopri5")`` over the whole batch, one shared step
  (its error norm is over every image), on the device;
* scipy-batch: score_sde's ``likelihood.py`` way, one scipy RK45 over the flattened batch
  (one shared step, a host round-trip per evaluation).

It prints seconds, function evaluations per image, every ratio against the engine, and each
scheme's agreement with the exact q of the analytic prior (the mixture) or with the engine
(the score network), for the analytic mixture prior and for the demo score network.

    python benchmarks/potential_engine.py [--images 16] [--probes 4] [--device cpu] [--results results/demo] \
        [--scorenet results/demo/priors/scorenet-natural/model.pt]

The score network is the demo's trained one when present: ``--scorenet``, by default
``<results>/priors/scorenet-natural/model.pt`` with ``<results>`` config.yaml's ``results``;
else one is trained briefly (400 steps) for timing.
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


def _priors(crops, scorenet_path: Path | None, steps: int = 400):
    from prior_landscape.priors import GaussianMixturePrior, load_prior
    from prior_landscape.priors.schedules import VESchedule
    from prior_landscape.priors.training import train_dsm

    schedule = VESchedule(0.01, 20.0, 1e-3)
    gmm = GaussianMixturePrior.fit(crops.numpy(), (1, 16, 16), schedule, n_components=8, rank=32, name="gmm-natural")
    if scorenet_path is not None and scorenet_path.exists():
        net = load_prior(scorenet_path)
        note = f"trained checkpoint {scorenet_path}"
    else:
        print(f"no trained score network given: training one briefly ({steps} steps) for timing only", file=sys.stderr)
        net, _ = train_dsm(crops, schedule, steps=steps, batch_size=128, lr=2e-3, seed=0, name="scorenet-natural")
        note = f"briefly trained network ({steps} steps)"
    return [(gmm, "analytic mixture"), (net, note)]


def _time(fn, device="cpu"):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------ the batched peers (not the package's)
def _batched_rhs(prior, x, settings, seed):
    """The state (B, d + P) of every scheme, its right-hand side, and the probes (keyed by image)."""
    from prior_landscape.landscape.potential import _velocity_and_divergence, rademacher_probes

    B, d, P = x.shape[0], prior.dim, settings.n_probes
    probes = rademacher_probes(range(B), P, d, seed).to(device=x.device, dtype=settings.dtype)
    y0 = torch.cat([x.reshape(B, d).to(settings.dtype), torch.zeros(B, P, device=x.device, dtype=settings.dtype)], 1)
    sched = prior.schedule

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1).expand(B).to(torch.float64)
        v, div = _velocity_and_divergence(prior, y[:, :d], tt, probes)
        return torch.cat([v, div], 1)

    return y0, f, sched


def _finish(prior, yT, nfe_per_image, t0):
    """q per image and probe from the terminal state, as the engine forms it (P eq. 7)."""
    from prior_landscape.landscape.potential import PotentialResult

    d = prior.dim
    B = yT.shape[0]
    xT = yT[:, :d].reshape(B, *prior.image_shape)
    terminal = -prior.terminal_log_prob(xT.to(torch.float64)).to(torch.float64).cpu().numpy()
    per_probe = terminal[:, None] - yT[:, d:].to(torch.float64).cpu().numpy()
    q = per_probe.mean(1)
    stderr = per_probe.std(1, ddof=1) / np.sqrt(per_probe.shape[1])
    nfe = np.full(B, nfe_per_image, dtype=np.int64)
    return PotentialResult(q, stderr, nfe, per_probe, terminal, time.perf_counter() - t0)


def potential_torchdiffeq(prior, x, settings, *, seed: int = 0):
    """torchdiffeq's dopri5 over the batch: one adaptive step shared by every image (its RMS error norm
    runs over the whole state), on x's device."""
    import torchdiffeq

    t0 = time.perf_counter()
    y0, f, sched = _batched_rhs(prior, x, settings, seed)
    count = [0]

    def rhs(t, y):
        count[0] += 1
        return f(t, y)

    ts = torch.tensor([sched.t_eps, sched.T], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        ys = torchdiffeq.odeint(rhs, y0, ts, method="dopri5", rtol=settings.rtol, atol=settings.atol)
    return _finish(prior, ys[-1], count[0], t0)


def potential_scipy_batch(prior, x, settings, *, seed: int = 0):
    """score_sde's ``likelihood.py`` way: one scipy RK45 over the flattened batch (one shared step, the
    state through the host at every evaluation)."""
    from scipy.integrate import solve_ivp

    t0 = time.perf_counter()
    y0, f, sched = _batched_rhs(prior, x, settings, seed)
    shape, dtype, device = y0.shape, y0.dtype, y0.device

    def rhs(t, y):
        yt = torch.as_tensor(y, device=device).reshape(shape).to(dtype)
        return f(torch.tensor(t, dtype=torch.float64), yt).reshape(-1).cpu().double().numpy()

    sol = solve_ivp(rhs, (sched.t_eps, sched.T), y0.reshape(-1).cpu().double().numpy(),
                    rtol=settings.rtol, atol=settings.atol, method="RK45")  # fmt: skip
    yT = torch.as_tensor(sol.y[:, -1]).reshape(shape)
    return _finish(prior, yT, sol.nfev, t0)


# ------------------------------------------------------------------ the comparison
def compare(n_images=16, n_probes=4, tol=1e-5, device="cpu", scorenet=None, quick=False) -> list[dict]:
    """Every scheme on the mixture and the score network; one dict per prior (seconds, NFE per image,
    ratios against the engine, agreement with the exact q or with the engine)."""
    from prior_landscape.landscape.potential import PotentialSettings, potential, potential_reference

    crops, images = _demo_data(n_images)
    images = images.to(device)
    settings = PotentialSettings(n_probes=n_probes, atol=tol, rtol=tol)
    schemes = {
        "engine": lambda p, x: potential(p, x, settings),
        "p_scheme": lambda p, x: potential_reference(p, x, settings),
        "torchdiffeq": lambda p, x: potential_torchdiffeq(p, x, settings),
        "scipy_batch": lambda p, x: potential_scipy_batch(p, x, settings),
    }
    if str(device).startswith("cuda"):  # which way the P probes' products go on a GPU (potential.BATCHED_VJP)
        from prior_landscape.landscape import potential as engine

        def with_vjp(batched):
            def run(p, x):
                old, engine.BATCHED_VJP = engine.BATCHED_VJP, batched
                try:
                    return potential(p, x, settings)
                finally:
                    engine.BATCHED_VJP = old

            return run

        schemes["engine_vjp_loop"] = with_vjp(False)
        schemes["engine_vjp_batched"] = with_vjp(True)
    rows = []
    for prior, note in _priors(crops, scorenet, steps=20 if quick else 400):
        prior.to(device)
        potential(prior, images[:2], settings)  # warm-up
        results, seconds = {}, {}
        for name, fn in schemes.items():
            results[name], seconds[name] = _time(lambda fn=fn, p=prior: fn(p, images), device)
        exact = prior.potential(images).double().cpu().numpy() if prior.has_exact_potential else None
        row = dict(prior=prior.name, note=note, images=n_images, probes=n_probes, tol=tol)
        for name, r in results.items():
            ref_q = exact if exact is not None else results["engine"].q
            ref_se = 0.0 if exact is not None else results["engine"].stderr
            bound = 3 * np.hypot(r.stderr, ref_se) + 1e-3 * np.abs(ref_q)
            row[f"{name}_s"] = seconds[name]
            row[f"{name}_nfe"] = float(r.nfe.mean())
            row[f"{name}_agree"] = float((np.abs(r.q - ref_q) <= bound).mean())
            row[f"ratio_vs_{name.removesuffix('_scheme') if name == 'p_scheme' else name}"] = (
                seconds[name] / seconds["engine"]
            )
        row["agree_with"] = "exact q" if exact is not None else "the engine"
        row["engine_ndiv"] = float(np.mean(results["engine"].extra["n_divergence"]))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--probes", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results", default=None, help="the run's results folder (default: config.yaml's results)")
    ap.add_argument("--scorenet", type=Path, default=None, help="default: RESULTS/priors/scorenet-natural/model.pt")
    args = ap.parse_args(argv)
    if args.scorenet is None:
        args.scorenet = REPO / (args.results or _configured_results()) / "priors/scorenet-natural/model.pt"
    print(
        f"potential: {args.images} images of 1×16×16, {args.probes} probes, atol = rtol = {args.tol:g}, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    rows = compare(args.images, args.probes, args.tol, args.device, args.scorenet)
    names = [k.removesuffix("_s") for k in rows[0] if k.endswith("_s")]
    print()
    print(f"{'prior':<18}{'scheme':<13}{'seconds':>9}{'NFE/img':>9}{'× engine':>10}{'agree':>7}")
    for r in rows:
        for n in names:
            ratio = r[f"{n}_s"] / r["engine_s"]
            print(
                f"{r['prior']:<18}{n:<13}{r[f'{n}_s']:>9.2f}{r[f'{n}_nfe']:>9.0f}{ratio:>9.2f}×{r[f'{n}_agree']:>7.0%}"
            )
    print()
    for r in rows:
        print(f"  {r['prior']}: {r['note']}; agreement with {r['agree_with']}")
        print(
            f"    engine: {r['engine_ndiv']:.0f} divergence evaluations per image (a forward, P backward passes each)"
        )
    print("  × engine: the scheme's seconds over the engine's (above 1: the engine is faster);")
    print("  NFE/img: right-hand-side evaluations per image (the engine: forward passes of its steps;")
    print("  P's scheme: summed over its one-probe solves;")
    print("  the batched peers: evaluations of the whole batch, each of which costs the batch);")
    print("  agree: share of images where |q − q_ref| ≤ 3 combined standard errors + 1e-3·|q_ref|.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
