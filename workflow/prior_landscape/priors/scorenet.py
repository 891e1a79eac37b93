"""A small noise-conditional score network trained by denoising score matching.

The paper's priors are large pre-trained diffusion UNets (score_sde NCSN++, EDM;
P Table 1). This module provides the CPU-sized stand-in the workflow trains
itself: a compact UNet s_θ(x, σ) ≈ ∇log p_σ(x) for small C×H×W images (demo:
16×16×1 crops in [0, 1]), trained on a VE schedule σ(t) = σ_min (σ_max/σ_min)^t
(P §2.1) and exposed as a :class:`DiffusionPrior`.

Network choice
--------------
deepinv 0.5.0 ships NCSN++/DDPM++ (``deepinv.models.NCSNpp``), the EDM ADM UNet
and DiffUNet. They were checked and not used, because

* NCSN++'s GroupNorm has 32 groups hard-coded, and its bottleneck always carries
  a self-attention block, so its smallest configuration (model_channels=32,
  channel_mult=(1, 2), one block per level, no augmentation) still has 0.72 M
  parameters and runs at ~0.15 s per Adam step on batches of 64 16×16 images on
  2 CPU cores — 3× slower than the network below for a worse step budget;
* its forward pass casts every input to float32 (so float64 score, Hessian and
  finite-difference checks silently lose precision), uses in-place ops
  (``x.add_``) inside its blocks, and its "baseline VE" preconditioning branch is
  unreachable (documented as ``'baseline_ve'``, tested as ``'ve-baseline'``);
* DiffUNet / ADM are larger still (ImageNet-style channel counts, attention).

At paper scale the binarized-MNIST prior takes P's own network instead, diffusers'
``UNet2DModel`` (:class:`DiffusersScoreUNet`, ``network: {architecture:
diffusers_unet2d}``): 15.9 M parameters, too slow for the CPU demo.

So the demo's :class:`ScoreUNet` is a compact UNet written here: ``len(channel_mult)``
resolution levels (default 2: 16×16 and 8×8) with ``num_res_blocks`` residual
blocks each, GroupNorm + SiLU, average-pool downsampling, nearest-neighbour
upsampling + conv, skip concatenations, one bottleneck block, and the noise
level injected into every residual block as a per-channel shift computed by an
MLP from sinusoidal features of c_noise = log(σ)/4. Every operation is smooth
(SiLU, GroupNorm, convolutions, linear resampling) and nothing is in place, so
vector–Jacobian products, ``torch.func.jvp``/``vjp`` and double backward all
work, in float32 or float64 (``prior.to(torch.float64)``).

Parameterisation (EDM preconditioning, Karras et al. 2022, with a data offset m)
------------------------------------------------------------------------------
With σ_d the data standard deviation and m the data mean (``sigma_data``,
``data_mean``; filled in from the training crops unless given),

    s_θ(x, σ) = −(x − m)/(σ² + σ_d²) + σ_d / (σ √(σ² + σ_d²)) · F_θ(c_in (x − m), log σ / 4),
    c_in = 1/√(σ² + σ_d²).

This is exactly EDM's D(x) = c_skip x + c_out F with s = (D − x)/σ²: the first
term is the exact score of N(m, σ_d² I) diffused to level σ, and F, whose last
convolution starts at zero, learns the correction. For σ ≪ σ_d it reduces to the
NCSN form s ≈ F/σ, for σ ≫ σ_d to the exact Gaussian tail; the network input has
unit variance and its target is O(1) at every σ ∈ [0.01, 50], so the σ²-weighted
DSM loss below is well conditioned over the whole schedule.

Training: :func:`prior_landscape.priors.training.train_dsm` (denoising score matching).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prior_landscape.priors.base import NetworkPrior, sigma_batch
from prior_landscape.priors.schedules import VESchedule, schedule_from_config

__all__ = [
    "DEMO_NET_KWARGS",
    "ScoreUNet",
    "DiffusersScoreUNet",
    "ARCHITECTURES",
    "build_score_network",
    "ScoreNetworkPrior",
]

#: Network size for the 16×16×1 demo: 341 857 parameters (channels 32/64 at
#: 16×16/8×8). Measured with ``DEMO_TRAIN_KWARGS`` on 5000 16×16 crops of
#: skimage's camera downscaled by 2, σ ∈ [0.01, 20], on 2 CPU cores (torch 2.14
#: CPU, 2 threads): ≈ 58 ms per step uncontended, so ≈ 3 minutes for 3000 steps;
#: DSM loss ≈ 0.25 after 100 steps, ≈ 0.09 at 3000 (window means over 100 steps).
DEMO_NET_KWARGS: dict = dict(
    in_channels=1,
    base_channels=32,
    channel_mult=(1, 2),
    num_res_blocks=1,
    emb_features=32,
    emb_channels=64,
    groups=8,
)


# ====================================================================== network
class _ResBlock(nn.Module):
    """GroupNorm → SiLU → conv → (+ σ-embedding shift) → GroupNorm → SiLU → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_channels: int, groups: int):
        super().__init__()
        self.norm0 = nn.GroupNorm(math.gcd(groups, c_in), c_in)
        self.conv0 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_channels, c_out)
        self.norm1 = nn.GroupNorm(math.gcd(groups, c_out), c_out)
        self.conv1 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv1(F.silu(self.norm1(h)))
        return (h + self.skip(x)) * (1.0 / math.sqrt(2.0))


