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

:func:`descent_step` is that update, :func:`descend` runs it on a batch of images at once
through the resumable-run driver (:mod:`prior_landscape.runs`). Every step size here is η
in P's convention (:func:`choose_eta`). Evaluating q needs a probability-flow ODE
(:mod:`prior_landscape.landscape.potential`), far too costly to do along the way, so the
trajectory records ‖∇q‖ per image every ``record_every`` steps and q only where the prior
has an exact potential (the analytic mixture); for a network q is computed at a few points
afterwards with the potential engine (:func:`descend_in_segments`).

Step size
---------
A fixed step s on ∇q decreases q monotonically when s ≤ 1/L, L the Lipschitz constant of
∇q (largest Hessian eigenvalue), and diverges along any direction whose curvature exceeds
2/s. For the analytic :class:`GaussianMixturePrior`,

    ∇²q = Σ_k γ_k (Σ_k + σ²I)⁻¹ − Cov_γ(s_k) ≼ I / (φ + σ_ε²)

(the covariance of the component scores is positive semi-definite), so
L ≤ 1/(φ + σ_ε²) everywhere (``prior.lipschitz_bound()``) and the step s = 1/L = φ + σ_ε²,
η = 1 + φ/σ_ε² in P's units, decreases q at every iteration (``choose_eta(…, "auto")``). P's η = 0.02 is far inside that
bound: on the mixture it converges slowly toward the component means, its only critical
points; on a score network it stops within a few percent of natural starts (P Fig. 3). A
divergence is caught: as soon as ∇q (or q) of an image becomes NaN or infinite,
:class:`FloatingPointError` names the image and the step and asks for a smaller one.

Momentum
--------
With a momentum β > 0 the step is the heavy-ball update x ← x − s∇q(x) + β(x − x_prev) (the
scheme of P eq. 15); the posterior profiles reach their critical points x̄ this way.

Resuming
--------
:func:`descend` runs through :func:`prior_landscape.runs.drive`: with ``options.state_path``
the state is saved every ``checkpoint_every`` steps, fingerprinted by the start images, η,
β and the prior's own fingerprint (every weight); a longer or killed run resumes from it,
bit-for-bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from prior_landscape.priors.base import DiffusionPrior
from prior_landscape.runs import RunOptions, digest, drive

__all__ = [
    "DescentResult",
    "descent_step",
    "descend",
    "choose_eta",
    "largest_curvature",
    "lipschitz_estimate",
    "white_noise_starts",
    "DescentStarts",
    "descent_starts",
    "descend_in_segments",
    "critical_point_tables",
]


@dataclass
class DescentResult:
    """Outcome of :func:`descend` on a batch of B images."""

    start: torch.Tensor  # (B, C, H, W) the start images x
    end: torch.Tensor  # (B, C, H, W) the end points x̄ (near-critical points)
    trajectory: pd.DataFrame  # image, step, grad_norm[, q]: every record_every steps and the last
    grad_norm_start: np.ndarray  # (B,) ‖∇q(x)‖
    final_grad_norm: np.ndarray  # (B,) ‖∇q(x̄)‖
    relative_distance: np.ndarray  # (B,) ‖x − x̄‖ / ‖x̄‖ (P Fig. 3)
    eta: float  # the step in P's convention
    n_steps: int
    resumed_from: int = 0  # step index the run resumed from (0: started afresh)
    wall_time_s: float = 0.0  # seconds spent in this call
    extra: dict = field(default_factory=dict)
    image_ids: np.ndarray | None = None  # (B,) the images' numbers (default 0, 1, …; a shard's: its units)

    def summary(self, q_start=None, q_end=None) -> pd.DataFrame:
        """One row per image: relative distance, ‖∇q‖ at both ends and q at both ends.

        q comes from ``q_start`` / ``q_end`` when given (e.g. potential-engine values for a
        network prior), else from the recorded trajectory (exact priors), else NaN.
        """
        B = len(self.relative_distance)
        ids = np.arange(B) if self.image_ids is None else np.asarray(self.image_ids)
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
                "image": ids,
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


