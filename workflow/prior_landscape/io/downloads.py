"""Downloading the paper's checkpoints and datasets: verified, resumable, atomic.

Everything the paper-scale workflow needs from outside the repository (score
networks, DRUNet weights, MNIST, FFHQ, AFHQ, Köhler, BSDS, RealBlur, …) is
listed in ``resources.yaml`` beside this module (:func:`load_catalogue`), and
obtained with :func:`ensure_resource`, which handles two kinds of source:

``url``
    An HTTP(S) address the workflow downloads itself (:func:`fetch`): retries
    with exponential backoff on connection errors, timeouts, 5xx answers and
    truncated transfers; resumes a partial download kept in ``<dest>.part``
    with a ``Range`` request (and starts again from zero when a server ignores
    ``Range`` or answers 416); then, optionally, unpacks a zip / tar archive
    into a folder (extracted beside it and renamed into place; members that
    would land outside the folder are refused).
``manual``
    A source that needs a login, a licence acceptance or a web interface that
    cannot be scripted (Google Drive folders, FFHQ, ImageNet, RealBlur). The
    call checks whether the expected files are already at their documented
    place; if not it raises :class:`ManualDownloadRequired` saying which files,
    from which page, what to accept and exactly where to put them. Once they
    are placed, the same call picks them up.

Checksum policy
---------------
* A **pinned** checksum (``sha256`` or ``md5`` in the catalogue) is used where
  the source publishes one or a well-known library records one (torchvision's
  MNIST md5s, deepinv's Köhler and BSDS500 md5s). It is verified on every
  download and whenever an existing file is picked up.
* Otherwise the **lock file** (``workflow/resources.lock.yaml`` by default, a
  YAML or JSON mapping ``key -> {url, sha256, size}`` kept under version
  control) is used: the first download records the sha256 and size of what it
  received (trust on first use, atomic rewrite of the lock file); every later
  download, and every existing file, is verified against that record. A
  source that changed its content is then an error, not a silent change of the
  experiment's input. To accept a deliberate change, delete the key from the
  lock file.
* Trust on first use trusts only a file shown to be whole and genuine: before
  its digest is recorded, the file must not be an HTML page (a login, quota or
  error page served with status 200), and must pass the check of its format
  (zip and torch ``.pth``: central directory and every member's CRC;
  gzip/bzip2/xz and tar: decompressed to the verified end; pickle: its opcodes
  up to STOP and nothing after). A file of another format that arrived without
  a known length (no Content-Length: a truncated transfer looks complete) is
  downloaded a second time and recorded only if both transfers agree. A file
  that fails is deleted and not recorded; a file already at ``dest`` that fails
  is kept and reported, never recorded.
* On any checksum failure the downloaded bytes are deleted (no ``dest``, no
  ``.part``) and :class:`ChecksumError` names the file, the expected and the
  actual digest. A file already at ``dest`` that fails verification is never
  overwritten: the error says to delete it.
* A whole download (every attempt and wait) has an overall deadline
  (``deadline``, 12 hours by default): a server that trickles bytes slowly
  enough never to hit the socket timeout is given up on; what was received is
  kept in ``<dest>.part`` for the next run to resume.

A file is renamed onto ``dest`` only after verification, so a file at its
final path is always complete and checked.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import math
import os
import re
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from prior_landscape.io.unpacking import ArchiveError, archive_format, interprocess_lock, iter_tar, safe_unpack

log = logging.getLogger(__name__)

CATALOGUE_PATH = Path(__file__).resolve().with_name("resources.yaml")
DEFAULT_LOCK_FILE = Path(__file__).resolve().parents[2] / "resources.lock.yaml"
USER_AGENT = "prior-landscape-downloader/1 (+python urllib)"
KINDS = ("url", "manual")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_MAX_BACKOFF_S = 60.0
DEFAULT_DEADLINE_S = 12 * 3600.0  # one fetch, every attempt included (the largest file: ~7 GB)

__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "ManualDownloadRequired",
    "CatalogueError",
    "fetch",
    "ensure_resource",
    "resource_location",
    "resource_outputs",
    "load_catalogue",
    "load_catalogue_with_mirror",
    "read_lock",
    "file_digest",
    "unpack_archive",
]


# ----------------------------------------------------------------------------- errors


class DownloadError(RuntimeError):
    """A source could not be downloaded (unreachable, refused, HTTP error, …)."""

    def __init__(self, message: str, *, url: str | None = None, dest: Path | None = None):
        super().__init__(message)
        self.url = url
        self.dest = dest


class ChecksumError(RuntimeError):
    """A downloaded or existing file does not have the expected digest."""

    def __init__(self, message: str, *, path: Path, algorithm: str, expected: str, actual: str, existing: bool):
        super().__init__(message)
        self.path = path
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        self.existing = existing  # True: a file already at dest (kept); False: a download (deleted)


class ManualDownloadRequired(RuntimeError):
    """Files that must be obtained by hand (login, licence, web interface) are missing."""

    def __init__(self, message: str, *, missing: list[Path]):
        super().__init__(message)
        self.missing = missing


class CatalogueError(ValueError):
    """The resource catalogue is malformed."""


class _Transient(Exception):
    """Internal: a failure worth retrying."""


class _Restart(Exception):
    """Internal: drop the partial file and start again without waiting."""


# ----------------------------------------------------------------------------- helpers


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def _digests(path: Path, algorithms: set[str], chunk_size: int = 1 << 20) -> dict[str, str]:
    hs = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


_interprocess_lock = interprocess_lock  # one lock for downloads and unpacking (io/unpacking.py)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- lock file

_LOCK_HEADER = (
    "# sha256 and size of downloaded files whose source publishes no checksum,\n"
    "# recorded by prior_landscape.io.downloads on first download and verified on every\n"
    "# later one. Keep this file under version control. To accept a deliberate change\n"
    "# of a source, delete its key here and download again.\n"
)


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def read_lock(lock_file: str | Path) -> dict[str, dict]:
    """The lock file's mapping ``key -> {url, sha256, size}``; empty if the file does not exist."""
    lock_file = Path(lock_file)
    if not lock_file.exists():
        return {}
    text = lock_file.read_text(encoding="utf-8")
    data = json.loads(text or "{}") if _is_json(lock_file) else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogueError(f"lock file {lock_file} must hold a mapping key -> {{url, sha256, size}}")
    return data


