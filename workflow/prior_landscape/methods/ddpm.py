"""The DDPM machinery both learned peers share (BlindDPS, Kernel Diffusion): Ho et al.'s linear
schedule, its respacing, Tweedie's estimate through the project's VE priors, the ancestral step.

Schedule (both papers and codes): T = 1000, β_t = linspace(10⁻⁴, 0.02, T), α_t = 1 − β_t,
ᾱ_t = ∏_{s≤t} α_s, code indices t = 0 … T − 1; forward x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε.

Respacing (guided-diffusion's ``space_timesteps``): keep N evenly strided indices
τ_1 < … < τ_N of {0, …, T − 1} (τ_1 = 0, τ_N = T − 1), redefine β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}
and run the same ancestral step on the respaced chain: still DDPM-ancestral, not DDIM;
N = T is the papers' sampler exactly.

Ancestral step (posterior q(x_{i−1} | x_i, x̂₀), fixed-small variance β̃; Ho et al. eqs. 6–7):

    μ = c1_i x̂₀ + c2_i x_i,  c1_i = β'_i √ᾱ_{i−1}/(1 − ᾱ_i),  c2_i = (1 − ᾱ_{i−1}) √α'_i/(1 − ᾱ_i),
    x_{i−1} = μ + √β̃_i z,    β̃_i = β'_i (1 − ᾱ_{i−1})/(1 − ᾱ_i),   no noise at the last step.

The project's priors are VE score networks on [0, 1] images; the VP state of the papers'
[−1, 1] range maps exactly onto them (docs/peers_design.md §0.2): u = (x_t/√ᾱ_t + 1)/2 is a [0, 1] image
with VE noise σ_t = ½ √((1 − ᾱ_t)/ᾱ_t), the VE prior's Tweedie denoiser D(u, σ) = u + σ² s(u, σ)
gives x̂₀ = 2 D(u, σ_t) − 1. σ_t exceeds the demo networks' σ_max = 20 for t ≥ 853; their EDM
preconditioning tends to the exact Gaussian score there, so the schedule is not clipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from prior_landscape.runs import digest

__all__ = ["DDPMSchedule", "space_timesteps", "tweedie_x0", "ancestral_step", "NoiseSource", "ve_sigma"]

#: a Tweedie denoiser in [0, 1] units: (u, σ) ↦ D(u, σ), σ of shape (B,)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def space_timesteps(T: int, n: int) -> list[int]:
    """guided-diffusion's ``space_timesteps(T, [n])``: n indices of {0, …, T − 1}, evenly strided
    (rounded), the first 0 and the last T − 1."""
    if not (isinstance(n, int) and 2 <= n <= T):
        raise ValueError(f"the number of sampling steps must be an integer in [2, {T}], got {n!r}")
    stride = (T - 1) / (n - 1)
    return [round(k * stride) for k in range(n)]


@dataclass(frozen=True)
class DDPMSchedule:
    """Ho et al.'s linear β schedule (T steps, β from ``beta_start`` to ``beta_end``) respaced to
    ``n_steps`` (module docstring). Arrays are float64, indexed by the respaced step i = 0 … N − 1
    (i = 0 is the last step of sampling, τ_0 = 0)."""

    n_steps: int
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @cached_property
    def timesteps(self) -> torch.Tensor:  # τ_i, the original indices fed to a network
        return torch.tensor(space_timesteps(self.T, self.n_steps), dtype=torch.long)

    @cached_property
    def alpha_bar(self) -> torch.Tensor:  # ᾱ_{τ_i}
        betas = torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, 0)[self.timesteps]

    @cached_property
    def alpha_bar_prev(self) -> torch.Tensor:  # ᾱ_{τ_{i−1}}, 1 before the first index
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])

    @cached_property
    def betas(self) -> torch.Tensor:  # β'_i = 1 − ᾱ_i/ᾱ_{i−1}
        return 1.0 - self.alpha_bar / self.alpha_bar_prev

    @cached_property
    def posterior(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c1, c2, β̃) of the ancestral step, per respaced index."""
        ab, ab_prev, b = self.alpha_bar, self.alpha_bar_prev, self.betas
        c1 = b * ab_prev.sqrt() / (1.0 - ab)
        c2 = (1.0 - ab_prev) * (1.0 - b).sqrt() / (1.0 - ab)
        return c1, c2, b * (1.0 - ab_prev) / (1.0 - ab)

    def fingerprint(self) -> str:
        return digest("ddpm-linear", self.n_steps, self.T, self.beta_start, self.beta_end)


def ve_sigma(alpha_bar: float) -> float:
    """σ_t = ½ √((1 − ᾱ_t)/ᾱ_t): the VE noise level, in [0, 1] image units, of the VP state at ᾱ_t."""
    return 0.5 * math.sqrt((1.0 - alpha_bar) / alpha_bar)


def tweedie_x0(denoise: Denoiser, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """x̂₀(x_t) in [−1, 1] from a VE Tweedie denoiser in [0, 1] units (docs/peers_design.md §0.2):
    u = (x_t/√ᾱ + 1)/2, σ = ½√((1 − ᾱ)/ᾱ), x̂₀ = 2 D(u, σ) − 1. Differentiable in x_t."""
    u = (x_t / math.sqrt(alpha_bar) + 1.0) / 2.0
    sigma = torch.full((x_t.shape[0],), ve_sigma(alpha_bar), dtype=x_t.dtype, device=x_t.device)
    return 2.0 * denoise(u, sigma) - 1.0


def prior_denoiser(prior) -> Denoiser:
    """D(u, σ) = u + σ² s(u, σ) of a :class:`~prior_landscape.priors.base.DiffusionPrior` (Tweedie)."""

    def denoise(u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return u + sigma[:, None, None, None] ** 2 * prior.score(u, sigma)

    return denoise


class NoiseSource:
    """Gaussian noise drawn per image from its own generator (seeded by the method, the run's seed
    and the image's content), so a batch gives each image what a batch of one would (docs/peers_design.md §0.5)."""

    def __init__(self, tag: str, seed: int, images: torch.Tensor):
        self.gens = [torch.Generator().manual_seed(int(digest(tag, int(seed), y)[:15], 16)) for y in images]

    def randn(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """(B, *shape) standard normal noise in ``like``'s dtype and device."""
        z = torch.stack([torch.randn(shape, generator=g, dtype=torch.float64) for g in self.gens])
        return z.to(dtype=like.dtype, device=like.device)


def ancestral_step(
    sched: DDPMSchedule, i: int, x_t: torch.Tensor, x0: torch.Tensor, noise: NoiseSource | None
) -> torch.Tensor:
    """x_{i−1} = c1_i x̂₀ + c2_i x_i + √β̃_i z (Ho et al. eqs. 6–7, respaced; module docstring); no
    noise at i = 0 or without a noise source."""
    c1, c2, var = (float(v[i]) for v in sched.posterior)
    out = c1 * x0 + c2 * x_t
    if i > 0 and noise is not None:
        out = out + math.sqrt(var) * noise.randn(tuple(x_t.shape[1:]), x_t)
    return out
