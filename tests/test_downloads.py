"""Downloads: verified, resumable, atomic; manual resources; the catalogue.

Every network test talks to a loopback HTTP server started here (127.0.0.1, a free
port) that serves bytes the test defines and can simulate the failures a real
download meets: a dropped connection, a server ignoring Range, 5xx answers,
corrupted content. Nothing else is contacted.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import pickle
import re
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from prior_landscape.io.downloads import (
    ArchiveError,
    CatalogueError,
    ChecksumError,
    DownloadError,
    ManualDownloadRequired,
    ensure_resource,
    fetch,
    load_catalogue,
    load_catalogue_with_mirror,
    read_lock,
    resource_location,
    unpack_archive,
)

FAST = dict(retries=3, backoff=0.01, timeout=5)


# ----------------------------------------------------------------------------- loopback server


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.fail_500 = 0  # answer 500 to the next N requests
        self.drop_after: int | None = None  # once: send N bytes of the body, then close the connection
        self.ignore_range = False  # answer 200 with the whole file even when asked for a range
        self.corrupt = False  # flip one byte of every file served
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _record(self, status, range_header):
        self.server.state.requests.append({"path": self.path, "range": range_header, "status": status})

    def do_GET(self):
        st: _State = self.server.state
        rng = self.headers.get("Range")
        path = urlparse(self.path).path
        with st.lock:
            if path.startswith("/redirect/"):
                self._record(302, rng)
                self.send_response(302)
                self.send_header("Location", "/files/" + path.removeprefix("/redirect/"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if st.fail_500 > 0:
                st.fail_500 -= 1
                self._record(500, rng)
                self.send_error(500, "simulated failure")
                return
            data = st.files.get(path.removeprefix("/files/"))
            if data is None:
                self._record(404, rng)
                self.send_error(404)
                return
            if st.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            if rng and not st.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    self._record(416, rng)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._record(206, rng)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self._record(200, rng)
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            drop, st.drop_after = st.drop_after, None
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.url = lambda name: f"{base}/files/{name}"
    httpd.redirect_url = lambda name: f"{base}/redirect/{name}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/files/x.bin"


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    out, h = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".part"))


# ----------------------------------------------------------------------------- fetch


def test_download_verifies_and_lands_atomically(server, tmp_path, caplog):
    data = _payload()
    server.state.files["w.bin"] = data
    seen = []
    dest = tmp_path / "sub" / "w.bin"
    with caplog.at_level(logging.INFO, logger="prior_landscape.io.downloads"):
        out = fetch(
            server.url("w.bin"),
            dest,
            sha256=_sha(data),
            chunk_size=8192,
            progress=lambda d, t: seen.append((d, t)),
            **FAST,
        )
    assert out == dest and dest.read_bytes() == data
    assert _leftovers(dest.parent) == []
    assert seen[-1] == (len(data), len(data)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert any("100%" in r.getMessage() for r in caplog.records)
    assert sum("%" in r.getMessage() for r in caplog.records) >= 10  # about every 10 %
    # present and verified: not downloaded again
    n = len(server.state.requests)
    assert fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST) == dest
    assert len(server.state.requests) == n


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_pinned_checksum_mismatch_leaves_nothing(server, tmp_path, algorithm):
    data = _payload()
    server.state.files["w.bin"] = data
    server.state.corrupt = True
    pinned = getattr(hashlib, algorithm)(data).hexdigest()
    dest = tmp_path / "w.bin"
    with pytest.raises(ChecksumError) as exc:
        fetch(server.url("w.bin"), dest, **{algorithm: pinned}, **FAST)
    msg = str(exc.value)
    assert "w.bin" in msg and pinned in msg and exc.value.actual in msg and exc.value.actual != pinned
    assert not dest.exists() and not (tmp_path / "w.bin.part").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lock_name", ["resources.lock.yaml", "resources.lock.json"])
def test_lock_file_records_then_verifies(server, tmp_path, lock_name):
    data = pickle.dumps(_payload(), protocol=4)  # a .pkl must be a whole pickle to be recorded
    server.state.files["ckpt.pkl"] = data
    lock = tmp_path / "repo" / lock_name
    dest = tmp_path / "data" / "ckpt.pkl"
    fetch(server.url("ckpt.pkl"), dest, lock_file=lock, lock_key="edm/ckpt.pkl", **FAST)
    record = read_lock(lock)["edm/ckpt.pkl"]
    assert record == {"url": server.url("ckpt.pkl"), "sha256": _sha(data), "size": len(data)}
    if lock_name.endswith(".json"):
        json.loads(lock.read_text())
    else:
        assert lock.read_text().startswith("#") and yaml.safe_load(lock.read_text())["edm/ckpt.pkl"] == record
    assert sorted(p.name for p in lock.parent.iterdir()) == [lock_name]  # atomic rewrite, no temp left

    # the source changes: a new download fails verification and leaves nothing
    dest.unlink()
    server.state.files["ckpt.pkl"] = pickle.dumps(_payload(seed=1), protocol=4)
    with pytest.raises(ChecksumError) as exc:
        fetch(server.url("ckpt.pkl"), dest, lock_file=lock, lock_key="edm/ckpt.pkl", **FAST)
    assert "edm/ckpt.pkl" in str(exc.value) and _sha(data) in str(exc.value)
    assert not dest.exists() and not dest.with_name("ckpt.pkl.part").exists()
    assert read_lock(lock)["edm/ckpt.pkl"] == record

    # an existing file that does not match is kept, and the error says to delete it
    dest.write_bytes(b"stale")
    n = len(server.state.requests)
    with pytest.raises(ChecksumError) as exc:
        fetch(server.url("ckpt.pkl"), dest, lock_file=lock, lock_key="edm/ckpt.pkl", **FAST)
    assert exc.value.existing and "delete" in str(exc.value) and str(dest) in str(exc.value)
    assert dest.read_bytes() == b"stale" and len(server.state.requests) == n


def test_interrupted_transfer_is_resumed_with_range(server, tmp_path):
    data = _payload()
    server.state.files["w.bin"] = data
    server.state.drop_after = 100_000
    dest = tmp_path / "w.bin"
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data and _leftovers(tmp_path) == []
    reqs = server.state.requests
    assert reqs[0]["range"] is None and reqs[1]["range"] == "bytes=100000-" and reqs[1]["status"] == 206


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = _payload()
    server.state.files["w.bin"] = data
    dest = tmp_path / "w.bin"
    dest.with_name("w.bin.part").write_bytes(data[:12345])
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data
    assert [r["range"] for r in server.state.requests] == ["bytes=12345-"]


def test_server_ignoring_range_still_yields_the_right_file(server, tmp_path):
    data = _payload()
    server.state.files["w.bin"] = data
    server.state.drop_after = 50_000
    server.state.ignore_range = True
    dest = tmp_path / "w.bin"
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data and _leftovers(tmp_path) == []
    assert server.state.requests[1]["range"] == "bytes=50000-" and server.state.requests[1]["status"] == 200


def test_range_not_satisfiable(server, tmp_path):
    data = _payload(1000)
    server.state.files["w.bin"] = data
    # a complete .part left behind: 416 with the same total means "already complete"
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(data)
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data and server.state.requests[-1]["status"] == 416
    # a .part longer than the file: start again from zero
    dest = tmp_path / "b.bin"
    dest.with_name("b.bin.part").write_bytes(data + b"junk")
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data and [r["status"] for r in server.state.requests[-2:]] == [416, 200]


def test_transient_server_errors_are_retried(server, tmp_path):
    data = _payload(5000)
    server.state.files["w.bin"] = data
    server.state.fail_500 = 2
    dest = tmp_path / "w.bin"
    fetch(server.url("w.bin"), dest, sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data
    assert [r["status"] for r in server.state.requests] == [500, 500, 200]

    server.state.fail_500 = 10
    with pytest.raises(DownloadError) as exc:
        fetch(server.url("w.bin"), tmp_path / "v.bin", retries=1, backoff=0.01, timeout=5)
    assert "500" in str(exc.value) and "2 attempts" in str(exc.value)


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError) as exc:
        fetch(server.url("missing.bin"), tmp_path / "m.bin", **FAST)
    assert "404" in str(exc.value) and server.url("missing.bin") in str(exc.value)
    assert len(server.state.requests) == 1 and list(tmp_path.iterdir()) == []


def test_unreachable_address_fails_quickly_and_clearly(tmp_path):
    url = _closed_port_url()
    dest = tmp_path / "x.bin"
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as exc:
        fetch(url, dest, retries=2, backoff=0.01, timeout=2)
    assert time.perf_counter() - t0 < 5
    msg = str(exc.value)
    assert url in msg and str(dest) in msg and "3 attempts" in msg
    assert "manually" in msg or "by hand" in msg
    assert "refused" in msg.lower()
    assert exc.value.url == url and not dest.exists()


def test_redirects_are_followed(server, tmp_path):
    data = _payload(2000)
    server.state.files["w.bin"] = data
    fetch(server.redirect_url("w.bin"), tmp_path / "w.bin", sha256=_sha(data), **FAST)
    assert (tmp_path / "w.bin").read_bytes() == data


# ----------------------------------------------------------------------------- ensure_resource, archives


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


MEMBERS = {"data/train/a.png": b"A" * 100, "data/test/b.png": b"B" * 50, "README.txt": b"hello"}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archives_unpack_atomically(server, tmp_path, fmt):
    blob = _zip_bytes(MEMBERS) if fmt == "zip" else _tar_bytes(MEMBERS)
    server.state.files[f"ds.{fmt}"] = blob
    entry = {
        "id": "ds",
        "kind": "url",
        "path": "datasets/ds",
        "files": [{"filename": f"ds.{fmt}", "url": server.url(f"ds.{fmt}"), "unpack": {"into": "extracted"}}],
    }
    lock = tmp_path / "lock.yaml"
    out = ensure_resource(entry, tmp_path / "root", lock, **FAST)
    assert out == tmp_path / "root" / "datasets" / "ds" / "extracted" == resource_location(entry, tmp_path / "root")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(MEMBERS)
    assert (out / "data" / "train" / "a.png").read_bytes() == MEMBERS["data/train/a.png"]
    assert _leftovers(out.parent) == []
    assert read_lock(lock)[f"ds/ds.{fmt}"]["sha256"] == _sha(blob)
    n = len(server.state.requests)
    assert ensure_resource(entry, tmp_path / "root", lock, **FAST) == out and len(server.state.requests) == n


@pytest.mark.parametrize(
    "blob_name",
    ["zip-dotdot", "tar-dotdot", "tar-absolute", "tar-symlink"],
)
def test_path_traversal_is_refused(tmp_path, blob_name):
    evil = {"../evil.txt": b"x", "ok.txt": b"y"}
    blobs = {
        "zip-dotdot": ("a.zip", _zip_bytes(evil)),
        "tar-dotdot": ("a.tar.gz", _tar_bytes(evil)),
        "tar-absolute": ("a.tar.gz", _tar_bytes({"/tmp/evil.txt": b"x"})),
        "tar-symlink": ("a.tar.gz", _tar_bytes({"ok.txt": b"y"}, links={"escape": "../../outside"})),
    }
    name, blob = blobs[blob_name]
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    archive = folder / name
    archive.write_bytes(blob)
    with pytest.raises(ArchiveError, match="refusing"):
        unpack_archive(archive, folder / "out")
    assert (
        not (folder / "out").exists()
        and not (folder / "evil.txt").exists()
        and not (tmp_path / "a" / "evil.txt").exists()
    )
    assert [p.name for p in folder.iterdir()] == [name]


def test_mirrors_are_tried_in_order(server, tmp_path):
    data = _payload(3000)
    server.state.files["m.bin"] = data
    entry = {
        "id": "m",
        "kind": "url",
        "path": "m",
        "filename": "m.bin",
        "urls": [_closed_port_url(), server.url("m.bin")],
        "md5": hashlib.md5(data).hexdigest(),
    }
    out = ensure_resource(entry, tmp_path, None, retries=0, backoff=0.01, timeout=2)
    assert out == tmp_path / "m" / "m.bin" and out.read_bytes() == data


def test_manual_resource_is_explained_then_picked_up(tmp_path):
    weights = b"weights-bytes"
    entry = {
        "id": "ckpt",
        "kind": "manual",
        "path": "checkpoints/x",
        "description": "a checkpoint behind a login",
        "page": "https://example.org/get-it",
        "accept": "the licence of the example",
        "instructions": "Log in, download model.pth and the images folder.",
        "files": [
            {"filename": "model.pth", "md5": hashlib.md5(weights).hexdigest()},
            {"filename": "images", "type": "dir", "min_files": 2},
        ],
    }
    root = tmp_path / "root"
    lock = tmp_path / "lock.yaml"
    with pytest.raises(ManualDownloadRequired) as exc:
        ensure_resource(entry, root, lock)
    msg = str(exc.value)
    base = root / "checkpoints" / "x"
    for needle in (
        str(base / "model.pth"),
        str(base / "images"),
        "https://example.org/get-it",
        "the licence of the example",
        "Log in",
    ):
        assert needle in msg
    assert exc.value.missing == [base / "model.pth", base / "images"]

    base.mkdir(parents=True)
    (base / "model.pth").write_bytes(b"wrong")
    with pytest.raises(ChecksumError, match="delete"):
        ensure_resource(entry, root, lock)
    (base / "model.pth").write_bytes(weights)
    (base / "images").mkdir()
    (base / "images" / "1.png").write_bytes(b"1")
    with pytest.raises(ManualDownloadRequired) as exc:  # too few files yet
        ensure_resource(entry, root, lock)
    assert exc.value.missing == [base / "images"]
    (base / "images" / "2.png").write_bytes(b"2")
    assert ensure_resource(entry, root, lock) == base


def test_manual_file_without_checksum_is_recorded_then_verified(tmp_path):
    entry = {
        "id": "g",
        "kind": "manual",
        "path": "g",
        "filename": "ckpt.pth",
        "page": "https://example.org",
        "accept": "terms",
        "instructions": "download it",
    }
    lock = tmp_path / "lock.yaml"
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "ckpt.pth").write_bytes(b"abc")
    assert ensure_resource(entry, tmp_path, lock) == tmp_path / "g" / "ckpt.pth"
    assert read_lock(lock)["g/ckpt.pth"]["sha256"] == _sha(b"abc")
    (tmp_path / "g" / "ckpt.pth").write_bytes(b"abd")
    with pytest.raises(ChecksumError):
        ensure_resource(entry, tmp_path, lock)


# ----------------------------------------------------------------------------- catalogue


def _site_source(package: str, relative: str) -> str:
    spec = importlib.util.find_spec(package)  # locates without importing (torch stays unloaded)
    return (Path(spec.submodule_search_locations[0]) / relative).read_text()


def test_catalogue_entries_are_complete():
    cat = load_catalogue()
    expected = {
        "score-sde-ffhq256",
        "edm-ffhq64",
        "edm-afhqv2-64",
        "edm-imagenet64",
        "drunet-color",
        "drunet-gray",
        "mnist",
        "ffhq",
        "afhqv2",
        "kohler2012",
        "bsds500",
        "bsd100",
        "realblur-j",
    }
    assert expected <= set(cat)
    for rid, entry in cat.items():
        assert entry["id"] == rid
        for key in ("kind", "description", "license", "path"):
            assert entry[key], (rid, key)
        files = entry.get("files") or [entry]
        for f in files:
            assert f.get("filename"), rid
            if entry["kind"] == "url":
                urls = f.get("urls") or [f.get("url")]
                assert urls and all(re.match(r"^https?://", u) for u in urls), rid
            if f.get("sha256") or f.get("md5"):
                assert entry.get("checksum_source"), f"{rid}: a pinned checksum must say where it comes from"
        if entry["kind"] == "manual":
            assert entry["page"].startswith("http") and entry["accept"] and entry["instructions"]
    assert cat["score-sde-ffhq256"]["kind"] == cat["ffhq"]["kind"] == cat["realblur-j"]["kind"] == "manual"


def test_catalogue_checksums_match_the_libraries_that_record_them():
    mnist_src = _site_source("torchvision", "datasets/mnist.py")
    for f in load_catalogue()["mnist"]["files"]:
        assert f'("{f["filename"]}", "{f["md5"]}")' in mnist_src
        assert any(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in f["urls"])
    kohler_src = _site_source("deepinv", "datasets/kohler.py")
    for f in load_catalogue()["kohler2012"]["files"]:
        assert f'"{f["filename"]}": "{f["md5"]}"' in kohler_src and f'"{f["url"]}"' in kohler_src
    drunet_src = _site_source("deepinv", "models/drunet.py") + _site_source("deepinv", "models/utils.py")
    for rid in ("drunet-color", "drunet-gray"):
        name = load_catalogue()[rid]["files"][0]["filename"]
        assert name in drunet_src and "https://huggingface.co/deepinv/" in drunet_src
    assert "7bfe17302a219367694200a61ce8256c" in _site_source("deepinv", "datasets/bsds500.py")


def test_malformed_catalogue_is_rejected(tmp_path):
    bad = {
        "resources": [
            {
                "id": "x",
                "kind": "url",
                "description": "d",
                "license": "l",
                "path": "x",
                "filename": "x.bin",
                "url": "ftp://example.org/x.bin",
            }
        ]
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(CatalogueError, match="http"):
        load_catalogue(path)
    bad["resources"][0]["url"] = "https://example.org/x.bin"
    bad["resources"][0]["md5"] = "nothex"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(CatalogueError, match="md5"):
        load_catalogue(path)


def test_a_site_mirror_replaces_addresses_and_checksums_only(tmp_path):
    packaged = load_catalogue()
    assert load_catalogue_with_mirror(None) == packaged
    entry = copy.deepcopy(packaged["edm-ffhq64"])
    entry["files"][0]["url"] = "https://mirror.invalid/edm-ffhq-64x64-uncond-ve.pkl"
    entry["files"][0]["sha256"] = "0" * 64
    mirror = tmp_path / "mirror.yaml"
    mirror.write_text(yaml.safe_dump({"resources": [entry]}))
    merged = load_catalogue_with_mirror(mirror)
    assert merged["edm-ffhq64"] == entry and merged["mnist"] == packaged["mnist"] and merged.keys() == packaged.keys()
    moved = dict(entry, path="elsewhere")
    mirror.write_text(yaml.safe_dump({"resources": [moved]}))
    with pytest.raises(CatalogueError, match="'edm-ffhq64' puts its files elsewhere"):
        load_catalogue_with_mirror(mirror)
    mirror.write_text(yaml.safe_dump({"resources": [dict(entry, id="no-such-thing")]}))
    with pytest.raises(CatalogueError, match="unknown resource 'no-such-thing'"):
        load_catalogue_with_mirror(mirror)


# ----------------------------------------------------------------------------- the listing


def _listed(out: str) -> dict[str, str]:
    """resource id -> status, from the listing's table."""
    rows = re.findall(r"^(\S+)\s+(url|manual)\s+(present|absent|incomplete|partial download)\s", out, flags=re.M)
    return {rid: status for rid, _, status in rows}


