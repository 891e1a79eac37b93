"""BlindDPS (Chung, Kim, Kim, Ye, CVPR 2023; seed 004) and its reference, DPS with the true kernel.

Two reverse diffusions run side by side, one for the image (the image prior) and one for the kernel
(an unconditional kernel prior); after each ancestral step both noisy iterates take a gradient
step on the norm of the residual of their Tweedie estimates (BlindDPS eqs. 17–19, Algorithm 1):

    x̂₀ = clamp(x̂₀(x_i)),  k̂₀ = N(clamp(k̂₀(k_i)))                   Tweedie; (∗) for eq. 14's constraint
    x' = ancestral(x_i, x̂₀),  k' = ancestral(k_i, k̂₀)                 DDPM ancestral step [22]
    R  = ‖y − A(k̂₀, x̂₀)‖ (+ λ S(k̂₀))                                  eqs. 19–20, norm not squared
    x_{i−1} = x' − ζ_i ∇_{x_i} R,   k_{i−1} = k' − ζ_i ∇_{k_i} (R + λ S)

The two variants of issue 15 (docs/peers_design.md §1.3, every row with file:line of the released code):

* ``paper``: constant step ζ_i = 0.3·c (the paper's "static step size times the gradient of the
  norm"), A = true convolution with the test set's boundary, S = ℓ₀.₅ quasi-norm Σ (k̂₀ + 10⁻⁸)^½
  (eq. 20; its gradient on the simplex is not zero); returns x̂₀ and k̂₀ of the last step.
* ``code``: ζ_i = c·√ᾱ_{τ_i} (``gaussian_diffusion.py:454-457``; the config's 0.3 is never used),
  A = cross-correlation with a zero boundary (``measurements.py:154-171``), S = ‖k̂₀‖₁
  (``blind_condition_methods.py:54-62``) — identically 1 on normalised kernels, so its gradient
  vanishes: the released sparsity is inert (kept, and tested); returns the final states x_0 (clipped)
  and N(k_0), the kernel 180°-rotated back to a convolution kernel for the benchmark.

Both variants: x̂₀ clamped to [−1, 1] before the gradient (``posterior_mean_variance.py:40-45``),
the kernel normalisation (∗) per image (the code's sums over the batch), per-image norms (the code's
``torch.linalg.norm`` couples a batch), seeded randomness per image, fixed-small variance (our
networks have no learned σ; the code's networks do), y and σ_y mapped to [−1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prior_landscape.methods.base import Context, Estimate, Problem, method
from prior_landscape.methods.ddpm import DDPMSchedule, NoiseSource, ancestral_step, prior_denoiser, tweedie_x0
from prior_landscape.methods.peer_ops import (
    canvas_size,
    convolve,
    correlate_zero,
    normalise_kernel,
    to_kernel_size,
)
from prior_landscape.runs import RunOptions, digest, drive

__all__ = ["BlindDPSSettings", "blind_dps_step", "BlindDPSLoop", "blind_dps", "dps_true_kernel"]

VARIANTS = ("paper", "code")
PAPER_ZETA = 0.3  # BlindDPS §4.1 / README "scale: 0.3" [PDF?]: the paper's constant step


@dataclass(frozen=True)
class BlindDPSSettings:
    """One run's settings: ``variant`` (paper/code), step factor ``step_scale`` (c), sparsity
    ``lam`` (λ), the paper variant's ``boundary`` (the code variant correlates with zeros)."""

    variant: str = "paper"
    step_scale: float = 1.0
    lam: float = 0.0
    boundary: str = "circular"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not (self.step_scale >= 0 and self.lam >= 0):
            raise ValueError(f"step_scale and lam must be ≥ 0, got {self.step_scale}, {self.lam}")

    def zeta(self, sched: DDPMSchedule, i: int) -> float:
        """ζ_i: 0.3 c (paper, constant) or c √ᾱ_{τ_i} (code, ``gaussian_diffusion.py:454-457``)."""
        return self.step_scale * (PAPER_ZETA if self.variant == "paper" else math.sqrt(float(sched.alpha_bar[i])))

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """A(k, x): convolution with the test set's boundary (paper), correlation with zeros (code)."""
        return convolve(x, k, self.boundary) if self.variant == "paper" else correlate_zero(x, k)

    def sparsity(self, k: torch.Tensor) -> torch.Tensor:
        """S(k̂₀) per image: ℓ₀.₅ quasi-norm (paper eq. 20, smoothed) or ℓ₁ (code; ≡ 1 on the simplex)."""
        flat = k.flatten(1)
        return (flat + 1e-8).sqrt().sum(1) if self.variant == "paper" else flat.abs().sum(1)