# ------------------------------------------------------------------ the step
def descent_step(
    x: torch.Tensor,
    grad_q: torch.Tensor,
    eta: float,
    sigma_eps: float,
    momentum: float = 0.0,
    x_prev: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of P's descent on q (P §2.2; its code steps along the scaled score σ_ε² ∇q):

    x ← x − η σ_ε² ∇q(x)  =  (1 − η) x + η D_σε(x)          (D the prior's Tweedie denoiser)
      + β (x − x_prev)                                    (heavy ball, as P eq. 15, when β > 0)
    """
    s = eta * sigma_eps**2  # the step on ∇q itself
    if momentum:
        return x - s * grad_q + momentum * (x - x_prev)
    return x - s * grad_q


def _divergence_message(prior, image: int, k: int, eta: float, last_norm: float | None) -> str:
    bound = prior.lipschitz_bound()
    hint = "lower η (e.g. by a factor 10) until the recorded ‖∇q‖ decreases"
    if bound is not None:
        hint = f"any η ≤ {1.0 / (bound * prior.sigma_eps**2):.4g} is safe for this prior (choose_eta 'auto')"
    seen = f"; last recorded ‖∇q‖ = {last_norm:.3g}" if last_norm is not None else ""
    return (
        f"gradient descent on q diverged: ‖∇q‖ or q is not finite for image {image} at step {k} "
        f"(η = {eta:g}){seen}. The step exceeds 2/λ_max of the Hessian of q: {hint}."
    )


class _Descent:
    """P's descent as a :class:`prior_landscape.runs.Loop` (state: x and, with momentum, x_prev)."""

    def __init__(self, prior: DiffusionPrior, x0: torch.Tensor, eta: float, momentum: float, ids: np.ndarray):
        self.prior, self.eta, self.momentum, self.ids = prior, eta, momentum, ids
        self.x, self.x_prev = x0.clone(), x0.clone()
        self._grad: tuple[int, torch.Tensor] | None = None  # ∇q at the recorded iteration, reused by its step
        self.last_norm: float | None = None

    def _grad_q(self, k: int) -> torch.Tensor:
        if self._grad is not None and self._grad[0] == k:
            return self._grad[1]
        g = self.prior.grad_potential(self.x).detach()
        bad = ~(torch.isfinite(g).flatten(1).all(1) & torch.isfinite(self.x).flatten(1).all(1))
        if bad.any():
            raise FloatingPointError(
                _divergence_message(self.prior, int(self.ids[int(bad.nonzero()[0, 0])]), k, self.eta, self.last_norm)
            )
        self._grad = (k, g)
        return g

    def record(self, k: int) -> dict:
        norm = self._grad_q(k).flatten(1).to(torch.float64).norm(dim=1).cpu()
        rec = {"image": torch.as_tensor(self.ids), "grad_norm": norm}
        if self.prior.has_exact_potential:
            q = self.prior.potential(self.x).detach().reshape(-1).to("cpu", torch.float64)
            if not torch.isfinite(q).all():
                raise FloatingPointError(
                    _divergence_message(
                        self.prior,
                        int(self.ids[int((~torch.isfinite(q)).nonzero()[0, 0])]),
                        k,
                        self.eta,
                        self.last_norm,
                    )
                )
            rec["q"] = q
        self.last_norm = float(norm.max())
        return rec

    def step(self, k: int) -> None:
        x_new = descent_step(self.x, self._grad_q(k), self.eta, self.prior.sigma_eps, self.momentum, self.x_prev)
        self.x, self.x_prev = x_new, self.x

    def state_dict(self) -> dict:
        return {"x": self.x.cpu(), "x_prev": self.x_prev.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.x = state["x"].to(self.x)
        self.x_prev = state["x_prev"].to(self.x)


def descend(
    prior: DiffusionPrior,
    x0: torch.Tensor,
    *,
    eta: float,
    n_steps: int,
    momentum: float = 0.0,
    options: RunOptions | None = None,
    image_ids: np.ndarray | None = None,
) -> DescentResult:
    """P's descent (:func:`descent_step`) from a batch x0 of shape (B, C, H, W), ``n_steps`` steps of η.
    ``image_ids``: the images' numbers in the tables (default 0, 1, …; a shard's: its units).

    ‖∇q‖ of every image is recorded at k = 0, record_every, 2·record_every, … and at
    k = n_steps (``options``), q too for priors with an exact potential. The computation runs
    in x0's dtype and on its device. Raises FloatingPointError, naming the image and step, as
    soon as ∇q (or q) becomes non-finite.
    """
    if x0.ndim != 4 or tuple(x0.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(f"x0 must have shape (B, {', '.join(map(str, prior.image_shape))}), got {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError("start images x0 contain NaN or infinity")
    if not (isinstance(eta, (int, float)) and 0 < eta < float("inf")):
        raise ValueError(f"the descent step η must be a positive number, got {eta!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum β must be in [0, 1), got {momentum}")
    x0 = x0.detach()
    ids = np.arange(len(x0)) if image_ids is None else np.asarray(image_ids, dtype=np.int64)
    loop = _Descent(prior, x0, float(eta), float(momentum), ids)
    fingerprint = digest("descent", prior, x0, float(eta), float(momentum))
    run = drive(loop, n_steps, kind="critical_point_descent", fingerprint=fingerprint, options=options)
    traj = run.table().rename(columns={"k": "step"}).drop(columns="item")
    traj = traj[["image", "step", "grad_norm"] + (["q"] if "q" in traj else [])]
    first, last = traj[traj.step == 0].sort_values("image"), traj[traj.step == n_steps].sort_values("image")
    end64 = loop.x.flatten(1).to(torch.float64)
    rel = (x0.flatten(1).to(torch.float64) - end64).norm(dim=1) / end64.norm(dim=1)
    return DescentResult(
        start=x0.clone(),
        end=loop.x,
        trajectory=traj,
        grad_norm_start=first["grad_norm"].to_numpy(),
        final_grad_norm=last["grad_norm"].to_numpy(),
        relative_distance=rel.cpu().numpy(),
        eta=float(eta),
        n_steps=int(n_steps),
        resumed_from=run.resumed_from,
        wall_time_s=run.wall_time_s,
        image_ids=ids,
    )


# ------------------------------------------------------------------ step sizes
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


def lipschitz_estimate(prior: DiffusionPrior, x: torch.Tensor, safety: float = 2.0) -> float:
    """L_q, the Lipschitz constant of ∇q: the prior's own bound where it declares one (exact for
    the mixture), else ``safety`` × λ_max of ∇²q at the images ``x`` (a margin, since λ_max is
    only measured there)."""
    bound = prior.lipschitz_bound()
    return float(bound) if bound is not None else safety * largest_curvature(prior, x)


def choose_eta(prior: DiffusionPrior, x: torch.Tensor, step: float | str, safety: float = 2.0) -> float:
    """η of P's descent (:func:`descent_step`) from the configuration's ``step``: a number is η itself
    (P: 0.02); ``"auto"`` the step 1/L_q on ∇q (:func:`lipschitz_estimate`: exact for the mixture,
    ``safety`` × λ_max at the starts otherwise), so that q decreases from the first step."""
    if step == "auto":
        return 1.0 / (lipschitz_estimate(prior, x, safety) * prior.sigma_eps**2)
    eta = float(step)
    if not eta > 0:
        raise ValueError(f"the descent step η must be positive, got {step!r}")
    return eta


# ------------------------------------------------------------------ P Figs. 1–3
@dataclass
class DescentStarts:
    """P Fig. 3's three start groups: training-set images, unrelated images, white noise."""

    x: torch.Tensor  # (3n, C, H, W)
    groups: np.ndarray  # (3n,) group of each start
    sources: list[str]  # where each start comes from
    ids: np.ndarray | None = None  # (3n,) the starts' numbers (default 0, 1, …)
    labels: np.ndarray | None = None  # (3n,) each start's class, for a prior pooling classes (else None)

    def __post_init__(self):
        self.ids = np.arange(len(self.x)) if self.ids is None else np.asarray(self.ids, dtype=np.int64)

    def subset(self, units) -> DescentStarts:
        """The starts numbered ``units`` (a shard's, prior_landscape.shards), keeping their numbers."""
        units = np.asarray(units, dtype=np.int64)
        labels = None if self.labels is None else self.labels[units]
        return DescentStarts(
            self.x[units], self.groups[units], [self.sources[u] for u in units], self.ids[units], labels
        )


def descent_starts(
    prior: DiffusionPrior,
    n: int,
    cfg: dict,
    data: dict,
    source: str,
    seed: int,
    images: dict | None = None,
    resource_root="resources",
) -> DescentStarts:
    """n starts per group: at paper scale the prior's own dataset (``images``) and bundled photographs
    resized to its resolution; in the demo crops of the training photographs (or digits) ``source``
    and of the unrelated photographs ``cfg["unrelated"]``; white noise N(mean, std²) (``cfg["noise"]``).
    A prior pooling classes descends each start under a class (``labels``): a dataset image under its
    own, the unrelated and noise starts under the pooled classes in turn (io.images.class_labels)."""
    from prior_landscape.io.images import (
        class_labels,
        crop_positions,
        extract_crops,
        load_photographs,
        prior_images,
        training_images,
        unrelated_images,
    )

    s = cfg["seed"]
    if images:
        train_x, train_ids = prior_images(images, resource_root, n, s)
        unrelated_x, unrelated_ids = unrelated_images(cfg["unrelated"], n, prior.image_shape, s)
    else:
        train = training_images(source, data, seed)
        pick = np.random.default_rng(s).choice(len(train), n, replace=False)
        train_x, train_ids = train[pick], [f"{source}[{i}]" for i in pick]
        photos = load_photographs(cfg["unrelated"], data["downscale"])
        crops = crop_positions(photos, n, data["crop_size"], s, min_std=0.05)
        unrelated_x, unrelated_ids = extract_crops(photos, crops), [f"{c.image}@{c.row},{c.col}" for c in crops]
    noise = white_noise_starts(n, prior.image_shape, cfg["noise"]["mean"], cfg["noise"]["std"], s)
    groups = {"training set": train_x, "unrelated images": unrelated_x, "white noise": noise}
    return DescentStarts(
        torch.cat(list(groups.values())),
        np.repeat(list(groups), n),
        [*train_ids, *unrelated_ids, *(f"noise-{i}" for i in range(n))],
        labels=class_labels(prior.pooled_labels, images, train_ids, n_other=2 * n),
    )


def descend_in_segments(
    prior,
    x0,
    *,
    eta: float,
    n_steps: int,
    n_segments: int,
    q_of,
    options: RunOptions | None = None,
    log=None,
    image_ids: np.ndarray | None = None,
) -> tuple[DescentResult, pd.DataFrame]:
    """:func:`descend` to ``n_steps`` in ``n_segments`` pieces, with q (and its standard error) by
    ``q_of`` (x ↦ PotentialResult, e.g. the engine) at the start and after each piece (P Fig. 2).
    With a state file the pieces resume from each other: they add up to one uninterrupted run.
    ``image_ids``: the images' numbers (:func:`descend`)."""
    ids = np.arange(len(x0)) if image_ids is None else np.asarray(image_ids, dtype=np.int64)

    def at(step, x):
        r = q_of(x)
        return pd.DataFrame(
            {
                "image": ids,
                "step": int(step),
                "q": r.q,
                "q_stderr": r.stderr,
                "q_ci95_halfwidth": r.ci95_halfwidth,
            }
        )

    along, res = [at(0, x0)], None
    for k in np.linspace(0, n_steps, n_segments + 1).round().astype(int)[1:]:
        res = descend(prior, x0, eta=eta, n_steps=int(k), options=options, image_ids=ids)
        along.append(at(k, res.end))
        if log is not None:
            log.info(
                "step %d: median q %.1f, median ‖∇q‖ %.3g", k, np.median(along[-1].q), np.median(res.final_grad_norm)
            )
    return res, pd.concat(along, ignore_index=True)


def critical_point_tables(
    prior, starts: DescentStarts, res: DescentResult, along: pd.DataFrame, grad_tol: float = 0.05
) -> dict:
    """The artefacts of P Figs. 1–3: one summary row per start (distance, ‖∇q‖ and q at both ends,
    with the exact q where the prior has one, and whether the end is a critical point by the stated
    criterion ‖∇q(x̄)‖ ≤ ``grad_tol`` · ‖∇q(x)‖ — a descent that did not meet it in its budget is
    flagged, never reported as having reached one), the trajectory (‖∇q‖ at every record, q by the
    engine at the segment ends as ``q``, the exact q as ``q_exact``) and the start and end images."""
    first, last = along[along.step == 0], along[along.step == res.n_steps]
    summary = res.summary(first.q.to_numpy(), last.q.to_numpy())
    summary.insert(1, "group", starts.groups)
    summary.insert(2, "source", starts.sources)
    if starts.labels is not None:  # a prior pooling classes: the class each start descended under
        summary.insert(3, "class_label", starts.labels)
    summary["q_start_stderr"], summary["q_end_stderr"] = first.q_stderr.to_numpy(), last.q_stderr.to_numpy()
    summary["q_start_ci95_halfwidth"] = first.q_ci95_halfwidth.to_numpy()  # Student-t, P − 1 degrees of freedom
    summary["q_end_ci95_halfwidth"] = last.q_ci95_halfwidth.to_numpy()
    if prior.has_exact_potential:
        summary["q_start_exact"] = prior.potential(res.start.double()).cpu().numpy()
        summary["q_end_exact"] = prior.potential(res.end.double()).cpu().numpy()
    summary["grad_ratio"] = summary.grad_norm_end / summary.grad_norm_start
    summary["grad_tol"] = grad_tol
    summary["converged"] = summary.grad_ratio <= grad_tol
    summary["step_size"] = res.eta * prior.sigma_eps**2  # on ∇q
    summary["step_eta"] = res.eta
    summary["prior"] = prior.name
    traj = res.trajectory.rename(columns={"q": "q_exact"})
    if "q_exact" not in traj:  # a network: no exact value
        traj["q_exact"] = np.nan
    traj = traj.merge(along, on=["image", "step"], how="outer").sort_values(["image", "step"])
    traj["group"] = starts.groups[np.searchsorted(starts.ids, traj.image.to_numpy())]
    traj["prior"] = prior.name
    C, H, W = prior.image_shape
    flat = lambda t: list(t.reshape(len(t), -1).cpu().numpy().astype(np.float32))  # noqa: E731
    images = pd.DataFrame(
        {
            "prior": prior.name,
            "image": starts.ids,
            "group": starts.groups,
            **({} if starts.labels is None else {"class_label": starts.labels}),
            "channels": C,
            "height": H,
            "width": W,
            "start": flat(res.start),
            "end": flat(res.end),
        }
    )
    return {"summary": summary, "trajectory": traj.reset_index(drop=True), "images": images}
