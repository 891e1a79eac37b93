"""The 1-D blur families of P §2.3 / Fig. 5.

P §2.3 ("Blurry images are more likely") convolves sharp images with four
one-parameter kernel families θ ↦ h_θ ∈ R^{31×31}: Gaussian, motion, Airy disk and
defocus. "The parameter θ roughly accounts for the diameter of the PSF with
h_0 = δ and the higher θ, the more blur" (Fig. 5 caption); §2.3 sweeps θ on
linspace(0, 5, 11), and the same families drive the posterior profiles of P §4.1
(Fig. 9). The paper does not spell out its discretisation, so this module fixes one with the
two properties the experiments rely on:

* h_0 is *exactly* the Dirac (1 at the centre pixel, 0 elsewhere), so q(h_0 ⋆ x)
  is the potential of the sharp image itself;
* θ ↦ h_θ is continuous (ℓ¹-Lipschitz, constant ≲ 3), with no jump at small θ — a kernel
  sampled pointwise from a continuous PSF of width θ < 1 px would jump away from δ.

Construction. Each family is a continuous PSF μ_θ (a probability measure on R²,
in pixel units, centred on the kernel centre) of scale θ, seen through the
*tent* pixel response T(u) = max(0, 1−|u_x|)·max(0, 1−|u_y|):

    h_θ[p] ∝ ∫ T(p − u) dμ_θ(u),   p ∈ {−c, …, c}²,  c = size // 2,

then renormalised to sum 1 over the size×size support (mass falling outside is
truncated, as any 31×31 kernel must be). For a point mass at u the tent response
is exactly bilinear "splatting" onto the 4 surrounding pixels, so at θ = 0 every
family gives δ exactly, and the kernel is a continuous function of the PSF's
points. The tent adds, per axis, the variance E[f(1−f)] (f the fractional part
of the position), ≈ 1/6 once the PSF spans a pixel or more.

* ``"gaussian"``: isotropic Gaussian of FWHM θ, std σ = θ / (2√(2 ln 2)).
  Evaluated in closed form: T ⋆ φ_σ in 1-D is the second difference of the
  second antiderivative Ψ(x) = x Φ(x/σ) + σ φ(x/σ); Ψ(x) → max(x, 0) as σ → 0,
  which gives the tent, i.e. δ on the integer grid. The 2-D kernel is the outer
  product (the Gaussian and the tent are separable).
* ``"motion"``: uniform mass on a horizontal segment of length θ centred on
  the kernel centre (linear motion blur, only the central row is non-zero).
  Midpoint quadrature with ``_N_MOTION`` nodes scaled by θ, bilinear splat.
* ``"defocus"``: uniform disk of diameter θ (out-of-focus blur, geometric
  optics). Polar quadrature: ``_N_DISK_RADIAL`` radial bins, each carrying its
  exact mass (radius CDF ρ²) at its mean radius, times ``_N_ANGLE`` midpoint
  angles in the octant [0, π/4]; bilinear splat, then D4 symmetrisation (below).
* ``"airy"``: Airy diffraction pattern, intensity (2 J₁(x)/x)² with
  x = 3.8317·r/(θ/2), i.e. the first dark ring (zero of J₁) at radius θ/2 —
  the ring's diameter is θ. Same polar quadrature; the radial bins carry their
  exact mass from the encircled energy E(x) = 1 − J₀(x)² − J₁(x)², uniform
  (width 0.005) in ρ = r/(θ/2) up to ρ = 10 and geometric (ratio 1.01) beyond, up
  to ρ = 1e5 (the tail beyond that, 2e-6 of the mass, lies off a 31×31 support
  for every θ > 5e-4 anyway). The truncated Airy tail (intensity ∝ r⁻³) keeps
  a visible halo on the 31×31 support, as a real diffraction-limited PSF does.

The radial families (gaussian, airy, defocus) are invariant under the symmetries
of the square grid (both flips and the transpose); the kernels are symmetrised
over that group (D4) explicitly, which turns the octant's angles into
8·``_N_ANGLE`` angles on the circle. Motion is symmetrised under the horizontal
flip. Against an independent dense-grid integration of ∫ T(p − u) dμ_θ(u)
(1/64-px grid) the quadrature kernels agree to ~1e-4 in ℓ¹ (tests/test_blur.py).

All quadrature nodes are fixed reference points scaled by θ, with θ-independent
weights, so the kernels are continuous in θ for every θ ≥ 0; the quadrature is
fine enough (node spacing ≲ 0.3 px on a 31×31 support) that they are also
smooth to the eye and their spread increases with θ. θ is meant to stay
≲ the kernel size: for much larger θ the PSF mostly leaves the support, and a
kernel with no mass left raises ``ValueError``.

The convolutions that apply the kernels live in :mod:`prior_landscape.inverse.operators`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from scipy.special import j0, j1, ndtr

FAMILIES = ("gaussian", "motion", "airy", "defocus")

#: first zero of J₁: the Airy pattern's first dark ring is at x = 3.8317…
AIRY_FIRST_ZERO = 3.8317059702075125
#: FWHM = 2√(2 ln 2) σ for a Gaussian
_FWHM_PER_STD = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Quadrature resolution (see module docstring).
_N_MOTION = 4096  # nodes on the motion segment
_N_ANGLE = 64  # angles per radial bin, midpoint rule on the octant [0, π/4] (×8 by D4)
_N_DISK_RADIAL = 256  # radial bins of the uniform disk
_AIRY_DRHO = 0.005  # uniform radial bin width (units of the dark-ring radius) ...
_AIRY_RHO_UNIFORM = 10.0  # ... up to this radius,
_AIRY_GROWTH = 1.01  # then geometric bins ...
_AIRY_RHO_MAX = 1e5  # ... up to this radius.


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown blur family {family!r}; expected one of {FAMILIES}")
    return family


def _check_theta(theta) -> float:
    try:
        t = float(theta)
    except (TypeError, ValueError):
        raise ValueError(f"theta must be a real number, got {theta!r}") from None
    if not math.isfinite(t):
        raise ValueError(f"theta must be finite, got {t}")
    if t < 0:
        raise ValueError(f"theta must be >= 0 (theta = 0 is the Dirac), got {t}")
    return t


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size!r}")
    size = int(size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size}")
    return size


# ---------------------------------------------------------------------------
# reference quadratures (θ-independent; positions are scaled by θ)
# ---------------------------------------------------------------------------


def _bin_centroids(edges: np.ndarray, intensity) -> np.ndarray:
    """Mean radius ∫ r·I(r) r dr / ∫ I(r) r dr of each annulus (16-point Gauss–Legendre)."""
    t, g = np.polynomial.legendre.leggauss(16)
    a, b = edges[:-1, None], edges[1:, None]
    r = 0.5 * (b - a) * t[None, :] + 0.5 * (a + b)
    m = intensity(r) * r * g[None, :]
    return (m * r).sum(axis=1) / m.sum(axis=1)


def _polar_nodes(edges: np.ndarray, masses: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (N, 2) and weights (N,) of a radially symmetric measure.

    ``edges`` are the radial bin edges (reference units), ``masses`` the exact mass
    of each annulus, ``radii`` its mean radius (where its mass is placed, which
    makes the tent response of the annulus exact to second order in the bin
    width). Each annulus gets ``_N_ANGLE`` midpoint angles in the octant
    [0, π/4]; the D4 symmetrisation of the splatted kernel supplies the rest of
    the circle (the midpoint rule on the octant is exact at the tent's kinks on
    the axes and on the diagonals' symmetry lines).
    """
    mid = radii
    phi = (np.pi / 4.0) * (np.arange(_N_ANGLE) + 0.5) / _N_ANGLE
    ux = mid[:, None] * np.cos(phi)[None, :]
    uy = mid[:, None] * np.sin(phi)[None, :]
    w = np.repeat(masses[:, None] / _N_ANGLE, _N_ANGLE, axis=1)
    nodes = np.stack([ux.ravel(), uy.ravel()], axis=1)
    return nodes, w.ravel()


