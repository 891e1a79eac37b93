"""Unpacking archives made elsewhere (downloads, archives of results): safely and atomically.

:func:`safe_unpack` writes a zip or tar archive (tar possibly gzip-, bzip2- or
xz-compressed) into a new folder and guarantees:

* **nothing escapes the folder.** Member names are checked as text (no
  absolute paths, drive letters, ``..`` or NUL); then every member is written
  by this module, never by ``tarfile``/``zipfile``'s extractors: folders with
  ``mkdir``, regular files with ``open(O_CREAT | O_EXCL | O_NOFOLLOW)`` below
  folders this function created itself. No link is ever created: a symbolic
  link is refused (its target could be anywhere once the folder moves), a tar
  hard link to an earlier member is written as a copy of the file this
  function wrote. So a chain of links (the pattern of CVE-2025-4517, which
  ``tarfile``'s ``data`` filter of this Python does not stop) has nothing to
  follow, and devices, FIFOs and setuid bits never appear.
* **nothing incomplete looks complete.** Members go into a hidden folder
  ``.<name>.XXXXXXXX.unpacking`` beside the target, which is renamed onto the
  target only when every member was written and the archive was read to its
  verified end: a gzip/bzip2/xz stream must pass its checksum, a tar must end
  with its end-of-archive zero block (``tarfile`` silently stops at the first
  damaged header), a zip member must pass its CRC. On any failure the hidden
  folder is removed; a folder left by a killed process is removed by the next
  call for the same target (calls for one target are serialised by a lock).
* **bounded size.** The unpacked bytes may not exceed ``max_bytes``, nor
  ``max_ratio`` times the archive's size (with a 1 GiB floor), nor the free
  space of the file system; members may not exceed ``max_members``. A
  decompression bomb stops with :class:`ArchiveError` after at most that much.
* **shared like any other output.** Folders get ``0777 & ~umask`` and files
  ``0666 & ~umask`` (``0777`` for executables), not ``mkdtemp``'s ``0700``:
  a group sharing a cluster file system can read them. Modification times are
  those of the archive's members (Snakemake compares them).

:func:`iter_tar` streams the members of a tar archive with the same end-of-stream
verification, for reading without unpacking (``prior-landscape review``).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = [
    "ArchiveError",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_MAX_MEMBERS",
    "safe_unpack",
    "iter_tar",
    "member_parts",
    "remove_leftovers",
    "interprocess_lock",
]

#: At most this many unpacked bytes per archive (the largest archive of the catalogue, AFHQv2, unpacks to ~7 GB).
DEFAULT_MAX_BYTES = 128 << 30
#: … and at most this many times the archive's own size (images compress ~1:1, text ~1:10; bombs ~1:1000).
DEFAULT_MAX_RATIO = 200
#: … and at most this many members.
DEFAULT_MAX_MEMBERS = 2_000_000
_RATIO_FLOOR = 1 << 30  # the ratio limit never goes below 1 GiB
_CHUNK = 1 << 20
_SUFFIX = ".unpacking"


class ArchiveError(RuntimeError):
    """An archive could not be unpacked or read safely (unknown format, unsafe or damaged member, too large)."""


# ----------------------------------------------------------------------------- locks and leftovers


@contextlib.contextmanager
def interprocess_lock(path: Path) -> Iterator[None]:
    """Serialise processes working on ``path`` (POSIX advisory lock kept outside the repository)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    lock_dir = Path(tempfile.gettempdir()) / "prior_landscape_locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _leftover_pattern(target: Path) -> re.Pattern:
    # exactly what tempfile.mkdtemp(prefix=".<name>.", suffix=".unpacking") makes: 8 characters of
    # [a-z0-9_] between them, so the leftovers of another target ("<name>.x") never match
    return re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}{re.escape(_SUFFIX)}$")


