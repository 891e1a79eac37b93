"""Blind deconvolution by alternating minimisation of the joint posterior (P §5, Algorithms 1 and 2).

With f(x, θ) = ½‖h_θ ⊛ x − y‖² (circular) and ℓ_y(x, θ) = f(x, θ) + σ_y² q(x) (P eq. 8),
P's Algorithm 1 reads::

    x₀ = y, θ₀ given
    for k = 0 … K−1:
        x ← y                       if k ≡ 0 (mod reset_every)            (P: 100)
        repeat K_x times:           x ← prox_{γ_x f(·,θ_k)}(x − γ_x σ_y² ∇q(x))
        θ_{k+1} = Π(θ_k − γ_θ ∇_θ f(x, θ_k))      (Π: simplex projection for free kernels; identity for Zernike)

and Algorithm 2 (P Appendix B) replaces the inner step by Douglas–Rachford with a denoiser D
standing for the proximal operator of the prior, z = D(x); x ← x + prox_{γ_x f}(2z − x) − z;
as P writes it, the θ step and the returned image use the DR iterate x (the "shadow"
z = D(x_K) is returned as ``DeblurResult.denoised``).

Each step is one short function below, :func:`algorithm1_image_step`,
:func:`algorithm2_image_step` and :func:`kernel_step`; :class:`AlternatingMinimisation`
composes them into the outer iteration and :func:`algorithm1` / :func:`algorithm2` run it
through the resumable-run driver (:mod:`prior_landscape.runs`: a killed run resumes
bit-for-bit; the fingerprint covers y, θ₀, the settings except K, the kernel model, the
prior's or denoiser's own fingerprint and the references). The data-term prox is the
closed-form Fourier solve :func:`~prior_landscape.inverse.operators.fft_prox` (P: "a linear
system resolution … conjugate gradient"; :func:`~prior_landscape.inverse.operators.cg_prox`
solves the same system and is tested against it). Every quantity is batched: B blurry
images, each with its own θ, run independently in one call.

P's values: K = 400, K_x = 100, γ_x = 0.01, γ_θ = 0.001 (FFHQ-256, images in [0, 1],
256×256). γ_x and γ_θ are not scale-free: the θ-gradient grows with the number of pixels
and the admissible prox-gradient step is ≲ 2/(σ_y² L_q), L_q the Lipschitz constant of ∇q,
so demo-scale runs need their own values.

Trajectory: one row per image every ``record_every`` iterations (and at k = 0 and K):
data fit f(x, θ), ‖∇_θ f‖ and the relative change ‖θ_k − θ_{k−1}‖/‖θ_{k−1}‖ of the last kernel
step (the convergence criterion), q(x) and ℓ = f + σ_y² q where the prior's
potential is exact, and with references kernel error, MNC (both aligned, with a 180°
rotation where the kernel model is identifiable only up to one) and PSNR; h(θ) and θ at the
same records are in ``DeblurResult.kernels`` / ``thetas``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from prior_landscape.inverse.operators import data_fit, fft_prox, kernel_otf
from prior_landscape.metrics import kernel_error, mnc, psnr
from prior_landscape.runs import RunOptions, digest, drive

__all__ = [
    "AlternatingSettings",
    "DeblurResult",
    "algorithm1",
    "algorithm2",
    "algorithm1_image_step",
    "algorithm2_image_step",
    "kernel_step",
]


@dataclass(frozen=True)
class AlternatingSettings:
    """Hyper-parameters of P's Algorithms 1 and 2 (module docstring)."""

    sigma_y: float  # noise level of y
    n_iter: int = 400  # K
    n_inner: int = 100  # K_x
    gamma_x: float = 0.01  # image step
    gamma_theta: float = 0.001  # kernel step
    reset_every: int | None = 100  # x ← y every this many outer iterations (None: never)

    def __post_init__(self):
        if not (self.n_iter >= 0 and self.n_inner >= 0):
            raise ValueError(f"need n_iter ≥ 0 and n_inner ≥ 0, got {self.n_iter}, {self.n_inner}")
        if not (self.gamma_x > 0 and self.gamma_theta >= 0 and self.sigma_y >= 0):
            raise ValueError(
                f"need gamma_x > 0, gamma_theta ≥ 0 and sigma_y ≥ 0, got {self.gamma_x}, "
                f"{self.gamma_theta}, {self.sigma_y}"
            )
        if self.reset_every is not None and self.reset_every < 1:
            raise ValueError(f"reset_every must be ≥ 1 or None, got {self.reset_every}")


