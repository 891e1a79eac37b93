"""The prior interface every potential, descent and deblurring routine uses.

A prior is a diffusion model seen through four things (P §2.1):

* ``score(x, sigma)``: ∇log p_σ(x) at any noise level of its schedule;
* ``grad_potential(x)``: ∇q(x) = −score(x, σ(t_ε)), the "action of the network"
  the paper differentiates and descends;
* ``schedule``: σ(t), σ'(t), t_ε and T;
* ``terminal_log_prob(x)``: log p_T, the density at the terminal time that closes
  the change-of-variables formula (P eq. 7): P's N(0, σ(T)² I) (``terminal_density =
  "isotropic"``) or the data Gaussian N(μ, C + σ(T)² I) from the data statistics
  stored with a network prior (``"data_gaussian"``, :mod:`prior_landscape.priors.terminal`;
  :meth:`DiffusionPrior.use_terminal` chooses);

and declares what else it offers, instead of being probed for it:

* ``fingerprint()``: a digest of everything that defines it (class, name, shape, schedule,
  every tensor and network weight, a conditional model's class label, the terminal density
  and its statistics unless isotropic; a wrapper delegates to what it wraps), so a resumed
  job can tell its own prior from another one under the same name (:mod:`prior_landscape.runs`);
* ``has_exact_potential``: whether ``potential(x)`` (and ``hessian_potential(x)``) give q
  exactly (the analytic mixture) — otherwise q comes from the probability-flow engine;
* ``lipschitz_bound()``: a bound L on the Lipschitz constant of ∇q over all images, or
  None when none is known (networks);
* ``pooled_labels``: the class labels a class-conditional network pools (P's imagenet64 pools
  classes 0–9), or None. Such a prior has a density per class, so it is evaluated with one
  label per image: ``with_labels(labels)`` binds them (the batch is then those images),
  ``for_rows(rows)`` is the prior of a sub-batch (the potential engine drops finished images),
  ``for_class(c)`` one class. For every other prior these are the identity (labels None).

Images are tensors of shape (B, C, H, W); ``sigma`` is a tensor of shape (B,)
(or a scalar, broadcast over the batch).
"""

from __future__ import annotations

import abc
import math

import torch

from prior_landscape.priors import terminal as _terminal
from prior_landscape.priors.schedules import Schedule
from prior_landscape.runs import digest


