"""Dataset readers: tiny fake datasets in the real folder layouts, read back deterministically.

Every dataset is written under a temporary resource root exactly where
``ensure_resource`` puts it (``resource_location`` of its catalogue entry); the AFHQv2
archive also goes the whole way through ``ensure_resource`` from a loopback HTTP server.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_downloads import server  # noqa: F401 - the loopback HTTP server fixture

from prior_landscape.io import datasets as ds
from prior_landscape.io.downloads import ensure_resource, load_catalogue, resource_location
from prior_landscape.io.images import class_labels

CAT = load_catalogue()


def _loc(rid: str, root: Path) -> Path:
    return resource_location(CAT[rid], root)


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(path: Path, arr: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _unit(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float [C, H, W] as the readers return it."""
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)


# ----------------------------------------------------------------------------- resizing


def test_resize_center_crop_of_a_constant_image_is_constant():
    out = ds.resize_center_crop(np.full((30, 50, 3), 77, np.uint8), 7)
    assert out.shape == (7, 7, 3) and out.dtype == np.float32
    assert np.all(out == np.float32(77 / 255))
    grey = ds.resize_center_crop(np.full((41, 23), 0.3), 9)
    assert grey.shape == (9, 9)
    np.testing.assert_allclose(grey, 0.3, atol=1e-6)
    for method in ("lanczos", "dhariwal"):
        assert ds.resize_center_crop(np.full((300, 200, 3), 10, np.uint8), 16, method=method).shape == (16, 16, 3)


def test_resize_center_crop_keeps_the_centre_of_a_non_square_image():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = _rgb(0, 40, 40)  # the centre square; the sides are black bands
    np.testing.assert_array_equal(ds.resize_center_crop(img, 40), img[:, 20:60].astype(np.float32) / 255)
    band = np.zeros((80, 40))
    band[20:60] = 1.0  # tall image: the centre rows are white
    np.testing.assert_allclose(ds.resize_center_crop(band, 10), 1.0, atol=1e-6)
    out = ds.resize_center_crop(_rgb(1, 63, 95), 16)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, ds.resize_center_crop(_rgb(1, 63, 95), 16))  # deterministic
    with pytest.raises(ValueError, match="unknown resize method"):
        ds.resize_center_crop(img, 8, method="nearest")


def test_select_indices_is_seeded_sorted_and_bounded():
    a = ds.select_indices(50, 10, seed=3)
    np.testing.assert_array_equal(a, ds.select_indices(50, 10, seed=3))
    assert list(a) == sorted(set(a.tolist())) and a.max() < 50
    assert not np.array_equal(a, ds.select_indices(50, 10, seed=4))
    np.testing.assert_array_equal(ds.select_indices(5, 5, seed=0), np.arange(5))
    with pytest.raises(ValueError, match="cannot select 6 of 5"):
        ds.select_indices(5, 6, seed=0)


# ----------------------------------------------------------------------------- FFHQ


@pytest.fixture
def ffhq_root(tmp_path):
    folder = _loc("ffhq", tmp_path)
    for k in [0, 1, 2, 3, 4, 5, 1000, 1001]:
        _png(folder / f"{k // 1000 * 1000:05d}" / f"{k:05d}.png", _rgb(k, 20, 20))
    (folder / "LICENSE.txt").write_text("not an image")
    return tmp_path


def test_ffhq_shapes_determinism_and_subset(ffhq_root):
    x, ids = ds.read_images("ffhq", ffhq_root, n=4, size=8, seed=1)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    _, all_ids = ds.list_images("ffhq", ffhq_root)
    assert len(all_ids) == 8 and all_ids[0] == "00000/00000.png" and all_ids[-1] == "01000/01001.png"
    assert ids == sorted(ids) and set(ids) <= set(all_ids)
    x2, ids2 = ds.read_images("ffhq", ffhq_root, n=4, size=8, seed=1)
    assert ids2 == ids and torch.equal(x, x2)
    assert ds.read_images("ffhq", ffhq_root, n=4, size=8, seed=2)[1] != ids
    # native size: the image comes back exactly
    full, fids = ds.read_images("ffhq", ffhq_root, n=8, size=20)
    k = fids.index("00000/00003.png")
    torch.testing.assert_close(full[k], _unit(_rgb(3, 20, 20)))
    grey, _ = ds.read_images("ffhq", ffhq_root, n=2, size=8, channels=1)
    assert grey.shape == (2, 1, 8, 8)


