"""Properties of the P §2.3 / Fig. 5 blur families and of the convolutions (blur.py)."""

from __future__ import annotations

import math

import deepinv as dinv
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d
from scipy.special import j1

from prior_landscape.inverse.operators import blur, circular_blur
from prior_landscape.landscape.families import AIRY_FIRST_ZERO, FAMILIES, kernel, kernel_stack

SIZE = 31
C = SIZE // 2
THETA_GRID = np.linspace(0.0, 5.0, 11)  # the paper's grid (P §2.3)
RADIAL = ("gaussian", "airy", "defocus")
_YY, _XX = np.mgrid[-C : C + 1, -C : C + 1]


def dirac(size=SIZE):
    d = torch.zeros(size, size, dtype=torch.float64)
    d[size // 2, size // 2] = 1.0
    return d


def second_moment(h: torch.Tensor) -> float:
    """Σ_p h[p] |p|², p measured from the kernel centre."""
    c = h.shape[-1] // 2
    yy, xx = np.mgrid[-c : c + 1, -c : c + 1]
    return float((h.numpy() * (xx**2 + yy**2)).sum())


def tent_dense_reference(density, size=SIZE, sub=48):
    """Independent h[p] ∝ ∫ T(p − u) I(u) du on a (1/sub)-px midpoint grid, normalised.

    T(u) = max(0, 1−|u_x|) max(0, 1−|u_y|) is separable, so the integral is
    W · I · Wᵀ with W[p, a] = T(p − u_a).
    """
    c = size // 2
    n = (2 * c + 2) * sub
    u = -c - 1 + (np.arange(n) + 0.5) / sub
    X, Y = np.meshgrid(u, u)  # Y indexes rows
    intensity = density(X, Y)
    p = np.arange(-c, c + 1)
    W = np.clip(1.0 - np.abs(p[:, None] - u[None, :]), 0.0, None)
    h = W @ intensity @ W.T
    return h / h.sum()


# ---------------------------------------------------------------------------
# kernels: h_0 = δ, simplex, symmetry
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [3, 9, 31])
def test_theta_zero_is_exactly_the_dirac(family, size):
    h = kernel(family, 0.0, size)
    assert h.dtype == torch.float64 and h.shape == (size, size)
    assert torch.equal(h, dirac(size))
    assert torch.equal(kernel(family, 0, size), dirac(size))  # int θ too


@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_are_on_the_simplex(family):
    for theta in [1e-9, 1e-3, 0.3, 1.0, 2.5, 5.0, 12.0, 30.0]:
        h = kernel(family, theta)
        assert h.shape == (SIZE, SIZE) and h.dtype == torch.float64
        assert torch.isfinite(h).all()
        assert float(h.min()) >= 0.0, (family, theta)
        assert abs(float(h.sum()) - 1.0) < 1e-12, (family, theta)


@pytest.mark.parametrize("family", RADIAL)
def test_radial_families_have_the_square_symmetries(family):
    for theta in [0.1, 0.7, 1.0, 2.3, 5.0, 13.0]:
        h = kernel(family, theta)
        for g in (h.flip(0), h.flip(1), h.flip(0, 1), h.T, h.flip(0).T):
            assert torch.allclose(g, h, rtol=0, atol=1e-15), (family, theta)
        # genuinely 2-D: the row through the centre carries a fraction only
        assert float(h[C].sum()) < 0.99


def test_motion_is_horizontal_and_flip_symmetric():
    for theta in [0.1, 1.0, 2.3, 5.0, 13.0]:
        h = kernel("motion", theta)
        assert torch.allclose(h.flip(0), h, rtol=0, atol=1e-15)
        assert torch.allclose(h.flip(1), h, rtol=0, atol=1e-15)
        off_row = h.clone()
        off_row[C] = 0.0
        assert torch.equal(off_row, torch.zeros_like(h))  # only the centre row
        # support: the segment [−θ/2, θ/2] seen through the tent → |j| < θ/2 + 1
        j = np.arange(-C, C + 1)
        row = h[C].numpy()
        assert np.all(row[np.abs(j) >= theta / 2 + 1] == 0.0)
        assert np.all(row[np.abs(j) <= theta / 2] > 0.0)
    assert not torch.allclose(kernel("motion", 3.0), kernel("motion", 3.0).T)


