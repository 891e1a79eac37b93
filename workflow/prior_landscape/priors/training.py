"""Training a score network by denoising score matching (the demo's priors; P's binarized-MNIST prior).

Denoising score matching (Vincent 2011; Song et al. 2021 with λ(σ) = σ²): t ~ U(t_ε, 1),
σ = σ(t) of the VE schedule, x̃ = x + σ z and the loss ‖σ s_θ(x̃, σ) + z‖², averaged over
pixels and batch — :class:`DSMLoss`, a callable like EDM's ``EDMLoss``; an untrained
Gaussian-only score scores ≈ 1 on white data, a perfect score the irreducible DSM floor.

:func:`train_dsm` runs it with Adam (a linear warm-up then a constant learning rate, so
extending a run is the same as running longer), an EMA of the weights with the usual
1+n/10+n warm-up (the EMA weights are the returned prior), horizontal-flip augmentation and
gradient clipping, through the resumable-run driver (:mod:`prior_landscape.runs`). All
randomness comes from one seeded ``torch.Generator`` (network init included, under
``torch.random.fork_rng`` so the global RNG is untouched), whose state is part of the saved
state with the model, EMA, optimiser, the open loss window and the wall time: a killed
training resumes bit-for-bit on the same machine and thread count, and a larger ``steps``
extends a finished one. A state made with other data, network, seed or optimiser settings
is not continued: training starts afresh and the log says so.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd
import torch

from prior_landscape.priors.schedules import VESchedule
from prior_landscape.priors.scorenet import DEMO_NET_KWARGS, ScoreNetworkPrior, build_score_network
from prior_landscape.priors.terminal import data_statistics
from prior_landscape.runs import RunOptions, digest, drive

__all__ = ["DSMLoss", "train_dsm", "DEMO_TRAIN_KWARGS"]

#: Training budget of the demo network (``DEMO_NET_KWARGS``).
DEMO_TRAIN_KWARGS: dict = dict(steps=3000, batch_size=64, lr=2e-3)
_BINS = ("loss_low_sigma", "loss_mid_sigma", "loss_high_sigma")


class DSMLoss:
    """σ²-weighted denoising score matching on a VE schedule; returns the per-sample loss and t."""

    def __init__(self, schedule: VESchedule):
        self.t_eps = float(schedule.t_eps)
        self.sigma_min = schedule.sigma_min
        self.log_ratio = math.log(schedule.sigma_max / schedule.sigma_min)

    def __call__(self, net, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n = x0.shape[0]
        t = self.t_eps + (1.0 - self.t_eps) * torch.rand(n, generator=generator)  # t ~ U(t_ε, 1)
        sigma = self.sigma_min * torch.exp(t * self.log_ratio)  # σ(t) = σ_min (σ_max/σ_min)^t (P eq. 4)
        z = torch.randn(x0.shape, generator=generator)
        s = net(x0 + sigma[:, None, None, None] * z, sigma)  # s_θ(x̃, σ), x̃ = x + σz
        return (sigma[:, None, None, None] * s + z).pow(2).flatten(1).mean(1), t  # ‖σ s_θ + z‖²


class AdamEMALoop:
    """The machinery every training loop of the package shares, as a :class:`prior_landscape.runs.Loop`
    without its ``step``/``record``: Adam with linear warm-up, gradient clipping, an EMA copy of the
    network with the (1 + n)/(10 + n) warm-up, the window of per-sample losses since the last record,
    the wall time across resumes, and the state (model, EMA, optimiser, generator, window) that makes
    a resumed run continue bit for bit. Subclasses draw a batch, compute the loss and call
    :meth:`optimise`."""

    def __init__(self, net, gen, *, lr, warmup_steps, ema_decay, grad_clip):
        self.net, self.gen = net, gen
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.lr, self.warmup, self.ema_decay, self.grad_clip = lr, warmup_steps, ema_decay, grad_clip
        self.window: list = []  # per-sample losses (and their t) since the last record
        self.lr_now, self.wall_before, self.t0 = lr, 0.0, time.perf_counter()
        net.train()

    def warm_up(self, k: int) -> None:
        """The learning rate of step k: linear warm-up over ``warmup_steps``, then ``lr``."""
        self.lr_now = self.lr * min(1.0, (k + 1) / self.warmup) if self.warmup > 0 else self.lr
        for group in self.opt.param_groups:
            group["lr"] = self.lr_now

    def optimise(self, k: int, loss: torch.Tensor, what: str = "DSM loss") -> None:
        """One Adam step on ``loss`` (clipped), then the EMA update; a non-finite loss stops the run."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.opt.step()
        decay = min(self.ema_decay, (2.0 + k) / (11.0 + k))  # EMA warm-up (1 + n)/(10 + n), n = k + 1
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                pe.lerp_(p, 1.0 - decay)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{what} became non-finite at step {k + 1}; lower lr (= {self.lr})")

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def state_dict(self) -> dict:
        return {
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": self.gen.get_state(),
            "window": self.window,
            "lr_now": self.lr_now,
            "wall_s": self.wall(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["rng"])
        self.window, self.lr_now = list(state["window"]), state["lr_now"]
        self.wall_before, self.t0 = float(state["wall_s"]), time.perf_counter()


class _Training(AdamEMALoop):
    """Adam on :class:`DSMLoss` with EMA, warm-up, flips and clipping, as a :class:`prior_landscape.runs.Loop`."""

    def __init__(self, data, net, loss: DSMLoss, gen, *, batch_size, lr, warmup_steps, ema_decay, grad_clip, hflip):
        super().__init__(net, gen, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, grad_clip=grad_clip)
        self.data, self.loss, self.batch_size, self.hflip = data, loss, batch_size, hflip

    def step(self, k: int) -> None:
        self.warm_up(k)
        x0 = self.data[torch.randint(0, len(self.data), (self.batch_size,), generator=self.gen)]
        if self.hflip:  # horizontal-flip augmentation
            flip = torch.rand(self.batch_size, generator=self.gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        per_sample, t = self.loss(self.net, x0, self.gen)
        self.optimise(k, per_sample.mean())
        self.window.append((per_sample.detach(), t))

    def record(self, k: int) -> dict | None:
        if not self.window:
            return None
        ls, ts = (torch.cat(v) for v in zip(*self.window))
        self.window = []
        u = (ts - self.loss.t_eps) / (1.0 - self.loss.t_eps)
        rec = {"step": k, "loss": float(ls.mean())}
        for b, key in enumerate(_BINS):  # the loss in three equal bins of t
            m = (u >= b / 3) & (u < (b + 1) / 3) if b < 2 else u >= 2 / 3
            rec[key] = float(ls[m].mean()) if m.any() else float("nan")
        return {**rec, "lr": self.lr_now, "wall_s": self.wall()}


def _network_kwargs(net_kwargs: dict | None, data: torch.Tensor) -> dict:
    """The network's arguments: the demo network's defaults for the default architecture, the
    data's channels, and σ_d and the data mean from the data unless given."""
    net_kwargs = dict(net_kwargs or {})
    kw = dict(DEMO_NET_KWARGS) if net_kwargs.get("architecture", "unet") == "unet" else {}
    kw["in_channels"] = data.shape[1]
    kw.update(net_kwargs)
    kw.setdefault("sigma_data", float(data.std()))
    kw.setdefault("data_mean", float(data.mean()))
    kw["sigma_data"] = max(float(kw["sigma_data"]), 1e-3)
    return kw


def train_dsm(
    crops: np.ndarray | torch.Tensor,
    schedule: VESchedule,
    *,
    steps: int = DEMO_TRAIN_KWARGS["steps"],
    batch_size: int = DEMO_TRAIN_KWARGS["batch_size"],
    lr: float = DEMO_TRAIN_KWARGS["lr"],
    seed: int = 0,
    net_kwargs: dict | None = None,
    ema_decay: float = 0.999,
    warmup_steps: int = 100,
    grad_clip: float | None = 1.0,
    hflip: bool = True,
    name: str = "scorenet",
    options: RunOptions | None = None,
) -> tuple[ScoreNetworkPrior, pd.DataFrame]:
    """Train a score network by σ²-weighted denoising score matching on a VE schedule (module docstring).

    ``crops``: images (N, C, H, W), float, e.g. in [0, 1]. ``net_kwargs`` describe the network
    (:func:`~prior_landscape.priors.scorenet.build_score_network`; default architecture: the demo
    network, ``in_channels`` from the crops, ``sigma_data`` / ``data_mean`` their pixel std and
    mean). Returns the EMA prior and a loss history, one row per ``options.record_every`` steps:
    ``step``, ``loss`` (mean over the window), the same split into three equal bins of t
    (``loss_low_sigma`` …; NaN if a bin was empty), ``lr`` and cumulated ``wall_s``.
    """
    x_all = torch.as_tensor(np.asarray(crops) if not isinstance(crops, torch.Tensor) else crops)
    x_all = x_all.detach().to("cpu", torch.float32).contiguous()
    if x_all.ndim != 4:
        raise ValueError(f"crops must have shape (N, C, H, W), got {tuple(x_all.shape)}")
    if not torch.isfinite(x_all).all():
        raise ValueError("crops contain NaN or infinity")
    if not isinstance(schedule, VESchedule):
        raise TypeError(f"train_dsm trains on a VESchedule, got {type(schedule).__name__}")
    N, C, H, W = x_all.shape
    if N < 2 or steps < 0 or batch_size < 1:
        raise ValueError(f"need N ≥ 2 crops, steps ≥ 0, batch_size ≥ 1 (got {N}, {steps}, {batch_size})")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
        torch.manual_seed(int(seed))
        net = build_score_network(**_network_kwargs(net_kwargs, x_all))
    hyper = dict(
        batch_size=int(batch_size),
        lr=float(lr),
        warmup_steps=int(warmup_steps),
        ema_decay=float(ema_decay),
        grad_clip=None if grad_clip is None else float(grad_clip),
        hflip=bool(hflip),
    )
    loop = _Training(x_all, net, DSMLoss(schedule), gen, **hyper)
    fingerprint = digest("dsm", net.config, schedule.to_dict(), int(seed), hyper, x_all)
    opts = options or RunOptions(record_every=50, checkpoint_every=200)
    run = drive(loop, int(steps), kind="score_network_training", fingerprint=fingerprint, options=opts)
    history = (
        run.table().drop(columns=["k", "item"])
        if run.records
        else pd.DataFrame(columns=["step", "loss", *_BINS, "lr", "wall_s"])
    )
    meta = {
        **hyper,
        "seed": int(seed),
        "data_shape": [N, C, H, W],
        "data_sha1": digest(x_all),
        "steps": int(steps),
        "n_crops": N,
        "final_loss": float(history["loss"].iloc[-1]) if len(history) else float("nan"),
        "train_wall_s": loop.wall(),
        "torch_threads": torch.get_num_threads(),
    }
    # the terminal density's statistics (P eq. 7), of the data the network learns (flips included)
    stats = data_statistics(x_all, hflip=hyper["hflip"])
    prior = ScoreNetworkPrior(loop.ema, schedule, (C, H, W), name=name, metadata=meta, data_statistics=stats)
    return prior, history
