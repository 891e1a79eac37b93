"""Image and kernel metrics: PSNR, SSIM (deepinv), MNC, aligned kernel error, no-blur collapse."""

import math

import pytest
import torch

from prior_landscape.inverse.kernels import ZernikeKernel, dirac_kernel, gaussian_kernel, random_motion_kernel
from prior_landscape.metrics import (
    collapse_distance,
    cross_correlation,
    kernel_error,
    mnc,
    no_blur_collapse,
    psnr,
    ssim,
)

DT = torch.float64
G = torch.Generator().manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _embed(k, size, dy=0, dx=0):
    """k placed in a size×size zero canvas, centre shifted by (dy, dx)."""
    out = torch.zeros(size, size, dtype=k.dtype)
    c, r = size // 2, k.shape[0] // 2
    out[c - r + dy : c + r + 1 + dy, c - r + dx : c + r + 1 + dx] = k
    return out


# -------------------------------------------------------------------- images
def test_psnr_identities():
    x = torch.rand(3, 1, 16, 16, generator=G, dtype=DT)
    assert torch.allclose(psnr(x + 0.1, x), torch.full((3,), 20.0, dtype=DT), atol=1e-5)  # MSE 0.01
    assert torch.allclose(psnr(x + 0.01, x), torch.full((3,), 40.0, dtype=DT), atol=1e-3)
    n = torch.randn(x.shape, generator=G, dtype=DT) * 0.05
    manual = -10 * torch.log10(n.flatten(1).pow(2).mean(1))
    assert torch.allclose(psnr(x + n, x), manual, atol=1e-4)
    assert torch.allclose(psnr(x, x + n), psnr(x + n, x))  # symmetric
    assert (psnr(x, x) >= 79.9).all()  # deepinv caps an exact match at 80 dB
    assert torch.allclose(psnr(2 * (x + n), 2 * x, max_pixel=2.0), psnr(x + n, x), atol=1e-6)


def test_ssim_identities():
    x = torch.rand(2, 1, 16, 16, generator=G, dtype=DT)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=DT), atol=1e-6)
    y = x + 0.1 * torch.randn(x.shape, generator=G, dtype=DT)
    s = ssim(y, x)
    assert s.shape == (2,) and (s < 0.99).all() and (s > -1).all()
    assert torch.allclose(ssim(x, y), s, atol=1e-6)
    assert (ssim(x + 0.3 * torch.randn(x.shape, generator=G, dtype=DT), x) < s).all()  # more noise, lower SSIM


# ------------------------------------------------------------------ kernels
def test_cross_correlation_matches_brute_force():
    a = torch.rand(5, 5, generator=G, dtype=DT)
    b = torch.rand(3, 3, generator=G, dtype=DT)
    c = cross_correlation(a, b)
    assert c.shape == (7, 7)
    for sy in range(-3, 4):
        for sx in range(-3, 4):
            ref = sum(
                float(a[u + 1 + sy, v + 1 + sx] * b[u, v])
                for u in range(3)
                for v in range(3)
                if 0 <= u + 1 + sy < 5 and 0 <= v + 1 + sx < 5
            )
            assert math.isclose(float(c[sy + 3, sx + 3]), ref, abs_tol=1e-12)


def test_mnc_is_one_for_shifted_copies_and_at_most_one():
    k = random_motion_kernel(7, 1)
    for dy, dx in ((0, 0), (3, -2), (-4, 4)):
        shifted = _embed(k, 15, dy, dx)
        assert math.isclose(float(mnc(shifted, k)), 1.0, abs_tol=1e-12)
        assert math.isclose(float(mnc(k, shifted)), 1.0, abs_tol=1e-12)
        assert math.isclose(float(mnc(3.0 * shifted, k)), 1.0, abs_tol=1e-12)  # scale invariant
    a = torch.rand(20, 7, 7, generator=G, dtype=DT)
    b = torch.randn(20, 9, 9, generator=G, dtype=DT)  # signed too
    m = mnc(a, b)
    assert m.shape == (20,) and (m <= 1 + 1e-12).all() and (m < 0.999).all()
    assert (mnc(a, a[0]) <= 1 + 1e-12).all()
    # a flipped asymmetric kernel: MNC < 1, restored with flip=True
    assert float(mnc(k.flip(0, 1), k)) < 0.99
    assert math.isclose(float(mnc(k.flip(0, 1), k, flip=True)), 1.0, abs_tol=1e-12)


def test_kernel_error_is_shift_invariant_and_exact():
    k = random_motion_kernel(7, 2)
    h = gaussian_kernel(7, 1.2)
    base = kernel_error(h, k)
    assert float(base) > 0.05
    for dy, dx in ((2, 1), (-3, 0), (4, -4)):
        assert math.isclose(float(kernel_error(_embed(h, 17, dy, dx), k)), float(base), abs_tol=1e-12)
        assert float(kernel_error(_embed(k, 17, dy, dx), k)) < 1e-7
    # brute force: min over shifts of ‖S_s ĥ − k‖ on a common canvas large enough to hold every shift
    canvas = 21
    kk = _embed(k, canvas)
    best = min(
        float((_embed(h, canvas, dy, dx) - kk).norm()) for dy in range(-6, 7) for dx in range(-6, 7)
    )
    assert math.isclose(float(base), best, abs_tol=1e-10)
    assert math.isclose(float(kernel_error(h, k, max_shift=0)), float((h - k).norm()), abs_tol=1e-12)
    assert float(kernel_error(k.flip(0, 1), k, flip=True)) < 1e-7
    # batched
    hb = torch.stack([h, k])
    assert torch.allclose(kernel_error(hb, k), torch.stack([base, kernel_error(k, k)]))


def test_no_blur_collapse_flags_dirac_and_smallest_kernel():
    z = ZernikeKernel(9, fc=0.25, pupil_size=64)
    airy = z.smallest()
    aberrated = z.kernel(torch.tensor([0.25, 0.15, -0.15, 0.1, -0.1], dtype=DT)).detach()
    d = dirac_kernel(9)
    shifted_dirac = torch.roll(d, (1, -2), (0, 1))
    ks = torch.stack([d, shifted_dirac, airy, aberrated, gaussian_kernel(9, 2.0)])
    flags = no_blur_collapse(ks, airy, tol=0.05)
    assert flags.tolist() == [True, True, True, False, False]
    assert no_blur_collapse(ks, None, tol=0.05).tolist() == [True, True, False, False, False]
    dist = collapse_distance(ks, airy)
    assert float(dist[:3].max()) < 1e-7 and float(dist[3]) > 0.1