# ---------------------------------------------------------------------------
# continuity and spread
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_continuous_in_theta_without_jump_at_zero(family):
    delta = 1e-3
    for theta in np.linspace(0.0, 10.0, 41):
        d = float((kernel(family, theta + delta) - kernel(family, theta)).abs().sum())
        assert d <= 3.0 * delta, (family, theta, d)  # ℓ¹-Lipschitz, constant ≲ 2.2
    # no jump at 0: ||h_θ − δ||₁ = O(θ) (≈ 2.9 θ for the heavy-tailed Airy)
    for theta in [1e-9, 1e-6, 1e-4]:
        d = float((kernel(family, theta) - dirac()).abs().sum())
        assert 0.0 < d <= 4.0 * theta, (family, theta, d)


@pytest.mark.parametrize("family", FAMILIES)
def test_spread_grows_with_theta(family):
    m = np.array([second_moment(kernel(family, t)) for t in THETA_GRID])
    assert m[0] == 0.0
    assert np.all(np.diff(m) > 0), (family, m)
    m_big = [second_moment(kernel(family, t)) for t in [5.0, 7.5, 10.0, 15.0]]
    assert np.all(np.diff(m_big) > 0), (family, m_big)


def test_kernels_differ_and_grow_with_theta_in_l1():
    for family in FAMILIES:
        hs = kernel_stack(family, THETA_GRID)
        d0 = [float((h - dirac()).abs().sum()) for h in hs]
        assert np.all(np.diff(d0) > 0), family


# ---------------------------------------------------------------------------
# exact moments / shapes of each family
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("theta", [3.0, 4.0, 5.0])
def test_gaussian_second_moment_is_fwhm_std_plus_tent(theta):
    # std from the FWHM θ; the tent adds E[f(1−f)] = 1/6 per axis (exact up to
    # e^{−2π²σ²} for σ ≳ 1), so Σ h |p|² = 2σ² + 1/3.
    sigma = theta / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    assert second_moment(kernel("gaussian", theta)) == pytest.approx(
        2 * sigma**2 + 1 / 3,
        abs=1e-8,  # (truncation to 31x31: 2e-10 at θ = 5)
    )


def test_gaussian_is_separable_with_the_right_marginal():
    h = kernel("gaussian", 2.0)
    row = h.sum(0)
    assert torch.allclose(torch.outer(row, row), h, rtol=0, atol=1e-15)
    # FWHM: the 1-D marginal's variance is σ² + E[f(1−f)] ≈ σ² + 1/6
    sigma = 2.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    p = np.arange(-C, C + 1)
    assert float((row.numpy() * p**2).sum()) == pytest.approx(sigma**2 + 1 / 6, abs=1e-4)


@pytest.mark.parametrize("theta", [0.5, 1.0, 1.7, 2.0])
def test_motion_second_moment_exact(theta):
    # u ~ U[−θ/2, θ/2] seen through the tent: Σ h p² = E[u²] + E[f(1−f)]
    # = θ²/12 + (θ/4 − θ²/12) = θ/4 for θ ≤ 2 (f(1−f) = |u|(1−|u|) for |u| ≤ 1).
    assert second_moment(kernel("motion", theta)) == pytest.approx(theta / 4, abs=1e-7)


def test_motion_long_segment_is_flat():
    # length 9 → the 8 interior pixels |j| ≤ 3.5 get equal mass 1/9 (tent partition of unity)
    row = kernel("motion", 9.0)[C].numpy()
    j = np.arange(-C, C + 1)
    assert np.allclose(row[np.abs(j) <= 3], 1.0 / 9.0, atol=1e-9)
    assert np.all(row[np.abs(j) >= 6] == 0.0)


