"""Sampling a VE diffusion prior by its reverse SDE (P eq. 5), for P Fig. 8."""

from __future__ import annotations

import math

import torch

from prior_landscape.priors.base import DiffusionPrior


@torch.no_grad()
def sample_reverse_sde(
    prior: DiffusionPrior, n: int, n_steps: int = 500, seed: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """Euler–Maruyama on the reverse SDE dx = −g(t)² ∇log p_t(x) dt + g(t) dw̄ (f = 0, P eq. 5)
    from x_T ~ N(0, σ(T)² I) down to t_ε, then one Tweedie denoising step
    x ← x + σ(t_ε)² ∇log p_{t_ε}(x) (the posterior mean, as score_sde's samplers do)."""
    sched = prior.schedule
    g = torch.Generator().manual_seed(seed)
    ts = torch.linspace(sched.T, sched.t_eps, n_steps + 1, dtype=torch.float64)
    x = torch.randn(n, *prior.image_shape, generator=g) * float(sched.sigma(sched.T))
    x = x.to(device)
    for t0, t1 in zip(ts[:-1], ts[1:]):
        dt = float(t0 - t1)
        sigma = float(sched.sigma(t0))
        g2 = 2 * sigma * float(sched.sigma_dot(t0))  # g(t)² = dσ²/dt
        z = torch.randn(n, *prior.image_shape, generator=g).to(device)
        x = x + g2 * prior.score(x, sigma) * dt + math.sqrt(g2 * dt) * z
    return x + prior.sigma_eps**2 * prior.score(x, prior.sigma_eps)
