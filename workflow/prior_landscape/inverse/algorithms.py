"""Blind deconvolution by alternating minimisation of the joint posterior (P §5, Algorithms 1 and 2).

Algorithm 1 (P §5), with f(x, θ) = ½‖h_θ ⋆ x − y‖²::

    x₀ = y, θ₀ given
    for k = 0 … K−1:
        x ← y                       if k ≡ 0 (mod reset_every)   (P: 100)
        repeat K_x times:           x ← prox_{γ_x f(·,θ_k)}(x − γ_x σ_y² ∇q(x))
        θ_{k+1} = θ_k − γ_θ ∇_θ f(x, θ_k)                 (autograd through h_θ)
        θ_{k+1} ← Π(θ_{k+1})        (simplex projection for free kernels; identity for Zernike)

Algorithm 2 (P Appendix B) replaces the inner step by Douglas–Rachford with a
denoiser D standing for the proximal operator of the prior::

        z = D(x);  x ← x + prox_{γ_x f(·,θ_k)}(2z − x) − z

and, exactly as P writes it, the θ step and the returned image use the DR
iterate x (the "shadow" z = D(x) is recorded alongside and returned as
``DeblurResult.denoised``). At demo scale D is the Tweedie denoiser of an
analytic prior, D(x) = x + σ² ∇log p_σ(x) (:func:`tweedie_denoiser`); matching
D = prox_{γ_x σ_y² q} suggests σ ≈ σ_y √γ_x. P uses DRUNet on the Köhler data
(:func:`prior_landscape.inverse.denoisers.drunet_denoiser`).

Convolutions are circular and the prox is the closed-form Fourier solve
:func:`prior_landscape.inverse.profiles.fft_prox` (P: "a linear system resolution ...
conjugate gradient"; :func:`prior_landscape.inverse.profiles.cg_prox` solves the same
system by CG and is tested against it). Every quantity is batched: B blurry
images, each with its own θ, run independently in one call (the loss is a sum
over the batch, so each θ_b only sees its own image).

P's values: K = 400, K_x = 100, γ_x = 0.01, γ_θ = 0.001 (FFHQ-256, images in
[0, 1], 256×256). γ_x and γ_θ are not scale-free: the θ-gradient grows with the
number of pixels and the admissible prox-gradient step is ≲ 2/(σ_y² L_q) with
L_q the Lipschitz constant of ∇q, so demo-scale runs (16×16 crops) need their
own values (see the tests).

Trajectory. Every ``record_every`` iterations (and at k = 0 and k = K) one row
per image: iteration, data fit f(x, θ) (x the current image, θ the current
parameters), q(x) and ℓ = f + σ_y² q when a cheap ``potential_fn`` is given,
‖∇_θ f‖ of the last step, and — if references are given — kernel error, MNC
(both aligned, with flips for Zernike) and PSNR. The kernels h(θ) and θ at the
same records are kept in ``DeblurResult.kernels`` / ``thetas``.

Checkpoints. With ``checkpoint_path`` the state (iteration index, x, θ, records)
is written atomically (:func:`prior_landscape.io.artefacts.atomic_output`) every
``checkpoint_every`` iterations and at the end, with a fingerprint of everything
that defines the run except K (y, θ₀, hyper-parameters, kernel model, the
prior when ``grad_potential``/``denoiser`` is a bound method of a prior, the
references and the caller's ``fingerprint``; a callable's own ``fingerprint`` attribute, e.g.
the weights digest of :func:`prior_landscape.inverse.denoisers.drunet_denoiser`). A later call with the same
configuration resumes from it; the result is bit-for-bit that of an
uninterrupted run to K. Checkpoints of another configuration, past K, or
unreadable are ignored with a warning and overwritten.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import load_resumable_state
from prior_landscape.inverse.profiles import data_fit, fft_prox, kernel_otf

__all__ = ["DeblurResult", "blind_deconvolution", "algorithm1", "algorithm2", "tweedie_denoiser"]

_CKPT_KIND = "blind_deconvolution"
_METHODS = ("proximal_gradient", "douglas_rachford")


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


def tweedie_denoiser(prior, sigma: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """D(x) = x + σ² ∇log p_σ(x): the MMSE denoiser of the prior at noise level σ (Tweedie)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")

    def denoise(x: torch.Tensor) -> torch.Tensor:
        return x + sigma**2 * prior.score(x, sigma).to(x.dtype)

    denoise.prior = prior  # for checkpoint fingerprints
    denoise.sigma = float(sigma)
    return denoise


# ------------------------------------------------------------- fingerprints
def _digest(*tensors) -> str:
    h = hashlib.sha1()
    for t in tensors:
        if t is None:
            h.update(b"none|")
            continue
        t = t.detach().cpu()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _callable_fingerprint(fn) -> str | None:
    if fn is None:
        return None
    from prior_landscape.landscape.critical_points import _prior_fingerprint
    from prior_landscape.priors.base import DiffusionPrior

    owner = getattr(fn, "__self__", None) or getattr(fn, "prior", None)
    desc = getattr(fn, "__qualname__", type(fn).__name__)
    if isinstance(owner, DiffusionPrior):
        desc += "|" + _prior_fingerprint(owner)
    if hasattr(fn, "sigma"):
        desc += f"|sigma={fn.sigma!r}"
    if getattr(fn, "fingerprint", None):  # e.g. a DRUNet denoiser: the digest of its weights
        desc += f"|{fn.fingerprint}"
    return desc


# ------------------------------------------------------------------ driver
def blind_deconvolution(
    y: torch.Tensor,
    kernel_model,
    theta0: torch.Tensor,
    *,
    sigma_y: float,
    method: str = "proximal_gradient",
    grad_potential: Callable[[torch.Tensor], torch.Tensor] | None = None,
    denoiser: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_iter: int = 400,
    n_inner: int = 100,
    gamma_x: float = 0.01,
    gamma_theta: float = 0.001,
    reset_every: int | None = 100,
    record_every: int = 10,
    potential_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    reference_kernel: torch.Tensor | None = None,
    reference_image: torch.Tensor | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 50,
    fingerprint: dict | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> DeblurResult:
    """P Algorithm 1 (``method='proximal_gradient'``, needs ``grad_potential`` = ∇q) or
    Algorithm 2 (``method='douglas_rachford'``, needs ``denoiser`` = D).

    ``y`` (B, C, H, W) blurry images; ``kernel_model`` a :class:`~prior_landscape.inverse.kernels.KernelModel`;
    ``theta0`` of shape ``kernel_model.param_shape`` (shared) or (B, *param_shape).
    ``n_iter`` = K, ``n_inner`` = K_x; ``reset_every`` None disables the reset of x to y.
    See the module docstring for the trajectory, references and checkpoints.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method == "proximal_gradient" and grad_potential is None:
        raise ValueError("Algorithm 1 needs grad_potential (x ↦ ∇q(x), e.g. prior.grad_potential)")
    if method == "douglas_rachford" and denoiser is None:
        raise ValueError("Algorithm 2 needs a denoiser (x ↦ D(x), e.g. tweedie_denoiser(prior, sigma))")
    if y.dim() != 4:
        raise ValueError(f"y must be (B, C, H, W), got {tuple(y.shape)}")
    if n_iter < 0 or n_inner < 0 or record_every < 1 or checkpoint_every < 1:
        raise ValueError("need n_iter ≥ 0, n_inner ≥ 0, record_every ≥ 1, checkpoint_every ≥ 1")
    if not (gamma_x > 0 and gamma_theta >= 0):
        raise ValueError(f"need gamma_x > 0 and gamma_theta ≥ 0, got {gamma_x}, {gamma_theta}")
    if reset_every is not None and reset_every < 1:
        raise ValueError(f"reset_every must be ≥ 1 or None, got {reset_every}")
    t_start = time.perf_counter()
    y = y.detach()
    B = y.shape[0]
    pshape = tuple(kernel_model.param_shape)
    theta0 = torch.as_tensor(theta0).to(y.dtype).detach()
    if tuple(theta0.shape) == pshape:
        theta0 = theta0.expand(B, *pshape)
    if tuple(theta0.shape) != (B, *pshape):
        raise ValueError(f"theta0 must have shape {pshape} or {(B, *pshape)}, got {tuple(theta0.shape)}")
    theta0 = kernel_model.project(theta0.clone())
    is_zernike = kernel_model.describe().get("family") == "zernike"
    ref_k = None if reference_kernel is None else reference_kernel.to(y.dtype).detach()
    ref_x = None if reference_image is None else reference_image.to(y.dtype).detach()

    # ------------------------------------------------------------ state
    x = y.clone()
    theta = theta0.clone()
    k = 0
    records: dict[str, list] = {"iteration": [], "image": [], "data_fit": [], "grad_theta_norm": []}
    if potential_fn is not None:
        records.update(q=[], loss=[])
    if ref_k is not None:
        records.update(kernel_error=[], mnc=[])
    if ref_x is not None:
        records.update(psnr=[])
    rec_iters: list[int] = []
    rec_kernels: list[torch.Tensor] = []
    rec_thetas: list[torch.Tensor] = []
    last_grad_norm = torch.full((B,), float("nan"), dtype=torch.float64)

    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    config = {
        "method": method,
        "y": _digest(y),
        "theta0": _digest(theta0),
        "sigma_y": float(sigma_y),
        "n_inner": int(n_inner),
        "gamma_x": float(gamma_x),
        "gamma_theta": float(gamma_theta),
        "reset_every": reset_every,
        "record_every": int(record_every),
        "kernel_model": kernel_model.describe(),
        "grad_potential": _callable_fingerprint(grad_potential),
        "denoiser": _callable_fingerprint(denoiser),
        "records_q": potential_fn is not None,
        "references": _digest(ref_k, ref_x),
        "caller": fingerprint or {},
    }
    if ckpt is not None and ckpt.exists():
        state = load_resumable_state(
            ckpt, _CKPT_KIND, json.dumps(config, sort_keys=True), ("iteration", n_iter), "deblur"
        )
        if state is not None:
            k = int(state["iteration"])
            x = state["x"].to(y.dtype)
            theta = state["theta"].to(y.dtype)
            records = {key: list(v) for key, v in state["records"].items()}
            rec_iters = list(state["record_iterations"])
            rec_kernels = list(state["kernels"].unbind(0)) if rec_iters else []
            rec_thetas = list(state["thetas"].unbind(0)) if rec_iters else []
            last_grad_norm = state["last_grad_norm"].to(torch.float64)
    k_resumed = k

    def save_checkpoint() -> None:
        from prior_landscape.io.artefacts import atomic_output

        state = {
            "kind": _CKPT_KIND,
            "config": json.dumps(config, sort_keys=True),
            "iteration": int(k),
            "x": x.detach().cpu(),
            "theta": theta.detach().cpu(),
            "records": records,
            "record_iterations": rec_iters,
            "kernels": torch.stack(rec_kernels) if rec_kernels else torch.zeros(0),
            "thetas": torch.stack(rec_thetas) if rec_thetas else torch.zeros(0),
            "last_grad_norm": last_grad_norm,
        }
        with atomic_output(ckpt) as tmp:
            torch.save(state, tmp)

    def record() -> None:
        from prior_landscape.metrics import kernel_error, mnc, psnr

        with torch.no_grad():
            h = kernel_model.kernel(theta).detach()
            f = data_fit(x, y, h).to(torch.float64)
            row = {"data_fit": f}
            if potential_fn is not None:
                qv = torch.as_tensor(potential_fn(x)).reshape(-1).to(torch.float64)
                row.update(q=qv, loss=f + sigma_y**2 * qv)
            if ref_k is not None:
                row.update(
                    kernel_error=kernel_error(h, ref_k, flip=is_zernike).to(torch.float64),
                    mnc=mnc(h, ref_k, flip=is_zernike).to(torch.float64),
                )
            if ref_x is not None:
                row.update(psnr=psnr(x, ref_x).to(torch.float64))
        records["iteration"].extend([k] * B)
        records["image"].extend(range(B))
        records["grad_theta_norm"].extend(last_grad_norm.tolist())
        for key, v in row.items():
            records[key].extend(v.cpu().tolist())
        rec_iters.append(k)
        rec_kernels.append(h.cpu())
        rec_thetas.append(theta.detach().cpu())
        if progress is not None:
            progress(k, {key: np.asarray(v[-B:]) for key, v in records.items()})

    z = None
    while True:
        if ckpt is not None and k > k_resumed and (k % checkpoint_every == 0 or k == n_iter):
            save_checkpoint()
        if k % record_every == 0 or k == n_iter:
            record()
        if k == n_iter:
            break
        # ------------------------------------------------ image update
        if reset_every is not None and k % reset_every == 0:
            x = y.clone()
        with torch.no_grad():
            h = kernel_model.kernel(theta).detach()
            otf = kernel_otf(h, tuple(y.shape[-2:]))
            for _ in range(n_inner):
                if method == "proximal_gradient":
                    v = x - gamma_x * sigma_y**2 * grad_potential(x).to(x.dtype)
                    x = fft_prox(v, y, h, gamma_x, otf=otf)
                else:
                    z = denoiser(x).to(x.dtype)
                    x = x + fft_prox(2.0 * z - x, y, h, gamma_x, otf=otf) - z
        if not torch.isfinite(x).all():
            raise FloatingPointError(
                f"the image update diverged at iteration {k}: lower gamma_x (the prox-gradient step "
                f"needs gamma_x·σ_y²·L_q < 2, L_q the Lipschitz constant of ∇q)"
            )
        # ------------------------------------------------ kernel update
        th = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = data_fit(x, y, kernel_model.kernel(th)).sum()
            (g,) = torch.autograd.grad(loss, th)
        last_grad_norm = g.flatten(1).to(torch.float64).norm(dim=1).cpu()
        theta = kernel_model.project(theta - gamma_theta * g).detach()
        if not torch.isfinite(theta).all():
            raise FloatingPointError(f"the kernel update diverged at iteration {k}: lower gamma_theta")
        k += 1

    traj = pd.DataFrame(records)
    traj["iteration"] = traj["iteration"].astype(np.int64)
    traj["image"] = traj["image"].astype(np.int64)
    denoised = None
    if method == "douglas_rachford":
        with torch.no_grad():
            denoised = denoiser(x).to(x.dtype)
    return DeblurResult(
        x=x,
        theta=theta,
        kernel=kernel_model.kernel(theta).detach(),
        trajectory=traj,
        kernels=torch.stack(rec_kernels),
        thetas=torch.stack(rec_thetas),
        record_iterations=list(rec_iters),
        method=method,
        n_iter=int(n_iter),
        resumed_from=k_resumed,
        wall_time_s=time.perf_counter() - t_start,
        denoised=denoised,
    )


def algorithm1(y, kernel_model, theta0, *, sigma_y, grad_potential, **kwargs) -> DeblurResult:
    """P Algorithm 1: proximal-gradient image steps, one gradient step on θ (see :func:`blind_deconvolution`)."""
    return blind_deconvolution(
        y, kernel_model, theta0, sigma_y=sigma_y, method="proximal_gradient", grad_potential=grad_potential, **kwargs
    )


def algorithm2(y, kernel_model, theta0, *, sigma_y, denoiser, **kwargs) -> DeblurResult:
    """P Algorithm 2: Douglas–Rachford image steps with a denoiser (see :func:`blind_deconvolution`)."""
    return blind_deconvolution(
        y, kernel_model, theta0, sigma_y=sigma_y, method="douglas_rachford", denoiser=denoiser, **kwargs
    )