def _airy_intensity(rho: np.ndarray) -> np.ndarray:
    """(2 J₁(x)/x)², x = 3.8317·ρ (ρ in units of the first-dark-ring radius); 1 at 0."""
    x = AIRY_FIRST_ZERO * np.asarray(rho, dtype=np.float64)
    safe = np.where(x > 0, x, 1.0)
    return np.where(x > 0, (2.0 * j1(safe) / safe) ** 2, 1.0)


@cache
def _reference_quadrature(family: str) -> tuple[np.ndarray, np.ndarray]:
    """(nodes (N, 2) as (x, y), weights (N,)) for θ = 1 scale units.

    motion: nodes on [−1/2, 1/2] × {0} (multiply by θ);
    defocus, airy: radius in units of θ/2 (multiply by θ/2).
    """
    if family == "motion":
        s = (np.arange(_N_MOTION) + 0.5) / _N_MOTION - 0.5
        nodes = np.stack([s, np.zeros_like(s)], axis=1)
        w = np.full(_N_MOTION, 1.0 / _N_MOTION)
    elif family == "defocus":
        edges = np.linspace(0.0, 1.0, _N_DISK_RADIAL + 1)
        a, b = edges[:-1], edges[1:]
        radii = (2.0 / 3.0) * (b**3 - a**3) / (b**2 - a**2)
        nodes, w = _polar_nodes(edges, np.diff(edges**2), radii)  # radius CDF: ρ²
    elif family == "airy":
        uniform = np.arange(0.0, _AIRY_RHO_UNIFORM + 0.5 * _AIRY_DRHO, _AIRY_DRHO)
        n_geo = math.ceil(math.log(_AIRY_RHO_MAX / _AIRY_RHO_UNIFORM) / math.log(_AIRY_GROWTH))
        geometric = _AIRY_RHO_UNIFORM * _AIRY_GROWTH ** np.arange(1, n_geo + 1)
        edges = np.concatenate([uniform, geometric])
        x = AIRY_FIRST_ZERO * edges
        encircled = 1.0 - j0(x) ** 2 - j1(x) ** 2  # Airy encircled energy, E(0) = 0
        radii = _bin_centroids(edges, _airy_intensity)
        nodes, w = _polar_nodes(edges, np.diff(encircled), radii)
    else:  # pragma: no cover - gaussian is closed form
        raise AssertionError(family)
    return nodes, w


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


