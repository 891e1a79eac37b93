"""Images that ship inside installed packages, and the crops the demo priors see.

The demo runs offline: its "natural images" are the photographs bundled with
scikit-image and scikit-learn, converted to grayscale in [0, 1] and downscaled.
Any entry that is not a bundled name is read as an image file, so a user can
point the demo at their own pictures.

Crops are taken at deterministic positions (seeded), and blur is applied to the
whole photograph before cropping (``blurred_crops``): circular or zero-padded
blur of a small crop would wrap or darken its borders, create edges and raise q
enough to hide the effect P §2.3 measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the DAG-time image checks need none of it
    import torch


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load():
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


#: Photographs bundled with scikit-image and scikit-learn (no download needed).
BUNDLED_PHOTOGRAPHS: dict[str, Callable[[], np.ndarray]] = {
    **{
        n: _skimage(n)
        for n in (
            "astronaut",
            "camera",
            "coffee",
            "chelsea",
            "rocket",
            "coins",
            "moon",
            "clock",
            "brick",
            "grass",
            "gravel",
            "immunohistochemistry",
            "hubble_deep_field",
            "page",
            "text",
        )
    },
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def to_gray_unit(img: np.ndarray, what: str = "image") -> np.ndarray:
    """Any bool/integer/float image (H, W[, C]) to float64 grayscale in [0, 1].

    C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); alpha is composited
    over white, as scikit-image's ``rgba2rgb`` does. Anything else (another
    channel count, a stack of frames, an empty image, NaN or infinite pixels,
    float pixels outside [0, 1]) raises ValueError naming ``what``: such a file
    would otherwise become crops of NaN or of clipped, meaningless values.
    """
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    img = np.asarray(img)
    shape = img.shape
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"{what} has shape {shape}: expected one 2-D image, grey (H, W) or (H, W, C) with C = 1 (grey), "
            "2 (grey + alpha), 3 (RGB) or 4 (RGBA)"
        )
    if img.size == 0:
        raise ValueError(f"{what} is empty (shape {shape})")
    if img.dtype.kind not in "biuf":
        raise ValueError(f"{what} has pixels of type {img.dtype}, not numbers")
    if img.dtype.kind == "f":
        if not np.isfinite(img).all():
            raise ValueError(f"{what} has NaN or infinite pixels")
        lo, hi = float(img.min()), float(img.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{what} has floating-point pixels in [{lo:g}, {hi:g}], outside [0, 1]")
    img = img_as_float(img)
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[..., 0]
        elif channels == 2:  # grey + alpha, over white
            img = img[..., 0] * img[..., 1] + (1.0 - img[..., 1])
        else:
            img = rgb2gray(rgba2rgb(img) if channels == 4 else img)
    return np.clip(img, 0.0, 1.0)


def load_photograph(name_or_path: str, downscale: int = 1) -> np.ndarray:
    """A bundled photograph by name, or an image file by path: grayscale float64 in [0, 1].

    Raises FileNotFoundError / ValueError naming the input when it is missing,
    unreadable or not a single grey, grey + alpha, RGB or RGBA image.
    """
    if name_or_path in BUNDLED_PHOTOGRAPHS:
        img = BUNDLED_PHOTOGRAPHS[name_or_path]()
        what = f"bundled photograph {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"input image {name_or_path!r} is neither a bundled photograph "
                f"({', '.join(sorted(BUNDLED_PHOTOGRAPHS))}) nor an existing file"
            )
        import skimage.io

        try:
            img = skimage.io.imread(path)
        except Exception as err:  # noqa: BLE001 - any decoder error means unreadable
            raise ValueError(f"input image {str(path)!r} could not be read as an image: {err}") from err
        what = f"input image {str(path)!r}"
    img = to_gray_unit(img, what)
    if downscale > 1:
        from skimage.transform import rescale

        img = rescale(img, 1.0 / downscale, anti_aliasing=True, order=1)
    return img


#: The configuration keys that name photographs (bundled names or image files).
PHOTOGRAPH_KEYS = (
    ("data", "photographs", "train"),
    ("data", "photographs", "heldout"),
    ("critical_points", "unrelated"),
    ("deblur", "kohler", "photographs"),
)


def configured_photographs(config: dict) -> list[tuple[str, str]]:
    """``(config key, entry)`` of every photograph the configuration names, e.g.
    ``("data.photographs.heldout.1", "clock")``."""
    out = []
    for keys in PHOTOGRAPH_KEYS:
        node = config
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        for i, name in enumerate(node or []):
            out.append((".".join((*keys, str(i))), name))
    return out


def check_photographs(config: dict) -> list[str]:
    """Problems with the image files the configuration names, one ``key: message`` each.

    Each entry that is not a bundled photograph is read and converted exactly as
    the jobs will (:func:`load_photograph`), so a missing, corrupt or unusable
    file stops the run when the DAG is built, before any job, naming its key and
    path. Bundled photographs are not read (they ship with the installed packages).
    """
    problems = []
    for key, name in configured_photographs(config):
        if name in BUNDLED_PHOTOGRAPHS:
            continue
        try:
            load_photograph(name)
        except (OSError, ValueError) as err:
            problems.append(f"{key}: {err}")
    return problems


@dataclass(frozen=True)
class CropSpec:
    """Where a crop comes from: image name, top-left corner, size."""

    image: str
    row: int
    col: int
    size: int


def crop_positions(
    images: dict[str, np.ndarray], n: int, size: int, seed: int, margin: int = 0, min_std: float = 0.0
) -> list[CropSpec]:
    """n crop positions spread evenly over the images, at least ``margin`` px from each border,
    keeping only crops whose standard deviation is at least ``min_std`` (textured crops)."""
    rng = np.random.default_rng(seed)
    names = sorted(images)
    out: list[CropSpec] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"could not find {n} crops of size {size} with std >= {min_std} in {names}")
        name = names[len(out) % len(names)]
        img = images[name]
        H, W = img.shape
        if H - size - 2 * margin < 1 or W - size - 2 * margin < 1:
            raise ValueError(f"image {name!r} ({H}×{W}) is too small for {size}-px crops with margin {margin}")
        r = int(rng.integers(margin, H - size - margin + 1))
        c = int(rng.integers(margin, W - size - margin + 1))
        if img[r : r + size, c : c + size].std() >= min_std:
            out.append(CropSpec(name, r, c, size))
    return out


def extract_crops(images: dict[str, np.ndarray], specs: list[CropSpec]) -> torch.Tensor:
    """Crops as a float32 tensor (N, 1, s, s)."""
    import torch

    arr = np.stack([images[s.image][s.row : s.row + s.size, s.col : s.col + s.size] for s in specs])
    return torch.as_tensor(arr, dtype=torch.float32)[:, None]


def load_photographs(names: list[str], downscale: int) -> dict[str, np.ndarray]:
    return {n: load_photograph(n, downscale) for n in names}


def binary_digits(size: int = 16, threshold: float = 0.5) -> torch.Tensor:
    """scikit-learn's 1797 handwritten 8×8 digits, upscaled (bilinear) to ``size``×``size``
    and binarized at ``threshold``: the demo stand-in for the paper's binarized MNIST
    (P §2.3, Fig. 8). Returns float32 {0, 1} images (N, 1, size, size)."""
    import torch
    from sklearn.datasets import load_digits

    digits = torch.as_tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
    up = torch.nn.functional.interpolate(digits, size=(size, size), mode="bilinear", align_corners=False)
    return (up > threshold).float()


def training_images(
    source: str, data_cfg: dict, seed: int, *, images: dict | None = None, resource_root: str | Path = "resources"
) -> torch.Tensor:
    """The images a prior is trained on: crops of the training photographs, the first
    80 % of the binary digits, or (paper scale) binarized MNIST's training split at the
    size of the prior's ``images`` (32 by default; P §2.3)."""
    if source == "mnist":
        from prior_landscape.io.datasets import read_mnist_binary

        size = int(images["size"]) if images else 32
        return read_mnist_binary(resource_dir("mnist", resource_root), split="train", size=size)
    if source == "photographs":
        images = load_photographs(data_cfg["photographs"]["train"], data_cfg["downscale"])
        return extract_crops(images, crop_positions(images, data_cfg["n_train_crops"], data_cfg["crop_size"], seed))
    if source == "binary_digits":
        digits = binary_digits(data_cfg["crop_size"])
        return digits[: int(0.8 * len(digits))]
    raise ValueError(f"unknown training data source {source!r}: expected 'photographs', 'binary_digits' or 'mnist'")


