"""The learned peers (issue 15): BlindDPS, DPS with the true kernel, Kernel Diffusion and its ablation.

Analytic priors stand in for the networks wherever a property of the *sampler* is tested: a Gaussian
N(m, C) has the exact VE score −(C + σ²I)⁻¹(u − m) at every σ, and a Gaussian mixture fitted on kernel
images or photograph crops gives exact scores too, so the tests cost seconds and test the algorithms,
not a training run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prior_landscape.methods import Context, Problem, run_method
from prior_landscape.methods.blind_dps import BlindDPSLoop, BlindDPSSettings
from prior_landscape.methods.ddpm import DDPMSchedule, prior_denoiser
from prior_landscape.methods.kernel_diff import KernelDiffLoop, KernelDiffSettings, stage2
from prior_landscape.methods.peer_ops import (
    convolve,
    correlate_zero,
    embed_kernel,
    normalise_kernel,
    to_kernel_size,
)
from prior_landscape.metrics import mnc
from prior_landscape.priors import GaussianMixturePrior
from prior_landscape.priors.kernel_priors import kernel_images, kernel_training_set, train_conditional_kernel_prior
from prior_landscape.priors.schedules import VESchedule
from prior_landscape.runs import RunOptions, digest

pytestmark = pytest.mark.usefixtures("one_thread")
KERNEL_SCHEDULE = VESchedule(sigma_min=0.005, sigma_max=80.0, t_eps=1e-3)


class GaussianPrior:
    """N(m, C) on (1, s, s) images in [0, 1]: the exact VE score at every σ."""

    def __init__(self, m: torch.Tensor, C: torch.Tensor, side: int):
        self.m, self.C, self.image_shape, self.name = m, C, (1, side, side), "gaussian"

    def score(self, u, sigma):
        s = float(torch.as_tensor(sigma).flatten()[0])
        P = torch.linalg.inv(self.C + s * s * torch.eye(len(self.m), dtype=self.C.dtype))
        return (-(u.flatten(1).double() - self.m) @ P).reshape(u.shape).to(u.dtype)

    def fingerprint(self) -> str:
        return digest(self.m, self.C)


class BatchNoise:
    """One generator for the whole batch (fast for thousands of chains; batching is tested separately)."""

    def __init__(self, seed: int):
        self.gens = [torch.Generator().manual_seed(seed)]

    def randn(self, shape, like):
        return torch.randn((like.shape[0], *shape), generator=self.gens[0], dtype=torch.float64).to(like)


def _gaussian(seed: int, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    A = 0.03 * torch.randn(d, d, generator=g, dtype=torch.float64)
    return 0.5 + 0.05 * torch.randn(d, generator=g, dtype=torch.float64), A @ A.T + 0.002 * torch.eye(
        d, dtype=torch.float64
    )


def _chain_moments(m, C, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance (in [0, 1] units) of the respaced fixed-small DDPM chain on N(m, C), written
    independently of the package: x̂₀ = K x/√ᾱ + (I − K)(2m − 1), K = C(C + σ²I)⁻¹, then the ancestral recursion."""
    betas = np.linspace(1e-4, 0.02, 1000)
    ab_all = np.cumprod(1 - betas)
    taus = np.round(np.linspace(0, 999, n_steps)).astype(int)
    d, eye = len(m), torch.eye(len(m), dtype=torch.float64)
    mu, S = torch.zeros(d, dtype=torch.float64), eye.clone()
    for i in reversed(range(n_steps)):
        ab, ab_prev = ab_all[taus[i]], ab_all[taus[i - 1]] if i > 0 else 1.0
        beta = 1 - ab / ab_prev
        K = C @ torch.linalg.inv(C + (1 - ab) / (4 * ab) * eye)
        c1, c2 = beta * math.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
        M = c1 * K / math.sqrt(ab) + c2 * eye
        mu = M @ mu + c1 * (eye - K) @ (2 * m - 1)
        S = M @ S @ M.T + (beta * (1 - ab_prev) / (1 - ab)) * eye
    return (mu + 1) / 2, S / 4


