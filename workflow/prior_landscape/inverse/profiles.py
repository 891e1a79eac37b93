"""The joint posterior of blind deconvolution and its 1-D profiles (P §3–4, eqs. 8, 13–15, Figs. 9–10).

Negative log-posterior (P eq. 8), for an image x, kernel parameters θ and data y:

    ℓ_y(x, θ) = ½‖h_θ ⋆ x − y‖² + σ_y² q(x),        f(x, θ) = ½‖h_θ ⋆ x − y‖²,

and its profile ℓ_y^opt(θ) = inf_x ℓ_y(x, θ) (P eq. 13). Convolutions are
circular (periodic boundary) throughout this module, as in P §4.1, so every
operator is diagonal in Fourier and the linear solves below are closed-form.

Noiseless profile (P §4.1, Fig. 9). With the slightly perturbed kernels
h̃_θ = h_θ + λδ (invertible for a suitable λ) and ȳ = H̃_θ̄ x̄, the infimum is
reached at x̂(θ) = H̃_θ⁻¹ ȳ, so ℓ^opt(θ) = q(H̃_θ⁻¹ ȳ) (σ_y → 0, in units of σ_y²).
λ is chosen per family by P's grid rule (eq. 14, :func:`select_lambda`): the
smallest λ of a grid such that, for every θ of the family's grid and every test
image x, y = H̃_θ x satisfies ‖x − H̃_θ⁻¹ y‖ ≤ tol (1e-5) and q(H̃_θ⁻¹ y) ≈ q(x).
In exact arithmetic the round trip is exact for any λ making H̃ invertible; in
floating point it fails where |ĥ_θ + λ| is below ≈ rounding/tol (Gaussian and
Airy kernels have Fourier transforms that vanish to 1e-20 on a small torus, and
the Airy, defocus and motion transforms change sign), which is what the rule
detects.

The potential enters through a ``potential_fn`` callable x ↦ q(x) of shape (B,),
so the caller decides between the exact q of the analytic mixture
(``prior.potential``) and the probability-flow engine (e.g.
``lambda x: torch.as_tensor(potential(prior, x).q)``).

Noisy profile (P §4.2, Fig. 10). ℓ^opt(θ) is approximated by ℓ_y(x̂(θ), θ). P computes x̂(θ) by
gradient descent with momentum (P eq. 15), x_{k+1} = x_k − s ∇_x ℓ_y(x_k, θ) + β (x_k − x_{k−1}),
for a fixed number of steps; here x̂(θ) is the minimiser to a stated tolerance on ‖∇_x ℓ_y‖, by
accelerated proximal gradient (:func:`minimise_image`), and every profile point records whether
it met it. It is run from several initialisations, keeping per θ the end point with the lowest
ℓ_y (P: "retain the endpoint with the lowest potential"; with the data term
fixed by θ, the lowest objective is the value the infimum asks for). All
(image, θ, start) triples descend together as one batch.

The proximal operator of the data term (P Algorithm 1, line 6),

    prox_{γ f(·,θ)}(v) = argmin_x ½‖h⋆x − y‖² + ‖x − v‖²/(2γ) = (HᵀH + I/γ)⁻¹ (Hᵀy + v/γ),

is :func:`fft_prox` (closed form under circular boundary) or :func:`cg_prox`
(conjugate gradient, any boundary of :func:`prior_landscape.inverse.operators.blur`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from prior_landscape.inverse.operators import (
    _as_filter,
    _shape,
    data_fit,
    fft_blur,
    fft_prox,
    kernel_otf,
    regularised_blur,
    regularised_inverse,
)

__all__ = [
    "negative_log_posterior",
    "LambdaSelection",
    "select_lambda",
    "DEFAULT_LAMBDA_GRID",
    "noiseless_profile",
    "minimise_image",
    "NoisyProfile",
    "noisy_profile",
    "posterior_gradient",
    "InnerSolve",
]

PotentialFn = Callable[[torch.Tensor], torch.Tensor]
#: λ grid of the rule of P eq. 14: 0 then 1e-14 … 1e-1 (two values per decade).
DEFAULT_LAMBDA_GRID: tuple[float, ...] = (
    (0.0,) + tuple(float(f"{m}e{e}") for e in range(-14, -1) for m in (1, 3)) + (0.1,)
)


# -------------------------------------------------------------- objectives
def negative_log_posterior(
    x: torch.Tensor, y: torch.Tensor, h: torch.Tensor, sigma_y: float, potential_fn: PotentialFn
) -> torch.Tensor:
    """ℓ_y(x, θ) = ½‖h ⊛ x − y‖² + σ_y² q(x) (P eq. 8), shape (B,)."""
    q = torch.as_tensor(potential_fn(x)).reshape(-1).to(x.dtype)
    return data_fit(x, y, h) + sigma_y**2 * q


# ---------------------------------------------------------- noiseless case
@dataclass
class LambdaSelection:
    """Result of P's grid rule (eq. 14)."""

    lam: float  # the smallest admissible λ of the grid (NaN if none)
    table: pd.DataFrame  # one row per λ: max round-trip error, max |Δq|, admissible