def _splat(nodes: np.ndarray, weights: np.ndarray, size: int) -> torch.Tensor:
    """Σ_j w_j T(p − u_j) on the size×size grid (bilinear splat; off-grid mass dropped)."""
    c = size // 2
    gx = nodes[:, 0] + c  # column coordinate
    gy = nodes[:, 1] + c  # row coordinate
    # nodes whose 2x2 footprint misses the grid contribute nothing
    keep = (gx > -1.0) & (gx < size) & (gy > -1.0) & (gy < size)
    gx, gy, weights = gx[keep], gy[keep], weights[keep]
    ix0 = np.floor(gx)
    iy0 = np.floor(gy)
    fx = gx - ix0
    fy = gy - iy0
    ix0 = ix0.astype(np.int64)
    iy0 = iy0.astype(np.int64)
    out = np.zeros(size * size, dtype=np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            iy = iy0 + dy
            ix = ix0 + dx
            ok = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
            out += np.bincount((iy * size + ix)[ok], weights=(weights * wy * wx)[ok], minlength=size * size)
    return torch.from_numpy(out.reshape(size, size))


def _d4_symmetrise(h: torch.Tensor) -> torch.Tensor:
    """Average over the 8 symmetries of the square (flips and transpose)."""
    a = h + h.flip(0) + h.flip(1) + h.flip(0, 1)
    return (a + a.T) / 8.0


def _gaussian_1d(sigma: float, size: int) -> torch.Tensor:
    """(T ⋆ φ_σ)(p) on p = −c..c, closed form; the tent (δ on the grid) at σ = 0."""
    c = size // 2
    p = np.arange(-c, c + 1, dtype=np.float64)

    def psi(x):  # second antiderivative of the N(0, σ²) density
        if sigma == 0.0:
            return np.maximum(x, 0.0)
        z = x / sigma
        return x * ndtr(z) + sigma * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    g = psi(p + 1.0) - 2.0 * psi(p) + psi(p - 1.0)
    g = np.clip(g, 0.0, None)  # rounding (~1e-16) in the far tails
    g = 0.5 * (g + g[::-1])
    return torch.from_numpy(g)


def kernel(family: str, theta: float, size: int = 31) -> torch.Tensor:
    """Blur kernel h_θ of ``family`` (P §2.3, Fig. 5): float64 (size, size), sums to 1.

    ``theta`` ≥ 0 is roughly the PSF diameter in pixels (Gaussian FWHM, motion
    length, defocus disk diameter, Airy first-dark-ring diameter); θ = 0 gives
    exactly the centred Dirac. ``size`` is odd ≥ 3; the centre is ``size // 2``.
    Raises ``ValueError`` on an unknown family, a negative or non-finite θ, a bad
    size, or a θ so large that no mass is left on the support.
    """
    family = _check_family(family)
    t = _check_theta(theta)
    size = _check_size(size)
    c = size // 2

    if t == 0.0:
        h = torch.zeros(size, size, dtype=torch.float64)
        h[c, c] = 1.0
        return h

    if family == "gaussian":
        g = _gaussian_1d(t / _FWHM_PER_STD, size)
        h = torch.outer(g, g)
    else:
        nodes, w = _reference_quadrature(family)
        scale = t if family == "motion" else 0.5 * t
        h = _splat(nodes * scale, w, size)
        if family == "motion":
            h = 0.5 * (h + h.flip(1))
        else:
            h = _d4_symmetrise(h)

    total = float(h.sum())
    if not total > 1e-300:
        raise ValueError(
            f"{family} kernel with theta={t} has no mass on a {size}x{size} support; "
            "use a smaller theta or a larger size"
        )
    return h / total


def kernel_stack(family: str, thetas: Sequence[float], size: int = 31) -> torch.Tensor:
    """Stack of kernels (len(thetas), size, size), one per θ (see :func:`kernel`)."""
    _check_family(family)
    _check_size(size)
    if isinstance(thetas, torch.Tensor):
        thetas = thetas.detach().cpu().numpy()
    thetas = np.asarray(thetas, dtype=np.float64).reshape(-1).tolist()
    if len(thetas) == 0:
        return torch.zeros(0, size, size, dtype=torch.float64)
    return torch.stack([kernel(family, t, size) for t in thetas])