def remove_leftovers(target: str | Path) -> list[Path]:
    """Remove the hidden folders that killed unpacks of ``target`` left beside it; return them.

    Call only while holding :func:`interprocess_lock` on ``target``: an unpack in
    progress holds it, so every folder found is a leftover."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _leftover_pattern(target)
    removed = []
    for p in target.parent.iterdir():
        if pattern.match(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- member names


def member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """The path components of a member name, or ArchiveError if it could leave the folder.

    ``./`` prefixes and ``.`` components are dropped; absolute names, drive letters,
    ``..`` (also with backslashes as separators) and NUL characters are refused."""
    if "\x00" in name:
        raise ArchiveError(f"refusing to unpack {archive}: member {name!r} has a NUL character in its name")
    unified = name.replace("\\", "/")
    pure = PurePosixPath(unified)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", unified) or ".." in pure.parts:
        raise ArchiveError(
            f"refusing to unpack {archive}: member {name!r} would be written outside the target folder "
            "(absolute path or '..'). The archive is not trustworthy; delete it and check its source."
        )
    return tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))


# ----------------------------------------------------------------------------- streams


class _WatchedStream:
    """A read-only stream that counts the bytes read and remembers where the last non-zero byte was."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.pos = 0
        self.last_nonzero_end = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            stripped = len(data.rstrip(b"\0"))
            if stripped:
                self.last_nonzero_end = self.pos + stripped
            self.pos += len(data)
        return data


_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def _decompressed(path: Path, raw: IO[bytes]) -> IO[bytes]:
    """``raw`` through the decompressor its first bytes call for (gzip, bzip2, xz), else as is.
    These decompressors verify their checksums when read to the end."""
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw, mode="rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def iter_tar(path: str | Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    """Stream the members of a tar archive (compressed or not): ``(member, data or None)``.

    The data of a regular member must be read before the next member is asked for.
    After the last member the stream is read to its end and verified; ArchiveError
    (naming the archive) when the compressed stream is damaged or truncated, when
    ``tarfile`` stopped at a damaged header before the real end (anything but zero
    padding after the last member it saw), or when the end-of-archive block is missing.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        watched = _WatchedStream(_decompressed(path, raw))
        try:
            with tarfile.open(fileobj=watched, mode="r|") as tar:
                for member in tar:
                    yield member, (tar.extractfile(member) if member.isreg() else None)
                end = tar.offset  # where tarfile found the end: the next header would start here
                while watched.read(_CHUNK):  # to the end of the stream: checks the gzip/bzip2/xz checksum
                    pass
        except ArchiveError:
            raise
        except (tarfile.TarError, *_DECOMPRESSION_ERRORS) as err:
            raise ArchiveError(f"{path} is damaged or truncated: {type(err).__name__}: {err}") from None
    if watched.last_nonzero_end > end:
        raise ArchiveError(
            f"{path} is damaged: its members end at byte {end} of the tar stream, but non-zero data follows up to "
            f"byte {watched.last_nonzero_end} (a damaged member header hides the rest of the archive)"
        )
    if watched.pos - end < tarfile.BLOCKSIZE:
        raise ArchiveError(f"{path} is truncated: the tar stream ends without its end-of-archive block")


# ----------------------------------------------------------------------------- unpacking


class _Budget:
    """The size, count and disk-space limits of one unpack."""

    def __init__(self, archive: Path, folder: Path, max_bytes: int, max_ratio: float, max_members: int):
        packed = archive.stat().st_size
        self.limit = min(max_bytes, max(int(max_ratio * packed), _RATIO_FLOOR))
        self.max_members = max_members
        self.archive, self.folder = archive, folder
        self.bytes = 0
        self.members = 0

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveError(f"refusing to unpack {self.archive}: more than {self.max_members:,} members")

    def need(self, n: int, name: str) -> None:
        """Account for ``n`` more bytes of member ``name`` before writing them."""
        self.bytes += n
        if self.bytes > self.limit:
            raise ArchiveError(
                f"refusing to unpack {self.archive}: member {name!r} takes the unpacked size past "
                f"{self.limit:,} bytes (the limit for an archive of {self.archive.stat().st_size:,} bytes); "
                "a decompression bomb or a damaged archive"
            )
        free = shutil.disk_usage(self.folder).free
        if n > free:
            raise ArchiveError(
                f"cannot unpack {self.archive}: member {name!r} needs {n:,} bytes, {free:,} are free in {self.folder}"
            )