def select_lambda(
    kernels: torch.Tensor,
    images: torch.Tensor,
    potential_fn: PotentialFn | None = None,
    grid: Sequence[float] = DEFAULT_LAMBDA_GRID,
    tol: float = 1e-5,
    q_atol: float = 1e-3,
    q_rtol: float = 1e-5,
) -> LambdaSelection:
    """The smallest λ of ``grid`` satisfying P eq. 14 for every kernel and image.

    For each λ (ascending), each kernel h of ``kernels`` (T, k, k) (the family's θ
    grid) and each image x of ``images`` (B, C, H, W): y = H̃x = h ⊛ x + λx, then
    λ is admissible when ‖x − H̃⁻¹y‖₂ ≤ ``tol`` and (if ``potential_fn`` is given)
    |q(H̃⁻¹y) − q(x)| ≤ q_atol + q_rtol·|q(x)| for all pairs (non-finite values
    fail). Arithmetic in the images' dtype (use float64). With the probability-flow
    engine as ``potential_fn`` set ``q_atol`` to a few of its standard errors (its
    Monte-Carlo spread is far above the default, meant for exact potentials).
    """
    grid = sorted(float(g) for g in grid)
    if not grid or grid[0] < 0:
        raise ValueError("grid must hold non-negative values")
    T, B = kernels.shape[0], images.shape[0]
    xs = images.repeat(T, 1, 1, 1)  # (T·B, ...), kernel t for rows t·B … t·B + B − 1
    hs = kernels.to(images.dtype).repeat_interleave(B, dim=0)
    q_ref = None
    if potential_fn is not None:
        q_ref = torch.as_tensor(potential_fn(images)).reshape(-1).to(torch.float64)
        q_ref = q_ref.repeat(T)
    rows, chosen = [], math.nan
    for lam in grid:
        y = regularised_blur(xs, hs, lam)
        xr = regularised_inverse(y, hs, lam)
        err = (xr - xs).flatten(1).to(torch.float64).norm(dim=1)
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
        ok = bool((err <= tol).all())
        dq = math.nan
        if q_ref is not None:
            if ok:
                qr = torch.as_tensor(potential_fn(xr)).reshape(-1).to(torch.float64)
                dq_all = (qr - q_ref).abs()
                dq_all = torch.where(torch.isfinite(dq_all), dq_all, torch.full_like(dq_all, math.inf))
                dq = float(dq_all.max())
                ok = bool((dq_all <= q_atol + q_rtol * q_ref.abs()).all())
            else:
                dq = math.inf
        rows.append({"lam": lam, "max_roundtrip_error": float(err.max()), "max_abs_dq": dq, "admissible": ok})
        if ok and math.isnan(chosen):
            chosen = lam
            break  # the smallest admissible λ: larger ones need not be evaluated
    return LambdaSelection(chosen, pd.DataFrame(rows))


def noiseless_profile(
    x_bar: torch.Tensor,
    h_bar: torch.Tensor,
    kernels: torch.Tensor,
    lam: float,
    potential_fn: PotentialFn,
    return_images: bool = False,
):
    """ℓ^opt(θ) = q(H̃_θ⁻¹ ȳ) with ȳ = H̃_θ̄ x̄ (P §4.1, Fig. 9), circular.

    ``x_bar`` (B, C, H, W); ``h_bar`` the true kernel (k, k) or per image (B, k, k);
    ``kernels`` (T, k', k') the family on its θ grid. Returns q of shape (B, T)
    (float64), and the deconvolved images (B, T, C, H, W) when ``return_images``.
    """
    B, T = x_bar.shape[0], kernels.shape[0]
    y_bar = regularised_blur(x_bar, h_bar, lam)
    ys = y_bar.repeat_interleave(T, dim=0)  # row b·T + t
    hs = kernels.to(x_bar.dtype).repeat(B, 1, 1)
    xh = regularised_inverse(ys, hs, lam)
    q = torch.as_tensor(potential_fn(xh)).reshape(B, T).to(torch.float64)
    if return_images:
        return q, xh.reshape(B, T, *x_bar.shape[1:])
    return q


