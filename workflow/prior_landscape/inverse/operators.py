"""Every blur operator of the workflow: convolutions, their adjoints, inverses and proximal maps.

``blur`` is the *true* convolution (not the cross-correlation of
``torch.nn.functional.conv2d``),

    y[i, j] = Σ_{m, n} h[m, n] · x[i − (m − c), j − (n − c)],

computed by :func:`deepinv.physics.functional.conv2d` (which flips the filter;
identical to ``deepinv.physics.Blur(filter, padding).A``) with the image padded
by the named mode (torch / deepinv names: ``'reflect'`` mirrors *without*
repeating the edge pixel — numpy's ``'reflect'``, not scipy's ``'symm'`` —,
``'replicate'``, ``'circular'``, ``'constant'``/``'zeros'``). Output has the
input's size. ``circular_blur`` is the same convolution with periodic boundary,
by FFT; it is what the noiseless posterior profiles of P §4.1 (Fig. 9) use, where
H̃_θ = h_θ + λδ is inverted in Fourier (P §4.1, "circular boundary condition").

Circular operators (the posterior of P §3–5) are diagonal in Fourier: :func:`kernel_otf`
wraps a kernel onto the image torus, and the data-term prox of Algorithm 1 is the
closed-form solve :func:`fft_prox`; :func:`cg_prox` solves the same normal equations by
conjugate gradient for any boundary of :func:`blur` (P uses CG). deepinv's ``BlurFFT`` computes
the same circular convolution and prox (tests/test_posterior.py checks both against it); it is
not used in the loops because it needs the kernel no larger than the image, one kernel per
batch element without a precomputed OTF, and recomputes the OTF at every prox.
"""

from __future__ import annotations

import torch
from deepinv.physics.functional import conv2d as _dinv_conv2d

__all__ = [
    "blur",
    "blurred_crops",
    "circular_blur",
    "kernel_otf",
    "fft_blur",
    "fft_blur_adjoint",
    "fft_prox",
    "cg_prox",
    "regularised_blur",
    "regularised_inverse",
    "data_fit",
]

_SAME_SIZE_PADDINGS = ("reflect", "replicate", "circular", "constant", "zeros")


# ---------------------------------------------------------------------------
# convolutions
# ---------------------------------------------------------------------------


