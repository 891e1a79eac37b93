"""The potential q(x) = −log p_{t_ε}(x) by the probability-flow ODE (P §2.1, eqs. 6–7).

Along the probability-flow ODE dx/dt = v(x, t) = −σ(t)σ'(t) ∇log p_t(x) (P eq. 6),
the instantaneous change of variables gives (P eq. 7)

    q(x_{t_ε}) = −log p_T(x_T) − ∫_{t_ε}^{T} ∇·v(x_t, t) dt,

and the divergence is estimated by Skilling–Hutchinson, ∇·v ≈ uᵀ J_v u with
Rademacher probes u, the product uᵀJ_v coming from one vector–Jacobian product.

``potential`` integrates a batch of images at once with per-sample adaptive
Dormand–Prince steps (torchode; scipy's RK45 is the same tableau), carrying one
trajectory per image and P divergence accumulators on it — one per probe — so that
P probes cost one network forward pass and P backward passes per evaluation, and
the spread of the P estimates gives a standard error and a 95 % confidence interval
(Student t with P − 1 degrees of freedom, see :class:`PotentialResult`). ``potential_reference``
is the paper's released scheme (scipy ``solve_ivp`` per image and per probe, a
host round-trip per evaluation), kept as the baseline of the speed benchmark.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np
import torch
import torchode

from prior_landscape.priors.base import DiffusionPrior


@dataclass(frozen=True)
class PotentialSettings:
    """The potential engine's settings. Accuracy settings define the value (they are part of
    every artefact's parameters and resume fingerprint); ``batch_size`` only splits the work
    (results are batch-independent: probes are keyed by image), so changing it reruns nothing."""

    n_probes: int = 4  # Hutchinson probes per image (P)
    atol: float = 1e-5  # Dormand–Prince tolerances (P: RK45, 1e-5)
    rtol: float = 1e-5
    max_steps: int = 20_000  # per image; beyond it the solve fails, naming the image
    dtype: torch.dtype = torch.float32  # the ODE state's precision
    batch_size: int = 16  # images per solve: speed only

    SPEED_ONLY: ClassVar[tuple[str, ...]] = ("batch_size",)

    def __post_init__(self):
        if not (isinstance(self.n_probes, int) and self.n_probes >= 1):
            raise ValueError(f"potential.n_probes must be an integer ≥ 1, got {self.n_probes!r}")
        for key in ("atol", "rtol"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                raise ValueError(f"potential.{key} must be a number in (0, 1), got {v!r}")
        if not (self.max_steps >= 1 and self.batch_size >= 1):
            raise ValueError(f"potential.max_steps and batch_size must be ≥ 1, got {self.max_steps}, {self.batch_size}")

    @classmethod
    def from_config(cls, section: dict) -> PotentialSettings:
        """From the configuration's ``potential`` section (``dtype`` by name, e.g. "float64")."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"potential: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        kw = dict(section)
        if isinstance(kw.get("dtype"), str):
            kw["dtype"] = getattr(torch, kw["dtype"])
        return cls(**kw)

    def accuracy(self) -> dict:
        """The settings that define the value, JSON-able (for artefact parameters and fingerprints)."""
        out = {k: v for k, v in asdict(self).items() if k not in self.SPEED_ONLY}
        out["dtype"] = str(self.dtype).removeprefix("torch.")
        return out


class NonFiniteODEError(FloatingPointError):
    """The probability-flow ODE produced a NaN or an infinity."""


