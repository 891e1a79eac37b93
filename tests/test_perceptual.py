"""LPIPS and FID (prior_landscape.perceptual) against independent implementations, on weights the tests
make (the real ones cannot be downloaded here; the code that reads them is the same), and their
weight files damaged in the ways a download can damage them."""

import hashlib
from unittest import mock

import numpy as np
import pytest
import torch
import torchvision

from prior_landscape.perceptual import LPIPS, InceptionFeatures, frechet_distance, frechet_distance_from_moments


def _named(tmp_path, stem: str, state: dict):
    """Save a state dict as ``stem-<sha256 prefix>.pth``, torchvision's naming."""
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = tmp_path / f"{stem}-{digest[:8]}.pth"
    raw.rename(path)
    return path


@pytest.fixture(scope="module")
def alex_weights(tmp_path_factory):
    torch.manual_seed(0)
    return _named(tmp_path_factory.mktemp("alex"), "alexnet-owt", torchvision.models.alexnet().state_dict())


def _lpips_by_hand(x_hat, x, state, lins):
    """LPIPS v0.1 from its definition (Zhang et al. 2018, eq. 1): AlexNet relu1–relu5 features of the
    scaled inputs, unit-normalised over channels, squared differences weighted by the linear layers,
    averaged over space and summed over layers."""
    net = torchvision.models.alexnet()
    net.load_state_dict(state)
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]
    taps = (1, 4, 7, 9, 11)  # the ReLUs after conv1 … conv5

    def feats(img):
        h, out = ((2 * img - 1) - shift) / scale, []
        for i, layer in enumerate(net.features[: taps[-1] + 1]):
            h = layer(h)
            if i in taps:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        fa, fb = feats(x_hat), feats(x)
        total = 0
        for a, b, w in zip(fa, fb, lins):
            total = total + ((a - b) ** 2 * w[None, :, None, None]).sum(1).mean((1, 2))
    return total.double().numpy()


def test_lpips_equals_its_definition_and_is_a_distance(alex_weights):
    metric = LPIPS("alex", alex_weights)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 64, generator=g)
    x_hat = (x + 0.1 * torch.randn(3, 3, 64, 64, generator=g)).clamp(0, 1)
    lins = [getattr(metric.model, f"lin{i}").model[-1].weight.reshape(-1) for i in range(5)]
    state = torch.load(alex_weights, weights_only=True)
    assert np.allclose(metric(x_hat, x), _lpips_by_hand(x_hat, x, state, lins), rtol=1e-4, atol=1e-7)
    assert np.allclose(metric(x, x), 0, atol=1e-7)
    assert np.allclose(metric(x_hat, x), metric(x, x_hat), rtol=1e-5)
    # grey images are the colour image with three equal channels
    grey = x[:, :1]
    assert np.allclose(
        metric(grey, grey.flip(-1)), metric(grey.expand(-1, 3, -1, -1), grey.flip(-1).expand(-1, 3, -1, -1))
    )


def test_damaged_lpips_weights_are_refused_naming_the_file(alex_weights, tmp_path):
    truncated = tmp_path / alex_weights.name
    truncated.write_bytes(alex_weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf"{truncated.name}.*does not start with"):
        LPIPS("alex", truncated)  # the name's sha256 prefix no longer matches
    unnamed = tmp_path / "alexnet.pth"  # no prefix to check: torch's reader refuses it
    unnamed.write_bytes(alex_weights.read_bytes()[:5000])
    with pytest.raises(ValueError, match="alexnet.pth: not a readable"):
        LPIPS("alex", unnamed)
    vgg_as_alex = _named(tmp_path, "vgg16", torchvision.models.vgg16().state_dict())
    with pytest.raises(ValueError, match="not alexnet weights"):
        LPIPS("alex", vgg_as_alex)
    with pytest.raises(FileNotFoundError, match="download rule"):
        LPIPS("alex", tmp_path / "absent-12345678.pth")
    with pytest.raises(ValueError, match="backbone must be one of"):
        LPIPS("squeeze", alex_weights)