@dataclass
class DeblurResult:
    x: torch.Tensor  # (B, C, H, W) x_K
    theta: torch.Tensor  # (B, *param_shape) θ_K
    kernel: torch.Tensor  # (B, k, k) h(θ_K)
    trajectory: pd.DataFrame  # one row per image and recorded iteration
    kernels: torch.Tensor  # (R, B, k, k) h(θ) at the recorded iterations
    thetas: torch.Tensor  # (R, B, *param_shape)
    record_iterations: list[int]
    method: str
    n_iter: int
    resumed_from: int = 0
    wall_time_s: float = 0.0
    denoised: torch.Tensor | None = None  # Algorithm 2: z = D(x_K)
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ the steps
def algorithm1_image_step(x, y, otf, prior, sigma_y: float, gamma_x: float) -> torch.Tensor:
    """P Algorithm 1, inner step: x ← prox_{γ_x f(·,θ)}(x − γ_x σ_y² ∇q(x))."""
    v = x - gamma_x * sigma_y**2 * prior.grad_potential(x).to(x.dtype)  # gradient step on σ_y² q (P eq. 8)
    return fft_prox(v, y, None, gamma_x, otf=otf)  # prox of the data term, closed form in Fourier


def algorithm2_image_step(x, y, otf, denoiser, gamma_x: float) -> torch.Tensor:
    """P Algorithm 2 (Appendix B), inner step: Douglas–Rachford with D ≈ prox_{γ_x σ_y² q}."""
    z = denoiser(x).to(x.dtype)  # z = D(x)
    return x + fft_prox(2.0 * z - x, y, None, gamma_x, otf=otf) - z  # x ← x + prox_{γ_x f}(2z − x) − z