def test_ffhq_val_is_the_first_images_in_sorted_order(ffhq_root, monkeypatch):
    monkeypatch.setattr(ds, "FFHQ_VAL_COUNT", 3)
    _, ids = ds.list_images("ffhq", ffhq_root, split="val")
    assert ids == ["00000/00000.png", "00000/00001.png", "00000/00002.png"]
    x, chosen = ds.read_images("ffhq", ffhq_root, n=3, size=20, split="val")
    assert chosen == ids
    torch.testing.assert_close(x[1], _unit(_rgb(1, 20, 20)))
    with pytest.raises(ValueError, match=r"ffhq: 4 images requested but only 3 found in .*images1024x1024"):
        ds.read_images("ffhq", ffhq_root, n=4, size=8, split="val")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        ds.read_images("ffhq", ffhq_root, n=1, size=8, split="test")


def test_missing_dataset_names_the_path_and_the_resource(tmp_path):
    expected = str(_loc("ffhq", tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m prior_landscape\.io\.downloads ffhq") as err:
        ds.read_images("ffhq", tmp_path, n=1, size=8)
    assert expected in str(err.value)
    with pytest.raises(FileNotFoundError, match="downloads mnist"):
        ds.read_mnist_binary(tmp_path)
    with pytest.raises(FileNotFoundError, match="downloads realblur-j"):
        ds.read_realblur_pairs(tmp_path, n=1)
    with pytest.raises(FileNotFoundError, match="downloads kohler2012"):
        ds.read_kohler(tmp_path, image=1, trajectory=1)
    with pytest.raises(ValueError, match="unknown dataset"):
        ds.read_images("celeba", tmp_path, n=1, size=8)
    # a dataset folder given directly that does not exist: the hint names the resource root
    with pytest.raises(FileNotFoundError, match=f"--root {tmp_path}"):
        ds.read_images("ffhq", _loc("ffhq", tmp_path), n=1, size=8)
    with pytest.raises(FileNotFoundError, match="rule download_imagenet_first10"):
        ds.read_images("imagenet-first10", tmp_path, n=1, size=8)


# ----------------------------------------------------------------------------- AFHQv2, end to end


def _afhq_zip(prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        k = 0
        for split in ("train", "test"):
            for cls in ds.AFHQ_CLASSES:
                for j in range(3):
                    png = io.BytesIO()
                    Image.fromarray(_rgb(100 + k, 24, 24)).save(png, format="PNG")
                    zf.writestr(f"{prefix}{split}/{cls}/flickr_{cls}_{j:06d}.png", png.getvalue())
                    k += 1
    return buf.getvalue()


def test_afhq_through_ensure_resource_and_class_filter(server, tmp_path):  # noqa: F811
    blob = _afhq_zip()
    server.state.files["afhq_v2.zip"] = blob
    entry = copy.deepcopy(CAT["afhqv2"])
    entry["files"][0]["url"] = server.url("afhq_v2.zip")
    entry["files"][0]["sha256"] = hashlib.sha256(blob).hexdigest()
    location = ensure_resource(entry, tmp_path, lock_file=None, retries=0, timeout=5)
    assert location == _loc("afhqv2", tmp_path) and (location / "train" / "dog").is_dir()

    x, ids = ds.read_images("afhqv2", tmp_path, n=3, size=12, classes=["dog"], split="test")
    assert x.shape == (3, 3, 12, 12)
    assert ids == ["test/dog/flickr_dog_000000.png", "test/dog/flickr_dog_000001.png", "test/dog/flickr_dog_000002.png"]
    _, every = ds.list_images("afhqv2", tmp_path)
    assert len(every) == 9 and {i.split("/")[1] for i in every} == {"cat", "dog", "wild"}
    full, fids = ds.read_images("afhqv2", tmp_path, n=2, size=24, classes=["wild"], seed=5)
    assert all(i.startswith("train/wild/") for i in fids)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        ref = np.asarray(Image.open(io.BytesIO(zf.read(fids[0]))))
    torch.testing.assert_close(full[0], _unit(ref))
    with pytest.raises(ValueError, match=r"afhqv2: 4 images requested but only 3"):
        ds.read_images("afhqv2", tmp_path, n=4, size=8, classes=["cat"])
    with pytest.raises(FileNotFoundError, match="class folder 'fox'"):
        ds.read_images("afhqv2", tmp_path, n=1, size=8, classes=["fox"])
    # the location ensure_resource returned reads the same as the resource root
    y, yids = ds.read_images("afhqv2", location, n=2, size=24, classes=["wild"], seed=5)
    assert yids == fids and torch.equal(y, full)


def test_afhq_archive_with_a_top_folder(tmp_path):
    with zipfile.ZipFile(io.BytesIO(_afhq_zip("afhq/"))) as zf:
        zf.extractall(_loc("afhqv2", tmp_path))
    _, ids = ds.list_images("afhqv2", tmp_path, split="test", classes=["cat"])
    assert ids[0] == "test/cat/flickr_cat_000000.png"
    assert ds.read_images("afhqv2", tmp_path, n=3, size=8, split="test", classes=["cat"])[0].shape == (3, 3, 8, 8)


# ----------------------------------------------------------------------------- ImageNet, BSD100, BSDS500


def test_imagenet_first10_labels_and_dhariwal_resize(tmp_path):
    folder = _loc("imagenet-first10", tmp_path)
    for c, wnid in enumerate(ds.IMAGENET_FIRST10):
        for j in range(2):
            path = folder / wnid / f"{wnid}_{j}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(10 * c + j, 30, 45)).save(path, quality=95)
    x, ids = ds.read_images("imagenet-first10", tmp_path, n=6, size=16, seed=0)
    assert x.shape == (6, 3, 16, 16) and ids == sorted(ids)
    assert ds.imagenet_labels(ids) == [ds.IMAGENET_FIRST10.index(i.split("/")[0]) for i in ids]
    y, yids = ds.read_images("imagenet-first10", tmp_path, n=2, size=16, classes=["n01518878"])
    assert ds.imagenet_labels(yids) == [9, 9]
    # a prior pooling classes (P's imagenet64): each image its class, then images of none the pool in turn
    spec = {"dataset": "imagenet-first10"}
    labels = class_labels(tuple(range(10)), spec, ids, n_other=12)
    assert list(labels) == ds.imagenet_labels(ids) + [*range(10), 0, 1]
    assert class_labels(None, spec, ids) is None  # any other prior: no labels
    assert list(class_labels((9, 4), spec, yids, n_other=3)) == [9, 9, 9, 4, 9]
    with pytest.raises(ValueError, match=r"images of classes \[9\] for a prior pooling classes \[0, 1\]"):
        class_labels((0, 1), spec, yids)
    with pytest.raises(ValueError, match="must be imagenet-first10.*'ffhq'"):
        class_labels((0, 1), {"dataset": "ffhq"}, ["00000/00001.png"])
    with pytest.raises(ValueError, match="must be imagenet-first10.*None"):
        class_labels((0, 1), None, ["astronaut@0,0"])
    with pytest.raises(ValueError, match="first ten wnids"):
        ds.read_images("imagenet-first10", tmp_path, n=1, size=8, classes=["n09999999"])
    import shutil

    shutil.rmtree(folder / "n01443537")
    with pytest.raises(FileNotFoundError, match="n01443537"):
        ds.read_images("imagenet-first10", tmp_path, n=1, size=8)


def test_bsd100_recursive_full_images_and_crops(tmp_path):
    folder = _loc("bsd100", tmp_path) / "BSD100_HR"  # the archive's own top folder
    written = {}
    for k, name in enumerate(["3096", "8023", "12084", "14037"]):
        shape = (24, 36) if k % 2 else (36, 24)
        written[f"BSD100_HR/{name}.png"] = _png(folder / f"{name}.png", _rgb(k, *shape))
    with pytest.raises(ValueError, match="unknown split 'train'"):
        ds.read_full_images("bsd100", tmp_path)
    images, ids = ds.read_full_images("bsd100", tmp_path, split="test")
    assert ids == sorted(written)
    for img, i in zip(images, ids):
        torch.testing.assert_close(img, _unit(written[i]))
    crops, pos = ds.random_crops(images, 6, 16, seed=0)
    assert crops.shape == (6, 3, 16, 16) and [p[0] for p in pos] == [0, 1, 2, 3, 0, 1]
    for crop, (i, r, c) in zip(crops, pos):
        H, W = images[i].shape[-2:]
        assert 0 <= r <= H - 16 and 0 <= c <= W - 16
        torch.testing.assert_close(crop, images[i][:, r : r + 16, c : c + 16])
    again, pos2 = ds.random_crops(images, 6, 16, seed=0)
    assert pos2 == pos and torch.equal(again, crops)
    assert ds.random_crops(images, 6, 16, seed=1)[1] != pos
    with pytest.raises(ValueError, match="smaller than the 30×30 crop"):
        ds.random_crops(images, 1, 30, seed=0)
    stacked = torch.rand(3, 1, 20, 20)
    c, p = ds.random_crops(stacked, 2, 5, seed=0)
    torch.testing.assert_close(c[1], stacked[p[1][0]][:, p[1][1] : p[1][1] + 5, p[1][2] : p[1][2] + 5])


def test_bsds500_splits(tmp_path):
    images = _loc("bsds500", tmp_path) / "BSDS500-master" / "BSDS500" / "data" / "images"
    for split, names in {"train": ["2092", "8049"], "val": ["3096"], "test": ["100007", "100039", "100099"]}.items():
        for k, name in enumerate(names):
            path = images / split / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(k, 32, 48)).save(path, quality=95)
        (images / split / "Thumbs.db").write_bytes(b"\0" * 10)
    _, ids = ds.list_images("bsds500", tmp_path, split="test")
    assert ids == ["test/100007.jpg", "test/100039.jpg", "test/100099.jpg"]
    x, chosen = ds.read_images("bsds500", tmp_path, n=2, size=16, split="test", channels=1, seed=0)
    assert x.shape == (2, 1, 16, 16) and set(chosen) <= set(ids)
    with pytest.raises(ValueError, match=r"bsds500: 2 images requested but only 1 found"):
        ds.read_images("bsds500", tmp_path, n=2, size=16, split="val")


# ----------------------------------------------------------------------------- MNIST


def _idx(path: Path, arr: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path):
    raw = _loc("mnist", tmp_path)
    rng = np.random.default_rng(0)
    data = {}
    for split, (img_name, lab_name), count in (
        ("train", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), 12),
        ("test", ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), 5),
    ):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        _idx(raw / f"{img_name}.gz", images, 2051)
        _idx(raw / f"{lab_name}.gz", labels, 2049)
        data[split] = (images, labels)
    return tmp_path, data


