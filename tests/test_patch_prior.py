"""The EPLL-style patch prior: exact potential, score and bound carried over from its patch prior."""

import pytest
import torch

from prior_landscape.landscape.hessian import eigenvalues
from prior_landscape.priors import prior_from_state
from prior_landscape.priors.patch import PatchPrior

DT = torch.float64


@pytest.fixture(scope="module")
def patch(demo_mixture):
    return PatchPrior(demo_mixture, (1, 32, 32), 8, "epll")


def _images(n, side=32, seed=0):
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(seed), dtype=DT)


def test_potential_is_the_mean_patch_potential_by_brute_force(patch, demo_mixture):
    x = _images(2)
    patches = []
    for r in range(0, 32, 8):
        for c in range(0, 32, 8):
            rolled = torch.roll(x, (-r, -c), (-2, -1))  # the patch at (r, c) of the torus
            patches.append(demo_mixture.potential(rolled[..., :16, :16]))
    expected = torch.stack(patches, 1).sum(1) / 4  # each pixel is covered by (16/8)² = 4 patches
    torch.testing.assert_close(patch.potential(x), expected, rtol=1e-12, atol=1e-9)


def test_score_is_the_gradient_of_the_potential_and_shift_equivariant(patch):
    x = _images(2, seed=1).requires_grad_(True)
    (g,) = torch.autograd.grad(patch.potential(x).sum(), x)
    torch.testing.assert_close(patch.grad_potential(x.detach()), g, rtol=1e-9, atol=1e-8)
    shifted = torch.roll(x.detach(), (8, 16), (-2, -1))  # a shift by whole strides permutes the patches
    torch.testing.assert_close(patch.potential(shifted), patch.potential(x.detach()), rtol=1e-12, atol=1e-9)
    # per-image noise levels, as the engine and the samplers pass them
    s_vec = patch.score(x.detach(), torch.tensor([0.05, 0.3], dtype=DT))
    torch.testing.assert_close(s_vec[1:], patch.score(x.detach()[1:], 0.3))


def test_the_lipschitz_bound_holds(patch):
    x = _images(1, side=16, seed=2)
    small = patch.at_shape((1, 16, 16))
    H = small.hessian_potential(x)[0]
    assert eigenvalues(H).max() <= small.lipschitz_bound() * (1 + 1e-9)


def test_shapes_fingerprints_and_round_trip(patch, demo_mixture):
    assert patch.has_exact_potential and patch.at_shape((1, 64, 64)).image_shape == (1, 64, 64)
    assert patch.fingerprint() != PatchPrior(demo_mixture, (1, 32, 32), 16, "epll").fingerprint()
    again = prior_from_state(patch.state())
    x = _images(1, seed=3)
    assert again.fingerprint() == patch.fingerprint() and torch.equal(again.potential(x), patch.potential(x))
    for bad in ((3, 32, 32), (1, 20, 32), (1, 8, 8)):
        with pytest.raises(ValueError, match="channel|divisible|sides"):
            PatchPrior(demo_mixture, bad, 8)
    with pytest.raises(ValueError, match="only, not"):
        demo_mixture.at_shape((1, 32, 32))  # the mixture models one size only