def test_defocus_footprint_and_second_moment_theta_3():
    theta, R = 3.0, 1.5
    h = kernel("defocus", theta).numpy()
    # footprint: the disk of radius R seen through the tent reaches only pixels
    # whose 2x2 square around them meets the disk
    dx = np.maximum(np.abs(_XX) - 1.0, 0.0)
    dy = np.maximum(np.abs(_YY) - 1.0, 0.0)
    assert np.all(h[np.hypot(dx, dy) >= R] == 0.0)
    assert np.all(h[np.hypot(_XX, _YY) <= R] > 0.0)  # the disk itself is covered
    # area: the pixels inside the disk hold the bulk of the mass
    inside = np.hypot(_XX, _YY) <= R
    assert inside.sum() == 9 and h[inside].sum() > 0.75
    # uniform disk: E[r²] = R²/2; the tent adds E[f_x(1−f_x) + f_y(1−f_y)] (≈ 1/3),
    # integrated here on an independent fine grid of the disk
    s = 1.0 / 512
    u = np.arange(-R + s / 2, R, s)
    X, Y = np.meshgrid(u, u)
    m = X**2 + Y**2 <= R**2
    fx, fy = X[m] - np.floor(X[m]), Y[m] - np.floor(Y[m])
    tent_var = float(np.mean(fx * (1 - fx) + fy * (1 - fy)))
    assert tent_var == pytest.approx(1 / 3, abs=0.03)
    assert second_moment(torch.from_numpy(h)) == pytest.approx(R**2 / 2 + tent_var, abs=2e-3)


def test_airy_first_dark_ring_at_radius_theta_over_two():
    for theta in [10.0, 14.0]:
        row = kernel("airy", theta)[C].numpy()[C:]  # radial profile along +x
        r0 = theta / 2
        # decreasing core, minimum at the first dark ring, then the first bright ring
        assert np.all(np.diff(row[: int(r0)]) < 0)
        lo = int(round(r0))
        assert np.argmin(row[lo - 2 : lo + 3]) == 2, (theta, row[: lo + 4])
        assert row[lo + 2] > row[lo]


@pytest.mark.parametrize(
    "family, theta, tol",
    [
        ("gaussian", 1.5, 3e-4),
        ("gaussian", 4.0, 1e-4),
        ("airy", 1.5, 5e-4),
        ("airy", 5.0, 3e-4),
        ("airy", 12.0, 3e-4),
        ("defocus", 2.0, 4e-3),
        ("defocus", 5.0, 2e-3),
        ("defocus", 12.0, 1e-3),
    ],
)
def test_matches_independent_dense_integration(family, theta, tol):
    """The quadrature equals ∫ T(p − u) dμ_θ(u) of the continuous PSF (P Fig. 5)."""
    if family == "gaussian":
        sigma = theta / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        density = lambda X, Y: np.exp(-(X**2 + Y**2) / (2 * sigma**2))  # noqa: E731
    elif family == "defocus":
        density = lambda X, Y: (np.hypot(X, Y) <= theta / 2).astype(float)  # noqa: E731

    else:

        def density(X, Y):
            x = AIRY_FIRST_ZERO * np.hypot(X, Y) / (theta / 2)
            return (2 * j1(x) / x) ** 2  # the midpoint grid never hits r = 0

    ref = tent_dense_reference(density, sub=64)
    err = np.abs(kernel(family, theta).numpy() - ref).sum()
    assert err < tol, (family, theta, err)


def test_kernel_stack_and_sizes():
    thetas = [0.0, 0.5, 2.0, 4.5]
    for family in FAMILIES:
        st = kernel_stack(family, thetas, size=15)
        assert st.shape == (4, 15, 15) and st.dtype == torch.float64
        for t, h in zip(thetas, st):
            assert torch.equal(h, kernel(family, t, 15))
        assert torch.equal(kernel_stack(family, torch.tensor(thetas)), kernel_stack(family, thetas))
    assert kernel_stack("airy", []).shape == (0, SIZE, SIZE)
    # a larger support only adds the truncated tail: same shape in the middle
    small, big = kernel("gaussian", 2.0, 15), kernel("gaussian", 2.0, 41)
    assert torch.allclose(small, big[13:28, 13:28], atol=1e-12)


# ---------------------------------------------------------------------------
# invalid inputs
# ---------------------------------------------------------------------------


def test_kernel_rejects_bad_inputs():
    with pytest.raises(ValueError, match="unknown blur family 'box'"):
        kernel("box", 1.0)
    with pytest.raises(ValueError, match="theta must be >= 0.*-0.5"):
        kernel("gaussian", -0.5)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="theta must be finite"):
            kernel("airy", bad)
    with pytest.raises(ValueError, match="theta must be a real number"):
        kernel("airy", "wide")
    for size in (30, 1, 0, -3, 3.0):
        with pytest.raises(ValueError, match="odd integer >= 3"):
            kernel("motion", 1.0, size)
    with pytest.raises(ValueError, match="unknown blur family"):
        kernel_stack("Gaussian", [1.0])
    with pytest.raises(ValueError, match="theta must be >= 0"):
        kernel_stack("defocus", [1.0, -1.0])
    with pytest.raises(ValueError, match="no mass"):
        kernel("defocus", 1e6, 3)


