"""An analytic diffusion prior: a Gaussian mixture with low-rank-plus-floor covariances.

    p_0 = Σ_k π_k N(μ_k, Σ_k),     Σ_k = U_k diag(s_k) U_kᵀ + φ I,

with U_k (d × r) orthonormal, s_k ≥ 0 and a floor φ > 0. Diffusing it by a VE
schedule only adds σ² I to every covariance, so p_σ = Σ_k π_k N(μ_k, Σ_k + σ² I)
has an exact log-density, score and Hessian at every noise level. It is the
oracle every estimator of the workflow (potential, critical points, Hessian
spectra) is tested against. Its intrinsic dimension near μ_k is r: the Hessian of
q there has r eigenvalues 1/(s + φ + σ²) and d − r eigenvalues 1/(φ + σ²).

With c = φ + σ², Woodbury gives (Σ_k + σ² I)⁻¹ = (I − U diag(s/(s+c)) Uᵀ)/c and
log det(Σ_k + σ² I) = Σ log(s + c) + (d − r) log c.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from prior_landscape.priors.base import DiffusionPrior, sigma_batch
from prior_landscape.priors.schedules import Schedule, schedule_from_config


class GaussianMixturePrior(DiffusionPrior):
    has_exact_potential = True

    def __init__(
        self,
        weights: torch.Tensor,
        means: torch.Tensor,
        bases: torch.Tensor,
        spectra: torch.Tensor,
        floor: float,
        image_shape: tuple[int, int, int],
        schedule: Schedule,
        name: str = "gmm",
        dtype: torch.dtype = torch.float64,
    ):
        K, d = means.shape
        if math.prod(image_shape) != d:
            raise ValueError(f"image_shape {image_shape} does not hold d = {d} pixels")
        if bases.shape[:2] != (K, d) or spectra.shape != (K, bases.shape[2]):
            raise ValueError("bases must be (K, d, r) and spectra (K, r)")
        if floor <= 0:
            raise ValueError(f"covariance floor must be > 0, got {floor}")
        self.weights = weights.to(dtype)
        self.means = means.to(dtype)
        self.bases = bases.to(dtype)
        self.spectra = spectra.to(dtype)
        self.floor = float(floor)
        self.image_shape = tuple(image_shape)
        self.schedule = schedule
        self.name = name
        self.dtype = dtype

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        crops: np.ndarray,
        image_shape: tuple[int, int, int],
        schedule: Schedule,
        n_components: int = 8,
        rank: int = 16,
        floor: float | None = None,
        seed: int = 0,
        name: str = "gmm",
    ) -> GaussianMixturePrior:
        """Fit by k-means clustering then a rank-r PCA per cluster.

        The floor φ is the mean residual variance (the average of the discarded
        eigenvalues over clusters) unless given.
        """
        from sklearn.cluster import KMeans

        X = np.asarray(crops, dtype=np.float64).reshape(len(crops), -1)
        n, d = X.shape
        if n < n_components * 2:
            raise ValueError(f"{n} crops are too few for {n_components} components")
        rank = min(rank, d)
        labels = KMeans(n_components, n_init=4, random_state=seed).fit_predict(X)
        weights, means, bases, tops, residuals = [], [], [], [], []
        for k in range(n_components):
            Xk = X[labels == k]
            mu = Xk.mean(0)
            cov = np.cov(Xk - mu, rowvar=False, bias=True) if len(Xk) > 1 else np.zeros((d, d))
            evals, evecs = np.linalg.eigh(cov)
            order = np.argsort(evals)[::-1]
            evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
            weights.append(len(Xk) / n)
            means.append(mu)
            bases.append(evecs[:, :rank])
            tops.append(evals[:rank])
            residuals.append(evals[rank:].mean() if rank < d else 0.0)
        phi = float(floor) if floor is not None else max(float(np.mean(residuals)), 1e-6)
        spectra = np.clip(np.stack(tops) - phi, 0.0, None)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        return cls(t(weights), t(means), t(bases), t(spectra), phi, image_shape, schedule, name)

    # --------------------------------------------------------- exact calculus
    def _terms(self, x: torch.Tensor, sigma: torch.Tensor | float):
        """Per-component pieces: residuals r, projections a = Uᵀr, c = φ + σ², log N."""
        xf = x.reshape(x.shape[0], -1).to(self.dtype)
        sig = sigma_batch(sigma, xf).to(self.dtype)
        c = self.floor + sig**2  # (B,)
        r = xf[:, None, :] - self.means[None]  # (B, K, d)
        a = torch.einsum("bkd,kdr->bkr", r, self.bases)  # (B, K, r)
        shrink = self.spectra[None] / (self.spectra[None] + c[:, None, None])  # (B, K, r)
        maha = (r.pow(2).sum(-1) - (shrink * a.pow(2)).sum(-1)) / c[:, None]
        d, rank = xf.shape[1], self.bases.shape[2]
        logdet = torch.log(self.spectra[None] + c[:, None, None]).sum(-1) + (d - rank) * torch.log(c)[:, None]
        log_n = -0.5 * (maha + logdet + d * math.log(2 * math.pi))
        log_joint = torch.log(self.weights)[None] + log_n  # (B, K)
        return xf, r, a, shrink, c, log_joint

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact log p_σ(x), shape (B,)."""
        *_, log_joint = self._terms(x, sigma)
        return torch.logsumexp(log_joint, dim=1)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """Exact q(x) = −log p_{t_ε}(x) in nats."""
        return -self.log_prob(x, self.sigma_eps)

    def _component_scores(self, r, a, shrink, c):
        # s_k = −(Σ_k + σ²I)⁻¹ r_k = −(r − U (shrink ⊙ a)) / c
        proj = torch.einsum("kdr,bkr->bkd", self.bases, shrink * a)
        return -(r - proj) / c[:, None, None]

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact ∇log p_σ(x) = Σ_k γ_k s_k with responsibilities γ_k."""
        xf, r, a, shrink, c, log_joint = self._terms(x, sigma)
        gamma = torch.softmax(log_joint, dim=1)
        s = self._component_scores(r, a, shrink, c)
        return (gamma[..., None] * s).sum(1).reshape(x.shape).to(x.dtype)

    def hessian_log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Exact ∇²log p_σ(x), shape (B, d, d).

        ∇² log p = Σ_k γ_k (−P_k + s_k s_kᵀ) − ḡ ḡᵀ, with P_k = (Σ_k + σ²I)⁻¹ and ḡ = Σ_k γ_k s_k.
        """
        xf, r, a, shrink, c, log_joint = self._terms(x, sigma)
        gamma = torch.softmax(log_joint, dim=1)
        s = self._component_scores(r, a, shrink, c)
        d = xf.shape[1]
        eye = torch.eye(d, dtype=self.dtype, device=xf.device)
        # P_k = (I − U diag(shrink) Uᵀ)/c
        low = torch.einsum("kdr,bkr,ker->bkde", self.bases, shrink, self.bases)
        P = (eye[None, None] - low) / c[:, None, None, None]
        g = (gamma[..., None] * s).sum(1)
        outer = torch.einsum("bkd,bke->bkde", s, s)
        H = (gamma[..., None, None] * (outer - P)).sum(1) - torch.einsum("bd,be->bde", g, g)
        return H

    def hessian_potential(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ∇²q(x) at t_ε, shape (B, d, d)."""
        return -self.hessian_log_prob(x, self.sigma_eps)

    def lipschitz_bound(self) -> float:
        """L = 1/(φ + σ_ε²): ∇²q = Σ_k γ_k (Σ_k + σ²I)⁻¹ − Cov_γ(s_k) ≼ I/(φ + σ_ε²), the covariance
        of the component scores being positive semi-definite."""
        return 1.0 / (self.floor + self.sigma_eps**2)

    def defining_values(self) -> dict:
        return {
            "weights": self.weights,
            "means": self.means,
            "bases": self.bases,
            "spectra": self.spectra,
            "floor": self.floor,
        }

    def terminal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p_T: the diffused mixture, not its Gaussian approximation."""
        return self.log_prob(x, float(self.schedule.sigma(self.schedule.T)))

    def use_terminal(self, kind: str) -> GaussianMixturePrior:
        """The mixture's p_T is exact whatever the configuration asks (the kind is only checked)."""
        from prior_landscape.priors.terminal import TERMINAL_DENSITIES

        if kind not in TERMINAL_DENSITIES:
            raise ValueError(
                f"{self.name}: unknown terminal density {kind!r}; choose one of {', '.join(TERMINAL_DENSITIES)}"
            )
        return self

    # ----------------------------------------------------------------- others
    def sample(self, n: int, sigma: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n images from p_σ."""
        g = generator
        k = torch.multinomial(self.weights, n, replacement=True, generator=g)
        rank = self.bases.shape[2]
        z_low = torch.randn(n, rank, generator=g, dtype=self.dtype)
        z_full = torch.randn(n, self.means.shape[1], generator=g, dtype=self.dtype)
        low = torch.einsum("ndr,nr->nd", self.bases[k], self.spectra[k].sqrt() * z_low)
        x = self.means[k] + low + math.sqrt(self.floor + sigma**2) * z_full
        return x.reshape(n, *self.image_shape)

    def num_parameters(self) -> int:
        return sum(t.numel() for t in (self.weights, self.means, self.bases, self.spectra)) + 1

    def to(self, device):
        for attr in ("weights", "means", "bases", "spectra"):
            setattr(self, attr, getattr(self, attr).to(device))
        return self

    def save(self, path: str | Path) -> None:
        from prior_landscape.io.artefacts import atomic_output

        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    def state(self) -> dict:
        """Plain tensors and values: what :meth:`save` writes and :meth:`from_state` reads."""
        return {
            "kind": "gaussian_mixture",
            "name": self.name,
            "weights": self.weights.cpu(),
            "means": self.means.cpu(),
            "bases": self.bases.cpu(),
            "spectra": self.spectra.cpu(),
            "floor": self.floor,
            "image_shape": list(self.image_shape),
            "schedule": self.schedule.to_dict(),
        }

    @classmethod
    def load(cls, path: str | Path) -> GaussianMixturePrior:
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), source=str(path))

    @classmethod
    def from_state(cls, state: dict, source: str = "the state") -> GaussianMixturePrior:
        """The prior from the dict :meth:`save` writes (``source`` names it in errors)."""
        if state.get("kind") != "gaussian_mixture":
            raise ValueError(f"{source} does not hold a Gaussian-mixture prior (kind={state.get('kind')!r})")
        return cls(
            state["weights"],
            state["means"],
            state["bases"],
            state["spectra"],
            state["floor"],
            tuple(state["image_shape"]),
            schedule_from_config(state["schedule"]),
            state["name"],
        )