def heldout_images(
    images: dict | None,
    resource_root: str | Path,
    data_cfg: dict,
    n: int,
    seed: int,
    min_std: float = 0.0,
    size: int | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """The images x̄ an experiment is evaluated on, with their ids: at paper scale ``n`` images
    of the prior's own dataset (``images``, see :func:`prior_images`); in the demo ``n``
    crops of the held-out photographs (``data_cfg``) of side ``size`` (default: the priors'
    ``crop_size``) whose std is at least ``min_std``."""
    if images:
        return prior_images(images, resource_root, n, seed)
    photos = load_photographs(data_cfg["photographs"]["heldout"], data_cfg["downscale"])
    specs = crop_positions(photos, n, size or data_cfg["crop_size"], seed, min_std=min_std)
    return extract_crops(photos, specs), [f"{c.image}@{c.row},{c.col}" for c in specs]


def unrelated_images(
    names: list[str], n: int, shape: tuple[int, int, int], seed: int
) -> tuple[torch.Tensor, list[str]]:
    """Paper scale: ``n`` "unrelated" descent starts (P Fig. 3) of a prior's shape (C, H, W) from
    bundled photographs: photograph i mod len(names), a seeded square window (half to all of
    its short side), resized anti-aliased to H×W; colour kept for C = 3 (grey replicated),
    grey for C = 1. Deterministic in ``seed``."""
    import torch

    from prior_landscape.io.datasets import resize_center_crop

    C, H, W = shape
    if H != W:
        raise ValueError(f"square images expected, got shape {shape}")
    rng = np.random.default_rng(seed)
    out, ids = [], []
    for i in range(n):
        name = names[i % len(names)]
        img = np.asarray(BUNDLED_PHOTOGRAPHS[name]() if name in BUNDLED_PHOTOGRAPHS else load_photograph(name))
        img = img[..., :3] if img.ndim == 3 else img
        side = int(min(img.shape[:2]) * rng.uniform(0.5, 1.0))
        r = int(rng.integers(0, img.shape[0] - side + 1))
        c = int(rng.integers(0, img.shape[1] - side + 1))
        crop = resize_center_crop(img[r : r + side, c : c + side], H)
        if C == 1:
            crop = to_gray_unit(crop) if crop.ndim == 3 else crop
            crop = crop[..., None]
        elif crop.ndim == 2:
            crop = np.repeat(crop[..., None], C, axis=2)
        out.append(torch.as_tensor(np.ascontiguousarray(crop), dtype=torch.float32).permute(2, 0, 1))
        ids.append(f"{name}@{r},{c}+{side}")
    return torch.stack(out), ids


def resource_dir(resource: str, resource_root: str | Path) -> Path:
    """Where the download rule of ``resource`` put it (see prior_landscape.io.downloads)."""
    from prior_landscape.io.downloads import load_catalogue, resource_location

    return resource_location(load_catalogue()[resource], resource_root)


def prior_images(
    spec: dict, resource_root: str | Path, n: int, seed: int, split: str | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Paper scale: ``n`` whole images of a prior's own dataset (a prior config's ``images``:
    resource, dataset, size, channels, split, classes), at the prior's resolution, chosen
    deterministically by ``seed`` (prior_landscape.io.datasets.read_images)."""
    from prior_landscape.io.datasets import read_images, read_mnist_binary

    if spec["dataset"] == "mnist":  # the binarized digits the digit prior was trained on (P §2.3)
        split = split or spec.get("split", "test")
        x = read_mnist_binary(
            resource_dir(spec["resource"], resource_root), split=split, size=int(spec["size"]), n=n, seed=seed
        )
        return x, [f"mnist-{split}-{i}" for i in range(len(x))]
    return read_images(
        spec["dataset"],
        resource_dir(spec["resource"], resource_root),
        n=n,
        size=int(spec["size"]),
        split=split or spec.get("split", "train"),
        channels=int(spec.get("channels", 3)),
        seed=seed,
        classes=spec.get("classes"),
    )


def class_labels(pooled: tuple[int, ...] | None, spec: dict | None, ids, n_other: int = 0) -> np.ndarray | None:
    """Each image's class label for a prior that pools the classes ``pooled`` (P's imagenet64 pools
    the first ten ImageNet classes; priors/base.py): the classes of the images ``ids`` of its dataset
    (``spec``, a prior config's ``images``: imagenet-first10, whose folders are its classes), then
    ``n_other`` images of no class (unrelated photographs, noise) taking the pooled labels in turn.
    None for any other prior (``pooled`` None)."""
    if pooled is None:
        return None
    from prior_landscape.io.datasets import imagenet_labels

    ids = list(ids)
    if ids and (not spec or spec.get("dataset") != "imagenet-first10"):
        raise ValueError(
            f"a prior pooling classes {list(pooled)} needs images whose class is known: its images' dataset must be "
            f"imagenet-first10 (the class folders give the labels), not {spec and spec.get('dataset')!r}"
        )
    labels = np.asarray(imagenet_labels(ids) if ids else [], dtype=np.int64)
    outside = sorted({int(c) for c in labels} - set(pooled))
    if outside:
        raise ValueError(f"images of classes {outside} for a prior pooling classes {list(pooled)}: {list(ids)[:5]}")
    return np.concatenate([labels, np.resize(np.asarray(pooled, dtype=np.int64), n_other)])


#: at most this many images of a released prior's dataset give its data statistics (the terminal
#: density, prior_landscape.priors.terminal): per-pixel variances to ≈ √(2/1000) ≈ 4.5 %
STATISTICS_IMAGES = 1000


def statistics_images(spec: dict, resource_root: str | Path, seed: int = 0) -> torch.Tensor:
    """Paper scale: the images of a prior's own dataset (its ``images``) whose per-pixel mean and
    variance are stored with an imported prior: all of them, or :data:`STATISTICS_IMAGES` chosen by
    ``seed`` when there are more."""
    from prior_landscape.io.datasets import list_images

    if spec["dataset"] == "mnist":
        return prior_images(spec, resource_root, STATISTICS_IMAGES, seed)[0]
    root = resource_dir(spec["resource"], resource_root)
    _, ids = list_images(spec["dataset"], root, split=spec.get("split", "train"), classes=spec.get("classes"))
    return prior_images(spec, resource_root, min(STATISTICS_IMAGES, len(ids)), seed)[0]


def heldout_digits(n: int, size: int) -> torch.Tensor:
    """The first n of the held-out 20 % of the binary digits."""
    digits = binary_digits(size)
    held = digits[int(0.8 * len(digits)) :]
    if n > len(held):
        raise ValueError(f"only {len(held)} held-out digits, {n} requested")
    return held[:n]
