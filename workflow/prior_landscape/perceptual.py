"""Perceptual metrics of the paper-scale benchmark: LPIPS (AlexNet and VGG-16, labelled) and FID.

Both need network weights that the download rules fetch (``workflow/prior_landscape/io/resources.yaml``:
``lpips-alexnet``, ``lpips-vgg16``, ``fid-inception``); nothing here downloads anything, and a missing,
damaged or wrong file is an error naming it.

LPIPS (Zhang et al. 2018, v0.1) is torchmetrics' implementation (its ``_LPIPS`` module and the
linear layers it ships, the LPIPS authors' v0.1 weights); only the ImageNet backbone, which
torchmetrics would fetch through torchvision on first use, is read from the downloaded torchvision
file instead. FID (Heusel et al. 2017) uses the TF-Inception-v3 port of torch-fidelity (the 2048-d
pool features of the network every FID in the seeds' tables was computed with) and the Fréchet
distance written here from its definition (scipy's ``sqrtm``), which tests/test_perceptual.py checks
against torchmetrics' eigenvalue formula and a closed form.

Images are float tensors in [0, 1]; grey images are replicated on three channels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from prior_landscape.io.archive import sha256_file

__all__ = ["LPIPS", "InceptionFeatures", "frechet_distance", "frechet_distance_from_moments", "check_hash_prefix"]

#: LPIPS backbone → (torchvision constructor, catalogue id of its weights)
LPIPS_BACKBONES = {"alex": ("alexnet", "lpips-alexnet"), "vgg": ("vgg16", "lpips-vgg16")}


def check_hash_prefix(path: str | Path) -> None:
    """torchvision's and torch-fidelity's convention: ``name-<first hex digits of the sha256>.pth``.
    A file whose content does not match the prefix its name records is refused, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file (run its download rule: `snakemake downloads`)")
    m = re.search(r"-([0-9a-f]{8,64})\.pth$", path.name)
    if m is None:
        return
    digest = sha256_file(path)
    if not digest.startswith(m.group(1)):
        raise ValueError(
            f"{path}: its sha256 {digest[:16]}… does not start with {m.group(1)}, the prefix its name records "
            "(a damaged or different file; delete it and rerun the download rule)"
        )


def _load_state(path: Path, where: str) -> dict:
    check_hash_prefix(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, a pickle with code
        raise ValueError(f"{path}: not a readable {where} weights file ({type(err).__name__}: {err})") from err
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict of tensors ({where})")
    return sd


class LPIPS:
    """LPIPS distance per image pair, with backbone ``net`` ("alex" or "vgg") read from ``weights``."""

    def __init__(self, net: str, weights: str | Path, device: str | torch.device = "cpu"):
        import torchvision
        from torchmetrics.functional.image.lpips import _LPIPS

        if net not in LPIPS_BACKBONES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
        weights = Path(weights)
        sd = _load_state(weights, f"torchvision {LPIPS_BACKBONES[net][0]}")
        tv = getattr(torchvision.models, LPIPS_BACKBONES[net][0])()
        try:
            tv.load_state_dict(sd)
        except RuntimeError as err:
            raise ValueError(f"{weights}: not {LPIPS_BACKBONES[net][0]} weights ({str(err)[:300]})") from err
        # the linear layers: torchmetrics' packaged v0.1 weights; the backbone: random, replaced below
        self.model = _LPIPS(pretrained=True, net=net, pnet_rand=True)
        for name, piece in self.model.net.named_children():
            if name.startswith("slice"):
                for idx, module in piece.named_children():
                    module.load_state_dict(tv.features[int(idx)].state_dict())
        self.model.eval().requires_grad_(False).to(device)
        self.net, self.weights, self.device = net, weights, device

    def __call__(self, x_hat: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        """LPIPS(x̂_i, x_i) for each pair of a batch (B, C, H, W) in [0, 1] (clipped), float64."""
        a, b = (_rgb(t).to(self.device) for t in (x_hat, x))
        with torch.no_grad():
            d = self.model(a, b, normalize=True)
        return d.reshape(len(a)).double().cpu().numpy()


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1 or 3, H, W), got {tuple(x.shape)}")
    x = x.float().clamp(0, 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures:
    """The 2048-d pool features of FID's TF-Inception-v3 (torch-fidelity's port) from ``weights``."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 64):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        weights = Path(weights)
        _load_state(weights, "FID Inception-v3")  # checked (prefix, readability) before torch-fidelity reads it
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
            )
        except RuntimeError as err:
            raise ValueError(f"{weights}: not FID Inception-v3 weights ({str(err)[:300]})") from err
        self.net.eval().requires_grad_(False).to(device)
        self.device, self.batch_size = device, int(batch_size)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """(N, 2048) float64 features of images (N, C, H, W) in [0, 1], quantised to 8 bits as FID's reference does."""
        out = []
        for start in range(0, len(images), self.batch_size):
            x = (_rgb(images[start : start + self.batch_size]) * 255).round().to(torch.uint8).to(self.device)
            with torch.no_grad():
                (f,) = self.net(x)
            out.append(f.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}), the square root by scipy's ``sqrtm`` (its tiny imaginary
    part from rounding dropped; a large one is an error)."""
    from scipy.linalg import sqrtm

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"moments of different dimensions: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    root = sqrtm(s1 @ s2)
    if not np.isfinite(root).all():  # a singular product: regularise as the reference implementation does
        eps = 1e-6 * np.eye(len(s1))
        root = sqrtm((s1 + eps) @ (s2 + eps))
    if np.iscomplexobj(root):
        if np.abs(root.imag).max() > 1e-3 * max(1.0, np.abs(root.real).max()):
            raise FloatingPointError(f"sqrtm(Σ₁Σ₂) has a large imaginary part ({np.abs(root.imag).max():.3g})")
        root = root.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two sets of features (N₁, D) and (N₂, D) (sample means, unbiased covariances)."""
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"need two sets of ≥ 2 feature vectors of one dimension, got {f1.shape} and {f2.shape}")
    return frechet_distance_from_moments(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
