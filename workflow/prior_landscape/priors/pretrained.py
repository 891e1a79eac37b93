"""The paper's pre-trained diffusion models as :class:`DiffusionPrior` objects (P Table 1).

=============  ==============================================  ==========  ===========================
prior          checkpoint                                      schedule    image scale of ``score``
=============  ==============================================  ==========  ===========================
``ffhq256``    score_sde ``ve/ffhq_256_ncsnpp_continuous``     VE          [0, 1]   (3×256×256)
``imagenet64`` EDM ``edm-imagenet-64x64-cond-adm.pkl``         EDM         [−1, 1]  (3×64×64), one class
``ffhq64``     EDM ``edm-ffhq-64x64-uncond-ve.pkl``            EDM         [−1, 1]  (3×64×64)
``afhq64``     EDM ``edm-afhqv2-64x64-uncond-ve.pkl``          EDM         [−1, 1]  (3×64×64)
=============  ==============================================  ==========  ===========================

Image scale
-----------
Each prior works in the pixel scale its network was trained in, and σ is a
noise standard deviation in that scale:

* EDM models were trained on images mapped to [−1, 1] (``x/127.5 − 1``);
  ``EDMPrior.score`` takes images in [−1, 1];
* score_sde's FFHQ-256 model (``data.centered = False``) was trained on images
  in [0, 1] (the network maps its input to [−1, 1] internally, but the SDE,
  σ_min = 0.01 and σ_max = 348 live in the [0, 1] scale); ``ScoreSDEPrior.score``
  takes images in [0, 1].

The workflow's images are float tensors in [0, 1] (``prior_landscape.io.images``).
``prior.from_unit(x)`` maps them to the prior's scale (x ↦ 2x − 1 for EDM, the
identity for score_sde), ``prior.to_unit`` back, and ``prior.unit_log_det``
(d·log 2 for EDM, 0 for score_sde) converts potentials: a density on [0, 1]
images is p_unit(x) = p(from_unit(x))·2^d, so

    q_unit(x) = q(from_unit(x)) − unit_log_det.

P reports q in nats of each model's own scale; the sweeps and descents only use
differences of q between images of one prior, which the conversion leaves
unchanged. Step sizes and noise levels given in [0, 1] units (σ_y, γ_x, the
descent step 0.02) must be doubled for EDM priors (σ scales with the image).

Schedules and t_ε
-----------------
EDM: σ(t) = t on [t_ε, 80] (EDM's σ_max = 80), score = (D(x; σ) − x)/σ² with
EDM's preconditioned denoiser D (computed as ((c_skip − 1)x + c_out F)/σ², the
same number without the cancellation). score_sde VE: σ(t) = 0.01·34800^t on
[t_ε, 1], the network returning the score directly. t_ε = 1e-3 for both (P
§2.1); for EDM this is σ(t_ε) = 1e-3, below EDM's own σ_min = 0.002.

Precision: the networks run in float32 by default (NVlabs runs the ImageNet
model in float16 on GPU; it is never run in float16 here); ``prior.to(torch.float64)``
gives double precision.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from prior_landscape.priors.base import DiffusionPrior, NetworkPrior, sigma_batch
from prior_landscape.priors.checkpoints import (
    EDMDenoiser,
    EDMNetworkSpec,
    build_edm_network,
    load_edm_pickle,
    load_score_sde_checkpoint,
)
from prior_landscape.priors.ncsnpp_scoresde import FFHQ256_NCSNPP_CONTINUOUS, ScoreSDENCSNpp, ScoreSDENCSNppConfig
from prior_landscape.priors.schedules import EDMSchedule, ScaledSchedule, VESchedule, schedule_from_config

__all__ = [
    "EDMPrior",
    "ScoreSDEPrior",
    "PAPER_T_EPS",
    "EDM_SIGMA_MAX",
    "UnitScalePrior",
    "checkpoint_format",
    "load_pretrained_prior",
    "convert_pretrained_prior",
    "load_converted_prior",
]

#: t_ε of P §2.1 (both schedules).
PAPER_T_EPS = 1e-3
#: EDM's largest noise level (its sampler's σ_max); T of the EDM schedule.
EDM_SIGMA_MAX = 80.0


class _NetworkPrior(NetworkPrior):
    """A released network: its own pixel scale (``data_range``) and conversion to our file format."""

    data_range: tuple[float, float]

    # ------------------------------------------------------------- image scale
    @property
    def _scale(self) -> float:
        lo, hi = self.data_range
        return hi - lo

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the prior's pixel scale."""
        lo, _ = self.data_range
        return x * self._scale + lo

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """The prior's pixel scale → [0, 1]."""
        lo, _ = self.data_range
        return (x - lo) / self._scale

    @property
    def unit_log_det(self) -> float:
        """d·log(scale): q_unit(x) = q(from_unit(x)) − unit_log_det."""
        return self.dim * math.log(self._scale)

    # ------------------------------------------------------------- conversion
    def _state(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write the converted prior (atomically): plain tensors and metadata, read back with
        ``torch.load(weights_only=True)`` — no pickle from the original release is needed again."""
        from prior_landscape.io.artefacts import atomic_output

        state = {"name": self.name, "schedule": self.schedule.to_dict(), **self._state()}
        with atomic_output(path) as tmp:
            torch.save(state, tmp)


class EDMPrior(_NetworkPrior):
    """An EDM network (Karras et al. 2022) on the EDM schedule σ(t) = t; images in [−1, 1].

    A class-conditional network (``edm-imagenet-64x64-cond-adm``) is one class's density with
    ``class_label`` (an int in [0, label_dim)), or pools the classes ``pooled_labels`` (P pools
    classes 0–9): then every image is evaluated under its own class, bound by :meth:`with_labels`
    (``base.DiffusionPrior``), and an evaluation without labels is refused. Both are refused for
    unconditional networks.
    """

    data_range = (-1.0, 1.0)

    def __init__(
        self,
        denoiser: EDMDenoiser,
        *,
        name: str = "edm",
        class_label: int | None = None,
        pooled_labels: Sequence[int] | None = None,
        schedule: EDMSchedule | None = None,
        metadata: dict | None = None,
        data_statistics: dict | None = None,
    ):
        label_dim = denoiser.label_dim
        if label_dim:
            if (class_label is None) == (pooled_labels is None):
                raise ValueError(
                    f"{name}: the network is class-conditional ({label_dim} classes): give class_label (one class) "
                    "or class_labels (the classes it pools, one label per image)"
                )
            labels = [class_label] if pooled_labels is None else list(pooled_labels)
            bad = [c for c in labels if not (float(c).is_integer() and 0 <= int(c) < label_dim)]
            if bad:
                raise ValueError(f"{name}: class label(s) {bad} not in [0, {label_dim})")
            if not labels or len(set(labels)) != len(labels):
                raise ValueError(f"{name}: the pooled class labels {labels} must be distinct, at least one")
            class_label = None if class_label is None else int(class_label)
            pooled_labels = None if pooled_labels is None else tuple(int(c) for c in pooled_labels)
        elif class_label is not None or pooled_labels is not None:
            raise ValueError(f"{name}: the network is unconditional; it takes no class label")
        self._setup(denoiser)
        self.class_label, self.pooled_labels = class_label, pooled_labels
        self._row_labels: torch.Tensor | None = None  # one class per image of the bound batch (with_labels)
        self.schedule = schedule or EDMSchedule(sigma_max=EDM_SIGMA_MAX, t_eps=PAPER_T_EPS)
        self.metadata = dict(metadata or {})
        res = int(self.metadata.get("img_resolution", 0)) or _infer_resolution(denoiser)
        ch = int(self.metadata.get("img_channels", 0)) or _infer_channels(denoiser)
        self.image_shape = (ch, res, res)
        self.name = name
        # mean and (co)variance of its images, in [−1, 1] scale: p_T of P eq. 7 (priors/terminal.py)
        self._set_data_statistics(data_statistics, f"EDM prior {name!r}")

    @classmethod
    def from_pickle(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        class_label: int | None = None,
        pooled_labels: Sequence[int] | None = None,
        t_eps: float = PAPER_T_EPS,
        sigma_max: float = EDM_SIGMA_MAX,
    ) -> EDMPrior:
        """Load ``edm-*.pkl`` (safely, see :mod:`.checkpoints`)."""
        denoiser, meta = load_edm_pickle(path)
        name = name or Path(path).stem
        if class_label is not None:
            name = f"{name}-class{int(class_label)}"
        return cls(
            denoiser,
            name=name,
            class_label=class_label,
            pooled_labels=pooled_labels,
            schedule=EDMSchedule(sigma_max, t_eps),
            metadata=meta,
        )

    def defining_values(self) -> dict:
        """The network's weights, its preconditioning (the pickle's metadata) and the class label
        (the pooled labels and the labels bound to a batch, where there are any)."""
        out = {"net": self.net, "metadata": self.metadata, "class_label": self.class_label}
        if self.pooled_labels is not None:
            out["pooled_labels"] = list(self.pooled_labels)
        if self._row_labels is not None:
            out["row_labels"] = self._row_labels
        return out

    # ---------------------------------------------- pooled classes (base.DiffusionPrior)
    def _view(self, **changes) -> EDMPrior:
        view = copy.copy(self)  # shares the network
        view.__dict__.update(changes)
        return view

    def with_labels(self, labels) -> EDMPrior:
        if self.pooled_labels is None:
            return super().with_labels(labels)
        if labels is None:
            raise ValueError(
                f"prior {self.name!r} pools classes {list(self.pooled_labels)}: give each image's class label"
            )
        lab = torch.as_tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
        outside = sorted({int(c) for c in lab} - set(self.pooled_labels))
        if outside:
            raise ValueError(
                f"prior {self.name!r} pools classes {list(self.pooled_labels)}, not {outside} (labels given per image)"
            )
        return self._view(_row_labels=lab)

    def for_rows(self, rows) -> EDMPrior:
        if self._row_labels is None:
            return self
        rows = rows.cpu() if isinstance(rows, torch.Tensor) else rows
        return self._view(_row_labels=self._row_labels[rows])

    def for_class(self, label: int) -> EDMPrior:
        if self.pooled_labels is None or int(label) not in self.pooled_labels:
            return super().for_class(label)
        return self._view(class_label=int(label), pooled_labels=None, _row_labels=None)

    def _labels(self, batch: int, like: torch.Tensor):
        if self.class_label is not None:
            return torch.full((batch,), self.class_label, dtype=torch.long, device=like.device)
        if self.pooled_labels is None:
            return None
        if self._row_labels is None:
            raise ValueError(
                f"prior {self.name!r} pools classes {list(self.pooled_labels)}: evaluate it with each image's "
                "class label (with_labels) or for one class (for_class)"
            )
        if len(self._row_labels) != batch:
            raise ValueError(
                f"prior {self.name!r} is bound to the class labels of {len(self._row_labels)} images, "
                f"evaluated on {batch}: a sub-batch takes its rows' prior (for_rows)"
            )
        return self._row_labels.to(like.device)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """(D(x; σ) − x)/σ² ≈ ∇log p_σ(x), x in [−1, 1] scale; computed in the network's dtype, returned in x's."""
        self._check(x)
        sig = sigma_batch(sigma, x)
        xd = x.to(self.dtype)
        out = self.net.score(xd, sig.to(self.dtype), self._labels(x.shape[0], x))
        return out.to(x.dtype)

    def _state(self) -> dict:
        return {
            "kind": "edm",
            "class_label": self.class_label,
            "pooled_labels": None if self.pooled_labels is None else list(self.pooled_labels),
            "metadata": self.metadata,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.net.state_dict().items()},
            "data_statistics": self.data_statistics,
        }

    @classmethod
    def from_state(cls, state: dict) -> EDMPrior:
        """The inverse of :meth:`save` (``state`` as read by ``torch.load``)."""
        meta = state["metadata"]
        names = {f.name for f in dataclasses.fields(EDMNetworkSpec)} - {"state_dict"}
        spec = EDMNetworkSpec(**{k: meta[k] for k in names if k in meta}, state_dict=state["state_dict"])
        net = build_edm_network(spec)
        den = EDMDenoiser(net, spec.precond, spec.sigma_data if spec.precond == "edm" else 0.5, spec.label_dim)
        return cls(
            den,
            name=state["name"],
            class_label=state["class_label"],
            pooled_labels=state.get("pooled_labels"),  # absent before classes could be pooled
            schedule=schedule_from_config(state["schedule"]),
            metadata=meta,
            data_statistics=state.get("data_statistics"),  # absent before it was stored: P's p_T
        )

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """EDM's D(x; σ) (x in [−1, 1] scale)."""
        self._check(x)
        sig = sigma_batch(sigma, x)
        return self.net(x.to(self.dtype), sig.to(self.dtype), self._labels(x.shape[0], x)).to(x.dtype)


