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


# ============================================================================ checkpoints
# Crafted EDM network pickles: the tiny SongUNet of tests/test_checkpoints.py, written by
# its writer, with one thing changed. The loader must refuse each before building anything,
# naming the file, within seconds (a structure bomb must not run until memory runs out).

BOMB_TIMEOUT = 60  # seconds; the unfixed loader ran without end on these files


class _Reduce:
    """Pickles as ``func(*args)`` (REDUCE), whatever func is."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class _NewObjWithState:
    """Pickles as ``cls.__new__(cls)`` followed by BUILD with ``state``."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    @property
    def __class__(self):  # the pickler checks that __newobj__'s class is the object's
        return self.cls

    def __reduce__(self):
        import copyreg

        return (copyreg.__newobj__, (self.cls,), self.state)


def _storage_blob(n: int) -> _Reduce:
    """A legacy ``torch.save`` blob of a float32 storage of ``n`` elements, as torch pickles one."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(torch.arange(float(n)).storage(), buf, _use_new_zipfile_serialization=False)
    return _Reduce(torch.storage._load_from_bytes, buf.getvalue())


@pytest.fixture(scope="module")
def edm_writer():
    """(write(path, **changes), the reference network): tests/test_checkpoints.py's EDM pickle writer."""
    tc = pytest.importorskip("test_checkpoints")
    net = tc._reference_song("edm")

    def write(path, net=net, **changes):
        kw = dict(precond="EDMPrecond", model_class="SongUNet", model_kwargs=tc.SONG_KW, src="# source")
        kw.update(changes)
        tc.write_edm_pickle(path, net, **kw)
        return path

    return write, net, tc


def _refused(path: Path, phrase: str):
    """Loading ``path`` raises a checkpoint error naming the file and containing ``phrase``."""
    from prior_landscape.priors.checkpoints import CheckpointError, UnsafePickleError, load_edm_pickle

    before = sorted(path.parent.iterdir())
    with pytest.raises((CheckpointError, UnsafePickleError)) as info:
        load_edm_pickle(path)
    assert str(path) in str(info.value), info.value
    assert phrase in str(info.value), info.value
    assert sorted(path.parent.iterdir()) == before  # nothing written beside it
    return info.value


def test_checkpoint_that_loads_is_the_reference(tmp_path, edm_writer):
    # the control: the same writer without changes gives a network that loads (so each refusal
    # below is due to its one change)
    from prior_landscape.priors.checkpoints import load_edm_pickle

    write, _, _ = edm_writer
    den, meta = load_edm_pickle(write(tmp_path / "ok.pkl"))
    assert meta["model_class"] == "SongUNet" and meta["num_tensors"] > 10


@pytest.mark.parametrize("rebuild", ["_rebuild_tensor_v2", "_rebuild_tensor"])
def test_checkpoint_tensor_view_past_its_storage_is_refused(tmp_path, edm_writer, rebuild):
    # the probe: a parameter that views 1 000× more elements than its storage holds imported
    # "successfully", its values uninitialised heap memory, different on each run
    import collections

    import torch

    write, net, _ = edm_writer
    net = copy.deepcopy(net)
    bias = net.map_layer0.bias
    with torch.no_grad():
        bias.fill_(1234.5)  # finds the parameter again when it is pickled
    n = bias.numel()
    args = (_storage_blob(1), 0, (n,), (1,))
    if rebuild == "_rebuild_tensor_v2":
        args += (False, collections.OrderedDict())
    view = _Reduce(getattr(torch._utils, rebuild), *args)
    crafted = _Reduce(torch._utils._rebuild_parameter, view, False, collections.OrderedDict())

    def override(obj):
        if isinstance(obj, torch.nn.Parameter) and obj.numel() == n and bool((obj == 1234.5).all()):
            return crafted.__reduce__()
        return NotImplemented

    path = write(tmp_path / "view.pkl", net=net, reducer_override=override)
    _refused(path, f"reaches element {n - 1} of a storage holding 1")


@pytest.mark.parametrize("payload", ["torch.Tensor(n)", "Tensor.__setstate__", "numpy.ndarray(shape)",
                                     "numpy _reconstruct huge"])
def test_checkpoint_uninitialised_or_huge_allocations_are_refused(tmp_path, edm_writer, payload):
    # allow-listed classes called or instantiated directly: uninitialised memory (torch.Tensor(n),
    # numpy.ndarray(shape)), a storage set unchecked (Tensor.__setstate__), a bare MemoryError
    import numpy.core.multiarray as multiarray  # noqa: F401 - pickled by reference
    import torch

    evil = {
        "torch.Tensor(n)": _Reduce(torch.Tensor, 4096),
        "Tensor.__setstate__": _NewObjWithState(torch.Tensor, (_storage_blob(1), 0, (4096,), (1,))),
        "numpy.ndarray(shape)": _Reduce(np.ndarray, (4096,)),
        "numpy _reconstruct huge": _Reduce(np.core.multiarray._reconstruct, np.ndarray, (10**13,), b"b"),
    }[payload]
    write, _, _ = edm_writer
    path = write(tmp_path / "alloc.pkl", evil=evil)
    _refused(path, "")