def _record_lock(lock_file: Path, key: str, record: dict) -> None:
    with _interprocess_lock(lock_file):
        data = read_lock(lock_file)
        data[key] = record
        data = dict(sorted(data.items()))
        if _is_json(lock_file):
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        else:
            text = _LOCK_HEADER + yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
        _atomic_write_text(lock_file, text)
    log.info("recorded %s in %s: sha256 %s, %s bytes", key, lock_file, record["sha256"], record["size"])


# ----------------------------------------------------------------------------- verification


def _expected(
    sha256: str | None, md5: str | None, lock_file: Path | None, lock_key: str | None
) -> tuple[dict[str, str], int | None, str]:
    """(algorithm -> expected digest, expected size or None, where the expectation comes from)."""
    pinned = {a: v.lower() for a, v in (("sha256", sha256), ("md5", md5)) if v}
    if pinned:
        return pinned, None, "pinned in the catalogue"
    if lock_file is not None and lock_key:
        rec = read_lock(lock_file).get(lock_key)
        if rec:
            return (
                {"sha256": str(rec["sha256"]).lower()},
                int(rec["size"]) if rec.get("size") is not None else None,
                (f"recorded in {lock_file} under {lock_key!r}"),
            )
    return {}, None, ""


def _check(
    path: Path,
    expected: dict[str, str],
    size: int | None,
    origin: str,
    *,
    existing: bool,
    url: str | None,
    lock_key: str | None,
) -> str:
    """Verify ``path``; return its sha256. Raise ChecksumError (deleting it unless ``existing``)."""
    digests = _digests(path, set(expected) | {"sha256"})
    actual_size = path.stat().st_size
    failure = None
    if size is not None and actual_size != size:
        failure = ("size", str(size), str(actual_size))
    for algorithm, value in expected.items():
        if failure is None and digests[algorithm] != value:
            failure = (algorithm, value, digests[algorithm])
    if failure is None:
        return digests["sha256"]
    algorithm, exp, act = failure
    what = f"{algorithm} {exp}, got {act}" if algorithm != "size" else f"{exp} bytes, got {act} bytes"
    if existing:
        msg = (
            f"{path} exists but fails verification: expected {what} ({origin}). It was left untouched. "
            f"If it is a stale or corrupted copy, delete it ({path}) and run again to download it"
            + (f" from {url}" if url else "")
            + "."
        )
    else:
        path.unlink(missing_ok=True)
        msg = (
            f"checksum mismatch for {path.name}"
            + (f" downloaded from {url}" if url else "")
            + f": expected {what} ({origin}). The downloaded data was deleted."
        )
        if "lock" not in origin or not lock_key:
            msg += " The source may be corrupted or a proxy may have altered it; try again later or another mirror."
        else:
            msg += (
                f" The source now serves different content than when it was first recorded; if that change is"
                f" expected, delete the key {lock_key!r} from the lock file and run again."
            )
    raise ChecksumError(msg, path=path, algorithm=algorithm, expected=exp, actual=act, existing=existing)


# ----------------------------------------------------------------------------- progress


class _Progress:
    def __init__(self, name: str, callback: Callable[[int, int | None], Any] | None):
        self.name = name
        self.callback = callback
        self.next_fraction = 0.1
        self.next_bytes = 100 << 20

    def __call__(self, done: int, total: int | None) -> None:
        if self.callback is not None:
            self.callback(done, total)
        if total:
            while done >= self.next_fraction * total and self.next_fraction <= 1.0 + 1e-9:
                log.info("%s: %3.0f%% (%s of %s)", self.name, 100 * self.next_fraction, _human(done), _human(total))
                self.next_fraction += 0.1
        elif done >= self.next_bytes:
            log.info("%s: %s", self.name, _human(done))
            self.next_bytes += 100 << 20


# ----------------------------------------------------------------------------- fetch

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.I)


class _DeadlinePassed(Exception):
    """Internal: the overall deadline of a fetch passed."""