def _infer_resolution(denoiser: EDMDenoiser) -> int:
    res = [int(k.split("x")[0]) for k in denoiser.net.enc.keys() if "x" in k]
    return max(res)


def _infer_channels(denoiser: EDMDenoiser) -> int:
    first = next(iter(denoiser.net.enc.values()))
    return int(first.in_channels)


class ScoreSDEPrior(_NetworkPrior):
    """score_sde's NCSN++ on its continuous VE SDE σ(t) = σ_min (σ_max/σ_min)^t; images in [0, 1]."""

    def __init__(
        self,
        net: ScoreSDENCSNpp,
        *,
        name: str = "score_sde",
        schedule: VESchedule | None = None,
        metadata: dict | None = None,
        data_statistics: dict | None = None,
    ):
        cfg = net.config
        self._setup(net)
        self.schedule = schedule or VESchedule(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, t_eps=PAPER_T_EPS)
        self.image_shape = (cfg.num_channels, cfg.image_size, cfg.image_size)
        self.data_range = (-1.0, 1.0) if cfg.centered else (0.0, 1.0)
        self.name = name
        self.metadata = dict(metadata or getattr(net, "checkpoint_meta", {}) or {})
        self.metadata.setdefault("config", cfg.to_dict())
        self._set_data_statistics(data_statistics, f"score_sde prior {name!r}")

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: ScoreSDENCSNppConfig | dict | None = None,
        *,
        name: str = "ffhq256",
        t_eps: float = PAPER_T_EPS,
        use_ema: bool = True,
    ) -> ScoreSDEPrior:
        """Load ``checkpoint_N.pth`` (default configuration: ``ve/ffhq_256_ncsnpp_continuous``)."""
        net = load_score_sde_checkpoint(path, config, use_ema=use_ema)
        cfg = net.config
        sched = VESchedule(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, t_eps=t_eps)
        return cls(net, name=name, schedule=sched)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """s_θ(x, σ) ≈ ∇log p_σ(x), x in [0, 1] scale; computed in the network's dtype, returned in x's."""
        self._check(x)
        sig = sigma_batch(sigma, x)
        return self.net(x.to(self.dtype), sig.to(self.dtype)).to(x.dtype)

    def defining_values(self) -> dict:
        return {"net": self.net, "config": self.net.config.to_dict()}

    def _state(self) -> dict:
        return {
            "kind": "score_sde",
            "config": self.net.config.to_dict(),
            "metadata": self.metadata,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "data_statistics": self.data_statistics,
        }

    @classmethod
    def from_state(cls, state: dict) -> ScoreSDEPrior:
        """The inverse of :meth:`save` (``state`` as read by ``torch.load``)."""
        net = ScoreSDENCSNpp(ScoreSDENCSNppConfig.from_mapping(state["config"]))
        net.load_state_dict(state["state_dict"], strict=True)
        return cls(
            net,
            name=state["name"],
            schedule=schedule_from_config(state["schedule"]),
            metadata=state["metadata"],
            data_statistics=state.get("data_statistics"),
        )


