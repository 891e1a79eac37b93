"""Image and kernel metrics of blind deblurring.

* PSNR and SSIM per image (B,), images (B, C, H, W) in [min_pixel, max_pixel] = [0, 1] by
  default, computed in float64 (conventions in :data:`PSNR_CONVENTION`, :data:`SSIM_CONVENTION`;
  tables that report them should quote these strings):

  - PSNR = 10 log10(R² / MSE) with the data range R = max_pixel − min_pixel and the MSE over all
    pixels and channels of an image; no clipping and no ε (deepinv's ε = 1e-8 added to MSE/R²
    biased high PSNRs: −0.41 dB at 70 dB). Identical images give +inf.
  - SSIM as Wang et al. (2004) and as papers report it (Kernel-Diff, BlindDPS): an 11×11 Gaussian
    window of σ = 1.5 (truncated at 3.5σ), K1 = 0.01, K2 = 0.03, C_i = (K_i R)², population
    (co)variances, the SSIM map averaged over the pixels whose window lies inside the image
    (a 5-pixel border cropped) and over channels. This is
    ``skimage.metrics.structural_similarity(x̂, x, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=…)`` (tested to 1e-6). The earlier
    torchmetrics SSIM averaged a reflect-padded map over the whole image instead.
    ``window="uniform"`` gives scikit-image's default instead (7×7 uniform window, sample
    covariances: ``structural_similarity(x̂, x, data_range=R)``).
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
    "PSNR_CONVENTION",
    "SSIM_CONVENTION",
    "SSIM_CONVENTION_UNIFORM",
    "cross_correlation",
    "mnc",
    "kernel_error",
    "no_blur_collapse",
    "collapse_distance",
    "aligned_psnr",
    "centred_kernels",
]


PSNR_CONVENTION = (
    "PSNR = 10 log10(R^2/MSE), data range R = max_pixel - min_pixel (1 for images in [0, 1]), "
    "MSE over all pixels and channels of an image, no clipping, no epsilon; +inf for identical images"
)
SSIM_CONVENTION = (
    "SSIM as Wang et al. (2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range "
    "max_pixel - min_pixel, border cropped, mean over channels = skimage structural_similarity("
    "gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R)"
)
SSIM_CONVENTION_UNIFORM = (
    "SSIM with scikit-image's default window: 7x7 uniform, sample covariances, K1 = 0.01, K2 = 0.03, data range "
    "max_pixel - min_pixel, border cropped, mean over channels = skimage structural_similarity(data_range=R)"
)


def _float64(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.device.type == "mps":  # no float64 on Apple GPUs
        t = t.cpu()
    return t.to(torch.float64)


def _pair(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x_hat.shape != x.shape or x.dim() != 4:
        raise ValueError(
            f"images must both be (B, C, H, W) of one shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}"
        )
    return _float64(x_hat), _float64(x)


def psnr(x_hat: torch.Tensor, x: torch.Tensor, max_pixel: float = 1.0, min_pixel: float = 0.0) -> torch.Tensor:
    """PSNR in dB per image (B,), float64: 10 log10(R² / MSE), R = max_pixel − min_pixel.

    MSE is the mean of (x̂ − x)² over all C·H·W values of an image, without clipping and without
    an ε, so the value is exact at any PSNR; identical images (MSE = 0) give +inf.
    """
    a, b = _pair(x_hat, x)
    data_range = float(max_pixel) - float(min_pixel)
    if not data_range > 0:
        raise ValueError(f"PSNR needs max_pixel > min_pixel, got {max_pixel} and {min_pixel}")
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)  # MSE = 0: R²/0 = inf, log10(inf) = inf


_SSIM_SIGMA, _SSIM_TRUNCATE, _SSIM_UNIFORM_SIZE = 1.5, 3.5, 7
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _ssim_window(window: str, device) -> tuple[torch.Tensor, float]:
    """The separable 1-D window and the covariance normalisation, as skimage builds them."""
    if window == "gaussian":  # scipy.ndimage.gaussian_filter's kernel: radius int(truncate·σ + 0.5) = 5
        r = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
        u = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
        w = torch.exp(-0.5 * (u / _SSIM_SIGMA) ** 2)
        return w / w.sum(), 1.0  # population covariances (use_sample_covariance=False)
    if window == "uniform":
        n = _SSIM_UNIFORM_SIZE
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device), n * n / (n * n - 1.0)
    raise ValueError(f"SSIM window must be 'gaussian' or 'uniform', got {window!r}")


def ssim(
    x_hat: torch.Tensor, x: torch.Tensor, max_pixel: float = 1.0, min_pixel: float = 0.0, window: str = "gaussian"
) -> torch.Tensor:
    """SSIM per image (B,), float64, as Wang et al. (2004) and scikit-image (see :data:`SSIM_CONVENTION`).

    Local means, variances and covariance under an 11×11 Gaussian window (σ = 1.5), K1 = 0.01,
    K2 = 0.03, C1 = (K1 R)², C2 = (K2 R)², R = max_pixel − min_pixel; the SSIM map is averaged over
    the valid positions only (the window inside the image: a border of 5 pixels cropped), then over
    channels — ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=0)`` per image. ``window="uniform"``
    is scikit-image's default instead (7×7 uniform window, sample covariances, 3-pixel border;
    :data:`SSIM_CONVENTION_UNIFORM`).

    Images smaller than the window (H or W < 11, or < 7 for "uniform") raise a ValueError naming
    both sizes, as scikit-image does: there is no valid position to average over.
    """
    a, b = _pair(x_hat, x)
    data_range = float(max_pixel) - float(min_pixel)
    if not data_range > 0:
        raise ValueError(f"SSIM needs max_pixel > min_pixel, got {max_pixel} and {min_pixel}")
    w, cov_norm = _ssim_window(window, a.device)
    n = w.numel()
    B, C, H, W = a.shape
    if H < n or W < n:
        raise ValueError(f"SSIM ({window} window) needs images of at least {n}×{n} pixels, got {H}×{W}")
    # the five local moments of all images and channels at once, valid (cropped) positions only
    stack = torch.stack([a, b, a * a, b * b, a * b], 1).reshape(B * 5 * C, 1, H, W)
    m = F.conv2d(F.conv2d(stack, w.view(1, 1, n, 1)), w.view(1, 1, 1, n)).reshape(B, 5, C, H - n + 1, W - n + 1)
    ux, uy, uxx, uyy, uxy = m.unbind(1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


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


def kernel_error(
    k_hat: torch.Tensor, k: torch.Tensor, flip: bool = False, max_shift: int | None = None
) -> torch.Tensor:
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


def no_blur_collapse(
    k_hat: torch.Tensor, k_reference_small: torch.Tensor | None = None, tol: float = 0.05
) -> torch.Tensor:
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
    ref = b[..., m : H - m, m : W - m]
    shifted = [
        psnr(a[..., m + i : H - m + i, m + j : W - m + j], ref) for i in range(-m, m + 1) for j in range(-m, m + 1)
    ]
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
            out[i, top : top + h.shape[0], left : left + h.shape[1]] = h.to(dtype)
    return out