def _transfer(
    url: str,
    part: Path,
    *,
    timeout: float,
    chunk_size: int,
    expected_size: int | None,
    progress: _Progress,
    deadline_at: float = math.inf,
) -> bool:
    """One attempt: (re)start or resume ``part``; True when the file's total length was known
    (so that a short transfer is seen as truncated). Raises _Transient, _Restart, _DeadlinePassed
    or DownloadError."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None:
        if offset == expected_size:
            return True
        if offset > expected_size:
            raise _Restart(f"partial file larger ({offset} B) than the recorded size ({expected_size} B)")
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    remaining = deadline_at - time.monotonic()
    if remaining <= 0:
        raise _DeadlinePassed()
    try:
        response = urllib.request.urlopen(request, timeout=min(timeout, max(remaining, 0.01)))
    except urllib.error.HTTPError as err:
        with contextlib.closing(err):
            if err.code == 416 and offset:
                m = _UNSATISFIED_RANGE.search(err.headers.get("Content-Range", "") or "")
                if m and int(m.group(1)) == offset:
                    return True  # the partial file is already complete
                raise _Restart(f"server refused the range {offset}- (HTTP 416)") from err
            if err.code in _RETRY_STATUS:
                raise _Transient(f"HTTP {err.code} {err.reason}") from err
            raise DownloadError(f"HTTP {err.code} {err.reason}", url=url) from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Transient(f"{type(reason).__name__}: {reason}") from err

    with contextlib.closing(response):
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            m = _CONTENT_RANGE.search(response.headers.get("Content-Range", "") or "")
            if not m or int(m.group(1)) != offset:
                raise _Restart(f"server answered a different range ({response.headers.get('Content-Range')!r})")
            total = int(m.group(3)) if m.group(3) != "*" else (offset + length if length is not None else None)
            mode = "ab"
            done = offset
        else:
            if offset:
                log.info("%s: server ignored the Range request; downloading again from the start", url)
            total = length
            mode = "wb"
            done = 0
        if total is None:
            total = expected_size
        progress(done, total)
        try:
            with open(part, mode) as fh:
                while True:
                    # read1: whatever has arrived (read(n) would wait for n bytes from a trickling server)
                    block = response.read1(chunk_size)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    progress(done, total)
                    if time.monotonic() > deadline_at:
                        fh.flush()
                        raise _DeadlinePassed()
                fh.flush()
                os.fsync(fh.fileno())
        except (http.client.HTTPException, OSError) as err:
            raise _Transient(f"transfer interrupted after {done} bytes: {type(err).__name__}: {err}") from err
        if total is not None and done < total:
            raise _Transient(f"transfer truncated: {done} of {total} bytes")
        if total is not None and done > total:
            raise _Restart(f"received {done} bytes, more than the announced {total}")
        return total is not None


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    lock_file: str | Path | None = None,
    lock_key: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60,
    deadline: float | None = DEFAULT_DEADLINE_S,
    chunk_size: int = 1 << 20,
    progress: Callable[[int, int | None], Any] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, verified, resumable and atomic; return ``dest``.

    ``sha256`` / ``md5``: a pinned digest (verified). Without one, ``lock_file`` and
    ``lock_key`` record the sha256 and size on first download, once the file is shown
    whole and genuine (see the module docstring), and verify them later.
    A ``dest`` that already exists is verified and returned without downloading; if it
    fails verification it is kept and :class:`ChecksumError` says to delete it.
    ``retries``: further attempts after the first, waiting ``backoff * 2**k`` seconds.
    ``timeout``: seconds without data before an attempt fails; ``deadline``: seconds for
    the whole fetch (None: no limit). ``progress(done_bytes, total_bytes_or_None)`` is
    called as data arrives.
    """
    dest = Path(dest)
    lock_file = Path(lock_file) if lock_file is not None else None
    part = dest.with_name(dest.name + ".part")
    first = dest.with_name(dest.name + ".part.first")  # the first of two transfers that must agree
    dest.parent.mkdir(parents=True, exist_ok=True)
    deadline_at = time.monotonic() + deadline if deadline is not None else math.inf

    with _interprocess_lock(dest):
        first.unlink(missing_ok=True)  # left by a killed run
        expected, expected_size, origin = _expected(sha256, md5, lock_file, lock_key)
        if dest.exists():
            if not expected and (lock_file is None or not lock_key):
                return dest  # nothing to verify against
            if not expected:  # about to be trusted on first use: only if whole and genuine
                problem = _first_use_problem(dest)
                if problem:
                    raise ChecksumError(
                        f"{dest} exists but {problem}; it was left untouched and not recorded in {lock_file}. "
                        f"Delete it ({dest}) and run again to download it from {url}.",
                        path=dest,
                        algorithm="format",
                        expected="a complete file",
                        actual=problem,
                        existing=True,
                    )
            digest = _check(dest, expected, expected_size, origin, existing=True, url=url, lock_key=lock_key)
            if not expected and lock_file is not None and lock_key:
                _record_lock(lock_file, lock_key, {"url": url, "sha256": digest, "size": dest.stat().st_size})
            log.debug("%s already present and verified", dest)
            return dest

        report = _Progress(dest.name, progress)
        attempts = max(0, int(retries)) + 1
        log.info("downloading %s -> %s", url, dest)

        def download() -> bool:
            """Into ``part``, with retries; True when the total length was known."""
            last_error, restarts, attempt = "", 0, 0
            while True:
                try:
                    return _transfer(
                        url,
                        part,
                        timeout=timeout,
                        chunk_size=chunk_size,
                        expected_size=expected_size,
                        progress=report,
                        deadline_at=deadline_at,
                    )
                except _Restart as err:
                    part.unlink(missing_ok=True)
                    restarts += 1
                    last_error = str(err)
                    log.info("%s: %s; starting again from zero", url, err)
                    if restarts > attempts:
                        raise _download_error(url, dest, part, attempt + 1, last_error) from None
                    continue
                except _Transient as err:
                    attempt += 1
                    last_error = str(err)
                    if attempt >= attempts:
                        raise _download_error(url, dest, part, attempt, last_error) from err.__cause__
                    wait = min(_MAX_BACKOFF_S, backoff * 2 ** (attempt - 1))
                    if time.monotonic() + wait > deadline_at:
                        raise _deadline_error(url, dest, part, deadline, last_error) from None
                    log.warning("%s: %s (attempt %d of %d); retrying in %.2g s", url, err, attempt, attempts, wait)
                    time.sleep(wait)
                except _DeadlinePassed:
                    raise _deadline_error(url, dest, part, deadline, last_error) from None
                except DownloadError as err:
                    raise _download_error(url, dest, part, attempt + 1, str(err), transient=False) from err

        length_known = download()
        if not expected:
            _establish_first_download(url, dest, part, first, length_known, download)
        digest = _check(part, expected, expected_size, origin, existing=False, url=url, lock_key=lock_key)
        size = part.stat().st_size
        os.replace(part, dest)
        if not expected and lock_file is not None and lock_key:
            _record_lock(lock_file, lock_key, {"url": url, "sha256": digest, "size": size})
        log.info("downloaded %s (%s, sha256 %s)", dest, _human(size), digest)
        return dest