class UnitScalePrior(DiffusionPrior):
    """A pre-trained prior seen on images in [0, 1], the scale every workflow routine uses.

    With x = lo + s·u (``base.from_unit``), the diffusion of the base model on x is
    a diffusion on u with σ_u(t) = σ(t)/s (:class:`ScaledSchedule`), and

        score_u(u, σ_u) = s · score(lo + s·u, s·σ_u),
        log p_T,u(u)    = log p_T(lo + s·u) + d·log s,

    so the potential the engine integrates is q_u(u) = q(lo + s·u) − d·log s
    (``base.unit_log_det``): the same landscape, shifted by a constant. Step
    sizes, σ_y and descent steps are then in [0, 1] units for every prior.

    ``max_batch``: the network sees at most this many images at once (a descent of
    60 images at 256×256 would not fit a 16 GB GPU in one forward pass); None: all.
    """

    def __init__(self, base: _NetworkPrior, max_batch: int | None = 16):
        self.base = base
        self.max_batch = max_batch
        lo, hi = base.data_range
        self.scale = float(hi - lo)
        self.name = base.name
        self.image_shape = base.image_shape
        self.schedule = ScaledSchedule(base.schedule, self.scale)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        u, sig = self.base.from_unit(x), sigma_batch(sigma, x) * self.scale
        m, base = self.max_batch, self.base
        if m is None or x.shape[0] <= m:
            return self.scale * base.score(u, sig)
        chunks = [slice(i, i + m) for i in range(0, x.shape[0], m)]
        return self.scale * torch.cat([base.for_rows(c).score(u[c], sig[c]) for c in chunks])

    # the base's class labels (base.DiffusionPrior): views wrapping the base's views
    @property
    def pooled_labels(self) -> tuple[int, ...] | None:
        return self.base.pooled_labels

    def with_labels(self, labels) -> UnitScalePrior:
        view = self.base.with_labels(labels)
        return self if view is self.base else UnitScalePrior(view, self.max_batch)

    def for_rows(self, rows) -> UnitScalePrior:
        view = self.base.for_rows(rows)
        return self if view is self.base else UnitScalePrior(view, self.max_batch)

    def for_class(self, label: int) -> UnitScalePrior:
        return UnitScalePrior(self.base.for_class(label), self.max_batch)

    def terminal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.terminal_log_prob(self.base.from_unit(x)) + self.base.unit_log_det

    # p_T is the base's (its statistics live in its scale); the fingerprint holds it through the base
    def use_terminal(self, kind: str) -> UnitScalePrior:
        self.base.use_terminal(kind)
        return self

    @property
    def data_statistics(self) -> dict | None:
        return self.base.data_statistics

    @property
    def terminal_density(self) -> str:
        return self.base.terminal_density

    def num_parameters(self) -> int:
        return self.base.num_parameters()

    def defining_values(self) -> dict:
        """The wrapped network prior (its own fingerprint: weights, class label) and the scale
        (``max_batch`` only splits the work and is left out)."""
        return {"base": self.base, "scale": self.scale}

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    def to(self, device_or_dtype) -> UnitScalePrior:
        self.base.to(device_or_dtype)
        return self