def test_frechet_distance_matches_a_closed_form_and_torchmetrics():
    from torchmetrics.image.fid import _compute_fid

    # commuting (diagonal) covariances: FID = ‖Δμ‖² + Σ (√a − √b)²
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    exact = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance_from_moments(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(exact, rel=1e-12)
    # general covariances: torchmetrics' eigenvalue formula, an independent route to tr((Σ₁Σ₂)^{1/2})
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(500, 16)), rng.normal(0.3, 1.5, size=(400, 16)) @ rng.normal(size=(16, 16))
    ours = frechet_distance(f1, f2)
    t = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    ref = _compute_fid(t(f1.mean(0)), t(np.cov(f1, rowvar=False)), t(f2.mean(0)), t(np.cov(f2, rowvar=False)))
    assert ours == pytest.approx(float(ref), rel=1e-8)
    assert frechet_distance(f1, f1) == pytest.approx(0, abs=1e-8)
    with pytest.raises(ValueError, match="two sets"):
        frechet_distance(f1, f2[:, :8])


def test_inception_features_read_the_downloaded_weights(tmp_path):
    """torch-fidelity's TF-Inception port fed from a weights file (made here with random weights): 2048-d
    features, the same for an image and its 8-bit quantisation, and damaged files refused."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with (
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
        mock.patch.object(fe.torch, "load", lambda *a, **k: {}),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    path = _named(tmp_path, "weights-inception-2015-12-05", net.state_dict())
    feats = InceptionFeatures(path, batch_size=2)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    f = feats(x)
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    assert np.allclose(feats((x * 255).round() / 255), f)  # FID sees 8-bit images
    damaged = tmp_path / path.name.replace(path.stem[-8:], "00000000")
    damaged.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="does not start with 00000000"):
        InceptionFeatures(damaged)


def test_perceptual_scores_per_case_and_per_seed(alex_weights):
    """The benchmark's paper-scale scores: LPIPS 0 for a perfect (shifted) estimate, FID per seed equal to
    the Fréchet distance of the two feature sets, NaN (with its count) below the configured minimum."""
    import pandas as pd

    from prior_landscape.methods.benchmark import perceptual_scores

    g = torch.Generator().manual_seed(0)
    n, s, k = 4, 64, 5
    x = torch.rand(n, 3, s, s, generator=g, dtype=torch.float64)
    h = torch.zeros(n, k, k, dtype=torch.float64)
    h[:, k // 2, k // 2] = 1
    testset = pd.DataFrame({"case": [f"c{i}" for i in range(n)], "image": [f"i{i}" for i in range(n)],
                            "sharp": list(x.flatten(1).numpy()), "kernel": list(h.flatten(1).numpy()),
                            "blurry": list(x.flatten(1).numpy()), "channels": 3, "height": s, "width": s,
                            "kernel_size": k, "sigma_y": 0.0})  # fmt: skip
    good = torch.roll(x, (1, -2), (-2, -1))  # right up to a shift inside the kernel's half-size
    bad = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    flat = list(good.flatten(1).float().numpy()) + list(bad.flatten(1).float().numpy())
    est = pd.DataFrame({"case": list(testset.case) * 2, "method": "m", "seed": [0] * n + [1] * n, "estimate": flat})

    class Features:  # a stand-in feature map (the Inception network is tested above)
        def __call__(self, images):
            return images.flatten(1)[:, :8].double().numpy()

    from prior_landscape.perceptual import frechet_distance

    scores = perceptual_scores(testset, est, {"alex": LPIPS("alex", alex_weights)}, Features(), min_images=3)
    assert np.allclose(scores[scores.seed == 0].lpips_alex, 0, atol=1e-6)
    assert (scores[scores.seed == 1].lpips_alex > 1e-3).all()
    fid1 = frechet_distance(bad.flatten(1)[:, :8].numpy(), x.flatten(1)[:, :8].numpy())
    assert np.allclose(scores[scores.seed == 1].fid, fid1) and (scores.fid_images == n).all()
    few = perceptual_scores(testset, est, {}, Features(), min_images=n + 1)
    assert few.fid.isna().all() and (few.fid_images == n).all() and "lpips_alex" not in few
