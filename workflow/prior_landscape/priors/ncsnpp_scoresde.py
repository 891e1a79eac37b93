"""score_sde's NCSN++ (Song et al. 2021), written here for inference on its released weights.

The ``ffhq256`` prior of P is score_sde's ``ve/ffhq_256_ncsnpp_continuous``
checkpoint. deepinv's ``NCSNpp`` is EDM's re-implementation ("SongUNet"): it
has another module layout, GroupNorm with 32 groups everywhere, no
``input_skip`` / ``output_skip`` pyramids and no FIR-resampling BigGAN blocks
as score_sde configures them, so it cannot take these weights. This module is
an independent implementation, from the architecture description of Song et al.
(2021, App. H) and the layout of score_sde's checkpoints, of the same network:

* the modules live in one ``all_modules`` ``ModuleList``, in the order the
  checkpoint's ``all_modules.N.*`` keys expect, with the same sub-module names
  (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0`` …, ``Conv2d_0``, ``W``),
  so a score_sde state dict loads with ``strict=True``;
* noise conditioning: Gaussian Fourier features of log σ (``fourier_scale`` 16,
  sin then cos), two dense layers with a swish between them; every residual
  block adds ``Dense_0(swish(temb))`` after its first convolution;
* residual blocks "biggan" (FIR up/down-sampling of both branches, 1×1 skip
  when the shape changes) or "ddpm" (NIN skip), GroupNorm with
  ``min(C // 4, 32)`` groups and eps 1e-6, ``(x + h)/√2`` when ``skip_rescale``;
* self-attention over all positions with 1×1 "NIN" projections;
* progressive input pyramid (``input_skip``: FIR-downsampled image combined by
  a 1×1 conv; ``residual``) and output pyramid (``output_skip``: per-level
  GroupNorm → swish → 3×3 conv to the image channels, FIR-upsampled and summed);
* inputs in [0, 1] are mapped to [−1, 1] inside the network when the data are
  not ``centered`` (score_sde's convention), σ stays in the [0, 1] data scale,
  and the output is divided by σ when ``scale_by_sigma``: the forward pass
  returns the score ∇log p_σ(x) of the VE SDE directly.

FIR resampling (``upfirdn2d``: zero insertion, padding, convolution with the
normalised separable kernel, decimation) is implemented with plain
``conv2d`` / ``conv_transpose2d``, so everything runs on CPU and GPU, in float32
or float64, and supports reverse mode, double backward, ``torch.func.jvp`` and
``vmap`` (no in-place operation touches an activation).

Dropout is not built: the module is for inference on released weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ScoreSDENCSNppConfig",
    "FFHQ256_NCSNPP_CONTINUOUS",
    "ScoreSDENCSNpp",
    "upfirdn2d",
]


@dataclass(frozen=True)
class ScoreSDENCSNppConfig:
    """The ``config.model`` / ``config.data`` fields of a score_sde NCSN++ config that shape the network.

    Defaults are score_sde's ``configs/ve/ffhq_256_ncsnpp_continuous.py`` (on top
    of ``default_lsun_configs``): 65.6 M parameters.
    """

    image_size: int = 256
    num_channels: int = 3
    centered: bool = False
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resamp_with_conv: bool = True
    conditional: bool = True
    fir: bool = True
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "output_skip"
    progressive_input: str = "input_skip"
    progressive_combine: str = "sum"
    attention_type: str = "ddpm"
    init_scale: float = 0.0
    fourier_scale: float = 16.0
    conv_size: int = 3
    embedding_type: str = "fourier"
    nonlinearity: str = "swish"
    scale_by_sigma: bool = True
    sigma_min: float = 0.01
    sigma_max: float = 348.0
    num_scales: int = 2000

    def __post_init__(self):
        checks = {
            "resblock_type": ("biggan", "ddpm"),
            "progressive": ("none", "output_skip", "residual"),
            "progressive_input": ("none", "input_skip", "residual"),
            "progressive_combine": ("sum", "cat"),
            "embedding_type": ("fourier",),
            "attention_type": ("ddpm",),
            "nonlinearity": ("swish", "elu", "relu", "lrelu"),
        }
        for key, allowed in checks.items():
            value = getattr(self, key)
            if str(value).lower() not in allowed:
                extra = (
                    " (positional embeddings belong to discrete-time checkpoints, which this loader does not support)"
                    if key == "embedding_type"
                    else ""
                )
                raise ValueError(f"NCSN++ config: {key}={value!r} is not one of {allowed}{extra}")
        if self.conv_size != 3:
            raise ValueError(f"NCSN++ config: conv_size={self.conv_size} is not supported (score_sde uses 3)")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2^{len(self.ch_mult) - 1}")

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> ScoreSDENCSNppConfig:
        """From a flat mapping, or from score_sde's nested ``{"model": {...}, "data": {...}}`` layout.

        Unknown keys (training, sampling, optimisation fields) are ignored.
        """
        flat: dict = {}
        if "model" in cfg and isinstance(cfg["model"], Mapping):
            flat.update(cfg.get("data", {}) or {})
            flat.update(cfg["model"])
        else:
            flat.update(cfg)
        names = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in flat.items() if k in names}
        for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
            if k in kwargs:
                kwargs[k] = tuple(int(v) for v in kwargs[k])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("ch_mult", "attn_resolutions", "fir_kernel"):
            d[k] = list(d[k])
        return d


#: score_sde ``configs/ve/ffhq_256_ncsnpp_continuous.py`` (P's ``ffhq256`` prior).
FFHQ256_NCSNPP_CONTINUOUS = ScoreSDENCSNppConfig()


# ================================================================== FIR resampling
def _fir_kernel(k: Sequence[float], gain: float, dtype, device) -> torch.Tensor:
    k = torch.as_tensor(list(k), dtype=torch.float64)
    k2 = torch.outer(k, k) if k.ndim == 1 else k
    k2 = k2 / k2.sum() * gain
    return k2.to(dtype=dtype, device=device)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad (pad[0] before, pad[1] after, both axes), convolve, decimate.

    The convolution is a true convolution with ``kernel`` (correlation with the
    flipped kernel), per channel. Negative pads crop.
    """
    B, C, H, W = x.shape
    if up > 1:
        x = x.reshape(B, C, H, 1, W, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(B, C, H * up, W * up)
    p0, p1 = pad
    if p0 or p1:
        x = F.pad(x, (p0, p1, p0, p1))
    kh, kw = kernel.shape
    w = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(C, 1, kh, kw)
    x = F.conv2d(x, w, groups=C)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _upsample_2d(x, fir_kernel, factor=2):
    k = _fir_kernel(fir_kernel, factor**2, x.dtype, x.device)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def _downsample_2d(x, fir_kernel, factor=2):
    k = _fir_kernel(fir_kernel, 1.0, x.dtype, x.device)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def _naive_upsample_2d(x, factor=2):
    B, C, H, W = x.shape
    return x.reshape(B, C, H, 1, W, 1).expand(B, C, H, factor, W, factor).reshape(B, C, H * factor, W * factor)


def _naive_downsample_2d(x, factor=2):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // factor, factor, W // factor, factor).mean(dim=(3, 5))


class _FIRConv2d(nn.Module):
    """3×3 convolution fused with FIR up- or down-sampling by 2 (parameters ``weight``, ``bias``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, up: bool, down: bool, fir_kernel: Sequence[int]):
        super().__init__()
        if up == down:
            raise ValueError("exactly one of up / down")
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.up, self.down = up, down
        self.fir_kernel = tuple(fir_kernel)

    def forward(self, x):
        w = self.weight.to(x.dtype)
        kw = w.shape[-1]
        factor = 2
        if self.up:
            k = _fir_kernel(self.fir_kernel, factor**2, x.dtype, x.device)
            p = (k.shape[0] - factor) - (kw - 1)
            # transposed convolution with stride 2 of the spatially flipped kernel, then FIR filtering
            wt = torch.flip(w, [2, 3]).transpose(0, 1)
            x = F.conv_transpose2d(x, wt, stride=factor)
            x = upfirdn2d(x, k, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))
        else:
            k = _fir_kernel(self.fir_kernel, 1.0, x.dtype, x.device)
            p = (k.shape[0] - factor) + (kw - 1)
            x = upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))
            x = F.conv2d(x, w, stride=factor)
        return x + self.bias.to(x.dtype)[None, :, None, None]


# ======================================================================= layers
def _group_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(c // 4, 32), num_channels=c, eps=1e-6)


def _conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=k // 2 if padding is None else padding)


def _activation(name: str):
    name = name.lower()
    return {
        "swish": F.silu,
        "elu": F.elu,
        "relu": F.relu,
        "lrelu": lambda x: F.leaky_relu(x, 0.2),
    }[name]


class _FourierFeatures(nn.Module):
    """Gaussian Fourier projection of log σ: [sin(2π W log σ), cos(2π W log σ)] (``W`` frozen)."""

    def __init__(self, size: int, scale: float):
        super().__init__()
        self.W = nn.Parameter(torch.randn(size) * scale, requires_grad=False)

    def forward(self, s):
        ang = s[:, None] * self.W.to(s.dtype)[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class _NIN(nn.Module):
    """1×1 "network in network" projection: y = xᵀW + b over channels (``W`` is (C_in, C_out))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(c_in, c_out))
        self.b = nn.Parameter(torch.zeros(c_out))

    def forward(self, x):
        y = torch.einsum("bchw,cd->bdhw", x, self.W.to(x.dtype))
        return y + self.b.to(x.dtype)[None, :, None, None]