def residual_norm(y: torch.Tensor, x0: torch.Tensor, k: torch.Tensor, forward) -> torch.Tensor:
    """‖y − A(k, x̂₀)‖₂ per image (BlindDPS eq. 19, the norm, not its square)."""
    return (y - forward(x0, k)).flatten(1).norm(dim=1)


def blind_dps_step(sched, i, x, k, y, image_d, kernel_d, s: BlindDPSSettings, noise: NoiseSource):
    """One step of BlindDPS (Algorithm 1) at respaced index i: returns (x_{i−1}, k_{i−1}, x̂₀, k̂₀, R)."""
    x, k = x.detach().requires_grad_(True), k.detach().requires_grad_(True)
    ab = float(sched.alpha_bar[i])
    x0 = tweedie_x0(image_d, x, ab).clamp(-1, 1)  # Tweedie (eq. 17), clamped as the code does
    k0_img = tweedie_x0(kernel_d, k, ab).clamp(-1, 1)
    k0 = normalise_kernel(k0_img)  # (∗): the code's stand-in for the projection onto eq. 14's set
    x_prev = ancestral_step(sched, i, x.detach(), x0.detach(), noise)  # DDPM ancestral step [22]
    k_prev = ancestral_step(sched, i, k.detach(), k0_img.detach(), noise)
    R = residual_norm(y, x0, k0, s.forward)  # eq. 19
    objective = R + s.lam * s.sparsity(k0)  # eq. 20 (the sparsity depends on k only)
    gx, gk = torch.autograd.grad(objective.sum(), (x, k))  # per-image terms: the sum separates the images
    zeta = s.zeta(sched, i)
    return x_prev - zeta * gx, k_prev - zeta * gk, x0.detach(), k0.detach(), R.detach()


class BlindDPSLoop:
    """BlindDPS as a :class:`prior_landscape.runs.Loop`: iteration n is the respaced index N − 1 − n."""

    def __init__(self, y, image_d, kernel_d, sched: DDPMSchedule, settings: BlindDPSSettings, noise, canvas: int):
        self.y, self.image_d, self.kernel_d, self.sched, self.s, self.noise = (
            y,
            image_d,
            kernel_d,
            sched,
            settings,
            noise,
        )
        self.x = noise.randn(tuple(y.shape[1:]), y)  # x_N ~ N(0, I)
        self.k = noise.randn((1, canvas, canvas), y)  # k_N ~ N(0, I)
        self.x0, self.k0, self.R = None, None, None

    def step(self, n: int) -> None:
        i = self.sched.n_steps - 1 - n
        self.x, self.k, self.x0, self.k0, self.R = blind_dps_step(
            self.sched, i, self.x, self.k, self.y, self.image_d, self.kernel_d, self.s, self.noise
        )

    def record(self, n: int) -> dict | None:
        return None if self.R is None else {"residual": self.R}

    def state_dict(self) -> dict:
        return {
            "x": self.x,
            "k": self.k,
            "x0": self.x0,
            "k0": self.k0,
            "R": self.R,
            "rng": [g.get_state() for g in self.noise.gens],
        }

    def load_state_dict(self, state: dict) -> None:
        self.x, self.k, self.x0, self.k0, self.R = (state[key] for key in ("x", "k", "x0", "k0", "R"))
        for g, st in zip(self.noise.gens, state["rng"]):
            g.set_state(st)


def _run(loop, n_steps: int, kind: str, parts: tuple, options: RunOptions | None):
    """Drive a sampler loop (resumable through the benchmark's state file when one is given)."""
    return drive(loop, n_steps, kind=kind, fingerprint=digest(*parts), options=options or RunOptions())


def _kernel_estimate(k_canvas: torch.Tensor, size: int, flip: bool) -> tuple[torch.Tensor, float]:
    """The benchmark's K×K kernel from a canvas estimate (180°-rotated for a correlation kernel)."""
    k = k_canvas.flip(-2, -1) if flip else k_canvas
    est, mass = to_kernel_size(k, size)
    return est, float(mass.min())