@dataclass
class PotentialResult:
    """Potentials of a batch of images (nats), with their Monte-Carlo spread.

    ``q ± ci95_halfwidth`` is a 95 % confidence interval for the probability-flow potential
    (the expectation over probes of the Hutchinson estimate at the solver's tolerance): the
    Student-t quantile with P − 1 degrees of freedom times the standard error. q ± 2 SE or
    q ± 1.96 SE is not a 95 % interval for few probes: with P = 4 it covers ≈ 85 % (measured on
    the demo's mixture, 1000 samples: 85.4 %; the t interval, 3.18 SE: 94.6 %). The interval
    assumes near-normal per-probe estimates; it does not include the ODE's discretisation error,
    and images that share probes (a sweep along θ) have correlated intervals: the coverage
    holds per row, not independently across the rows of one image. NaN when P = 1.
    """

    q: np.ndarray  # (B,) mean over probes
    stderr: np.ndarray  # (B,) standard error of the mean over probes, std(ddof=1)/sqrt(P)
    nfe: np.ndarray  # (B,) function evaluations of the ODE right-hand side by each image's own solve
    per_probe: np.ndarray  # (B, P) one estimate per probe
    terminal_nll: np.ndarray  # (B,) −log p_T(x_T)
    wall_time_s: float = 0.0
    extra: dict = field(default_factory=dict)
    ci95_halfwidth: np.ndarray | None = None  # (B,) t_{0.975, P−1}·stderr; filled from stderr and P if not given

    def __post_init__(self):
        if self.ci95_halfwidth is None:
            self.ci95_halfwidth = self.t_halfwidth(self.stderr, np.shape(self.per_probe)[1])

    @staticmethod
    def t_halfwidth(stderr, n_probes: int, level: float = 0.95) -> np.ndarray:
        """Half-width of the Student-t interval of a mean of ``n_probes`` estimates:
        t_{(1+level)/2, P−1} · SE (95 %: 12.71, 4.30, 3.18, 2.36 SE for P = 2, 3, 4, 8); NaN for P = 1."""
        from scipy.stats import t as student_t

        stderr = np.asarray(stderr, dtype=np.float64)
        if n_probes < 2:
            return np.full(stderr.shape, np.nan)
        return float(student_t.ppf(0.5 + level / 2, n_probes - 1)) * stderr

    @property
    def n_probes(self) -> int:
        return int(np.shape(self.per_probe)[1])

    @property
    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """The 95 % interval (q − half-width, q + half-width)."""
        return self.q - self.ci95_halfwidth, self.q + self.ci95_halfwidth


def rademacher_probes(probe_keys, n_probes: int, dim: int, seed: int) -> torch.Tensor:
    """Probes of shape (P, B, d); image b's probes depend on (seed, probe_keys[b]) only.

    Keying probes by image rather than by batch position makes results independent of
    batching, and lets a sweep reuse an image's probes along θ (common random numbers),
    which removes most of the Monte-Carlo noise from differences q(h_θ ⋆ x) − q(x).
    """
    keys = [int(k) for k in probe_keys]
    out = torch.empty(n_probes, len(keys), dim)
    for b, key in enumerate(keys):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + key)
        out[:, b] = torch.randint(0, 2, (n_probes, dim), generator=g).float() * 2 - 1
    return out


def _velocity_and_divergence(prior: DiffusionPrior, x: torch.Tensor, t: torch.Tensor, probes: torch.Tensor):
    """v(x, t) = −σσ' ∇log p_σ(x) and one Hutchinson divergence uᵀJ_v u per probe."""
    sched = prior.schedule
    sigma = sched.sigma(t).to(x.dtype)
    coef = (sched.sigma(t) * sched.sigma_dot(t)).to(x.dtype)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = prior.score(x.view(x.shape[0], *prior.image_shape), sigma).reshape(x.shape[0], -1)
        v = -coef[:, None] * s
        n_probes = probes.shape[0]
        divs = []
        for p in range(n_probes):
            (ujv,) = torch.autograd.grad(v, x, probes[p], retain_graph=p < n_probes - 1)
            divs.append((ujv * probes[p]).sum(1))
    return v.detach(), torch.stack(divs, 1).detach()


def _check_finite(v: torch.Tensor, div: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor, first_index: int):
    bad = ~(torch.isfinite(v).all(1) & torch.isfinite(div).all(1))
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise NonFiniteODEError(
            f"probability-flow ODE: non-finite value for image {first_index + i} at t = {float(t[i]):.6g} "
            f"(sigma = {float(sigma[i]):.6g}); {int(bad.sum())} image(s) of the batch affected. "
            "Check the input image range and the prior's checkpoint."
        )