def _unguided_samples(chain: str, n_steps: int, n: int = 4000):
    """Final states of BlindDPS's image and kernel chains or Kernel Diffusion's kernel chain, guidance off."""
    m_x, C_x = _gaussian(1)
    m_k, C_k = _gaussian(2)
    y = torch.rand(n, 1, 4, 4, dtype=torch.float64)
    sched, noise = DDPMSchedule(n_steps), BatchNoise(0)
    kernel_d = prior_denoiser(GaussianPrior(m_k, C_k, 4))
    if chain == "kernel-diff":
        loop = KernelDiffLoop(y, kernel_d, lambda u, s: u, sched, KernelDiffSettings(step_scale=0.0), noise, 4)
    else:
        image_d = prior_denoiser(GaussianPrior(m_x, C_x, 4))
        loop = BlindDPSLoop(2 * y - 1, image_d, kernel_d, sched, BlindDPSSettings(step_scale=0.0), noise, 4)
    for k in range(n_steps):
        loop.step(k)
    state = loop.x if chain == "image" else loop.k
    return ((state.detach() + 1) / 2).flatten(1), (m_x, C_x) if chain == "image" else (m_k, C_k)


def _check_moments(u, m, C, label):
    n = len(u)
    se_mean = (torch.diag(C) / n).sqrt()
    assert float(((u.mean(0) - m).abs() / se_mean).max()) < 4.5, f"{label}: sample mean off by > 4.5 s.e."
    se_fro = math.sqrt((torch.trace(C) ** 2 + torch.linalg.norm(C) ** 2) / n)  # E‖Ĉ − C‖²_F for Gaussians
    err = float(torch.linalg.norm(torch.cov(u.T) - C))
    assert err < 3 * se_fro, f"{label}: ‖Ĉ − C‖_F = {err:.2e} > 3 s.e. ({3 * se_fro:.2e})"


@pytest.mark.parametrize("chain", ["image", "kernel", "kernel-diff"])
def test_unguided_reverse_process_samples_its_prior(chain):
    """Guidance off, 4000 chains of N = 40 respaced steps: sample mean and covariance match the exact
    moments of the discretised chain (computed independently) within sampling error; with the papers'
    1000 steps those moments are the prior's (next test). At 40 steps the chain under-disperses
    (fixed-small variance; trace ratio ≈ 0.65 here): a property of the demo's short chains, stated."""
    u, (m, C) = _unguided_samples(chain, 40)
    mu, S = _chain_moments(m, C, 40)
    _check_moments(u, mu, S, f"{chain}, N = 40 (discretised chain)")
    assert float(torch.trace(S) / torch.trace(C)) < 0.8


