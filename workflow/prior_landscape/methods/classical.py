"""Classical blind-deblurring methods and the reference points of the benchmark.

* ``levin-map-k`` — MAP over the kernel alone (Levin, Weiss, Durand, Freeman 2011, "Efficient
  marginal likelihood optimization in blind deconvolution"), with the Gaussian gradient prior
  p(x) ∝ exp(−α/2 ‖∇x‖²): the image is integrated out by EM. Under circular convolution every
  operator is diagonal in Fourier, so the E-step is exact: the posterior of x given (y, k) is
  Gaussian with precision P(ω) = |k̂|²/σ² + α|ĝ|² + ε (ĝ the gradient filters) and mean
  μ̂ = conj(k̂) ŷ / (σ² P); the M-step minimises E‖y − k ⊛ x‖² = ‖y − k ⊛ μ‖² + Σ_ω |k̂|²/P(ω) over
  the kernels of the support on the simplex (projected gradient, step 1/L). Coarse to fine.
  Written here: no library implements it. The sharp estimate is the posterior mean at the final k.
* ``tv-alternating`` — alternating minimisation of ½‖k ⊛ x − y‖² + λ TV_ε(x) (Chan & Wong 1998),
  with the details of Perrone & Favaro (2014, "Total variation blind deconvolution: the devil is
  in the details"): gradient steps on x and on k, the kernel clipped at 0 and renormalised after
  each step, and a coarse-to-fine pyramid. Written here (neither has a library implementation).
* ``blind-rl`` — deepinv's blind Richardson–Lucy (:class:`deepinv.optim.BlindRL`).
* references (see the true kernel): ``blurry`` (y itself, the floor) and ``wiener`` (Wiener /
  Tikhonov-gradient deconvolution with the true kernel, the classical ceiling).

Every method works on grayscale kernels: colour images estimate the kernel on their luminance
and deconvolve each channel with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prior_landscape.inverse.kernels import project_simplex_kernel, uniform_kernel
from prior_landscape.inverse.operators import fft_blur, kernel_otf
from prior_landscape.methods.base import Context, Estimate, Problem, method

__all__ = ["gradient_power", "wiener_deconvolution", "levin_map_k", "tv_alternating", "blind_rl"]


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


# ------------------------------------------------------------------ references
@method("blurry", reference=True)
def blurry(problem: Problem, context: Context) -> Estimate:
    """The blurry input itself (the floor every method must beat)."""
    return Estimate(problem.y.clone(), None)


@method("wiener", reference=True)
def wiener(problem: Problem, context: Context, *, reg: float = 1e-2) -> Estimate:
    """Non-blind deconvolution with the true kernel: Wiener with a gradient regulariser (the classical ceiling)."""
    y = problem.y.to(torch.float64)
    return Estimate(wiener_deconvolution(y, context.true_kernel, reg).to(problem.y.dtype), context.true_kernel)


# ------------------------------------------------------------------ Levin et al. 2011
def _em_step(Y, k, shape, sigma2, alpha, eps, G2):
    """E-step in Fourier: posterior mean μ̂ and precision P(ω) of x given (y, k)."""
    otf = kernel_otf(k, shape)[:, 0]
    P = otf.abs().pow(2) / sigma2 + alpha * G2 + eps
    return otf.conj() * Y / (sigma2 * P), P


def _expected_misfit(k, Y, mu_hat, P, shape):
    """E‖y − k ⊛ x‖² under the Gaussian posterior (rfft2 sums with Hermitian weights), per image."""
    H, W = shape
    w = torch.full((W // 2 + 1,), 2.0, dtype=Y.real.dtype, device=Y.device)
    w[0] = 1.0
    if W % 2 == 0:
        w[-1] = 1.0
    otf = kernel_otf(k, shape)[:, 0]
    misfit = (otf * mu_hat - Y).abs().pow(2) / (H * W) + otf.abs().pow(2) / P
    return (misfit * w).sum((-2, -1))


def _levin_scale(y, k, sigma2, alpha, eps, n_em, n_k):
    shape = tuple(y.shape[-2:])
    Y, G2 = torch.fft.rfft2(y[:, 0]), gradient_power(shape, y.dtype, y.device)
    for _ in range(n_em):
        mu_hat, P = _em_step(Y, k, shape, sigma2, alpha, eps, G2)  # E-step
        L = 2.0 * float((mu_hat.abs().pow(2) + shape[0] * shape[1] / P).amax())  # Lipschitz bound of the M-step
        for _ in range(n_k):  # M-step: projected gradient on the simplex
            kk = k.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(_expected_misfit(kk, Y, mu_hat, P, shape).sum(), kk)
            k = project_simplex_kernel(k - g / L)
    mu_hat, _ = _em_step(Y, k, shape, sigma2, alpha, eps, G2)
    return k, torch.fft.irfft2(mu_hat, s=shape)[:, None]


def _pyramid(y: torch.Tensor, levels: int) -> list[torch.Tensor]:
    out = [y]
    for _ in range(levels - 1):
        out.append(F.interpolate(out[-1], scale_factor=0.5, mode="area"))
    return out[::-1]


def _resize_kernel(k: torch.Tensor, size: int) -> torch.Tensor:
    """A kernel on another odd support, by bilinear resampling, clipped and renormalised."""
    if k.shape[-1] == size:
        return k
    r = F.interpolate(k[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0].clamp_min(0)
    return r / r.sum((-2, -1), keepdim=True).clamp_min(1e-12)


def _scale_sizes(size: int, levels: int) -> list[int]:
    return [max(3, (size // 2**i) | 1) for i in reversed(range(levels))]


@method("levin-map-k")
def levin_map_k(problem: Problem, context: Context, *, alpha: float = 50.0, levels: int = 3, n_em: int = 15,
                n_k: int = 20, eps: float = 1e-4, noise_scale: float = 1.0) -> Estimate:
    """MAP over the kernel with the image integrated out (Levin et al. 2011; Gaussian gradient prior, EM in Fourier)."""
    y = _luminance(problem.y).to(torch.float64)
    sigma2 = max(noise_scale * problem.sigma_y, 1e-3) ** 2
    sizes = _scale_sizes(problem.kernel_size, levels)
    k = uniform_kernel(sizes[0]).to(y).expand(len(y), -1, -1).clone()
    for yl, size in zip(_pyramid(y, levels), sizes):
        k, _ = _levin_scale(yl, _resize_kernel(k, size), sigma2, alpha, eps, n_em, n_k)
    x = _deconvolve_channels(problem.y, k, sigma2 * alpha)
    return Estimate(x, k, note=f"{levels} scales × {n_em} EM iterations")


def _deconvolve_channels(y: torch.Tensor, k: torch.Tensor, reg: float) -> torch.Tensor:
    return wiener_deconvolution(y.to(torch.float64), k, reg).to(y.dtype)


# ------------------------------------------------------------------ Chan–Wong / Perrone–Favaro
def _tv_gradient(x: torch.Tensor, eps: float) -> torch.Tensor:
    """∇ TV_ε(x) = −div(∇x / √(|∇x|² + ε²)) (forward differences, periodic)."""
    dx, dy = x.roll(-1, -1) - x, x.roll(-1, -2) - x
    n = torch.sqrt(dx * dx + dy * dy + eps * eps)
    px, py = dx / n, dy / n
    return -((px - px.roll(1, -1)) + (py - py.roll(1, -2)))


def _tv_scale(y, x, k, lam, eps, n_iter, step_x, step_k):
    shape = tuple(y.shape[-2:])
    for _ in range(n_iter):
        otf = kernel_otf(k, shape)
        r = torch.fft.irfft2(otf * torch.fft.rfft2(x), s=shape) - y  # k ⊛ x − y
        x = x - step_x * (torch.fft.irfft2(otf.conj() * torch.fft.rfft2(r), s=shape) + lam * _tv_gradient(x, eps))
        kk = k.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(0.5 * (fft_blur(x, kk) - y).pow(2).sum(), kk)
        k = (k - step_k * g).clamp_min(0)  # Perrone–Favaro: clip, then renormalise
        k = k / k.sum((-2, -1), keepdim=True).clamp_min(1e-12)
    return x, k


@method("tv-alternating")
def tv_alternating(problem: Problem, context: Context, *, lam: float = 3e-3, eps: float = 1e-3, levels: int = 3,
                   n_iter: int = 150, step_x: float = 0.2, step_k: float = 1e-3, final_reg: float = 1e-3) -> Estimate:
    """Alternating TV MAP over (x, k) (Chan–Wong 1998; Perrone–Favaro 2014), coarse to fine."""
    y = _luminance(problem.y).to(torch.float64)
    sizes = _scale_sizes(problem.kernel_size, levels)
    k = uniform_kernel(sizes[0]).to(y).expand(len(y), -1, -1).clone()
    x = None
    for yl, size in zip(_pyramid(y, levels), sizes):
        x = yl.clone() if x is None else F.interpolate(x, size=yl.shape[-2:], mode="bilinear", align_corners=False)
        scale = yl.shape[-1] / y.shape[-1]
        x, k = _tv_scale(yl, x, _resize_kernel(k, size), lam, eps, n_iter, step_x, step_k / scale**2)
    return Estimate(_deconvolve_channels(problem.y, k, final_reg), k, note=f"{levels} scales × {n_iter} iterations")


# ------------------------------------------------------------------ blind Richardson–Lucy (deepinv)
@method("blind-rl")
def blind_rl(problem: Problem, context: Context, *, max_iter: int = 200, floor: float = 1e-3) -> Estimate:
    """deepinv's blind Richardson–Lucy (multiplicative EM updates of x and k under a Poisson model)."""
    from deepinv.optim import BlindRL

    y = problem.y.to(torch.float64).clamp_min(floor)  # a Poisson model needs y > 0
    solver = BlindRL(kernel_size=problem.kernel_size, max_iter=max_iter, use_fft=True)
    x, k = solver(y)
    return Estimate(x.to(problem.y.dtype), k[:, 0].to(torch.float64), note=f"{max_iter} iterations")