def _establish_first_download(url: str, dest: Path, part: Path, first: Path, length_known: bool, download) -> None:
    """Before trusting ``part`` on first use: refuse an HTML page or a file that fails its format's
    check; a file of a format with no check that came without a known length is downloaded
    again, and accepted only if both transfers agree. Failures delete the data and raise
    DownloadError (nothing at ``dest``, nothing recorded)."""
    problem = _first_use_problem(part)
    if problem:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"refusing {dest.name} downloaded from {url}: {problem}. Nothing was kept or recorded. Check the address "
            f"(it may need a login or have moved) or download the file by hand and place it at {dest}.",
            url=url,
            dest=dest,
        )
    if length_known or _format_check(part) is not None:
        return
    log.warning("%s: no length announced and no format check for %s; downloading it again to compare", url, dest.name)
    os.replace(part, first)
    try:
        download()
        if file_digest(first) != file_digest(part):
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"refusing {dest.name} from {url}: the server announced no length and two transfers gave different "
                "contents (a truncated or changing file); nothing was kept or recorded. Try again later, or "
                f"download it by hand and place it at {dest}.",
                url=url,
                dest=dest,
            )
    finally:
        first.unlink(missing_ok=True)


def _deadline_error(url: str, dest: Path, part: Path, deadline: float | None, last: str) -> DownloadError:
    msg = (
        f"could not download {url} to {dest}: the download took longer than its overall deadline of "
        f"{deadline:g} s (a server sending too slowly{'; last error: ' + last if last else ''})."
    )
    if part.exists() and part.stat().st_size:
        msg += f" {_human(part.stat().st_size)} received are kept in {part}; the next run resumes from there."
    return DownloadError(msg, url=url, dest=dest)


# ----------------------------------------------------------------------------- first-use checks

_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


def _real_name(path: Path) -> str:
    """The name of the file being downloaded into ``path`` (``x.zip`` for ``x.zip.part.first``)."""
    name = path.name
    for suffix in (".first", ".part"):
        name = name.removesuffix(suffix)
    return name


def _first_use_problem(path: Path) -> str | None:
    """Why ``path`` cannot be trusted on first use (an HTML page, a broken file of its format), or None."""
    name = _real_name(path)
    if not name.lower().endswith((".html", ".htm", ".xml")):
        with open(path, "rb") as fh:
            head = fh.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if head.startswith(_HTML_STARTS):
            return (
                "it is an HTML or XML page, not the file (a login, quota or error page served as if it were the file?)"
            )
    if not path.stat().st_size:
        return "it is empty"
    check = _format_check(path)
    return check(path) if check is not None else None


def _format_check(path: Path):
    """The check of ``path``'s format (a function returning a problem or None), or None when
    its format has none here."""
    low = _real_name(path).lower()
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if low.endswith((".zip", ".npz")) or (low.endswith((".pth", ".pt")) and magic[:2] == b"PK"):
        return _check_zip
    if low.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return _check_tar
    if low.endswith((".gz", ".bz2", ".xz")):
        return _check_compressed
    if low.endswith((".pkl", ".pickle")):
        return _check_pickle
    return None


def _check_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every member: CRC-32 and length
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as err:
        return f"it is not a complete zip archive ({type(err).__name__}: {err})"
    return f"its member {bad!r} is damaged (CRC mismatch)" if bad else None


def _check_tar(path: Path) -> str | None:
    try:
        for _member, data in iter_tar(path):
            while data is not None and data.read(1 << 20):
                pass
    except ArchiveError as err:
        return f"it is not a complete tar archive ({err})"
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        return f"it is not a complete tar archive ({type(err).__name__}: {err})"
    return None


def _check_compressed(path: Path) -> str | None:
    import bz2
    import gzip
    import lzma

    suffix = Path(_real_name(path)).suffix.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
    try:
        with opener(path, "rb") as fh:  # to the end: the stream's checksum and length are verified there
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        return f"it is not a complete {suffix} stream ({type(err).__name__}: {err})"
    return None


def _check_pickle(path: Path) -> str | None:
    import pickletools

    try:
        with open(path, "rb") as fh:
            for _ in pickletools.genops(fh):  # reads opcodes (never runs them) up to STOP
                pass
            trailing = fh.read(1)
    except ValueError as err:
        return f"it is not a complete pickle ({err})"
    return "it has data after the end of its pickle" if trailing else None