@method("blind-dps", stochastic=True, needs=("prior", "kernel_prior"))
def blind_dps(
    problem: Problem,
    context: Context,
    *,
    variant: str = "paper",
    n_steps: int = 1000,
    step_scale: float = 1.0,
    lam: float = 0.0,
    boundary: str = "circular",
) -> Estimate:
    """BlindDPS (joint image and kernel posterior sampling), paper or released-code variant."""
    s = BlindDPSSettings(variant, float(step_scale), float(lam), boundary)
    kernel_prior, K = context.extra["kernel_prior"], problem.kernel_size
    canvas = canvas_size(K)
    if tuple(kernel_prior.image_shape) != (1, canvas, canvas):
        raise ValueError(
            f"kernel prior {kernel_prior.name!r} models {kernel_prior.image_shape}, not the {canvas}² canvas"
        )
    y = 2.0 * problem.y.float() - 1.0  # [0, 1] → the papers' [−1, 1]
    sched, noise = DDPMSchedule(int(n_steps)), NoiseSource(f"blind-dps-{variant}", problem.seed, problem.y)
    loop = BlindDPSLoop(y, prior_denoiser(context.prior), prior_denoiser(kernel_prior), sched, s, noise, canvas)
    run = _run(
        loop,
        sched.n_steps,
        "blind_dps",
        ("blind-dps", s, sched, context.prior, kernel_prior, y, problem.seed),
        context.options,
    )
    if variant == "paper":  # x̂₀, k̂₀ of the last step
        x, k_canvas = (loop.x0 + 1.0) / 2.0, loop.k0
    else:  # the code's returned states x_0 (clipped) and N(k_0)
        x, k_canvas = (loop.x.clamp(-1, 1) + 1.0) / 2.0, normalise_kernel(loop.k.clamp(-1, 1))
    kernel, mass = _kernel_estimate(k_canvas, K, flip=variant == "code")
    final = run.records[-1]["residual"] / 2.0 if run.records else torch.tensor(float("nan"))
    return Estimate(
        x.to(problem.y.dtype),
        kernel.to(problem.y.dtype),
        None,
        f"{variant}; N = {sched.n_steps}; final ‖y − k̂⊛x̂‖ median {float(final.median()):.3g}; "
        f"kernel mass in the {K}² window ≥ {mass:.3f}",
    )


# ----------------------------------------------------------------- DPS, true kernel
def dps_step(sched, i, x, y, image_d, k, zeta: float, boundary: str, noise: NoiseSource):
    """One DPS step (Chung et al. 2023, Algorithm 1) with the known kernel k: BlindDPS without the kernel chain."""
    x = x.detach().requires_grad_(True)
    x0 = tweedie_x0(image_d, x, float(sched.alpha_bar[i])).clamp(-1, 1)  # Tweedie, clamped
    x_prev = ancestral_step(sched, i, x.detach(), x0.detach(), noise)  # ancestral step
    R = residual_norm(y, x0, k, lambda a, b: convolve(a, b, boundary))  # ‖y − A x̂₀‖
    (gx,) = torch.autograd.grad(R.sum(), (x,))
    return x_prev - zeta * gx, x0.detach(), R.detach()


class DPSLoop:
    """DPS with the true kernel as a :class:`prior_landscape.runs.Loop`."""

    def __init__(self, y, image_d, k, sched: DDPMSchedule, zeta: float, boundary: str, noise: NoiseSource):
        self.y, self.image_d, self.k, self.sched, self.zeta, self.boundary = y, image_d, k, sched, zeta, boundary
        self.noise, self.x, self.x0, self.R = noise, noise.randn(tuple(y.shape[1:]), y), None, None

    def step(self, n: int) -> None:
        i = self.sched.n_steps - 1 - n
        self.x, self.x0, self.R = dps_step(
            self.sched, i, self.x, self.y, self.image_d, self.k, self.zeta, self.boundary, self.noise
        )

    def record(self, n: int) -> dict | None:
        return None if self.R is None else {"residual": self.R}

    def state_dict(self) -> dict:
        return {"x": self.x, "x0": self.x0, "R": self.R, "rng": [g.get_state() for g in self.noise.gens]}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.x0, self.R = state["x"], state["x0"], state["R"]
        for g, st in zip(self.noise.gens, state["rng"]):
            g.set_state(st)


@method("dps-true-kernel", reference=True, stochastic=True, needs=("prior", "true_kernel"))
def dps_true_kernel(
    problem: Problem, context: Context, *, n_steps: int = 1000, step_scale: float = 1.0, boundary: str = "circular"
) -> Estimate:
    """DPS with the true kernel (reference): BlindDPS-paper's image chain, same prior, steps and ζ."""
    y = 2.0 * problem.y.float() - 1.0
    k = context.true_kernel.to(y)
    sched, noise = DDPMSchedule(int(n_steps)), NoiseSource("dps-true-kernel", problem.seed, problem.y)
    loop = DPSLoop(y, prior_denoiser(context.prior), k, sched, PAPER_ZETA * float(step_scale), boundary, noise)
    _run(
        loop,
        sched.n_steps,
        "dps_true_kernel",
        ("dps", sched, step_scale, boundary, context.prior, y, k, problem.seed),
        context.options,
    )
    return Estimate(((loop.x0 + 1.0) / 2.0).to(problem.y.dtype), context.true_kernel, None, f"N = {sched.n_steps}")
