"""The score network prior: it learns a known score, round-trips, resumes, differentiates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prior_landscape.priors.base import DiffusionPrior
from prior_landscape.priors.schedules import VESchedule
from prior_landscape.priors.scorenet import DiffusersScoreUNet, ScoreNetworkPrior, ScoreUNet, build_score_network
from prior_landscape.priors.training import DSMLoss, train_dsm
from prior_landscape.runs import RunOptions


def _state_step(path) -> int:
    """The iteration a resumable training state was saved at."""
    return int(torch.load(path, weights_only=True)["k"])


SCHED = VESchedule(sigma_min=0.01, sigma_max=20.0)
TINY = dict(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, emb_features=8, emb_channels=16, groups=4)

# A known Gaussian N(mu, s² I) on 1×4×4 images, with a non-constant mean.
GAUSS_SHAPE = (1, 4, 4)
GAUSS_MU = torch.linspace(0.2, 0.8, 16).reshape(GAUSS_SHAPE)
GAUSS_S = 0.15


def gaussian_data(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return GAUSS_MU + GAUSS_S * torch.randn(n, *GAUSS_SHAPE, generator=g)


def exact_score(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return -(x - GAUSS_MU) / (GAUSS_S**2 + sigma**2)


def rel_err(prior: ScoreNetworkPrior, sigma: float, n: int = 512) -> float:
    g = torch.Generator().manual_seed(123)
    x = GAUSS_MU + math.sqrt(GAUSS_S**2 + sigma**2) * torch.randn(n, *GAUSS_SHAPE, generator=g)
    with torch.no_grad():
        s = prior.score(x, sigma)
    ref = exact_score(x, sigma)
    return float((s - ref).norm() / ref.norm())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gaussian_prior() -> ScoreNetworkPrior:
    # sigma_data / data_mean fixed away from the data's, so that the untrained
    # network (whose correction F starts at zero) is far from the exact score.
    prior, hist = train_dsm(
        gaussian_data(4096),
        SCHED,
        steps=400,
        batch_size=128,
        lr=1e-2,
        seed=0,
        hflip=False,
        net_kwargs=dict(TINY, sigma_data=1.0, data_mean=0.0),
        options=RunOptions(record_every=100),
    )
    assert list(hist["step"]) == [100, 200, 300, 400]
    assert {"step", "loss", "loss_low_sigma", "loss_mid_sigma", "loss_high_sigma"} <= set(hist.columns)
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    return prior


def untrained_prior(**kw) -> ScoreNetworkPrior:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ScoreUNet(**dict(TINY, **kw))
    return ScoreNetworkPrior(net, SCHED, GAUSS_SHAPE)


# ------------------------------------------------------------------ (a) learns
@pytest.mark.parametrize("sigma", [0.1, 0.3])
def test_learns_the_exact_gaussian_score(gaussian_prior, sigma):
    init = untrained_prior(sigma_data=1.0, data_mean=0.0)
    e0, e1 = rel_err(init, sigma), rel_err(gaussian_prior, sigma)
    # measured (torch 2.14 CPU): init 0.97 / 0.91, after 400 steps 0.106 / 0.103
    assert e0 > 0.8
    assert e1 < 0.25, (e0, e1)
    assert e1 < e0 / 3


def test_is_a_diffusion_prior(gaussian_prior):
    assert isinstance(gaussian_prior, DiffusionPrior)
    n = gaussian_prior.num_parameters()
    assert n == sum(p.numel() for p in gaussian_prior.net.parameters()) > 0
    assert not gaussian_prior.net.training
    assert gaussian_prior.image_shape == GAUSS_SHAPE
    assert gaussian_prior.metadata["steps"] == 400
    assert math.isfinite(gaussian_prior.metadata["final_loss"])
    g = gaussian_prior.grad_potential(gaussian_data(3))
    assert g.shape == (3, *GAUSS_SHAPE) and torch.isfinite(g).all()


# -------------------------------------------------------------- (b) save/load
def test_save_load_round_trip(gaussian_prior, tmp_path):
    path = tmp_path / "prior.pt"
    gaussian_prior.save(path)
    loaded = ScoreNetworkPrior.load(path)
    x = gaussian_data(8, seed=5)
    sig = torch.logspace(-2, 1, 8)
    assert torch.equal(loaded.score(x, sig), gaussian_prior.score(x, sig))
    assert loaded.num_parameters() == gaussian_prior.num_parameters()
    assert loaded.schedule == gaussian_prior.schedule
    assert loaded.image_shape == gaussian_prior.image_shape
    assert loaded.net.config == gaussian_prior.net.config
    assert loaded.metadata == gaussian_prior.metadata
    assert not list(tmp_path.glob("*.part"))  # atomic write left no temporary


def test_load_rejects_other_files(tmp_path):
    other = tmp_path / "mixture.pt"
    torch.save({"kind": "gaussian_mixture", "weights": torch.ones(1)}, other)
    with pytest.raises(ValueError, match="mixture.pt"):
        ScoreNetworkPrior.load(other)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt"):
        ScoreNetworkPrior.load(text)


# ------------------------------------------------------------------ (c) resume
def _weights(prior: ScoreNetworkPrior) -> dict:
    return {k: v.clone() for k, v in prior.net.state_dict().items()}


class _Killed(Exception):
    pass


def test_resume_reproduces_uninterrupted_training(tmp_path, caplog):
    data = gaussian_data(256)
    common = dict(steps=12, batch_size=16, lr=3e-3, seed=3, net_kwargs=TINY)

    def opts(path=None, progress=None, checkpoint_every=4):
        return RunOptions(state_path=path, record_every=2, checkpoint_every=checkpoint_every, progress=progress)

    rng_before = torch.random.get_rng_state()
    ref, ref_hist = train_dsm(data, SCHED, **common, options=opts())
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone

    # killed at step 6: the checkpoint holds step 4; rerunning continues from it
    ckpt = tmp_path / "state.pt"

    def kill(step, rec):
        if step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        train_dsm(data, SCHED, **common, options=opts(ckpt, kill))
    assert _state_step(ckpt) == 4
    resumed, hist = train_dsm(data, SCHED, **common, options=opts(ckpt))
    w_ref, w = _weights(ref), _weights(resumed)
    assert all(torch.equal(w_ref[k], w[k]) for k in w_ref)  # bit-identical on CPU
    np.testing.assert_array_equal(hist["loss"].to_numpy(), ref_hist["loss"].to_numpy())
    assert _state_step(ckpt) == 12

    # extending a finished run: 8 steps, then 12, equals 12 straight — also with a checkpoint
    # cadence off the record cadence (the open loss window is part of the state)
    ckpt2 = tmp_path / "state2.pt"
    train_dsm(data, SCHED, **dict(common, steps=7), options=opts(ckpt2, checkpoint_every=3))
    extended, ext_hist = train_dsm(data, SCHED, **common, options=opts(ckpt2, checkpoint_every=3))
    w2 = _weights(extended)
    assert all(torch.equal(w_ref[k], w2[k]) for k in w_ref)
    np.testing.assert_array_equal(ext_hist["loss"].to_numpy(), ref_hist["loss"].to_numpy())

    # a state made with other settings is not continued: training starts afresh and says so
    with caplog.at_level("WARNING", logger="prior_landscape.runs"):
        other, _ = train_dsm(data, SCHED, **dict(common, lr=1e-3), options=opts(ckpt))
    assert "another run" in caplog.text and "starting afresh" in caplog.text
    fresh, _ = train_dsm(data, SCHED, **dict(common, lr=1e-3), options=opts())
    assert all(torch.equal(a, b) for a, b in zip(_weights(other).values(), _weights(fresh).values()))
    # a training state is not a prior
    with pytest.raises(ValueError, match="state.pt"):
        ScoreNetworkPrior.load(ckpt)


def test_dsm_loss_is_zero_mean_noise_matching_for_the_exact_score():
    """With the exact score of N(μ, s²I), σ s(x̃, σ) + z = (s² z − σ(x₀ − μ))/(s² + σ²) has per-pixel
    variance s²/(s² + σ²): the loss at the exact score is that, averaged over the drawn t ~ U(t_ε, 1)."""
    sched = VESchedule(sigma_min=0.01, sigma_max=20.0)
    loss = DSMLoss(sched)
    x0 = gaussian_data(20000, seed=4)
    per, t = loss(lambda x, sig: exact_score(x, sig[:, None, None, None]), x0, torch.Generator().manual_seed(0))
    sigma = sched.sigma(t)
    expected = (GAUSS_S**2 / (GAUSS_S**2 + sigma**2)).mean()
    assert abs(float(per.mean()) - float(expected)) < 0.005 and per.shape == (20000,)


# ------------------------------------------------------------------- (d) sigma
def test_scalar_and_per_sample_sigma_agree(gaussian_prior):
    prior = gaussian_prior
    x = gaussian_data(5, seed=7)
    s_float = prior.score(x, 0.3)
    assert torch.equal(prior.score(x, torch.tensor(0.3)), s_float)
    assert torch.equal(prior.score(x, torch.full((5,), 0.3)), s_float)
    sig = torch.tensor([0.01, 0.1, 0.5, 2.0, 15.0])
    batched = prior.score(x, sig)
    rows = torch.cat([prior.score(x[i : i + 1], float(sig[i])) for i in range(5)])
    torch.testing.assert_close(batched, rows, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(batched[0], prior.score(x[:1], 15.0)[0])  # sigma does matter
    with pytest.raises(ValueError, match="sigma"):
        prior.score(x, torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        prior.score(torch.zeros(2, 1, 8, 8), 0.1)
    # float64 inputs come back in float64
    assert prior.score(x.double(), 0.3).dtype == torch.float64


def test_large_sigma_tends_to_the_gaussian_tail(gaussian_prior):
    # at σ ≫ σ_data the score is −(x − m)/(σ² + σ_d²) plus a vanishing correction
    x = 20.0 * gaussian_data(4, seed=9)
    s = gaussian_prior.score(x, 20.0)
    net = gaussian_prior.net
    tail = -(x - net.data_mean) / (400.0 + net.sigma_data**2)
    assert float((s - tail).norm() / tail.norm()) < 0.2


# ---------------------------------------------------------- (e) differentiable
def test_vjp_and_jvp_through_the_network(gaussian_prior, tmp_path):
    gaussian_prior.save(tmp_path / "p.pt")
    prior = ScoreNetworkPrior.load(tmp_path / "p.pt").to(torch.float64)
    g = torch.Generator().manual_seed(0)
    x = gaussian_data(3, seed=11).double()
    sigma = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64)
    u = torch.randn(x.shape, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)

    # reverse mode (as potential.py does)
    xr = x.clone().requires_grad_(True)
    (vjp,) = torch.autograd.grad(prior.score(xr, sigma), xr, u, create_graph=True)
    # double backward works too (Hessian-type computations)
    (gg,) = torch.autograd.grad(vjp.pow(2).sum(), xr)
    assert torch.isfinite(gg).all()

    # forward mode with torch.func
    f = lambda y: prior.score(y, sigma)  # noqa: E731
    out, jvp = torch.func.jvp(f, (x,), (v,))
    torch.testing.assert_close(out, f(x))
    # uᵀ(J v) = (Jᵀu)ᵀ v per image
    torch.testing.assert_close((u * jvp).flatten(1).sum(1), (vjp.detach() * v).flatten(1).sum(1), rtol=1e-9, atol=1e-9)
    # and J v matches central finite differences
    h = 1e-5
    fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    torch.testing.assert_close(jvp, fd, rtol=1e-5, atol=1e-5)
    # torch.func.vjp agrees with autograd
    _, vjp_fn = torch.func.vjp(f, x)
    torch.testing.assert_close(vjp_fn(u)[0], vjp.detach())
    # the Jacobian of a learned score is close to symmetric (it is a Hessian of log p)
    _, jvp_u = torch.func.jvp(f, (x,), (u,))
    assert float(((v * jvp_u).sum() - (u * jvp).sum()).abs()) < 0.1 * float(jvp.norm() * u.norm())


def test_potential_engine_call_pattern(gaussian_prior):
    """As potential.py does: σ of shape (B,) from the schedule, several VJPs on one graph."""
    x = gaussian_data(2, seed=3).requires_grad_(True)
    t = torch.tensor([0.2, 0.7])
    sigma = SCHED.sigma(t).to(x.dtype)
    coef = (SCHED.sigma(t) * SCHED.sigma_dot(t)).to(x.dtype)
    v = -coef[:, None, None, None] * gaussian_prior.score(x, sigma)
    probes = torch.randint(0, 2, (3, *x.shape), generator=torch.Generator().manual_seed(0)).float() * 2 - 1
    divs = []
    for p in range(3):
        (ujv,) = torch.autograd.grad(v, x, probes[p], retain_graph=p < 2)
        divs.append((ujv * probes[p]).flatten(1).sum(1))
    div = torch.stack(divs, 1)
    assert div.shape == (2, 3) and torch.isfinite(div).all()
    # the divergence of v = −σσ' s is positive for a contracting (log-concave) score
    assert (div > 0).all()


# ------------------------------------------- (f) P's MNIST network: diffusers' UNet2DModel
TINY_DIFFUSERS = dict(
    architecture="diffusers_unet2d",
    block_out_channels=[8, 16],
    layers_per_block=1,
    norm_num_groups=4,
    down_block_types=["DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D"],
)


def test_the_paper_configuration_builds_the_papers_mnist_network():
    """config/paper.yaml's mnist-binary network is P §2.3's: diffusers' UNet2DModel with
    block_out_channels 32/64/128/256, attention included, 15.9 M parameters."""
    import yaml
    from conftest import REPO

    cfg = yaml.safe_load((REPO / "config/paper.yaml").read_text())["priors"]["mnist-binary"]["network"]
    net = build_score_network(in_channels=1, **cfg)
    assert isinstance(net, DiffusersScoreUNet)
    n = sum(p.numel() for p in net.parameters())
    assert n == 15_890_753 and round(n / 1e6, 1) == 15.9  # P: "15.9 million parameters"
    assert any(type(m).__name__ == "Attention" for m in net.modules())
    prior = ScoreNetworkPrior(net, SCHED, (1, 32, 32))
    x = torch.rand(2, 1, 32, 32)
    # untrained, the correction F is zero: the score is the Gaussian N(m, σ_d²) score exactly
    torch.testing.assert_close(prior.score(x, 0.5), -x / (0.5**2 + 0.5**2))
    with pytest.raises(ValueError, match="unknown score-network architecture 'nope'.*diffusers_unet2d"):
        build_score_network(architecture="nope")


def test_diffusers_network_learns_round_trips_and_differentiates(tmp_path):
    data = gaussian_data(4096)
    net_kwargs = dict(TINY_DIFFUSERS, sigma_data=1.0, data_mean=0.0)
    untrained, _ = train_dsm(data, SCHED, steps=0, seed=0, net_kwargs=net_kwargs)
    prior, hist = train_dsm(
        data,
        SCHED,
        steps=200,
        batch_size=128,
        lr=1e-2,
        seed=0,
        hflip=False,
        net_kwargs=net_kwargs,
        options=RunOptions(record_every=100),
    )
    # learns the exact Gaussian score (measured: 0.97 / 0.91 untrained, 0.16 / 0.21 after 200 steps)
    for sigma in (0.1, 0.3):
        e0, e1 = rel_err(untrained, sigma), rel_err(prior, sigma)
        assert e0 > 0.8 and e1 < 0.3 and e1 < e0 / 3, (sigma, e0, e1)

    # the checkpoint names its architecture and loads back to the same scores
    prior.save(tmp_path / "p.pt")
    loaded = ScoreNetworkPrior.load(tmp_path / "p.pt")
    assert isinstance(loaded.net, DiffusersScoreUNet) and loaded.net.config == prior.net.config
    x = gaussian_data(3, seed=5)
    torch.testing.assert_close(loaded.score(x, 0.2), prior.score(x, 0.2), rtol=0, atol=0)

    # float64 forward-mode JVPs (the Hessian engine) match central finite differences
    p64 = loaded.to(torch.float64)
    f = lambda y: p64.grad_potential(y)  # noqa: E731
    xd = x.double()
    v = torch.randn(xd.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, jvp = torch.func.jvp(f, (xd,), (v,))
    h = 1e-5
    torch.testing.assert_close(jvp, (f(xd + h * v) - f(xd - h * v)) / (2 * h), rtol=1e-5, atol=1e-5)
