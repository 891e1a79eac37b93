"""Kernel diffusion priors of the two learned peers, trained by the workflow (issue 15; docs/peers_design.md
§1.5, §2.4–2.5).

* BlindDPS's unconditional kernel prior s_φ(k, σ) (also Kernel Diffusion's ablation row): a
  :class:`~prior_landscape.priors.scorenet.ScoreNetworkPrior` trained by
  :func:`~prior_landscape.priors.training.train_dsm` on kernel images (:func:`train_kernel_prior`).
* Kernel Diffusion's conditional prior ε_θ(k_t, y, t): :class:`ConditionalKernelUNet`, a kernel
  UNet whose every level is concatenated with features of the blurry image y, trained by the same
  σ²-weighted denoising score matching on (y, k) pairs (:func:`train_conditional_kernel_prior`,
  resumable through :func:`prior_landscape.runs.drive`).

Kernel images (docs/peers_design.md §0.3): a K×K kernel (odd K), centred on its centroid (integer roll), embedded
in the (K + 1)² canvas (:func:`~prior_landscape.methods.peer_ops.embed_kernel`) and max-normalised
to [0, 1] — one representation for both priors, so the ablation reuses BlindDPS's prior. The
peers' samplers see them as 2k/max k − 1 ∈ [−1, 1] through the VE → VP map of
:mod:`prior_landscape.methods.ddpm`. Both priors are VE, EDM-preconditioned score models in [0, 1]
units with the noise range the DDPM sampler asks for (σ ≈ 0.005 … 79).

Training kernels (:func:`kernel_training_set`), a mix by weights over four generators: the peers'
random walk (Borodenko's model, intensity ~ U(0, 1); :func:`random_walk_motion_kernel`), deepinv's
Gaussian-process camera shake (length scale ~ U(0.2, 0.4), σ ~ U(0.25, 0.6)), deepinv's Gaussian
(std ~ U(0.5, 3) px, anisotropic, rotated) and deepinv's diffraction PSFs (fc 0.25). BlindDPS's
paper mix is 5/6 random walk and 1/6 Gaussian; the demo adds the other two so that the prior
covers the demo test families (stated beside the table).

Conditional pairs (:func:`blur_pairs`), formed afresh at every training step from a seeded draw: an
image of the training set (the demo: 64×64 crops of the *training* photographs, never the held-out
ones; paper scale: BSDS500's training images) blurred by a kernel of the training set with the test
sets' boundary (the demo: circular; paper: reflect), plus noise σ_y.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from prior_landscape.priors.base import NetworkPrior, sigma_batch
from prior_landscape.priors.schedules import VESchedule, schedule_from_config
from prior_landscape.priors.scorenet import ScoreNetworkPrior, _ResBlock
from prior_landscape.priors.training import AdamEMALoop
from prior_landscape.runs import RunOptions, digest, drive

__all__ = [
    "GENERATORS",
    "kernel_training_set",
    "blur_pairs",
    "train_kernel_prior",
    "ConditionalKernelUNet",
    "ConditionalKernelPrior",
    "train_conditional_kernel_prior",
    "load_kernel_prior",
]

#: the training-kernel generators a mix may weight
GENERATORS = ("random_walk", "motion", "gaussian", "diffraction")
DT = torch.float64


# ================================================================ training kernels
def _draw(generator: str, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """n sum-normalised (size × size) kernels of one generator (module docstring), float64."""
    from deepinv.physics.generator import DiffractionBlurGenerator, GaussianBlurGenerator, MotionBlurGenerator

    from prior_landscape.inverse.kernels import random_walk_motion_kernel

    seed = int(rng.integers(2**62))
    g = torch.Generator().manual_seed(seed)
    if generator == "random_walk":
        out = [random_walk_motion_kernel(size, float(rng.uniform()), seed + j) for j in range(n)]
        return torch.stack(out) if out else torch.zeros(0, size, size, dtype=DT)
    if generator == "motion":  # groups of 50 share a length scale and σ (one deepinv call each)
        out = [
            MotionBlurGenerator(
                (size, size), rng=g, l=float(rng.uniform(0.2, 0.4)), sigma=float(rng.uniform(0.25, 0.6))
            ).step(min(50, n - j))["filter"][:, 0]
            for j in range(0, n, 50)
        ]
        h = torch.cat(out).to(DT) if out else torch.zeros(0, size, size, dtype=DT)
    elif generator == "gaussian":
        h = GaussianBlurGenerator((size, size), sigma_min=0.5, sigma_max=3.0, isotropic=False, rng=g).step(n)["filter"]
        h = h[:, 0].to(DT)
    elif generator == "diffraction":
        h = DiffractionBlurGenerator((size, size), fc=0.25, pupil_size=(128, 128), rng=g).step(n)["filter"][:, 0].to(DT)
    else:
        raise ValueError(f"unknown training-kernel generator {generator!r}: use one of {GENERATORS}")
    return h.clamp_min(0) / h.clamp_min(0).flatten(1).sum(1)[:, None, None]


def _centre(h: torch.Tensor) -> torch.Tensor:
    """Roll each kernel so that its centroid lands on the centre pixel (integer shift)."""
    K = h.shape[-1]
    idx = torch.arange(K, dtype=h.dtype)
    rows = (h.sum(-1) * idx).sum(-1)
    cols = (h.sum(-2) * idx).sum(-1)
    out = [
        torch.roll(hb, (K // 2 - round(float(r)), K // 2 - round(float(c))), (0, 1)) for hb, r, c in zip(h, rows, cols)
    ]
    return torch.stack(out) if out else h


def kernel_training_set(n: int, size: int, seed: int, mix: dict[str, float]) -> torch.Tensor:
    """n sum-normalised, centred (size × size) kernels drawn from ``mix`` (generator → weight), float64,
    in a seeded random order."""
    unknown = sorted(set(mix) - set(GENERATORS))
    if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix must weight generators of {GENERATORS} with weights ≥ 0, not all 0; got {mix}")
    rng = np.random.default_rng(seed)
    total = sum(mix.values())
    counts = {g: int(round(n * w / total)) for g, w in mix.items()}
    counts[max(mix, key=mix.get)] += n - sum(counts.values())
    h = torch.cat([_draw(g, counts[g], size, rng) for g in GENERATORS if g in counts])
    return _centre(h)[torch.from_numpy(rng.permutation(n))]


def blur_pairs(
    images: torch.Tensor, kernels: torch.Tensor, sigma_y: float, boundary: str, generator: torch.Generator
) -> torch.Tensor:
    """Blurry images y = k ⊛ x + σ_y n of (B, C, H, W) images by (B, K, K) kernels (float64), with the
    test sets' boundary: ``circular`` (the demo's) or ``reflect`` (photograph-scale protocols)."""
    from prior_landscape.inverse.operators import blur, fft_blur

    if boundary not in ("circular", "reflect"):
        raise ValueError(f"boundary must be 'circular' or 'reflect', got {boundary!r}")
    x = images.to(DT)
    y = fft_blur(x, kernels) if boundary == "circular" else blur(x, kernels, "reflect")
    return (y + sigma_y * torch.randn(y.shape, generator=generator, dtype=DT)).float()


def kernel_images(h: torch.Tensor) -> torch.Tensor:
    """The training images of kernels (N, K, K): embedded in the (K + 1)² canvas, max-normalised (N, 1, c, c)."""
    from prior_landscape.methods.peer_ops import canvas_size, embed_kernel, kernel_image

    return kernel_image(embed_kernel(h, canvas_size(h.shape[-1]))).float()


def train_kernel_prior(h: torch.Tensor, schedule: VESchedule, *, name: str = "kernel-prior", **train_kwargs):
    """BlindDPS's unconditional kernel prior: :func:`train_dsm` on the kernel images of ``h`` (no flips:
    a flip would move the canvas centre). Returns the prior (metadata: the kernel size) and its loss history."""
    from prior_landscape.priors.training import train_dsm

    prior, history = train_dsm(kernel_images(h), schedule, name=name, hflip=False, **train_kwargs)
    prior.metadata["kernel_size"] = int(h.shape[-1])
    prior.metadata["representation"] = "max-normalised kernel image on the (K+1)² canvas"
    return prior, history


# ======================================================== the conditional network
class ConditionalKernelUNet(nn.Module):
    """s_θ(k, σ, y): Kernel Diffusion's two-encoder design at the demo's sizes (docs/peers_design.md §2.4).

    The image y (C×H×W, [0, 1]) is encoded by a stride-2 convolution and residual blocks with
    average pooling to the kernel canvas (H/c = 4 in the demo and in the paper), the kernel image by a
    ScoreUNet-like UNet; the image features, average-pooled to each kernel level, are concatenated
    at every level of the kernel encoder (the code concatenates at every level; it fuses at image
    resolution after upsampling the kernel ×4, ours at kernel resolution), and one self-attention
    block over the top-level tokens mixes globally (the kernel is a global property of y). The noise
    level enters every residual block as in ScoreUNet; the output is EDM-preconditioned with the
    kernel images' σ_d and mean (:class:`~prior_landscape.priors.scorenet.ScoreUNet`'s formula)."""

    def __init__(
        self,
        image_channels: int = 1,
        base_channels: int = 16,
        channel_mult=(1, 2),
        image_channels_enc=16,
        emb_features: int = 32,
        emb_channels: int = 64,
        groups: int = 8,
        heads: int = 2,
        sigma_data: float = 0.15,
        data_mean: float = 0.05,
    ):
        super().__init__()
        self.config = dict(
            image_channels=int(image_channels),
            base_channels=int(base_channels),
            channel_mult=[int(m) for m in channel_mult],
            image_channels_enc=int(image_channels_enc),
            emb_features=int(emb_features),
            emb_channels=int(emb_channels),
            groups=int(groups),
            heads=int(heads),
            sigma_data=float(sigma_data),
            data_mean=float(data_mean),
        )
        self.sigma_data, self.data_mean, self.levels = float(sigma_data), float(data_mean), len(channel_mult)
        self.register_buffer(
            "freqs", 2 * math.pi * torch.logspace(-2, 3, emb_features // 2, base=2.0), persistent=False
        )
        self.map0, self.map1 = nn.Linear(emb_features, emb_channels), nn.Linear(emb_channels, emb_channels)
        e = image_channels_enc
        self.img_in = nn.Conv2d(image_channels, e, 4, stride=2, padding=1)  # H → H/2
        self.img_blocks = nn.ModuleList(
            [_ResBlock(e, 2 * e, emb_channels, groups), _ResBlock(2 * e, 2 * e, emb_channels, groups)]
        )
        chans = [base_channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(1, chans[0], 3, padding=1)
        self.down, skip_ch, c = nn.ModuleList(), [], chans[0]
        for ch in chans:
            self.down.append(_ResBlock(c + 2 * e, ch, emb_channels, groups))
            c = ch
            skip_ch.append(c)
        self.attn = nn.MultiheadAttention(chans[0], heads, batch_first=True)
        self.attn_norm = nn.GroupNorm(math.gcd(groups, chans[0]), chans[0])
        self.mid = _ResBlock(c, c, emb_channels, groups)
        self.up, self.up_conv = nn.ModuleList(), nn.ModuleList()
        for lvl in reversed(range(self.levels)):
            self.up.append(_ResBlock(c + skip_ch[lvl], chans[lvl], emb_channels, groups))
            c = chans[lvl]
            self.up_conv.append(nn.Conv2d(c, chans[lvl - 1], 3, padding=1) if lvl > 0 else nn.Identity())
            c = chans[lvl - 1] if lvl > 0 else c
        self.norm_out, self.conv_out = nn.GroupNorm(math.gcd(groups, c), c), nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _embed(self, c_noise: torch.Tensor) -> torch.Tensor:
        ang = c_noise[:, None] * self.freqs.to(c_noise.dtype)[None]
        return F.silu(self.map1(F.silu(self.map0(torch.cat([torch.sin(ang), torch.cos(ang)], 1)))))

    def encode_image(self, y: torch.Tensor, emb: torch.Tensor, canvas: int) -> torch.Tensor:
        """Image features at the kernel canvas resolution: a stride-2 convolution (H → H/2), a block,
        average pooling to the canvas, a block."""
        h = self.img_blocks[0](self.img_in(2.0 * y - 1.0), emb)
        return self.img_blocks[1](F.adaptive_avg_pool2d(h, canvas), emb)

    def raw(self, k_in: torch.Tensor, c_noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self._embed(c_noise)
        feats = self.encode_image(y, emb, k_in.shape[-1])
        h, skips = self.conv_in(k_in), []
        for lvl, blk in enumerate(self.down):
            h = blk(torch.cat([h, F.adaptive_avg_pool2d(feats, h.shape[-1])], 1), emb)
            if lvl == 0:  # global mixing over the top-level tokens
                B, C, H, W = h.shape
                t = self.attn_norm(h).flatten(2).transpose(1, 2)
                h = h + self.attn(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(B, C, H, W)
            skips.append(h)
            h = F.avg_pool2d(h, 2) if lvl < self.levels - 1 else h
        h = self.mid(h, emb)
        for i, lvl in enumerate(reversed(range(self.levels))):
            h = self.up[i](torch.cat([h, skips[lvl]], 1), emb)
            if lvl > 0:
                h = self.up_conv[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, k: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """s_θ(k, σ, y) = −(k − m)/(σ² + σ_d²) + σ_d/(σ√(σ² + σ_d²)) F_θ(c_in (k − m), log σ/4, y)."""
        s = sigma.to(k.dtype)[:, None, None, None]
        total = s * s + self.sigma_data**2
        kc = k - self.data_mean
        out = self.raw(kc * torch.rsqrt(total), torch.log(sigma.to(k.dtype)) / 4, y.to(k.dtype))
        return -kc / total + (self.sigma_data / s) * torch.rsqrt(total) * out


class ConditionalKernelPrior(NetworkPrior):
    """Kernel Diffusion's conditional kernel prior on a VE schedule: ``score(k, σ, y)`` on (B, 1, c, c)
    kernel images in [0, 1] given blurry images y (B, C, H, W) in [0, 1]."""

    conditional = True

    def __init__(
        self,
        net: ConditionalKernelUNet,
        schedule: VESchedule,
        canvas: int,
        name: str = "kernel-cond",
        metadata: dict | None = None,
    ):
        self._setup(net)
        self.schedule, self.image_shape, self.name = schedule, (1, int(canvas), int(canvas)), name
        self.metadata = dict(metadata or {})

    def score(self, k: torch.Tensor, sigma, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None or y.shape[0] != k.shape[0]:
            raise ValueError(f"the conditional kernel prior needs one blurry image per kernel, got y={y!r:.40}")
        self._check(k)
        return self.net(k.to(self.dtype), sigma_batch(sigma, k).to(self.dtype), y.to(self.dtype)).to(k.dtype)

    def defining_values(self) -> dict:
        return {"net": self.net, "config": self.net.config}

    def state(self) -> dict:
        return {
            "kind": "conditional_kernel_network",
            "name": self.name,
            "net_kwargs": dict(self.net.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "canvas": self.image_shape[-1],
            "schedule": self.schedule.to_dict(),
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> None:
        from prior_landscape.io.artefacts import atomic_output

        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    @classmethod
    def from_state(cls, state: dict, source: str = "the state") -> ConditionalKernelPrior:
        if not isinstance(state, dict) or state.get("kind") != "conditional_kernel_network":
            raise ValueError(f"{source} does not hold a conditional kernel prior")
        with torch.random.fork_rng(devices=[]):
            net = ConditionalKernelUNet(**state["net_kwargs"])
        net.load_state_dict(state["state_dict"])
        return cls(net, schedule_from_config(state["schedule"]), state["canvas"], state["name"], state["metadata"])


def load_kernel_prior(path: str | Path, device: str = "cpu"):
    """A kernel prior written by the workflow: conditional (Kernel Diffusion) or unconditional (BlindDPS)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"kernel prior checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "conditional_kernel_network":
        return ConditionalKernelPrior.from_state(state, source=str(path)).to(device)
    if kind == "score_network":
        return ScoreNetworkPrior.from_state(state, source=str(path)).to(device)
    raise ValueError(
        f"{path} holds no kernel prior (kind {kind!r}; expected score_network or conditional_kernel_network)"
    )