def _check_image_and_kernel(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Validate shapes; return the kernel as a (b, 1, kh, kw) filter in x's dtype/device."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if not isinstance(kernel, torch.Tensor):
        raise ValueError(f"kernel must be a torch.Tensor, got {type(kernel).__name__}")
    if kernel.dim() == 2:
        k = kernel[None, None]
    elif kernel.dim() == 3:
        if kernel.shape[0] != x.shape[0]:
            raise ValueError(
                f"per-image kernels (B, k, k) need B = {x.shape[0]} (the batch of x), got {kernel.shape[0]}"
            )
        k = kernel[:, None]
    else:
        raise ValueError(f"kernel must be (k, k) or per-image (B, k, k), got shape {tuple(kernel.shape)}")
    kh, kw = k.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sides must be odd (centre = size // 2), got {kh}x{kw}")
    return k.to(dtype=x.dtype, device=x.device)


def blur(x: torch.Tensor, kernel: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """True convolution h ⋆ x of a batch (B, C, H, W), same output size.

    ``kernel`` is one (k, k) kernel for the whole batch or per-image kernels
    (B, k, k) (applied to every channel), odd sides, centre at k // 2:
    y[i, j] = Σ_{m,n} h[m, n] x[i − (m − c), j − (n − c)]. ``padding`` names the
    boundary extension (torch/deepinv names): ``'reflect'`` (mirror without edge
    repetition: … x[2], x[1] | x[0], x[1], … — numpy 'reflect', not scipy 'symm'),
    ``'replicate'``, ``'circular'``, ``'constant'`` / ``'zeros'``. Computed by
    :func:`deepinv.physics.functional.conv2d` (same as
    ``deepinv.physics.Blur(filter=kernel, padding=padding).A(x)``).
    """
    k = _check_image_and_kernel(x, kernel)
    if not isinstance(padding, str) or padding.lower() not in _SAME_SIZE_PADDINGS:
        raise ValueError(
            f"padding {padding!r} not supported; use one of {_SAME_SIZE_PADDINGS} "
            "(blur keeps the image size, so 'valid' is excluded)"
        )
    padding = padding.lower()
    H, W = x.shape[-2:]
    kh, kw = k.shape[-2:]
    if padding == "reflect" and (kh // 2 >= H or kw // 2 >= W):
        raise ValueError(
            f"'reflect' padding needs the kernel half-size < image size: kernel {kh}x{kw}, "
            f"image {H}x{W}; use 'circular' or 'replicate', or a smaller kernel"
        )
    return _dinv_conv2d(x, k, padding=padding)


def blurred_crops(images: dict, specs: list, kernel: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """Blur each whole photograph by ``kernel`` (P §2.3: h_θ ⋆ x), then take the crops: no wrapped or
    padded border inside a crop (EXPERIMENTS.md's pitfall)."""
    from prior_landscape.io.images import extract_crops

    blurred = {}
    for name in sorted({s.image for s in specs}):
        x = torch.as_tensor(images[name], dtype=torch.float64)[None, None]
        blurred[name] = blur(x, kernel.to(torch.float64), padding=padding)[0, 0].numpy()
    return extract_crops(blurred, specs)


def circular_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Periodic convolution h ⊛ x by FFT, same size, kernel centred at k // 2.

    y[i, j] = Σ_{m,n} h[m, n] x[(i − (m − c)) mod H, (j − (n − c)) mod W], i.e.
    ``blur(x, kernel, padding='circular')`` computed in Fourier. The kernel is
    wrapped onto the H×W torus (entries accumulate if k > H or W, so any kernel
    size works — deepinv's ``filter_fft`` needs k ≤ H, W), then multiplied with
    the image in the 2-D real FFT domain. ``kernel``: (k, k) or (B, k, k).
    """
    k = _check_image_and_kernel(x, kernel)[:, 0]  # (b, kh, kw)
    H, W = x.shape[-2:]
    return torch.fft.irfft2(torch.fft.rfft2(x, s=(H, W)) * kernel_otf(k, (H, W)), s=(H, W))


def kernel_otf(h: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """rfft2 of the kernel(s) wrapped onto the H×W torus with its centre k//2 at (0, 0).

    ``h`` (k, k) or (B, k, k) → complex (b, 1, H, W//2+1); differentiable in h.
    Kernels larger than the image wrap (entries accumulate), as in :func:`circular_blur`.
    """
    if h.dim() == 2:
        h = h[None]
    H, W = shape
    kh, kw = h.shape[-2:]
    rows = torch.remainder(torch.arange(kh, device=h.device) - kh // 2, H)
    cols = torch.remainder(torch.arange(kw, device=h.device) - kw // 2, W)
    flat = (rows[:, None] * W + cols[None, :]).reshape(-1)
    wrapped = torch.zeros(h.shape[0], H * W, dtype=h.dtype, device=h.device)
    wrapped = wrapped.index_add(1, flat, h.reshape(h.shape[0], -1)).reshape(-1, 1, H, W)
    return torch.fft.rfft2(wrapped, s=(H, W))


# ------------------------------------------------------------ FFT operators
def _as_filter(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(k,k) → (1,k,k); (B,k,k) kept; in x's dtype/device."""
    if h.dim() == 2:
        h = h[None]
    if h.dim() != 3:
        raise ValueError(f"kernel must be (k, k) or (B, k, k), got {tuple(h.shape)}")
    if h.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"per-image kernels need B = {x.shape[0]}, got {h.shape[0]}")
    if h.shape[-1] % 2 == 0 or h.shape[-2] % 2 == 0:
        raise ValueError(f"kernel sides must be odd, got {tuple(h.shape[-2:])}")
    return h.to(dtype=x.dtype, device=x.device)


def _shape(x: torch.Tensor) -> tuple[int, int]:
    return int(x.shape[-2]), int(x.shape[-1])


def fft_blur(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Circular convolution h ⊛ x (:func:`circular_blur` with (k, k), (1, k, k) or (B, k, k) kernels)."""
    h = _as_filter(h, x)
    return circular_blur(x, h[0] if h.shape[0] == 1 else h)


def fft_blur_adjoint(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Hᵀx: circular correlation with h (convolution with the 180°-rotated kernel)."""
    otf = kernel_otf(_as_filter(h, x), _shape(x))
    return torch.fft.irfft2(torch.fft.rfft2(x) * otf.conj(), s=_shape(x))


def regularised_blur(x: torch.Tensor, h: torch.Tensor, lam: float) -> torch.Tensor:
    """H̃x = h ⊛ x + λx (P §4.1: h̃ = h + λδ), circular."""
    return fft_blur(x, h) + lam * x


def regularised_inverse(y: torch.Tensor, h: torch.Tensor, lam: float) -> torch.Tensor:
    """H̃⁻¹y = F⁻¹[ŷ / (ĥ + λ)] (circular; inf/NaN where ĥ + λ = 0)."""
    otf = kernel_otf(_as_filter(h, y), _shape(y)) + lam
    return torch.fft.irfft2(torch.fft.rfft2(y) / otf, s=_shape(y))


def fft_prox(
    v: torch.Tensor, y: torch.Tensor, h: torch.Tensor, gamma: float, otf: torch.Tensor | None = None
) -> torch.Tensor:
    """prox_{γ f}(v) with f = ½‖h ⊛ x − y‖² (circular): F⁻¹[(conj(ĥ)ŷ + v̂/γ) / (|ĥ|² + 1/γ)].

    ``otf`` may pass a precomputed :func:`kernel_otf` (it then defines h).
    Solves the normal equations (HᵀH + I/γ) x = Hᵀy + v/γ exactly (up to rounding).
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if otf is None:
        otf = kernel_otf(_as_filter(h, v), _shape(v))
    num = otf.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(v) / gamma
    return torch.fft.irfft2(num / (otf.abs().pow(2) + 1.0 / gamma), s=_shape(v))


def cg_prox(
    v: torch.Tensor,
    y: torch.Tensor,
    h: torch.Tensor,
    gamma: float,
    padding: str = "circular",
    n_iter: int = 100,
    tol: float = 1e-10,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """prox_{γ f}(v) by conjugate gradient on (HᵀH + I/γ) x = Hᵀy + v/γ, H = blur(·, h, padding).

    Hᵀ is the exact adjoint of :func:`blur` (a vector–Jacobian
    product), so any boundary works; batched, stopping when every relative
    residual is below ``tol`` or after ``n_iter`` iterations (P Algorithm 1 uses CG).
    """
    h = h.detach()

    def A(z):
        return blur(z, h, padding=padding)

    def At(r):
        with torch.enable_grad():
            z = torch.zeros_like(r, requires_grad=True)
            (g,) = torch.autograd.grad(A(z), z, r)
        return g

    def normal(z):
        return At(A(z)) + z / gamma

    b = At(y) + v / gamma
    x = v.clone() if x0 is None else x0.clone()
    r = b - normal(x)
    p = r.clone()
    rs = r.flatten(1).pow(2).sum(1)
    bnorm = b.flatten(1).norm(dim=1).clamp_min(1e-300)
    for _ in range(n_iter):
        if bool((rs.sqrt() / bnorm <= tol).all()):
            break
        Ap = normal(p)
        alpha = rs / (p.flatten(1) * Ap.flatten(1)).sum(1).clamp_min(1e-300)
        x = x + alpha.view(-1, 1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1, 1) * Ap
        rs_new = r.flatten(1).pow(2).sum(1)
        p = r + (rs_new / rs.clamp_min(1e-300)).view(-1, 1, 1, 1) * p
        rs = rs_new
    return x


# -------------------------------------------------------------- objectives
def data_fit(x: torch.Tensor, y: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """f(x, θ) = ½‖h ⊛ x − y‖² per image, shape (B,) (circular)."""
    return 0.5 * (fft_blur(x, h) - y).flatten(1).pow(2).sum(1)