def test_mnist_reader_returns_the_written_pixels_and_labels(mnist_root):
    root, data = mnist_root
    for split in ("train", "test"):
        images, labels = ds.read_mnist(root, split=split)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])
        assert labels.dtype == np.int64
    binary = ds.read_mnist_binary(root)
    expected = np.pad(data["train"][0].astype(np.float32) / 255 > 0.5, ((0, 0), (2, 2), (2, 2)))
    assert binary.shape == (12, 1, 32, 32) and binary.dtype == torch.float32
    np.testing.assert_array_equal(binary[:, 0].numpy(), expected.astype(np.float32))
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    sub = ds.read_mnist_binary(root, n=4, seed=7)
    torch.testing.assert_close(sub, binary[torch.from_numpy(ds.select_indices(12, 4, 7))])
    assert torch.equal(sub, ds.read_mnist_binary(root, n=4, seed=7))
    assert ds.read_mnist_binary(root, split="test", size=16).shape == (5, 1, 16, 16)
    x, ids = ds.read_images("mnist", root, n=3, size=28, channels=1, split="test", seed=0)
    k = int(ids[0].split("/")[1])
    np.testing.assert_allclose(x[0, 0].numpy(), data["test"][0][k] / 255, atol=1e-6)
    with pytest.raises(ValueError, match="mnist: 13 images requested but only 12"):
        ds.read_mnist_binary(root, n=13)
    # the dataset folder (datasets/MNIST/raw) may be given instead of the resource root
    assert torch.equal(ds.read_mnist_binary(_loc("mnist", root), n=4, seed=7), sub)


