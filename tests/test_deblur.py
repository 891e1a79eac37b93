"""Blind deconvolution by alternating minimisation (P §5, Algorithms 1 and 2).

Demo-scale measurements (demo mixture, 16×16 held-out crops, circular blur, σ_y = 0.01,
K = 60, K_x = 10, γ_x = 5, reset every 100):

* Zernike PSFs (9×9, fc = 0.25, Noll 4, 5, 6, 7, 11; θ̄ = (0.25, 0.15, −0.15, 0.1, −0.1), γ_θ = 0.1):
  the small initialisation θ̄ − 0.1·sign θ̄ collapses onto the Airy pattern (P Fig. 11, bottom row);
  the large one θ̄ + 0.15·sign θ̄ stays away from it and ends nearer h(θ̄) — but does not reach
  θ̄ at this scale (its kernel error stays close to the initial one).
* Simplex kernels (7×7, γ_θ = 0.05) blurred by a diffraction kernel: the uniform ("large")
  initialisation ends nearer the true kernel than the Gaussian σ = 1.5 ("small") one, which
  concentrates (drifts toward the Dirac). For motion kernels the two are comparable at this scale.
"""

import math

import pytest
import torch

from prior_landscape.inverse.algorithms import AlternatingSettings, algorithm1, algorithm2
from prior_landscape.inverse.denoisers import TweedieDenoiser
from prior_landscape.inverse.kernels import (
    SimplexKernel,
    ZernikeKernel,
    project_simplex_kernel,
    simplex_initialisation,
    zernike_initialisation,
)
from prior_landscape.inverse.operators import data_fit, fft_blur, kernel_otf
from prior_landscape.landscape.families import kernel as family_kernel
from prior_landscape.metrics import collapse_distance, kernel_error, mnc, psnr
from prior_landscape.runs import RunOptions

DT = torch.float64
SIGMA_Y = 0.01
THETA_BAR = torch.tensor([0.25, 0.15, -0.15, 0.1, -0.1], dtype=DT)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def crops(heldout_images):
    from prior_landscape.io.images import crop_positions, extract_crops

    specs = crop_positions(heldout_images, 2, 16, seed=5, min_std=0.1)
    return extract_crops(heldout_images, specs).to(DT)


def _noisy(x, h, seed=0):
    g = torch.Generator().manual_seed(seed)
    return fft_blur(x, h) + SIGMA_Y * torch.randn(x.shape, generator=g, dtype=DT)


class GradOnly:
    """A prior given by its ∇q alone: all Algorithm 1 uses (no exact potential)."""

    has_exact_potential = False

    def __init__(self, grad, tag: str):
        self.grad, self.tag = grad, tag

    def grad_potential(self, x):
        return self.grad(x)

    def fingerprint(self) -> str:
        return self.tag


class FunctionDenoiser:
    """A denoiser given as a function, with a fingerprint."""

    def __init__(self, fn, tag: str):
        self.fn, self.tag = fn, tag

    def __call__(self, x):
        return self.fn(x)

    def fingerprint(self) -> str:
        return self.tag


def _images(n, seed):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=DT)


# ----------------------------------------------------------- the updates
def test_image_updates_reach_the_closed_form_minimiser_for_a_known_kernel():
    """With γ_θ = 0 the inner loops minimise ℓ_y(·, θ₀); a quadratic prior has a closed form."""
    y, m = _images(2, 0), _images(2, 1)
    h = family_kernel("gaussian", 2.0, 7)
    s, sigma_y = 0.05, 0.2
    c = sigma_y**2 / s
    otf = kernel_otf(h, (16, 16))
    exact = torch.fft.irfft2(
        (otf.conj() * torch.fft.rfft2(y) + c * torch.fft.rfft2(m)) / (otf.abs() ** 2 + c), s=(16, 16)
    )
    model = SimplexKernel(7)
    # Algorithm 1: prox-gradient with ∇q = (x − m)/s
    quadratic = GradOnly(lambda x: (x - m) / s, "quadratic")
    r1 = algorithm1(
        y, model, h, quadratic, AlternatingSettings(sigma_y, n_iter=3, n_inner=200, gamma_x=0.5, gamma_theta=0.0)
    )
    assert torch.allclose(r1.x, exact, atol=1e-9)
    assert torch.allclose(r1.kernel, h.expand(2, 7, 7), atol=1e-15)
    # Algorithm 2: Douglas–Rachford with D = prox_{γ g}, g = σ_y² q: D(v) = (v + γc m)/(1 + γc)
    gamma = 0.5
    D = FunctionDenoiser(lambda v: (v + gamma * c * m) / (1 + gamma * c), "quadratic prox")
    r2 = algorithm2(y, model, h, D, AlternatingSettings(sigma_y, n_iter=2, n_inner=300, gamma_x=gamma, gamma_theta=0.0))
    assert torch.allclose(r2.denoised, exact, atol=1e-9)  # the DR shadow z = D(x) solves the problem


