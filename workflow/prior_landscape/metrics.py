"""Image and kernel metrics of blind deblurring.

* PSNR and SSIM through deepinv's metrics (``deepinv.metric`` = :mod:`deepinv.loss.metric`) (images in [0, 1] by default; one
  value per image, no reduction).
* MNC, the maximum of normalised cross-correlation (Hu & Yang 2012, used by
  Kernel Diffusion, seed 002, Table 2, and BlindDPS):
  MNC(k̂, k) = max_s (k̂ ⋆ k)[s] / (‖k̂‖₂ ‖k‖₂), the maximum over every integer
  shift s of the full (zero-padded) cross-correlation. It is ≤ 1 (Cauchy–Schwarz)
  and = 1 exactly when k̂ is a positive multiple of a shifted copy of k.
* Kernel error KE = ‖k̂ − k‖₂ after alignment by the best integer shift
  (slides, seed 003): on the zero-padded plane a shift keeps the norm, so
  min_s ‖S_s k̂ − k‖² = ‖k̂‖² + ‖k‖² − 2 max_s (k̂ ⋆ k)[s]; optionally also over
  the 180° rotation of k̂ (the Zernike family's sign ambiguity, see :mod:`.kernels`).
* :func:`no_blur_collapse`: the "kernel collapses to identity" failure (P §5):
  the estimated kernel lies within ``tol`` (aligned kernel error) of the Dirac or
  of the family's smallest kernel (the Airy pattern for Zernike PSFs).

Kernels are (k, k) or batched (B, k, k), of any odd or even sizes (k̂ and k may
differ in size); centres at size // 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "psnr",
    "ssim",
    "cross_correlation",
    "mnc",
    "kernel_error",
    "no_blur_collapse",
    "collapse_distance",
    "aligned_psnr",
    "centred_kernels",
]


def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_pixel: float = 1.0, min_pixel: float = 0.0) -> torch.Tensor:
    """PSNR in dB per image (B,), deepinv.metric.PSNR (10 log10(range² / MSE); 80 dB cap at MSE = 0)."""
    from deepinv.loss.metric import PSNR

    return PSNR(max_pixel=max_pixel, min_pixel=min_pixel)(x_hat.detach(), x.detach())


def ssim(x_hat: torch.Tensor, x: torch.Tensor, max_pixel: float = 1.0, min_pixel: float = 0.0, **torchmetric_kwargs) -> torch.Tensor:
    """SSIM per image (B,), deepinv.metric.SSIM (torchmetrics, Gaussian window 11, σ 1.5 unless overridden)."""
    from deepinv.loss.metric import SSIM

    return SSIM(max_pixel=max_pixel, min_pixel=min_pixel, torchmetric_kwargs=torchmetric_kwargs or None)(
        x_hat.detach(), x.detach()
    )


def _batch(k_hat: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    single = k_hat.dim() == 2 and k.dim() == 2
    a = k_hat[None] if k_hat.dim() == 2 else k_hat
    b = k[None] if k.dim() == 2 else k
    if a.dim() != 3 or b.dim() != 3:
        raise ValueError(f"kernels must be (k, k) or (B, k, k), got {tuple(k_hat.shape)} and {tuple(k.shape)}")
    B = max(a.shape[0], b.shape[0])
    if a.shape[0] not in (1, B) or b.shape[0] not in (1, B):
        raise ValueError(f"batch sizes differ: {a.shape[0]} vs {b.shape[0]}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.expand(B, -1, -1).to(dtype), b.expand(B, -1, -1).to(dtype), single


def cross_correlation(k_hat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Full cross-correlation c[s] = Σ_u k̂(u + s) k(u) over all shifts with overlap.

    Returns (B, a_h + b_h − 1, a_w + b_w − 1) (or 2-D for 2-D inputs); the entry
    [s_y + a_h//2 + b_h//2, s_x + a_w//2 + b_w//2] is the shift s of k̂'s centre
    relative to k's centre (odd sizes).
    """
    a, b, single = _batch(k_hat, k)
    B = a.shape[0]
    bh, bw = b.shape[-2:]
    padded = F.pad(a[None], (bw - 1, bw - 1, bh - 1, bh - 1))  # (1, B, ·, ·)
    c = F.conv2d(padded, b[:, None], groups=B)[0]  # conv2d is a cross-correlation
    return c[0] if single else c


