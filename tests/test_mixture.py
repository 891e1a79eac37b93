"""The analytic mixture prior is exact: brute-force densities and autograd derivatives agree."""

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from prior_landscape.priors import GaussianMixturePrior, load_prior


def _dense_covariances(prior, sigma):
    d = prior.means.shape[1]
    return [
        prior.bases[k] @ torch.diag(prior.spectra[k]) @ prior.bases[k].T
        + (prior.floor + sigma**2) * torch.eye(d, dtype=torch.float64)
        for k in range(len(prior.weights))
    ]


@pytest.mark.parametrize("sigma", [0.0, 0.05, 1.0, 20.0])
def test_log_prob_matches_dense_gaussians(small_mixture, sigma):
    pr = small_mixture
    x = pr.sample(5, sigma=sigma, generator=torch.Generator().manual_seed(1))
    covs = _dense_covariances(pr, sigma)
    xs = x.reshape(5, -1).numpy()
    dense = np.log(
        sum(float(pr.weights[k]) * multivariate_normal(pr.means[k].numpy(), covs[k].numpy()).pdf(xs) for k in range(3))
    )
    np.testing.assert_allclose(pr.log_prob(x, sigma).numpy(), dense, rtol=1e-10)


@pytest.mark.parametrize("sigma", [0.02, 0.7])
def test_score_and_hessian_match_autograd(small_mixture, sigma):
    pr = small_mixture
    x = pr.sample(3, sigma=sigma, generator=torch.Generator().manual_seed(2))
    for b in range(3):
        xb = x[b : b + 1]
        f = lambda z: pr.log_prob(z.reshape(1, *pr.image_shape), sigma).sum()  # noqa: E731
        grad = torch.func.grad(f)(xb.reshape(-1))
        hess = torch.func.hessian(f)(xb.reshape(-1))
        torch.testing.assert_close(pr.score(xb, sigma).reshape(-1), grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(pr.hessian_log_prob(xb, sigma)[0], hess, rtol=1e-9, atol=1e-9)


def test_hessian_near_a_mean_has_the_component_rank_of_small_eigenvalues(small_mixture):
    pr = small_mixture
    k = int(torch.argmax(pr.weights))
    H = pr.hessian_potential(pr.means[k].reshape(1, *pr.image_shape))[0]
    ev = torch.linalg.eigvalsh(H)
    c = pr.floor + pr.sigma_eps**2
    # d − r eigenvalues 1/c, r eigenvalues 1/(s + c) < 1/c (other components are far away)
    assert int((ev < 0.5 / c).sum()) == pr.bases.shape[2]
    torch.testing.assert_close(ev[ev > 0.5 / c], torch.full_like(ev[ev > 0.5 / c], 1 / c), rtol=1e-4, atol=0)


def test_samples_have_the_mixture_moments(small_mixture):
    pr = small_mixture
    x = pr.sample(60_000, generator=torch.Generator().manual_seed(3)).reshape(60_000, -1)
    mean = (pr.weights[:, None] * pr.means).sum(0)
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)


def test_save_load_round_trip(small_mixture, tmp_path):
    path = tmp_path / "m.pt"
    small_mixture.save(path)
    loaded = load_prior(path)
    assert isinstance(loaded, GaussianMixturePrior)
    x = small_mixture.sample(4, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(loaded.score(x, 0.3), small_mixture.score(x, 0.3))
    assert loaded.schedule == small_mixture.schedule


def test_fit_recovers_a_low_rank_gaussian():
    rng = np.random.default_rng(0)
    d, r = 16, 3
    U = np.linalg.qr(rng.normal(size=(d, r)))[0]
    X = 0.5 + (rng.normal(size=(20_000, r)) * [1.0, 0.5, 0.25]) @ U.T + 0.01 * rng.normal(size=(20_000, d))
    from prior_landscape.priors.schedules import VESchedule

    pr = GaussianMixturePrior.fit(X, (1, 4, 4), VESchedule(0.01, 10.0), n_components=1, rank=r)
    np.testing.assert_allclose(pr.floor, 1e-4, rtol=0.05)
    np.testing.assert_allclose(np.sort(pr.spectra[0].numpy())[::-1], [1.0, 0.25, 0.0625], rtol=0.05)