# ---------------------------------------------------------------------------
# blur: true convolution with deepinv's conv2d
# ---------------------------------------------------------------------------


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 20, 24, generator=g, dtype=torch.float64)


@pytest.fixture
def asym_kernel():
    g = torch.Generator().manual_seed(1)
    k = torch.rand(5, 7, generator=g, dtype=torch.float64)
    return k / k.sum()


@pytest.mark.parametrize("padding", ["reflect", "replicate", "circular", "constant", "zeros"])
def test_blur_with_dirac_is_identity(images, padding):
    for size in (3, 9, 15):
        assert torch.allclose(blur(images, dirac(size), padding), images, rtol=0, atol=1e-15)
    assert torch.allclose(circular_blur(images, dirac(31)), images, atol=1e-14)


@pytest.mark.parametrize("padding", ["reflect", "replicate", "circular"])
def test_blur_preserves_constant_images(padding):
    x = torch.full((1, 2, 17, 19), 0.37, dtype=torch.float64)
    for family in FAMILIES:
        h = kernel(family, 4.0, 15)
        assert torch.allclose(blur(x, h, padding), x, atol=1e-14)
        assert torch.allclose(circular_blur(x, h), x, atol=1e-14)


def test_blur_orientation_is_a_true_convolution():
    # h = δ at offset (+1, +2) from the centre → y[i, j] = x[i − 1, j − 2]
    x = torch.arange(2 * 1 * 9 * 11, dtype=torch.float64).reshape(2, 1, 9, 11)
    h = torch.zeros(7, 7, dtype=torch.float64)
    h[3 + 1, 3 + 2] = 1.0
    y = blur(x, h, "circular")
    assert torch.equal(y, torch.roll(x, shifts=(1, 2), dims=(-2, -1)))
    assert torch.equal(blur(x, h, "constant")[..., 1:, 2:], x[..., :-1, :-2])
    assert torch.allclose(circular_blur(x, h), y, rtol=0, atol=1e-12)  # FFT rounding


@pytest.mark.parametrize(
    "padding, np_mode",
    [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap"), ("constant", "constant")],
)
def test_blur_matches_scipy_convolve2d(images, asym_kernel, padding, np_mode):
    """Whole image: pad as torch does (torch 'reflect' = numpy 'reflect', i.e. no
    edge repetition — scipy's 'symm' is numpy 'symmetric'), then scipy's valid
    *convolution*."""
    y = blur(images, asym_kernel, padding).numpy()
    k = asym_kernel.numpy()
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    for b in range(images.shape[0]):
        for c in range(images.shape[1]):
            xp = np.pad(images[b, c].numpy(), ((ph, ph), (pw, pw)), mode=np_mode)
            ref = convolve2d(xp, k, mode="valid")
            assert np.allclose(y[b, c], ref, rtol=0, atol=1e-13)
    # and 'same' with scipy's own boundaries, where they coincide
    assert np.allclose(
        blur(images, asym_kernel, "circular")[1, 2].numpy(),
        convolve2d(images[1, 2].numpy(), k, mode="same", boundary="wrap"),
        atol=1e-13,
    )
    assert np.allclose(
        blur(images, asym_kernel, "zeros")[0, 1].numpy(),
        convolve2d(images[0, 1].numpy(), k, mode="same", boundary="fill"),
        atol=1e-13,
    )
    # scipy 'symm' differs from 'reflect' only near the border
    sym = convolve2d(images[0, 0].numpy(), k, mode="same", boundary="symm")
    refl = blur(images, asym_kernel, "reflect")[0, 0].numpy()
    assert np.allclose(refl[ph:-ph, pw:-pw], sym[ph:-ph, pw:-pw], atol=1e-13)
    assert not np.allclose(refl, sym)


def test_blur_equals_deepinv_blur_physics(images, asym_kernel):
    for padding in ("reflect", "circular", "replicate"):
        phys = dinv.physics.Blur(filter=asym_kernel[None, None], padding=padding)
        assert torch.allclose(blur(images, asym_kernel, padding), phys.A(images), atol=1e-14)


def test_blur_per_image_kernels_and_dtype(images):
    ks = torch.stack([kernel("motion", 3.0, 9), kernel("airy", 2.0, 9)])
    y = blur(images, ks)
    for b in range(2):
        assert torch.allclose(y[b : b + 1], blur(images[b : b + 1], ks[b]), atol=1e-15)
    yc = circular_blur(images, ks)
    for b in range(2):
        assert torch.allclose(yc[b : b + 1], circular_blur(images[b : b + 1], ks[b]), atol=1e-14)
    x32 = images.float()
    assert blur(x32, ks).dtype == torch.float32
    assert circular_blur(x32, ks).dtype == torch.float32
    assert torch.allclose(blur(x32, ks).double(), y, atol=1e-5)


def test_blur_is_differentiable_in_image_and_kernel(images):
    x = images.clone().requires_grad_(True)
    h = kernel("gaussian", 2.0, 7).requires_grad_(True)
    (blur(x, h) ** 2).sum().backward()
    assert x.grad is not None and h.grad is not None and torch.isfinite(h.grad).all()
    h.grad = None
    (circular_blur(images, h) ** 2).sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad).all()


