"""Critical points by gradient descent (P §2.2): convergence on the analytic prior, resuming, divergence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from prior_landscape.io.images import crop_positions, extract_crops
from prior_landscape.landscape.critical_points import (
    DescentResult,
    choose_eta,
    descend,
    descent_step,
    white_noise_starts,
)
from prior_landscape.landscape.hessian import eigenvalues
from prior_landscape.runs import RunOptions


def safe_eta(pr) -> float:
    """η of the exact safe step s = φ + σ_ε² = 1/L of the analytic mixture."""
    return choose_eta(pr, None, "auto")


def _max_increase(traj: pd.DataFrame) -> float:
    """Largest increase of q between consecutive records of any image."""
    return max(
        float(np.diff(g.sort_values("step")["q"].to_numpy()).max(initial=-np.inf)) for _, g in traj.groupby("image")
    )


def test_the_declared_lipschitz_bound_holds_and_gives_the_safe_step(small_mixture, demo_mixture):
    for pr in (small_mixture, demo_mixture):
        assert pr.lipschitz_bound() == pytest.approx(1 / (pr.floor + pr.sigma_eps**2))
        assert safe_eta(pr) * pr.sigma_eps**2 == pytest.approx(pr.floor + pr.sigma_eps**2, rel=1e-12)
        x = pr.sample(3, generator=torch.Generator().manual_seed(0))
        lam_max = max(eigenvalues(H).max() for H in pr.hessian_potential(x))
        assert lam_max <= pr.lipschitz_bound() * (1 + 1e-9)


def test_a_step_in_p_convention_is_a_relaxed_denoiser_iteration(demo_mixture):
    """η = 0.02 means P's update x ← x − η (x − D_σε(x)) = (1 − η) x + η D(x), D the prior's
    Tweedie denoiser x + σ_ε² ∇log p_σε at the potential's own σ_ε; "auto" the safe step."""
    pr = demo_mixture
    x = pr.sample(3, generator=torch.Generator().manual_seed(1))
    assert choose_eta(pr, x, 0.02) == 0.02
    denoised = x + pr.sigma_eps**2 * pr.score(x, pr.sigma_eps)
    one = descend(pr, x, eta=0.02, n_steps=1).end
    torch.testing.assert_close(one, 0.98 * x + 0.02 * denoised, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(descent_step(x, pr.grad_potential(x), 0.02, pr.sigma_eps), one, rtol=0, atol=0)
    for bad in (0.0, -0.02):
        with pytest.raises(ValueError, match="η must be positive"):
            choose_eta(pr, x, bad)


def test_momentum_is_the_heavy_ball_step(small_mixture):
    """With β > 0 every step adds β (x_k − x_{k−1}) (P eq. 15's scheme), from x_{−1} = x_0."""
    pr = small_mixture
    x0 = pr.sample(2, generator=torch.Generator().manual_seed(2))
    eta, beta, s = 0.3 * safe_eta(pr), 0.9, 0.3 * safe_eta(pr) * pr.sigma_eps**2
    x_prev, x = x0, x0
    for _ in range(5):
        x, x_prev = x - s * pr.grad_potential(x) + beta * (x - x_prev), x
    torch.testing.assert_close(descend(pr, x0, eta=eta, n_steps=5, momentum=beta).end, x, rtol=1e-13, atol=1e-13)


def test_descent_from_samples_reaches_second_order_critical_points(small_mixture):
    pr = small_mixture
    x0 = pr.sample(6, generator=torch.Generator().manual_seed(5))
    res = descend(pr, x0, eta=safe_eta(pr), n_steps=3000, options=RunOptions(record_every=100))
    assert isinstance(res, DescentResult)
    traj = res.trajectory
    assert list(traj.columns) == ["image", "step", "grad_norm", "q"]
    assert sorted(traj["step"].unique()) == list(range(0, 3001, 100))
    assert len(traj) == 6 * 31
    # ‖∇q‖ vanishes (start ≈ 20–32) and q never increases along the descent
    assert (res.final_grad_norm < 1e-10 * res.grad_norm_start).all()
    assert _max_increase(traj) <= 1e-9
    # the end points are critical points of the exact potential, with a positive-definite
    # Hessian, at a component mean (the components of this mixture are well separated)
    np.testing.assert_allclose(
        pr.grad_potential(res.end).flatten(1).norm(dim=1).numpy(), res.final_grad_norm, atol=1e-12
    )
    for i in range(6):
        assert eigenvalues(pr.hessian_potential(res.end[i : i + 1])[0]).min() > 0
    dist = torch.cdist(res.end.reshape(6, -1), pr.means).min(1).values
    assert (dist < 1e-8).all()
    # bookkeeping
    ref = (x0 - res.end).flatten(1).norm(dim=1) / res.end.flatten(1).norm(dim=1)
    np.testing.assert_allclose(res.relative_distance, ref.numpy(), rtol=1e-12)
    assert torch.equal(res.start, x0)
    s = res.summary()
    assert (s["q_drop"] > 0).all() and np.allclose(s["q_end"], pr.potential(res.end).numpy())


def test_descent_resumes_exactly_after_an_interruption(small_mixture, tmp_path):
    pr = small_mixture
    x0 = pr.sample(4, generator=torch.Generator().manual_seed(7))
    eta = 0.5 * safe_eta(pr)

    def opts(path=None, progress=None):
        return RunOptions(state_path=path, record_every=20, checkpoint_every=50, progress=progress)

    full = descend(pr, x0, eta=eta, n_steps=250, options=opts())

    # a shorter run, then the same call extended: P's "run it longer"
    ckpt = tmp_path / "descent.pt"
    short = descend(pr, x0, eta=eta, n_steps=130, options=opts(ckpt))
    assert short.n_steps == 130 and ckpt.exists()
    resumed = descend(pr, x0, eta=eta, n_steps=250, options=opts(ckpt))
    assert resumed.resumed_from == 130

    # a killed run: the progress callback raises at step 160, after the checkpoint at 150
    ckpt2 = tmp_path / "killed.pt"

    def kill(k, record):
        if k == 160:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        descend(pr, x0, eta=eta, n_steps=250, options=opts(ckpt2, kill))
    after_kill = descend(pr, x0, eta=eta, n_steps=250, options=opts(ckpt2))
    assert after_kill.resumed_from == 150

    # a finished run re-read from its checkpoint costs nothing and gives the same
    again = descend(pr, x0, eta=eta, n_steps=250, options=opts(ckpt2))
    assert again.resumed_from == 250

    for res in (resumed, after_kill, again):
        assert torch.equal(res.end, full.end)
        pd.testing.assert_frame_equal(res.trajectory, full.trajectory)
        np.testing.assert_array_equal(res.final_grad_norm, full.final_grad_norm)
        np.testing.assert_array_equal(res.grad_norm_start, full.grad_norm_start)
        np.testing.assert_array_equal(res.relative_distance, full.relative_distance)
    assert not list(tmp_path.glob("*.part")), "a temporary checkpoint was left behind"


def test_checkpoint_of_another_configuration_is_not_resumed(small_mixture, tmp_path, caplog):
    pr = small_mixture
    x0 = pr.sample(2, generator=torch.Generator().manual_seed(8))
    ckpt = tmp_path / "descent.pt"
    opts = RunOptions(state_path=ckpt, record_every=10)
    descend(pr, x0, eta=0.005 / pr.sigma_eps**2, n_steps=40, options=opts)
    fresh = descend(pr, x0, eta=0.004 / pr.sigma_eps**2, n_steps=60, options=RunOptions(record_every=10))
    for x, eta, n, why in (
        (x0, 0.004, 60, "another run"),
        (x0 + 1e-3, 0.004, 60, "another run"),
        (x0 + 1e-3, 0.004, 30, "past this run's end"),
    ):
        caplog.clear()
        with caplog.at_level("WARNING", logger="prior_landscape.runs"):
            other = descend(pr, x, eta=eta / pr.sigma_eps**2, n_steps=n, options=opts)
        assert other.resumed_from == 0 and why in caplog.text and "starting afresh" in caplog.text
        if x is x0:
            assert torch.equal(other.end, fresh.end)


def test_a_divergent_step_raises_with_the_image_and_step(small_mixture, demo_mixture):
    pr = small_mixture
    x0 = pr.sample(5, generator=torch.Generator().manual_seed(5))
    # 2/λ_max ≈ 2(φ + σ_ε²) ≈ 0.02: a step of 0.05 blows up geometrically
    safe = f"{safe_eta(pr):.4g}".replace(".", r"\.")
    with pytest.raises(FloatingPointError, match=rf"image \d+ at step \d+ .*any η ≤ {safe} is safe"):
        descend(pr, x0, eta=0.05 / pr.sigma_eps**2, n_steps=2000)
    # P's step 0.02 on the demo mixture (φ + σ_ε² ≈ 1.4e-3), in float32
    x1 = demo_mixture.sample(2, generator=torch.Generator().manual_seed(0)).float()
    with pytest.raises(FloatingPointError, match="not finite for image"):
        descend(demo_mixture, x1, eta=0.02 / demo_mixture.sigma_eps**2, n_steps=1000)


def test_white_noise_starts_and_input_checks(small_mixture):
    a = white_noise_starts(500, (1, 3, 4), mean=0.5, std=0.2, seed=3)
    assert a.shape == (500, 1, 3, 4) and a.dtype == torch.float32
    assert torch.equal(a, white_noise_starts(500, (1, 3, 4), mean=0.5, std=0.2, seed=3))
    assert not torch.equal(a, white_noise_starts(500, (1, 3, 4), mean=0.5, std=0.2, seed=4))
    assert abs(float(a.mean()) - 0.5) < 0.01 and abs(float(a.std()) - 0.2) < 0.01
    pr = small_mixture
    with pytest.raises(ValueError, match="shape"):
        descend(pr, torch.zeros(2, 1, 4, 3), eta=1.0, n_steps=1)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step η"):
            descend(pr, torch.zeros(2, 1, 3, 4), eta=bad, n_steps=1)
    res = descend(pr, a[:3].double(), eta=1.0, n_steps=0)
    assert torch.equal(res.end, a[:3].double()) and list(res.trajectory["step"]) == [0, 0, 0]
    np.testing.assert_allclose(res.summary()["q_drop"], 0.0)  # the exact q, recorded at both (equal) ends
    s = res.summary(q_start=[3.0, 2.0, 1.0], q_end=[1.0, 1.0, 1.0])
    assert list(s["q_drop"]) == [2.0, 1.0, 0.0]


def test_demo_mixture_descent_from_heldout_crops(demo_mixture, heldout_images):
    """P §2.2 / Fig. 3 on the demo's analytic prior, from 12 held-out photograph crops.

    Observed (step φ + σ_ε² ≈ 1.36e-3, float64), after 1000 steps: relative
    distance ‖x − x̄‖/‖x̄‖ median 0.28 (0.12–0.68), q drop median ≈ 250 nats
    (55–665; q from −540…+106 down to −559 or −596), ‖∇q‖ from 110–965 down to
    0.02–0.53 (ratio median 1.1e-4, max 4.9e-3), end points within 0.15–2 % of a
    component mean; after 2000 steps the same distances and drops, ‖∇q‖ 1e-3–1.6e-2
    (ratio ≤ 1.1e-4), within 0.1 % of a mean, Hessian positive definite. A Gaussian
    mixture's only critical points are near its component means, so the descents
    travel far: P's "critical points a few percent away" is a property of learned
    priors (to be checked on the score network), not of this oracle.
    """
    pr = demo_mixture
    x0 = extract_crops(heldout_images, crop_positions(heldout_images, 12, 16, seed=1, margin=15, min_std=0.05))
    res = descend(pr, x0.double(), eta=safe_eta(pr), n_steps=1000, options=RunOptions(record_every=100))
    s = res.summary()
    assert _max_increase(res.trajectory) <= 1e-8
    assert (s["q_drop"] > 10).all()
    assert (s["grad_norm_end"] < 2e-2 * s["grad_norm_start"]).all()
    assert np.isfinite(s["relative_distance"]).all() and s["relative_distance"].median() > 0.1
    D = torch.cdist(res.end.reshape(12, -1), pr.means)
    nearest = D.min(1).values / pr.means.norm(dim=1)[D.argmin(1)]
    assert (nearest < 5e-2).all()
    for i in (0, 6):
        assert eigenvalues(pr.hessian_potential(res.end[i : i + 1])[0]).min() > 0
