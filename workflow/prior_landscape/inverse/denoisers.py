"""Learned denoisers for Algorithm 2 (P Appendix B, Fig. 13): DRUNet (Zhang et al., DPIR) as
distributed by deepinv, used as the proximal operator of an image prior.

P treats the pre-trained DRUNet as prox_{γ_x σ_y² q} and runs Douglas–Rachford on the image
(:func:`prior_landscape.inverse.algorithms.algorithm2`): ``DRUNetDenoiser(load_drunet(path), sigma)``
is the denoiser it takes; :class:`TweedieDenoiser` is the demo's stand-in, the MMSE denoiser
of a diffusion prior.

Channels. The workflow reads the Köhler shots with the network's own channel count
(``deblur.kohler.denoiser.channels``), so images and weights normally match. Otherwise
:class:`DRUNetDenoiser` adapts, and says how in its docstring: a grey image given to a
colour DRUNet is replicated on the three channels and the three outputs are averaged (the
demo's grey stand-in photographs with ``drunet-color``); a colour image given to a grey
DRUNet is denoised channel by channel. Any other mismatch is an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from prior_landscape.io.archive import sha256_file

__all__ = ["load_drunet", "drunet_from_config", "DRUNetDenoiser", "TweedieDenoiser", "drunet_channels",
           "state_dict_digest", "DRUNET_NC"]  # fmt: skip

DRUNET_NC = (64, 128, 256, 512)  # deepinv's (and the released weights') widths
_MULTIPLE = 8  # DRUNet downsamples three times by 2


def state_dict_digest(net: torch.nn.Module) -> str:
    """sha256 of a network's state dict (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_drunet(
    path: str | Path,
    *,
    channels: int = 3,
    nc: Sequence[int] = DRUNET_NC,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """DRUNet with the weights file ``path`` (a state dict, e.g. deepinv's
    ``drunet_deepinv_color_finetune_22k.pth``: catalogue entries drunet-color / drunet-gray),
    ``channels`` in and out (+ deepinv's noise-level map), widths ``nc``; in eval mode, its
    weights frozen (no grad), on ``device``.

    The returned module carries ``weights_path`` and ``weights_sha256`` (the file's digest:
    :class:`DRUNetDenoiser` puts it in resume fingerprints). Weights that do not fit the
    architecture (another ``nc`` or ``channels``), or a file that is not a state dict, raise a
    ValueError naming the file.
    """
    from deepinv.models import DRUNet

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DRUNet weights {path} do not exist (download them: snakemake downloads)")
    if channels not in (1, 3):
        raise ValueError(f"DRUNet channels must be 1 or 3, got {channels}")
    nc = [int(c) for c in nc]
    if len(nc) != 4 or min(nc) < 1:
        raise ValueError(f"DRUNet nc must be 4 positive widths, got {nc}")
    arch = f"DRUNet(in_channels={channels}, out_channels={channels}, nc={nc})"
    try:
        net = DRUNet(in_channels=channels, out_channels=channels, nc=nc, pretrained=str(path))
    except RuntimeError as err:
        msg = " ".join(str(err).strip().split())
        if "state_dict" in msg or "size mismatch" in msg or "key(s)" in msg:  # load_state_dict(strict=True)
            raise ValueError(
                f"the DRUNet weights {path} do not fit {arch} (check the denoiser's channels and nc): {msg[:600]}"
            ) from err
        raise ValueError(f"the DRUNet weights {path} could not be read as a state dict: {msg[:600]}") from err
    except Exception as err:  # noqa: BLE001 - torch.load of a file that is no state dict fails in many ways
        raise ValueError(f"the DRUNet weights {path} could not be read as a state dict: {err}") from err
    net.eval()
    net.requires_grad_(False)
    net.to(device)
    net.weights_path = str(path)
    net.weights_sha256 = sha256_file(path)
    return net


def drunet_from_config(path: str | Path, spec: dict, key: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """:func:`load_drunet` as a configuration entry names it (``{kind: drunet, resource, channels, nc}``:
    ``deblur.kohler.denoiser``, a benchmark entry's ``denoiser``); errors start with ``key``, its place in
    the configuration."""
    try:
        return load_drunet(path, channels=spec["channels"], nc=spec.get("nc", DRUNET_NC), device=device)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from err


def drunet_channels(net: torch.nn.Module) -> int:
    """The image channels a DRUNet takes (its head sees them plus the noise-level map)."""
    return int(net.m_head.weight.shape[1]) - 1


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    H, W = x.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph == 0 and pw == 0:
        return x, H, W
    # reflect needs the pad below the size; tiny images fall back to replicate
    mode = "reflect" if ph < H and pw < W else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), H, W


class DRUNetDenoiser:
    """D(x) = net(x, σ) for x [B, C, H, W] in [0, 1]-scale images, for Algorithm 2.

    H and W are padded at the bottom/right to a multiple of 8 (reflect; replicate when an image
    is smaller than the pad) and the output is cropped back: DRUNet downsamples three times.
    The network runs on its own device and dtype (float32); the result comes back on x's.
    Channels: see the module docstring (grey x with a colour net: replicate, then average;
    colour x with a grey net: channel by channel).

    :meth:`fingerprint` covers the architecture, σ and the sha256 of the weights file (or of
    the state dict when the net was not loaded from a file), so a resumed run with other
    weights starts afresh (:mod:`prior_landscape.runs`).
    """

    def __init__(self, net: torch.nn.Module, sigma: float):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.net, self.sigma = net, float(sigma)
        self.channels = drunet_channels(net)
        self._weights = getattr(net, "weights_sha256", None) or f"state:{state_dict_digest(net)}"

    def fingerprint(self) -> str:
        return f"drunet|channels={self.channels}|sigma={self.sigma!r}|weights={self._weights}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be (B, C, H, W), got {tuple(x.shape)}")
        B, C = x.shape[:2]
        c_net = self.channels
        param = next(self.net.parameters())
        v = x.to(device=param.device, dtype=param.dtype)
        if C == c_net:
            inp = v
        elif C == 1 and c_net == 3:
            inp = v.expand(B, 3, *v.shape[-2:])
        elif c_net == 1:
            inp = v.reshape(B * C, 1, *v.shape[-2:])
        else:
            raise ValueError(f"a {c_net}-channel DRUNet cannot denoise {C}-channel images")
        padded, H, W = _pad_to_multiple(inp, _MULTIPLE)
        with torch.no_grad():
            out = self.net(padded, self.sigma)[..., :H, :W]
        if C != c_net:
            out = out.mean(1, keepdim=True) if c_net == 3 else out.reshape(B, C, H, W)
        return out.to(device=x.device, dtype=x.dtype)


class TweedieDenoiser:
    """D(x) = x + σ² ∇log p_σ(x): the MMSE denoiser of a diffusion prior at noise level σ (Tweedie),
    evaluated on the prior's device; the demo's stand-in for DRUNet in Algorithm 2. Matching
    D = prox_{γ_x σ_y² q} suggests σ ≈ σ_y √γ_x."""

    def __init__(self, prior, sigma: float):
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.prior, self.sigma = prior, float(sigma)

    def fingerprint(self) -> str:
        return f"tweedie|sigma={self.sigma!r}|prior={self.prior.fingerprint()}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma**2 * self.prior.score(x, self.sigma).to(x.dtype)
