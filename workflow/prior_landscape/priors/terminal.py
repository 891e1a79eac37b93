"""The terminal density p_T that closes the change of variables (P eq. 7's last term).

The potential engine integrates the probability-flow ODE from t_ε to T and adds −log p_T(x_T).
A network prior knows p_T only approximately. Two choices (a prior's ``terminal`` key):

* ``isotropic`` — P's (and score_sde's) N(0, σ_T² I). Its error is the terminal term
  log p_T(x_T) − log N(x_T; 0, σ_T² I), which does not shrink with more probes: for a data
  Gaussian N(μ, Σ) it is log N(x_T; μ, Σ + σ_T² I) − log N(x_T; 0, σ_T² I), −13.5 / +12.2 /
  +116.8 nats at the all-zeros / all-ones / 5·ones image on a d = 64 test prior (issue 12);
* ``data_gaussian`` (the workflow's default) — the Gaussian with the training data's per-pixel
  mean μ and per-pixel (diagonal) variance v, diffused to T: N(μ, diag(v) + σ_T² I). It is exact
  for a Gaussian data distribution with diagonal covariance and, for any data, has the data's
  first two moments per pixel, which is what the terminal term sees at moderate σ_T. The
  statistics are estimated once, when the prior is fitted, trained or imported, from the data it
  models (:func:`data_statistics`), and stored with it (``state()["data_statistics"]``).

The diagonal keeps it cheap at paper scale (d = 3·256·256). On images of another shape than the
statistics' (a convolutional network run on larger images, :meth:`at_shape`) the per-channel
moments of the pooled pixels are used: mean_c = mean of μ over the channel's pixels, var_c = mean
of v plus the variance of μ over them (the moments of a pixel drawn at a random position).
"""

from __future__ import annotations

import math

import torch

__all__ = ["TERMINAL_DENSITIES", "DEFAULT_TERMINAL", "data_statistics", "check_statistics", "terminal_log_prob"]

#: the values of a prior's ``terminal`` key
TERMINAL_DENSITIES = ("data_gaussian", "isotropic")
#: the workflow's default (P used ``isotropic``)
DEFAULT_TERMINAL = "data_gaussian"


def data_statistics(x: torch.Tensor, hflip: bool = False) -> dict:
    """Per-pixel mean and (population) variance, float64 of shape (C, H, W), of images ``x``
    (N, C, H, W) in the prior's own pixel scale; ``hflip``: of the images and their mirror images
    (the distribution a network trained with flip augmentation models). Returns
    ``{"mean", "var", "n"}``: what :func:`terminal_log_prob` and a prior's state take."""
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"data statistics need images of shape (N ≥ 2, C, H, W), got {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("data statistics: the images contain NaN or infinity")
    mean = x.mean(0)
    second = x.pow(2).mean(0)
    if hflip:
        mean = 0.5 * (mean + mean.flip(-1))
        second = 0.5 * (second + second.flip(-1))
    var = (second - mean.pow(2)).clamp_min(0.0)
    return {"mean": mean.contiguous(), "var": var.contiguous(), "n": int(x.shape[0])}


def check_statistics(stats, source: str = "the prior") -> dict | None:
    """``stats`` as stored (None, or a dict with float tensors ``mean`` and ``var`` of one shape
    (C, H, W), var ≥ 0): returned on the CPU in float64; ValueError naming ``source`` otherwise."""
    if stats is None:
        return None
    if not isinstance(stats, dict) or "mean" not in stats or "var" not in stats:
        raise ValueError(f"{source}: data_statistics must be a dict with 'mean' and 'var', got {type(stats).__name__}")
    mean = torch.as_tensor(stats["mean"]).to("cpu", torch.float64)
    var = torch.as_tensor(stats["var"]).to("cpu", torch.float64)
    if mean.ndim != 3 or mean.shape != var.shape:
        raise ValueError(
            f"{source}: data_statistics mean and var must share one shape (C, H, W), got "
            f"{tuple(mean.shape)} and {tuple(var.shape)}"
        )
    if not (torch.isfinite(mean).all() and torch.isfinite(var).all()) or (var < 0).any():
        raise ValueError(f"{source}: data_statistics hold NaN, infinite or negative variances")
    return {"mean": mean, "var": var, "n": int(stats.get("n", 0))}


def _at_shape(stats: dict, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and v for images of ``shape``: the stored ones, or the per-channel pooled moments (module docstring)."""
    mean, var = stats["mean"], stats["var"]
    if tuple(shape) == tuple(mean.shape):
        return mean, var
    if shape[0] != mean.shape[0]:
        raise ValueError(f"data statistics of {mean.shape[0]} channel(s) cannot serve images of shape {tuple(shape)}")
    m_c = mean.flatten(1).mean(1)
    v_c = var.flatten(1).mean(1) + mean.flatten(1).var(1, unbiased=False)
    return m_c[:, None, None].expand(shape), v_c[:, None, None].expand(shape)


def terminal_log_prob(x: torch.Tensor, sigma_T: float, stats: dict | None) -> torch.Tensor:
    """log p_T(x) per image, float64 (P eq. 7's last term): N(0, σ_T² I) when ``stats`` is None,
    else N(μ, diag(v) + σ_T² I) from the data statistics."""
    xf = x.to(torch.float64)
    d = x[0].numel()
    if stats is None:
        sq = xf.flatten(1).pow(2).sum(1)
        return -0.5 * sq / sigma_T**2 - 0.5 * d * math.log(2 * math.pi * sigma_T**2)
    mean, var = _at_shape(stats, tuple(x.shape[1:]))
    total = (var + sigma_T**2).to(xf.device).flatten()
    r = (xf - mean.to(xf.device)).flatten(1)
    return -0.5 * (r.pow(2) / total).sum(1) - 0.5 * torch.log(2 * math.pi * total).sum()
