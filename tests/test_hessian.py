"""The Hessian of q by batched JVPs (P §2.2, Fig. 4): exact on the analytic prior, equal to P's loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prior_landscape.landscape.hessian import (
    eigenvalues,
    hessian_loop,
    hessian_of_potential,
    intrinsic_dimension,
    spectrum,
)


def _close(A: torch.Tensor, B: torch.Tensor, rtol: float = 1e-10) -> None:
    """Entrywise agreement relative to the matrix's scale."""
    scale = float(B.abs().max())
    torch.testing.assert_close(A, B, rtol=0, atol=rtol * scale)


def test_hessian_equals_the_exact_one_on_the_small_mixture(small_mixture):
    pr = small_mixture
    x = pr.sample(4, sigma=0.05, generator=torch.Generator().manual_seed(1))
    points = [x[i : i + 1] for i in range(4)] + [pr.means[2].reshape(1, *pr.image_shape)]
    # between two components, where responsibilities mix and the Hessian is indefinite-ish
    points.append((0.5 * (pr.means[0] + pr.means[1])).reshape(1, *pr.image_shape))
    for p in points:
        assert p.dtype == torch.float64
        H = hessian_of_potential(pr, p)
        assert H.shape == (12, 12) and H.dtype == torch.float64
        _close(H, pr.hessian_potential(p)[0])


def test_hessian_on_the_demo_mixture_is_exact_and_counts_the_component_rank(demo_mixture):
    pr = demo_mixture
    c = pr.floor + pr.sigma_eps**2
    rank = pr.bases.shape[2]
    k = int(torch.argmax(pr.weights))
    # every direction of the heaviest component is resolved: s_j > c, so 1/(s_j + c) < 1/(2c)
    assert int((pr.spectra[k] > c).sum()) == rank
    mean = pr.means[k].reshape(1, *pr.image_shape)
    H = hessian_of_potential(pr, mean)
    assert H.shape == (256, 256)
    _close(H, pr.hessian_potential(mean)[0])
    sv = spectrum(H)
    assert intrinsic_dimension(sv, threshold=0.5 / c) == rank
    assert intrinsic_dimension(sv, threshold=0.5, relative=True) == rank
    # the d − r others are 1/c (P: large curvature off the manifold)
    np.testing.assert_allclose(sv[: 256 - rank], 1 / c, rtol=1e-4)
    # exact away from the means too (a sample of the prior)
    x = pr.sample(1, generator=torch.Generator().manual_seed(0))
    _close(hessian_of_potential(pr, x, chunk_size=100), pr.hessian_potential(x)[0])


def test_batched_equals_the_loop_and_does_not_depend_on_chunk_size(small_mixture):
    pr = small_mixture
    x = pr.sample(1, generator=torch.Generator().manual_seed(3))
    ref = hessian_of_potential(pr, x)
    for chunk in (1, 5, 12, 1000):
        _close(hessian_of_potential(pr, x, chunk_size=chunk), ref, rtol=1e-13)
        _close(hessian_of_potential(pr, x, chunk_size=chunk, mode="vjp"), ref, rtol=1e-12)
    _close(hessian_loop(pr, x), ref, rtol=1e-12)
    _close(hessian_loop(pr, x, method="vjp"), ref, rtol=1e-12)
    block = hessian_loop(pr, x, columns=5)
    assert block.shape == (5, 12)
    _close(block, ref[:5], rtol=1e-12)
    with pytest.raises(ValueError, match="method"):
        hessian_loop(pr, x, method="fd")
    with pytest.raises(ValueError, match="mode"):
        hessian_of_potential(pr, x, mode="fd")
    with pytest.raises(ValueError, match="one image"):
        hessian_of_potential(pr, pr.sample(2))


def test_batched_equals_the_loop_on_a_score_network():
    """Forward-mode AD through the score UNet (GroupNorm, SiLU, pooling, upsampling) in float64."""
    scorenet = pytest.importorskip("prior_landscape.priors.scorenet")
    from prior_landscape.priors.schedules import VESchedule

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = scorenet.ScoreUNet(
            in_channels=1,
            base_channels=8,
            channel_mult=(1, 2),
            num_res_blocks=1,
            emb_features=8,
            emb_channels=16,
            groups=4,
        )
        with torch.no_grad():  # the last convolution starts at zero: give the network a correction to differentiate
            net.conv_out.weight.normal_(0, 0.1)
        x = 0.5 + 0.2 * torch.randn(1, 1, 8, 8, dtype=torch.float64)
    prior = scorenet.ScoreNetworkPrior(net, VESchedule(0.01, 20.0, 1e-3), (1, 8, 8)).to(torch.float64)
    J = torch.func.jacrev(lambda v: prior.grad_potential(v.reshape(1, 1, 8, 8)).reshape(-1))(x.reshape(-1))
    raw = hessian_of_potential(prior, x, chunk_size=24, symmetrize=False)
    _close(raw, J, rtol=1e-12)
    _close(hessian_of_potential(prior, x, chunk_size=40, symmetrize=False, mode="vjp"), J, rtol=1e-12)
    H = hessian_of_potential(prior, x)
    _close(H, 0.5 * (J + J.T), rtol=1e-12)
    _close(hessian_loop(prior, x), H, rtol=1e-12)
    _close(hessian_loop(prior, x, method="vjp"), H, rtol=1e-12)
    # in float32 the products are float32 but the result is float64
    H32 = hessian_of_potential(prior.to(torch.float32), x.float())
    assert H32.dtype == torch.float64
    _close(H32, H, rtol=1e-4)


def test_spectrum_and_intrinsic_dimension():
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
    lam = torch.tensor([-2.0, 1e-7, 3e-6, 0.5, 4.0, 10.0], dtype=torch.float64)
    H = Q @ torch.diag(lam) @ Q.T
    sv = spectrum(H)
    assert sv.dtype == np.float64
    np.testing.assert_allclose(sv, np.sort(np.abs(lam.numpy()))[::-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(eigenvalues(H), lam.numpy(), rtol=1e-9, atol=1e-12)
    assert intrinsic_dimension(sv) == 2  # P's absolute 1e-5
    assert intrinsic_dimension(sv, threshold=1e-3) == 2
    assert intrinsic_dimension(sv, threshold=0.1, relative=True) == 3  # below 1.0
    assert intrinsic_dimension(sv, threshold=0.1) == 2
    with pytest.raises(ValueError):
        intrinsic_dimension(sv, threshold=0)
    with pytest.raises(ValueError):
        intrinsic_dimension([np.nan, 1.0])
    with pytest.raises(ValueError, match="square"):
        spectrum(torch.zeros(3, 4))
