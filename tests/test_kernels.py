"""Kernel parameterisations: simplex projection, Zernike PSFs, initialisations (P §5)."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import j1

from prior_landscape.inverse.kernels import (
    SimplexKernel,
    ZernikeKernel,
    diagonal_motion_kernel,
    dirac_kernel,
    gaussian_kernel,
    project_simplex,
    project_simplex_kernel,
    random_motion_kernel,
    simplex_initialisation,
    uniform_kernel,
    zernike_initialisation,
)

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------- simplex
def _vertex_certificate(v, w):
    """Optimality of w = Π_Δ(v): ⟨v − w, e_i − w⟩ ≤ 0 for every vertex e_i of Δ (hence for all of Δ)."""
    r = v - w
    return r - (r * w).sum(-1, keepdim=True)  # ⟨r, e_i⟩ − ⟨r, w⟩ for each i


def test_projection_is_on_the_simplex_and_optimal():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(50, 17, generator=g, dtype=DT) * torch.logspace(-2, 1, 50, dtype=DT)[:, None]
    w = project_simplex(v)
    assert torch.allclose(w.sum(-1), torch.ones(50, dtype=DT), atol=1e-12)
    assert (w >= 0).all()
    assert _vertex_certificate(v, w).max() <= 1e-12
    # idempotent
    assert torch.allclose(project_simplex(w), w, atol=1e-14)


def test_projection_known_cases():
    t = lambda *a: torch.tensor(a, dtype=DT)  # noqa: E731
    assert torch.equal(project_simplex(t(2.0, 0.0, 0.0)), t(1.0, 0.0, 0.0))
    assert torch.allclose(project_simplex(t(5.0, 5.0, 5.0, 5.0)), torch.full((4,), 0.25, dtype=DT))
    assert torch.allclose(project_simplex(t(0.5, 1.5, -3.0)), t(0.0, 1.0, 0.0))
    assert torch.allclose(project_simplex(t(0.2, 0.3, 0.5)), t(0.2, 0.3, 0.5))  # already on Δ
    # shift invariance: Π(v + c·1) = Π(v)
    v = t(0.3, -0.2, 0.9, 0.1)
    assert torch.allclose(project_simplex(v + 7.0), project_simplex(v), atol=1e-14)
    # radius
    assert torch.allclose(project_simplex(t(1.0, 1.0), radius=4.0), t(2.0, 2.0))


def test_projection_matches_brute_force_qp():
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = rng.normal(size=8) * 0.7
        res = minimize(
            lambda w, v=v: 0.5 * np.sum((w - v) ** 2),
            np.full(8, 1 / 8),
            jac=lambda w, v=v: w - v,
            bounds=[(0, None)] * 8,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        w = project_simplex(torch.tensor(v)).numpy()
        np.testing.assert_allclose(w, res.x, atol=1e-6)


def test_projection_batched_equals_looped_and_kernel_blocks():
    g = torch.Generator().manual_seed(2)
    v = torch.randn(3, 4, 5, 5, generator=g, dtype=DT)
    batched = project_simplex_kernel(v)
    for i in range(3):
        for j in range(4):
            looped = project_simplex(v[i, j].reshape(-1)).reshape(5, 5)
            assert torch.equal(batched[i, j], looped)
    assert torch.allclose(batched.sum((-2, -1)), torch.ones(3, 4, dtype=DT))


def test_simplex_kernel_model():
    m = SimplexKernel(7)
    assert m.param_shape == (7, 7) and m.describe()["family"] == "simplex"
    th = torch.randn(2, 7, 7, dtype=DT)
    p = m.project(th)
    assert torch.equal(m.kernel(p), p)
    assert torch.allclose(p.sum((-2, -1)), torch.ones(2, dtype=DT))
    with pytest.raises(ValueError):
        m.kernel(torch.zeros(5, 5, dtype=DT))


# ----------------------------------------------------------------- Zernike
def _airy(size, fc):
    c = size // 2
    r = np.hypot(*np.meshgrid(np.arange(size) - c, np.arange(size) - c))
    u = 2 * np.pi * fc * r
    safe = np.where(u > 0, u, 1.0)
    intensity = np.where(u > 0, (2 * j1(safe) / safe) ** 2, 1.0)
    return intensity / intensity.sum()


def test_zernike_zero_coefficients_is_the_airy_pattern():
    errs = []
    for pupil in (64, 256):
        z = ZernikeKernel(15, fc=0.25, pupil_size=pupil)
        h = z.kernel(torch.zeros(5, dtype=DT)).detach()
        assert h.shape == (15, 15) and (h >= 0).all()
        assert abs(float(h.sum()) - 1.0) < 1e-12
        assert int(h.argmax()) == 7 * 15 + 7  # peak at the centre
        assert torch.allclose(h, h.flip(0), atol=1e-15) and torch.allclose(h, h.T, atol=1e-15)
        ref = _airy(15, 0.25)
        errs.append(np.linalg.norm(h.numpy() - ref) / np.linalg.norm(ref))
    assert errs[1] < 0.02  # the sampled Airy pattern (2 J1(u)/u)², u = 2π fc r
    assert errs[1] < errs[0]  # converging as the pupil is refined
    assert torch.equal(ZernikeKernel(15, fc=0.25, pupil_size=256).smallest(), h)


def test_zernike_kernels_sum_to_one_batched_and_sign_symmetry():
    z = ZernikeKernel(9, fc=0.25, pupil_size=64)
    assert len(z.aberrations) == 5 and "Defocus" in z.aberrations[0]
    th = torch.tensor([[0.25, 0.15, -0.15, 0.1, -0.1], [0.1, -0.2, 0.05, 0.0, 0.2]], dtype=DT)
    h = z.kernel(th)
    assert h.shape == (2, 9, 9)
    assert torch.allclose(h.sum((-2, -1)), torch.ones(2, dtype=DT), atol=1e-12) and (h >= 0).all()
    assert torch.allclose(h[1], z.kernel(th[1]), atol=1e-14)  # batched equals single
    # |F(conj g)|²(u) = |F(g)|²(−u): h(−θ) is h(θ) rotated by 180°
    assert torch.allclose(z.kernel(-th), h.flip(-2, -1), atol=1e-12)
    # and with only even aberrations (defocus, astigmatisms, spherical) h(−θ) = h(θ)
    even = ZernikeKernel(9, zernike_index=(4, 5, 6, 11), fc=0.25, pupil_size=64)
    t4 = torch.tensor([0.2, -0.1, 0.15, 0.1], dtype=DT)
    assert torch.allclose(even.kernel(-t4), even.kernel(t4), atol=1e-12)
    # aberrations move mass away from the peak: the Airy pattern is the most concentrated
    assert float(h.amax((-2, -1)).max()) < float(z.smallest().max())


def test_zernike_gradient_flows_and_matches_finite_differences():
    z = ZernikeKernel(7, fc=0.25, pupil_size=32)
    w = torch.randn(7, 7, generator=torch.Generator().manual_seed(0), dtype=DT)
    th = torch.tensor([0.2, -0.1, 0.15, 0.05, -0.12], dtype=DT, requires_grad=True)
    (w * z.kernel(th)).sum().backward()
    assert th.grad is not None and torch.isfinite(th.grad).all() and th.grad.abs().max() > 1e-4
    assert torch.autograd.gradcheck(
        lambda t: (w * z.kernel(t)).sum(), (th.detach().requires_grad_(True),), eps=1e-6, atol=1e-6
    )


# --------------------------------------------------------- initialisations
def test_zernike_initialisations_follow_the_paper():
    tb = torch.tensor([0.25, -0.15, 0.0, 0.1], dtype=DT)
    assert torch.allclose(zernike_initialisation(tb, "large"), torch.tensor([0.40, -0.30, 0.0, 0.25], dtype=DT))
    assert torch.allclose(zernike_initialisation(tb, "small"), torch.tensor([0.15, -0.05, 0.0, 0.0], dtype=DT))
    assert torch.allclose(zernike_initialisation(tb, "small_fig14"), tb - 0.075 * torch.sign(tb))
    assert torch.allclose(zernike_initialisation(tb, 0.3), tb + 0.3 * torch.sign(tb))


def test_simplex_initialisations_and_fixed_kernels():
    u = simplex_initialisation(9, "large")
    assert torch.allclose(u, torch.full((9, 9), 1 / 81, dtype=DT))
    gk = simplex_initialisation(31, "small")
    r = torch.arange(31, dtype=DT) - 15
    var = (gk.sum(1) * r**2).sum()
    assert abs(float(var) - 1.5**2) < 1e-6  # std 1.5 px (the tails beyond 10σ are nil)
    assert torch.equal(gaussian_kernel(31, 1.5), gk)
    for h in (u, gk, uniform_kernel(5), dirac_kernel(5), diagonal_motion_kernel(7), diagonal_motion_kernel(9, 4.0)):
        assert abs(float(h.sum()) - 1) < 1e-12 and (h >= 0).all()
        assert torch.allclose(project_simplex_kernel(h), h, atol=1e-14)  # already on the simplex
    d = diagonal_motion_kernel(7)
    assert torch.allclose(d, d.T) and torch.allclose(d, d.flip(0, 1))  # along the main diagonal, centred
    assert float(d.flip(1).diagonal().sum()) < float(d.diagonal().sum())
    m1, m2 = random_motion_kernel(9, 3), random_motion_kernel(9, 3)
    assert torch.equal(m1, m2) and abs(float(m1.sum()) - 1) < 1e-12 and (m1 >= 0).all()
    with pytest.raises(ValueError):
        simplex_initialisation(5, "medium")
    with pytest.raises(ValueError):
        dirac_kernel(4)


def test_random_walk_motion_kernels_follow_the_peers_model():
    """The peers' trajectory model (written from its description): kernels, deterministic in the seed, a
    straight segment at intensity 0, and at K = 64, I = 0.5 the statistics measured on the original
    generator (median 151 non-zero pixels, max ≈ 0.018, RMS radius ≈ 11.5 px about a central centroid)."""
    from prior_landscape.inverse.kernels import random_walk_motion_kernel

    k = random_walk_motion_kernel(15, 0.5, 3)  # the original returns NaN below K = 54 (zero line width)
    assert k.shape == (15, 15) and torch.isfinite(k).all() and (k >= 0).all() and abs(float(k.sum()) - 1) < 1e-12
    assert torch.equal(k, random_walk_motion_kernel(15, 0.5, 3)) and not torch.equal(
        k, random_walk_motion_kernel(15, 0.5, 4)
    )
    line = random_walk_motion_kernel(31, 0.0, 1).numpy()
    ys, xs = np.nonzero(line > 0.2 * line.max())
    fit = np.polyfit(xs, ys, 1) if np.ptp(xs) >= np.ptp(ys) else np.polyfit(ys, xs, 1)
    residual = ys - np.polyval(fit, xs) if np.ptp(xs) >= np.ptp(ys) else xs - np.polyval(fit, ys)
    assert np.abs(residual).max() <= 1.5  # intensity 0: a straight segment
    yy, xx = np.mgrid[0:64, 0:64]
    stats = []
    for seed in range(120):
        h = random_walk_motion_kernel(64, 0.5, seed).numpy()
        cy, cx = (h * yy).sum(), (h * xx).sum()
        stats.append(((h > 0).sum(), h.max(), np.sqrt((h * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum()), cy, cx))
    nonzero, peak, radius, cy, cx = np.median(np.array(stats), 0)
    assert 110 <= nonzero <= 200 and 0.012 <= peak <= 0.024 and 9 <= radius <= 15
    assert abs(cy - 31.5) < 1.5 and abs(cx - 31.5) < 1.5
    with pytest.raises(ValueError, match="intensity"):
        random_walk_motion_kernel(15, 1.5, 0)
