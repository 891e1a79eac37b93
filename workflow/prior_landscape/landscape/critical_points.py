"""Critical points of the potential by gradient descent (P §2.2, Figs. 1–3).

P descends the potential q = −log p_{t_ε} of a diffusion prior with a fixed step. Its
released code (the notebooks of mh-nguyen712/blind_deblur_diffusion) steps along the
*scaled* score, D_σ(x) − x = σ² ∇log p_σ(x), so its η = 0.02 multiplies σ² ∇q:

    x_{k+1} = x_k − η σ² ∇q(x_k) = (1 − η) x_k + η D_σ(x_k),    ∇q = −score(·, σ(t_ε)) = ``prior.grad_potential``,

a relaxed iteration of the prior's denoiser. Here σ = σ(t_ε) (``prior.sigma_eps``), so
that the end points are critical points of the very q the potential engine evaluates; P
takes σ = 0.001 on [−1, 1] images (0.0005 on [0, 1]) with its q at EDM's t_ε. The
descent runs from three groups of starts (training-set images, images of unrelated data
sets, white Gaussian noise), 10k steps for P's 64-px models and 5k for FFHQ-256. The end
points x̄ satisfy ∇q(x̄) ≈ 0 and are generically second-order critical points (Lee et al.
2016). P then reports q along the descent (Fig. 2), and the relative distance
‖x − x̄‖/‖x̄‖ and the drop q(x) − q(x̄) (Fig. 3).

:func:`descend` runs the descent on a batch of images at once, with the step on ∇q itself
(η σ², see :func:`choose_step`). Evaluating q needs a probability-flow ODE
(:mod:`prior_landscape.landscape.potential`), far too costly to do along the way, so the trajectory
records ‖∇q‖ per image every ``record_every`` steps and, only when an ``energy_fn`` is
given, q as well (for the analytic mixture prior pass its exact ``prior.potential``; for a
network pass None and compute q at the start and end points with the potential engine
afterwards).

Step size
---------
A fixed step s on ∇q decreases q monotonically when s ≤ 1/L, L the Lipschitz constant of
∇q (largest Hessian eigenvalue), and diverges along any direction whose curvature exceeds
2/s. For the analytic :class:`GaussianMixturePrior`,

    ∇²q = Σ_k γ_k (Σ_k + σ²I)⁻¹ − Cov_γ(s_k) ≼ I / (φ + σ_ε²)

(the covariance of the component scores is positive semi-definite), so
L ≤ 1/(φ + σ_ε²) everywhere and :func:`safe_step` returns s = φ + σ_ε², with which
every step decreases q (η = 1 + φ/σ_ε² in P's units). P's η = 0.02 is far inside that
bound: on the mixture it converges slowly toward the component means, its only critical
points; on a score network it stops within a few percent of natural starts (P Fig. 3). A
divergence is caught: as soon as ∇q (or q) of an image becomes NaN or infinite,
:class:`FloatingPointError` names the image and the step and asks for a smaller one.

Resuming
--------
With ``checkpoint_path``, the state (x, step index, trajectory so far) is written
atomically every ``checkpoint_every`` steps and at the end, together with a
fingerprint of the configuration: the start images x0 (SHA-1 of their values,
shape, dtype), the step, ``record_every``, whether q is recorded, and the prior (class,
name, schedule and the values of its tensors / network weights). A later call
with the same configuration resumes from it; ``n_steps`` is *not* part of the
fingerprint, so a checkpoint of a shorter run (or of a run that was killed) is
extended, and the result is bit-for-bit that of one uninterrupted run to
``n_steps`` (the same operations on the same tensors). A checkpoint from another
configuration, past ``n_steps``, or unreadable is ignored with a warning and
overwritten.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import load_resumable_state
from prior_landscape.priors.base import DiffusionPrior

__all__ = ["DescentResult", "descend", "safe_step", "white_noise_starts"]

_CKPT_KIND = "critical_point_descent"


@dataclass
class DescentResult:
    """Outcome of :func:`descend` on a batch of B images."""

    start: torch.Tensor  # (B, C, H, W) the start images x
    end: torch.Tensor  # (B, C, H, W) the end points x̄ (near-critical points)
    trajectory: pd.DataFrame  # image, step, grad_norm[, q]: every record_every steps and the last
    grad_norm_start: np.ndarray  # (B,) ‖∇q(x)‖
    final_grad_norm: np.ndarray  # (B,) ‖∇q(x̄)‖
    relative_distance: np.ndarray  # (B,) ‖x − x̄‖ / ‖x̄‖ (P Fig. 3)
    step: float
    n_steps: int
    resumed_from: int = 0  # step index the run resumed from (0: started afresh)
    wall_time_s: float = 0.0  # seconds spent in this call
    extra: dict = field(default_factory=dict)

    def summary(self, q_start=None, q_end=None) -> pd.DataFrame:
        """One row per image: relative distance, ‖∇q‖ at both ends and q at both ends.

        q comes from ``q_start`` / ``q_end`` when given (e.g. potential-engine
        values for a network prior), else from the recorded trajectory (when an
        ``energy_fn`` was used), else NaN.
        """
        B = len(self.relative_distance)
        traj = self.trajectory
        if "q" in traj and q_start is None:
            q_start = traj[traj["step"] == 0].sort_values("image")["q"].to_numpy()
        if "q" in traj and q_end is None:
            q_end = traj[traj["step"] == self.n_steps].sort_values("image")["q"].to_numpy()
        nan = np.full(B, np.nan)
        q0 = nan if q_start is None else np.asarray(q_start, dtype=np.float64)
        q1 = nan if q_end is None else np.asarray(q_end, dtype=np.float64)
        return pd.DataFrame(
            {
                "image": np.arange(B),
                "relative_distance": self.relative_distance,
                "grad_norm_start": self.grad_norm_start,
                "grad_norm_end": self.final_grad_norm,
                "q_start": q0,
                "q_end": q1,
                "q_drop": q0 - q1,
            }
        )


def white_noise_starts(
    n: int,
    shape: tuple[int, int, int],
    mean: float = 0.5,
    std: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """n white Gaussian noise images N(mean, std² I) of shape ``shape`` (C, H, W), not clipped.

    The defaults suit images in [0, 1] (the demo's crops have mean ≈ 0.45 and
    pixel std ≈ 0.2); P's third start group is "pure white Gaussian noise". The
    draw depends on ``seed`` only (a private generator; the global RNG is untouched).
    """
    if n < 0 or std < 0:
        raise ValueError(f"need n ≥ 0 and std ≥ 0, got n = {n}, std = {std}")
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    return (mean + std * z).to(dtype)


def safe_step(prior: DiffusionPrior) -> float:
    """A fixed step that provably decreases q at every iteration: 1/L, L the Lipschitz constant of ∇q.

    Known for the analytic :class:`GaussianMixturePrior` only, where
    L ≤ 1/(φ + σ_ε²) (see the module docstring), so the step is φ + σ_ε². For
    networks there is no bound: choose a step for which the recorded ‖∇q‖ (or q)
    decreases, and rely on the divergence check of :func:`descend`.
    """
    floor = getattr(prior, "floor", None)
    if floor is None or not hasattr(prior, "hessian_potential"):
        raise TypeError(f"no curvature bound is known for {type(prior).__name__}; choose the step empirically")
    return float(floor) + prior.sigma_eps**2


# ------------------------------------------------------------------ fingerprint
def _tensor_digest(h, t: torch.Tensor) -> None:
    t = t.detach().cpu()
    h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.to(torch.float64).contiguous().numpy().tobytes())


def _prior_fingerprint(prior: DiffusionPrior) -> str:
    """A digest of what defines the prior: class, name, schedule, shapes, tensors and weights."""
    h = hashlib.sha1()
    h.update(f"{type(prior).__module__}.{type(prior).__qualname__}|{getattr(prior, 'name', '')}|".encode())
    h.update(f"{tuple(prior.image_shape)}|".encode())
    sched = getattr(prior, "schedule", None)
    if sched is not None and hasattr(sched, "to_dict"):
        h.update(repr(sorted(sched.to_dict().items())).encode())
    for key in sorted(vars(prior)):
        val = getattr(prior, key)
        if isinstance(val, torch.Tensor):
            h.update(key.encode())
            _tensor_digest(h, val)
        elif isinstance(val, torch.nn.Module):
            h.update(key.encode())
            for name, t in sorted(val.state_dict().items()):
                h.update(name.encode())
                _tensor_digest(h, t)
        elif isinstance(val, (bool, int, float, str)):
            h.update(f"{key}={val!r}|".encode())
    return h.hexdigest()[:20]


def _config(prior, x0, step, record_every, with_q) -> dict:
    h = hashlib.sha1()
    _tensor_digest(h, x0)
    return {
        "x0_sha1": h.hexdigest()[:20],
        "x0_shape": [int(s) for s in x0.shape],
        "x0_dtype": str(x0.dtype),
        "step": float(step),
        "record_every": int(record_every),
        "records_q": bool(with_q),
        "prior": _prior_fingerprint(prior),
    }


# ---------------------------------------------------------------------- descent
def _divergence_message(prior, what: str, image: int, k: int, step: float, last_norm: float | None) -> str:
    hint = "lower the step"
    try:
        hint += f" (for this analytic prior any step ≤ safe_step(prior) = {safe_step(prior):.3g} is safe)"
    except TypeError:
        hint += " (e.g. by a factor 10) until the recorded ‖∇q‖ decreases"
    seen = f"; last recorded ‖∇q‖ = {last_norm:.3g}" if last_norm is not None else ""
    return (
        f"gradient descent on q diverged: {what} is not finite for image {image} at step {k} "
        f"(step size {step:g}){seen}. The step exceeds 2/λ_max of the Hessian of q: {hint}."
    )


def descend(
    prior: DiffusionPrior,
    x0: torch.Tensor,
    *,
    step: float = 0.02,
    n_steps: int,
    record_every: int = 100,
    energy_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int = 500,
    progress: Callable[[int, dict], None] | None = None,
) -> DescentResult:
    """Fixed-step gradient descent x ← x − step·∇q(x) on a batch x0 of shape (B, C, H, W) (P §2.2).

    ‖∇q(x_k)‖ of every image is recorded at k = 0, record_every, 2·record_every, …
    and at k = n_steps; with ``energy_fn`` (x ↦ q(x), shape (B,)) q too. The
    computation runs in x0's dtype and on its device.
    ``progress(k, record)`` is called after each record with
    ``record = {"step": k, "grad_norm": (B,) array, "q": (B,) array or None}``.
    See the module docstring for the step size and for checkpoints / resuming.

    Raises FloatingPointError, naming the image and step, as soon as ∇q (or q)
    becomes non-finite.
    """
    if x0.ndim != 4 or tuple(x0.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(f"x0 must have shape (B, {', '.join(map(str, prior.image_shape))}), got {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError("start images x0 contain NaN or infinity")
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a positive number, got {step}")
    if n_steps < 0 or record_every < 1 or checkpoint_every < 1:
        raise ValueError(
            f"need n_steps ≥ 0, record_every ≥ 1, checkpoint_every ≥ 1 (got {n_steps}, {record_every}, {checkpoint_every})"
        )
    t_start = time.perf_counter()
    x0 = x0.detach()
    B = x0.shape[0]
    with_q = energy_fn is not None

    records: dict[str, list] = {"image": [], "step": [], "grad_norm": []}
    if with_q:
        records["q"] = []
    x = x0.clone()
    k = 0

    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    config = _config(prior, x0, step, record_every, with_q) if ckpt is not None else None
    if ckpt is not None and ckpt.exists():
        state = load_resumable_state(ckpt, _CKPT_KIND, config, ("step_index", n_steps), "descent")
        if state is not None:
            k = int(state["step_index"])
            x = state["x"].to(device=x0.device, dtype=x0.dtype)
            records = {key: list(v) for key, v in state["records"].items()}
    k_resumed = k

    def save_checkpoint() -> None:
        from prior_landscape.io.artefacts import atomic_output

        state = {
            "kind": _CKPT_KIND,
            "config": config,
            "n_steps": int(n_steps),
            "step_index": int(k),
            "x": x.detach().cpu(),
            "records": records,  # records of the steps < k
        }
        with atomic_output(ckpt) as tmp:
            torch.save(state, tmp)

    last_norm: float | None = None
    while True:
        if ckpt is not None and k > k_resumed and (k % checkpoint_every == 0 or k == n_steps):
            save_checkpoint()
        g = prior.grad_potential(x).detach()
        gnorm = g.flatten(1).to(torch.float64).norm(dim=1)
        bad = ~(torch.isfinite(gnorm) & torch.isfinite(x.flatten(1)).all(1))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise FloatingPointError(_divergence_message(prior, "‖∇q‖", i, k, step, last_norm))
        if k % record_every == 0 or k == n_steps:
            gn = gnorm.cpu().numpy()
            q = None
            if with_q:
                q = torch.as_tensor(energy_fn(x)).detach().reshape(-1).to("cpu", torch.float64).numpy()
                if q.shape != (B,):
                    raise ValueError(f"energy_fn must return one value per image ({B}), got shape {q.shape}")
                if not np.isfinite(q).all():
                    i = int(np.flatnonzero(~np.isfinite(q))[0])
                    raise FloatingPointError(_divergence_message(prior, "q", i, k, step, last_norm))
                records["q"].extend(q.tolist())
            records["image"].extend(range(B))
            records["step"].extend([k] * B)
            records["grad_norm"].extend(gn.tolist())
            last_norm = float(gn.max())
            if progress is not None:
                progress(k, {"step": k, "grad_norm": gn, "q": q})
        if k == n_steps:
            break
        x = x - step * g
        k += 1

    traj = pd.DataFrame(records)
    traj["image"] = traj["image"].astype(np.int64)
    traj["step"] = traj["step"].astype(np.int64)
    first = traj[traj["step"] == 0].sort_values("image")
    end64 = x.flatten(1).to(torch.float64)
    rel = (x0.flatten(1).to(torch.float64) - end64).norm(dim=1) / end64.norm(dim=1)
    return DescentResult(
        start=x0.clone(),
        end=x,
        trajectory=traj,
        grad_norm_start=first["grad_norm"].to_numpy(),
        final_grad_norm=gnorm.cpu().numpy(),
        relative_distance=rel.cpu().numpy(),
        step=float(step),
        n_steps=int(n_steps),
        resumed_from=k_resumed,
        wall_time_s=time.perf_counter() - t_start,
    )


def largest_curvature(prior: DiffusionPrior, x: torch.Tensor, iters: int = 30, seed: int = 0) -> float:
    """λ_max of ∇²q over a batch, by power iteration on Hessian–vector products
    (forward-over-reverse: the JVP of ∇q). The largest value over the images is returned."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    v = v / v.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))
    lam = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(iters):
        _, hv = torch.func.jvp(prior.grad_potential, (x,), (v,))
        lam = (hv * v).flatten(1).sum(1)
        v = hv / hv.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (x.ndim - 1)))
    return float(lam.abs().max())


def choose_step(prior: DiffusionPrior, x: torch.Tensor, step: float | str, safety: float = 2.0) -> float:
    """The step s on ∇q of the fixed-step descent x ← x − s ∇q(x).

    A number is η in P's convention (module docstring): s = η σ_ε², so that the update is
    x ← (1 − η) x + η D_{σ_ε}(x) (P: η = 0.02). ``"auto"`` is the exact safe step
    φ + σ_ε² for the analytic mixture and 1/(safety·λ_max) at the starts otherwise (λ_max by
    power iteration), so that q decreases from the first step."""
    if step != "auto":
        eta = float(step)
        if not eta > 0:
            raise ValueError(f"the descent step η must be positive, got {step!r}")
        return eta * prior.sigma_eps**2
    try:
        return safe_step(prior)
    except TypeError:
        return 1.0 / (safety * largest_curvature(prior, x))