def test_exact_chain_converges_to_the_prior_with_the_papers_1000_steps():
    """The discretised chain's exact moments approach the prior's as N grows, within 5 % at N = 1000;
    and one sampler at N = 1000 (1000 chains) agrees with the prior itself within sampling error."""
    m, C = _gaussian(3)
    errs = [float(torch.linalg.norm(_chain_moments(m, C, n)[1] - C) / torch.linalg.norm(C)) for n in (40, 200, 1000)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05
    u, (m, C) = _unguided_samples("kernel", 1000, n=1000)
    _check_moments(u, m, C, "kernel chain, N = 1000, against the prior")


# ----------------------------------------------------------------------- forward models and code facts
def test_correlation_is_convolution_with_the_flipped_kernel():
    """BlindDPS's operator (conv2d 'same', zero boundary) = true convolution by the 180°-rotated kernel
    (centre c/2 on the even canvas), exactly, where the image's zero border covers the kernel."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2, 1, 40, 40, dtype=torch.float64)
    x[..., 10:30, 10:30] = torch.rand(2, 1, 20, 20, generator=g, dtype=torch.float64)
    k = torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(correlate_zero(x, k), convolve(x, k.flip(-2, -1), "circular"))


def test_convolve_matches_the_harness_blur_for_odd_kernels():
    from prior_landscape.inverse.operators import blur

    g = torch.Generator().manual_seed(1)
    x, k = (
        torch.rand(2, 1, 24, 24, generator=g, dtype=torch.float64),
        torch.rand(2, 7, 7, generator=g, dtype=torch.float64),
    )
    for boundary in ("circular", "reflect"):
        torch.testing.assert_close(convolve(x, k, boundary), blur(x, k, boundary))
    # the even canvas: the embedded odd kernel blurs as the odd kernel itself
    torch.testing.assert_close(convolve(x, embed_kernel(k, 8), "reflect"), blur(x, k, "reflect"))


def test_code_l1_sparsity_has_zero_gradient_on_normalised_kernels():
    """The released ℓ₁ on N(k̂₀) is ≡ 1: its gradient vanishes (relative ≤ 1e-6 of the residual's);
    the paper's ℓ₀.₅ has a gradient."""
    g = torch.Generator().manual_seed(2)
    k = (2 * torch.rand(3, 1, 16, 16, generator=g, dtype=torch.float64) - 1).requires_grad_(True)
    x, y = torch.rand(3, 1, 32, 32, generator=g, dtype=torch.float64), torch.rand(3, 1, 32, 32, generator=g)
    code, paper = BlindDPSSettings("code"), BlindDPSSettings("paper")
    (g_res,) = torch.autograd.grad((y - code.forward(x, normalise_kernel(k))).flatten(1).norm(dim=1).sum(), k)
    (g_l1,) = torch.autograd.grad(code.sparsity(normalise_kernel(k)).sum(), k)
    (g_half,) = torch.autograd.grad(paper.sparsity(normalise_kernel(k)).sum(), k)
    assert float(g_l1.norm()) <= 1e-6 * float(g_res.norm())
    assert float(g_half.norm()) > 1e-2 * float(g_res.norm())


def test_kernel_window_keeps_the_most_mass():
    k = torch.zeros(1, 16, 16, dtype=torch.float64)
    k[0, 0, 0], k[0, 15, 15], k[0, 8, 8] = 0.1, 0.2, 0.7
    est, mass = to_kernel_size(k, 15)  # windows: top-left 0.8, bottom-right 0.9, the others 0.7
    assert float(mass) == pytest.approx(0.9) and float(est.sum()) == pytest.approx(1.0)
    assert float(est[0, -1, -1]) == pytest.approx(0.2 / 0.9)


def test_stage2_backtracks_as_the_code():
    """On E = ½ a‖k‖² from ρ₀ = 8/a: steps 1 − ρa = −7, −3 raise E (back, halve ρ), −1 keeps E
    (accepted: |ΔE/E| ≤ 1e-6), then ρ = 2/a keeps flipping the sign: 20 accepted steps, 2 backtracks."""
    a = 1.0
    energy = lambda k: (0.5 * a * k.flatten(1).pow(2).sum(1), a * k)  # noqa: E731
    k0 = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    k, evals = stage2(k0, energy, steps=20, rho0=8.0 / a)
    assert evals == 20 + 2 * 2
    torch.testing.assert_close(k, k0)  # 20 sign flips
    k, evals = stage2(k0, energy, steps=20, rho0=0.5 / a)
    assert evals == 20 and float(k.abs().max()) == pytest.approx(0.5**20)


# --------------------------------------------------------- the methods on analytic priors (16×16 images)
@pytest.fixture(scope="module")
def analytic_priors(demo_mixture):
    """The demo mixture as image prior; a mixture fitted on 7×7 training kernels (8×8 canvas) as kernel prior."""
    h = kernel_training_set(600, 7, 0, {"random_walk": 5, "motion": 3, "gaussian": 2, "diffraction": 2})
    kernel_prior = GaussianMixturePrior.fit(
        kernel_images(h).numpy(), (1, 8, 8), KERNEL_SCHEDULE, n_components=6, rank=16, seed=0
    )
    return demo_mixture, kernel_prior


def _problem(heldout_images, kernel, sigma_y=0.01, n=2):
    from prior_landscape.inverse.operators import fft_blur
    from prior_landscape.io.images import crop_positions, extract_crops

    x = extract_crops(heldout_images, crop_positions(heldout_images, n, 16, seed=3, min_std=0.1)).double()
    y = fft_blur(x, kernel) + sigma_y * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    return x, Problem(y, sigma_y, 7, seed=0)


def _run(name, problem, priors, **hyper):
    image_prior, kernel_prior = priors
    ctx = Context(prior=image_prior, extra={"kernel_prior": kernel_prior})
    return run_method(name, problem, ctx, hyper)[0]


def _residual(problem, est):
    from prior_landscape.inverse.operators import fft_blur

    return (problem.y - fft_blur(est.x, est.kernel)).flatten(1).norm(dim=1)


@pytest.mark.parametrize(
    "name, hyper",
    [
        ("blind-dps", dict(variant="paper", step_scale=3.0, n_steps=30)),
        ("blind-dps", dict(variant="code", step_scale=3.0, n_steps=30)),
        ("kernel-diff-unconditional", dict(variant="paper", step_scale=1.0, sigma_f=0.02, stage2_steps=0, n_steps=100)),
        ("kernel-diff-unconditional", dict(variant="code", step_scale=3.0, sigma_f=0.02, stage2_steps=0, n_steps=100)),
    ],
)
def test_guidance_lowers_the_residual(name, hyper, analytic_priors, heldout_images):
    """Same seeds, guidance on against off: ‖y − k̂ ⊛ x̂‖ of the returned estimate is lower for every image
    (Kernel Diffusion: after Stage I, without the Stage-II descent, which would lower both)."""
    from prior_landscape.inverse.kernels import gaussian_kernel

    _, problem = _problem(heldout_images, gaussian_kernel(7, 1.0), n=4)
    guided = _run(name, problem, analytic_priors, **hyper)
    free = _run(name, problem, analytic_priors, **{**hyper, "step_scale": 0.0})
    assert (_residual(problem, guided) < _residual(problem, free)).all()


def test_dirac_blur_gives_a_near_dirac_kernel(analytic_priors):
    """y = x + noise, x drawn from the image prior itself, 100 steps. Kernel Diffusion (its MAP_k loop,
    both variants) returns a kernel with MNC(k̂, δ) ≥ 0.9 for every image. BlindDPS samples the joint
    posterior, whose kernel spread is genuine on 16×16 images of a smooth prior: with the paper's mild
    ℓ₀.₅ sparsity (λ = 0.1) half of its kernels are near-Dirac (MNC ≥ 0.9), and guidance raises the mean
    MNC well above the prior's own kernels (guidance off)."""
    from prior_landscape.inverse.kernels import dirac_kernel
    from prior_landscape.inverse.operators import fft_blur

    image_prior, _ = analytic_priors
    x = image_prior.sample(4, generator=torch.Generator().manual_seed(5)).double().reshape(4, 1, 16, 16)
    y = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    problem, delta = Problem(fft_blur(y, dirac_kernel(7)), 0.01, 7, seed=0), dirac_kernel(7)
    for variant in ("paper", "code"):
        est = _run(
            "kernel-diff-unconditional",
            problem,
            analytic_priors,
            n_steps=100,
            variant=variant,
            step_scale=3.0,
            sigma_f=0.005,
        )
        assert (mnc(est.kernel, delta) >= 0.9).all(), (variant, mnc(est.kernel, delta))
    guided = mnc(_run("blind-dps", problem, analytic_priors, n_steps=100, step_scale=3.0, lam=0.1).kernel, delta)
    free = mnc(_run("blind-dps", problem, analytic_priors, n_steps=100, step_scale=0.0, lam=0.1).kernel, delta)
    assert int((guided >= 0.9).sum()) >= 2 and float(guided.mean()) > float(free.mean()) + 0.05, (guided, free)


def test_batching_gives_each_image_its_batch_of_one_result(analytic_priors, heldout_images):
    from prior_landscape.inverse.kernels import gaussian_kernel

    _, problem = _problem(heldout_images, gaussian_kernel(7, 1.0))
    both = _run("blind-dps", problem, analytic_priors, n_steps=10, step_scale=3.0)
    for b in range(2):
        one = _run("blind-dps", Problem(problem.y[b : b + 1], 0.01, 7, 0), analytic_priors, n_steps=10, step_scale=3.0)
        torch.testing.assert_close(one.x[0], both.x[b], atol=1e-5, rtol=0)
        torch.testing.assert_close(one.kernel[0], both.kernel[b], atol=1e-5, rtol=0)


def test_dps_with_the_true_kernel_beats_the_blurry_input(analytic_priors):
    """The reference row on images of its own prior (100 steps): better than the blurry input."""
    from prior_landscape.inverse.kernels import gaussian_kernel
    from prior_landscape.inverse.operators import fft_blur
    from prior_landscape.metrics import psnr

    h = gaussian_kernel(7, 1.5)
    x = analytic_priors[0].sample(4, generator=torch.Generator().manual_seed(5)).double().reshape(4, 1, 16, 16)
    y = fft_blur(x, h) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    ctx = Context(prior=analytic_priors[0], true_kernel=h.expand(4, 7, 7))
    est = run_method("dps-true-kernel", Problem(y, 0.01, 7, 0), ctx, dict(n_steps=100, step_scale=3.0))[0]
    assert (psnr(est.x, x) > psnr(y, x)).all()


# ----------------------------------------------------------------------------- kernel-prior training
def test_conditional_kernel_prior_training_resumes_bit_for_bit(tmp_path, train_images):
    """Killed after its checkpoint at step 4, the training resumes there and ends with the weights of an
    uninterrupted run (same thread count)."""
    from prior_landscape.io.images import crop_positions, extract_crops

    images = extract_crops(train_images, crop_positions(train_images, 8, 16, seed=0))
    h = kernel_training_set(16, 7, 0, {"random_walk": 1, "gaussian": 1})
    kw = dict(steps=6, sigma_y=0.01, batch_size=4, seed=0, net_kwargs=dict(base_channels=8, image_channels_enc=8))
    full, _ = train_conditional_kernel_prior(images, h, KERNEL_SCHEDULE, **kw)

    class Killed(Exception):
        pass

    def kill(k, record):
        if k == 5:
            raise Killed

    state = tmp_path / "state.pt"
    with pytest.raises(Killed):
        train_conditional_kernel_prior(
            images, h, KERNEL_SCHEDULE, **kw, options=RunOptions(state_path=state, checkpoint_every=4, progress=kill)
        )
    resumed, _ = train_conditional_kernel_prior(
        images, h, KERNEL_SCHEDULE, **kw, options=RunOptions(state_path=state, checkpoint_every=4)
    )
    assert torch.load(state, weights_only=True)["k"] == 6
    for (name, a), (_, b) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        assert torch.equal(a, b), name


def test_ddpm_network_seen_as_a_ve_prior_is_exact_on_its_grid():
    """A DDPM ε-network of a Gaussian N(2m − 1, 4C) in [−1, 1] (exact ε) seen by DDPMPrior: its score at
    the grid's σ_t is the exact VE score −(C + σ_t² I)⁻¹(u − m) of N(m, C) on [0, 1] images."""
    from prior_landscape.priors.ddpm_prior import DDPMPrior

    m, C = _gaussian(4)
    ab_all = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)

    class ExactEps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward_diffusion(self, x_t, t):
            ab = ab_all[t][:, None]
            mu0, S0 = 2 * m - 1, 4 * C
            xf = x_t.flatten(1)
            P = [torch.linalg.inv(a * S0 + (1 - a) * torch.eye(16, dtype=torch.float64)) for a in ab[:, 0]]
            x0 = torch.stack([mu0 + S0 @ (a.sqrt() * (p @ (x - a.sqrt() * mu0))) for x, a, p in zip(xf, ab, P)])
            eps = (xf - ab.sqrt() * x0) / (1 - ab).sqrt()
            return torch.cat([eps, eps], 1).reshape(x_t.shape[0], 2, 4, 4)

    prior = DDPMPrior(ExactEps(), (1, 4, 4))
    u = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    for t in (0, 250, 999):
        sigma = float(prior.sigmas[t])
        exact = GaussianPrior(m, C, 4).score(u, sigma)
        torch.testing.assert_close(prior.score(u, sigma), exact, rtol=1e-6, atol=1e-8 / sigma**2)


# ------------------------------------------------------- the paper's rules of the peers, on tiny stand-ins
@pytest.mark.slow
def test_peer_paper_rules_run_on_tiny_stand_ins(tmp_path):
    """config/paper.yaml's peers for real on tiny stand-ins: the kernel priors trained by their rule (the
    conditional one on BSDS500-layout training images), a BSD100-layout test set and a RealBlur-J-layout one
    (real blur: no kernel), BlindDPS, DPS with the
    true kernel, Kernel Diffusion and its ablation, P's Algorithm 1 and P's Algorithm 2 with DRUNet weights
    (a stand-in at the download rule's place) through the benchmark rules, to the table."""
    import copy
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from PIL import Image

    repo = Path(__file__).resolve().parents[1]
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    work, rng = tmp_path / "work", np.random.default_rng(0)
    for folder, n, ext in (("bsds500/BSDS500/BSDS500-master/BSDS500/data/images/train", 4, "jpg"),
                           ("bsd100/BSD100_HR/BSD100_HR", 2, "png")):  # fmt: skip
        (work / "resources/datasets" / folder).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(img).save(work / "resources/datasets" / folder / f"{i}.{ext}")
    # RealBlur-J's layout: blurry/sharp pairs and their list (real blur: no kernel)
    realblur, lines, top = work / "resources/datasets/realblur", [], "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    for i in range(3):
        for kind in ("gt", "blur"):
            (realblur / top / f"scene{i}" / kind).mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
            image.save(realblur / top / f"scene{i}/{kind}/1.png")
        lines.append(f"{top}/scene{i}/gt/1.png {top}/scene{i}/blur/1.png")
    (realblur / "RealBlur_J_test_list.txt").write_text("\n".join(lines) + "\n")
    cfg = copy.deepcopy(paper)
    cfg["device"] = "cpu"
    cfg["results"] = "results"  # the test's own working directory: its paths stay results/…
    cfg["data"].update(crop_size=16, n_train_crops=200)
    kernels = {"kernel_size": 7, "n": 40, "mix": {"random_walk": 1, "gaussian": 1}}
    small = {"steps": 3, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2}
    cfg["priors"] = {
        "tiny-natural": {"kind": "score_network", "dataset": "stand-in", "training": small,
                         "schedule": {"kind": "ve", "sigma_min": 0.01, "sigma_max": 20.0, "t_eps": 1e-3}},
        "kernels-uncond": {**paper["priors"]["kernels-uncond"], "kernels": kernels, "training": small,
                           "network": {"base_channels": 8}},
        "kernels-cond": {**paper["priors"]["kernels-cond"], "kernels": kernels, "training": small,
                         "network": {"base_channels": 8, "image_channels_enc": 8},
                         "pairs": {**paper["priors"]["kernels-cond"]["pairs"], "n_images": 4,
                                   "images": {**paper["priors"]["kernels-cond"]["pairs"]["images"], "size": 32,
                                              "channels": 1}}},
    }  # fmt: skip
    cfg["hessian"]["priors"] = cfg["posterior"]["priors"] = ["tiny-natural"]
    cfg["deblur"]["prior"] = cfg["deblur"]["kohler"]["prior"] = "tiny-natural"
    bsd, real = paper["benchmark"]["datasets"]["bench-bsd100"], paper["benchmark"]["datasets"]["bench-realblur-j"]
    fast = {"prior": "tiny-natural", "n_steps": 3}
    cfg["benchmark"] = {
        "seeds": [0], "collapse_tol": 0.05,
        "datasets": {"bench-tiny": {**bsd, "images": {**bsd["images"], "size": 32, "channels": 1}, "n_images": 2,
                                    "size": 32, "kernel_size": 7},
                     "bench-tiny-real": {**real, "pairs": {**real["pairs"], "channels": 1}, "n_images": 2, "size": 32,
                                         "kernel_size": 7}},
        "methods": {
            "blurry": {"method": "blurry"},
            "blind-dps-paper": {**paper["benchmark"]["methods"]["blind-dps-paper"], **fast, "datasets": ["bench-tiny"]},
            "dps-true-kernel": {**paper["benchmark"]["methods"]["dps-true-kernel"], **fast, "datasets": ["bench-tiny"]},
            "kernel-diff-paper": {**paper["benchmark"]["methods"]["kernel-diff-paper"], **fast, "stage2_steps": 2},
            "kernel-diff-ablation": {**paper["benchmark"]["methods"]["kernel-diff-ablation"], **fast,
                                     "stage2_steps": 2},
        },
    }  # fmt: skip
    # P's methods as the paper configuration has them: Algorithm 1 on a prior, Algorithm 2 on DRUNet weights
    # (a stand-in of the released architecture's smaller widths, where the download rule puts them)
    from test_denoisers import CATALOGUE, TINY_NC, _tiny_drunet_file

    from prior_landscape.io.downloads import resource_location

    _tiny_drunet_file(resource_location(CATALOGUE["drunet-color"], work / "resources"))
    few = {"n_iter": 3, "n_inner": 2, "datasets": ["bench-tiny"]}
    p_alg2 = paper["benchmark"]["methods"]["p-alg2"]
    cfg["benchmark"]["methods"].update({
        "p-alg1-small": {**paper["benchmark"]["methods"]["p-alg1-small-natural"], **few, "prior": "tiny-natural"},
        "p-alg2": {**p_alg2, **few, "denoiser": {**p_alg2["denoiser"], "nc": TINY_NC}},
    })  # fmt: skip
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    target = ["results/tables/benchmark_bench-tiny.csv", "results/tables/benchmark_bench-tiny-real.csv"]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work), "--configfile",
         str(work / "tiny.yaml"), "--replace-workflow-config", "--cores", "2", *target],
        capture_output=True, text=True, timeout=1200, cwd=repo,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    import pandas as pd

    table = pd.read_csv(work / "results/tables/benchmark_bench-tiny.csv")
    assert {"blind-dps-paper", "kernel-diff-paper", "kernel-diff-ablation", "dps-true-kernel", "p-alg1-small",
            "p-alg2"} <= set(table.method)  # fmt: skip
    p_log = "".join(f.read_text() for f in (work / "results/logs/benchmark_run/bench-tiny").glob("p-alg2*.log"))
    assert "denoiser: DRUNet" in p_log and "download_" not in proc.stdout + proc.stderr
    assert (table.kind == "reported").sum() == len(bsd["reported"])
    # real blur: the blind methods and the floor, no true-kernel reference, no kernel metric
    real_table = pd.read_csv(work / "results/tables/benchmark_bench-tiny-real.csv")
    measured = real_table[real_table.kind != "reported"]
    assert set(measured.method) == {"blurry", "kernel-diff-paper", "kernel-diff-ablation"}, measured.method
    assert measured.kernel_error.isna().all() and measured.psnr.notna().all()
    assert (real_table.kind == "reported").sum() == len(real["reported"])