def _list_dag(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node, node]  # 2**depth leaves, depth + 1 distinct lists
    return node


def _module_dag(tc, depth: int):
    import collections

    import torch

    def module(children):
        m = torch.nn.ModuleDict.__new__(torch.nn.ModuleDict)
        m.__dict__.update(tc._module_state(collections.OrderedDict(), collections.OrderedDict(), children))
        return m

    node = module(collections.OrderedDict())
    for _ in range(depth):
        node = module(collections.OrderedDict(a=node, b=node))
    return node


def _hash_bomb_pickle(depth: int) -> bytes:
    """``{"ema": {t: 1}}`` where t is a tuple DAG (t_k = (t_{k-1}, t_{k-1})): hashing it visits
    2**depth tuples. Written opcode by opcode: building t here would hash it too."""
    out = b"\x80\x04}" + b"\x8c\x03ema" + b"}" + b")\x94"  # PROTO 4, {}, 'ema', {}, () memo 0
    for i in range(depth):  # t_i is on the stack: BINGET i (another t_i), TUPLE2, MEMOIZE as i + 1
        out += b"h" + bytes([i]) + b"\x86\x94"
    return out + b"K\x01ss."  # 1, SETITEM, SETITEM, STOP


@pytest.mark.parametrize("bomb", ["list DAG in kwargs", "module DAG", "tuple DAG as dict key", "cycle in kwargs",
                                  "module cycle"])
def test_checkpoint_structure_bombs_are_refused_fast(tmp_path, edm_writer, bomb):
    # the probe: a 1 KB pickle of shared references made the importer's walks run without end
    # (1.1 GB and growing after 20 s); a cycle ended in a bare RecursionError. Loaded in a child
    # process: a regression must fail this test, not hang or exhaust the test session (hashing
    # the tuple DAG loops in C, holding the GIL, where no in-process timeout can stop it).
    import time

    write, _, tc = edm_writer
    path = tmp_path / "bomb.pkl"
    if bomb == "list DAG in kwargs":
        write(path, model_kwargs=dict(tc.SONG_KW, attn_resolutions=_list_dag(80)))
    elif bomb == "module DAG":
        write(path, tamper=lambda root, inner: inner.state["_modules"].__setitem__("bomb", _module_dag(tc, 80)))
    elif bomb == "tuple DAG as dict key":
        path.write_bytes(_hash_bomb_pickle(80))
    elif bomb == "cycle in kwargs":
        loop: list = [4]
        loop.append(loop)
        write(path, model_kwargs=dict(tc.SONG_KW, attn_resolutions=loop))
    else:
        def cycle(root, inner):
            inner.state["_modules"]["self"] = inner
        write(path, tamper=cycle)
    assert path.stat().st_size < 4_000_000  # the crafted part is tiny; the rest is the real network
    code = ("import sys\nfrom prior_landscape.priors.checkpoints import load_edm_pickle\n"
            "load_edm_pickle(sys.argv[1])\n")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              timeout=BOMB_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading the {bomb} ran for more than {BOMB_TIMEOUT} s")
    last = proc.stderr.strip().splitlines()[-1]
    phrase = "structure bomb" if "DAG" in bomb else "reference cycle"
    assert proc.returncode == 1 and last.startswith("prior_landscape.priors.checkpoints.CheckpointError"), proc.stderr
    assert str(path) in last and phrase in last, last
    assert time.perf_counter() - t0 < 30 and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_checkpoint_damaged_file_is_named(tmp_path, edm_writer, damage):
    write, _, _ = edm_writer
    path = write(tmp_path / "damaged.pkl")
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": np.random.default_rng(0).bytes(5000),
                      "empty": b""}[damage])
    _refused(path, "")


def test_checkpoint_structure_scan_counts_shared_references_at_every_use():
    # the scan's measure is the size a recursive walk would see: a DAG of k levels expands to
    # 2**(k+1) - 1 lists although the pickle holds k + 1; nesting and cycles are measured too
    import io
    import pickle

    from prior_landscape.priors.checkpoints import CheckpointError, scan_pickle_structure

    for k in (1, 5, 12):
        info = scan_pickle_structure(io.BytesIO(pickle.dumps(_list_dag(k), protocol=4)), "dag")
        assert info["expanded"] == 2 ** (k + 1) - 1 and info["depth"] == k + 1
    with pytest.raises(CheckpointError, match="dag: the pickle's structure expands to more than 1,000 objects"):
        scan_pickle_structure(io.BytesIO(pickle.dumps(_list_dag(12), protocol=4)), "dag", max_nodes=1000)
    deep = b"\x80\x04" + b"]" * 500 + b"a" * 499 + b"."  # 500 nested lists, a 1 KB pickle
    with pytest.raises(CheckpointError, match="deep: the pickle nests deeper than 400 levels"):
        scan_pickle_structure(io.BytesIO(deep), "deep")
    assert scan_pickle_structure(io.BytesIO(deep), "deep", max_depth=500)["depth"] == 500
