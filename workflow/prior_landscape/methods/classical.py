"""Classical blind-deblurring methods and the reference points of the benchmark.

* ``levin-map-k`` — MAP over the kernel alone (Levin, Weiss, Durand, Freeman 2011, "Efficient
  marginal likelihood optimization in blind deconvolution"), the image integrated out by EM. As
  Levin, k is estimated from the derivative images d_γ = ∇_γ y = k ⊛ ∇_γ x + n_γ (γ = horizontal,
  vertical): the derivatives whiten the image spectrum and have no DC. Gaussian prior (default):
  x_γ ~ N(0, α⁻¹I), noise N(0, σ²I). Under circular convolution every operator is diagonal in
  Fourier, so the E-step is exact: the posterior of x_γ has mean μ̂_γ = conj(k̂) d̂_γ / (|k̂|² + ασ²)
  and circulant covariance of eigenvalues c(ω) = σ² / (|k̂|² + ασ²) (:func:`levin_e_step`). The
  M-step minimises Σ_γ E‖d_γ − k ⊛ x_γ‖² = kᵀAk − 2bᵀk + const, A and b from the autocorrelation of
  μ_γ, the inverse transform of c and the cross-correlation of d_γ and μ_γ (:func:`levin_quadratic`),
  over the kernels of the support on the simplex: a k²×k² QP solved by FISTA with adaptive restart
  until its gradient mapping is ≤ ``qp_tol`` (:func:`simplex_qp`). As Levin's code: coarse to fine
  (kernel side ÷ √2 per level, the first kernel two pixels wide), σ annealed from ``anneal``·σ down
  to σ at every level (EM moves faster at high noise), and — the Gaussian marginal likelihood cannot
  tell k from its 180° rotation — the rotation whose deconvolution has the sparser gradients is
  kept. Added here: over-relaxed EM steps, kept only where they lower the exact −log p(d | k)
  (:func:`levin_nll`), and up to ``n_final`` extra iterations at σ; criterion: the kernel's relative
  change over the last EM iteration ≤ ``em_tol``. ``prior="sparse"``: Levin's Gaussian scale
  mixture on the derivatives (fitted to the training photographs) with his diagonal-covariance
  E-step. Non-periodic borders: the derivative images are tapered to zero over ``taper`` px.
* ``tv-alternating`` — alternating minimisation of ½‖M(k ∗ x) − y‖² + λ TV_ε(x) over x and the
  kernels of the simplex (Chan & Wong 1998) with the details of Perrone & Favaro (2014, "Total
  variation blind deconvolution: the devil is in the details", and their code): the latent image
  larger than y by the kernel support and M the crop ("valid" convolution: no boundary
  assumption); per iteration one gradient step on x then one on k, P–F's normalised steps
  (s_x = c_x max|x| / max|g_x|, s_k = c_k max k / max|g_k|), the kernel clipped at 0 and
  renormalised; a pyramid with λ·1.9 per coarser level. Criterion: the kernel's relative change
  over the last ``window`` iterations of the finest level ≤ ``tol``.
* ``blind-rl`` — deepinv's blind Richardson–Lucy (:class:`deepinv.optim.BlindRL`): circular
  convolution in fft_blur's convention, uniform initial kernel, ``k_steps`` kernel updates per
  image update, y clamped to [floor, 1] for the Poisson model and edge-tapered (its model is
  circular, a crop is not).
* references (see the true kernel): ``blurry`` (y itself, the floor) and ``wiener`` (non-blind
  deconvolution with the true kernel, the classical ceiling).

Non-blind deconvolution (:func:`deconvolve`) is one solver for every method here: the
Wiener/Tikhonov estimate argmin_x ½‖M(k ∗ x) − y‖² + (reg/2)‖∇x‖² with x on y's window extended by
the kernel radius and M the crop to y ("valid" model: exact for data with any boundary, circular
data included), by conjugate gradient preconditioned by the circular Wiener filter;
``boundary="circular"`` is the closed-form circular Wiener filter (:func:`wiener_deconvolution`).
Estimates are clipped to [0, 1] (the images' range). Colour images: the kernel is estimated on
the luminance and every channel deconvolved with it.

Hyper-parameter defaults: tuned on crops of the training photographs (never the held-out test
photographs), 8 crops × {motion, Gaussian, diffraction} kernels on a 15×15 support, σ_y = 0.01,
the whole photograph blurred then cropped, 12 configurations per method, the configuration with
the highest median aligned-PSNR gain over the blurry input kept (the protocol and every
configuration's numbers: docs/tuning_classical.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prior_landscape.inverse.kernels import project_simplex_kernel
from prior_landscape.inverse.operators import kernel_otf
from prior_landscape.methods.base import Context, Estimate, Problem, method

__all__ = [
    "gradient_power",
    "wiener_deconvolution",
    "deconvolve",
    "levin_e_step",
    "levin_quadratic",
    "simplex_qp",
    "levin_map_k",
    "tv_alternating",
    "blind_rl",
    "pyramid_levels",
    "resample_kernel",
    "recentre_kernel",
]


# ------------------------------------------------------------------ shared helpers
def _luminance(y: torch.Tensor) -> torch.Tensor:
    return y.mean(1, keepdim=True) if y.shape[1] > 1 else y


def gradient_power(shape: tuple[int, int], dtype=torch.float64, device="cpu") -> torch.Tensor:
    """|ĝ_x|² + |ĝ_y|² of the forward differences on the H×W torus, shape (H, W//2 + 1)."""
    H, W = shape
    gx = torch.zeros(H, W, dtype=dtype, device=device)
    gx[0, 0], gx[0, -1] = -1.0, 1.0
    gy = torch.zeros(H, W, dtype=dtype, device=device)
    gy[0, 0], gy[-1, 0] = -1.0, 1.0
    return torch.fft.rfft2(gx).abs().pow(2) + torch.fft.rfft2(gy).abs().pow(2)


def wiener_deconvolution(y: torch.Tensor, kernel: torch.Tensor, reg: float) -> torch.Tensor:
    """argmin_x ½‖k ⊛ x − y‖² + (reg/2)‖∇x‖² (circular), closed form in Fourier; per-image kernels (B, k, k)."""
    H, W = y.shape[-2:]
    otf = kernel_otf(kernel.to(y), (H, W))
    num = otf.conj() * torch.fft.rfft2(y)
    return torch.fft.irfft2(num / (otf.abs().pow(2) + reg * gradient_power((H, W), y.dtype, y.device)), s=(H, W))


class _ValidBlur:
    """x ↦ M(k ∗ x): convolution of an image extended by the kernel radius r on each side, cropped
    to the observed H×W window (no boundary assumption: the values the crop sees are all inside).
    Computed as circular convolution on the extended torus, where the cropped values never wrap."""

    def __init__(self, k: torch.Tensor, shape: tuple[int, int]):
        self.r = k.shape[-1] // 2
        self.shape = shape
        self.ext = (shape[0] + 2 * self.r, shape[1] + 2 * self.r)
        self.otf = kernel_otf(k, self.ext)  # (B, 1, He, We//2+1)

    def crop(self, z):
        r, (H, W) = self.r, self.shape
        return z[..., r : r + H, r : r + W]

    def pad(self, z):
        return F.pad(z, (self.r, self.r, self.r, self.r))

    def A(self, x):
        return self.crop(torch.fft.irfft2(self.otf * torch.fft.rfft2(x), s=self.ext))

    def AT(self, z):
        return torch.fft.irfft2(self.otf.conj() * torch.fft.rfft2(self.pad(z)), s=self.ext)


def _bdot(a, b):
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def _deconvolve_valid(y: torch.Tensor, k: torch.Tensor, reg: float, tol: float, max_iter: int) -> torch.Tensor:
    """The minimiser of ½‖M(k ∗ x) − y‖² + (reg/2)‖∇x‖² over the extended image x (B, C, H + 2r, W + 2r),
    ∇ the circular forward differences there: PCG on the normal equations, preconditioned by the
    circular Wiener filter (|k̂|² + reg|ĝ|²)⁻¹, until ‖residual‖ ≤ ``tol``·‖Kᵀ Mᵀ y‖."""
    op = _ValidBlur(k, tuple(y.shape[-2:]))
    G2 = gradient_power(op.ext, y.dtype, y.device)
    precond = 1.0 / (op.otf.abs().pow(2) + reg * G2)

    def normal(x):
        return op.AT(op.A(x)) + reg * torch.fft.irfft2(G2 * torch.fft.rfft2(x), s=op.ext)

    def M(r):
        return torch.fft.irfft2(precond * torch.fft.rfft2(r), s=op.ext)

    b = op.AT(y)
    x = M(b)
    r = b - normal(x)
    z = M(r)
    p = z
    rz = _bdot(r, z)
    bnorm = b.flatten(1).norm(dim=1).clamp_min(1e-300)
    for _ in range(max_iter):
        if bool((r.flatten(1).norm(dim=1) / bnorm <= tol).all()):
            break
        Ap = normal(p)
        step = rz / _bdot(p, Ap).clamp_min(1e-300)
        x = x + step * p
        r = r - step * Ap
        z = M(r)
        rz_new = _bdot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-300)) * p
        rz = rz_new
    return x