def test_kernel_step_is_the_projected_gradient_of_the_data_fit():
    y = _images(1, 2)
    model = SimplexKernel(5)
    h0 = simplex_initialisation(5, "small")
    gamma = 0.3
    flat = GradOnly(lambda z: 0 * z, "flat")
    steps = AlternatingSettings(0.0, n_iter=1, n_inner=0, gamma_x=1.0, gamma_theta=gamma)
    res = algorithm1(y, model, h0, flat, steps)
    # K_x = 0: x stays y; ∇_h f by central finite differences on every kernel entry
    grad = torch.zeros(5, 5, dtype=DT)
    for i in range(5):
        for j in range(5):
            e = torch.zeros(5, 5, dtype=DT)
            e[i, j] = 1e-6
            grad[i, j] = (data_fit(y, y, h0 + e) - data_fit(y, y, h0 - e)) / 2e-6
    expected = project_simplex_kernel(h0 - gamma * grad)
    assert torch.allclose(res.kernel[0], expected, atol=1e-8)
    assert math.isclose(float(res.trajectory["grad_theta_norm"].iloc[-1]), float(grad.norm()), rel_tol=1e-6)
    # Zernike: the θ step uses autograd through deepinv's PSF
    z = ZernikeKernel(7, fc=0.25, pupil_size=32)
    t0 = THETA_BAR.clone()
    rz = algorithm1(y, z, t0, flat, steps)
    th = t0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(data_fit(y, y, z.kernel(th)).sum(), th)
    assert torch.allclose(rz.theta[0], t0 - gamma * g, atol=1e-12)


def test_reset_schedule_and_validation():
    y = _images(1, 4)
    prior = GradOnly(lambda x: x - 0.5, "centred")
    kw = dict(sigma_y=0.1, n_iter=5, n_inner=2, gamma_x=1.0, gamma_theta=0.01)
    h0 = simplex_initialisation(5, "large")
    a = algorithm1(y, SimplexKernel(5), h0, prior, AlternatingSettings(reset_every=100, **kw))
    b = algorithm1(y, SimplexKernel(5), h0, prior, AlternatingSettings(reset_every=None, **kw))  # K < 100: only x₀ = y
    c = algorithm1(y, SimplexKernel(5), h0, prior, AlternatingSettings(reset_every=1, **kw))
    assert torch.equal(a.x, b.x) and torch.equal(a.theta, b.theta)
    assert not torch.equal(a.x, c.x)
    for bad, match in (
        (dict(gamma_x=0.0), "gamma_x > 0"),
        (dict(n_iter=-1), "n_iter ≥ 0"),
        (dict(reset_every=0), "reset_every"),
    ):
        with pytest.raises(ValueError, match=match):
            AlternatingSettings(**{**kw, **bad})
    with pytest.raises(ValueError, match="theta0"):
        algorithm1(y, SimplexKernel(5), torch.zeros(3, 3, dtype=DT), prior, AlternatingSettings(**kw))


# ------------------------------------------------------ checkpoint/resume
@pytest.mark.parametrize("method", ["proximal_gradient", "douglas_rachford"])
def test_resume_after_a_kill_is_identical_to_an_uninterrupted_run(tmp_path, demo_mixture, crops, method):
    prior = demo_mixture
    z = ZernikeKernel(9, fc=0.25, pupil_size=32)
    y = _noisy(crops, z.kernel(THETA_BAR).detach())
    settings = AlternatingSettings(SIGMA_Y, n_inner=3, gamma_x=5.0, gamma_theta=0.1, reset_every=4)

    def run(n_iter, path=None, settings=settings):
        opts = RunOptions(state_path=path, record_every=3, checkpoint_every=2)
        s = AlternatingSettings(**{**settings.__dict__, "n_iter": n_iter})
        if method == "proximal_gradient":
            return algorithm1(y, z, t0, prior, s, options=opts)
        D = TweedieDenoiser(prior, SIGMA_Y * math.sqrt(5.0))
        return algorithm2(y, z, t0, D, s, potential=prior.potential, options=opts)

    t0 = zernike_initialisation(THETA_BAR, "large")
    full = run(11)
    ckpt = tmp_path / "run.pt"
    part = run(7, ckpt)  # "killed" after 7 iterations
    assert ckpt.exists() and part.resumed_from == 0
    resumed = run(11, ckpt)
    assert resumed.resumed_from == 7
    assert torch.equal(resumed.x, full.x) and torch.equal(resumed.theta, full.theta)
    assert torch.equal(resumed.kernels, full.kernels) and resumed.record_iterations == full.record_iterations
    assert resumed.trajectory.equals(full.trajectory)
    assert full.record_iterations == [0, 3, 6, 9, 11]
    assert {"iteration", "image", "data_fit", "q", "loss", "grad_theta_norm"} <= set(full.trajectory.columns)
    # a different configuration does not resume from it
    other = run(11, ckpt, AlternatingSettings(SIGMA_Y, n_inner=3, gamma_x=5.0, gamma_theta=0.2, reset_every=4))
    assert other.resumed_from == 0


