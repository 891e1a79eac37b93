"""The probability-flow potential against the exact potential of the analytic prior (P §2.1)."""

import numpy as np
import pytest
import torch
from scipy import stats

from prior_landscape.inverse.operators import blurred_crops
from prior_landscape.io.images import crop_positions
from prior_landscape.landscape.families import kernel
from prior_landscape.landscape.potential import (
    NonFiniteODEError,
    PotentialResult,
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


def test_nfe_is_each_images_own_whatever_its_batch(demo_mixture):
    """An image's NFE counts its own solve's evaluations, not those of the batch's slowest image
    (a solver that steps the whole batch until its last image is done would count them all): the same
    alone or batched."""
    g = torch.Generator().manual_seed(6)
    x = torch.cat([demo_mixture.sample(2, generator=g).float(), 2 * torch.rand(2, 1, 16, 16, generator=g)])
    settings = PotentialSettings(n_probes=2, atol=1e-4, rtol=1e-4)
    batched = potential(demo_mixture, x, settings, probe_keys=range(4))
    alone = [potential(demo_mixture, x[i : i + 1], settings, probe_keys=[i]) for i in range(4)]
    np.testing.assert_array_equal(batched.nfe, [a.nfe[0] for a in alone])
    np.testing.assert_array_equal(batched.extra["n_divergence"], [a.extra["n_divergence"][0] for a in alone])
    assert len(set(batched.nfe.tolist())) > 1, batched.nfe  # the images' solves differ in length
    np.testing.assert_allclose(batched.q, [a.q[0] for a in alone], rtol=1e-4)


def test_divergence_quadrature_converges_and_stays_far_below_the_monte_carlo_error(demo_mixture):
    """The divergence integrals are formed on the accepted steps by Gauss–Legendre quadrature on the
    dense output, outside the error norm: against the same probes' float64 solve at tolerance 1e-9,
    each per-probe estimate at the default tolerance is off by under 1e-3·|q| and under 10 % of
    the Monte-Carlo standard error, and a 100× tighter tolerance shrinks the error at least 10×."""
    g = torch.Generator().manual_seed(13)
    x = torch.cat(
        [
            demo_mixture.sample(3, sigma=demo_mixture.sigma_eps, generator=g),
            0.5 + 0.2 * torch.rand(1, 1, 16, 16, generator=g),
        ]
    )
    settings = dict(n_probes=3)
    default = potential(demo_mixture, x.float(), PotentialSettings(**settings), seed=1)
    tighter = potential(demo_mixture, x.float(), PotentialSettings(**settings, atol=1e-7, rtol=1e-7), seed=1)
    tight = potential(
        demo_mixture, x.double(), PotentialSettings(**settings, atol=1e-9, rtol=1e-9, dtype=torch.float64), seed=1
    )
    err = np.abs(default.per_probe - tight.per_probe)
    assert (err.max(1) <= 1e-3 * np.abs(tight.q)).all(), (err, tight.q)
    assert (err.max(1) <= 0.1 * default.stderr).all(), (err, default.stderr)
    assert np.abs(tighter.per_probe - tight.per_probe).max() <= err.max() / 10
    assert (default.extra["n_divergence"] < default.nfe / 2).all()  # products at accepted steps' nodes only


def test_reference_scheme_agrees(demo_mixture):
    x = demo_mixture.sample(2, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(7)).float()
    exact = demo_mixture.potential(x.double()).numpy()
    ref = potential_reference(demo_mixture, x, PotentialSettings(n_probes=8), seed=0)
    assert _within_tolerance(ref, exact).all()


@pytest.mark.usefixtures("one_thread")
def test_interval_is_student_t_and_leaves_q_and_stderr_unchanged(demo_mixture):
    """ci95_halfwidth = t_{0.975, P−1}·SE next to the unchanged mean and SE; NaN for one probe."""
    x = demo_mixture.sample(3, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(9)).float()
    res = potential(demo_mixture, x, PotentialSettings(n_probes=4), seed=0)
    np.testing.assert_array_equal(res.q, res.per_probe.mean(1))
    np.testing.assert_allclose(res.stderr, res.per_probe.std(1, ddof=1) / 2.0, rtol=1e-15)
    np.testing.assert_allclose(res.ci95_halfwidth, stats.t.ppf(0.975, 3) * res.stderr, rtol=1e-15)
    assert abs(stats.t.ppf(0.975, 3) - 3.1824463) < 1e-6 and res.n_probes == 4
    lo, hi = res.ci95
    np.testing.assert_allclose(hi - lo, 2 * res.ci95_halfwidth)
    batched = potential_batched(demo_mixture, x, PotentialSettings(batch_size=2, n_probes=4), seed=0)
    np.testing.assert_allclose(batched.ci95_halfwidth, stats.t.ppf(0.975, 3) * batched.stderr, rtol=1e-15)
    one = potential(demo_mixture, x[:2], PotentialSettings(n_probes=1), seed=0)
    assert np.isnan(one.stderr).all() and np.isnan(one.ci95_halfwidth).all()
    assert np.isnan(PotentialResult.t_halfwidth(np.ones(3), 1)).all()
    np.testing.assert_allclose(PotentialResult.t_halfwidth(2.0, 2), 2 * 12.706204736, rtol=1e-9)


@pytest.mark.usefixtures("one_thread")
def test_95_percent_interval_covers_the_exact_potential_95_percent_of_the_time(demo_mixture, heldout_images):
    """Over 320 images (240 mixture samples, 80 blurred held-out crops, each with its own probes, P = 4
    as in the demo) the share of exact q inside q ± ci95_halfwidth lies in the 99.9 % binomial band
    around 95 %. The normal-quantile interval q ± 1.96 SE does not (≈ 85 % for P = 4: an SE from
    4 probes has 3 degrees of freedom), which shows the test can tell them apart."""
    samples = demo_mixture.sample(240, sigma=demo_mixture.sigma_eps, generator=torch.Generator().manual_seed(11))
    crops = crop_positions(heldout_images, 40, 16, seed=12, margin=15, min_std=0.02)  # blurred: 2.5× the NFE
    blurred = [blurred_crops(heldout_images, crops, kernel(f, 2.0)) for f in ("gaussian", "motion")]
    x = torch.cat([samples.float(), *blurred])
    exact = demo_mixture.potential(x.double()).numpy()
    res = potential_batched(demo_mixture, x, PotentialSettings(batch_size=80, n_probes=4), seed=0)
    n = len(x)
    inside_t = np.abs(res.q - exact) <= res.ci95_halfwidth
    inside_normal = np.abs(res.q - exact) <= 1.96 * res.stderr
    lo, hi = stats.binom.interval(0.999, n, 0.95)
    assert lo <= inside_t.sum() <= hi, (inside_t.mean(), lo / n, hi / n)
    assert inside_normal.sum() < lo, inside_normal.mean()


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
