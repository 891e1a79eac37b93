"""The terminal density p_T that closes the change of variables (P eq. 7's last term).

The potential engine integrates the probability-flow ODE from t_ε to T and adds −log p_T(x_T).
A network prior knows p_T only approximately. Two choices (a prior's ``terminal`` key):

* ``isotropic`` — P's (and score_sde's) N(0, σ_T² I). Its error is the terminal term
  log p_T(x_T) − log N(x_T; 0, σ_T² I), which does not shrink with more probes: for a data
  Gaussian N(μ, Σ) it is log N(x_T; μ, Σ + σ_T² I) − log N(x_T; 0, σ_T² I), −13.5 / +12.2 /
  +116.8 nats at the all-zeros / all-ones / 5·ones image on a d = 64 test prior (issue 12);
* ``data_gaussian`` (the workflow's default) — the Gaussian with the training data's mean μ and
  covariance C, diffused to T: N(μ, C + σ_T² I). C is the full covariance for d ≤
  :data:`FULL_COVARIANCE_MAX_DIM` (the demo's 16×16 crops, P's 32×32 digits) and its diagonal
  diag(v) above (paper scale, d = 3·64·64 to 3·256·256, where a d × d matrix does not fit). It is
  exact for Gaussian data (with a diagonal covariance above the limit) and, for any data, has
  the data's first two moments. The statistics are estimated once, when the prior is fitted,
  trained or imported, from the data it models (:func:`data_statistics`), and stored with it
  (``state()["data_statistics"]``).

Why the full covariance where it fits: far from the data the flow carries x_T far out along the
directions of small data variance (x − μ is scaled by √((λ + σ_T²)/(λ + σ_ε²)), ≈ 1400 for λ = 1e-4
on the demo's schedule), where the terminal term sees the covariance's off-diagonal part. On a
d = 64 Gaussian with eigenvalues 1e-4 to 1 in a random basis and a mean near 0.5, the bias at
zeros / ones / 5·ones is −15.8 / +12.4 / +126 nats with N(0, σ_T² I), −1.4 / −1.0 / −92 with the
diagonal data Gaussian, 0 with the full one.

On images of another shape than the statistics' (a convolutional network run on larger images,
:meth:`at_shape`) the per-channel moments of the pooled pixels are used: mean_c = mean of μ over
the channel's pixels, var_c = mean of v plus the variance of μ over them (the moments of a pixel
drawn at a random position).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "TERMINAL_DENSITIES",
    "DEFAULT_TERMINAL",
    "FULL_COVARIANCE_MAX_DIM",
    "data_statistics",
    "check_statistics",
    "terminal_log_prob",
]

#: the values of a prior's ``terminal`` key
TERMINAL_DENSITIES = ("data_gaussian", "isotropic")
#: the workflow's default (P used ``isotropic``)
DEFAULT_TERMINAL = "data_gaussian"
#: the full covariance is stored up to this many pixels (8 MB in float64), its diagonal above
FULL_COVARIANCE_MAX_DIM = 1024


def data_statistics(x: torch.Tensor, hflip: bool = False, full: bool | None = None) -> dict:
    """Per-pixel mean and (population) variance, float64 of shape (C, H, W), of images ``x``
    (N, C, H, W) in the prior's own pixel scale, and their (population) covariance ``cov`` (d, d)
    when ``full`` (default: d ≤ :data:`FULL_COVARIANCE_MAX_DIM`); ``hflip``: of the images and their
    mirror images (the distribution a network trained with flip augmentation models). Returns
    ``{"mean", "var", "n"}`` (and ``"cov"``): what :func:`terminal_log_prob` and a prior's state take."""
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
    out = {"mean": mean.contiguous(), "var": var.contiguous(), "n": int(x.shape[0])}
    d = mean.numel()
    if full if full is not None else d <= FULL_COVARIANCE_MAX_DIM:
        views = [x.flatten(1)] + ([x.flip(-1).flatten(1)] if hflip else [])
        m = mean.flatten()
        cov = sum((v - m).T @ (v - m) for v in views) / (len(views) * x.shape[0])
        out["cov"] = 0.5 * (cov + cov.T)
    return out


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
    out = {"mean": mean, "var": var, "n": int(stats.get("n", 0))}
    if stats.get("cov") is not None:
        cov = torch.as_tensor(stats["cov"]).to("cpu", torch.float64)
        d = mean.numel()
        if cov.shape != (d, d) or not torch.isfinite(cov).all() or not torch.allclose(cov, cov.T):
            raise ValueError(f"{source}: data_statistics cov must be a finite symmetric ({d}, {d}) matrix")
        out["cov"] = cov
    return out


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
    else N(μ, C + σ_T² I) from the data statistics (C their ``cov`` where stored and x has their
    shape, else diag(v); per-channel pooled at another shape)."""
    xf = x.to(torch.float64)
    d = x[0].numel()
    if stats is None:
        sq = xf.flatten(1).pow(2).sum(1)
        return -0.5 * sq / sigma_T**2 - 0.5 * d * math.log(2 * math.pi * sigma_T**2)
    if stats.get("cov") is not None and tuple(x.shape[1:]) == tuple(stats["mean"].shape):
        # full covariance: log N(x; μ, C + σ_T² I) by a Cholesky factor L L^T = C + σ_T² I
        total = stats["cov"].to(xf.device) + sigma_T**2 * torch.eye(d, dtype=torch.float64, device=xf.device)
        L = torch.linalg.cholesky(total)
        r = (xf - stats["mean"].to(xf.device)).flatten(1)
        z = torch.linalg.solve_triangular(L, r.T, upper=False)  # L z = r
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        return -0.5 * z.pow(2).sum(0) - 0.5 * (logdet + d * math.log(2 * math.pi))
    mean, var = _at_shape(stats, tuple(x.shape[1:]))
    total = (var + sigma_T**2).to(xf.device).flatten()
    r = (xf - mean.to(xf.device)).flatten(1)
    return -0.5 * (r.pow(2) / total).sum(1) - 0.5 * torch.log(2 * math.pi * total).sum()