def test_mnist_wrong_magic_is_refused(mnist_root):
    root, data = mnist_root
    _idx(_loc("mnist", root) / "t10k-images-idx3-ubyte.gz", data["test"][0], 2049)
    with pytest.raises(ValueError, match="magic number 2051"):
        ds.read_mnist(root, split="test")


# ----------------------------------------------------------------------------- Köhler


@pytest.fixture
def kohler_root(tmp_path):
    loc = _loc("kohler2012", tmp_path)
    blurry = _png(loc / "BlurryImages" / "Blurry2_11.png", _rgb(0, 20, 24))
    frames = {
        f: _png(loc / "GroundTruth_pngs_Image2" / "Image2" / "Kernel11" / f"GroundTruth2_11_{f}.png", _rgb(f, 20, 24))
        for f in range(1, 6)
    }
    return tmp_path, blurry, frames


def test_kohler_shot_frames_and_crop(kohler_root):
    root, blurry, frames = kohler_root
    out = ds.read_kohler(root, image=2, trajectory=11, crop=8)
    assert out["id"] == "Blurry2_11" and out["frames"] == [3] and "kernel" not in out
    torch.testing.assert_close(out["blurry"], _unit(blurry[6:14, 8:16]))
    assert out["sharp"].shape == (1, 3, 8, 8)
    torch.testing.assert_close(out["sharp"][0], _unit(frames[3][6:14, 8:16]))
    every = ds.read_kohler(root, image=2, trajectory=11, crop=None, frames="all", channels=1)
    assert every["sharp"].shape == (5, 1, 20, 24) and every["blurry"].shape == (1, 20, 24)
    assert every["frames"] == [1, 2, 3, 4, 5]
    assert ds.read_kohler(root, image=2, trajectory=11, frames=[5, 1], crop=4)["frames"] == [5, 1]
    with pytest.raises(ValueError, match="frames \\[9\\]"):
        ds.read_kohler(root, image=2, trajectory=11, frames=9)
    with pytest.raises(ValueError, match="smaller than the 512-px centre crop"):
        ds.read_kohler(root, image=2, trajectory=11)
    with pytest.raises(ValueError, match=r"image must be an integer in 1\.\.4"):
        ds.read_kohler(root, image=5, trajectory=1)
    with pytest.raises(ValueError, match=r"trajectory must be an integer in 1\.\.12"):
        ds.read_kohler(root, image=1, trajectory=0)
    with pytest.raises(FileNotFoundError, match=r"Blurry1_3\.png.*downloads kohler2012"):
        ds.read_kohler(root, image=1, trajectory=3)