class _Writer:
    """Writes members below ``root`` (a folder this process created), nothing else."""

    def __init__(self, root: Path, archive: Path, budget: _Budget, hash_files: bool):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.archive = archive
        self.budget = budget
        self.hash_files = hash_files
        self.files: dict[str, tuple[int, str | None]] = {}  # relative path -> (size, sha256)
        self.dir_times: list[tuple[Path, float]] = []

    def _inside(self, path: Path, name: str) -> None:
        real = os.path.realpath(path)
        if real != self.real_root and not real.startswith(self.real_root + os.sep):
            raise ArchiveError(f"refusing to unpack {self.archive}: member {name!r} resolves outside the folder")

    def folder(self, parts: tuple[str, ...], name: str, mtime: float | None = None) -> Path:
        path = self.root
        for part in parts:
            path = path / part
            try:
                os.mkdir(path, 0o777)  # the umask applies
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise ArchiveError(
                        f"refusing to unpack {self.archive}: member {name!r} needs folder "
                        f"{'/'.join(parts)}, which another member wrote as a file"
                    ) from None
        self._inside(path, name)
        if mtime is not None:
            self.dir_times.append((path, mtime))
        return path

    def file(
        self, parts: tuple[str, ...], name: str, data: IO[bytes], size: int | None, mtime: float, executable: bool
    ) -> None:
        if not parts:
            raise ArchiveError(f"refusing to unpack {self.archive}: member {name!r} has no file name")
        parent = self.folder(parts[:-1], name)
        path = parent / parts[-1]
        rel = "/".join(parts)
        if size is not None:
            self.budget.need(size, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o777 if executable else 0o666)  # the umask applies
        except FileExistsError:
            raise ArchiveError(
                f"refusing to unpack {self.archive}: member {name!r} appears twice "
                "(a later copy would replace the earlier one)"
            ) from None
        h = hashlib.sha256() if self.hash_files else None
        written = 0
        with os.fdopen(fd, "wb") as out:
            while block := self._read(data, name):
                written += len(block)
                if size is None:
                    self.budget.need(len(block), name)
                elif written > size:
                    raise ArchiveError(f"{self.archive}: member {name!r} holds more than its declared {size} bytes")
                out.write(block)
                if h is not None:
                    h.update(block)
        if size is not None and written != size:
            raise ArchiveError(f"{self.archive} is truncated: member {name!r} has {written} of {size} bytes")
        os.utime(path, (mtime, mtime), follow_symlinks=False)
        self.files[rel] = (written, h.hexdigest() if h is not None else None)

    def _read(self, data: IO[bytes], name: str) -> bytes:
        """The next block of a member's data; a damaged or truncated archive is an ArchiveError."""
        try:
            return data.read(_CHUNK)
        except (tarfile.TarError, zipfile.BadZipFile, *_DECOMPRESSION_ERRORS) as err:
            raise ArchiveError(
                f"{self.archive} is damaged or truncated (member {name!r}): {type(err).__name__}: {err}"
            ) from None

    def copy_of(self, parts: tuple[str, ...], name: str, source: tuple[str, ...], mtime: float) -> None:
        """A tar hard link, written as a copy of the earlier member ``source`` (a file written here)."""
        rel = "/".join(source)
        if rel not in self.files:
            raise ArchiveError(
                f"refusing to unpack {self.archive}: hard link {name!r} -> {rel!r} does not point "
                "to an earlier regular file of the archive"
            )
        src = self.root.joinpath(*source)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as data:
            self.file(parts, name, data, self.files[rel][0], mtime, executable=bool(os.fstat(fd).st_mode & 0o111))

    def finish(self) -> None:
        for path, mtime in reversed(self.dir_times):  # after their contents, deepest first
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def _unpack_tar(archive: Path, w: _Writer) -> None:
    for m, data in iter_tar(archive):
        w.budget.member(m.name)
        parts = member_parts(m.name, archive)
        if m.isdir():
            w.folder(parts, m.name, m.mtime)
        elif m.isreg():
            w.file(parts, m.name, data, m.size, m.mtime, executable=bool(m.mode & 0o111))
        elif m.islnk():
            w.copy_of(parts, m.name, member_parts(m.linkname, archive), m.mtime)
        elif m.issym():
            raise ArchiveError(
                f"refusing to unpack {archive}: member {m.name!r} is a symbolic link "
                f"(-> {m.linkname!r}); unpacked folders hold regular files and folders only"
            )
        else:
            raise ArchiveError(
                f"refusing to unpack {archive}: member {m.name!r} is a special file (device, FIFO or other)"
            )