def _download_error(
    url: str, dest: Path, part: Path, attempts: int, last: str, transient: bool = True
) -> DownloadError:
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}" if transient else "(not retried)"
    msg = (
        f"could not download {url} to {dest} {tries}; last error: {last}. "
        f"Check the address and the network (proxy, firewall, offline node), or download the file by hand "
        f"(e.g. in a browser or with `curl -L -o {dest} '{url}'`) and place it at {dest}; it will be verified and "
        f"used by the next run."
    )
    if part.exists() and part.stat().st_size:
        msg += f" {_human(part.stat().st_size)} already received are kept in {part}; the next run resumes from there."
    return DownloadError(msg, url=url, dest=dest)


# ----------------------------------------------------------------------------- archives


def _archive_format(name: str) -> str:
    return archive_format(name)


def _archive_stem(name: str) -> str:
    low = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def unpack_archive(archive: str | Path, target: str | Path, **limits) -> Path:
    """Unpack ``archive`` (zip or tar, possibly compressed) into the folder ``target``, atomically.

    An existing ``target`` is returned as is (unpacked folders appear only complete).
    Otherwise :func:`prior_landscape.io.unpacking.safe_unpack` writes it: members
    into a hidden folder beside ``target`` renamed into place once complete and
    verified; absolute paths, ``..``, links, special files, a damaged or truncated
    archive and one that unpacks past the size limits (``limits``: ``max_bytes``,
    ``max_ratio``, ``max_members``) are refused with :class:`ArchiveError`, and then
    nothing is created. Leftovers of a killed unpack of ``target`` are removed.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        return target
    try:
        safe_unpack(archive, target, **limits)
    except ArchiveError as err:
        raise ArchiveError(f"{err}. Delete {archive} and run again to download it afresh.") from None
    log.info("unpacked %s into %s", archive, target)
    return target


# ----------------------------------------------------------------------------- catalogue entries


def _file_specs(entry: dict) -> list[dict]:
    """The entry's files, each normalised to {filename, urls, sha256, md5, unpack, keep_archive, type, min_files}."""
    raw = entry.get("files")
    if raw is None:
        raw = [
            {
                k: entry[k]
                for k in ("url", "urls", "filename", "sha256", "md5", "unpack", "keep_archive", "type", "min_files")
                if k in entry
            }
        ]
    specs = []
    for item in raw:
        urls = list(item.get("urls") or ([item["url"]] if item.get("url") else []))
        filename = item.get("filename")
        if not filename and urls:
            filename = PurePosixPath(urllib.parse.urlparse(urls[0]).path).name
        unpack = item.get("unpack")
        if unpack is True:
            unpack = {"into": _archive_stem(filename or "")}
        elif isinstance(unpack, str):
            unpack = {"into": unpack}
        elif isinstance(unpack, dict):
            unpack = {"into": unpack.get("into") or _archive_stem(filename or "")}
        elif unpack in (None, False):
            unpack = None
        specs.append(
            {
                "filename": filename,
                "urls": urls,
                "sha256": item.get("sha256"),
                "md5": item.get("md5"),
                "unpack": unpack,
                "keep_archive": bool(item.get("keep_archive", True)),
                "type": item.get("type", "file"),
                "min_files": int(item.get("min_files", 1)),
            }
        )
    return specs


