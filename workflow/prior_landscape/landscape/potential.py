"""The potential q(x) = −log p_{t_ε}(x) by the probability-flow ODE (P §2.1, eqs. 6–7).

Along the probability-flow ODE dx/dt = v(x, t) = −σ(t)σ'(t) ∇log p_t(x) (P eq. 6),
the instantaneous change of variables gives (P eq. 7)

    q(x_{t_ε}) = −log p_T(x_T) − ∫_{t_ε}^{T} ∇·v(x_t, t) dt,

and the divergence is estimated by Skilling–Hutchinson, ∇·v ≈ uᵀ J_v u with
Rademacher probes u, the product uᵀJ_v coming from one vector–Jacobian product.

``potential`` integrates a batch of images at once with per-sample adaptive
Dormand–Prince steps on x (scipy's RK45 tableau; torchode's step-size control), one trajectory per
image, and P divergence integrals on it — one per probe — formed on the accepted steps only: the
integrals do not feed back into x, so each step is taken with forward passes alone (the velocity,
no vector–Jacobian product), and once a step is accepted its integral ∫ uᵀJ_v u dt is added by
2-point Gauss–Legendre quadrature on the step's dense output (:data:`QUADRATURE`), each node
costing one forward pass and P backward passes, the nodes of all accepted images in one batch.
The spread of the P estimates gives a standard error and a 95 % confidence interval
(Student t with P − 1 degrees of freedom, see :class:`PotentialResult`). ``potential_reference``
is the paper's released scheme (scipy ``solve_ivp`` per image and per probe, a
host round-trip per evaluation), kept as the baseline of the speed benchmark.

The solver (:class:`_PerSampleDopri5`) is written here, not taken from torchode, which the
engine used before: torchode steps every image of a batch until the last one reaches T
(finished images ride along at a zero step, each costing a network evaluation), while an image
here leaves the batch when it is done, so a batch costs the sum of its images' evaluations, not
their maximum times the batch. Each image's steps and quadrature nodes depend on that image
alone, so q does not depend on which images share a batch: sweeps and descents can be split
into shards and batched at will.

The error norm runs over x only (d components). Previously the state was (x, P accumulators),
every stage carried its P products and the RMS norm ran over the d + P components (the
accumulators weighing P/(d + P) ≈ 1.5 % at d = 256); a stage's P backward passes cost about
four times its forward pass on a CPU (``convolution_backward`` ≈ 65 % of the time), so six
stages with products per step, rejected steps included, were most of the work. Measured on
2 CPU cores (1 torch thread, tolerance 1e-5, 4 probes; error: |per-probe estimate − the same
probe's float64 solve at tolerance 1e-8 to 1e-9|, mean / max in nats):

==========================  ==================================  ==================================
scheme                      demo score network, 8 images         analytic mixture, 16 images
==========================  ==================================  ==================================
coupled (previous engine)   5.0 s, NFE 115, error 0.07 / 0.27    0.59 s, NFE 156, error 0.16 / 1.07
x only, DP stage weights    3.2 s, NFE 102, error 0.16 / 0.47    0.35 s, NFE 148, error 0.50 / 3.55
x only, Gauss–Legendre 2    1.9 s, NFE 102, error 0.36 / 1.01    0.25 s, NFE 148, error 0.41 / 2.71
x only, Gauss–Legendre 3    2.3 s, NFE 102, error 0.61 / 1.43    0.30 s, NFE 148, error 0.24 / 2.25
==========================  ==================================  ==================================

(DP stage weights: the products at the accepted steps' stages with a nonzero 5th-order weight,
stages 0, 2, 3, 4, 5, recomputed there in one batch.) Controlling the steps on x alone takes
≈ 10 % fewer steps and leaves the accumulators' error uncontrolled; the mean error grows from
≈ 0.01–0.05 % to ≈ 0.05–0.15 % of |q| (|q| ≈ 680 and 290 nats), against a Monte-Carlo standard
error of 12–14 nats at P = 4: ≈ 3 % of one standard error on average, at most 20 %. The tests'
bound (3 SE + 1e-3·|q| against the mixture's exact q, tests/test_potential.py) holds, and
``test_divergence_quadrature_converges_and_stays_far_below_the_monte_carlo_error`` bounds the
error against a converged solve. Forward mode (``torch.func.jvp`` under ``vmap`` over the P
tangents, the primal once) is slower on the CPU: 158 ms against 70 ms for a forward pass and 4 backward
passes of 32 images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch

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
    batch_size: int = 16  # images per solve: speed only (config.SPEED_ONLY)

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
    nfe: np.ndarray  # (B,) evaluations of the velocity (forward passes) by each image's own solve
    # ``extra`` of potential(): n_divergence (B,), the image's divergence evaluations (a forward pass
    # and P backward passes each, at the quadrature nodes of its accepted steps)
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


def _divergences(v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor, batched: bool) -> torch.Tensor:
    """uᵀJ_v u for each probe u (probes: (P, B, d)) → (B, P), from vector–Jacobian products of v(x).

    ``batched``: the P products in one backward pass (``is_grads_batched``, a vmap over the
    cotangents); else one backward pass per probe, the graph retained in between. Both give the
    same numbers (tests/test_potential.py); which is faster depends on the network and device
    (:data:`BATCHED_VJP`)."""
    n_probes = probes.shape[0]
    if batched and n_probes > 1:
        (ujv,) = torch.autograd.grad(v, x, probes, is_grads_batched=True)
        return (ujv * probes).sum(2).T
    out = torch.empty(x.shape[0], n_probes, dtype=x.dtype, device=x.device)
    for p in range(n_probes):
        (ujv,) = torch.autograd.grad(v, x, probes[p], retain_graph=p < n_probes - 1)
        out[:, p] = (ujv * probes[p]).sum(1)
    return out


#: one backward pass for the P probes (True), P passes (False), or None: batched on a GPU, P passes
#: on the CPU. The products are what the engine spends its time on: on 2 CPU cores a forward pass of
#: the demo score network over 32 images takes 14 ms and each probe's backward pass as much again or
#: more (``convolution_backward``, ≈ 65 % of the time), so the engine forms them only at the
#: quadrature nodes of accepted steps (:data:`QUADRATURE`), N·P per accepted step, batched over the
#: images' nodes (32 rows for 16 images), instead of 6 stages' worth at every step. There, a forward
#: pass with 4 backward passes takes 70 ms, with one batched pass 87 ms (vmap turns a convolution's
#: backward into a slower batched kernel on the CPU), forward mode (jvp under vmap) 158 ms. On a GPU
#: the batched pass saves P − 1 rounds of kernel launches; the GPU check (benchmarks/gpu_check.py)
#: times both there.
BATCHED_VJP: bool | None = None


def _velocity(prior: DiffusionPrior, y: torch.Tensor, sigma: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """v = −σσ′ ∇log p_σ(y) of the probability-flow ODE (P eq. 6) on flattened images y (B, d)."""
    return -coef[:, None] * prior.score(y.view(y.shape[0], *prior.image_shape), sigma).reshape(y.shape[0], -1)


def _velocity_and_divergence(
    prior: DiffusionPrior,
    x: torch.Tensor,
    t: torch.Tensor,
    probes: torch.Tensor,
    *,
    batched: bool | None = None,
    sigma: torch.Tensor | None = None,
    coef: torch.Tensor | None = None,
):
    """v(x, t) = −σσ' ∇log p_σ(x) and one Hutchinson divergence uᵀJ_v u per probe, shape (B, P).

    ``sigma`` and ``coef`` = σσ' may be given (the solver computes them once per step)."""
    sched = prior.schedule
    if sigma is None:
        sigma = sched.sigma(t).to(x.dtype)
        coef = (sched.sigma(t) * sched.sigma_dot(t)).to(x.dtype)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = _velocity(prior, x, sigma, coef)
        if batched is None:
            batched = BATCHED_VJP if BATCHED_VJP is not None else x.device.type == "cuda"
        div = _divergences(v, x, probes, batched)
    return v.detach(), div.detach()


