"""The paper's qualitative findings (P §2.2–2.3), checked on the demo priors.

The analytic prior's potential is exact, so its checks are fast and sharp; the score
networks are trained briefly here on the demo data (a few hundred steps), enough for
the qualitative effect the paper reports.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SCHEDULE
from prior_landscape.blur import blur, kernel
from prior_landscape.data import blurred_crops, crop_positions, heldout_digits, training_images
from prior_landscape.potential import potential_batched
from prior_landscape.priors.scorenet import train_dsm
from prior_landscape.sweeps import likelihood_sweep, sweep_summary

THETAS = np.linspace(0, 5, 6)


@pytest.fixture(scope="module")
def heldout_crops(heldout_images):
    return crop_positions(heldout_images, 12, 16, seed=1, margin=15, min_std=0.05)


def _table(crops):
    return pd.DataFrame({"image": [c.image for c in crops], "row": [c.row for c in crops], "col": [c.col for c in crops]})


def test_blurry_images_are_more_likely_under_the_natural_mixture(demo_mixture, heldout_images, heldout_crops):
    """P §2.3: q(h_θ ⋆ x) decreases with θ, for every family and most images (exact q)."""
    for family in ("gaussian", "motion", "airy", "defocus"):
        q = np.stack([demo_mixture.potential(blurred_crops(heldout_images, heldout_crops, kernel(family, t)).double()).numpy()
                      for t in THETAS])
        assert (q[-1] < q[0]).mean() >= 0.9, family
        assert (np.diff(q, axis=0) < 0).all(0).mean() >= 0.75, family
        assert np.median(q[0] - q[-1]) > 50, family  # tens of nats, not a rounding effect


def test_the_sweep_estimates_reproduce_the_exact_trend(demo_mixture, heldout_images, heldout_crops):
    crops = heldout_crops[:4]
    df = likelihood_sweep(demo_mixture, lambda h: blurred_crops(heldout_images, crops, h), _table(crops), ["gaussian"],
                          THETAS, n_probes=4, atol=1e-4, rtol=1e-4)
    s = sweep_summary(df).iloc[0]
    assert s.share_end_below_start == 1.0
    exact = sweep_summary(df.assign(q=df.q_exact)).iloc[0]
    assert abs(s.median_q_end - s.median_q_start - (exact.median_q_end - exact.median_q_start)) < 0.15 * abs(
        exact.median_q_end - exact.median_q_start)


@pytest.fixture(scope="module")
def brief_networks():
    """Score networks of photographs and of binary digits, 400 DSM steps each (~1 min on 2 cores)."""
    data = {"photographs": {"train": ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "china"]},
            "downscale": 2, "crop_size": 16, "n_train_crops": 3000}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nets = {src: train_dsm(training_images(src, data, 0), SCHEDULE, steps=400, batch_size=64, lr=2e-3, seed=0,
                               name=src)[0] for src in ("photographs", "binary_digits")}
    finally:
        torch.set_num_threads(threads)
    return nets


def _dq(prior, images_at):
    """q(h_5 ⋆ x) − q(x) per image, with shared probes."""
    x = torch.cat([images_at(0.0), images_at(5.0)])
    n = len(x) // 2
    r = potential_batched(prior, x, 16, probe_keys=np.tile(np.arange(n), 2), n_probes=4, atol=1e-4, rtol=1e-4)
    return r.q[n:] - r.q[:n]


@pytest.mark.slow
def test_natural_network_prefers_blur_and_digit_network_does_not(brief_networks, heldout_images, heldout_crops):
    """P §2.3 and Fig. 8: blur lowers q under a prior of photographs, raises it under a prior of binary digits."""
    crops = heldout_crops[:8]
    natural = _dq(brief_networks["photographs"], lambda t: blurred_crops(heldout_images, crops, kernel("gaussian", t)))
    digits = heldout_digits(8, 16)
    binary = _dq(brief_networks["binary_digits"], lambda t: blur(digits.double(), kernel("gaussian", t)).float())
    assert (natural < 0).mean() >= 0.75, natural
    assert (binary > 0).mean() >= 0.75, binary
