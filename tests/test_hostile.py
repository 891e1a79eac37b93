"""Hostile and broken inputs: nothing runs, nothing escapes, nothing damaged passes as good.

One section per input that a user, a server or a file system hands the workflow:

* configuration values (``config.yaml``, ``--config``)
* image files named by the configuration
* checkpoints (EDM network pickles)
* archives (downloaded resources, archives of results)
* downloads (a loopback HTTP server that misbehaves on purpose)
* results under review (``prior-landscape review``)
* leftovers (killed unpacks, the SLURM test cluster's configuration)

Every case crafts its damaged input here, feeds it to the code that reads it and
asserts three things: the error names the input (key, file or member), nothing
ran that the input asked to run (no code, no write outside the target), and
nothing that looks complete was left behind (no final file, folder, lock-file
entry or "OK" verdict). Servers listen on 127.0.0.1 only.

To extend: add the new input's section, or a new kind of damage to an existing
one, with the same three assertions.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO
from prior_landscape.config import ConfigError, validate_config
from prior_landscape.io.images import check_photographs, load_photograph

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def _dry_run(work: Path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    """``snakemake -n`` of the workflow in ``work`` with ``config`` as its config.yaml."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(work), "--cores", "1", "-n", *targets]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


# ============================================================================ configuration


def _numeric_leaves(node, path=()):
    """Key paths of every number (not bool) in a parsed configuration."""
    if isinstance(node, bool):
        return []
    if isinstance(node, (int, float)):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _numeric_leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _numeric_leaves(v, (*path, i))]
    return []


def _set(config: dict, path: tuple, value) -> None:
    node = config
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_config_every_number_refuses_nan_and_infinity_by_name(value):
    # JSON Schema bounds never reject NaN (every comparison with it is false): the
    # configuration must refuse it at every numeric key, naming each one.
    config = _default_config()
    leaves = _numeric_leaves(config)
    assert len(leaves) > 50  # the whole configuration, not a sample
    for path in leaves:
        _set(config, path, value)
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    msg = str(info.value)
    unnamed = [p for p in leaves if f"  {'.'.join(map(str, p))}: {value!r} is not a finite number" not in msg]
    assert not unnamed, f"keys holding {value!r} not named: {unnamed[:5]}"


@pytest.mark.parametrize("key", [("deblur", "collapse_tol"), ("potential", "atol"), ("sweep", "theta", "stop")])
def test_config_nan_alone_is_refused(key):
    # the probe's values: collapse_tol .nan ran to the end with every no-blur flag false
    config = _default_config()
    _set(config, key, math.nan)
    with pytest.raises(ConfigError, match=rf"{'.'.join(key)}: nan is not a finite number"):
        validate_config(config)


def test_config_nan_stops_the_dry_run_before_any_job(tmp_path):
    config = _default_config()
    config["deblur"]["collapse_tol"] = math.nan  # written as .nan by yaml
    proc = _dry_run(tmp_path / "work", config)
    assert proc.returncode != 0
    assert "deblur.collapse_tol: nan is not a finite number" in proc.stdout + proc.stderr
    assert not (tmp_path / "work" / "results").exists()


# ============================================================================ image files


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    from PIL import Image

    Image.fromarray(array, mode=mode).save(path)
    return path


def _bad_images(folder: Path) -> dict[str, tuple[Path, str]]:
    """Damaged image files, each with the phrase its error must contain."""
    import tifffile

    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    good = _png(folder / "good.png", rgb)
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(500))
    five = folder / "five.tif"
    tifffile.imwrite(five, (rng.random((40, 40, 5)) * 255).astype(np.uint8))
    frames = folder / "frames.tif"
    tifffile.imwrite(frames, (rng.random((3, 40, 40, 3)) * 255).astype(np.uint8))
    nan = folder / "nan.tif"
    arr = rng.random((40, 40)).astype(np.float32)
    arr[3, 4] = np.nan
    tifffile.imwrite(nan, arr)
    scaled = folder / "scaled.tif"
    tifffile.imwrite(scaled, (rng.random((40, 40)) * 255).astype(np.float32))  # float 0..255, not 0..1
    return {
        "missing": (folder / "missing.png", "is neither a bundled photograph"),
        "folder": (folder, "is neither a bundled photograph"),
        "truncated": (truncated, "could not be read as an image"),
        "corrupt": (corrupt, "could not be read as an image"),
        "five-channels": (five, "has shape (40, 40, 5)"),
        "frames": (frames, "has shape (3, 40, 40, 3)"),
        "nan-pixels": (nan, "has NaN or infinite pixels"),
        "float-0-255": (scaled, "outside [0, 1]"),
    }


BAD_IMAGES = ["missing", "folder", "truncated", "corrupt", "five-channels", "frames", "nan-pixels", "float-0-255"]


@pytest.mark.parametrize("bad", BAD_IMAGES)
def test_image_file_damage_is_named_by_key_and_path(tmp_path, bad):
    path, phrase = _bad_images(tmp_path)[bad]
    with pytest.raises((OSError, ValueError)) as info:
        load_photograph(str(path))
    assert str(path) in str(info.value) and phrase in str(info.value)
    config = _default_config()
    config["data"]["photographs"]["heldout"] = ["flower", str(path)]
    config["critical_points"]["unrelated"] = [str(path)]
    problems = check_photographs(config)
    assert [p.split(":")[0] for p in problems] == ["data.photographs.heldout.1", "critical_points.unrelated.0"]
    assert all(str(path) in p for p in problems)


def test_grey_alpha_image_is_composited_over_white(tmp_path):
    # a 2-channel file (PNG mode LA) is grey + alpha: read like RGBA, over a white background
    rng = np.random.default_rng(1)
    la = (rng.random((30, 20, 2)) * 255).astype(np.uint8)
    img = load_photograph(str(_png(tmp_path / "la.png", la, mode="LA")))
    grey, alpha = la[..., 0] / 255.0, la[..., 1] / 255.0
    np.testing.assert_allclose(img, grey * alpha + (1 - alpha), atol=1e-12)
    assert check_photographs({"data": {"photographs": {"train": [str(tmp_path / "la.png")]}}}) == []


@pytest.mark.parametrize("bad", ["missing", "five-channels"])
def test_image_damage_stops_the_dry_run_before_any_job(tmp_path, bad):
    # the probe: a missing held-out image passed the dry run and failed after earlier jobs ran
    path, phrase = _bad_images(tmp_path)[bad]
    config = _default_config()
    config["data"]["photographs"]["heldout"] = ["flower", str(path)]
    proc = _dry_run(tmp_path / "work", config)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"data.photographs.heldout.1: input image {str(path)!r}" in out and phrase in out
    assert not (tmp_path / "work" / "results").exists()
