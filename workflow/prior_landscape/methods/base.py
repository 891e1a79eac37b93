"""One interface for every blind-deblurring method of the benchmark.

A method is a function registered under a name::

    @method("levin-map-k")
    def levin_map_k(problem: Problem, context: Context, *, alpha=..., n_iter=...) -> Estimate:
        ...

It receives the blurry images, the noise level, the kernel size and a seed
(:class:`Problem`), and what the harness lends it (:class:`Context`: the image prior or
denoiser the configuration names, a device, a resumable-run option for long loops, and — for
reference methods only — the true kernel), and returns the sharp estimate and the kernel
estimate or None (:class:`Estimate`). Its cost — wall time, NFE (evaluations of the prior's
score or denoiser, counted by the harness), peak memory — is measured by :func:`run_method`,
the same way for every method. A method's hyper-parameters are keyword arguments, filled from
its entry in the configuration (``benchmark.methods``): adding a method is this function plus
that entry.

Reference methods (``reference=True``) see the true kernel: the blurry input (the floor) and
non-blind deconvolution with the true kernel (the ceiling, ``needs=("true_kernel",)``: not run on
real blur) are labelled as such in every table.
Stochastic methods (``stochastic=True``) are run with several seeds and reported as mean ±
spread.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from prior_landscape.runs import RunOptions

__all__ = ["Problem", "Context", "Estimate", "MethodSpec", "METHODS", "method", "run_method", "Cost", "CountingPrior"]


@dataclass
class Problem:
    """What a blind method is given: blurry images and what every protocol states."""

    y: torch.Tensor  # (B, C, H, W) blurry, noisy images in [0, 1]
    sigma_y: float  # the noise level of y
    kernel_size: int  # odd side of the kernel support to estimate
    seed: int = 0  # the method's randomness (stochastic methods)

    def __post_init__(self):
        if self.y.dim() != 4:
            raise ValueError(f"y must be (B, C, H, W), got {tuple(self.y.shape)}")
        if not (isinstance(self.kernel_size, int) and self.kernel_size >= 1 and self.kernel_size % 2 == 1):
            raise ValueError(f"kernel_size must be an odd positive integer, got {self.kernel_size!r}")
        if not self.sigma_y >= 0:
            raise ValueError(f"sigma_y must be ≥ 0, got {self.sigma_y}")


@dataclass
class Context:
    """What the harness lends a method: priors, a device, resumable runs, and (references only) the truth."""

    prior: object | None = None  # the image prior the configuration names (a DiffusionPrior), NFE-counted
    denoiser: Callable | None = None  # a denoiser (Algorithm 2, plug-and-play methods), NFE-counted
    device: str = "cpu"
    options: RunOptions | None = None  # state file and cadences for long loops (the resumable-run driver)
    true_kernel: torch.Tensor | None = None  # (B, k, k): reference methods only
    extra: dict = field(default_factory=dict)  # method-specific resources (kernel priors, networks)


@dataclass
class Estimate:
    x: torch.Tensor  # (B, C, H, W) the sharp estimate
    kernel: torch.Tensor | None  # (B, k, k) the kernel estimate, None for non-blind or kernel-free methods
    converged: bool | None = None  # whether the method's own criterion was met (None: no criterion)
    note: str = ""  # e.g. which criterion, or why it stopped


@dataclass
class Cost:
    wall_s: float
    nfe: int  # evaluations of the prior's score / ∇q or of the denoiser
    peak_memory_mb: float  # peak resident memory of the process (CPU) or allocated on the GPU


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[..., Estimate]
    reference: bool = False  # sees the true kernel; a floor or a ceiling, never "best blind method"
    stochastic: bool = False  # run with several seeds
    needs: tuple[str, ...] = ()  # "prior", "denoiser", "true_kernel", or keys of Context.extra
    description: str = ""

    @property
    def needs_true_kernel(self) -> bool:
        """A non-blind reference: it cannot run on real blur, whose kernel nobody knows."""
        return "true_kernel" in self.needs


#: every registered method, by name
METHODS: dict[str, MethodSpec] = {}


def method(name: str, *, reference: bool = False, stochastic: bool = False, needs: tuple[str, ...] = ()):
    """Register a benchmark method under ``name`` (see the module docstring)."""

    def register(fn):
        if name in METHODS:
            raise ValueError(f"a benchmark method named {name!r} is already registered ({METHODS[name].fn.__module__})")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        METHODS[name] = MethodSpec(name, fn, reference, stochastic, tuple(needs), doc)
        return fn

    return register


class CountingPrior:
    """A prior (or denoiser) seen through a counter: every score / ∇q / denoiser call adds the batch
    size to ``nfe``; everything else is the wrapped object's."""

    def __init__(self, inner):
        self.inner, self.nfe = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, x, sigma):
        self.nfe += x.shape[0]
        return self.inner.score(x, sigma)

    def grad_potential(self, x):
        self.nfe += x.shape[0]
        return self.inner.grad_potential(x)

    def __call__(self, x):
        self.nfe += x.shape[0]
        return self.inner(x)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


def _peak_memory_mb(device: str) -> float:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def run_method(name: str, problem: Problem, context: Context, hyper: dict | None = None) -> tuple[Estimate, Cost]:
    """Run a registered method with its hyper-parameters and measure its cost the same way for all.

    A blind method never sees the true kernel; a method needing a prior or denoiser the context
    lacks is an error naming both. Peak memory on the CPU is the process's peak resident size (the
    benchmark runs one method per job, so it is the method's)."""
    if name not in METHODS:
        raise KeyError(f"unknown benchmark method {name!r}; registered: {', '.join(sorted(METHODS))}")
    spec = METHODS[name]
    for need in spec.needs:
        have = getattr(context, need, None) if need in ("prior", "denoiser", "true_kernel") else context.extra.get(need)
        if have is None and need == "true_kernel":
            raise ValueError(f"method {name!r} needs the true kernel, which a dataset of real blur does not have")
        if have is None:
            raise ValueError(f"method {name!r} needs {need!r}, which the benchmark configuration does not provide")
    ctx = Context(
        prior=CountingPrior(context.prior) if context.prior is not None else None,
        denoiser=CountingPrior(context.denoiser) if context.denoiser is not None else None,
        device=context.device,
        options=context.options,
        true_kernel=context.true_kernel if spec.reference else None,
        extra=dict(context.extra),
    )
    if str(context.device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(context.device)
    t0 = time.perf_counter()
    est = spec.fn(problem, ctx, **(hyper or {}))
    wall = time.perf_counter() - t0
    nfe = sum(c.nfe for c in (ctx.prior, ctx.denoiser) if c is not None)
    if est.x.shape != problem.y.shape:
        raise ValueError(
            f"method {name!r} returned an image of shape {tuple(est.x.shape)} for y of {tuple(problem.y.shape)}"
        )
    return est, Cost(wall, nfe, _peak_memory_mb(context.device))
