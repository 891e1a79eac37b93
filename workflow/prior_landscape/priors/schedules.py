"""Noise schedules of variance-exploding diffusions (P §2.1, eq. 4 with f = 0).

Both schedules the paper uses are variance exploding: x_t = x_0 + σ(t) z, so the
forward SDE has drift f = 0 and diffusion g(t)² = d σ(t)² / dt = 2 σ(t) σ'(t).
The probability-flow ODE (P eq. 6) is then

    dx/dt = v(x, t) = ½ g(t)² ∇q_t(x) = −σ(t) σ'(t) ∇log p_t(x).

* ``VESchedule``: Song et al. (score_sde) σ(t) = σ_min (σ_max/σ_min)^t, t ∈ [t_ε, 1].
* ``EDMSchedule``: Karras et al. (EDM) σ(t) = t, t ∈ [t_ε, σ_max].
* ``ScaledSchedule``: either, in another pixel scale (EDM's [−1, 1] models seen on
  [0, 1] images).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class VESchedule:
    """score_sde's VE SDE: σ(t) = σ_min (σ_max/σ_min)^t on [t_eps, T = 1]."""

    sigma_min: float
    sigma_max: float
    t_eps: float = 1e-3
    kind: str = "ve"

    @property
    def T(self) -> float:
        return 1.0

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sigma_dot(self, t: torch.Tensor | float) -> torch.Tensor:
        return self.sigma(t) * math.log(self.sigma_max / self.sigma_min)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EDMSchedule:
    """EDM (Karras et al. 2022): σ(t) = t on [t_eps, T = σ_max]."""

    sigma_max: float = 80.0
    t_eps: float = 2e-3
    kind: str = "edm"

    @property
    def T(self) -> float:
        return self.sigma_max

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(t, dtype=torch.float64)

    def sigma_dot(self, t: torch.Tensor | float) -> torch.Tensor:
        return torch.ones_like(torch.as_tensor(t, dtype=torch.float64))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScaledSchedule:
    """A schedule seen in another pixel scale: σ_u(t) = σ(t) / scale, same times.

    x_u = (x − lo) / scale maps the VE diffusion of a model trained on images in
    [lo, lo + scale] to one on [0, 1] images: x_u(t) = x_u(0) + (σ(t)/scale) z.
    """

    base: VESchedule | EDMSchedule
    scale: float
    kind: str = "scaled"

    @property
    def t_eps(self) -> float:
        return self.base.t_eps

    @property
    def T(self) -> float:
        return self.base.T

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        return self.base.sigma(t) / self.scale

    def sigma_dot(self, t: torch.Tensor | float) -> torch.Tensor:
        return self.base.sigma_dot(t) / self.scale

    def to_dict(self) -> dict:
        return {"kind": "scaled", "scale": self.scale, "base": self.base.to_dict()}


Schedule = VESchedule | EDMSchedule | ScaledSchedule


def schedule_from_config(cfg: dict) -> Schedule:
    """Build a schedule from its config dict (``{"kind": "ve", ...}``)."""
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "ve":
        return VESchedule(**cfg)
    if kind == "edm":
        return EDMSchedule(**cfg)
    if kind == "scaled":
        return ScaledSchedule(schedule_from_config(cfg["base"]), float(cfg["scale"]))
    raise ValueError(f"unknown schedule kind {kind!r}: expected 've' or 'edm'")