# -------------------------------------------------------------- noisy case
def posterior_gradient(x, y, otf, sigma_y: float, prior) -> torch.Tensor:
    """∇_x ℓ_y(x, θ) = Hᵀ(Hx − y) + σ_y² ∇q(x) (circular H, given by its OTF)."""
    shape = _shape(x)
    data = torch.fft.irfft2(otf.conj() * (otf * torch.fft.rfft2(x) - torch.fft.rfft2(y)), s=shape)
    return data + sigma_y**2 * prior.grad_potential(x).detach().to(x.dtype)


@dataclass
class InnerSolve:
    """x̂(θ) = argmin_x ℓ_y(x, θ) per image, and whether it was reached."""

    x: torch.Tensor  # (N, C, H, W)
    grad_norm: torch.Tensor  # (N,) ‖∇_x ℓ_y(x̂)‖ / ‖∇_x ℓ_y(x₀)‖: the stationarity reached
    converged: torch.Tensor  # (N,) bool: grad_norm ≤ tol
    steps: int


def minimise_image(
    y: torch.Tensor,
    h: torch.Tensor,
    sigma_y: float,
    prior,
    x0: torch.Tensor,
    lipschitz_q: float,
    *,
    tol: float = 1e-4,
    max_steps: int = 2000,
    check_every: int = 10,
) -> InnerSolve:
    """inf_x ℓ_y(x, θ) (P eq. 15's inner problem) by accelerated proximal gradient, batched (per-image kernels
    allowed): the quadratic data term through its exact prox (Fourier), the prior through gradient steps
    γ = 1/(σ_y² L_q) — FISTA (Beck & Teboulle 2009) with adaptive restart (O'Donoghue & Candès 2015):

        x_{k+1} = prox_{γ f}(z_k − γ σ_y² ∇q(z_k)),   z_{k+1} = x_{k+1} + (t_k − 1)/t_{k+1} (x_{k+1} − x_k),

    restarting the momentum of an image whenever it points uphill. Every ``check_every`` steps an image
    whose relative gradient norm ‖∇ℓ_y(x)‖/‖∇ℓ_y(x₀)‖ is ≤ ``tol`` stops (it leaves the batch), so an
    image's result does not depend on its batch-mates (shards of the profiles give the unsharded
    results); the others go on to ``max_steps``, and the result says which met the tolerance.
    P uses plain gradient descent with momentum for a fixed number of steps, which on ill-conditioned
    priors stops far above the infimum (more so at large θ, biasing the argmin towards θ = 0)."""
    if not (lipschitz_q > 0 and math.isfinite(lipschitz_q)):
        raise ValueError(f"the Lipschitz constant of ∇q must be a positive number, got {lipschitz_q}")
    h = _as_filter(h, y)
    otf = kernel_otf(h, _shape(y))
    gamma = 1.0 / max(sigma_y**2 * lipschitz_q, 1e-300)
    x = x0.detach().clone()
    z, t = x.clone(), torch.ones(len(x), dtype=x.dtype, device=x.device)
    g0 = posterior_gradient(x, y, otf, sigma_y, prior).flatten(1).norm(dim=1).clamp_min(1e-300)
    rel = torch.ones_like(g0)
    rows = torch.arange(len(x), device=x.device)  # the images still running
    k = 0
    for k in range(1, max_steps + 1):
        xa, za, ta, ya, oa = x[rows], z[rows], t[rows], y[rows], otf[rows] if otf.shape[0] > 1 else otf
        g_prior = sigma_y**2 * prior.grad_potential(za).detach().to(za.dtype)
        x_new = fft_prox(za - gamma * g_prior, ya, None, gamma, otf=oa)
        uphill = ((za - x_new) * (x_new - xa)).flatten(1).sum(1) > 0  # adaptive restart
        ta = torch.where(uphill, torch.ones_like(ta), ta)
        t_new = 0.5 * (1 + torch.sqrt(1 + 4 * ta * ta))
        z[rows] = x_new + ((ta - 1) / t_new).view(-1, 1, 1, 1) * (x_new - xa)
        x[rows], t[rows] = x_new, t_new
        if not torch.isfinite(x_new).all():
            raise FloatingPointError(
                f"the inner minimisation of ℓ_y diverged at step {k} (γ = {gamma:.3g}): "
                "L_q underestimates the curvature of q"
            )
        if k % check_every == 0 or k == max_steps:
            rel[rows] = posterior_gradient(x_new, ya, oa, sigma_y, prior).flatten(1).norm(dim=1) / g0[rows]
            rows = rows[rel[rows] > tol]
            if len(rows) == 0:
                break
    return InnerSolve(x, rel.to(torch.float64).cpu(), (rel <= tol).cpu(), k)