def test_listing_says_what_a_configuration_needs_and_what_is_present(tmp_path, capsys):
    from conftest import REPO
    from test_paper_scale import _used_resources

    from prior_landscape.io.downloads import main, resource_outputs

    paper, root = str(REPO / "config/paper.yaml"), tmp_path / "res"
    catalogue = load_catalogue()
    needed = _used_resources()  # every resource id config/paper.yaml names (test_paper_scale's own reading)
    assert main(["--config", paper, "--root", str(root)]) == 1  # nothing there yet
    out = capsys.readouterr().out
    listed = _listed(out)
    assert set(listed) == set(needed) | {"kohler2012-kernels"} and set(listed.values()) == {"absent"}
    assert f"needs {len(needed)} resources under {root}: 0 present, {len(needed)} not" in out
    assert "kohler2012-kernels" in out and "optional" in out and "priors.ffhq256.resource" in out
    assert "snakemake --configfile" in out and "downloads" in out

    def place(rid):
        for path, is_dir in resource_outputs(catalogue[rid], root):
            if is_dir:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"stand-in")

    place(needed[0])
    assert main(["--config", paper, "--root", str(root)]) == 1
    listed = _listed(capsys.readouterr().out)
    assert listed[needed[0]] == "present" and all(listed[r] == "absent" for r in needed[1:])
    for rid in needed[1:]:
        place(rid)
    assert main(["--config", paper, "--root", str(root)]) == 0  # every needed resource in place
    out = capsys.readouterr().out
    assert f"{len(needed)} present, 0 not" in out and _listed(out)["kohler2012-kernels"] == "absent"

    # the demo needs nothing; without --config, the whole catalogue, each marked under --root
    assert main(["--config", str(REPO / "config.yaml"), "--root", str(root)]) == 0
    assert "needs no downloaded resource" in capsys.readouterr().out
    assert main(["--root", str(root)]) == 0
    listed = _listed(capsys.readouterr().out)
    assert set(listed) == set(catalogue)
    assert {r for r, status in listed.items() if status == "present"} == set(needed)


def test_listing_names_a_bad_configuration(tmp_path, capsys):
    from prior_landscape.io.downloads import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"priors": {"net": {"kind": "edm", "resource": "no-such-thing"}}}))
    assert main(["--config", str(bad)]) == 2
    assert "priors.net.resource: unknown resource 'no-such-thing'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
