"""The probability-flow potential against the exact potential of the analytic prior (P §2.1)."""

import numpy as np
import pytest
import torch

from prior_landscape.inverse.families import kernel
from prior_landscape.io.images import blurred_crops, crop_positions
from prior_landscape.landscape.potential import (
    NonFiniteODEError,
    PotentialSettings,
    potential,
    potential_batched,
    potential_reference,
)
from prior_landscape.priors.base import DiffusionPrior


def _within_tolerance(res, exact):
    """P §2.1 accuracy target: |estimate − exact| ≤ 3 standard errors + 1e-3·|exact|."""
    return np.abs(res.q - exact) <= 3 * res.stderr + 1e-3 * np.abs(exact)


def test_potential_of_mixture_samples_matches_exact(demo_mixture):
    x = demo_mixture.sample(8, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(0)).float()
    exact = demo_mixture.potential(x.double()).numpy()
    res = potential(demo_mixture, x, PotentialSettings(n_probes=16), seed=0)
    assert _within_tolerance(res, exact).all(), (res.q, exact, res.stderr)
    assert (res.nfe > 20).all() and (res.stderr > 0).all()


def test_potential_of_blurred_photographs_matches_exact(demo_mixture, heldout_images):
    crops = crop_positions(heldout_images, 4, 16, seed=1, margin=15, min_std=0.05)
    x = torch.cat([blurred_crops(heldout_images, crops, kernel(f, 3.0)) for f in ("gaussian", "motion")])
    exact = demo_mixture.potential(x.double()).numpy()
    res = potential(demo_mixture, x, PotentialSettings(n_probes=16), seed=0)
    assert _within_tolerance(res, exact).all(), (res.q, exact, res.stderr)


def test_error_shrinks_with_more_probes(demo_mixture):
    x = demo_mixture.sample(6, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(5)).float()
    exact = demo_mixture.potential(x.double()).numpy()
    few = potential(demo_mixture, x, PotentialSettings(n_probes=2), seed=3)
    many = potential(demo_mixture, x, PotentialSettings(n_probes=32), seed=3)
    assert np.mean(np.abs(many.q - exact)) < np.mean(np.abs(few.q - exact))
    assert many.stderr.mean() < few.stderr.mean()


def test_results_do_not_depend_on_batching(demo_mixture):
    x = demo_mixture.sample(6, generator=torch.Generator().manual_seed(6)).float()
    whole = potential_batched(demo_mixture, x, PotentialSettings(batch_size=6, n_probes=3))
    split = potential_batched(demo_mixture, x, PotentialSettings(batch_size=2, n_probes=3))
    np.testing.assert_allclose(whole.q, split.q, rtol=1e-4)


def test_reference_scheme_agrees(demo_mixture):
    x = demo_mixture.sample(2, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(7)).float()
    exact = demo_mixture.potential(x.double()).numpy()
    ref = potential_reference(demo_mixture, x, PotentialSettings(n_probes=8), seed=0)
    assert _within_tolerance(ref, exact).all()


class _BrokenPrior(DiffusionPrior):
    """A prior whose score turns to NaN at large noise, as a diverging network would."""

    def __init__(self, inner):
        self.inner, self.name, self.image_shape, self.schedule = inner, "broken", inner.image_shape, inner.schedule

    def score(self, x, sigma):
        s = self.inner.score(x, sigma)
        sig = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.where(sig > 1.0, torch.nan, s)

    def num_parameters(self):
        return 0

    def defining_values(self):
        return {"inner": self.inner}


def test_non_finite_values_stop_with_a_named_cause(demo_mixture):
    x = demo_mixture.sample(2, generator=torch.Generator().manual_seed(8)).float()
    with pytest.raises(NonFiniteODEError, match=r"non-finite value for image [01] at t = .*sigma = "):
        potential(_BrokenPrior(demo_mixture), x, PotentialSettings(n_probes=2))
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteODEError, match="input images contain NaN"):
        potential(demo_mixture, x, PotentialSettings(n_probes=2))


def test_wrong_shape_is_named(demo_mixture):
    with pytest.raises(ValueError, match=r"images must have shape \(B, 1, 16, 16\)"):
        potential(demo_mixture, torch.zeros(2, 1, 8, 8))