def deconvolve(
    y: torch.Tensor,
    k: torch.Tensor,
    reg: float,
    boundary: str = "valid",
    tol: float = 1e-6,
    max_iter: int = 200,
    clip: bool = True,
) -> torch.Tensor:
    """Non-blind Wiener/Tikhonov deconvolution argmin_x ½‖M(k ∗ x) − y‖² + (reg/2)‖∇x‖², y (B, C, H, W),
    per-image kernels (B, k, k).

    ``boundary="valid"``: x lives on the (H + 2r)×(W + 2r) extension of y (r the kernel radius), M
    crops k ∗ x to y's window, ∇ are circular forward differences on the extension (a smooth
    periodic extension, Liu & Jia 2008); solved by preconditioned conjugate gradient
    (:func:`_deconvolve_valid`); returns y's window. Exact for any boundary of the data (circular
    data are a special case). ``boundary="circular"``: the closed-form circular Wiener filter.
    ``clip``: the estimate clipped to [0, 1] (the range of the images)."""
    y = y.to(torch.float64)
    k = k.to(y)
    if boundary == "circular":
        x = wiener_deconvolution(y, k, reg)
    elif boundary == "valid":
        r = k.shape[-1] // 2
        x = _deconvolve_valid(y, k, reg, tol, max_iter)[..., r : r + y.shape[-2], r : r + y.shape[-1]]
    else:
        raise ValueError(f"boundary must be 'valid' or 'circular', got {boundary!r}")
    return x.clamp(0, 1) if clip else x


