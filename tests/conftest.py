"""Shared fixtures: a demo-like analytic prior fitted on bundled photographs."""

from pathlib import Path

import pytest
import torch

from prior_landscape.io.images import crop_positions, extract_crops, load_photographs
from prior_landscape.priors import GaussianMixturePrior
from prior_landscape.priors.schedules import VESchedule

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "china"]
HELDOUT = ["flower", "clock", "brick", "gravel", "grass"]
SCHEDULE = VESchedule(sigma_min=0.01, sigma_max=20.0, t_eps=1e-3)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small (16×16) problems: extra threads only add
    contention on 2 cores. Restores the previous count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def train_images():
    return load_photographs(TRAIN, downscale=2)


@pytest.fixture(scope="session")
def heldout_images():
    return load_photographs(HELDOUT, downscale=2)


@pytest.fixture(scope="session")
def demo_mixture(train_images):
    """The demo's analytic prior (16×16 crops, 8 components of rank 32)."""
    crops = extract_crops(train_images, crop_positions(train_images, 3000, 16, seed=0))
    return GaussianMixturePrior.fit(crops.numpy(), (1, 16, 16), SCHEDULE, n_components=8, rank=32, seed=0)


@pytest.fixture(scope="session")
def small_mixture():
    """A random 3-component mixture in d = 12 (1×3×4), for brute-force comparisons."""
    g = torch.Generator().manual_seed(0)
    K, d, r = 3, 12, 4
    bases = torch.linalg.qr(torch.randn(K, d, r, generator=g, dtype=torch.float64))[0]
    return GaussianMixturePrior(
        weights=torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        means=torch.rand(K, d, generator=g, dtype=torch.float64),
        bases=bases,
        spectra=torch.rand(K, r, generator=g, dtype=torch.float64) * 0.5 + 0.05,
        floor=0.01,
        image_shape=(1, 3, 4),
        schedule=SCHEDULE,
    )