@dataclass
class NoisyProfile:
    values: torch.Tensor  # (B, T) ℓ_y(x̂(θ), θ), the lowest over starts
    data_fit: torch.Tensor  # (B, T) f(x̂(θ), θ)
    potential: torch.Tensor  # (B, T) q(x̂(θ))
    best_start: np.ndarray  # (B, T) index into ``starts`` of the retained end point
    images: torch.Tensor  # (B, T, C, H, W) the retained x̂(θ)
    grad_norm: np.ndarray  # (B, T) relative ‖∇ℓ_y‖ reached by the retained end point
    converged: np.ndarray  # (B, T) bool: the retained end point met the tolerance
    starts: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def _start_image(kind: str, y: torch.Tensor, h: torch.Tensor, sigma_y: float, lam: float) -> torch.Tensor:
    if kind == "y":
        return y.clone()
    if kind == "tikhonov":  # argmin ½‖Hx − y‖² + ½ α‖x‖²-ish Wiener filter, α = max(σ_y², 1e-4)
        alpha = max(sigma_y**2, 1e-4)
        otf = kernel_otf(h, _shape(y))
        return torch.fft.irfft2(otf.conj() * torch.fft.rfft2(y) / (otf.abs().pow(2) + alpha), s=_shape(y))
    if kind == "inverse":  # the regularised inverse H̃⁻¹y (noise amplified)
        return regularised_inverse(y, h, max(lam, 1e-3))
    raise ValueError(f"unknown start {kind!r}: use 'y', 'tikhonov' or 'inverse'")


def noisy_profile(
    y: torch.Tensor,
    kernels: torch.Tensor,
    sigma_y: float,
    prior,
    potential_fn: PotentialFn,
    lipschitz_q: float,
    starts: Sequence[str] = ("y", "tikhonov"),
    tol: float = 1e-4,
    max_steps: int = 2000,
    lam: float = 0.0,
) -> NoisyProfile:
    """ℓ^opt(θ) ≈ min over starts of ℓ_y(x̂(θ), θ) (P §4.2, eq. 15, Fig. 10), ∇q from the diffusion ``prior``,
    each x̂(θ) minimised to ``tol`` (:func:`minimise_image`).

    ``y`` (B, C, H, W) noisy data; ``kernels`` (T, k, k) the family on its θ grid
    (pass h_θ + λδ kernels yourself if wanted; ``lam`` is only used by the
    'inverse' start). Every (image, θ, start) descends in one batch of B·T·S.
    """
    B, T, S = y.shape[0], kernels.shape[0], len(starts)
    if S == 0:
        raise ValueError("need at least one start")
    ys = y.repeat_interleave(T, dim=0)  # b·T + t
    hs = kernels.to(y.dtype).repeat(B, 1, 1)
    x0 = torch.cat([_start_image(s, ys, hs, sigma_y, lam) for s in starts])  # s·BT + b·T + t
    ys_all = ys.repeat(S, 1, 1, 1)
    hs_all = hs.repeat(S, 1, 1)
    inner = minimise_image(ys_all, hs_all, sigma_y, prior, x0, lipschitz_q, tol=tol, max_steps=max_steps)
    x = inner.x
    f = data_fit(x, ys_all, hs_all).to(torch.float64)
    q = torch.as_tensor(potential_fn(x)).reshape(-1).to(torch.float64)
    ell = (f + sigma_y**2 * q).reshape(S, B * T)
    ell = torch.where(torch.isfinite(ell), ell, torch.full_like(ell, math.inf))
    # the first start whose end point is lowest up to rounding (1e-9 relative): starts that reach the same
    # minimiser tie, and the tie goes to the first whatever the batch's rounding
    low = ell.min(0).values
    best = (ell <= low + 1e-9 * low.abs()).to(torch.int8).argmax(0)  # (B·T,)
    idx = best * (B * T) + torch.arange(B * T)
    return NoisyProfile(
        values=ell.gather(0, best[None])[0].reshape(B, T),
        data_fit=f[idx].reshape(B, T),
        potential=q[idx].reshape(B, T),
        best_start=best.reshape(B, T).numpy(),
        images=x[idx].reshape(B, T, *y.shape[1:]),
        grad_norm=inner.grad_norm[idx.cpu()].reshape(B, T).numpy(),
        converged=inner.converged[idx.cpu()].reshape(B, T).numpy(),
        starts=tuple(starts),
    )