# ===================================================================== dispatch
def checkpoint_format(path: str | Path) -> str | None:
    """'edm_pickle', 'score_sde' or None, from the file name and its first bytes (cheap, nothing unpickled)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    is_zip = head.startswith(b"PK")
    if path.suffix == ".pkl" and head[:1] == b"\x80":
        return "edm_pickle"
    if path.suffix == ".pth" and (is_zip or head[:1] == b"\x80"):
        return "score_sde"
    return None


def load_pretrained_prior(
    path: str | Path,
    *,
    name: str | None = None,
    class_label: int | None = None,
    config: ScoreSDENCSNppConfig | dict | None = None,
    t_eps: float = PAPER_T_EPS,
    device: str | torch.device = "cpu",
    pooled_labels: Sequence[int] | None = None,
) -> DiffusionPrior:
    """An EDM ``.pkl`` or a score_sde ``.pth`` as a prior (see :func:`checkpoint_format`)."""
    kind = checkpoint_format(path)
    if kind == "edm_pickle":
        prior = EDMPrior.from_pickle(path, name=name, class_label=class_label, pooled_labels=pooled_labels, t_eps=t_eps)
    elif kind == "score_sde":
        if class_label is not None or pooled_labels is not None:
            raise ValueError("score_sde checkpoints are unconditional: they take no class_label or pooled_labels")
        prior = ScoreSDEPrior.from_checkpoint(
            path, config or FFHQ256_NCSNPP_CONTINUOUS, name=name or "ffhq256", t_eps=t_eps
        )
    else:
        raise ValueError(f"{path}: not an EDM network pickle (.pkl) or a score_sde checkpoint (.pth)")
    return prior.to(device)


def convert_pretrained_prior(
    checkpoint: str | Path,
    output: str | Path,
    *,
    name: str,
    class_label: int | None = None,
    pooled_labels: Sequence[int] | None = None,
    schedule: dict | None = None,
    network: dict | None = None,
    images: torch.Tensor | None = None,
) -> DiffusionPrior:
    """Read a released checkpoint (EDM ``.pkl`` safely, score_sde ``.pth``) and save it converted.

    ``schedule`` (the config's ``{"kind": …, "t_eps": …}``) overrides the release's
    default schedule; ``network`` is a score_sde network configuration (default:
    ``ve/ffhq_256_ncsnpp_continuous``; EDM pickles describe their own network).
    ``images`` (N, C, H, W) in [0, 1]: images of the data the network models (the prior's
    ``images``), whose mean and (co)variance, in the network's scale, are stored for the
    data-Gaussian terminal density (P eq. 7; :mod:`prior_landscape.priors.terminal`); None: none
    stored (P's N(0, σ_T² I) only; a prior pooling classes, ``pooled_labels``, gets the statistics
    of the images of all its classes). Returns the converted prior (in its own scale)."""
    from prior_landscape.priors.terminal import data_statistics

    prior = load_pretrained_prior(
        checkpoint, name=name, class_label=class_label, pooled_labels=pooled_labels, config=network
    )
    prior.name = name
    if schedule is not None:
        prior.schedule = schedule_from_config(schedule)
    if images is not None:
        images = torch.as_tensor(images)
        if tuple(images.shape[1:]) != tuple(prior.image_shape):
            raise ValueError(
                f"{name}: the images for its data statistics have shape {tuple(images.shape[1:])}, "
                f"the network models {tuple(prior.image_shape)}"
            )
        prior._set_data_statistics(data_statistics(prior.from_unit(images.double())), f"prior {name!r}")
    prior.save(output)
    return prior


def load_converted_prior(state: dict, device: str | torch.device = "cpu") -> UnitScalePrior:
    """A prior written by :meth:`_NetworkPrior.save`, as its [0, 1] view (:class:`UnitScalePrior`)."""
    kind = state.get("kind")
    if kind == "edm":
        base = EDMPrior.from_state(state)
    elif kind == "score_sde":
        base = ScoreSDEPrior.from_state(state)
    else:
        raise ValueError(f"not a converted pre-trained prior (kind={kind!r})")
    return UnitScalePrior(base.to(device))