# ---------------------------------------------------- P Figs. 11 and 12
def test_zernike_large_initialisation_avoids_the_airy_collapse(demo_mixture, crops):
    """P Fig. 11: the small initialisation converges to the Airy pattern (no-blur); the large one does not."""
    prior = demo_mixture
    z = ZernikeKernel(9, fc=0.25, pupil_size=64)
    h_bar = z.kernel(THETA_BAR).detach()
    airy = z.smallest()
    y = _noisy(crops, h_bar)
    B = crops.shape[0]
    t0 = torch.cat(
        [
            zernike_initialisation(THETA_BAR, "large").expand(B, -1),
            zernike_initialisation(THETA_BAR, "small").expand(B, -1),
        ]
    )
    res = algorithm1(
        torch.cat([y, y]),
        z,
        t0,
        prior,
        AlternatingSettings(SIGMA_Y, n_iter=60, n_inner=10, gamma_x=5.0, gamma_theta=0.1),
        reference_kernel=h_bar,
        reference_image=torch.cat([crops, crops]),
        options=RunOptions(record_every=20),
    )
    ke = kernel_error(res.kernel, h_bar, flip=True)
    to_airy = collapse_distance(res.kernel, airy)
    to_airy0 = collapse_distance(z.kernel(t0).detach(), airy)
    large, small = slice(0, B), slice(B, 2 * B)
    assert (to_airy[small] < 0.05).all() and (to_airy[small] < 0.5 * to_airy0[small]).all()
    assert (to_airy[large] > 0.2).all()
    assert (ke[large] < ke[small] - 0.05).all()
    # "ends near θ̄": the large start's kernel is nearer h(θ̄) than the no-blur kernel, at least
    # twice as near; the small start's is nearer the Airy pattern than h(θ̄)
    assert (ke[large] < 0.5 * to_airy[large]).all() and (to_airy[small] < ke[small]).all()
    assert {"kernel_error", "mnc", "psnr"} <= set(res.trajectory.columns)
    assert torch.isfinite(psnr(res.x, torch.cat([crops, crops]))).all()


def test_simplex_uniform_initialisation_beats_the_small_gaussian(demo_mixture, crops):
    """P Fig. 12 with a diffraction kernel: the uniform init recovers more of the kernel than Gaussian σ = 1.5."""
    prior = demo_mixture
    h_bar = ZernikeKernel(7, fc=0.25, pupil_size=64).kernel(THETA_BAR).detach()
    y = _noisy(crops, h_bar)
    B = crops.shape[0]
    model = SimplexKernel(7)
    t0 = torch.cat(
        [simplex_initialisation(7, "large").expand(B, -1, -1), simplex_initialisation(7, "small").expand(B, -1, -1)]
    )
    res = algorithm1(
        torch.cat([y, y]),
        model,
        t0,
        prior,
        AlternatingSettings(SIGMA_Y, n_iter=60, n_inner=10, gamma_x=5.0, gamma_theta=0.05),
        reference_kernel=h_bar,
        options=RunOptions(record_every=20),
    )
    assert torch.allclose(res.kernels.sum((-2, -1)), torch.ones(res.kernels.shape[:2], dtype=DT))
    assert (res.kernels >= 0).all()
    ke, m = kernel_error(res.kernel, h_bar), mnc(res.kernel, h_bar)
    large, small = slice(0, B), slice(B, 2 * B)
    assert (ke[large] < ke[small] - 0.03).all()
    assert (m[large] > m[small] + 0.05).all()
    # the small start concentrates: it moves toward the Dirac
    assert (collapse_distance(res.kernel[small]) < collapse_distance(t0[small])).all()