class DiffusionPrior(abc.ABC):
    """Abstract diffusion prior: subclasses implement ``score``, ``num_parameters`` and
    ``defining_values`` and declare their capabilities (module docstring)."""

    name: str
    image_shape: tuple[int, int, int]
    schedule: Schedule
    #: ``potential(x)`` and ``hessian_potential(x)`` are exact (no ODE, no Monte Carlo)
    has_exact_potential: bool = False
    #: p_T of :meth:`terminal_log_prob`: "isotropic" (P's N(0, σ_T² I)) or "data_gaussian"
    terminal_density: str = "isotropic"
    #: mean, variance (and covariance for small d) of the data, prior scale ({"mean", "var", "n", "cov"}), or None
    data_statistics: dict | None = None
    #: the class labels a class-conditional prior pools, evaluated with one per image (module docstring), or None
    pooled_labels: tuple[int, ...] | None = None

    @abc.abstractmethod
    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """∇_x log p_σ(x) for a batch x of shape (B, C, H, W)."""

    @abc.abstractmethod
    def num_parameters(self) -> int:
        """Number of scalar parameters of the model (P Table 1)."""

    @abc.abstractmethod
    def defining_values(self) -> dict:
        """Everything besides class, name, shape and schedule that defines the prior's density
        (tensors, networks, a class label, a wrapped prior): what :meth:`fingerprint` digests."""

    def fingerprint(self) -> str:
        """A digest of the prior: class, name, image shape, schedule and :meth:`defining_values`."""
        cls = f"{type(self).__module__}.{type(self).__qualname__}"
        parts = [cls, self.name, tuple(self.image_shape), self.schedule.to_dict(), self.defining_values()]
        if self.terminal_density != "isotropic":  # P's p_T leaves the fingerprints of before unchanged
            stats = self.data_statistics
            parts.append(
                {"terminal": self.terminal_density, **{k: stats[k] for k in ("mean", "var", "cov") if k in stats}}
            )
        return digest(*parts)

    def _set_data_statistics(self, stats: dict | None, source: str = "the prior") -> None:
        """Store the data statistics (checked) and make the data Gaussian p_T when there are any."""
        self.data_statistics = _terminal.check_statistics(stats, source)
        self.terminal_density = "isotropic" if self.data_statistics is None else _terminal.DEFAULT_TERMINAL

    def use_terminal(self, kind: str) -> DiffusionPrior:
        """Choose p_T (a prior config's ``terminal`` key): "isotropic", P's N(0, σ_T² I), or
        "data_gaussian", N(μ, C + σ_T² I) from the stored data statistics — refused, naming
        the prior, when it has none (a prior saved before they were stored: fit, train or import
        it again, or choose "isotropic"). Returns self."""
        if kind not in _terminal.TERMINAL_DENSITIES:
            raise ValueError(
                f"{self.name}: unknown terminal density {kind!r}; "
                f"choose one of {', '.join(_terminal.TERMINAL_DENSITIES)}"
            )
        if kind == "data_gaussian" and self.data_statistics is None:
            raise ValueError(
                f"prior {self.name!r} stores no data statistics (saved before they were stored, or never "
                "given any), so its terminal density cannot be the data Gaussian: fit, train or import it again "
                "(delete its model.pt), or set its config's terminal: isotropic (P's N(0, σ_T² I))"
            )
        self.terminal_density = kind
        return self

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """Exact q(x) per image, for priors with ``has_exact_potential``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no exact potential: use prior_landscape.landscape.potential"
        )

    def hessian_potential(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ∇²q(x), shape (B, d, d), for priors with ``has_exact_potential``."""
        raise NotImplementedError(f"{type(self).__name__} has no exact Hessian: use prior_landscape.landscape.hessian")

    def lipschitz_bound(self) -> float | None:
        """L with ‖∇q(x) − ∇q(x')‖ ≤ L‖x − x'‖ for all images, or None when no bound is known."""
        return None

    def at_shape(self, image_shape: tuple[int, int, int]) -> DiffusionPrior:
        """The same prior on images of another shape, where it has one (convolutional networks, patch
        priors); priors of one size only (the analytic mixture) refuse, naming both shapes."""
        if tuple(image_shape) == tuple(self.image_shape):
            return self
        raise ValueError(
            f"{type(self).__name__} {self.name!r} models images of shape {tuple(self.image_shape)} "
            f"only, not {tuple(image_shape)}"
        )

    # ------------------------------------------------- class labels (priors that pool classes)
    def with_labels(self, labels) -> DiffusionPrior:
        """The prior a batch is evaluated with: one that pools classes (``pooled_labels``) bound to
        one class label per image of the batch; any other prior is itself, and takes none."""
        if labels is None:
            return self
        raise ValueError(f"prior {self.name!r} does not pool classes: it takes no class labels (got {len(labels)})")

    def for_rows(self, rows) -> DiffusionPrior:
        """The prior of the rows ``rows`` (indices or a slice) of the batch it is bound to: itself
        unless it binds one class label per image (:meth:`with_labels`)."""
        return self

    def for_class(self, label: int) -> DiffusionPrior:
        """The density of one class of a prior that pools classes (any batch size)."""
        raise ValueError(f"prior {self.name!r} does not pool classes (asked for class {label})")

    @property
    def dim(self) -> int:
        return math.prod(self.image_shape)

    @property
    def sigma_eps(self) -> float:
        return float(self.schedule.sigma(self.schedule.t_eps))

    def grad_potential(self, x: torch.Tensor) -> torch.Tensor:
        """∇q(x) with q = −log p_{t_ε} (P §2.1)."""
        return -self.score(x, self.sigma_eps)

    def terminal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_T(x) per image, float64 (P eq. 7's last term): p_T ≈ N(0, σ(T)² I) as in score_sde
        and P ("isotropic"), or N(μ, C + σ(T)² I) from the data statistics ("data_gaussian")."""
        sigma_T = float(self.schedule.sigma(self.schedule.T))
        stats = self.data_statistics if self.terminal_density == "data_gaussian" else None
        return _terminal.terminal_log_prob(x, sigma_T, stats)

    def to(self, device: torch.device | str) -> DiffusionPrior:
        """Move the prior's tensors to ``device`` (in place); returns self."""
        return self


class NetworkPrior(DiffusionPrior):
    """A prior computed by a neural network ``self.net``: kept in eval mode with
    ``requires_grad`` off on its weights (gradients flow to the input only);
    ``to`` takes a device or a dtype (``prior.to(torch.float64)`` for Hessians)."""

    net: torch.nn.Module

    def _setup(self, net: torch.nn.Module) -> None:
        self.net = net.eval()
        self.net.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def defining_values(self) -> dict:
        """The network: every weight and buffer (subclasses add what the weights do not hold)."""
        return {"net": self.net}

    def to(self, device_or_dtype) -> NetworkPrior:
        """Move to a device and/or dtype (``prior.to("cuda")``, ``prior.to(torch.float64)``)."""
        self.net.to(device_or_dtype)
        return self


def sigma_batch(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a noise level to shape (B,) on x's device and dtype."""
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or of shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma
