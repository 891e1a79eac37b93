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
import re
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


@pytest.mark.parametrize(
    "payload", ["torch.Tensor(n)", "Tensor.__setstate__", "numpy.ndarray(shape)", "numpy _reconstruct huge"]
)
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


@pytest.mark.parametrize(
    "bomb", ["list DAG in kwargs", "module DAG", "tuple DAG as dict key", "cycle in kwargs", "module cycle"]
)
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
    code = "import sys\nfrom prior_landscape.priors.checkpoints import load_edm_pickle\nload_edm_pickle(sys.argv[1])\n"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=BOMB_TIMEOUT
        )
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
    path.write_bytes(
        {"truncated": data[: len(data) // 3], "garbage": np.random.default_rng(0).bytes(5000), "empty": b""}[damage]
    )
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


# ============================================================================ archives
# Archives made elsewhere: downloaded resources (downloads.unpack_archive) and archives of
# results (archive.unpack). Nothing may be written outside the target, nothing incomplete
# may appear at the target, and a killed unpack's leftovers go at the next run.


def _tar(path: Path, members: list, mode: str = "w:gz") -> Path:
    """A tar archive of ``(name, kind, content_or_linkname)`` members, written in order."""
    import io
    import tarfile

    with tarfile.open(path, mode) as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
            else:
                info.type = {
                    "dir": tarfile.DIRTYPE,
                    "symlink": tarfile.SYMTYPE,
                    "hardlink": tarfile.LNKTYPE,
                    "fifo": tarfile.FIFOTYPE,
                    "chardev": tarfile.CHRTYPE,
                }[kind]
                if kind in ("symlink", "hardlink"):
                    info.linkname = value
                if kind == "dir":
                    info.mode = 0o755
                tf.addfile(info)
    return path


def _cve_2025_4517_members(dest: Path) -> list:
    """The realpath-limit attack on tarfile's 'data' filter (CVE-2025-4517): a chain of symlinks
    whose expansion outgrows PATH_MAX, so os.path.realpath stops resolving and a link that
    leaves the folder passes as inside; then a hard link to ../flag through it and a file
    written through the hard link, and a new file written through the escaping link."""
    import os

    steps = "abcdefghijklmnop"
    max_path = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(dest)) - 1) // (len(steps) + 1))
    members, path = [], ""
    for step in steps:
        members.append((os.path.join(path, component), "dir", None))
        members.append((os.path.join(path, step), "symlink", component))
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append((linkpath, "symlink", os.path.join(*[".."] * len(steps))))
    members.append(("escape", "symlink", os.path.join(linkpath, "..")))
    members.append(("flaglink", "hardlink", os.path.join("escape", "flag")))
    members.append(("flaglink", "file", b"overwritten"))
    members.append(("escape/newfile", "file", b"new"))
    return members


def _unpackers():
    from prior_landscape.io import archive as results_archive
    from prior_landscape.io.downloads import unpack_archive

    return {"download": unpack_archive, "results archive": results_archive.unpack}


def _assert_nothing_unpacked(folder: Path, target: Path, archive: Path, keep=()):
    assert not target.exists()
    left = sorted(p.name for p in folder.iterdir() if p != archive and p.name not in keep)
    assert left == [], f"left behind: {left}"