class _Attention(nn.Module):
    def __init__(self, c: int, skip_rescale: bool):
        super().__init__()
        self.GroupNorm_0 = _group_norm(c)
        self.NIN_0 = _NIN(c, c)
        self.NIN_1 = _NIN(c, c)
        self.NIN_2 = _NIN(c, c)
        self.NIN_3 = _NIN(c, c)
        self.skip_rescale = skip_rescale

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        q = self.NIN_0(h).reshape(B, C, H * W)
        k = self.NIN_1(h).reshape(B, C, H * W)
        v = self.NIN_2(h).reshape(B, C, H * W)
        logits = torch.bmm(q.transpose(1, 2), k) * (C**-0.5)  # (B, HW_query, HW_key)
        w = torch.softmax(logits, dim=-1)
        h = torch.bmm(v, w.transpose(1, 2)).reshape(B, C, H, W)
        h = self.NIN_3(h)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class _ResBlockLayers(nn.Module):
    """The layers both residual blocks share, under score_sde's names (the checkpoint's keys):
    GroupNorm → act → Conv_0 (+ Dense_0 of the time embedding) → GroupNorm → act → Conv_1."""

    def __init__(self, act, c_in, c_out, temb_dim, skip_rescale):
        super().__init__()
        c_out = c_out or c_in
        self.GroupNorm_0 = _group_norm(c_in)
        self.Conv_0 = _conv(c_in, c_out, 3)
        self.Dense_0 = nn.Linear(temb_dim, c_out)
        self.GroupNorm_1 = _group_norm(c_out)
        self.Conv_1 = _conv(c_out, c_out, 3)
        self.act, self.c_in, self.c_out, self.skip_rescale = act, c_in, c_out, skip_rescale

    def _residual(self, h, temb):
        """Conv_0 output h → the residual branch's output."""
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        return self.Conv_1(self.act(self.GroupNorm_1(h)))

    def _sum(self, x, h):
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class _ResBlockBigGAN(_ResBlockLayers):
    def __init__(self, act, c_in, c_out, temb_dim, up, down, fir, fir_kernel, skip_rescale):
        super().__init__(act, c_in, c_out, temb_dim, skip_rescale)
        c_out = self.c_out
        if c_in != c_out or up or down:
            self.Conv_2 = _conv(c_in, c_out, 1)
        self.up, self.down = up, down
        self.fir, self.fir_kernel = fir, tuple(fir_kernel)

    def _resample(self, t):
        if self.up:
            return _upsample_2d(t, self.fir_kernel) if self.fir else _naive_upsample_2d(t)
        if self.down:
            return _downsample_2d(t, self.fir_kernel) if self.fir else _naive_downsample_2d(t)
        return t

    def forward(self, x, temb=None):
        h = self._resample(self.act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self._residual(self.Conv_0(h), temb)
        if self.c_in != self.c_out or self.up or self.down:
            x = self.Conv_2(x)
        return self._sum(x, h)


class _ResBlockDDPM(_ResBlockLayers):
    def __init__(self, act, c_in, c_out, temb_dim, skip_rescale):
        super().__init__(act, c_in, c_out, temb_dim, skip_rescale)
        if c_in != self.c_out:
            self.NIN_0 = _NIN(c_in, self.c_out)

    def forward(self, x, temb=None):
        h = self._residual(self.Conv_0(self.act(self.GroupNorm_0(x))), temb)
        if x.shape[1] != self.c_out:
            x = self.NIN_0(x)
        return self._sum(x, h)


class _Resample(nn.Module):
    """score_sde's Upsample / Downsample layers (with or without a convolution, FIR or not)."""

    def __init__(self, c_in, c_out, up, with_conv, fir, fir_kernel):
        super().__init__()
        c_out = c_out or c_in
        self.up, self.with_conv, self.fir, self.fir_kernel = up, with_conv, fir, tuple(fir_kernel)
        if with_conv:
            if fir:
                self.Conv2d_0 = _FIRConv2d(c_in, c_out, 3, up=up, down=not up, fir_kernel=fir_kernel)
            elif up:
                self.Conv_0 = _conv(c_in, c_out, 3)
            else:
                self.Conv_0 = _conv(c_in, c_out, 3, stride=2, padding=0)

    def forward(self, x):
        if self.fir:
            if self.with_conv:
                return self.Conv2d_0(x)
            return _upsample_2d(x, self.fir_kernel) if self.up else _downsample_2d(x, self.fir_kernel)
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            return self.Conv_0(x) if self.with_conv else x
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class _Combine(nn.Module):
    def __init__(self, c1, c2, method):
        super().__init__()
        self.Conv_0 = _conv(c1, c2, 1)
        self.method = method

    def forward(self, x, y):
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


# ======================================================================= network
@dataclass
class _Step:
    op: str
    args: dict = field(default_factory=dict)


class ScoreSDENCSNpp(nn.Module):
    """score_sde's NCSN++ for continuous VE SDEs: ``forward(x, sigma)`` → ∇log p_σ(x).

    ``x``: (B, C, H, W) in [0, 1] (or [−1, 1] if ``config.centered``); ``sigma``:
    (B,) noise standard deviations in the same data scale. The module's
    ``state_dict`` has score_sde's layout without the ``module.`` prefix (and
    without the unused discrete ``sigmas`` buffer).
    """

    def __init__(self, config: ScoreSDENCSNppConfig = FFHQ256_NCSNPP_CONTINUOUS):
        super().__init__()
        cfg = config
        self.config = cfg
        self.act = act = _activation(cfg.nonlinearity)
        nf, ch_mult = cfg.nf, tuple(cfg.ch_mult)
        n_res = len(ch_mult)
        resolutions = [cfg.image_size // 2**i for i in range(n_res)]
        attn = set(int(r) for r in cfg.attn_resolutions)
        temb_dim = 4 * nf
        combine = cfg.progressive_combine.lower()
        prog, prog_in = cfg.progressive.lower(), cfg.progressive_input.lower()
        biggan = cfg.resblock_type.lower() == "biggan"
        fir, fk = cfg.fir, tuple(cfg.fir_kernel)
        channels = cfg.num_channels

        mods: list[nn.Module] = []
        plan: list[_Step] = []

        def add(module: nn.Module) -> int:
            mods.append(module)
            return len(mods) - 1

        def resblock(c_in, c_out=None, up=False, down=False):
            if biggan:
                return _ResBlockBigGAN(act, c_in, c_out, temb_dim, up, down, fir, fk, cfg.skip_rescale)
            if up or down:
                raise AssertionError("ddpm blocks do not resample")
            return _ResBlockDDPM(act, c_in, c_out, temb_dim, cfg.skip_rescale)

        # noise embedding
        self._i_fourier = add(_FourierFeatures(nf, cfg.fourier_scale))
        if cfg.conditional:
            self._i_dense = (add(nn.Linear(2 * nf, temb_dim)), add(nn.Linear(temb_dim, temb_dim)))
        else:
            self._i_dense = None

        # encoder
        pyramid_ch = channels
        plan.append(_Step("conv_in", dict(i=add(_conv(channels, nf, 3)))))
        hs_c = [nf]
        c = nf
        for lvl in range(n_res):
            for _ in range(cfg.num_res_blocks):
                out = nf * ch_mult[lvl]
                i = add(resblock(c, out))
                c = out
                j = add(_Attention(c, cfg.skip_rescale)) if resolutions[lvl] in attn else None
                plan.append(_Step("enc_block", dict(i=i, attn=j)))
                hs_c.append(c)
            if lvl != n_res - 1:
                if biggan:
                    i = add(resblock(c, down=True))
                else:
                    i = add(_Resample(c, None, False, cfg.resamp_with_conv, fir, fk))
                step = _Step("enc_down", dict(i=i, pyr=None, pyr_mode=prog_in))
                if prog_in == "input_skip":
                    step.args["pyr"] = add(_Combine(pyramid_ch, c, combine))
                    if combine == "cat":
                        c *= 2
                elif prog_in == "residual":
                    step.args["pyr"] = add(_Resample(pyramid_ch, c, False, True, fir, fk))
                    pyramid_ch = c
                plan.append(step)
                hs_c.append(c)

        # middle
        c = hs_c[-1]
        plan.append(
            _Step(
                "middle",
                dict(
                    a=add(resblock(c)),
                    attn=add(_Attention(c, cfg.skip_rescale)),
                    b=add(resblock(c)),
                ),
            )
        )

        # decoder
        pyr_ch = 0
        for lvl in reversed(range(n_res)):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                out = nf * ch_mult[lvl]
                blocks.append(add(resblock(c + hs_c.pop(), out)))
                c = out
            j = add(_Attention(c, cfg.skip_rescale)) if resolutions[lvl] in attn else None
            step = _Step(
                "dec_level",
                dict(blocks=blocks, attn=j, top=lvl == n_res - 1, norm=None, conv=None, pyr_up=None, up=None),
            )
            if prog != "none":
                if lvl == n_res - 1 or prog == "output_skip":
                    step.args["norm"] = add(_group_norm(c))
                    target = channels if prog == "output_skip" else c
                    step.args["conv"] = add(_conv(c, target, 3))
                    pyr_ch = target
                else:  # residual, lower levels
                    step.args["pyr_up"] = add(_Resample(pyr_ch, c, True, True, fir, fk))
                    pyr_ch = c
            if lvl != 0:
                up = resblock(c, up=True) if biggan else _Resample(c, None, True, cfg.resamp_with_conv, fir, fk)
                step.args["up"] = add(up)
            plan.append(step)
        if hs_c:
            raise AssertionError("unbalanced skip connections")
        if prog != "output_skip":
            plan.append(_Step("out", dict(norm=add(_group_norm(c)), conv=add(_conv(c, channels, 3)))))

        self.all_modules = nn.ModuleList(mods)
        self._plan = plan
        self._prog, self._prog_in = prog, prog_in

    # ------------------------------------------------------------------ forward
    def trainable_parameter_names(self) -> list[str]:
        """Parameters score_sde's EMA tracks (all but the frozen Fourier weights), in registration order."""
        return [n for n, p in self.named_parameters() if not n.startswith(f"all_modules.{self._i_fourier}.W")]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        M = self.all_modules
        act = self.act
        sigma = sigma.to(x.dtype)
        temb = M[self._i_fourier](torch.log(sigma))
        if self._i_dense is not None:
            temb = M[self._i_dense[1]](act(M[self._i_dense[0]](temb)))
        else:
            temb = None
        if not self.config.centered:
            x = 2 * x - 1.0
        pyramid_in = x if self._prog_in != "none" else None
        hs: list[torch.Tensor] = []
        h = None
        pyramid = None
        for step in self._plan:
            a = step.args
            if step.op == "conv_in":
                hs.append(M[a["i"]](x))
            elif step.op == "enc_block":
                h = M[a["i"]](hs[-1], temb)
                if a["attn"] is not None:
                    h = M[a["attn"]](h)
                hs.append(h)
            elif step.op == "enc_down":
                blk = M[a["i"]]
                h = blk(hs[-1], temb) if isinstance(blk, _ResBlockBigGAN) else blk(hs[-1])
                if a["pyr_mode"] == "input_skip":
                    pyramid_in = self._pyramid_down(pyramid_in)
                    h = M[a["pyr"]](pyramid_in, h)
                elif a["pyr_mode"] == "residual":
                    pyramid_in = M[a["pyr"]](pyramid_in)
                    pyramid_in = (pyramid_in + h) / math.sqrt(2.0) if self.config.skip_rescale else pyramid_in + h
                    h = pyramid_in
                hs.append(h)
            elif step.op == "middle":
                h = hs[-1]
                h = M[a["a"]](h, temb)
                h = M[a["attn"]](h)
                h = M[a["b"]](h, temb)
            elif step.op == "dec_level":
                for i in a["blocks"]:
                    h = M[i](torch.cat([h, hs.pop()], dim=1), temb)
                if a["attn"] is not None:
                    h = M[a["attn"]](h)
                if self._prog != "none":
                    if a["norm"] is not None:
                        branch = M[a["conv"]](act(M[a["norm"]](h)))
                        if a["top"] or self._prog == "residual":
                            pyramid = branch
                        else:  # output_skip below the top: upsample the pyramid and add
                            pyramid = self._pyramid_up(pyramid) + branch
                    else:  # residual
                        pyramid = M[a["pyr_up"]](pyramid)
                        pyramid = (pyramid + h) / math.sqrt(2.0) if self.config.skip_rescale else pyramid + h
                        h = pyramid
                if a["up"] is not None:
                    blk = M[a["up"]]
                    h = blk(h, temb) if isinstance(blk, _ResBlockBigGAN) else blk(h)
            elif step.op == "out":
                h = M[a["conv"]](act(M[a["norm"]](h)))
        if self._prog == "output_skip":
            h = pyramid
        if hs:
            raise AssertionError("unused skip connections")
        if self.config.scale_by_sigma:
            h = h / sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return h

    def _pyramid_down(self, t):
        if self.config.fir:
            return _downsample_2d(t, self.config.fir_kernel)
        return F.avg_pool2d(t, 2, stride=2)

    def _pyramid_up(self, t):
        if self.config.fir:
            return _upsample_2d(t, self.config.fir_kernel)
        return F.interpolate(t, scale_factor=2.0, mode="nearest")