def _max_corr(k_hat, k, flip: bool, max_shift: int | None):
    a, b, single = _batch(k_hat, k)
    cands = [a, a.flip(-2, -1)] if flip else [a]
    best = None
    for cand in cands:
        c = cross_correlation(cand, b)
        if max_shift is not None:
            ch, cw = cand.shape[-2] // 2 + b.shape[-2] // 2, cand.shape[-1] // 2 + b.shape[-1] // 2
            m = int(max_shift)
            c = c[:, max(ch - m, 0) : ch + m + 1, max(cw - m, 0) : cw + m + 1]
        v = c.flatten(1).amax(1)
        best = v if best is None else torch.maximum(best, v)
    return best, a, b, single


def mnc(k_hat: torch.Tensor, k: torch.Tensor, flip: bool = False, max_shift: int | None = None) -> torch.Tensor:
    """Maximum of normalised cross-correlation (Kernel Diffusion's MNC), in [−1, 1], per kernel pair."""
    best, a, b, single = _max_corr(k_hat, k, flip, max_shift)
    denom = a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1)
    out = best / denom.clamp_min(torch.finfo(denom.dtype).tiny)
    return out[0] if single else out


def kernel_error(k_hat: torch.Tensor, k: torch.Tensor, flip: bool = False, max_shift: int | None = None) -> torch.Tensor:
    """‖k̂ − k‖₂ after the best integer shift of k̂ (and its 180° rotation if ``flip``), per kernel pair.

    Exact minimum over all shifts on the zero-padded plane (no wrap-around), via
    ‖k̂‖² + ‖k‖² − 2 max_s (k̂ ⋆ k)[s]; ``max_shift`` limits |s| per axis.
    """
    best, a, b, single = _max_corr(k_hat, k, flip, max_shift)
    sq = a.flatten(1).pow(2).sum(1) + b.flatten(1).pow(2).sum(1) - 2.0 * best
    out = sq.clamp_min(0.0).sqrt()
    return out[0] if single else out


def collapse_distance(k_hat: torch.Tensor, k_reference_small: torch.Tensor | None = None) -> torch.Tensor:
    """Aligned kernel error to the nearest "no-blur" kernel: min(KE(k̂, δ), KE(k̂, k_small)), per kernel."""
    a = k_hat[None] if k_hat.dim() == 2 else k_hat
    dirac = torch.ones(1, 1, dtype=a.dtype, device=a.device)
    d = kernel_error(a, dirac, flip=True)
    if k_reference_small is not None:
        d = torch.minimum(d, kernel_error(a, k_reference_small.to(a.dtype), flip=True))
    return d[0] if k_hat.dim() == 2 else d


def no_blur_collapse(k_hat: torch.Tensor, k_reference_small: torch.Tensor | None = None, tol: float = 0.05) -> torch.Tensor:
    """True where the estimate collapsed to the no-blur solution: within ``tol`` (aligned ℓ² kernel
    error) of the Dirac δ or of the family's smallest kernel ``k_reference_small`` (e.g. the Airy
    pattern :meth:`ZernikeKernel.airy`). Bool tensor, one per kernel."""
    return collapse_distance(k_hat, k_reference_small) <= tol


def aligned_psnr(a: torch.Tensor, b: torch.Tensor, m: int):
    """PSNR of a against b on the interior (a border of m px dropped), at the best integer shift of a
    with |shift| ≤ m per axis, per image (numpy): blind estimates are defined up to a shift, and
    borders carry the boundary mismatch of a circular model (as in the usual evaluation of Levin et
    al. and Köhler et al.)."""
    H, W = a.shape[-2:]
    ref = b[..., m:H - m, m:W - m]
    shifted = [psnr(a[..., m + i:H - m + i, m + j:W - m + j], ref) for i in range(-m, m + 1) for j in range(-m, m + 1)]
    return torch.stack(shifted).amax(0).cpu().numpy()


def centred_kernels(kernels: list, dtype=torch.float64) -> torch.Tensor:
    """Kernels of several sizes on one odd square support, centred (zero padding changes no aligned
    kernel error or MNC); a None entry (a shot without a known kernel) gives a NaN kernel."""
    known = [h for h in kernels if h is not None]
    side = max(max(h.shape) for h in known)
    side += 1 - side % 2
    out = torch.full((len(kernels), side, side), float("nan"), dtype=dtype)
    for i, h in enumerate(kernels):
        if h is not None:
            top, left = (side - h.shape[0]) // 2, (side - h.shape[1]) // 2
            out[i] = 0.0
            out[i, top:top + h.shape[0], left:left + h.shape[1]] = h.to(dtype)
    return out