# ---------------------------------------------------------------------------
# circular_blur: periodic convolution by FFT
# ---------------------------------------------------------------------------


def periodic_conv_by_roll(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """y = Σ_{m,n} h[m, n] · roll(x, (m − c_h, n − c_w)), i.e. x[(i − (m − c)) mod H]."""
    ch, cw = h.shape[0] // 2, h.shape[1] // 2
    y = np.zeros_like(x)
    for m in range(h.shape[0]):
        for n in range(h.shape[1]):
            y += h[m, n] * np.roll(x, shift=(m - ch, n - cw), axis=(-2, -1))
    return y


def test_circular_blur_matches_explicit_periodic_convolution(images, asym_kernel):
    x = images.numpy()
    assert np.allclose(
        circular_blur(images, asym_kernel).numpy(),
        periodic_conv_by_roll(x, asym_kernel.numpy()),
        atol=1e-13,
    )
    # same as the direct convolution with circular padding (deepinv conv2d)
    assert torch.allclose(circular_blur(images, asym_kernel), blur(images, asym_kernel, "circular"), atol=1e-13)
    # kernel larger than the image wraps around the torus
    g = torch.Generator().manual_seed(2)
    big = torch.rand(31, 31, generator=g, dtype=torch.float64)
    small_x = images[..., :12, :16]
    assert np.allclose(
        circular_blur(small_x, big).numpy(),
        periodic_conv_by_roll(small_x.numpy(), big.numpy()),
        atol=1e-12,
    )
    # a centred symmetric paper kernel on a 32x32 image (P §4.1 profiles)
    x32 = torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64)
    h = kernel("defocus", 3.0)
    assert np.allclose(circular_blur(x32, h).numpy(), periodic_conv_by_roll(x32.numpy(), h.numpy()), atol=1e-13)


# ---------------------------------------------------------------------------
# invalid convolution inputs
# ---------------------------------------------------------------------------


def test_blur_rejects_bad_inputs(images, asym_kernel):
    with pytest.raises(ValueError, match="padding 'valid' not supported"):
        blur(images, asym_kernel, "valid")
    with pytest.raises(ValueError, match="padding 'mirror' not supported"):
        blur(images, asym_kernel, "mirror")
    with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\) tensor"):
        blur(images[0], asym_kernel)
    with pytest.raises(ValueError, match="kernel sides must be odd"):
        blur(images, torch.ones(4, 4, dtype=torch.float64) / 16)
    with pytest.raises(ValueError, match="need B = 2"):
        blur(images, torch.ones(3, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"kernel must be \(k, k\) or per-image"):
        blur(images, torch.ones(1, 1, 1, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="'reflect' padding needs"):
        blur(images[..., :10, :10], kernel("airy", 2.0))
    with pytest.raises(ValueError, match="kernel sides must be odd"):
        circular_blur(images, torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating-point"):
        blur(torch.ones(1, 1, 8, 8, dtype=torch.int64), asym_kernel)
    with pytest.raises(ValueError, match="kernel must be a torch.Tensor"):
        circular_blur(images, np.ones((3, 3)))