# Dormand–Prince 5(4) (scipy's RK45, torchode's Dopri5): nodes, stages, and the weights of the
# error estimate (5th − embedded 4th order). First same as last: the 7th stage is f at the new
# point, and the new point is the 6th stage's argument.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B_LOW = (1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60)
_DP_E = tuple(b - lo for b, lo in zip((*_DP_A[6], 0.0), _DP_B_LOW))
_SAFETY, _FACTOR_MIN, _FACTOR_MAX, _ORDER = 0.9, 0.2, 10.0, 5


def _rms(z: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(z / math.sqrt(z.shape[1]), ord=2, dim=1)


#: Dense output of Dormand–Prince (scipy's RK45.P): y(t₀ + θh) = y₀ + h Σᵢ kᵢ Σₘ P[i, m] θ^{m+1}, 4th order.
_DP_DENSE = (
    (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
    (0.0, 0.0, 0.0, 0.0),
    (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
    (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
    (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
    (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
    (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
)

#: how an accepted step's divergence integrals are formed: "gaussN", N-point Gauss–Legendre on the
#: step's dense output (N forward passes and N·P backward passes per accepted step, against six
#: forward and six times P backward passes per step, rejected ones included, previously);
#: 2 points: the speed and accuracy measured in the module docstring.
QUADRATURE = "gauss2"


def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes θ ∈ (0, 1) and weights (summing to 1) of the n-point Gauss–Legendre rule on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return tuple(float(v) for v in (x + 1) / 2), tuple(float(v) for v in w / 2)


class _PerSampleDopri5:
    """Dormand–Prince with one adaptive step size per image, on the images still running only.

    The step-size control is torchode's (Hairer's initial step, RMS error norm with
    atol + rtol·max(|y₀|, |y₁|), integral controller with safety 0.9 and factors [0.2, 10]), so the
    solution of each image is the one it gets when solved alone, up to rounding: an image that
    has reached T leaves the batch instead of being carried along at a zero step, and each image
    counts its own evaluations. ``f(y, sigma, coef, rows)`` evaluates the velocity of the rows
    ``rows`` of the batch (forward only).

    The divergence integrals ride on the accepted steps only: ``g(x, sigma, coef, rows)`` gives the P
    divergence estimates (n, P) at points x of the images ``rows``, and after each step the accepted
    rows add h Σⱼ wⱼ g(x(t₀ + θⱼh)) to their ``n_acc`` accumulators, x(t₀ + θⱼh) from the step's
    4th-order dense output (scipy's RK45 interpolant) and (θⱼ, wⱼ) the N-point Gauss–Legendre rule
    (:data:`QUADRATURE`). The accumulators do not feed back into x and are not in the error norm:
    the step sizes are controlled on x alone, so rejected steps and the stages cost forward passes only.
    """

    def __init__(self, f, schedule, atol: float, rtol: float, max_steps: int, first_index: int, g=None, n_acc=0):
        self.f, self.sched, self.max_steps, self.first_index = f, schedule, max_steps, first_index
        self.g, self.n_acc = g, n_acc
        self.atol, self.rtol = atol, rtol
        self._coeffs = self._quad = None

    def _sigma_coef(self, t: torch.Tensor, dtype):
        sigma64 = self.sched.sigma(t)
        return sigma64.to(dtype), (sigma64 * self.sched.sigma_dot(t)).to(dtype)

    def _eval(self, t: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return self.f(y, *self._sigma_coef(t, y.dtype), rows)

    def initial_step(self, t0: torch.Tensor, y0: torch.Tensor, t1: torch.Tensor):
        """Hairer's initial step (as torchode: tolerances on the norms); returns (dt, f(t0, y0))."""
        self._tableau(y0)
        f0 = self._eval(t0, y0, None)
        inv_scale = torch.reciprocal(torch.add(self._atol, y0.abs(), alpha=self._rtol))
        d0, d1 = _rms(y0 * inv_scale), _rms(f0 * inv_scale)
        small = torch.tensor(1e-6, dtype=d0.dtype, device=d0.device)
        dt0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), small, 0.01 * d0 / d1)
        dt0 = torch.minimum(dt0, (t1 - t0).abs().to(y0.dtype))
        f1 = self._eval(t0 + dt0.to(t0.dtype), torch.addcmul(y0, dt0[:, None], f0), None)
        self._check(d1 + _rms(f1 * inv_scale), t0, torch.arange(len(t0)))
        d2 = torch.where(dt0 == 0, torch.inf, _rms((f1 - f0) * inv_scale) / dt0)
        maxd = torch.maximum(d1, d2)
        dt1 = torch.where(maxd <= 1e-15, torch.maximum(small, dt0 * 1e-3), (0.01 / maxd) ** (1.0 / _ORDER))
        return torch.minimum(100 * dt0, dt1).to(t0.dtype), f0

    def step(self, t0, y0, dt, k0, rows):
        """One Dormand–Prince step of the given rows: (y1, error ratio, stages k (7, B, d)).

        The stage sums are torchode's contractions: in float32 the error estimate is a difference of
        nearly equal sums, so another summation order would change the step sizes (and q by the
        solver's tolerance, not by rounding)."""
        a, e = self._tableau(y0)
        h = dt.to(y0.dtype)
        nodes = torch.addcmul(t0, self._c.to(t0.dtype)[:, None], dt)
        k = y0.new_empty((7, *y0.shape))
        k[0] = k0
        yi = y0
        for i in range(1, 7):
            yi = torch.addcmul(y0, h[:, None], torch.einsum("j, jbf -> bf", a[i, :i], k[:i]))
            k[i] = self._eval(nodes[i], yi, rows)
        err = torch.einsum("b, s, sbf -> bf", h, e, k)
        bound = torch.add(self._atol, torch.maximum(y0.abs(), yi.abs()), alpha=self._rtol)
        ratio = torch.maximum(_rms(err.abs() / bound), self._tiny)
        return yi, ratio, k

    def _quadrature(self, y0: torch.Tensor):
        """The nodes θⱼ and weights wⱼ of :data:`QUADRATURE`, and the dense output's stage weights at the
        nodes (N, 7), computed once per dtype and device (:meth:`_increment` runs at every accepted step)."""
        if self._quad is None or self._quad[1].dtype != y0.dtype or self._quad[1].device != y0.device:
            theta, w = _gauss_legendre(int(QUADRATURE.removeprefix("gauss")))
            q = torch.tensor(
                [[sum(pm * th ** (m + 1) for m, pm in enumerate(row)) for row in _DP_DENSE] for th in theta],
                dtype=y0.dtype,
                device=y0.device,
            )
            self._quad = (theta, q, torch.tensor(w, dtype=y0.dtype, device=y0.device))
        return self._quad

    def _increment(self, t0, y0, h, k, rows):
        """h Σⱼ wⱼ g(x(t₀ + θⱼh)) for accepted rows (t0, y0, h, k already restricted to them)."""
        theta, q, wt = self._quadrature(y0)
        hy = h.to(y0.dtype)[:, None]
        pts = [torch.addcmul(y0, hy, torch.einsum("s, sbf -> bf", q[j], k)) for j in range(len(theta))]
        n = len(pts)
        tj = torch.cat([t0 + th * h for th in theta])
        sigma, coef = self._sigma_coef(tj, y0.dtype)
        div = self.g(torch.cat(pts), sigma, coef, rows.repeat(n))
        return h.to(div.dtype)[:, None] * torch.einsum("j, jbp -> bp", wt.to(div.dtype), div.view(n, len(rows), -1))

    def _tableau(self, y0: torch.Tensor):
        if self._coeffs is None or self._coeffs[0].dtype != y0.dtype:
            a = torch.tensor([[*row, *([0.0] * (7 - len(row)))] for row in _DP_A], dtype=torch.float64)
            e = torch.tensor(_DP_E, dtype=torch.float64)
            self._coeffs = (a.to(y0.device, y0.dtype), e.to(y0.device, y0.dtype))
            self._atol = torch.tensor(self.atol, device=y0.device)  # float32, as torchode's buffers
            self._rtol = torch.tensor(self.rtol, device=y0.device)
            self._tiny = torch.tensor(1e-38, dtype=y0.dtype, device=y0.device)
            self._c = torch.tensor(_DP_C, dtype=torch.float64, device=y0.device)
        return self._coeffs

    def solve(self, y0: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor):
        """y(t1) for every row of y0; returns (y, accumulators (B, n_acc), evaluations of f per row,
        evaluations of g per row)."""
        B = y0.shape[0]
        dt, fsal = self.initial_step(t0, y0, t1)
        dt = torch.minimum(dt, t1 - t0)
        t, y = t0.clone(), y0.clone()
        acc = y0.new_zeros((B, self.n_acc))
        nfe = torch.full((B,), 2, dtype=torch.long)
        ndiv = torch.zeros(B, dtype=torch.long)
        steps = torch.zeros(B, dtype=torch.long)
        running = torch.ones(B, dtype=torch.bool)
        while True:
            rows = running.nonzero()[:, 0]
            if len(rows) == 0:
                return y, acc, nfe, ndiv
            full = len(rows) == B
            sel = (lambda z: z) if full else (lambda z, r=rows: z[r.to(z.device)])
            t_r, y_r, dt_r = sel(t), sel(y), sel(dt)
            y1, ratio, k = self.step(t_r, y_r, dt_r, sel(fsal), None if full else rows)
            self._check(ratio, t_r, rows)
            accept = ratio < 1.0
            if self.g is not None and bool(accept.any()):
                ia = accept.nonzero()[:, 0]
                inc = self._increment(t_r[ia], y_r[ia], dt_r[ia], k[:, ia], rows[ia.cpu()])
                acc.index_add_(0, rows[ia.cpu()].to(acc.device), inc)
                ndiv[rows[ia.cpu()]] += len(self._quadrature(y_r)[0])
            t_new = torch.where(accept, t_r + dt_r, t_r)
            dt_next = dt_r * torch.clamp(_SAFETY * ratio ** (-1.0 / _ORDER), _FACTOR_MIN, _FACTOR_MAX).to(dt.dtype)
            still = (t_new - sel(t1)) < 0
            dt_new = torch.minimum(torch.where(still, dt_next, dt_r), sel(t1) - t_new)
            y_new = torch.where(accept[:, None], y1, y_r)
            fsal_new = torch.where(accept[:, None], k[6], sel(fsal))
            self._merge(rows, full, (t, t_new), (dt, dt_new), (y, y_new), (fsal, fsal_new))
            nfe[rows] += 6
            steps[rows] += 1
            running[rows] = still.cpu()
            self._check_steps(steps, running)

    @staticmethod
    def _merge(rows, full, *pairs):
        for dest, new in pairs:
            if full:
                dest.copy_(new)
            else:
                dest.index_copy_(0, rows.to(dest.device), new)

    def _check(self, ratio: torch.Tensor, t: torch.Tensor, rows: torch.Tensor) -> None:
        bad = ~torch.isfinite(ratio)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            image = self.first_index + int(rows[i])
            raise NonFiniteODEError(
                f"probability-flow ODE: non-finite value for image {image} at t = {float(t[i]):.6g} "
                f"(sigma = {float(self.sched.sigma(t[i])):.6g}, within the step from there); "
                f"{int(bad.sum())} image(s) of the batch affected. "
                "Check the input image range and the prior's checkpoint."
            )

    def _check_steps(self, steps: torch.Tensor, running: torch.Tensor) -> None:
        over = running & (steps >= self.max_steps)
        if bool(over.any()):
            i = int(over.nonzero()[0, 0])
            raise RuntimeError(
                f"probability-flow ODE did not reach t = T for image {self.first_index + i} "
                f"(max_steps={self.max_steps} exceeded: step size collapsed or the tolerance is too tight)"
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
    y0 = x.reshape(B, d).to(dtype)

    # rows: the images of the batch being integrated (None: all); a prior that binds one class label
    # per image (pooled classes, priors/base.py) follows them with for_rows
    def velocity(y: torch.Tensor, sigma: torch.Tensor, coef: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return _velocity(prior if rows is None else prior.for_rows(rows), y, sigma, coef)

    def divergence(y: torch.Tensor, sigma: torch.Tensor, coef: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        p = prior.for_rows(rows)
        return _velocity_and_divergence(p, y, None, probes[:, rows.to(device)], sigma=sigma, coef=coef)[1]

    t0 = torch.full((B,), sched.t_eps, device=device, dtype=dtype)
    t1 = torch.full((B,), sched.T, device=device, dtype=dtype)
    solver = _PerSampleDopri5(velocity, sched, atol, rtol, max_steps, first_index, g=divergence, n_acc=n_probes)
    with torch.no_grad():
        yT, acc, nfe, ndiv = solver.solve(y0, t0, t1)
    xT = yT[:, :d].reshape(B, *prior.image_shape)
    acc = acc.to(torch.float64)
    terminal_nll = -prior.terminal_log_prob(xT.to(torch.float64)).to(torch.float64)
    per_probe = (terminal_nll[:, None] - acc).cpu().numpy()  # P eq. 7, one estimate per probe
    q = per_probe.mean(1)
    stderr = per_probe.std(1, ddof=1) / math.sqrt(n_probes) if n_probes > 1 else np.full(B, np.nan)
    return PotentialResult(
        q=q,
        stderr=stderr,
        nfe=nfe.numpy().astype(np.int64),
        per_probe=per_probe,
        terminal_nll=terminal_nll.cpu().numpy(),
        wall_time_s=time.perf_counter() - t_start,
        extra={"n_divergence": ndiv.numpy().astype(np.int64)},
    )


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
        batch, of_batch = images[start:stop].to(device), prior.for_rows(slice(start, stop))  # its class labels
        parts.append(potential(of_batch, batch, cfg, seed=seed, first_index=start, probe_keys=keys[start:stop]))
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
    else by the engine (:func:`potential_batched`, probes keyed by ``probe_keys``, one integer per
    image, default the image's position)."""

    def q(x: torch.Tensor, probe_keys=None) -> torch.Tensor:
        if prior.has_exact_potential:
            return prior.potential(x).to(torch.float64)
        r = potential_batched(prior, x, settings, seed=seed, probe_keys=probe_keys, device=device)
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