def pyramid_levels(kernel_size: int, image_shape: tuple[int, int], n_levels: int, ratio: float = 1 / math.sqrt(2)):
    """Coarse-to-fine levels [(scale, kernel side, (H, W)), …], coarsest first: the image scaled by
    ratio^ℓ, the kernel side the odd integer nearest kernel_size·ratio^ℓ (≥ 3); levels whose kernel
    side repeats are dropped."""
    out = []
    for lev in range(n_levels):
        s = ratio**lev
        ks = max(3, 2 * int(round((kernel_size * s - 1) / 2)) + 1)
        if lev and ks >= out[-1][1]:
            ks = out[-1][1] - 2
        if ks < 3:
            break
        shape = tuple(max(ks + 2, int(round(n * s))) for n in image_shape)
        out.append((s, ks, shape))
    out[0] = (1.0, kernel_size, tuple(image_shape))
    return out[::-1]


def resample_kernel(k: torch.Tensor, size: int, zoom: float) -> torch.Tensor:
    """Kernels (B, ka, ka) resampled to (B, size, size) for an image magnified by ``zoom``
    (bilinear, centre kept at the centre), clipped at 0 and renormalised."""
    B, ka = k.shape[0], k.shape[-1]
    ra, rb = ka // 2, size // 2
    v = torch.arange(-rb, rb + 1, dtype=k.dtype, device=k.device) / zoom / max(ra, 1)
    gy, gx = torch.meshgrid(v, v, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(B, -1, -1, -1)
    out = F.grid_sample(k[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]
    out = out.clamp_min(0)
    return out / out.sum((-2, -1), keepdim=True).clamp_min(1e-300)


def recentre_kernel(k: torch.Tensor) -> torch.Tensor:
    """Kernels shifted by the integer shift that brings their centre of mass nearest the centre
    (zero fill). Blind estimates are defined up to a shift; this keeps the mass off the border."""
    size = k.shape[-1]
    r = torch.arange(size, dtype=k.dtype, device=k.device) - size // 2
    out = []
    for kb in k:
        m = kb.sum().clamp_min(1e-300)
        cy, cx = int(round(float((kb.sum(1) * r).sum() / m))), int(round(float((kb.sum(0) * r).sum() / m)))
        z = torch.zeros_like(kb)
        ys, yd = (slice(cy, size), slice(0, size - cy)) if cy >= 0 else (slice(0, size + cy), slice(-cy, size))
        xs, xd = (slice(cx, size), slice(0, size - cx)) if cx >= 0 else (slice(0, size + cx), slice(-cx, size))
        z[yd, xd] = kb[ys, xs]
        out.append(z / z.sum().clamp_min(1e-300))
    return torch.stack(out)


def _resize_image(y: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(shape):
        return y
    return F.interpolate(y, size=shape, mode="bilinear", antialias=True, align_corners=False)


def _relative_change(new, old):
    return (new - old).flatten(1).norm(dim=1) / old.flatten(1).norm(dim=1).clamp_min(1e-300)


def _reg(problem: Problem, deconv_alpha: float) -> float:
    """The regulariser of the final non-blind step: deconv_alpha·σ_y² (σ_y floored at 1e-3)."""
    return deconv_alpha * max(problem.sigma_y, 1e-3) ** 2


# ------------------------------------------------------------------ references
@method("blurry", reference=True)
def blurry(problem: Problem, context: Context) -> Estimate:
    """The blurry input itself (the floor every method must beat)."""
    return Estimate(problem.y.clone(), None)


@method("wiener", reference=True, needs=("true_kernel",))
def wiener(problem: Problem, context: Context, *, deconv_alpha: float = 100.0, boundary: str = "valid") -> Estimate:
    """Non-blind Wiener/Tikhonov deconvolution with the true kernel (:func:`deconvolve`): the classical ceiling.

    reg = ``deconv_alpha``·σ_y² (MAP under ∇x ~ N(0, 1/``deconv_alpha``): the Wiener filter's noise
    to signal ratio scales with the noise variance)."""
    x = deconvolve(problem.y, context.true_kernel, _reg(problem, deconv_alpha), boundary)
    return Estimate(x.to(problem.y.dtype), context.true_kernel)


# ------------------------------------------------------------------ Levin et al. 2011
def _taper_window(shape, width: float, dtype, device) -> torch.Tensor:
    """Separable window rising from 0 to 1 as sin² over ``width`` px at each border (1 inside)."""

    def ramp(n):
        t = torch.arange(n, dtype=dtype, device=device) + 0.5
        d = torch.minimum(t, n - t) / max(width, 1e-12)
        return torch.sin(0.5 * math.pi * d.clamp(max=1.0)).pow(2)

    if width <= 0:
        return torch.ones(shape, dtype=dtype, device=device)
    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]


def _derivatives(y: torch.Tensor, taper: float) -> torch.Tensor:
    """Horizontal and vertical forward differences of (B, 1, H, W) images inside the image (no
    wrap-around difference), tapered to 0 at the border: (B, 2, H, W)."""
    dx = torch.zeros_like(y)
    dy = torch.zeros_like(y)
    dx[..., :, :-1] = y[..., :, 1:] - y[..., :, :-1]
    dy[..., :-1, :] = y[..., 1:, :] - y[..., :-1, :]
    d = torch.cat([dx, dy], 1)
    return d * _taper_window(tuple(y.shape[-2:]), taper, y.dtype, y.device) if taper > 0 else d


def levin_e_step(d_hat: torch.Tensor, otf: torch.Tensor, sigma2: float, alpha: torch.Tensor):
    """Exact E-step in Fourier: the posterior of the derivative images x_γ given d_γ = k ⊛ x_γ + n,
    n ~ N(0, σ²I), x_γ ~ N(0, α⁻¹I). Returns the posterior means μ̂_γ (B, G, H, W//2+1) and the
    eigenvalues c(ω) = σ² / (|k̂|² + ασ²) of the (circulant) posterior covariance (B, 1, H, W//2+1).
    ``alpha`` is a float or a per-image tensor (B,)."""
    alpha = torch.as_tensor(alpha, dtype=otf.real.dtype, device=otf.device).reshape(-1, 1, 1, 1)
    denom = otf.abs().pow(2) + alpha * sigma2
    return otf.conj() * d_hat / denom, sigma2 / denom


def _full_sum(c_half: torch.Tensor, W: int) -> torch.Tensor:
    """Σ over the full H×W spectrum of a Hermitian-symmetric quantity given on the rfft2 half."""
    w = torch.full((c_half.shape[-1],), 2.0, dtype=c_half.dtype, device=c_half.device)
    w[0] = 1.0
    if W % 2 == 0:
        w[-1] = 1.0
    return (c_half * w).sum((-2, -1))


def _lag_indices(size: int, shape: tuple[int, int], device):
    """Flat indices, on the H×W torus, of the lags u − u' between kernel offsets (n, n) and of u (n,)."""
    H, W = shape
    r = size // 2
    off = torch.arange(-r, r + 1, device=device)
    uy, ux = torch.meshgrid(off, off, indexing="ij")
    uy, ux = uy.reshape(-1), ux.reshape(-1)
    lag = ((uy[:, None] - uy[None, :]) % H) * W + (ux[:, None] - ux[None, :]) % W
    return lag, (uy % H) * W + ux % W


def levin_quadratic(d_hat: torch.Tensor, mu_hat: torch.Tensor, c: torch.Tensor, size: int, shape: tuple[int, int]):
    """The M-step's quadratic: Σ_γ E‖d_γ − k ⊛ x_γ‖² = kᵀAk − 2bᵀk + const over the kernel's n = size²
    entries (row-major offsets −r…r), with A[u, u'] = Σ_γ R_{μ_γ μ_γ}(u − u') + G·N·c̃(u − u') (c̃ the
    inverse transform of the posterior covariance eigenvalues, N = HW) and b[u] = Σ_γ (d_γ ⋆ μ_γ)(u).
    Returns A (B, n, n) and b (B, n)."""
    H, W = shape
    G = d_hat.shape[1]
    auto = torch.fft.irfft2(mu_hat.abs().pow(2).sum(1), s=shape)
    cov = G * H * W * torch.fft.irfft2(c[:, 0], s=shape)
    cross = torch.fft.irfft2((d_hat * mu_hat.conj()).sum(1), s=shape)
    lag, off = _lag_indices(size, shape, d_hat.device)
    A = (auto + cov).flatten(1)[:, lag]
    return 0.5 * (A + A.transpose(1, 2)), cross.flatten(1)[:, off]


def levin_nll(d_hat: torch.Tensor, otf: torch.Tensor, sigma2: float, alpha: float, width: int) -> torch.Tensor:
    """−log p(d | k) + const per image (B,) for the Gaussian derivative prior: every Fourier coefficient
    d̂_γ(ω) is CN(0, N(|k̂(ω)|²/α + σ²)), N = HW (``width``: W, for the rfft2 half-plane sums)."""
    H = d_hat.shape[-2]
    v = otf.abs().pow(2) / alpha + sigma2
    t = d_hat.shape[1] * torch.log(v) + d_hat.abs().pow(2).sum(1, keepdim=True) / (H * width * v)
    return _full_sum(t[:, 0], width)


def _gradient_mapping(k, g, L):
    """‖k − Π_Δ(k − g/L)‖ / ‖k‖ per row: 0 exactly at the KKT points of a QP on the simplex."""
    return _relative_change(project_simplex_kernel((k - g / L[:, None])[:, None])[:, 0], k)


def simplex_qp(A: torch.Tensor, b: torch.Tensor, k0: torch.Tensor, tol: float = 1e-7, max_iter: int = 3000):
    """argmin_k ½ kᵀAk − bᵀk over the simplex {k ≥ 0, Σk = 1}, batched: A (B, n, n) symmetric PSD,
    b (B, n), start k0 (B, n).

    FISTA (projected, step 1/L, L = λ_max(A)) with O'Donoghue–Candès adaptive restart. Stops when
    every row's gradient mapping ‖k − Π_Δ(k − ∇f(k)/L)‖ / ‖k‖ ≤ ``tol`` (it vanishes exactly at the
    KKT points: ∇f constant on the support, larger off it), checked every 10 iterations, or after
    ``max_iter``. Returns (k, gradient mapping, iterations)."""
    L = torch.linalg.eigvalsh(A)[:, -1].clamp_min(1e-300)

    def grad(v):
        return torch.bmm(A, v[..., None])[..., 0] - b

    def proj(v):
        return project_simplex_kernel(v[:, None])[:, 0]

    x = proj(k0)
    z, t = x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)
    res = _gradient_mapping(x, grad(x), L)
    it = 0
    while it < max_iter and bool((res > tol).any()):
        for _ in range(10):
            x_new = proj(z - grad(z) / L[:, None])
            restart = ((z - x_new) * (x_new - x)).sum(1, keepdim=True) > 0
            t = torch.where(restart, torch.ones_like(t), t)
            t_new = 0.5 * (1 + torch.sqrt(1 + 4 * t * t))
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            x, t = x_new, t_new
        it += 10
        res = _gradient_mapping(x, grad(x), L)
    return x, res, it


#: the sparse derivative prior of ``levin-map-k`` (prior="sparse"): weights and standard deviations
#: of a zero-mean Gaussian scale mixture fitted by EM to the horizontal and vertical differences of
#: the training photographs (grayscale, downscale 2; notes/classical/fit_gradient_prior.py)
SPARSE_PRIOR = ((0.2699, 0.3261, 0.293, 0.1109), (0.00211, 0.00876, 0.04125, 0.15984))


def _sparse_e_step(d, k, eta2, mu, w, weights, variances, n_inner, cg_iter=10):
    """Levin et al. (2011) §4's E-step with a sparse prior: q(x_γ) = N(μ_γ, diag(c_γ)) (mean-field,
    diagonal covariance) and mixture responsibilities, ``n_inner`` rounds of
    μ ← (KᵀK/η² + W)⁻¹Kᵀd/η² (PCG, Fourier preconditioner), c ← 1/(‖k‖²/η² + w),
    w ← Σ_j r_j/v_j with r_j ∝ π_j v_j^(-1/2) exp(−(μ² + c)/(2v_j)). d, μ, w: (B, G, H, W)."""
    shape = tuple(d.shape[-2:])
    otf = kernel_otf(k, shape)
    otf2 = otf.abs().pow(2)
    k2 = k.pow(2).sum((-2, -1)).view(-1, 1, 1, 1)
    rhs = torch.fft.irfft2(otf.conj() * torch.fft.rfft2(d), s=shape) / eta2
    logpi = torch.log(torch.as_tensor(weights, dtype=d.dtype)).view(1, 1, 1, 1, -1)
    v = torch.as_tensor(variances, dtype=d.dtype).view(1, 1, 1, 1, -1)
    for _ in range(n_inner):
        wbar = w.mean((-2, -1), keepdim=True)
        pre = 1.0 / (otf2 / eta2 + wbar)

        def normal(z, w=w):
            return torch.fft.irfft2(otf2 * torch.fft.rfft2(z), s=shape) / eta2 + w * z

        def prec(z, pre=pre):
            return torch.fft.irfft2(pre * torch.fft.rfft2(z), s=shape)

        r = rhs - normal(mu)
        z = prec(r)
        p = z
        rz = (r * z).sum((-2, -1), keepdim=True)
        for _ in range(cg_iter):
            Ap = normal(p)
            a = rz / (p * Ap).sum((-2, -1), keepdim=True).clamp_min(1e-300)
            mu = mu + a * p
            r = r - a * Ap
            z = prec(r)
            rz_new = (r * z).sum((-2, -1), keepdim=True)
            p = z + (rz_new / rz.clamp_min(1e-300)) * p
            rz = rz_new
        c = 1.0 / (k2 / eta2 + w)
        e = (mu * mu + c)[..., None]
        logr = logpi - 0.5 * torch.log(v) - 0.5 * e / v
        resp = torch.softmax(logr, -1)
        w = (resp / v).sum(-1)
    return mu, c, w


def _sparse_quadratic(d, mu, c, size):
    """The M-step's quadratic under the diagonal posterior: A = Σ_γ R_{μ_γ μ_γ} + (Σ c)·I, b = Σ_γ d_γ ⋆ μ_γ."""
    shape = tuple(d.shape[-2:])
    Mu = torch.fft.rfft2(mu)
    auto = torch.fft.irfft2(Mu.abs().pow(2).sum(1), s=shape)
    cross = torch.fft.irfft2((torch.fft.rfft2(d) * Mu.conj()).sum(1), s=shape)
    lag, off = _lag_indices(size, shape, d.device)
    A = auto.flatten(1)[:, lag]
    A = 0.5 * (A + A.transpose(1, 2)) + c.flatten(1).sum(1).view(-1, 1, 1) * torch.eye(size * size, dtype=d.dtype)
    return A, cross.flatten(1)[:, off]


def _gradient_sparsity(x: torch.Tensor) -> torch.Tensor:
    """Σ |∇x|^½ per image (Levin's criterion to pick a kernel's 180° rotation: the sparser image)."""
    return (x[..., :, 1:] - x[..., :, :-1]).abs().sqrt().flatten(1).sum(1) + (
        x[..., 1:, :] - x[..., :-1, :]
    ).abs().sqrt().flatten(1).sum(1)


@method("levin-map-k")
def levin_map_k(
    problem: Problem,
    context: Context,
    *,
    prior: str = "gaussian",
    alpha: float = 200.0,
    levels: int = 5,
    n_em: int = 33,
    anneal: float = 8.0,
    n_final: int = 20,
    em_tol: float = 5e-3,
    relax: float = 3.0,
    noise_scale: float = 1.0,
    taper: float = 4.0,
    qp_tol: float = 1e-6,
    n_inner: int = 1,
    deconv_alpha: float = 200.0,
    resolve_flip: bool = True,
) -> Estimate:
    """MAP over the kernel with the image integrated out (Levin et al. 2011; gradient prior, EM in Fourier).

    Per level (coarse to fine, kernel side ÷ √2 per level; the first kernel two pixels wide, the
    next ones the previous estimate resampled and recentred): derivative images d_γ of the resized
    luminance (tapered to 0 over ``taper``·scale px at the border), then ``n_em`` EM iterations with
    the noise standard deviation annealed geometrically from ``anneal``·σ down to σ (Levin's code:
    EM moves faster at high noise, which resolves the kernel's low frequencies first), then up to
    ``n_final`` more at σ until the kernel's relative change is ≤ ``em_tol``; σ² = 2(``noise_scale``·σ_y)²,
    the variance of a difference. One EM iteration: E-step, M-step = the simplex QP solved to
    ``qp_tol`` (:func:`simplex_qp`).

    ``prior="gaussian"``: x_γ ~ N(0, α⁻¹I), exact E-step and quadratic (:func:`levin_e_step`,
    :func:`levin_quadratic`); with ``relax`` > 1 each EM step is over-relaxed, k ← Π_Δ(k + β(k_EM − k))
    with β ≤ ``relax`` growing ×1.5 per success, kept only where it lowers the exact −log p(d | k)
    (:func:`levin_nll`; else β ← 1); the marginal likelihood cannot tell k from its 180° rotation,
    so with ``resolve_flip`` the rotation whose deconvolution has the sparser gradients is kept
    (Levin's code). ``prior="sparse"``: the Gaussian scale mixture :data:`SPARSE_PRIOR` with Levin's
    diagonal-covariance E-step (``n_inner`` rounds per EM iteration), initial weights α.

    The sharp image: :func:`deconvolve` with reg = ``deconv_alpha``·σ_y². ``converged``: the last EM
    iteration of the finest level changed every kernel by ≤ ``em_tol`` (relative, ℓ²)."""
    if prior not in ("gaussian", "sparse"):
        raise ValueError(f"prior must be 'gaussian' or 'sparse', got {prior!r}")
    y = _luminance(problem.y).to(torch.float64)
    B = len(y)
    sigma2 = 2.0 * (noise_scale * max(problem.sigma_y, 1e-3)) ** 2
    schedule = [sigma2 * anneal ** (2.0 * (1 - t / max(n_em - 1, 1))) for t in range(n_em)]
    lv = pyramid_levels(problem.kernel_size, tuple(y.shape[-2:]), levels)
    k, prev_scale, qp_iters, change = None, None, 0, torch.zeros(B)
    for scale, size, shape in lv:
        if k is None:  # Levin's initial kernel: two horizontal pixels at the centre
            k = torch.zeros(B, size, size, dtype=y.dtype, device=y.device)
            k[:, size // 2, size // 2 : size // 2 + 2] = 0.5
        else:
            k = resample_kernel(k, size, scale / prev_scale)
        prev_scale = scale
        d = _derivatives(_resize_image(y, shape), taper * scale)
        d_hat = torch.fft.rfft2(d)
        if prior == "sparse":
            mu, w = torch.zeros_like(d), torch.full_like(d, alpha)
        beta = torch.ones(B, 1, 1, dtype=y.dtype, device=y.device)
        for it, s2 in enumerate(schedule + [sigma2] * n_final):
            if prior == "gaussian":
                mu_hat, c = levin_e_step(d_hat, kernel_otf(k, shape), s2, alpha)
                A, b = levin_quadratic(d_hat, mu_hat, c, size, shape)
            else:
                mu, c, w = _sparse_e_step(d, k, s2, mu, w, SPARSE_PRIOR[0], [s * s for s in SPARSE_PRIOR[1]], n_inner)
                A, b = _sparse_quadratic(d, mu, c, size)
            k_new, _, n_it = simplex_qp(A, b, k.flatten(1), tol=qp_tol)
            qp_iters += n_it
            k_new = k_new.view(B, size, size)
            if prior == "gaussian" and relax > 1:  # over-relaxed EM, kept only where it lowers −log p(d | k)
                k_try = project_simplex_kernel(k + beta * (k_new - k))
                ok = (
                    levin_nll(d_hat, kernel_otf(k_try, shape), s2, alpha, shape[1])
                    <= levin_nll(d_hat, kernel_otf(k_new, shape), s2, alpha, shape[1])
                ).view(-1, 1, 1)
                k_new = torch.where(ok, k_try, k_new)
                beta = torch.where(ok, (beta * 1.5).clamp(max=relax), torch.ones_like(beta))
            change = _relative_change(k_new, k)
            k = k_new
            if it >= len(schedule) and bool((change <= em_tol).all()):
                break
        k = recentre_kernel(k)
    reg = _reg(problem, deconv_alpha)
    x = deconvolve(problem.y, k, reg)
    flipped = 0
    if prior == "gaussian" and resolve_flip:
        kf = k.flip(-2, -1)
        xf = deconvolve(problem.y, kf, reg)
        better = _gradient_sparsity(_luminance(xf)) < _gradient_sparsity(_luminance(x))
        k = torch.where(better.view(-1, 1, 1), kf, k)
        x = torch.where(better.view(-1, 1, 1, 1), xf, x)
        flipped = int(better.sum())
    met = bool((change <= em_tol).all())
    return Estimate(
        x.to(problem.y.dtype),
        k,
        converged=met,
        note=f"{prior} prior, {len(lv)} levels × {n_em} EM iterations; last kernel change "
        f"{float(change.max()):.1e} ({'≤' if met else '>'} {em_tol:g}); {qp_iters} QP iterations; "
        f"{flipped} kernel(s) rotated by 180°",
    )


# ------------------------------------------------------------------ Chan–Wong / Perrone–Favaro
def _tv_gradient(x: torch.Tensor, eps: float) -> torch.Tensor:
    """∇ Σ √(|∇x|² + ε²): forward differences with Neumann boundary (no difference across the border)."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    n = torch.sqrt(dx * dx + dy * dy + eps * eps)
    px, py = dx / n, dy / n
    return (F.pad(px[..., :, :-1], (1, 0)) - px) + (F.pad(py[..., :-1, :], (0, 0, 1, 0)) - py)


def _amax(t):
    return t.abs().flatten(1).amax(1).clamp_min(1e-300).view(-1, *([1] * (t.dim() - 1)))


def _fft_size(n: int) -> int:
    """The smallest m ≥ n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _dft_otf(size: int, ext: tuple[int, int], dtype, device):
    """(F_H, F_W): the DFT matrices with which F_H k F_Wᵀ is :func:`kernel_otf` of a size×size kernel on
    the ext torus (rfft2 half-plane), for small kernels a cheaper route than wrapping and an FFT."""
    r = size // 2
    u = torch.arange(-r, r + 1, dtype=dtype, device=device)
    fh = torch.arange(ext[0], dtype=dtype, device=device)[:, None] * u[None] / ext[0]
    fw = torch.arange(ext[1] // 2 + 1, dtype=dtype, device=device)[:, None] * u[None] / ext[1]
    fh, fw = torch.exp(-2j * math.pi * fh), torch.exp(-2j * math.pi * fw)
    return fh, fw


def _tv_level(y, x, k, lam, eps, n_iter, c_x, c_k, window):
    """Perrone–Favaro iterations at one level. y (B, 1, H, W); x (B, 1, He, We), the latent image on
    a torus at least (H + 2r)×(W + 2r) whose top-left (H + 2r)×(W + 2r) block is y's window extended
    by the kernel radius r (the crop M never sees a wrapped value: "valid" convolution); k (B, s, s).

    One iteration: x ← x − s_x g_x with g_x = Kᵀ Mᵀ(M K x − y) + λ ∇TV_ε(x), s_x = c_x max|x| / max|g_x|;
    then k ← k − s_k g_k with g_k = ∇_k ½‖M(k ∗ x) − y‖² at the new x, s_k = c_k max k / max|g_k|,
    clipped at 0 and renormalised (P–F's normalised steps and projection). Returns x, k and the
    relative kernel change over the last ``window`` iterations."""
    size = k.shape[-1]
    r = size // 2
    H, W = y.shape[-2:]
    ext = tuple(x.shape[-2:])
    _, off = _lag_indices(size, ext, y.device)
    fh, fw = _dft_otf(size, ext, y.dtype, y.device)

    def otf_of(kk):
        return torch.einsum("hu,buv,wv->bhw", fh, kk.to(fh.dtype), fw)[:, None]

    def residual_hat(otf, X):  # rfft2 of Mᵀ(M(k ∗ x) − y)
        z = torch.fft.irfft2(otf * X, s=ext)
        res = torch.zeros_like(z)
        res[..., r : r + H, r : r + W] = z[..., r : r + H, r : r + W] - y
        return torch.fft.rfft2(res)

    otf, X = otf_of(k), torch.fft.rfft2(x)
    history = [k]
    for _ in range(n_iter):
        gx = torch.fft.irfft2(otf.conj() * residual_hat(otf, X), s=ext) + lam * _tv_gradient(x, eps)
        x = x - c_x * _amax(x) * gx / _amax(gx)
        X = torch.fft.rfft2(x)
        gk = torch.fft.irfft2((residual_hat(otf, X) * X.conj())[:, 0], s=ext).flatten(1)[:, off].view_as(k)
        k = (k - c_k * _amax(k) * gk / _amax(gk)).clamp_min(0)
        k = k / k.sum((-2, -1), keepdim=True).clamp_min(1e-300)
        otf = otf_of(k)
        history.append(k)
        if len(history) > window + 1:
            history.pop(0)
    return x, k, _relative_change(history[-1], history[0])


@method("tv-alternating")
def tv_alternating(
    problem: Problem,
    context: Context,
    *,
    lam: float = 1e-3,
    lam_growth: float = 1.9,
    levels: int = 5,
    n_iter: int = 400,
    c_x: float = 3e-2,
    c_k: float = 3e-3,
    eps: float = 1e-3,
    window: int = 20,
    tol: float = 1e-2,
    output: str = "deconvolve",
    deconv_alpha: float = 300.0,
) -> Estimate:
    """Alternating TV MAP over (x, k) (Chan–Wong 1998; Perrone–Favaro 2014), coarse to fine.

    Per level (coarse to fine, kernel side ÷ √2, λ·``lam_growth``^ℓ at level ℓ, 0 = finest, as P–F's
    pyramid): ``n_iter`` iterations of P–F's normalised steps (``c_x``, ``c_k``; P–F's code: 5e-3 and
    1e-3 with 1000 iterations per level) with valid convolution (:func:`_tv_level`); the latent
    image starts as y extended by replication, then is carried over (resized) between levels. The
    sharp image is :func:`deconvolve` with the final kernel (``output="deconvolve"``, reg =
    ``deconv_alpha``·σ_y²) or
    the latent TV image itself (``output="latent"``). ``converged``: the relative kernel change over
    the last ``window`` iterations of the finest level is ≤ ``tol`` for every image."""
    y = _luminance(problem.y).to(torch.float64)
    B = len(y)
    lv = pyramid_levels(problem.kernel_size, tuple(y.shape[-2:]), levels)
    k = x = prev_scale = prev_valid = None
    for ell, (scale, size, shape) in enumerate(lv):
        level = len(lv) - 1 - ell
        r = size // 2
        ys = _resize_image(y, shape)
        valid = (shape[0] + 2 * r, shape[1] + 2 * r)
        ext = (_fft_size(valid[0]), _fft_size(valid[1]))
        if k is None:
            k = torch.full((B, size, size), 1.0 / size**2, dtype=y.dtype, device=y.device)
            xv = F.pad(ys, (r, r, r, r), mode="replicate")
        else:
            k = resample_kernel(k, size, scale / prev_scale)
            xv = _resize_image(x[..., : prev_valid[0], : prev_valid[1]], valid)
        x = F.pad(xv, (0, ext[1] - valid[1], 0, ext[0] - valid[0]), mode="replicate")
        prev_scale, prev_valid = scale, valid
        x, k, change = _tv_level(ys, x, k, lam * lam_growth**level, eps, n_iter, c_x, c_k, window)
    if output == "deconvolve":
        xs = deconvolve(problem.y, k, _reg(problem, deconv_alpha))
    elif output == "latent":
        r = k.shape[-1] // 2
        xs = x[..., r : r + y.shape[-2], r : r + y.shape[-1]].clamp(0, 1).expand_as(problem.y)
    else:
        raise ValueError(f"output must be 'deconvolve' or 'latent', got {output!r}")
    met = bool((change <= tol).all())
    return Estimate(
        xs.to(problem.y.dtype),
        k,
        converged=met,
        note=f"{len(lv)} levels × {n_iter} iterations; kernel change over the last {window} "
        f"{float(change.max()):.1e} ({'≤' if met else '>'} {tol:g})",
    )


# ------------------------------------------------------------------ blind Richardson–Lucy (deepinv)
def _edge_taper(y: torch.Tensor, width: int) -> torch.Tensor:
    """y blended, over ``width`` px at each border (sin² ramp), into its circular blur by a uniform
    width×width box: nearly periodic, so that a circular model does not see a jump at the border
    (the role of MATLAB's edgetaper before deconvlucy; the true kernel is unknown here)."""
    w = _taper_window(tuple(y.shape[-2:]), float(width), y.dtype, y.device)
    box = torch.full((width | 1, width | 1), 1.0 / (width | 1) ** 2, dtype=y.dtype, device=y.device)
    smooth = torch.fft.irfft2(torch.fft.rfft2(y) * kernel_otf(box, tuple(y.shape[-2:])), s=tuple(y.shape[-2:]))
    return w * y + (1 - w) * smooth


@method("blind-rl")
def blind_rl(
    problem: Problem,
    context: Context,
    *,
    max_iter: int = 50,
    k_steps: int = 20,
    x_steps: int = 1,
    floor: float = 1e-3,
    pad: bool | str = "taper",
    output: str = "rl",
    deconv_alpha: float = 300.0,
) -> Estimate:
    """deepinv's blind Richardson–Lucy (multiplicative EM updates of x and k under a Poisson model).

    deepinv's BlindRL convolves circularly (true convolution, kernel centre at size // 2, the
    convention of :func:`prior_landscape.inverse.operators.fft_blur`: checked in the tests) and
    starts from x = y and the uniform kernel; each of its ``max_iter`` iterations makes ``k_steps``
    multiplicative kernel updates, then ``x_steps`` image updates (with one kernel update per image
    update the kernel hardly leaves the uniform start while the image is over-sharpened). y is
    clamped to [``floor``, 1] (a Poisson mean must be positive). Borders: BlindRL's model is circular,
    which a crop of a larger blurred scene is not; ``pad="taper"`` blends y's borders into a blur of
    itself (:func:`_edge_taper`, as MATLAB's edgetaper before deconvlucy), ``pad=True`` extends y by
    the kernel radius by reflection (then crops back), ``pad=False`` uses y as it is. ``output``:
    BlindRL's own image ("rl") or :func:`deconvolve` with its kernel ("deconvolve", reg =
    ``deconv_alpha``·σ_y²)."""
    from deepinv.optim import BlindRL

    y = problem.y.to(torch.float64).clamp(floor, 1.0)
    r = problem.kernel_size // 2
    if pad == "taper":
        yp, r = _edge_taper(y, max(r, 1)), 0
    else:
        yp = F.pad(y, (r, r, r, r), mode="reflect") if pad and r else y
    solver = BlindRL(kernel_size=problem.kernel_size, max_iter=max_iter, k_steps=k_steps, x_steps=x_steps, use_fft=True)
    with torch.no_grad():
        x, k = solver(yp)
    k = k[:, 0].to(torch.float64)
    if output == "rl":
        x = (x[..., r : r + y.shape[-2], r : r + y.shape[-1]] if pad and r else x).clamp(0, 1)
    elif output == "deconvolve":
        x = deconvolve(problem.y, k, _reg(problem, deconv_alpha))
    else:
        raise ValueError(f"output must be 'rl' or 'deconvolve', got {output!r}")
    return Estimate(
        x.to(problem.y.dtype), k, note=f"{max_iter} iterations × ({k_steps} kernel, {x_steps} image) updates"
    )
