"""Image and kernel metrics: PSNR, SSIM (against scikit-image), MNC, aligned kernel error, no-blur collapse."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

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
def _unit_signs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).to(DT)


@pytest.mark.parametrize("db", [20.0, 40.0, 70.0, 100.0])
def test_psnr_is_exact_at_a_known_mse(db):
    """x̂ = x ± δ everywhere has MSE = δ² exactly up to rounding, so PSNR = −20 log10 δ (R = 1);
    deepinv's ε (1e-8 added to MSE/R²) made 70 dB read 69.59."""
    x = torch.rand(3, 2, 16, 16, generator=G, dtype=DT)
    delta = 10.0 ** (-db / 20.0)
    x_hat = x + delta * _unit_signs(x.shape, 1)
    assert psnr(x_hat, x).dtype == DT
    np.testing.assert_allclose(psnr(x_hat, x).numpy(), db, rtol=0, atol=1e-9)
    np.testing.assert_allclose(psnr(x, x_hat).numpy(), db, rtol=0, atol=1e-9)  # symmetric
    # the data range R = max_pixel − min_pixel: images in [−1, 1] (R = 2) at the same MSE gain 20 log10 2
    np.testing.assert_allclose(
        psnr(x_hat, x, max_pixel=1.0, min_pixel=-1.0).numpy(), db + 20 * math.log10(2), atol=1e-9
    )


def test_psnr_identities():
    x = torch.rand(3, 1, 16, 16, generator=G, dtype=DT)
    n = torch.randn(x.shape, generator=G, dtype=DT) * 0.05
    manual = -10 * torch.log10(n.flatten(1).pow(2).mean(1))
    assert torch.allclose(psnr(x + n, x), manual, atol=1e-9)
    assert torch.allclose(psnr(2 * (x + n), 2 * x, max_pixel=2.0), psnr(x + n, x), atol=1e-9)
    assert torch.isposinf(psnr(x, x)).all()  # identical images: MSE = 0, PSNR = +inf (no cap)
    same_first = torch.cat([x[:1], x[1:] + n[1:]])
    out = psnr(same_first, x)
    assert torch.isposinf(out[0]) and torch.isfinite(out[1:]).all()  # per image
    with pytest.raises(ValueError, match="max_pixel > min_pixel"):
        psnr(x, x, max_pixel=0.0)


def _test_images(b, c, h, w, seed):
    """Structured images in [0, 1] (smoothed noise plus an edge) and degraded copies of them:
    blurred, noisy, contrast-changed, so that every SSIM term matters."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=DT)
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    x[..., :, : w // 2] += 0.3
    x = (x - x.amin()) / (x.amax() - x.amin())
    y = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    y = 0.8 * y + 0.1 + 0.05 * torch.randn(x.shape, generator=g, dtype=DT)
    y[0] = x[0] + 0.01 * torch.randn(x[0].shape, generator=g, dtype=DT)  # one close pair
    return y, x


SKIMAGE_OPTIONS = {
    "gaussian": dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False),  # Wang et al.
    "uniform": dict(),  # scikit-image's default: 7×7 uniform window, sample covariances
}


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
@pytest.mark.parametrize("shape", [(4, 1, 16, 16), (3, 1, 37, 29), (3, 3, 24, 33), (2, 3, 11, 64)])
def test_ssim_matches_scikit_image(window, shape):
    """Our batched SSIM against skimage.metrics.structural_similarity image by image, grayscale and
    colour (channel_axis), with the data range given, including images just as large as the window."""
    if window == "uniform" and shape[-2] == 11:  # the uniform window's own minimum size
        shape = shape[:2] + (7, shape[-1])
    y, x = _test_images(*shape, seed=sum(shape))
    ours = ssim(y, x, window=window)
    assert ours.shape == (shape[0],) and ours.dtype == DT
    ref = [
        structural_similarity(y[i].numpy(), x[i].numpy(), data_range=1.0, channel_axis=0, **SKIMAGE_OPTIONS[window])
        for i in range(shape[0])
    ]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)
    # other data ranges: images in [0, 255] with R = 255 give the same values
    np.testing.assert_allclose(ssim(255 * y, 255 * x, max_pixel=255.0, window=window).numpy(), ref, rtol=0, atol=1e-6)


def test_ssim_of_float32_and_of_a_blurred_photograph_match_scikit_image():
    """float32 input is promoted to float64 (skimage sees the same float32 values in float64); the
    512×512 `camera` blurred by a Gaussian (σ = 2) is the issue's example."""
    from skimage.data import camera
    from skimage.filters import gaussian

    x = camera().astype(np.float64) / 255
    y = gaussian(x, sigma=2.0)
    ours = ssim(torch.from_numpy(y)[None, None].float(), torch.from_numpy(x)[None, None].float())
    ref = structural_similarity(
        y.astype(np.float32).astype(np.float64),
        x.astype(np.float32).astype(np.float64),
        data_range=1.0,
        **SKIMAGE_OPTIONS["gaussian"],
    )
    assert abs(float(ours[0]) - ref) <= 1e-6, (float(ours[0]), ref)


def test_ssim_identities():
    x = torch.rand(2, 1, 16, 16, generator=G, dtype=DT)
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=DT), atol=1e-12)
    y = x + 0.1 * torch.randn(x.shape, generator=G, dtype=DT)
    s = ssim(y, x)
    assert s.shape == (2,) and (s < 0.99).all() and (s > -1).all()
    assert torch.allclose(ssim(x, y), s, atol=1e-12)
    assert (ssim(x + 0.3 * torch.randn(x.shape, generator=G, dtype=DT), x) < s).all()  # more noise, lower SSIM


def test_ssim_rejects_images_smaller_than_the_window():
    x = torch.rand(1, 1, 10, 16, generator=G, dtype=DT)
    with pytest.raises(ValueError, match=r"at least 11×11 pixels, got 10×16"):
        ssim(x, x)
    assert torch.allclose(ssim(x, x, window="uniform"), torch.ones(1, dtype=DT))  # 7×7 fits
    with pytest.raises(ValueError, match=r"at least 7×7 pixels, got 6×6"):
        ssim(x[..., :6, :6], x[..., :6, :6], window="uniform")
    with pytest.raises(ValueError, match="one shape"):
        ssim(x, x[..., :12])
    with pytest.raises(ValueError, match="'gaussian' or 'uniform'"):
        ssim(x, x, window="box")


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
    best = min(float((_embed(h, canvas, dy, dx) - kk).norm()) for dy in range(-6, 7) for dx in range(-6, 7))
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