def test_kohler_kernel_and_flat_deepinv_layout(kohler_root):
    root, blurry, frames = kohler_root
    loc = _loc("kohler2012", root)
    kernel = np.zeros((5, 5), np.uint8)
    kernel[2, 1:4] = [50, 100, 50]
    _png(loc / "kernels" / "kernel11.png", kernel)
    _png(loc / "kernels" / "kernel1.png", np.full((3, 3), 9, np.uint8))
    out = ds.read_kohler(root, image=2, trajectory=11, crop=None)
    torch.testing.assert_close(out["kernel"], torch.from_numpy(kernel / kernel.sum()).float())
    # deepinv's layout: every archive extracted into one folder
    flat = root / "flat"
    flat_loc = _loc("kohler2012", flat)
    _png(flat_loc / "Blurry1_1.png", blurry)
    _png(flat_loc / "Image1" / "Kernel1" / "GroundTruth1_1_1.png", frames[1])
    got = ds.read_kohler(flat, image=1, trajectory=1, crop=None)
    torch.testing.assert_close(got["sharp"][0], _unit(frames[1]))


# ----------------------------------------------------------------------------- RealBlur-J


def test_realblur_pairs_share_one_crop(tmp_path):
    loc = _loc("realblur-j", tmp_path)
    top = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    lines, pairs = [], {}
    for scene in (230, 7, 101):
        for k in (1, 2):
            sharp_rel, blur_rel = f"{top}/scene{scene:03d}/gt/gt_{k}.png", f"{top}/scene{scene:03d}/blur/blur_{k}.png"
            s = _png(loc / sharp_rel, _rgb(scene + k, 40, 36))
            b = _png(loc / blur_rel, _rgb(1000 + scene + k, 40, 36))
            pairs[blur_rel] = (s, b)
            lines.append(f"{sharp_rel} {blur_rel}")
    (loc / ds.REALBLUR_TEST_LIST).write_text("\n".join(lines) + "\n")
    blurred, sharp, ids = ds.read_realblur_pairs(tmp_path, n=4, size=16, seed=0)
    assert blurred.shape == sharp.shape == (4, 3, 16, 16)
    paths = [i.split("@")[0] for i in ids]
    assert paths == sorted(paths) and set(paths) <= set(pairs)
    for b, s, i in zip(blurred, sharp, ids):
        path, corner = i.split("@")
        r, c = map(int, corner.split(","))
        assert 0 <= r <= 40 - 16 and 0 <= c <= 36 - 16
        torch.testing.assert_close(s, _unit(pairs[path][0][r : r + 16, c : c + 16]))
        torch.testing.assert_close(b, _unit(pairs[path][1][r : r + 16, c : c + 16]))
    again = ds.read_realblur_pairs(tmp_path, n=4, size=16, seed=0)
    assert again[2] == ids and torch.equal(again[0], blurred) and torch.equal(again[1], sharp)
    assert ds.read_realblur_pairs(tmp_path, n=4, size=16, seed=1)[2] != ids
    with pytest.raises(ValueError, match="7 pairs requested but .*RealBlur_J_test_list.txt lists only 6"):
        ds.read_realblur_pairs(tmp_path, n=7)
