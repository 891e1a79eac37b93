"""Deterministic readers of the paper-scale datasets, from where the downloads put them.

Every reader takes the *resource root* (the ``root`` given to
:func:`prior_landscape.io.downloads.ensure_resource` / ``python -m prior_landscape.io.downloads
ID --root ROOT``) and finds its dataset at ``resource_location(entry, root)`` of the
catalogue entry (``resources.yaml``); the dataset folder itself (what ``ensure_resource``
returns, a path ending in that location) is accepted as well (:func:`dataset_folder`). A
missing folder is a :class:`FileNotFoundError` naming the expected path and the resource
to obtain.

Images come back as in :mod:`.data`: float32 tensors in [0, 1], shape [N, C, H, W]
(C = 3 RGB, or C = 1 grey: PIL's ITU-R 601-2 luma), with their ids (file paths relative
to the dataset folder).

Selection is reproducible: the dataset's files are listed and sorted (by their relative
POSIX path), then ``numpy.random.default_rng(seed).choice(len, n, replace=False)``
picks n of them, taken in sorted order (:func:`select_indices`). The same (root, args)
gives the same images; asking for more than there are is a :class:`ValueError`.

Layouts (below the resource root):

``ffhq``
    ``datasets/ffhq/images1024x1024/{00000..69000}/*.png`` (ids ``"00000/00000.png"``).
    Split ``"train"``: all 70 000 images (the training set of the FFHQ priors, from
    which P draws training-set starts); ``"val"``: the first :data:`FFHQ_VAL_COUNT` =
    1000 in sorted order, i.e. ``00000.png`` … ``00999.png``, the FFHQ 1k validation
    subset of DPS / BlindDPS (bench-ffhq). The two overlap: "train" is the full set.
``afhqv2``
    ``datasets/afhqv2/afhq_v2/{train,test}/{cat,dog,wild}/*.png`` (ids
    ``"train/dog/flickr_dog_000002.png"``); a further top folder inside the zip is
    tolerated. ``classes`` picks class folders (bench-afhq: ``split="test"``,
    ``classes=["dog"]``).
``imagenet-first10``
    ``datasets/imagenet/train/<wnid>/*.JPEG`` (ids ``"n01440764/n01440764_10026.JPEG"``).
    The class is the id's folder; :func:`imagenet_labels` maps ids to the class index
    0 … 9 = position of the wnid in the sorted ImageNet-1k wnids (:data:`IMAGENET_FIRST10`),
    which is the label of EDM's class-conditional imagenet64 model. One split, "train".
``bsd100``
    ``datasets/bsd100/BSD100_HR/``: the Hugging Face archive ``BSD100_HR.tar.gz`` holds a
    folder ``BSD100_HR/`` of 100 PNGs (``3096.png`` …), so the files lie in
    ``BSD100_HR/BSD100_HR/``; every image found below the unpacked folder is taken
    (recursively, sorted). One split: ``split="test"`` (BSD100 is the BSDS300 test set).
``bsds500``
    ``datasets/bsds500/BSDS500/BSDS500-master/BSDS500/data/images/{train,val,test}/*.jpg``
    (the GitHub archive; ids ``"test/100007.jpg"``; the folders' ``Thumbs.db`` are skipped).
``mnist``
    ``datasets/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (torchvision's
    layout), read here as idx files (:func:`read_mnist`); ids ``"train/00042"`` (the index
    in the file). Splits "train" (60 000) and "test" (10 000).
``kohler2012``
    ``datasets/kohler2012/BlurryImages/Blurry{i}_{t}.png`` and
    ``datasets/kohler2012/GroundTruth_pngs_Image{i}/Image{i}/Kernel{t}/GroundTruth{i}_{t}_{f}.png``
    (each archive unpacked into its own folder; the archive member names are those deepinv
    0.5.0's ``Kohler`` reads from one folder, which is also accepted), optional kernels in
    ``datasets/kohler2012/kernels/`` (:func:`read_kohler`).
``realblur-j``
    ``datasets/realblur/RealBlur_J_test_list.txt`` with lines ``"<sharp path> <blurred path>"``
    relative to ``datasets/realblur/`` (``RealBlur-J_ECC_IMCORR_centroid_itensity_ref/
    scene230/gt/gt_7.png …/blur/blur_7.png``) (:func:`read_realblur_pairs`).

Resizing (:func:`resize_center_crop`) follows EDM's ``dataset_tool.py``, which made the
training sets of the EDM priors: a centre square crop, then PIL's Lanczos resize (its
default / ``center-crop`` transform, used for FFHQ and AFHQv2); for ImageNet the ADM
("dhariwal") transform: halving with a box filter while the short side is at least twice the
target, bicubic resize of the short side to the target, centre crop.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from prior_landscape.io.downloads import load_catalogue, resource_location

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "SPLITS",
    "IMAGENET_FIRST10",
    "AFHQ_CLASSES",
    "FFHQ_VAL_COUNT",
    "dataset_folder",
    "list_images",
    "select_indices",
    "resize_center_crop",
    "read_images",
    "read_full_images",
    "imagenet_labels",
    "read_mnist",
    "read_mnist_binary",
    "random_crops",
    "read_kohler",
    "read_realblur_pairs",
]

#: dataset name of :func:`read_images` -> catalogue id of the resource holding it.
DATASETS: dict[str, str] = {
    "ffhq": "ffhq",
    "afhqv2": "afhqv2",
    "imagenet-first10": "imagenet-first10",
    "bsd100": "bsd100",
    "bsds500": "bsds500",
    "mnist": "mnist",
}
#: the splits each dataset offers.
SPLITS: dict[str, tuple[str, ...]] = {
    "ffhq": ("train", "val"),
    "afhqv2": ("train", "test"),
    "imagenet-first10": ("train",),
    "bsd100": ("test",),
    "bsds500": ("train", "val", "test"),
    "mnist": ("train", "test"),
}
#: the first ten ImageNet-1k classes in sorted wnid order (class indices 0 … 9).
IMAGENET_FIRST10: tuple[str, ...] = (
    "n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
    "n01496331", "n01498041", "n01514668", "n01514859", "n01518878",
)  # fmt: skip
AFHQ_CLASSES: tuple[str, ...] = ("cat", "dog", "wild")
#: size of the FFHQ "val" split: the first images in sorted order (DPS / BlindDPS FFHQ 1k).
FFHQ_VAL_COUNT = 1000
KOHLER_IMAGES = range(1, 5)
KOHLER_TRAJECTORIES = range(1, 13)
REALBLUR_TEST_LIST = "RealBlur_J_test_list.txt"

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ----------------------------------------------------------------------------- locations


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, dict]:
    return load_catalogue()


def _obtain_hint(rid: str, resource_root: Path) -> str:
    return (
        f"obtain the resource {rid!r} first: `python -m prior_landscape.io.downloads {rid} --root {resource_root}` "
        f"or the workflow's rule download_{rid.replace('-', '_')} (see workflow/prior_landscape/io/resources.yaml)"
    )


def _missing(rid: str, path: Path, resource_root: Path, what: str = "the dataset") -> FileNotFoundError:
    return FileNotFoundError(
        f"{rid}: expected {what} at {path}, which does not exist; {_obtain_hint(rid, resource_root)}"
    )


def _resolve(rid: str, root: str | Path) -> tuple[Path, Path]:
    """(dataset folder, resource root) of resource ``rid``. ``root`` is the resource root, or the
    dataset folder itself (what ``ensure_resource`` returned: a path ending in the entry's location)."""
    root = Path(root)
    relative = resource_location(_catalogue()[rid], Path())
    path = root / relative
    n = len(relative.parts)
    if not path.is_dir() and len(root.parts) >= n and root.parts[-n:] == relative.parts:
        path, root = root, Path(*root.parts[:-n]) if len(root.parts) > n else Path(".")
    if not path.is_dir():
        raise _missing(rid, path, root)
    return path, root


def dataset_folder(rid: str, root: str | Path) -> Path:
    """Where ``ensure_resource`` put the catalogue entry ``rid``: ``resource_location(entry, root)`` for
    the resource root ``root``, or ``root`` itself when it already is that folder. Must exist."""
    return _resolve(rid, root)[0]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _images_below(folder: Path) -> list[str]:
    """Image files below ``folder`` (recursively), as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if _is_image(p))


def _check_split(dataset: str, split: str) -> None:
    if split not in SPLITS[dataset]:
        raise ValueError(f"{dataset}: unknown split {split!r}; it has {', '.join(map(repr, SPLITS[dataset]))}")


def _find_dir(base: Path, relative: str, accept=lambda p: True) -> Path | None:
    """``base/relative`` if it is a folder, else the shallowest ``base/*/…/relative`` accepted (an
    archive's extra top folder), else None."""
    direct = base / relative
    if direct.is_dir():
        return direct
    found = sorted((p for p in base.rglob(relative) if p.is_dir() and accept(p)), key=lambda p: (len(p.parts), p))
    return found[0] if found else None


def _class_images(rid: str, folder: Path, classes: list[str], root, prefix: str, what: str) -> list[str]:
    """Sorted ids ``<prefix><class>/<file>`` of the images in ``folder``'s class subfolders."""
    ids = []
    for c in classes:
        if not (folder / c).is_dir():
            raise _missing(rid, folder / c, root, f"{what} {c!r}")
        ids += [f"{prefix}{c}/{i}" for i in _images_below(folder / c)]
    return sorted(ids)


def list_images(
    dataset: str, root: str | Path, *, split: str = "train", classes: Sequence[str] | None = None
) -> tuple[Path, list[str]]:
    """(folder, ids): the dataset's images of ``split`` as sorted paths relative to ``folder``
    (for MNIST, ids ``"<split>/<index>"``). See the module docstring for the layouts."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    _check_split(dataset, split)
    rid = DATASETS[dataset]
    loc, root = _resolve(rid, root)
    if classes is not None and dataset not in ("afhqv2", "imagenet-first10"):
        raise ValueError(f"{dataset}: `classes` only applies to afhqv2 and imagenet-first10")

    if dataset == "ffhq":
        ids = _images_below(loc)
        return loc, ids[:FFHQ_VAL_COUNT] if split == "val" else ids
    if dataset == "afhqv2":
        classes = list(AFHQ_CLASSES if classes is None else classes)
        split_dir = _find_dir(loc, split, lambda p: any((p / c).is_dir() for c in AFHQ_CLASSES))
        if split_dir is None:
            raise _missing(rid, loc / split, root, f"the {split} folder of AFHQv2 ({'/'.join(AFHQ_CLASSES)} inside)")
        return split_dir.parent, _class_images(rid, split_dir, classes, root, f"{split}/", "the AFHQv2 class folder")
    if dataset == "imagenet-first10":
        classes = list(IMAGENET_FIRST10 if classes is None else classes)
        unknown = [c for c in classes if c not in IMAGENET_FIRST10]
        if unknown:
            raise ValueError(
                f"imagenet-first10: classes {unknown} are not among the first ten wnids {IMAGENET_FIRST10}"
            )
        return loc, _class_images(rid, loc, classes, root, "", "the ImageNet class folder")
    if dataset == "bsd100":
        return loc, _images_below(loc)
    if dataset == "bsds500":
        images = _find_dir(loc, "BSDS500-master/BSDS500/data/images") or _find_dir(loc, "data/images")
        if images is None or not (images / split).is_dir():
            where = (images or loc / "BSDS500-master/BSDS500/data/images") / split
            raise _missing(rid, where, root, f"the BSDS500 {split} images")
        return images, [f"{split}/{i}" for i in _images_below(images / split)]
    # mnist
    count = len(read_mnist(root, split=split)[1])
    return loc, [f"{split}/{i:05d}" for i in range(count)]


def select_indices(total: int, n: int, seed: int) -> np.ndarray:
    """n distinct indices of ``range(total)``, sorted: ``default_rng(seed).choice(total, n, replace=False)``."""
    if n < 0:
        raise ValueError(f"cannot select a negative number of items ({n})")
    if n > total:
        raise ValueError(f"cannot select {n} of {total} items")
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False)).astype(np.int64)


def _select(dataset: str, folder: Path, ids: list[str], n: int, seed: int, split: str) -> list[str]:
    if n > len(ids):
        raise ValueError(f"{dataset}: {n} images requested but only {len(ids)} found in {folder} (split {split!r})")
    return [ids[i] for i in select_indices(len(ids), n, seed)]


# ----------------------------------------------------------------------------- image files and resizing


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {channels}")


def _load_image(path: Path, channels: int) -> np.ndarray:
    """An image file as uint8 (8-bit files) or float64 in [0, 1] (16-bit grey), (H, W) or (H, W, 3)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64) / 65535.0
                return np.repeat(arr[..., None], 3, axis=2) if channels == 3 else arr
            return np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder error means unreadable
        raise ValueError(f"{path} could not be read as an image: {err}") from err


def _to_unit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def _pil_resize(arr: np.ndarray, width: int, height: int, resample: int) -> np.ndarray:
    """PIL resize of a uint8 (L / RGB) or float (per channel, mode F) array; same dtype family back."""
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] == 3):
        return np.asarray(Image.fromarray(arr).resize((width, height), resample))
    if arr.ndim == 3:
        return np.stack([_pil_resize(arr[..., c], width, height, resample) for c in range(arr.shape[2])], axis=2)
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(arr).resize((width, height), resample))
    return np.asarray(Image.fromarray(_to_unit(arr), mode="F").resize((width, height), resample))


def resize_center_crop(img: np.ndarray, size: int, *, method: str = "lanczos") -> np.ndarray:
    """A centre square crop resized to ``size``×``size``: float32 in [0, 1], (size, size[, C]).

    ``img``: (H, W) or (H, W, C), uint8 / uint16 / bool, or float in [0, 1]. uint8 grey or RGB
    is resized as an 8-bit PIL image (as EDM's dataset_tool does), anything else per channel
    in PIL's float mode. ``method``:

    * ``"lanczos"`` — crop the centre square (side min(H, W)), then PIL Lanczos (anti-aliased:
      the filter is widened by the reduction factor). EDM's ``center-crop`` transform (FFHQ, AFHQv2).
    * ``"dhariwal"`` — halve with a box filter while the short side is ≥ 2·size, bicubic resize
      of the short side to ``size``, centre crop. EDM's ``center-crop-dhariwal`` (ImageNet).

    Deterministic; an image already ``size``×``size`` comes back unchanged (as float).
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 1:
        raise ValueError(f"expected an image (H, W) or (H, W, C), got shape {arr.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if method == "lanczos":
        H, W = arr.shape[:2]
        s = min(H, W)
        top, left = (H - s) // 2, (W - s) // 2
        arr = arr[top : top + s, left : left + s]
        if s != size:
            arr = _pil_resize(arr, size, size, Image.LANCZOS)
    elif method == "dhariwal":
        while min(arr.shape[:2]) >= 2 * size:
            arr = _pil_resize(arr, arr.shape[1] // 2, arr.shape[0] // 2, Image.BOX)
        H, W = arr.shape[:2]
        scale = size / min(H, W)
        h, w = max(size, round(H * scale)), max(size, round(W * scale))
        if (h, w) != (H, W):
            arr = _pil_resize(arr, w, h, Image.BICUBIC)
        top, left = (h - size) // 2, (w - size) // 2
        arr = arr[top : top + size, left : left + size]
    else:
        raise ValueError(f"unknown resize method {method!r}: expected 'lanczos' or 'dhariwal'")
    return np.ascontiguousarray(_to_unit(arr))


def _to_tensor(arrays: Sequence[np.ndarray], channels: int) -> torch.Tensor:
    """(H, W) or (H, W, C) float arrays of one shape -> float32 [N, C, H, W]."""
    arr = np.stack([a if a.ndim == 3 else a[..., None] for a in arrays]) if arrays else np.zeros((0, 0, 0, channels))
    if arr.shape[-1] != channels:
        arr = np.repeat(arr, channels, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32))


def _chw(arr: np.ndarray, channels: int) -> torch.Tensor:
    return _to_tensor([_to_unit(arr)], channels)[0]


# ----------------------------------------------------------------------------- image datasets


def read_images(
    dataset: str,
    root: str | Path,
    *,
    n: int,
    size: int,
    split: str = "train",
    channels: int = 3,
    seed: int = 0,
    classes: list[str] | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """n images of ``dataset`` at ``size``×``size``: ([n, channels, size, size] float32 in [0, 1], ids).

    Where the paper uses them: ``ffhq`` — training-set starts of prior ffhq256 / ffhq64 ("train")
    and bench-ffhq ("val", BlindDPS's 1k subset); ``afhqv2`` — starts of afhq64, bench-afhq
    (``split="test", classes=["dog"]``); ``imagenet-first10`` — starts of the class-conditional
    imagenet64 (P Fig. 3; classes via :func:`imagenet_labels`); ``bsd100`` / ``bsds500`` — natural
    images (grey with ``channels=1``); ``mnist`` — grey digits (binarized: :func:`read_mnist_binary`).
    Selection: sorted ids, then :func:`select_indices` (``seed``). Resizing: :func:`resize_center_crop`
    (``"dhariwal"`` for ImageNet as EDM's training set, ``"lanczos"`` otherwise).
    """
    _check_channels(channels)
    folder, ids = list_images(dataset, root, split=split, classes=classes)
    chosen = _select(dataset, folder, ids, n, seed, split)
    method = "dhariwal" if dataset == "imagenet-first10" else "lanczos"
    if dataset == "mnist":
        images = read_mnist(root, split=split)[0]
        arrays = [resize_center_crop(images[int(i.split("/")[1])], size) for i in chosen]
    else:
        arrays = [resize_center_crop(_load_image(folder / i, channels), size, method=method) for i in chosen]
    out = _to_tensor(arrays, channels)
    return (out if len(chosen) else out.new_zeros((0, channels, size, size))), chosen


def read_full_images(
    dataset: str,
    root: str | Path,
    *,
    n: int | None = None,
    split: str = "train",
    channels: int = 3,
    seed: int = 0,
    classes: list[str] | None = None,
) -> tuple[list[torch.Tensor], list[str]]:
    """Images at their own resolution: (list of [channels, H, W] float32 in [0, 1], ids).

    All of them in sorted order when ``n`` is None, else n chosen as in :func:`read_images`.
    For crops of the originals, e.g. bench-bsd100 (:func:`random_crops` of BSD100, ``split="test"``).
    """
    _check_channels(channels)
    folder, ids = list_images(dataset, root, split=split, classes=classes)
    chosen = ids if n is None else _select(dataset, folder, ids, n, seed, split)
    if dataset == "mnist":
        images = read_mnist(root, split=split)[0]
        return [_chw(images[int(i.split("/")[1])], channels) for i in chosen], chosen
    return [_chw(_load_image(folder / i, channels), channels) for i in chosen], chosen


def imagenet_labels(ids: Sequence[str]) -> list[int]:
    """Class indices 0 … 9 of imagenet-first10 ids (``"<wnid>/<file>"``): EDM imagenet64's labels."""
    out = []
    for i in ids:
        wnid = str(i).split("/")[0]
        if wnid not in IMAGENET_FIRST10:
            raise ValueError(f"{i!r} is not an imagenet-first10 id ('<wnid>/<file>' with a wnid of {IMAGENET_FIRST10})")
        out.append(IMAGENET_FIRST10.index(wnid))
    return out


# ----------------------------------------------------------------------------- MNIST


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file (big-endian header: magic, then one int32 per dimension; unsigned bytes)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        data = fh.read()
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise ValueError(f"{path} is not an idx file with magic number {magic} (found {found})")
    ndim = magic & 0xFF
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header announces {dims} ({int(np.prod(dims))} bytes), {arr.size} bytes follow")
    return arr.reshape(dims)


def read_mnist(root: str | Path, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train" / "test") in file order: (uint8 [N, 28, 28], int64 labels [N]).

    Reads the idx files of ``datasets/MNIST/raw`` (gzipped, or torchvision's unpacked copies).
    """
    _check_split("mnist", split)
    loc, root = _resolve("mnist", root)
    arrays = []
    for stem, magic in zip(_MNIST_FILES[split], (2051, 2049)):
        path = next((p for p in (loc / f"{stem}.gz", loc / stem) if p.is_file()), None)
        if path is None:
            raise _missing("mnist", loc / f"{stem}.gz", root, "the MNIST file")
        arrays.append(_read_idx(path, magic))
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels in {loc}")
    return images, labels.astype(np.int64)


def read_mnist_binary(
    root: str | Path,
    *,
    split: str = "train",
    size: int = 32,
    threshold: float = 0.5,
    n: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Binarized MNIST (P §2.3, Fig. 8): float32 {0, 1} images [n, 1, size, size].

    A pixel is 1 where its value / 255 exceeds ``threshold``. The 28×28 digits are brought to
    ``size`` by zero padding (2 px each side for the paper's 32×32, the size its UNet works
    on; the digits keep their scale); sizes below 28 use :func:`resize_center_crop` before
    thresholding. All images in file order when ``n`` is None, else :func:`select_indices`
    (their labels: ``read_mnist(root, split=split)[1][select_indices(N, n, seed)]``).
    """
    images, _ = read_mnist(root, split=split)
    if n is not None:
        if n > len(images):
            raise ValueError(f"mnist: {n} images requested but only {len(images)} in split {split!r}")
        images = images[select_indices(len(images), n, seed)]
    if size >= images.shape[1]:
        extra = size - images.shape[1]
        before = extra // 2
        x = np.pad(images.astype(np.float32) / 255.0, ((0, 0), (before, extra - before), (before, extra - before)))
    else:
        x = np.stack([resize_center_crop(im, size) for im in images]) if len(images) else np.zeros((0, size, size))
    return torch.from_numpy((x > threshold).astype(np.float32))[:, None]


# ----------------------------------------------------------------------------- crops


def random_crops(
    images: torch.Tensor | Sequence[torch.Tensor], n: int, size: int, seed: int
) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """n crops of ``size``×``size``: ([n, C, size, size], [(image index, row, col)]), deterministic.

    ``images``: [N, C, H, W] or a list of [C, H, W] of any sizes (e.g. BSD100's 481×321 and 321×481).
    Crop k comes from image k mod N (so n = N gives one crop per image, as bench-bsd100's 100 crops
    of the 100 images), at a position drawn uniformly by ``default_rng(seed)``.
    """
    seq = list(images)
    if not seq and n:
        raise ValueError("no images to crop")
    rng = np.random.default_rng(seed)
    crops, positions = [], []
    for k in range(n):
        i = k % len(seq)
        H, W = seq[i].shape[-2:]
        if H < size or W < size:
            raise ValueError(f"image {i} ({H}×{W}) is smaller than the {size}×{size} crop")
        r, c = int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))
        crops.append(seq[i][..., r : r + size, c : c + size])
        positions.append((i, r, c))
    if not crops:
        C = seq[0].shape[-3] if seq else 0
        return torch.zeros((0, C, size, size)), []
    return torch.stack(crops), positions


def _center_crop(x: torch.Tensor, crop: int | None, what: str) -> torch.Tensor:
    if crop is None:
        return x
    H, W = x.shape[-2:]
    if crop > H or crop > W:
        raise ValueError(f"{what} is {H}×{W}, smaller than the {crop}-px centre crop")
    top, left = (H - crop) // 2, (W - crop) // 2
    return x[..., top : top + crop, left : left + crop]


# ----------------------------------------------------------------------------- Köhler et al. 2012


def _kohler_blurry(loc: Path, image: int, trajectory: int) -> Path | None:
    name = f"Blurry{image}_{trajectory}.png"
    for p in (loc / "BlurryImages" / name, loc / name):
        if p.is_file():
            return p
    found = sorted((loc / "BlurryImages").rglob(name)) if (loc / "BlurryImages").is_dir() else []
    return found[0] if found else None


def _kohler_sharp_dir(loc: Path, image: int, trajectory: int) -> Path | None:
    rel = Path(f"Image{image}") / f"Kernel{trajectory}"
    for p in (loc / f"GroundTruth_pngs_Image{image}" / rel, loc / rel):
        if p.is_dir():
            return p
    archive = loc / f"GroundTruth_pngs_Image{image}"
    if not archive.is_dir():
        return None
    found = sorted(p.parent for p in archive.rglob(f"GroundTruth{image}_{trajectory}_*.png"))
    return found[0] if found else None


def _kohler_kernel(folder: Path, trajectory: int) -> torch.Tensor | None:
    """The kernel file of ``trajectory`` in ``folder`` (the last number in its name), normalised to sum 1."""
    matches = []
    for p in sorted(folder.rglob("*")):
        numbers = re.findall(r"\d+", p.stem)
        if p.is_file() and not p.name.startswith(".") and numbers and int(numbers[-1]) == trajectory:
            matches.append(p)
    if not matches:
        log.warning("no kernel file for trajectory %d in %s", trajectory, folder)
        return None
    if len(matches) > 1:
        log.warning("several kernel files for trajectory %d in %s; using %s", trajectory, folder, matches[0])
    path = matches[0]
    suffix = path.suffix.lower()
    if suffix == ".npy":
        k = np.load(path)
    elif suffix in (".txt", ".csv"):
        k = np.loadtxt(path, delimiter="," if suffix == ".csv" else None)
    elif suffix == ".mat":
        from scipy.io import loadmat

        arrays = [v for key, v in loadmat(path).items() if not key.startswith("__") and np.ndim(v) == 2]
        if len(arrays) != 1:
            raise ValueError(f"{path}: expected one 2-D array (the kernel), found {len(arrays)}")
        k = arrays[0]
    else:
        with Image.open(path) as im:
            k = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "P", "LA") else im, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.sum() <= 0:
        raise ValueError(f"{path}: not a 2-D kernel with positive sum (shape {k.shape})")
    return torch.from_numpy(k / k.sum()).float()


def read_kohler(
    root: str | Path,
    *,
    image: int,
    trajectory: int,
    crop: int | None = 512,
    channels: int = 3,
    frames: str | int | Sequence[int] = "middle",
) -> dict:
    """One shot of the Köhler et al. (ECCV 2012) benchmark (P Fig. 13, bench-kohler).

    ``image`` 1 … 4 (printout), ``trajectory`` 1 … 12 (camera shake). Returns
    ``{"blurry": [C, H, W], "sharp": [F, C, H, W], "frames": [frame numbers], "id": "Blurry{i}_{t}"}``
    and ``"kernel"`` ([kh, kw], sum 1) when the kohler2012-kernels folder is present. The sharp
    references are the frames ``GroundTruth{i}_{t}_{f}.png`` of the video taken with the same
    shake (about 199 per shot, f from 1): ``frames`` = "middle" (default, deepinv's default:
    frame (count + 1) // 2), "first", "last", "all" (the benchmark's protocol compares with
    every frame; ~0.6 GB as float at crop 512) or frame numbers; F = 1 for a single choice.
    ``crop``: the centre ``crop``×``crop`` of every image (None: full frames).
    """
    _check_channels(channels)
    for name, value, allowed in (("image", image, KOHLER_IMAGES), ("trajectory", trajectory, KOHLER_TRAJECTORIES)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in allowed:
            raise ValueError(
                f"kohler2012: {name} must be an integer in {allowed.start}..{allowed.stop - 1}, not {value!r}"
            )
    image, trajectory = int(image), int(trajectory)
    loc, root = _resolve("kohler2012", root)
    blurry_path = _kohler_blurry(loc, image, trajectory)
    if blurry_path is None:
        raise _missing("kohler2012", loc / "BlurryImages" / f"Blurry{image}_{trajectory}.png", root, "the blurry shot")
    sharp_dir = _kohler_sharp_dir(loc, image, trajectory)
    expected_dir = loc / f"GroundTruth_pngs_Image{image}" / f"Image{image}" / f"Kernel{trajectory}"
    if sharp_dir is None:
        raise _missing("kohler2012", expected_dir, root, "the sharp frames")
    pattern = re.compile(rf"GroundTruth{image}_{trajectory}_(\d+)\.png")
    available = sorted(int(m.group(1)) for p in sharp_dir.iterdir() if (m := pattern.fullmatch(p.name)))
    if not available:
        raise _missing("kohler2012", expected_dir / f"GroundTruth{image}_{trajectory}_1.png", root, "the sharp frames")

    if isinstance(frames, str):
        choice = {
            "first": [available[0]],
            "last": [available[-1]],
            "all": available,
            "middle": [available[(len(available) + 1) // 2 - 1]],
        }.get(frames)
        if choice is None:
            raise ValueError(f"frames must be 'first', 'middle', 'last', 'all', or frame numbers, not {frames!r}")
    else:
        choice = [int(frames)] if isinstance(frames, (int, np.integer)) else [int(f) for f in frames]
        absent = [f for f in choice if f not in available]
        if absent:
            raise ValueError(
                f"kohler2012: frames {absent} of shot {image}_{trajectory} are not in {sharp_dir} "
                f"(frames {available[0]}..{available[-1]})"
            )

    blurry = _center_crop(_chw(_load_image(blurry_path, channels), channels), crop, str(blurry_path))
    sharp = []
    for f in choice:
        path = sharp_dir / f"GroundTruth{image}_{trajectory}_{f}.png"
        sharp.append(_center_crop(_chw(_load_image(path, channels), channels), crop, str(path)))
    sharp = torch.stack(sharp)
    out = {
        "blurry": blurry.contiguous(),
        "sharp": sharp.contiguous(),
        "frames": choice,
        "id": f"Blurry{image}_{trajectory}",
    }
    kernels = loc / "kernels"
    if kernels.is_dir():
        kernel = _kohler_kernel(kernels, trajectory)
        if kernel is not None:
            out["kernel"] = kernel
    return out


# ----------------------------------------------------------------------------- RealBlur-J


def read_realblur_pairs(
    root: str | Path, *, n: int, size: int = 256, seed: int = 0, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """n RealBlur-J test pairs, one ``size``×``size`` crop each (bench-realblur: 50 random 256×256
    crops, Kernel-Diff Table 3): (blurred [n, C, size, size], sharp [n, C, size, size], ids).

    The pairs of ``RealBlur_J_test_list.txt`` (lines ``"<sharp> <blurred>"``) are sorted by path and
    n are picked by :func:`select_indices` (``seed``); the crop of pair k is placed by
    :func:`random_crops` (``seed``) on the sharp image and taken at the same place in the blurred one.
    ids: ``"<blurred path>@<row>,<col>"`` (path relative to the dataset folder, crop corner).
    """
    _check_channels(channels)
    loc, root = _resolve("realblur-j", root)
    list_file = loc / REALBLUR_TEST_LIST
    if not list_file.is_file():
        raise _missing("realblur-j", list_file, root, "the RealBlur-J test list")
    pairs = []
    for lineno, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"{list_file}:{lineno}: expected '<sharp path> <blurred path>', got {line!r}")
        pairs.append((parts[0], parts[1]))
    pairs.sort()
    if n > len(pairs):
        raise ValueError(f"realblur-j: {n} pairs requested but {list_file} lists only {len(pairs)}")
    chosen = [pairs[i] for i in select_indices(len(pairs), n, seed)]
    sharp_full, blurred_full = [], []
    for sharp_rel, blur_rel in chosen:
        s = _chw(_load_image(loc / sharp_rel, channels), channels)
        b = _chw(_load_image(loc / blur_rel, channels), channels)
        if s.shape != b.shape:
            raise ValueError(
                f"realblur-j: {loc / sharp_rel} is {tuple(s.shape)} but {loc / blur_rel} is {tuple(b.shape)}"
            )
        sharp_full.append(s)
        blurred_full.append(b)
    sharp, positions = random_crops(sharp_full, n, size, seed)
    if n == 0:
        empty = torch.zeros((0, channels, size, size))
        return empty, empty.clone(), []
    blurred = torch.stack([blurred_full[i][:, r : r + size, c : c + size] for i, r, c in positions])
    ids = [f"{chosen[i][1]}@{r},{c}" for i, r, c in positions]
    return blurred, sharp, ids
