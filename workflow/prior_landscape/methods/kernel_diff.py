"""Kernel Diffusion (Sanghvi, Chi, Chan, ECCV 2024; seed 002): a kernel prior conditioned on the blurry
image, ε_θ(k_t, y, t), sampled with a MAP_k gradient step on the reblurring loss through a
differentiable non-blind solver F after every reverse step (Stage I, Algorithm 1), then a short
gradient descent on k₀ (Stage II):

    k_{t−½} = ancestral(k_t, k̂₀)                                       eq. 18
    k̂₀ = Tweedie(k_t; ε_θ(k_t, y, t)),  x̂₀ = F(y, N(k̂₀))                eq. 19
    L = ‖y − N(k̂₀) ⊛ x̂₀‖²
    k_{t−1} = k_{t−½} − δ ∇ L,   δ = 0.1 a / L                          eqs. 20, 33
    Stage II: gradient descent with backtracking on L(k₀) + ℓ₁          (the code: 20 accepted steps)
    return k₀, x₀ = F(y, N(k₀))

Variants (docs/peers_design.md §2.3, with file:line of the released code):

* ``paper``: the gradient w.r.t. k_t through the network and eq. 19, δ = 0.1 a/L with L the sum of
  squares (eq. 33); the posterior mean from the clamped k̂₀ (as the code's unguided sampler).
* ``code``: the gradient w.r.t. the detached, clamped k̂₀ (no network Jacobian), step
  0.04 a · ∇MSE/MSE (``kernel_diffusion.py:253-258``), the posterior mean from the *unclamped*
  k̂₀ (``:189-196``) — ≈ the paper's step × 0.4 √ᾱ_t.

Both: Stage II as the code runs it (``:198-232``; the paper leaves its length and safeguards
unsaid): ρ₀, ρ halved and the step retaken from the previous iterate when the loss rose (by more
than 10⁻⁶ relative), 20 accepted steps, loss = MSE + 10⁻⁴ mean|k + 1| on the [−1, 1] kernel state;
N(·) of :mod:`~prior_landscape.methods.peer_ops`, applied per image; the benchmark's forward model
(true convolution, its boundary) for the reblur.

F (docs/peers_design.md §2.6): DWDN (Dong et al. 2020) in the paper and code. Its weights are not here, so the
demo uses a substitute, named so in every table: Wiener deconvolution (``nsr``) followed by one
Tweedie step of the image prior at σ_f, F(y, k) = D(W(y, k), σ_f), differentiable in k.

The ablation (issue 15): the same loop with an unconditional kernel prior (BlindDPS's) in place of
ε_θ(k_t, y, t) (method ``kernel-diff-unconditional``): it separates "conditioning on y" from "MAP over k".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prior_landscape.methods.base import Context, Estimate, Problem, method
from prior_landscape.methods.blind_dps import _kernel_estimate, _run
from prior_landscape.methods.ddpm import DDPMSchedule, NoiseSource, ancestral_step, prior_denoiser, tweedie_x0
from prior_landscape.methods.peer_ops import canvas_size, convolve, normalise_kernel, wiener

__all__ = ["KernelDiffSettings", "kernel_diff_step", "stage2", "KernelDiffLoop", "kernel_diff"]

VARIANTS = ("paper", "code")


@dataclass(frozen=True)
class KernelDiffSettings:
    """A run's settings: ``variant``, step factor ``step_scale`` (a), the forward model's ``boundary``,
    the solver substitute's ``nsr`` and ``sigma_f``, Stage II's ``stage2_steps``, ``rho0`` and ``sparsity``."""

    variant: str = "paper"
    step_scale: float = 1.0
    boundary: str = "circular"
    nsr: float = 0.01
    sigma_f: float = 0.04
    stage2_steps: int = 20
    rho0: float = 1e3
    sparsity: float = 1e-4

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not (
            self.step_scale >= 0 and self.nsr > 0 and self.sigma_f > 0 and self.rho0 > 0 and self.stage2_steps >= 0
        ):
            raise ValueError(f"need step_scale ≥ 0, nsr, sigma_f, rho0 > 0 and stage2_steps ≥ 0; got {self}")


def solver(y: torch.Tensor, k: torch.Tensor, image_d, s: KernelDiffSettings) -> torch.Tensor:
    """F(y, k) = D(W(y, k), σ_f): the DWDN substitute (module docstring), [0, 1] images."""
    w = wiener(y, k, s.nsr, s.boundary)
    sigma = torch.full((y.shape[0],), s.sigma_f, dtype=y.dtype, device=y.device)
    return image_d(w, sigma)


def reblur_loss(y: torch.Tensor, k: torch.Tensor, image_d, s: KernelDiffSettings, mean: bool) -> torch.Tensor:
    """‖y − k ⊛ F(y, k)‖² per image (eq. 20), or its mean over pixels (the code's MSE, ``:110-115``)."""
    r = (y - convolve(solver(y, k, image_d, s), k, s.boundary)).flatten(1).pow(2)
    return r.mean(1) if mean else r.sum(1)


def kernel_diff_step(sched, i, k, y, kernel_d, image_d, s: KernelDiffSettings, noise: NoiseSource):
    """One Stage-I step (Algorithm 1) at respaced index i: returns (k_{i−1}, the reblur loss)."""
    ab = float(sched.alpha_bar[i])
    if s.variant == "paper":
        k = k.detach().requires_grad_(True)
        k0 = tweedie_x0(kernel_d, k, ab).clamp(-1, 1)  # eq. 19 (clamped as the code's guidance input)
        k_half = ancestral_step(sched, i, k.detach(), k0.detach(), noise)  # eq. 18
        L = reblur_loss(y, normalise_kernel(k0), image_d, s, mean=False)
        (g,) = torch.autograd.grad(L.sum(), (k,))  # ∇_{k_t} through ε_θ and eq. 19
        delta = 0.1 * s.step_scale / L.detach()  # eq. 33: δ = 0.1/‖y − k̂₀ ⊛ x̂₀‖²
    else:
        with torch.no_grad():
            k0_raw = tweedie_x0(kernel_d, k, ab)
        k_half = ancestral_step(sched, i, k, k0_raw, noise)  # unclamped mean (:189-196)
        k0 = k0_raw.clamp(-1, 1).requires_grad_(True)
        L = reblur_loss(y, normalise_kernel(k0), image_d, s, mean=True)
        (g,) = torch.autograd.grad(L.sum(), (k0,))  # ∇ w.r.t. the detached k̂₀ (:253-258)
        delta = 0.04 * s.step_scale / L.detach()
    return k_half - delta[:, None, None, None] * g, L.detach()


def _stage2_energy(k, y, image_d, s: KernelDiffSettings):
    """E(k) = MSE reblur loss + sparsity·mean|k + 1| per image, and its gradient (``:67,110-115``)."""
    k = k.detach().requires_grad_(True)
    E = reblur_loss(y, normalise_kernel(k), image_d, s, mean=True) + s.sparsity * (k + 1).abs().flatten(1).mean(1)
    (g,) = torch.autograd.grad(E.sum(), (k,))
    return E.detach(), g


def stage2(k: torch.Tensor, energy, steps: int = 20, rho0: float = 1e3) -> tuple[torch.Tensor, int]:
    """Stage II as the code runs it (``converge_gradient_descent``, ``:198-232``), per image: from each
    iterate step by −ρ∇E (``energy(k)`` gives E per image and ∇E); when E rose by more than 10⁻⁶
    relative since the previous iterate, go back to the iterate before, halve ρ and uncount a step
    (the retaken step is then always accepted); stop after ``steps`` accepted steps. Returns k and the
    number of gradient evaluations."""
    B = k.shape[0]
    rho = torch.full((B,), float(rho0), dtype=k.dtype, device=k.device)
    prev_E = torch.full((B,), math.inf, dtype=k.dtype, device=k.device)
    before, count, evals = k.clone(), torch.zeros(B, dtype=torch.long, device=k.device), 0
    while bool((count < steps).any()):
        active = count < steps
        E, g = energy(k)
        evals += 1
        rise = prev_E - E
        bad = active & (rise < 0) & (rise.abs() / E > 1e-6)
        good = active & ~bad
        prev_E = torch.where(active, E, prev_E)
        rho = torch.where(bad, rho / 2, rho)
        bad4, good4 = bad[:, None, None, None], good[:, None, None, None]
        k, before = (
            torch.where(bad4, before, torch.where(good4, k - rho[:, None, None, None] * g, k)),
            torch.where(good4, k, before),
        )
        count = count + good.long() - bad.long()
    return k, evals


class KernelDiffLoop:
    """Kernel Diffusion's Stage I as a :class:`prior_landscape.runs.Loop` (iteration n: index N − 1 − n)."""

    def __init__(self, y, kernel_d, image_d, sched: DDPMSchedule, settings: KernelDiffSettings, noise, canvas: int):
        self.y, self.kernel_d, self.image_d, self.sched, self.s, self.noise = (
            y,
            kernel_d,
            image_d,
            sched,
            settings,
            noise,
        )
        self.k, self.L = noise.randn((1, canvas, canvas), y), None  # k_T ~ N(0, I)

    def step(self, n: int) -> None:
        i = self.sched.n_steps - 1 - n
        self.k, self.L = kernel_diff_step(
            self.sched, i, self.k, self.y, self.kernel_d, self.image_d, self.s, self.noise
        )

    def record(self, n: int) -> dict | None:
        return None if self.L is None else {"reblur_loss": self.L}

    def state_dict(self) -> dict:
        return {"k": self.k, "L": self.L, "rng": [g.get_state() for g in self.noise.gens]}

    def load_state_dict(self, state: dict) -> None:
        self.k, self.L = state["k"], state["L"]
        for g, st in zip(self.noise.gens, state["rng"]):
            g.set_state(st)


def _kernel_denoiser(kernel_prior, y: torch.Tensor):
    """D(u, σ) of the kernel prior: conditioned on y (Kernel Diffusion) or not (the ablation)."""
    if not getattr(kernel_prior, "conditional", False):
        return prior_denoiser(kernel_prior)
    return lambda u, sigma: u + sigma[:, None, None, None] ** 2 * kernel_prior.score(u, sigma, y)


def _kernel_diff(problem: Problem, context: Context, s: KernelDiffSettings, n_steps: int, tag: str) -> Estimate:
    kernel_prior, K = context.extra["kernel_prior"], problem.kernel_size
    canvas = canvas_size(K)
    if tuple(kernel_prior.image_shape) != (1, canvas, canvas):
        raise ValueError(
            f"kernel prior {kernel_prior.name!r} models {kernel_prior.image_shape}, not the {canvas}² canvas"
        )
    y = problem.y.float()  # F, the reblur and the loss work in [0, 1] (the network sees y itself)
    sched, noise = DDPMSchedule(int(n_steps)), NoiseSource(tag, problem.seed, problem.y)
    image_d = prior_denoiser(context.prior)
    loop = KernelDiffLoop(y, _kernel_denoiser(kernel_prior, y), image_d, sched, s, noise, canvas)
    _run(
        loop,
        sched.n_steps,
        "kernel_diff",
        (tag, s, sched, context.prior, kernel_prior, y, problem.seed),
        context.options,
    )
    k, evals = stage2(loop.k.detach(), lambda k: _stage2_energy(k, y, image_d, s), s.stage2_steps, s.rho0)
    k_canvas = normalise_kernel(k.clamp(-1, 1))
    with torch.no_grad():
        x = solver(y, k_canvas, image_d, s)
    kernel, mass = _kernel_estimate(k_canvas, K, flip=False)
    return Estimate(
        x.to(problem.y.dtype),
        kernel.to(problem.y.dtype),
        None,
        f"{s.variant}; N = {sched.n_steps}; Stage II {evals} gradient evaluations; F = Wiener + Tweedie "
        f"(substitute for DWDN); kernel mass in the {K}² window ≥ {mass:.3f}",
    )


_HYPER_DOC = "variant, n_steps, step_scale, boundary, nsr, sigma_f, stage2_steps, rho0, sparsity"


@method("kernel-diff", stochastic=True, needs=("prior", "kernel_prior"))
def kernel_diff(problem: Problem, context: Context, *, n_steps: int = 1000, **settings) -> Estimate:
    """Kernel Diffusion (conditional kernel prior + MAP_k guidance through F, Stage II), paper or code variant."""
    if not getattr(context.extra["kernel_prior"], "conditional", False):
        raise ValueError(
            "kernel-diff needs a conditional kernel prior (kind conditional_kernel_network); "
            "the unconditional ablation is kernel-diff-unconditional"
        )
    return _kernel_diff(problem, context, KernelDiffSettings(**settings), n_steps, "kernel-diff")


@method("kernel-diff-unconditional", stochastic=True, needs=("prior", "kernel_prior"))
def kernel_diff_unconditional(problem: Problem, context: Context, *, n_steps: int = 1000, **settings) -> Estimate:
    """Kernel Diffusion's loop with an unconditional kernel prior (the ablation: MAP_k without conditioning on y)."""
    if getattr(context.extra["kernel_prior"], "conditional", False):
        raise ValueError("kernel-diff-unconditional needs an unconditional kernel prior (kind kernel_network)")
    return _kernel_diff(problem, context, KernelDiffSettings(**settings), n_steps, "kernel-diff-unconditional")