class _PreconditionedScore(nn.Module):
    """s_θ(x, σ) from an unpreconditioned network ``raw(x_in, c_noise)`` by the EDM
    preconditioning with a data offset (module docstring), whose σ_d and m it holds;
    subclasses set ``levels`` (resolutions, for the size check) and ``config``."""

    def __init__(self, sigma_data: float, data_mean: float):
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.data_mean = float(data_mean)

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sd2 = self.sigma_data**2
        s = sigma.to(x.dtype)[:, None, None, None]
        total = s * s + sd2
        xc = x - self.data_mean
        out = self.raw(xc * torch.rsqrt(total), torch.log(sigma.to(x.dtype)) / 4)
        return -xc / total + (self.sigma_data / s) * torch.rsqrt(total) * out


class ScoreUNet(_PreconditionedScore):
    """Compact noise-conditional UNet returning the score s_θ(x, σ) (EDM-preconditioned).

    ``forward(x, sigma)`` takes x of shape (B, C, H, W) and sigma of shape (B,)
    and returns a tensor shaped like x. H and W must be divisible by
    2^(len(channel_mult) − 1). The constructor's keyword arguments are what a
    checkpoint stores (``self.config``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        emb_features: int = 32,
        emb_channels: int = 64,
        groups: int = 8,
        sigma_data: float = 0.5,
        data_mean: float = 0.0,
    ):
        super().__init__(sigma_data, data_mean)
        if emb_features % 2:
            raise ValueError(f"emb_features must be even, got {emb_features}")
        self.config = dict(
            in_channels=int(in_channels),
            base_channels=int(base_channels),
            channel_mult=[int(m) for m in channel_mult],
            num_res_blocks=int(num_res_blocks),
            emb_features=int(emb_features),
            emb_channels=int(emb_channels),
            groups=int(groups),
            sigma_data=float(sigma_data),
            data_mean=float(data_mean),
        )
        self.levels = len(channel_mult)
        # Sinusoidal features of c_noise = log(σ)/4 ∈ ~[−1.2, 1]: angular frequencies
        # 2π·2^k on a geometric grid from 1/4 to 8 cycles per unit.
        freqs = 2 * math.pi * torch.logspace(-2, 3, emb_features // 2, base=2.0)
        self.register_buffer("freqs", freqs, persistent=False)
        self.map0 = nn.Linear(emb_features, emb_channels)
        self.map1 = nn.Linear(emb_channels, emb_channels)

        chans = [base_channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        skip_ch = []
        c = chans[0]
        for ch in chans:
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(_ResBlock(c, ch, emb_channels, groups))
                c = ch
            self.down.append(blocks)
            skip_ch.append(c)
        self.mid = _ResBlock(c, c, emb_channels, groups)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for lvl in reversed(range(self.levels)):
            ch = chans[lvl]
            self.up.append(_ResBlock(c + skip_ch[lvl], ch, emb_channels, groups))
            c = ch
            self.up_conv.append(nn.Conv2d(c, chans[lvl - 1], 3, padding=1) if lvl > 0 else nn.Identity())
            if lvl > 0:
                c = chans[lvl - 1]
        self.norm_out = nn.GroupNorm(math.gcd(groups, c), c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """F_θ(x_in, c_noise): the unpreconditioned UNet."""
        ang = c_noise[:, None] * self.freqs.to(c_noise.dtype)[None]
        emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
        emb = F.silu(self.map1(F.silu(self.map0(emb))))
        h = self.conv_in(x_in)
        skips = []
        for lvl, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb)
            skips.append(h)
            if lvl < self.levels - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for i, lvl in enumerate(reversed(range(self.levels))):
            h = self.up[i](torch.cat([h, skips[lvl]], dim=1), emb)
            if lvl > 0:
                h = self.up_conv[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class DiffusersScoreUNet(_PreconditionedScore):
    """P's binarized-MNIST network (P §2.3): diffusers' ``UNet2DModel`` with its default
    blocks (ResNet blocks, two per level, self-attention in the three lower down levels
    and the three upper up levels), ``block_out_channels`` (32, 64, 128, 256) in P, which
    gives P's 15.9 M parameters at 32×32×1, as F_θ inside the same preconditioning as
    :class:`ScoreUNet`.

    The noise level enters through the UNet's sinusoidal timestep embedding as
    ``timestep = 250 · c_noise`` (c_noise = log σ / 4, so σ ∈ [0.01, 50] spans timesteps
    −288 to 245: the embedding's frequencies resolve it as they resolve DDPM's 0–1000).
    Attention uses diffusers' plain ``AttnProcessor`` (matrix products and softmax) in the
    network's dtype, so forward-mode JVPs (Hessians) and float64 evaluation work as for
    :class:`ScoreUNet`; diffusers embeds the timestep in float32 whatever the dtype.
    ``unet_kwargs`` go to ``UNet2DModel`` unchanged (e.g. ``layers_per_block``,
    ``down_block_types``); the checkpoint stores them in :attr:`config`.
    """

    TIMESTEP_SCALE = 250.0

    def __init__(
        self,
        in_channels: int = 1,
        block_out_channels: Sequence[int] = (32, 64, 128, 256),
        sigma_data: float = 0.5,
        data_mean: float = 0.0,
        **unet_kwargs,
    ):
        super().__init__(sigma_data, data_mean)
        try:
            from diffusers import UNet2DModel
            from diffusers.models.attention_processor import AttnProcessor
        except ImportError as err:  # pinned in pyproject.toml; say what is missing
            raise ImportError(f"the diffusers_unet2d architecture needs diffusers ({err})") from err
        self.config = dict(
            architecture="diffusers_unet2d",
            in_channels=int(in_channels),
            block_out_channels=[int(c) for c in block_out_channels],
            sigma_data=float(sigma_data),
            data_mean=float(data_mean),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in unet_kwargs.items()},
        )
        self.levels = len(block_out_channels)
        self.unet = UNet2DModel(
            in_channels=int(in_channels),
            out_channels=int(in_channels),
            block_out_channels=tuple(int(c) for c in block_out_channels),
            **unet_kwargs,
        )
        for module in self.unet.modules():  # UNet2DModel has no set_attn_processor
            if hasattr(module, "set_processor"):
                module.set_processor(AttnProcessor())
                # diffusers "upcasts" the softmax to float32, a half-precision guard that would
                # round float64 evaluations (Hessians, finite differences) to float32
                module.upcast_softmax = module.upcast_attention = False
        last = self.unet.conv_out  # start at F = 0 (the Gaussian score), as ScoreUNet does
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return self.unet(x_in, self.TIMESTEP_SCALE * c_noise).sample


#: the architectures a ``network`` config may name (key ``architecture``; default "unet")
ARCHITECTURES = {"unet": ScoreUNet, "diffusers_unet2d": DiffusersScoreUNet}


def build_score_network(**kwargs) -> _PreconditionedScore:
    """The network a ``net_kwargs`` dict describes: ``architecture`` picks the class
    (:data:`ARCHITECTURES`, default "unet" = :class:`ScoreUNet`), the rest are its arguments."""
    arch = kwargs.pop("architecture", "unet")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown score-network architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


# ======================================================================= prior
class ScoreNetworkPrior(NetworkPrior):
    """A trained score network (:class:`ScoreUNet` or :class:`DiffusersScoreUNet`) on a VE
    schedule, behind the DiffusionPrior interface."""

    def __init__(
        self,
        net: _PreconditionedScore,
        schedule: VESchedule,
        image_shape: tuple[int, int, int],
        name: str = "scorenet",
        metadata: dict | None = None,
        data_statistics: dict | None = None,
    ):
        if len(image_shape) != 3 or image_shape[0] != net.config["in_channels"]:
            raise ValueError(
                f"image_shape {image_shape} does not match the network's {net.config['in_channels']} channels"
            )
        div = 2 ** (net.levels - 1)
        if image_shape[1] % div or image_shape[2] % div:
            raise ValueError(f"image height and width must be divisible by {div}, got {image_shape}")
        self._setup(net)
        self.schedule = schedule
        self.image_shape = tuple(int(s) for s in image_shape)
        self.name = name
        self.metadata = dict(metadata or {})
        # the training data's mean and (co)variance: p_T of P eq. 7 (priors/terminal.py)
        self._set_data_statistics(data_statistics, f"score network {name!r}")

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """s_θ(x, σ) ≈ ∇log p_σ(x); computed in the network's dtype, returned in x's."""
        self._check(x)
        sig = sigma_batch(sigma, x)
        out = self.net(x.to(self.dtype), sig.to(self.dtype))
        return out.to(x.dtype)

    def defining_values(self) -> dict:
        """The weights and the network's configuration (σ_d and the data mean live there, not in the weights)."""
        return {"net": self.net, "config": self.net.config}

    def at_shape(self, image_shape: tuple[int, int, int]) -> ScoreNetworkPrior:
        """The same (convolutional) network on images of another size, sharing its weights: how the demo
        runs a network trained on 16×16 crops on 64×64 images."""
        if tuple(image_shape) == tuple(self.image_shape):
            return self
        other = ScoreNetworkPrior(self.net, self.schedule, image_shape, self.name, self.metadata, self.data_statistics)
        other.terminal_density = self.terminal_density  # statistics of another shape: pooled per channel
        return other

    def state(self) -> dict:
        """Plain tensors and values: what :meth:`save` writes and :meth:`from_state` reads."""
        return {
            "kind": "score_network",
            "name": self.name,
            "net_kwargs": dict(self.net.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "image_shape": list(self.image_shape),
            "schedule": self.schedule.to_dict(),
            "metadata": self.metadata,
            "data_statistics": self.data_statistics,
        }

    def save(self, path: str | Path) -> None:
        """Write the prior (atomically) as a ``kind="score_network"`` torch checkpoint."""
        from prior_landscape.io.artefacts import atomic_output

        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ScoreNetworkPrior:
        """Load a checkpoint written by :meth:`save`; ValueError if ``path`` holds anything else."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # not a torch file, or unpicklable content
            raise ValueError(f"{path} is not a score-network checkpoint: cannot be read by torch.load ({exc})") from exc
        return cls.from_state(state, source=str(path)).to(device)

    @classmethod
    def from_state(cls, state, source: str = "the state") -> ScoreNetworkPrior:
        """The prior from the dict :meth:`save` writes (``source`` names it in errors), on the CPU."""
        if not isinstance(state, dict) or state.get("kind") != "score_network":
            kind = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{source} does not hold a score-network prior (kind={kind!r})")
        with torch.random.fork_rng(devices=[]):  # the init is overwritten; leave the global RNG alone
            net = build_score_network(**state["net_kwargs"])
        net.load_state_dict(state["state_dict"])
        return cls(
            net,
            schedule_from_config(state["schedule"]),
            tuple(state["image_shape"]),
            state.get("name", "scorenet"),
            state.get("metadata", {}),
            state.get("data_statistics"),  # absent from priors saved before it was stored: P's p_T
        )