def kernel_step(theta, x, y, kernel_model, gamma_theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P Algorithm 1, outer step: θ ← Π(θ − γ_θ ∇_θ f(x, θ)) (autograd through h_θ); returns (θ, ∇_θ f)."""
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(data_fit(x, y, kernel_model.kernel(th)).sum(), th)
    return kernel_model.project(theta - gamma_theta * g).detach(), g


# ------------------------------------------------------------------ the iteration
class AlternatingMinimisation:
    """P's outer iteration k → k + 1 as a :class:`prior_landscape.runs.Loop`."""

    def __init__(
        self,
        y,
        kernel_model,
        theta0,
        image_step: Callable,
        settings: AlternatingSettings,
        *,
        potential=None,
        reference_kernel=None,
        reference_image=None,
    ):
        self.y, self.model, self.image_step, self.settings = y, kernel_model, image_step, settings
        self.x, self.theta = y.clone(), theta0.clone()
        self.potential, self.ref_k, self.ref_x = potential, reference_kernel, reference_image
        self.last_grad_norm = torch.full((y.shape[0],), float("nan"), dtype=torch.float64)
        self.last_change = torch.full((y.shape[0],), float("nan"), dtype=torch.float64)  # ‖θ_k − θ_{k−1}‖/‖θ_{k−1}‖

    def step(self, k: int) -> None:
        s, y = self.settings, self.y
        if s.reset_every is not None and k % s.reset_every == 0:
            self.x = y.clone()  # restart the image from the data (P Algorithm 1)
        with torch.no_grad():
            otf = kernel_otf(self.model.kernel(self.theta).detach(), tuple(y.shape[-2:]))
            for _ in range(s.n_inner):  # K_x image steps with θ_k fixed
                self.x = self.image_step(self.x, y, otf)
        if not torch.isfinite(self.x).all():
            raise FloatingPointError(
                f"the image update diverged at iteration {k}: lower gamma_x (the prox-gradient step "
                f"needs gamma_x·σ_y²·L_q < 2, L_q the Lipschitz constant of ∇q)"
            )
        theta_before = self.theta
        self.theta, g = kernel_step(self.theta, self.x, y, self.model, s.gamma_theta)  # one kernel step
        self.last_grad_norm = g.flatten(1).to(torch.float64).norm(dim=1).cpu()
        change = (self.theta - theta_before).flatten(1).norm(dim=1) / theta_before.flatten(1).norm(dim=1)
        self.last_change = change.to(torch.float64).cpu()
        if not torch.isfinite(self.theta).all():
            raise FloatingPointError(f"the kernel update diverged at iteration {k}: lower gamma_theta")

    def record(self, k: int) -> dict:
        flip = self.model.up_to_rotation
        with torch.no_grad():
            h = self.model.kernel(self.theta).detach()
            f = data_fit(self.x, self.y, h).to(torch.float64)
            rec = {
                "image": torch.arange(len(f)),
                "data_fit": f,
                "grad_theta_norm": self.last_grad_norm,
                "theta_change": self.last_change,
            }
            if self.potential is not None:
                q = torch.as_tensor(self.potential(self.x)).reshape(-1).to(torch.float64)
                rec.update(q=q, loss=f + self.settings.sigma_y**2 * q)
            if self.ref_k is not None:
                rec.update(
                    kernel_error=kernel_error(h, self.ref_k, flip=flip).to(torch.float64),
                    mnc=mnc(h, self.ref_k, flip=flip).to(torch.float64),
                )
            if self.ref_x is not None:
                rec.update(psnr=psnr(self.x, self.ref_x).to(torch.float64))
        return {**rec, "kernel": h, "theta": self.theta.detach()}

    def state_dict(self) -> dict:
        return {
            "x": self.x.cpu(),
            "theta": self.theta.cpu(),
            "last_grad_norm": self.last_grad_norm,
            "last_change": self.last_change,
        }

    def load_state_dict(self, state: dict) -> None:
        self.x, self.theta = state["x"].to(self.y), state["theta"].to(self.theta)
        self.last_grad_norm, self.last_change = state["last_grad_norm"], state["last_change"]


_COLUMNS = (
    "iteration",
    "image",
    "data_fit",
    "grad_theta_norm",
    "theta_change",
    "q",
    "loss",
    "kernel_error",
    "mnc",
    "psnr",
)


def _alternate(
    method,
    y,
    kernel_model,
    theta0,
    image_step,
    owner,
    settings,
    *,
    potential=None,
    reference_kernel=None,
    reference_image=None,
    options=None,
) -> DeblurResult:
    """Validate, run :class:`AlternatingMinimisation` through the driver, collect the result."""
    if y.dim() != 4:
        raise ValueError(f"y must be (B, C, H, W), got {tuple(y.shape)}")
    y, B, pshape = y.detach(), y.shape[0], tuple(kernel_model.param_shape)
    theta0 = torch.as_tensor(theta0).to(y).detach()
    if tuple(theta0.shape) == pshape:
        theta0 = theta0.expand(B, *pshape)
    if tuple(theta0.shape) != (B, *pshape):
        raise ValueError(f"theta0 must have shape {pshape} or {(B, *pshape)}, got {tuple(theta0.shape)}")
    theta0 = kernel_model.project(theta0.clone())
    refs = [None if r is None else r.to(y).detach() for r in (reference_kernel, reference_image)]
    loop = AlternatingMinimisation(
        y,
        kernel_model,
        theta0,
        image_step,
        settings,
        potential=potential,
        reference_kernel=refs[0],
        reference_image=refs[1],
    )
    fingerprint = digest(
        method, y, theta0, replace(settings, n_iter=0), kernel_model, owner, potential is not None, *refs
    )
    run = drive(loop, settings.n_iter, kind="blind_deconvolution", fingerprint=fingerprint, options=options)
    traj = run.table().rename(columns={"k": "iteration"})
    denoised = None
    if method == "douglas_rachford":
        with torch.no_grad():
            denoised = owner(loop.x).to(loop.x.dtype)
    return DeblurResult(
        x=loop.x,
        theta=loop.theta,
        kernel=kernel_model.kernel(loop.theta).detach(),
        trajectory=traj[[c for c in _COLUMNS if c in traj]].reset_index(drop=True),
        kernels=run.stack("kernel"),
        thetas=run.stack("theta"),
        record_iterations=run.record_iterations,
        method=method,
        n_iter=settings.n_iter,
        resumed_from=run.resumed_from,
        wall_time_s=run.wall_time_s,
        denoised=denoised,
    )


def algorithm1(
    y,
    kernel_model,
    theta0,
    prior,
    settings: AlternatingSettings,
    *,
    reference_kernel=None,
    reference_image=None,
    options: RunOptions | None = None,
) -> DeblurResult:
    """P Algorithm 1 on blurry images ``y`` (B, C, H, W) with the diffusion ``prior``'s ∇q, from θ₀
    (``kernel_model.param_shape``, shared, or per image); q and ℓ are recorded where the prior's
    potential is exact."""

    def step(x, y_, otf):
        return algorithm1_image_step(x, y_, otf, prior, settings.sigma_y, settings.gamma_x)

    potential = prior.potential if prior.has_exact_potential else None
    return _alternate(
        "proximal_gradient",
        y,
        kernel_model,
        theta0,
        step,
        prior,
        settings,
        potential=potential,
        reference_kernel=reference_kernel,
        reference_image=reference_image,
        options=options,
    )


def algorithm2(
    y,
    kernel_model,
    theta0,
    denoiser,
    settings: AlternatingSettings,
    *,
    potential=None,
    reference_kernel=None,
    reference_image=None,
    options: RunOptions | None = None,
) -> DeblurResult:
    """P Algorithm 2 with ``denoiser`` D (a :class:`~prior_landscape.inverse.denoisers.DRUNetDenoiser` or
    :class:`~prior_landscape.inverse.denoisers.TweedieDenoiser`); ``potential`` (x ↦ q(x)), if given,
    is recorded along the run."""

    def step(x, y_, otf):
        return algorithm2_image_step(x, y_, otf, denoiser, settings.gamma_x)

    return _alternate(
        "douglas_rachford",
        y,
        kernel_model,
        theta0,
        step,
        denoiser,
        settings,
        potential=potential,
        reference_kernel=reference_kernel,
        reference_image=reference_image,
        options=options,
    )