# ================================================== conditional training (resumable)
class _ConditionalTraining(AdamEMALoop):
    """Adam on σ²-weighted DSM of s_θ(k̃, σ, y), with EMA, warm-up and clipping (as train_dsm's loop); each
    step draws images, kernels and noise from the loop's generator and blurs them (:func:`blur_pairs`)."""

    def __init__(
        self,
        data: dict,
        net,
        schedule: VESchedule,
        gen,
        *,
        batch_size,
        lr,
        warmup_steps,
        ema_decay,
        grad_clip,
        sigma_y,
        boundary,
    ):
        super().__init__(net, gen, lr=lr, warmup_steps=warmup_steps, ema_decay=ema_decay, grad_clip=grad_clip)
        self.data, self.batch_size, self.sigma_y, self.boundary = data, batch_size, sigma_y, boundary
        self.t_eps, self.log_ratio = float(schedule.t_eps), math.log(schedule.sigma_max / schedule.sigma_min)
        self.sigma_min = schedule.sigma_min

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh (kernel image, blurry image) batch: random images, kernels and noise."""
        images, kernels = self.data["images"], self.data["kernels"]
        i = torch.randint(0, len(images), (self.batch_size,), generator=self.gen)
        j = torch.randint(0, len(kernels), (self.batch_size,), generator=self.gen)
        y = blur_pairs(images[i], kernels[j], self.sigma_y, self.boundary, self.gen)
        return self.data["kernel_images"][j], y

    def step(self, k: int) -> None:
        self.warm_up(k)
        k0, y = self.batch()
        t = self.t_eps + (1.0 - self.t_eps) * torch.rand(self.batch_size, generator=self.gen)  # t ~ U(t_ε, 1)
        sigma = self.sigma_min * torch.exp(t * self.log_ratio)  # VE σ(t)
        z = torch.randn(k0.shape, generator=self.gen)
        per_sample = sigma[:, None, None, None] * self.net(k0 + sigma[:, None, None, None] * z, sigma, y) + z
        per_sample = per_sample.pow(2).flatten(1).mean(1)  # ‖σ s_θ(k + σz, σ, y) + z‖² (KD eq. 17, VE form)
        self.optimise(k, per_sample.mean(), "conditional DSM loss")
        self.window.append(per_sample.detach())

    def record(self, k: int) -> dict | None:
        if not self.window:
            return None
        loss, self.window = float(torch.cat(self.window).mean()), []
        return {"step": k, "loss": loss, "lr": self.lr_now, "wall_s": self.wall()}


def train_conditional_kernel_prior(
    images: torch.Tensor,
    kernels: torch.Tensor,
    schedule: VESchedule,
    *,
    steps: int,
    sigma_y: float,
    boundary: str = "circular",
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    net_kwargs: dict | None = None,
    ema_decay: float = 0.999,
    warmup_steps: int = 100,
    grad_clip: float = 1.0,
    name: str = "kernel-cond",
    options: RunOptions | None = None,
) -> tuple[ConditionalKernelPrior, pd.DataFrame]:
    """Kernel Diffusion's conditional prior, trained by σ²-weighted DSM on the VE ``schedule`` (KD eq. 17,
    ε-prediction ↔ score; docs/peers_design.md §2.5) on pairs formed at each step from ``images`` (M, C, H, W) in
    [0, 1] and sum-normalised ``kernels`` (N, K, K) (:func:`blur_pairs`), resumable bit-for-bit through
    ``options.state_path``. Returns the EMA prior and its loss history."""
    if images.dim() != 4 or kernels.dim() != 3 or len(images) < 1 or len(kernels) < 2:
        raise ValueError(
            f"need images (M, C, H, W) and kernels (N, K, K), N ≥ 2; got {tuple(images.shape)}, {tuple(kernels.shape)}"
        )
    data = {
        "images": images.float().contiguous(),
        "kernels": kernels.to(DT).contiguous(),
        "kernel_images": kernel_images(kernels).contiguous(),
    }
    kw = dict(
        image_channels=images.shape[1],
        sigma_data=max(float(data["kernel_images"].std()), 1e-3),
        data_mean=float(data["kernel_images"].mean()),
    )
    kw.update(net_kwargs or {})
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = ConditionalKernelUNet(**kw)
    hyper = dict(
        batch_size=int(batch_size),
        lr=float(lr),
        warmup_steps=int(warmup_steps),
        ema_decay=float(ema_decay),
        grad_clip=float(grad_clip),
        sigma_y=float(sigma_y),
        boundary=str(boundary),
    )
    loop = _ConditionalTraining(data, net, schedule, gen, **hyper)
    fingerprint = digest("conditional-kernel-dsm", net.config, schedule.to_dict(), int(seed), hyper, data)
    run = drive(
        loop,
        int(steps),
        kind="conditional_kernel_training",
        fingerprint=fingerprint,
        options=options or RunOptions(record_every=50, checkpoint_every=200),
    )
    history = run.table().drop(columns=["k", "item"]) if run.records else pd.DataFrame(columns=["step", "loss"])
    meta = {
        **hyper,
        "seed": int(seed),
        "steps": int(steps),
        "n_images": len(images),
        "n_kernels": len(kernels),
        "kernel_size": int(kernels.shape[-1]),
        "train_wall_s": loop.wall(),
        "torch_threads": torch.get_num_threads(),
        "final_loss": float(history["loss"].iloc[-1]) if len(history) else float("nan"),
    }
    return ConditionalKernelPrior(loop.ema, schedule, data["kernel_images"].shape[-1], name, meta), history