def potential(
    prior: DiffusionPrior,
    x: torch.Tensor,
    settings: PotentialSettings | None = None,
    *,
    seed: int = 0,
    first_index: int = 0,
    probe_keys=None,
) -> PotentialResult:
    """q(x) = −log p_{t_ε}(x) for a batch x of shape (B, C, H, W), in nats (one solve, whatever
    ``settings.batch_size``: see :func:`potential_batched`).

    ``first_index`` is the global index of x[0], used in error messages and, unless
    ``probe_keys`` (one integer per image) is given, as the key of its probes.
    """
    cfg = settings or PotentialSettings()
    n_probes, atol, rtol, dtype, max_steps = cfg.n_probes, cfg.atol, cfg.rtol, cfg.dtype, cfg.max_steps
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(f"images must have shape (B, {', '.join(map(str, prior.image_shape))}), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise NonFiniteODEError("input images contain NaN or infinity")
    t_start = time.perf_counter()
    device = x.device
    B, d = x.shape[0], prior.dim
    sched = prior.schedule
    if probe_keys is None:
        probe_keys = range(first_index, first_index + B)
    probes = rademacher_probes(probe_keys, n_probes, d, seed).to(device=device, dtype=dtype)
    y0 = torch.cat([x.reshape(B, d).to(dtype), torch.zeros(B, n_probes, device=device, dtype=dtype)], 1)

    def rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        v, div = _velocity_and_divergence(prior, y[:, :d], t, probes)
        _check_finite(v, div, t, sched.sigma(t), first_index)
        return torch.cat([v, div], 1)

    term = torchode.ODETerm(rhs)
    step = torchode.Dopri5(term=term)
    control = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(step, control, max_steps=max_steps)
    t0 = torch.full((B,), sched.t_eps, device=device, dtype=dtype)
    t1 = torch.full((B,), sched.T, device=device, dtype=dtype)
    with torch.no_grad():
        sol = solver.solve(torchode.InitialValueProblem(y0=y0, t_start=t0, t_end=t1))
    status = sol.status.cpu().numpy()
    if (status != 0).any():
        i = int(np.flatnonzero(status)[0])
        raise RuntimeError(
            f"probability-flow ODE did not reach t = T for image {first_index + i} "
            f"(torchode status {int(status[i])}: step size collapsed or max_steps={max_steps} exceeded)"
        )
    yT = sol.ys[:, -1]
    xT = yT[:, :d].reshape(B, *prior.image_shape)
    acc = yT[:, d:].to(torch.float64)
    terminal_nll = -prior.terminal_log_prob(xT.to(torch.float64)).to(torch.float64)
    per_probe = (terminal_nll[:, None] - acc).cpu().numpy()  # P eq. 7, one estimate per probe
    q = per_probe.mean(1)
    stderr = per_probe.std(1, ddof=1) / math.sqrt(n_probes) if n_probes > 1 else np.full(B, np.nan)
    return PotentialResult(
        q=q,
        stderr=stderr,
        nfe=_per_sample_nfe(sol.stats),
        per_probe=per_probe,
        terminal_nll=terminal_nll.cpu().numpy(),
        wall_time_s=time.perf_counter() - t_start,
    )


#: new function evaluations per Dormand–Prince step, accepted or rejected (7 stages, first same as last)
_DOPRI5_EVALS_PER_STEP = 6


def _per_sample_nfe(stats: dict) -> np.ndarray:
    """Each image's own function evaluations: torchode evaluates the whole batch until its last solve
    ends and counts every evaluation for every image (``n_f_evals``, the same for all); an image's own
    solve took ``n_steps`` of them, the rest after its end. Independent of the batch it was solved in."""
    n_f = stats["n_f_evals"].cpu().numpy().astype(np.int64)
    steps = stats["n_steps"].cpu().numpy().astype(np.int64)
    return n_f - _DOPRI5_EVALS_PER_STEP * (steps.max(initial=0) - steps)


def potential_batched(
    prior: DiffusionPrior,
    images: torch.Tensor,
    settings: PotentialSettings | None = None,
    *,
    seed: int = 0,
    probe_keys=None,
    progress=None,
    device: str | torch.device = "cpu",
) -> PotentialResult:
    """:func:`potential` over many images in batches of ``settings.batch_size``; ``progress(done, total)``
    is called after each. Probes are keyed by ``probe_keys`` (default: the image's index)."""
    cfg = settings or PotentialSettings()
    keys = np.arange(len(images)) if probe_keys is None else np.asarray(probe_keys)
    parts = []
    for start in range(0, len(images), cfg.batch_size):
        stop = start + cfg.batch_size
        batch = images[start:stop].to(device)
        parts.append(potential(prior, batch, cfg, seed=seed, first_index=start, probe_keys=keys[start:stop]))
        if progress is not None:
            progress(min(stop, len(images)), len(images))
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return PotentialResult(
        q=cat("q"),
        stderr=cat("stderr"),
        nfe=cat("nfe"),
        per_probe=cat("per_probe"),
        terminal_nll=cat("terminal_nll"),
        wall_time_s=sum(p.wall_time_s for p in parts),
        ci95_halfwidth=cat("ci95_halfwidth"),
    )


def potential_function(
    prior: DiffusionPrior, settings: PotentialSettings | None = None, *, seed: int = 0, device="cpu"
):
    """x ↦ q(x) as a float64 tensor on x's device: exact where the prior has an exact potential,
    else by the engine (:func:`potential_batched`, probes keyed by the image's position)."""

    def q(x: torch.Tensor) -> torch.Tensor:
        if prior.has_exact_potential:
            return prior.potential(x).to(torch.float64)
        r = potential_batched(prior, x, settings, seed=seed, device=device)
        return torch.as_tensor(r.q, dtype=torch.float64, device=x.device)

    return q


def potential_reference(
    prior: DiffusionPrior,
    x: torch.Tensor,
    settings: PotentialSettings | None = None,
    *,
    seed: int = 0,
) -> PotentialResult:
    """The paper's released scheme, as a speed baseline: scipy RK45 per image and per probe.

    Each right-hand-side evaluation moves the state from numpy to torch and back,
    as score_sde's ``likelihood.py`` does.
    """
    from scipy.integrate import solve_ivp

    cfg = settings or PotentialSettings()
    n_probes, atol, rtol, dtype = cfg.n_probes, cfg.atol, cfg.rtol, cfg.dtype
    t_start = time.perf_counter()
    B, d = x.shape[0], prior.dim
    sched = prior.schedule
    probes = rademacher_probes(range(B), n_probes, d, seed).to(dtype)
    per_probe = np.empty((B, n_probes))
    terminal = np.empty(B)
    nfe = np.zeros(B, dtype=np.int64)
    for b in range(B):
        for p in range(n_probes):
            u = probes[p, b : b + 1].to(x.device)

            def rhs(t, y, u=u):
                y = torch.as_tensor(y, dtype=dtype, device=x.device)[None]
                tt = torch.full((1,), t, dtype=dtype, device=x.device)
                v, div = _velocity_and_divergence(prior, y[:, :d], tt, u[None])
                return torch.cat([v[0], div[0]]).cpu().numpy().astype(np.float64)

            y0 = np.concatenate([x[b].reshape(-1).cpu().double().numpy(), [0.0]])
            sol = solve_ivp(rhs, (sched.t_eps, sched.T), y0, rtol=rtol, atol=atol, method="RK45")
            xT = torch.as_tensor(sol.y[:d, -1]).reshape(1, *prior.image_shape)
            terminal[b] = -float(prior.terminal_log_prob(xT.to(torch.float64))[0])
            per_probe[b, p] = terminal[b] - sol.y[d, -1]
            nfe[b] += sol.nfev
    q = per_probe.mean(1)
    stderr = per_probe.std(1, ddof=1) / math.sqrt(n_probes) if n_probes > 1 else np.full(B, np.nan)
    return PotentialResult(q, stderr, nfe, per_probe, terminal, time.perf_counter() - t_start)