@pytest.mark.parametrize("unpacker", ["download", "results archive"])
def test_archive_cve_2025_4517_link_chain_writes_nothing_outside(tmp_path, unpacker):
    # the probe: this archive overwrote a file beside the target through a hard link and wrote a
    # new one there, in both unpackers (which extracted into a hidden folder beside the target,
    # and into the target itself: the chain is tuned to the folder it is extracted into)
    from prior_landscape.io.unpacking import ArchiveError

    folder = tmp_path / "folder"
    folder.mkdir()
    flag = folder / "flag"
    flag.write_bytes(b"original")
    target = folder / "out"
    root = folder / ".out.abcdefgh.unpacking" if unpacker == "download" else target
    archive = _tar(folder / "evil.tar.gz", _cve_2025_4517_members(root))
    with pytest.raises(ArchiveError, match=r"symbolic link") as info:
        _unpackers()[unpacker](archive, target)
    assert str(archive) in str(info.value)
    assert flag.read_bytes() == b"original" and not (folder / "newfile").exists()
    _assert_nothing_unpacked(folder, target, archive, keep=("flag",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


UNSAFE_MEMBERS = {
    "dotdot": ([("../evil.txt", "file", b"x")], "outside the target folder"),
    "absolute": ([("/tmp/evil-absolute.txt", "file", b"x")], "outside the target folder"),
    "backslash dotdot": ([("..\\evil.txt", "file", b"x")], "outside the target folder"),
    "internal symlink": ([("a.txt", "file", b"a"), ("b.txt", "symlink", "a.txt")], "is a symbolic link"),
    "hard link outside": ([("x", "hardlink", "../../etc/passwd")], "outside the target folder"),
    "hard link to nothing": ([("x", "hardlink", "nothing")], "does not point to an earlier regular file"),
    "link then file of that name": (
        [("a", "file", b"a"), ("b", "hardlink", "a"), ("b", "file", b"new")],
        "appears twice",
    ),
    "fifo": ([("pipe", "fifo", None)], "special file"),
    "device": ([("dev", "chardev", None)], "special file"),
    "file under a file": ([("a", "file", b"a"), ("a/b", "file", b"b")], "which another member wrote as a file"),
}


@pytest.mark.parametrize("unpacker", ["download", "results archive"])
@pytest.mark.parametrize("case", list(UNSAFE_MEMBERS))
def test_archive_unsafe_member_is_refused_and_nothing_is_created(tmp_path, unpacker, case):
    from prior_landscape.io.unpacking import ArchiveError

    members, phrase = UNSAFE_MEMBERS[case]
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    archive = _tar(folder / "x.tar.gz", [("ok.txt", "file", b"fine"), *members])
    target = folder / "out"
    with pytest.raises(ArchiveError, match=phrase) as info:
        _unpackers()[unpacker](archive, target)
    assert str(archive) in str(info.value)
    _assert_nothing_unpacked(folder, target, archive)
    assert not (tmp_path / "a" / "evil.txt").exists() and not Path("/tmp/evil-absolute.txt").exists()


def _plain_tar_with_damaged_header(path: Path) -> Path:
    """An uncompressed tar of three files whose second header's checksum field is damaged:
    tarfile stops there silently, as if the archive ended after the first file."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("one.txt", "two.txt", "three.txt"):
            info = tarfile.TarInfo(name)
            info.size = 600
            tf.addfile(info, io.BytesIO((name.encode() * 100)[:600]))
    data = bytearray(buf.getvalue())
    second = 512 + 1024  # header 1, data 1 (600 B in two blocks), then header 2
    data[second + 148] ^= 0x01  # a digit of its checksum
    path.write_bytes(bytes(data))
    return path


ARCHIVE_DAMAGE = [
    "truncated gzip",
    "flipped byte in gzip",
    "damaged tar header",
    "truncated plain tar",
    "not an archive",
    "truncated zip",
    "flipped byte in zip member",
]


def _damaged_archive(folder: Path, damage: str) -> Path:
    import zipfile

    payload = {f"f{i}.bin": np.random.default_rng(i).bytes(20_000) for i in range(3)}
    if damage in ("truncated zip", "flipped byte in zip member"):
        path = folder / "x.zip"
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in payload.items():
                zf.writestr(name, data)
        data = bytearray(path.read_bytes())
        if damage == "truncated zip":
            data = data[: len(data) // 2]
        else:
            data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
        return path
    if damage == "damaged tar header":
        return _plain_tar_with_damaged_header(folder / "x.tar")
    if damage == "not an archive":
        path = folder / "x.tar.gz"
        path.write_bytes(b"<html><body>Quota exceeded</body></html>")
        return path
    mode, name = ("w", "x.tar") if damage == "truncated plain tar" else ("w:gz", "x.tar.gz")
    path = _tar(folder / name, [(n, "file", d) for n, d in payload.items()], mode=mode)
    data = bytearray(path.read_bytes())
    if damage == "truncated gzip":
        data = data[: len(data) * 2 // 3]
    elif damage == "truncated plain tar":
        data = data[: 512 + 20_480]  # the first member whole, no end-of-archive block
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ARCHIVE_DAMAGE)
def test_archive_damaged_download_unpacks_to_nothing(tmp_path, damage):
    # a damaged tar header made tarfile stop early: a partial folder was renamed into place as complete
    from prior_landscape.io.downloads import unpack_archive
    from prior_landscape.io.unpacking import ArchiveError

    archive = _damaged_archive(tmp_path, damage)
    target = tmp_path / "out"
    with pytest.raises(ArchiveError, match="damaged|truncated|unsupported|is not") as info:
        unpack_archive(archive, target)
    assert str(archive) in str(info.value) and "Delete" in str(info.value)
    _assert_nothing_unpacked(tmp_path, target, archive)


def test_archive_decompression_bomb_stops_at_the_limit(tmp_path, monkeypatch):
    import zipfile

    from prior_landscape.io import unpacking
    from prior_landscape.io.downloads import unpack_archive
    from prior_landscape.io.unpacking import ArchiveError

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(64 << 20))  # 64 MiB of zeros, 64 KiB packed
    assert bomb.stat().st_size < 200_000
    # the ratio limit (200× the archive) with its 1 GiB floor lowered to 1 MiB for the test
    monkeypatch.setattr(unpacking, "_RATIO_FLOOR", 1 << 20)
    with pytest.raises(ArchiveError, match=r"takes the unpacked size past [\d,]+ bytes .* decompression bomb") as info:
        unpack_archive(bomb, tmp_path / "out")
    assert str(bomb) in str(info.value)
    _assert_nothing_unpacked(tmp_path, tmp_path / "out", bomb)
    with pytest.raises(ArchiveError, match="past 1,000 bytes"):  # the absolute limit
        unpack_archive(bomb, tmp_path / "out", max_bytes=1000)
    with pytest.raises(ArchiveError, match="more than 0 members"):
        unpack_archive(bomb, tmp_path / "out", max_members=0)
    _assert_nothing_unpacked(tmp_path, tmp_path / "out", bomb)


def test_archive_killed_unpack_leftovers_are_removed_by_the_next_run(tmp_path):
    # the probe: a killed unpack left a hidden .unpacking folder (207 MB) that nothing removed
    import os
    import signal
    import tempfile
    import time

    from prior_landscape.io.downloads import unpack_archive

    archive = _tar(tmp_path / "ds.tar", [(f"f{i}.bin", "file", bytes(1 << 20)) for i in range(400)], mode="w")
    target = tmp_path / "ds"
    # a real kill: a child unpacking a slow (throttled) read, killed once its hidden folder appears
    code = (
        "import sys, time, builtins\nfrom prior_landscape.io import unpacking\n"
        "orig = unpacking._Writer._read\n"
        "def slow(self, data, name):\n    time.sleep(0.02)\n    return orig(self, data, name)\n"
        "unpacking._Writer._read = slow\n"
        "unpacking.safe_unpack(sys.argv[1], sys.argv[2])\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(archive), str(target)])
    deadline = time.monotonic() + 60
    hidden = []
    while time.monotonic() < deadline and not hidden:
        hidden = [p for p in tmp_path.iterdir() if p.name.endswith(".unpacking") and any(p.iterdir())]
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert hidden and hidden[0].exists() and not target.exists()  # what the probe found
    other = Path(tempfile.mkdtemp(prefix=".ds.x.", suffix=".unpacking", dir=tmp_path))  # another target's: kept
    out = unpack_archive(archive, target)
    assert out == target and len(list(target.iterdir())) == 400
    assert not hidden[0].exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds.tar", "ds", other.name])


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_archive_unpacked_folder_follows_the_umask(tmp_path, umask):
    # the probe: unpacked resource folders got mode 0700 (mkdtemp's), unreadable to the group
    import os
    import stat

    from prior_landscape.io.downloads import unpack_archive

    archive = _tar(tmp_path / "ds.tar.gz", [("sub", "dir", None), ("sub/a.txt", "file", b"a"), ("b.txt", "file", b"b")])
    old = os.umask(umask)
    try:
        out = unpack_archive(archive, tmp_path / "ds")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert modes == {
        "ds": 0o777 & ~umask,
        "ds/sub": 0o777 & ~umask,
        "ds/sub/a.txt": 0o666 & ~umask,
        "ds/b.txt": 0o666 & ~umask,
    }
    assert all(p.stat().st_mtime == 1_600_000_000 for p in out.rglob("*"))  # members' times kept


# ============================================================================ results under review
# `prior-landscape review` is a verdict a script can trust: exit 0 only when everything
# verifies; any unreadable, damaged, changed, missing or unlisted member is exit 1 with a
# line naming it. Also read_table: a damaged artefact never reaches a figure.


@pytest.fixture
def run_tree(tmp_path):
    """A small finished run (tests/test_archive.py's): results/ with artefacts, figures, logs."""
    ta = pytest.importorskip("test_archive")
    return ta._results_tree(tmp_path / "run"), ta


def _review(capsys, *args) -> tuple[int, str]:
    from prior_landscape.cli import main as cli_main

    capsys.readouterr()
    code = cli_main(["review", *map(str, args)])
    return code, capsys.readouterr().out


def _data_page_byte(path: Path, column: str) -> int:
    """An offset inside the values of ``column``'s first data page (past its page header)."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    chunk = md.row_group(0).column(names.index(column))
    return chunk.data_page_offset + chunk.total_compressed_size - 8


def test_results_flipped_bit_in_a_parquet_fails_review_and_reading(run_tree, capsys):
    # the probe: one flipped bit turned a column into NaN, and `review results/` said OK
    from prior_landscape.io.archive import FIGURE_INPUTS  # noqa: F401 - the map used without a manifest
    from prior_landscape.io.artefacts import DamagedArtefactError, read_table

    res, _ = run_tree
    target = res / "sweeps/gmm-natural.parquet"
    data = bytearray(target.read_bytes())
    data[_data_page_byte(target, "q")] ^= 0x04
    target.write_bytes(bytes(data))
    code, out = _review(capsys, res)
    assert code == 1, out
    assert "UNREADABLE  results/sweeps/gmm-natural.parquet" in out and out.rstrip().splitlines()[-1].startswith(
        "FAILED"
    )
    assert re.search(r"no\s+fig07_likelihood_sweeps", out) and not re.search(r"yes\s+fig07", out)
    with pytest.raises(DamagedArtefactError, match=re.escape(str(target))):
        read_table(target)


def test_results_any_single_bit_flip_is_detected_or_changes_nothing_read(tmp_path):
    # every byte of an artefact, one bit each: the read fails naming the file, or returns the very
    # same rows, columns, values and provenance (a flip in statistics or padding is harmless)
    import io

    import pandas as pd

    from prior_landscape.io.artefacts import PROVENANCE_KEY, DamagedArtefactError, verify_table, write_table

    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "prior": ["a"] * 20 + ["b"] * 20,
            "theta": np.linspace(0, 5, 40),
            "q": rng.random(40),
            "kernel": [list(rng.random(3)) for _ in range(40)],
            "n": np.arange(40),
            "flag": rng.random(40) > 0.5,
            "maybe": [None if i % 7 == 0 else float(i) for i in range(40)],
        }
    )
    path = write_table(df, tmp_path / "t.parquet", {"config": {"sweep": {"n_images": 2}}})
    clean = verify_table(path)
    data = path.read_bytes()

    def same(a, b):
        return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))

    detected = 0
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 1 << (i % 8)
        try:
            got = verify_table(io.BytesIO(bytes(damaged)), "t.parquet")
        except DamagedArtefactError as err:
            assert "t.parquet" in str(err)
            detected += 1
            continue
        assert got.column_names == clean.column_names, i
        assert all(same(got[c].to_pylist(), clean[c].to_pylist()) for c in clean.column_names), i
        assert got.schema.metadata[PROVENANCE_KEY] == clean.schema.metadata[PROVENANCE_KEY], i
    assert detected > len(data) // 2


def test_results_truncated_parquet_and_missing_manifest_policy(run_tree, capsys):
    # the probe: an error printed for a truncated file, yet exit 0 and "OK"
    res, _ = run_tree
    code, out = _review(capsys, res)
    assert code == 0 and "OK (every file readable; no manifest" in out
    code, out = _review(capsys, res, "--require-manifest")
    assert code == 1 and "--require-manifest" in out
    target = res / "kernels/blur_families.parquet"
    target.write_bytes(target.read_bytes()[:-100])
    code, out = _review(capsys, res)
    assert code == 1 and "UNREADABLE  results/kernels/blur_families.parquet" in out
    assert re.search(r"no\s+fig05_blur_families", out)


def _archive(run_tree, tmp_path) -> Path:
    from prior_landscape.io.archive import write_archive

    res, ta = run_tree
    out = tmp_path / "archives/results.tar.gz"
    write_archive(res, out, config=ta.CONFIG, rules=ta.RULES)
    return out


def _repack(src: Path, dst: Path, edit) -> Path:
    """``src``'s members (name -> bytes, in order) changed by ``edit``, written as a new .tar.gz."""
    import io
    import tarfile

    with tarfile.open(src) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    edit(members)  # in place
    with tarfile.open(dst, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            tf.addfile(info, io.BytesIO(data))
    return dst


def _change_member(members: dict) -> None:
    name = "results/tables/sweep_summary.csv"
    members[name] = members[name].replace(b"gaussian,1", b"gaussian,2")


def _change_member_and_manifest(members: dict) -> None:
    import hashlib
    import json

    _change_member(members)
    manifest = json.loads(members["manifest.json"])
    for f in manifest["files"]:
        if f["path"] == "results/tables/sweep_summary.csv":
            f["sha256"] = hashlib.sha256(members[f["path"]]).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()


def _flip_byte(src: Path, dst: Path) -> Path:
    """One bit flipped inside the gzip stream, from its middle on, at the first place where it damages the
    archive: some bits change nothing (deflate's padding, a header's file name) — CI once flipped such a
    bit, and the archive was then intact apart from its detached checksum."""
    import gzip
    import zlib

    data = src.read_bytes()
    original = gzip.decompress(data)
    for pos in range(len(data) // 2, len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        try:
            if gzip.decompress(bytes(flipped)) == original:
                continue  # a bit nothing reads
        except (OSError, EOFError, zlib.error):
            pass  # damaged: what the review must say
        dst.write_bytes(bytes(flipped))
        return dst
    raise AssertionError("no bit of the gzip stream's second half damages it")


def _truncate(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size * 3 // 4])
    return dst


ARCHIVE_REVIEW_DAMAGE = {
    # damage: (make it from an intact archive, the phrase the review must print)
    "flipped byte in the gzip stream": (_flip_byte, "could not be read to its end"),
    "truncated": (_truncate, "could not be read to its end"),
    "manifest not JSON": (
        lambda a, t: _repack(a, t, lambda m: m.update({"manifest.json": b"{not json"})),
        "manifest.json is not valid JSON",
    ),
    "manifest malformed": (
        lambda a, t: _repack(a, t, lambda m: m.update({"manifest.json": b'{"files": [1]}'})),
        "entry 0 of 'files' is malformed",
    ),
    "no manifest": (lambda a, t: _repack(a, t, lambda m: m.pop("manifest.json")), "no manifest.json in the archive"),
    "unlisted extra member": (
        lambda a, t: _repack(a, t, lambda m: m.update({"results/extra.txt": b"x"})),
        "NOT LISTED  results/extra.txt",
    ),
    "missing member": (
        lambda a, t: _repack(a, t, lambda m: m.pop("results/figures/fig05.png")),
        "MISSING  results/figures/fig05.png",
    ),
    "changed member": (lambda a, t: _repack(a, t, _change_member), "CHANGED  results/tables/sweep_summary.csv"),
    "config.yaml changed": (
        lambda a, t: _repack(a, t, lambda m: m.update({"config.yaml": b"seed: 1\n"})),
        "config.yaml differs from the configuration recorded in the manifest",
    ),
    "member and manifest changed together": (lambda a, t: _repack(a, t, _change_member_and_manifest), "differs from"),
}


@pytest.mark.parametrize("damage", list(ARCHIVE_REVIEW_DAMAGE))
def test_archive_under_review_any_damage_is_exit_1_naming_it(run_tree, tmp_path, capsys, damage):
    # the probe: a flipped gzip byte gave "no manifest" and OK; a non-JSON manifest a traceback;
    # an unlisted member OK
    from prior_landscape.io.archive import checksum_path

    make, phrase = ARCHIVE_REVIEW_DAMAGE[damage]
    intact = _archive(run_tree, tmp_path)
    code, out = _review(capsys, intact)
    assert code == 0 and out.rstrip().endswith("OK") and "checked against" in out
    sha = checksum_path(intact)
    bad = make(intact, tmp_path / "archives/tampered.tar.gz")
    checksum_path(bad).write_text(sha.read_text())  # the original's detached checksum travels with it
    code, out = _review(capsys, bad)
    assert code == 1, out
    assert phrase in out and out.rstrip().splitlines()[-1].startswith("FAILED"), out


def test_archive_changed_with_its_manifest_is_caught_only_by_a_detached_checksum(run_tree, tmp_path, capsys):
    # the documented limit: files and manifest changed together are consistent with each other;
    # the archive's sha256, kept apart from it, is what tells
    from prior_landscape.io.archive import checksum_path, read_checksum_file

    intact = _archive(run_tree, tmp_path)
    recorded = read_checksum_file(checksum_path(intact))
    bad = _repack(intact, tmp_path / "forged.tar.gz", _change_member_and_manifest)
    code, out = _review(capsys, bad)  # no .sha256 beside it: consistent, and the review says what it cannot see
    assert code == 0 and "no detached checksum" in out
    code, out = _review(capsys, bad, "--sha256", recorded)
    assert code == 1 and f"differs from {recorded}" in out
    code, out = _review(capsys, intact, "--sha256", recorded)
    assert code == 0
    assert (
        subprocess.run(
            ["sha256sum", "-c", checksum_path(intact).name], cwd=intact.parent, capture_output=True
        ).returncode
        == 0
    )  # the standard tool reads it too


@pytest.mark.parametrize(
    "damage", ["changed member", "unlisted extra member", "manifest not JSON", "flipped byte in the gzip stream"]
)
def test_archive_unpack_refuses_what_review_refuses(run_tree, tmp_path, damage):
    from prior_landscape.io.archive import checksum_path, unpack
    from prior_landscape.io.unpacking import ArchiveError

    make, _ = ARCHIVE_REVIEW_DAMAGE[damage]
    intact = _archive(run_tree, tmp_path)
    checksum_path(intact).unlink()  # the check of the members themselves, not of the detached checksum
    bad = make(intact, tmp_path / "archives/tampered.tar.gz")
    dest = tmp_path / "unpacked"
    with pytest.raises(ArchiveError, match="refusing to unpack|damaged|truncated") as info:
        unpack(bad, dest)
    assert str(bad) in str(info.value)
    assert not dest.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".unpacking")]
    out = unpack(intact, tmp_path / "good")
    assert (out / "manifest.json").exists() and (out / "results/sweeps/gmm-natural.parquet").exists()


# ============================================================================ downloads
# A loopback server (127.0.0.1) that misbehaves as real ones do: close-delimited bodies (no
# Content-Length, so a truncated transfer looks complete), HTML pages served with 200,
# trickling bytes. An unpinned file is trusted on first use: nothing of this may be recorded.


@pytest.fixture
def bad_server():
    """``(url(name), files, modes)``: serves ``files[name]`` the way ``modes[name]`` says:
    "close" (no Content-Length, connection closed after the body), "truncate" (no length,
    body cut at 60 %), "vary" (no length, a different cut each time), "html" (a 200 HTML page),
    "trickle" (one byte per 50 ms, with a Content-Length); default: a normal answer."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    files: dict[str, bytes] = {}
    modes: dict[str, str] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the connection closes after each answer

        def log_message(self, *args):
            pass

        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            requests.append(name)
            data, mode = files.get(name), modes.get(name, "normal")
            if data is None:
                self.send_error(404)
                return
            if mode == "html":
                data = b"<!DOCTYPE html>\n<html><body>Please log in to continue.</body></html>"
            elif mode == "truncate":
                data = data[: len(data) * 6 // 10]
            elif mode == "vary":
                data = data[: len(data) * (50 + len(requests) * 7 % 40) // 100]
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if mode == "html" else "application/octet-stream")
            if mode in ("normal", "trickle", "html"):
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                if mode == "trickle":
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)
                else:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/files"
    try:
        yield (lambda name: f"{base}/{name}"), files, modes, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _genuine(kind: str) -> bytes:
    """A genuine file of each format: zip, pickle, tar.gz, and one with no format check (.rar)."""
    import io
    import pickle
    import tarfile
    import zipfile

    payload = np.random.default_rng(3).bytes(40_000)
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("a.bin", payload)
            zf.writestr("b.bin", payload[::-1])
        return buf.getvalue()
    if kind == "pkl":
        return pickle.dumps({"weights": payload, "n": 3}, protocol=4)
    if kind == "tar.gz":
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            info = tarfile.TarInfo("a.bin")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        return buf.getvalue()
    return b"Rar!\x1a\x07\x01\x00" + payload  # .rar: no check here (the stdlib cannot read RAR)


FAST_FETCH = dict(retries=1, backoff=0.01, timeout=5)


def _nothing_trusted(dest: Path, lock: Path, key: str) -> None:
    from prior_landscape.io.downloads import read_lock

    assert not dest.exists()
    assert key not in read_lock(lock)
    assert sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name)) == []


@pytest.mark.parametrize("kind", ["zip", "pkl", "tar.gz"])
@pytest.mark.parametrize("damage", ["truncate", "html"])
def test_download_first_use_refuses_truncated_or_html_then_accepts_the_genuine_file(tmp_path, bad_server, kind, damage):
    # the probe: a truncated transfer without Content-Length, or an HTML page served with 200,
    # landed at the final path and its digest went into the lock file; the genuine file was
    # refused from then on
    from prior_landscape.io.downloads import DownloadError, fetch, read_lock

    url, files, modes, _ = bad_server
    name = f"model.{kind}"
    files[name], modes[name] = _genuine(kind), damage
    dest, lock, key = tmp_path / "data" / name, tmp_path / "lock.yaml", f"res/{name}"
    phrase = "HTML" if damage == "html" else "not a complete"
    with pytest.raises(DownloadError, match=phrase) as info:
        fetch(url(name), dest, lock_file=lock, lock_key=key, **FAST_FETCH)
    assert name in str(info.value) and url(name) in str(info.value)
    _nothing_trusted(dest, lock, key)
    modes[name] = "close"  # the genuine file, still without a Content-Length
    assert fetch(url(name), dest, lock_file=lock, lock_key=key, **FAST_FETCH).read_bytes() == files[name]
    assert read_lock(lock)[key]["size"] == len(files[name])


def test_download_first_use_without_length_or_format_check_needs_two_agreeing_transfers(tmp_path, bad_server):
    import hashlib

    from prior_landscape.io.downloads import DownloadError, fetch, read_lock

    url, files, modes, requests = bad_server
    name = "data.rar"
    files[name], modes[name] = _genuine("rar"), "vary"  # cut at a different place each time
    dest, lock, key = tmp_path / "data" / name, tmp_path / "lock.yaml", "res/data.rar"
    with pytest.raises(DownloadError, match="two transfers gave different contents"):
        fetch(url(name), dest, lock_file=lock, lock_key=key, **FAST_FETCH)
    _nothing_trusted(dest, lock, key)
    modes[name] = "close"
    n = len(requests)
    fetch(url(name), dest, lock_file=lock, lock_key=key, **FAST_FETCH)
    assert len(requests) - n == 2  # downloaded twice, compared, then recorded
    assert read_lock(lock)[key]["sha256"] == hashlib.sha256(files[name]).hexdigest()
    # an HTML page is refused whatever the format
    files["page.rar"], modes["page.rar"] = files[name], "html"
    with pytest.raises(DownloadError, match="HTML"):
        fetch(url("page.rar"), tmp_path / "data" / "page.rar", lock_file=lock, lock_key="res/page.rar", **FAST_FETCH)


def test_download_existing_html_file_is_never_recorded(tmp_path):
    # a file already at its place (left by the unfixed downloader) is checked before it is trusted
    from prior_landscape.io.downloads import ChecksumError, fetch, read_lock

    dest, lock = tmp_path / "model.pkl", tmp_path / "lock.yaml"
    dest.write_bytes(b"<html><body>Quota exceeded</body></html>")
    with pytest.raises(ChecksumError, match="HTML") as info:
        fetch("http://127.0.0.1:9/model.pkl", dest, lock_file=lock, lock_key="res/model.pkl", **FAST_FETCH)
    assert info.value.existing and str(dest) in str(info.value) and "Delete it" in str(info.value)
    assert dest.exists() and read_lock(lock) == {}


def test_download_trickling_transfer_stops_at_the_overall_deadline(tmp_path, bad_server):
    # the probe: no overall deadline; a server sending one byte at a time never hit the 60 s timeout
    import time

    from prior_landscape.io.downloads import DownloadError, fetch, read_lock

    url, files, modes, _ = bad_server
    files["slow.bin"], modes["slow.bin"] = bytes(10_000), "trickle"  # ~8 minutes at this rate
    dest, lock = tmp_path / "slow.bin", tmp_path / "lock.yaml"
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"overall deadline of 1 s") as info:
        fetch(url("slow.bin"), dest, lock_file=lock, lock_key="res/slow.bin", deadline=1, **FAST_FETCH)
    assert time.monotonic() - t0 < 4
    assert str(dest) in str(info.value) and "resumes" in str(info.value)
    assert not dest.exists() and read_lock(lock) == {}
    assert 0 < (tmp_path / "slow.bin.part").stat().st_size < 10_000  # kept for the next run to resume


def test_download_truncated_archive_is_not_unpacked_nor_recorded(tmp_path, bad_server):
    from prior_landscape.io.downloads import DownloadError, ensure_resource, read_lock

    url, files, modes, _ = bad_server
    files["ds.zip"], modes["ds.zip"] = _genuine("zip"), "truncate"
    entry = {
        "id": "ds",
        "kind": "url",
        "path": "ds",
        "files": [{"filename": "ds.zip", "url": url("ds.zip"), "unpack": {"into": "ds"}}],
    }
    lock = tmp_path / "lock.yaml"
    with pytest.raises(DownloadError, match="not a complete zip"):
        ensure_resource(entry, tmp_path / "root", lock, **FAST_FETCH)
    assert sorted(p.name for p in (tmp_path / "root" / "ds").iterdir()) == [] and read_lock(lock) == {}
    modes["ds.zip"] = "close"
    out = ensure_resource(entry, tmp_path / "root", lock, **FAST_FETCH)
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin"] and "ds/ds.zip" in read_lock(lock)


# ============================================================================ leftovers
# What a finished or failed session leaves behind (killed unpacks: see "archives").


@pytest.fixture
def conf_paths(tmp_path, monkeypatch):
    """slurm_cluster's /etc/slurm/slurm.conf and gres.conf, moved under tmp_path for the test."""
    import slurm_cluster

    etc = tmp_path / "etc" / "slurm"
    monkeypatch.setattr(slurm_cluster, "SLURM_CONF", etc / "slurm.conf")
    monkeypatch.setattr(slurm_cluster, "GRES_CONF", etc / "gres.conf")
    return slurm_cluster, etc


def test_slurm_test_cluster_removes_only_the_configuration_it_wrote(conf_paths, tmp_path):
    # the probe: the live-SLURM test left /etc/slurm/slurm.conf and gres.conf behind after it
    # stopped the cluster, pointing at a deleted folder. stop() runs here without daemons (none
    # were started: it must not touch any), as after a start that failed half-way
    sc, etc = conf_paths
    state = tmp_path / "state"
    written, created = sc.write_conf_files("node1", state)
    assert sorted(p.name for p in etc.iterdir()) == ["gres.conf", "slurm.conf"]
    assert created == [tmp_path / "etc", etc]  # both made by this session
    assert str(state) in (etc / "slurm.conf").read_text()
    cluster = sc.Cluster(
        node="node1", partition="debug", gpus=1, reused=False, state_dir=state, written=written, created_dirs=created
    )
    sc.stop(cluster)
    assert not (tmp_path / "etc").exists()

    # a configuration changed by someone else after we wrote it, or a folder that holds more, stays
    written, created = sc.write_conf_files("node1", state)
    (etc / "gres.conf").write_text((etc / "gres.conf").read_text() + "# edited by an administrator\n")
    (etc / "cgroup.conf").write_text("# not ours\n")
    notes = sc.remove_conf_files(written, created)
    assert sorted(p.name for p in etc.iterdir()) == ["cgroup.conf", "gres.conf"]
    assert any("gres.conf changed" in n for n in notes) and any("not empty" in n for n in notes)


@pytest.mark.parametrize("which", ["slurm.conf", "gres.conf"])
def test_slurm_test_cluster_never_overwrites_a_configuration_it_did_not_write(conf_paths, which):
    sc, etc = conf_paths
    etc.mkdir(parents=True)
    (etc / which).write_text("# the site's own configuration\n")
    with pytest.raises(sc.ClusterUnavailable, match="not written by these tests"):
        sc.write_conf_files("node1", etc / "state")
    assert [p.name for p in etc.iterdir()] == [which] and (
        etc / which
    ).read_text() == "# the site's own configuration\n"
