"""Cost of the priors, measured by the run itself (P Table 1): seconds per image of one
model evaluation (the score at t_ε) and of one potential evaluation.

Every prior is measured in one process, in turn, round-robin: repeat r of the model
evaluation of every prior, then repeat r + 1, …; then the same for the potential. A
change of load during the measurement (another process, a throttled CPU, a shared
GPU) then falls on every prior alike instead of on whichever was measured at that
moment, so two rows of the table are comparable; the spread of the repeats says
how much the load moved. On a GPU each timing is bracketed by
``torch.cuda.synchronize``, so that it measures the computation, not its launch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from prior_landscape.landscape.potential import PotentialSettings, potential
from prior_landscape.priors.base import DiffusionPrior

#: the two measurements of P Table 1
MEASUREMENTS = ("model", "potential")
#: the fewest repeats that give a median and a spread
MIN_REPEATS = 3


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device) -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def measure_costs(
    cases: Mapping[str, tuple[DiffusionPrior, torch.Tensor]],
    settings: PotentialSettings | None = None,
    *,
    repeats: int = 5,
    potential_repeats: int = 3,
    device: str = "cpu",
    log=None,
) -> pd.DataFrame:
    """Time every prior of ``cases`` (name -> (prior, images)), round-robin (module docstring).

    Each prior is warmed up first (one model evaluation on its batch, one loose-tolerance
    potential evaluation on its first image: first-call costs, not a measurement), then
    measured ``repeats`` times on its whole batch by a model evaluation and
    ``potential_repeats`` times by a batched potential evaluation. Returns one row per
    prior, measurement and repeat: ``prior``,
    ``measurement`` ("model" or "potential"), ``repeat``, ``seconds`` (the batch),
    ``s_per_image``, ``batch_size``, ``resolution`` (H×W×C), ``n_parameters`` and
    ``nfe_mean`` (the potential's mean function evaluations per image; NaN for the model).
    """
    for name, n in (("repeats", repeats), ("potential_repeats", potential_repeats)):
        if n < MIN_REPEATS:
            raise ValueError(f"timing.{name} = {n}: at least {MIN_REPEATS} repeats give a median and a spread")
    if not cases:
        raise ValueError("no prior to time")
    batches = {name: images.to(device) for name, (_, images) in cases.items()}
    with torch.no_grad():
        for name, (prior, _) in cases.items():  # warm-up: first-call costs (allocation, kernels) left out
            prior.score(batches[name], prior.sigma_eps)
    warm = dataclasses.replace(settings or PotentialSettings(), n_probes=1, atol=1e-2, rtol=1e-2)
    for name, (prior, _) in cases.items():
        potential(prior, batches[name][:1], warm)
    _sync(device)

    rows = []

    def record(name, measurement, repeat, seconds, nfe=float("nan")):
        prior, x = cases[name][0], batches[name]
        C, H, W = x.shape[1:]
        rows.append(
            {
                "prior": name,
                "measurement": measurement,
                "repeat": repeat,
                "seconds": seconds,
                "s_per_image": seconds / x.shape[0],
                "batch_size": int(x.shape[0]),
                "resolution": f"{H}×{W}×{C}",
                "n_parameters": int(prior.num_parameters()),
                "nfe_mean": nfe,
            }
        )

    for r in range(repeats):
        for name, (prior, _) in cases.items():
            with torch.no_grad():
                seconds, _ = _timed(lambda p=prior, x=batches[name]: p.score(x, p.sigma_eps), device)
            record(name, "model", r, seconds)
    for r in range(potential_repeats):
        for name, (prior, _) in cases.items():
            seconds, res = _timed(lambda p=prior, x=batches[name]: potential(p, x, settings), device)
            record(name, "potential", r, seconds, float(np.mean(res.nfe)))
            if log is not None:
                log.info("potential of %s, repeat %d: %.3g s for %d images", name, r, seconds, len(batches[name]))
    return pd.DataFrame(rows)


def cost_summary(timing: pd.DataFrame) -> pd.DataFrame:
    """Per prior and measurement: repeats, median, min, max, quartiles and relative spread
    ((max − min) / median) of the seconds per image, and the mean NFE."""

    def stats(g: pd.DataFrame) -> pd.Series:
        s = g["s_per_image"].to_numpy(dtype=float)
        q25, med, q75 = np.percentile(s, [25, 50, 75])
        return pd.Series(
            {
                "repeats": len(s),
                "median": med,
                "min": s.min(),
                "max": s.max(),
                "q25": q25,
                "q75": q75,
                "spread": (s.max() - s.min()) / med if med > 0 else float("nan"),
                "nfe_mean": float(g["nfe_mean"].mean()) if g["nfe_mean"].notna().any() else float("nan"),
            }
        )

    keys = ["prior", "measurement"]
    out = timing.groupby(keys, sort=False)[["s_per_image", "nfe_mean"]].apply(stats).reset_index()
    return out.astype({"repeats": int})
