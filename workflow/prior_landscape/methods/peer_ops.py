"""What the two learned peers (BlindDPS, Kernel Diffusion) share besides the DDPM machinery: the
kernel canvas, the kernel normalisation, their forward models and the Wiener deconvolution.

Kernel canvas (docs/peers_design.md §0.3). Both codes diffuse a kernel *image* on an even canvas (64×64) and
recover the physical kernel by

    N(k) = clip((k + 1)/2, 0, ∞) / Σ clip((k + 1)/2, 0, ∞)                              (∗)

per sample (BlindDPS divides by the sum over its whole batch; ours is per image). The benchmark
asks for odd kernel sides K (demo 15): the canvas is K + 1 (demo 16), the K×K kernel sits at
rows/columns 1 … K so that its centre K//2 lands on the canvas centre (K + 1)//2, Kernel
Diffusion's psf2otf convention. Estimates go back to the benchmark as the K×K window of the
canvas that holds the most mass, renormalised (:func:`to_kernel_size`).

Forward models (docs/peers_design.md §0.4):

* :func:`convolve` — true convolution y = k ⊛ x, kernel centre at c//2 of a c×c canvas (odd or
  even), with the ``circular`` boundary (the demo test set's) or ``reflect`` (mirror without edge
  repeat, Kernel Diffusion's code; the photograph-scale protocols);
* :func:`correlate_zero` — BlindDPS's released operator: ``conv2d(x, k, padding='same')`` per
  channel, a cross-correlation with a zero boundary (for the even canvas PyTorch pads c/2 − 1
  before and c/2 after). It equals :func:`convolve` with the 180°-rotated kernel, up to a shift of
  one pixel on even canvases and the boundary (tests/test_peers.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prior_landscape.inverse.operators import kernel_otf

__all__ = [
    "canvas_size",
    "embed_kernel",
    "normalise_kernel",
    "kernel_image",
    "to_kernel_size",
    "convolve",
    "correlate_zero",
    "wiener",
]

BOUNDARIES = ("circular", "reflect")


def canvas_size(kernel_size: int) -> int:
    """The even canvas the kernel diffusion works on: K + 1 for an odd kernel side K."""
    if not (isinstance(kernel_size, int) and kernel_size >= 3 and kernel_size % 2 == 1):
        raise ValueError(f"kernel_size must be an odd integer ≥ 3, got {kernel_size!r}")
    return kernel_size + 1


def embed_kernel(h: torch.Tensor, canvas: int) -> torch.Tensor:
    """(B, K, K) kernels → (B, c, c): zero row and column at the top/left (centre K//2 → c//2)."""
    K = h.shape[-1]
    if h.dim() != 3 or h.shape[-2] != K or K % 2 != 1 or canvas < K + 1 or canvas % 2:
        raise ValueError(f"need odd (B, K, K) kernels and an even canvas > K, got {tuple(h.shape)} and {canvas}")
    off = canvas // 2 - K // 2
    return F.pad(h, (off, canvas - K - off, off, canvas - K - off))


def normalise_kernel(k: torch.Tensor) -> torch.Tensor:
    """(∗): clip((k + 1)/2, 0) / Σ, per sample, of kernel images in [−1, 1] (B, 1, c, c) → (B, c, c)."""
    u = ((k + 1.0) / 2.0).clamp_min(0.0).flatten(1)
    return (u / u.sum(1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)).reshape(k.shape[0], *k.shape[-2:])


def kernel_image(h: torch.Tensor) -> torch.Tensor:
    """The [0, 1] image a kernel prior is trained on: h / max h (max-normalised, docs/peers_design.md §0.3),
    shape (B, 1, c, c)."""
    return (h / h.flatten(1).amax(1)[:, None, None].clamp_min(torch.finfo(h.dtype).tiny))[:, None]


def to_kernel_size(k: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, c, c) canvas kernels → the size×size window of most mass, renormalised, and the mass kept."""
    c = k.shape[-1]
    best, best_mass = None, None
    for r in range(c - size + 1):
        for s in range(c - size + 1):
            win = k[:, r : r + size, s : s + size]
            mass = win.flatten(1).sum(1)
            if best is None:
                best, best_mass = win, mass
            else:
                better = mass > best_mass
                best = torch.where(better[:, None, None], win, best)
                best_mass = torch.maximum(mass, best_mass)
    return best / best_mass[:, None, None].clamp_min(torch.finfo(k.dtype).tiny), best_mass


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary {boundary!r} not supported: use one of {BOUNDARIES}")
    return boundary


def convolve(x: torch.Tensor, k: torch.Tensor, boundary: str = "circular") -> torch.Tensor:
    """True convolution of (B, C, H, W) images by per-image (B, c, c) kernels, centre at c//2:
    y[i] = Σ_m k[m] x[i − (m − c//2)], with a ``circular`` or ``reflect`` boundary (FFT of the
    reflect-padded image, cropped: Kernel Diffusion's code). Differentiable in x and k."""
    _check_boundary(boundary)
    p = k.shape[-1] // 2 if boundary == "reflect" else 0
    xp = F.pad(x, (p, p, p, p), mode="reflect") if p else x
    H, W = xp.shape[-2:]
    out = torch.fft.irfft2(torch.fft.rfft2(xp) * kernel_otf(k.to(x.dtype), (H, W)), s=(H, W))
    return out[..., p : H - p, p : W - p] if p else out


def correlate_zero(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """BlindDPS's released forward model: per-channel ``conv2d(x, k, padding='same')`` (a
    cross-correlation, zero boundary) with per-image kernels (B, c, c); PyTorch's 'same' pads
    (c − 1)//2 before and c//2 after, written out here."""
    B, C, H, W = x.shape
    c = k.shape[-1]
    weight = k.to(x.dtype).repeat_interleave(C, 0)[:, None]  # (B·C, 1, c, c)
    xp = F.pad(x.reshape(1, B * C, H, W), ((c - 1) // 2, c // 2, (c - 1) // 2, c // 2))
    return F.conv2d(xp, weight, groups=B * C).reshape(B, C, H, W)


def wiener(y: torch.Tensor, k: torch.Tensor, nsr: float, boundary: str = "circular") -> torch.Tensor:
    """Wiener deconvolution F⁻¹[conj(K̂) Ŷ / (|K̂|² + nsr)] of (B, C, H, W) images by (B, c, c) kernels;
    ``reflect``: of the image reflect-padded by c (Kernel Diffusion pads by its kernel size), cropped."""
    _check_boundary(boundary)
    p = min(k.shape[-1], y.shape[-1] - 1) if boundary == "reflect" else 0
    yp = F.pad(y, (p, p, p, p), mode="reflect") if p else y
    H, W = yp.shape[-2:]
    otf = kernel_otf(k.to(y.dtype), (H, W))
    out = torch.fft.irfft2(torch.fft.rfft2(yp) * otf.conj() / (otf.abs() ** 2 + nsr), s=(H, W))
    return out[..., p : H - p, p : W - p] if p else out
