"""Cost of a prior, measured by the run itself (P Table 1): seconds per image of one
model evaluation (the score at t_ε) and of one potential evaluation."""

from __future__ import annotations

import statistics
import time

import torch

from prior_landscape.landscape.potential import PotentialSettings, potential
from prior_landscape.priors.base import DiffusionPrior


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure_prior_cost(
    prior: DiffusionPrior,
    images: torch.Tensor,
    settings: PotentialSettings | None = None,
    *,
    repeats: int = 5,
    device: str = "cpu",
) -> dict:
    """Median seconds per image over ``repeats`` model evaluations, and one batched potential evaluation."""
    x = images.to(device)
    B = x.shape[0]
    with torch.no_grad():
        prior.score(x, prior.sigma_eps)  # warm-up
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            prior.score(x, prior.sigma_eps)
            _sync(device)
            times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = potential(prior, x, settings)
    _sync(device)
    pot_time = time.perf_counter() - t0
    return {
        "prior": prior.name,
        "n_parameters": prior.num_parameters(),
        "batch_size": B,
        "model_eval_s_per_image": statistics.median(times) / B,
        "potential_eval_s_per_image": pot_time / B,
        "potential_nfe_mean": float(res.nfe.mean()),
    }