def _relative(path: str, what: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts:
        raise CatalogueError(f"{what} {path!r} must be a relative path without '..'")
    return pure


def resource_location(entry: dict, root: str | Path) -> Path:
    """Where ``ensure_resource`` returns the resource: its file, its unpacked folder, or its folder."""
    base = Path(root) / _relative(entry.get("path", entry["id"]), f"{entry['id']}: path")
    specs = _file_specs(entry)
    if len(specs) == 1:
        spec = specs[0]
        return base / (spec["unpack"]["into"] if spec["unpack"] else spec["filename"])
    return base


def resource_outputs(entry: dict, root: str | Path) -> list[tuple[Path, bool]]:
    """What ``ensure_resource`` leaves under ``root``, one ``(path, is_folder)`` per file of the
    entry: the file, its unpacked folder, or the folder a manual ``type: dir`` file names.
    These are the outputs of the entry's download rule (none nested in another's)."""
    base = Path(root) / _relative(entry.get("path", entry["id"]), f"{entry['id']}: path")
    out = []
    for spec in _file_specs(entry):
        if spec["unpack"]:
            out.append((base / spec["unpack"]["into"], True))
        else:
            out.append((base / spec["filename"], spec["type"] == "dir"))
    return out


def resource_root(entry: dict, output: str | Path) -> Path:
    """The download root under which ``entry``'s first output (:func:`resource_outputs`) is ``output``."""
    rel = resource_outputs(entry, "")[0][0].parts
    out = Path(output).parts
    if len(out) < len(rel) or out[len(out) - len(rel) :] != rel:
        raise ValueError(f"{output} is not where resource {entry['id']!r} is placed ({Path(*rel)} under a root)")
    return Path(*out[: len(out) - len(rel)]) if len(out) > len(rel) else Path(".")


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def ensure_resource(
    entry: dict,
    root: str | Path,
    lock_file: str | Path | None = DEFAULT_LOCK_FILE,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60,
    deadline: float | None = DEFAULT_DEADLINE_S,
    progress: Callable[[int, int | None], Any] | None = None,
) -> Path:
    """Make the catalogue ``entry`` available under ``root`` and return its location.

    The location is ``root/<entry path>/<filename>`` for a single file, the unpacked
    folder for a single archive with ``unpack``, and ``root/<entry path>`` for an entry
    with several files. ``kind: url`` entries are downloaded (mirrors tried in order),
    verified and unpacked; ``kind: manual`` entries are looked up and verified, or
    :class:`ManualDownloadRequired` explains how to obtain them.
    """
    if "id" not in entry:
        raise CatalogueError(f"resource entry without an id: {entry!r}")
    rid = entry["id"]
    kind = entry.get("kind")
    if kind not in KINDS:
        raise CatalogueError(f"{rid}: kind must be one of {KINDS}, not {kind!r}")
    root = Path(root)
    base = root / _relative(entry.get("path", rid), f"{rid}: path")
    lock_file = Path(lock_file) if lock_file is not None else None
    specs = _file_specs(entry)
    missing: list[Path] = []

    for spec in specs:
        dest = base / spec["filename"]
        target = base / spec["unpack"]["into"] if spec["unpack"] else None
        if target is not None and target.exists():
            continue  # unpacked folders appear only complete (atomic rename)
        lock_key = f"{rid}/{spec['filename']}"
        if spec["type"] == "dir":
            if not dest.is_dir():
                missing.append(dest)
            elif (n := _count_files(dest)) < spec["min_files"]:
                missing.append(dest)
                log.warning("%s holds %d files, fewer than the %d expected", dest, n, spec["min_files"])
            continue
        if kind == "manual":
            if not dest.exists():
                missing.append(dest)
                continue
            expected, size, origin = _expected(spec["sha256"], spec["md5"], lock_file, lock_key)
            digest = _check(dest, expected, size, origin, existing=True, url=None, lock_key=lock_key)
            if not expected and lock_file is not None:
                _record_lock(
                    lock_file,
                    lock_key,
                    {"url": entry.get("page", "manual"), "sha256": digest, "size": dest.stat().st_size},
                )
        else:
            _fetch_mirrors(
                spec,
                dest,
                lock_file,
                lock_key,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                deadline=deadline,
                progress=progress,
            )
        if target is not None:
            unpack_archive(dest, target)
            if not spec["keep_archive"]:
                dest.unlink(missing_ok=True)

    if missing:
        raise ManualDownloadRequired(_manual_message(entry, missing, specs, base), missing=missing)
    return resource_location(entry, root)


def _fetch_mirrors(spec: dict, dest: Path, lock_file: Path | None, lock_key: str, **kwargs) -> Path:
    errors = []
    for i, url in enumerate(spec["urls"]):
        try:
            return fetch(
                url, dest, sha256=spec["sha256"], md5=spec["md5"], lock_file=lock_file, lock_key=lock_key, **kwargs
            )
        except DownloadError as err:
            errors.append(err)
        except ChecksumError as err:
            if err.existing or i == len(spec["urls"]) - 1:
                raise
            errors.append(err)
        if i < len(spec["urls"]) - 1:
            log.warning("%s failed; trying the mirror %s", spec["urls"][i], spec["urls"][i + 1])
    if not errors:
        raise CatalogueError(f"{lock_key}: no URL to download from")
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError(
        f"every address for {dest} failed:\n" + "\n".join(f"  - {e}" for e in errors), url=spec["urls"][-1], dest=dest
    )


def _manual_message(entry: dict, missing: list[Path], specs: list[dict], base: Path) -> str:
    lines = [f"{entry['id']}: {entry.get('description', '').strip()}".rstrip(": ")]
    lines.append("These files must be obtained by hand and are not in place yet:")
    by_path = {base / s["filename"]: s for s in specs}
    for path in missing:
        spec = by_path.get(path, {})
        if spec.get("type") == "dir":
            lines.append(f"  - folder {path}/ (at least {spec.get('min_files', 1)} files inside)")
        else:
            lines.append(f"  - {path}")
    if entry.get("page"):
        lines.append(f"Where: {entry['page']}")
    if entry.get("accept"):
        lines.append(f"What to accept: {str(entry['accept']).strip()}")
    if entry.get("instructions"):
        lines.append("How: " + " ".join(str(entry["instructions"]).split()))
    lines.append(
        f"Put them exactly at the path(s) above (folder {base}); the same command then picks them up and verifies them."
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- catalogue


_REQUIRED = ("id", "kind", "description", "license", "path")
_HEX = {"sha256": 64, "md5": 32}


def load_catalogue(path: str | Path | None = None) -> dict[str, dict]:
    """The resource catalogue (``resources.yaml`` by default) as ``{id: entry}``, validated."""
    path = Path(path) if path is not None else CATALOGUE_PATH
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries = data.get("resources") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CatalogueError(f"{path}: expected a top-level key 'resources' holding a list of entries")
    out: dict[str, dict] = {}
    for entry in entries:
        rid = entry.get("id") if isinstance(entry, dict) else None
        where = f"{path}: entry {rid or entry!r}"
        if not isinstance(entry, dict):
            raise CatalogueError(f"{where} is not a mapping")
        for key in _REQUIRED:
            if not entry.get(key):
                raise CatalogueError(f"{where}: missing field {key!r}")
        if rid in out:
            raise CatalogueError(f"{where}: duplicate id")
        if entry["kind"] not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {KINDS}")
        _relative(entry["path"], f"{where}: path")
        specs = _file_specs(entry)
        if not specs:
            raise CatalogueError(f"{where}: no files")
        for spec in specs:
            if not spec["filename"]:
                raise CatalogueError(f"{where}: a file without filename")
            _relative(spec["filename"], f"{where}: filename")
            for algorithm, n in _HEX.items():
                value = spec[algorithm]
                if value is not None and not re.fullmatch(f"[0-9a-fA-F]{{{n}}}", str(value)):
                    raise CatalogueError(f"{where}: {algorithm} of {spec['filename']} is not {n} hex digits")
            if spec["type"] not in ("file", "dir"):
                raise CatalogueError(f"{where}: type of {spec['filename']} must be 'file' or 'dir'")
            if entry["kind"] == "url":
                if not spec["urls"]:
                    raise CatalogueError(f"{where}: {spec['filename']} has no url")
                for url in spec["urls"]:
                    if not re.match(r"^https?://[^/\s]+", str(url)):
                        raise CatalogueError(f"{where}: {url!r} is not an http(s) URL")
                if spec["type"] == "dir":
                    raise CatalogueError(f"{where}: a url entry cannot download a folder ({spec['filename']})")
            if spec["unpack"]:
                _archive_format(spec["filename"])
                _relative(spec["unpack"]["into"], f"{where}: unpack.into")
        if entry["kind"] == "manual":
            for key in ("page", "accept", "instructions"):
                if not entry.get(key):
                    raise CatalogueError(f"{where}: a manual entry needs {key!r}")
        out[rid] = entry
    return out


def load_catalogue_with_mirror(mirror: str | Path | None = None) -> dict[str, dict]:
    """The packaged catalogue, its entries replaced by those of ``mirror`` (a site mirror or
    cache: other addresses and checksums for the same ids, placing the same files, which
    every reader relies on). CatalogueError names a mirror entry that breaks this."""
    packaged = load_catalogue()
    if mirror is None:
        return packaged
    replaced = load_catalogue(mirror)
    for rid, entry in replaced.items():
        if rid not in packaged:
            raise CatalogueError(f"{mirror}: unknown resource {rid!r} (a mirror replaces entries of the catalogue)")
        if [p for p, _ in resource_outputs(entry, "")] != [p for p, _ in resource_outputs(packaged[rid], "")]:
            raise CatalogueError(
                f"{mirror}: resource {rid!r} puts its files elsewhere than the packaged catalogue; "
                "a mirror may change addresses and checksums only"
            )
    return {**packaged, **replaced}


# ----------------------------------------------------------------------- what a configuration needs

#: training data read from a downloaded dataset (``priors.<p>.training_data``); the demo's ship with packages
TRAINING_RESOURCES = {"mnist": "mnist"}
#: read when in place, never required: the ground-truth kernels of the Köhler shots (Fig. 13)
OPTIONAL_WITH = {"kohler2012": ["kohler2012-kernels"]}


def configured_resources(config: dict) -> list[tuple[str, str]]:
    """``(config key, resource id)`` of every resource a workflow configuration uses: released
    priors (``priors.<p>.resource``), their images (``priors.<p>.images.resource``), downloaded
    training data (``priors.<p>.training_data``), and Fig. 13's DRUNet weights and Köhler shots
    (``deblur.kohler.denoiser/data.resource``), a conditional kernel prior's training images
    (``priors.<p>.pairs.images.resource``) and the benchmark's datasets
    (``benchmark.datasets.<d>.images.resource``, real blur's ``….pairs.resource``), a benchmark method's DRUNet weights
    (``benchmark.methods.<m>.denoiser.resource``), and the perceptual metrics' weights
    (``benchmark.perceptual.lpips.<net>``, ``benchmark.perceptual.fid.resource``). The workflow's download
    rules need exactly these."""
    out = []
    for prior, cfg in (config.get("priors") or {}).items():
        if "resource" in cfg:
            out.append((f"priors.{prior}.resource", cfg["resource"]))
        if "images" in cfg:
            out.append((f"priors.{prior}.images.resource", cfg["images"]["resource"]))
        if "images" in (cfg.get("pairs") or {}):  # a conditional kernel prior's training images
            out.append((f"priors.{prior}.pairs.images.resource", cfg["pairs"]["images"]["resource"]))
        if cfg.get("training_data") in TRAINING_RESOURCES:
            out.append((f"priors.{prior}.training_data", TRAINING_RESOURCES[cfg["training_data"]]))
    kohler = (config.get("deblur") or {}).get("kohler") or {}
    for key in ("denoiser", "data"):
        if key in kohler:
            out.append((f"deblur.kohler.{key}.resource", kohler[key]["resource"]))
    bench = config.get("benchmark") or {}
    for name, spec in (bench.get("datasets") or {}).items():
        for key in ("images", "pairs"):  # synthetic blur's images, real blur's blurry/sharp pairs
            if key in spec:
                out.append((f"benchmark.datasets.{name}.{key}.resource", spec[key]["resource"]))
    for name, entry in (bench.get("methods") or {}).items():  # a method's DRUNet weights
        if "denoiser" in entry:
            out.append((f"benchmark.methods.{name}.denoiser.resource", entry["denoiser"]["resource"]))
    perceptual = bench.get("perceptual") or {}
    for net, rid in (perceptual.get("lpips") or {}).items():  # the LPIPS backbones' and FID's weights
        out.append((f"benchmark.perceptual.lpips.{net}", rid))
    if "fid" in perceptual:
        out.append(("benchmark.perceptual.fid.resource", perceptual["fid"]["resource"]))
    return out


def resource_status(entry: dict, root: str | Path) -> str:
    """ "present" (every file or folder the resource leaves under ``root`` is there; verified by
    ``ensure_resource`` when a rule picks it up), "incomplete" (some), "partial download" (none, a
    ``.part`` to resume) or "absent"."""
    outputs = [path for path, _ in resource_outputs(entry, root)]
    there = sum(path.exists() for path in outputs)
    if there == len(outputs):
        return "present"
    if there:
        return "incomplete"
    if any(path.with_name(path.name + ".part").exists() for path in outputs):
        return "partial download"
    return "absent"


def _merged(paths: list[str]) -> dict:
    """Configuration files merged key by key, later over earlier (as Snakemake merges configfiles)."""

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    config: dict = {}
    for path in paths:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a configuration (a YAML mapping)")
        config = merge(config, data)
    return config


def list_resources(catalogue: dict[str, dict], root: str | Path, needed: dict[str, list[str]] | None = None) -> str:
    """The listing: every resource of ``catalogue`` (``needed`` None), or those a configuration needs
    (``needed``: id -> the config keys that name it; an id starting with '?' is optional), each with
    its kind, status under ``root``, place and (with a configuration) why it is needed."""
    ids = list(catalogue) if needed is None else list(needed)
    rows = []
    for rid in ids:
        optional, key = rid.startswith("?"), rid.lstrip("?")
        entry = catalogue[key]
        why = "optional, read when present" if optional else ", ".join((needed or {}).get(rid, []))
        status = resource_status(entry, root)
        rows.append((key, entry["kind"], status, str(resource_location(entry, root)), why))
    width = max([len(r[0]) for r in rows] + [8])
    lines = [f"{'resource':{width}s}  {'kind':7s}  {'status':16s}  place" + ("  (needed by)" if needed else "")]
    for rid, kind, status, place, why in rows:
        lines.append(f"{rid:{width}s}  {kind:7s}  {status:16s}  {place}" + (f"  ({why})" if why else ""))
    return "\n".join(lines)


def _listing(args, catalogue: dict[str, dict]) -> int:
    """``main`` without ids: the catalogue, or what ``--config`` needs, marked present or absent."""
    if not args.config:
        print(f"The catalogue ({len(catalogue)} resources), under {args.root or 'resources'}:")
        print(list_resources(catalogue, args.root or "resources"))
        return 0
    config = _merged(args.config)
    downloads = config.get("downloads") or {}
    root = args.root or downloads.get("root", "resources")
    needed: dict[str, list[str]] = {}
    for key, rid in configured_resources(config):
        if rid not in catalogue:
            print(f"{key}: unknown resource {rid!r} (known: {', '.join(catalogue)})", file=sys.stderr)
            return 2
        needed.setdefault(rid, []).append(key)
    for rid in list(needed):
        needed.update({f"?{o}": [] for o in OPTIONAL_WITH.get(rid, []) if o in catalogue})
    what = " + ".join(args.config)
    required = [r for r in needed if not r.startswith("?")]
    if not required:
        print(f"{what} needs no downloaded resource.")
        return 0
    missing = [r for r in required if resource_status(catalogue[r], root) != "present"]
    print(
        f"{what} needs {len(required)} resources under {root}: {len(required) - len(missing)} present, "
        f"{len(missing)} not."
    )
    print(list_resources(catalogue, root, needed))
    if missing:
        manual = [r for r in missing if catalogue[r]["kind"] == "manual"]
        print(
            f"\nTo fetch them: snakemake --configfile {what.replace(' + ', ' ')} downloads"
            + (f" ({len(manual)} manual: {', '.join(manual)}; the rule says where to put the files)" if manual else "")
        )
    return 1 if missing else 0


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done (a listing: with --config, every needed resource present); 1 a
    download failed or (--config) a needed resource is not present; 2 a usage error."""
    parser = argparse.ArgumentParser(
        prog="python -m prior_landscape.io.downloads",
        description="Download and verify the paper's checkpoints and datasets (see resources.yaml). "
        "Without ids: list the catalogue, or with --config the resources a configuration needs, "
        "each marked present or absent under --root.",
    )
    parser.add_argument("ids", nargs="*", help="resource ids to download (default: list, see --config)")
    parser.add_argument(
        "--config",
        nargs="+",
        metavar="FILE",
        default=None,
        help="list what this workflow configuration needs (several: merged in order, as Snakemake merges "
        "--configfile), with its downloads.root and downloads.catalogue unless --root/--catalogue are given",
    )
    parser.add_argument("--root", default=None, help="folder the resources go into (default: resources)")
    parser.add_argument("--lock-file", default=str(DEFAULT_LOCK_FILE), help="lock file of recorded digests")
    parser.add_argument("--catalogue", default=None, help="catalogue file (default: the packaged resources.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        mirror = args.catalogue
        if mirror is None and args.config and not args.ids:
            mirror = (_merged(args.config).get("downloads") or {}).get("catalogue")
        catalogue = load_catalogue_with_mirror(mirror)
        if not args.ids:
            return _listing(args, catalogue)
    except (OSError, ValueError, yaml.YAMLError) as err:  # CatalogueError is a ValueError
        print(f"python -m prior_landscape.io.downloads: {err}", file=sys.stderr)
        return 2
    status = 0
    root = args.root or "resources"
    for rid in args.ids:
        if rid not in catalogue:
            print(f"unknown resource {rid!r}; known: {', '.join(catalogue)}", file=sys.stderr)
            status = 2
            continue
        try:
            print(ensure_resource(catalogue[rid], root, args.lock_file))
        except (ManualDownloadRequired, DownloadError, ChecksumError, ArchiveError) as err:
            print(f"{type(err).__name__}: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