def _unpack_zip(archive: Path, w: _Writer) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                w.budget.member(info.filename)
                parts = member_parts(info.filename, archive)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ArchiveError(f"refusing to unpack {archive}: member {info.filename!r} is a symbolic link")
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded (not Unix)
                    raise ArchiveError(f"refusing to unpack {archive}: member {info.filename!r} is a special file")
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"cannot unpack {archive}: member {info.filename!r} is encrypted")
                try:
                    mtime = time.mktime((*info.date_time, 0, 0, -1))
                except (OverflowError, ValueError):  # an impossible date: the archive's own time
                    mtime = archive.stat().st_mtime
                if info.is_dir():
                    w.folder(parts, info.filename, mtime)
                    continue
                with zf.open(info) as data:  # zipfile checks the CRC at the member's end
                    w.file(parts, info.filename, data, info.file_size, mtime, executable=bool(mode & 0o111))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, *_DECOMPRESSION_ERRORS, NotImplementedError) as err:
        raise ArchiveError(f"{archive} is damaged or unsupported: {type(err).__name__}: {err}") from None


def archive_format(name: str) -> str:
    """'zip' or 'tar' from a file name (tar: ``.tar`` and its compressed forms)."""
    low = name.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    raise ArchiveError(
        f"cannot tell the archive format of {name!r} (known: .zip, .tar[.gz|.bz2|.xz], .tgz, .tbz2, .txz)"
    )


def safe_unpack(
    archive: str | Path,
    target: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_members: int = DEFAULT_MAX_MEMBERS,
    check: Callable[[Path, dict[str, tuple[int, str | None]]], None] | None = None,
    hash_files: bool = False,
) -> Path:
    """Unpack ``archive`` into the new folder ``target`` (see the module docstring); return ``target``.

    ``target`` must not exist, or be an empty folder. ``check(folder, files)``, if
    given, runs on the complete hidden folder before it is renamed into place
    (``files``: relative path -> (size, sha256 when ``hash_files``)); raising there
    leaves nothing behind either. Raises :class:`ArchiveError` naming the archive.
    """
    archive, target = Path(archive), Path(target)
    kind = archive_format(archive.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with interprocess_lock(target):
        remove_leftovers(target)
        if target.exists() and not (target.is_dir() and not target.is_symlink() and not any(target.iterdir())):
            raise ArchiveError(f"cannot unpack {archive} into {target}: it exists and is not an empty folder")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_SUFFIX, dir=target.parent))
        try:
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the unpacked folder is shared like any other
            w = _Writer(tmp, archive, _Budget(archive, target.parent, max_bytes, max_ratio, max_members), hash_files)
            (_unpack_zip if kind == "zip" else _unpack_tar)(archive, w)
            w.finish()
            if check is not None:
                check(tmp, w.files)
            os.replace(tmp, target)  # onto an empty folder, or a new name
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