# -------------------------------------------------------------- P Figs. 9–10
def _keyed(q_of, keys: np.ndarray) -> PotentialFn:
    """x ↦ q(x) with the engine's probes keyed by ``keys`` (one per row of x): a profile point's probes
    then depend on its image's number and θ, not on where it sits in a batch or a shard."""
    return lambda x: q_of(x, probe_keys=keys)


def _points_table(prior, sets: dict, x_data, sources, q_of, ids: np.ndarray) -> pd.DataFrame:
    """Both kinds of x̄ with q, ‖∇q‖ and their distance to the data image (``ids``: the images' numbers)."""
    rows = []
    for name, x in sets.items():
        dist = (x - x_data).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        rows.append(pd.DataFrame({
            "x_bar": name, "image": ids, "source": sources, "q": _keyed(q_of, ids)(x).cpu().numpy(),
            "grad_norm": prior.grad_potential(x).flatten(1).norm(dim=1).double().cpu().numpy(),
            "relative_distance": dist.cpu().numpy(), "pixels": list(x.flatten(1).cpu().numpy().astype(np.float32)),
        }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _noisy_rows(prior, x, h_bar, ks, grid, cfg, q_of, lipschitz_q, ids, n_images) -> list[pd.DataFrame]:
    """P Fig. 10: one noisy profile per noise level of ``cfg``, its inner minimisations to a tolerance.
    The noise of image i is the i-th of ``n_images`` drawn at once, and the probes of (start s, image i,
    θ index t) are keyed by (s·n_images + i)·T + t: the same numbers whichever images ``x`` holds."""
    rows, inner, T = [], cfg["inner"], len(ks)
    starts = np.arange(len(inner["starts"]))
    keys = ((starts[:, None] * n_images + ids[None, :])[..., None] * T + np.arange(T)).ravel()
    for j, sigma in enumerate(cfg["noise_levels"]):
        g = torch.Generator().manual_seed(cfg["seed"] * 1000 + j)
        noise = torch.randn((n_images, *x.shape[1:]), generator=g, dtype=x.dtype)[torch.as_tensor(ids)]
        y = fft_blur(x, h_bar) + sigma * noise.to(x.device)
        prof = noisy_profile(
            y,
            ks,
            sigma,
            prior,
            _keyed(q_of, keys),
            lipschitz_q,
            starts=inner["starts"],
            tol=inner["tol"],
            max_steps=inner["max_steps"],
        )
        rows.append(pd.DataFrame({
            **grid, "sigma_y": sigma, "ell": prof.values.cpu().numpy().ravel(),
            "data_fit": prof.data_fit.cpu().numpy().ravel(), "q": prof.potential.cpu().numpy().ravel(),
            "best_start": np.asarray(inner["starts"])[prof.best_start.ravel()],
            "inner_grad_norm": prof.grad_norm.ravel(), "converged": prof.converged.ravel(),
        }))  # fmt: skip
    return rows


def profile_study(prior, x_data: torch.Tensor, sources: list[str], cfg: dict, q_of,
                  log=None, image_ids=None) -> tuple[dict, dict]:  # fmt: skip
    """The posterior profiles of P Figs. 9–10 for x̄ the images ``x_data`` and x̄ the critical points of
    q that momentum descent reaches from them (``cfg`` the configuration's ``posterior`` section;
    ``q_of(x, probe_keys=…)``: :func:`prior_landscape.landscape.potential.potential_function`).
    Returns the tables ``noiseless``, ``noisy`` (with each point's inner convergence), ``lam`` (P eq.
    14's rule per family) and ``points`` (both kinds of x̄), and the descent's η and the L_q of the
    inner steps (for the provenance).

    ``image_ids``: the images whose profiles are computed (a shard's, prior_landscape.shards; default
    all). What is chosen from the images — η, L_q and λ (P eq. 14) — is chosen from all of ``x_data``
    in every shard, and every random number is keyed by image (the noise, the engine's probes), so
    the shards' rows are the unsharded job's."""
    from prior_landscape.config import theta_grid
    from prior_landscape.landscape.critical_points import choose_eta, descend, lipschitz_estimate
    from prior_landscape.landscape.families import kernel, kernel_stack
    from prior_landscape.runs import RunOptions

    n_images = len(x_data)
    ids = np.arange(n_images) if image_ids is None else np.asarray(image_ids, dtype=np.int64)
    cp = cfg["critical_points"]
    eta = choose_eta(prior, x_data, cp["step"])
    lipschitz_q = lipschitz_estimate(prior, x_data)  # the inner minimisations' step
    x_own = x_data[torch.as_tensor(ids, device=x_data.device)]
    once = RunOptions(record_every=max(cp["n_steps"], 1))
    x_crit = descend(prior, x_own, eta=eta, n_steps=cp["n_steps"], momentum=cp["momentum"], options=once).end
    sets = {"dataset": x_own, "critical point": x_crit}
    theta_bar = float(cfg["theta_bar"])
    thetas = np.union1d(theta_grid(cfg["theta"]), [theta_bar])
    T = len(thetas)
    exact = prior.potential if prior.has_exact_potential else None
    noiseless, noisy, lambdas = [], [], []
    for family in cfg["families"]:
        ks = kernel_stack(family, thetas, cfg["kernel_size"]).to(x_data)
        h_bar = kernel(family, theta_bar, cfg["kernel_size"]).to(x_data)
        sel = select_lambda(ks, x_data, exact, tol=cfg["lambda_tol"])  # P eq. 14 on every data image
        lambdas.append(sel.table.assign(family=family, chosen=sel.table.lam == sel.lam))
        if not np.isfinite(sel.lam):
            raise ValueError(f"no λ of the grid satisfies P eq. 14 for the {family} family; widen the grid")
        for name, x in sets.items():
            grid = {"family": family, "x_bar": name, "image": np.repeat(ids, T),
                    "theta": np.tile(thetas, len(x)), "theta_bar": theta_bar}  # fmt: skip
            keys = (ids[:, None] * T + np.arange(T)).ravel()  # image i, θ index t
            ell = noiseless_profile(x, h_bar, ks, sel.lam, _keyed(q_of, keys)).cpu().numpy()
            noiseless.append(pd.DataFrame({**grid, "lam": sel.lam, "ell": ell.ravel()}))
            noisy += _noisy_rows(prior, x, h_bar, ks, grid, cfg, q_of, lipschitz_q, ids, n_images)
        if log is not None:
            log.info("%s: λ = %g", family, sel.lam)
    tables = {
        "noiseless": pd.concat(noiseless, ignore_index=True),
        "noisy": pd.concat(noisy, ignore_index=True),
        "lam": pd.concat(lambdas, ignore_index=True),
        "points": _points_table(prior, sets, x_own, [sources[i] for i in ids], q_of, ids),
    }
    for key, by in (("noiseless", ["family", "x_bar", "image"]), ("noisy", ["family", "x_bar", "sigma_y", "image"])):
        tables[key]["argmin_theta"] = profile_argmin(tables[key], by)
    return tables, {"eta_critical": eta, "lipschitz_q": lipschitz_q}


def profile_argmin(df: pd.DataFrame, by: list[str]) -> pd.Series:
    """The minimiser over the θ grid of each profile (non-finite values never win): P's question."""
    ell = df.ell.where(np.isfinite(df.ell), np.inf)
    return ell.groupby([df[k] for k in by]).transform(lambda s: df.theta.loc[s.idxmin()])
