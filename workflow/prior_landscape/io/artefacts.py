"""Every computed result as tidy Parquet, with its provenance, written atomically.

A table is a pandas DataFrame with one row per observation (prior × image ×
family × θ …). Its Parquet file carries, under the schema metadata key
``prior_landscape.provenance``, a JSON record of what produced it: the config
slice, package and dependency versions, git commit, device, seeds and wall time.

Writes go to a temporary file in the destination folder and are renamed into
place only once complete, so a failed or killed job never leaves a file that
looks finished.

Damage after writing is detected when the file is read (:func:`read_table`,
:func:`verify_table`, ``prior-landscape review``): the schema metadata key
``prior_landscape.sha256`` holds a sha256 of the table as it was written (row
count, column names, types, every value, and the schema metadata, provenance
included), recomputed from what is read; every data page also carries
Parquet's CRC-32. A flipped bit anywhere in the file either fails the read or
changes nothing that is read (only statistics and the like). Files written
before this checksum existed (no such key) are read without it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"prior_landscape.provenance"
CHECKSUM_KEY = b"prior_landscape.sha256"


class DamagedArtefactError(ValueError):
    """An artefact's bytes changed after it was written (a page or schema checksum fails)."""


_TRACKED_PACKAGES = (
    "prior-landscape",
    "torch",
    "torchvision",
    "deepinv",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-image",
    "scikit-learn",
    "snakemake",
)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the result the umask's mode, as open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_resumable_state(path: str | Path, kind: str, config, position: tuple[str, int], what: str) -> dict | None:
    """The state a long job saved in ``path``, if it can resume the run described by ``config``.

    ``kind``: the state's ``"kind"`` entry; ``config``: what must equal the saved
    ``"config"`` (a dict or a string); ``position``: (key, last allowed value), e.g.
    ``("iteration", K)``. Anything else (unreadable file, other kind, other
    configuration, past the end) gives None with a warning saying why: the caller
    starts afresh and overwrites the file.
    """
    import warnings

    import torch

    def afresh(why: str) -> None:
        warnings.warn(f"{what} checkpoint {path} {why}; starting afresh and overwriting it", stacklevel=3)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is ignored
        return afresh(f"is unreadable ({err})")
    if not isinstance(state, dict) or state.get("kind") != kind:
        return afresh(f"is not a {what} checkpoint")
    if state.get("config") != config:
        diff = ""
        if isinstance(config, dict) and isinstance(state.get("config"), dict):
            diff = f" ({', '.join(sorted(k for k in config if state['config'].get(k) != config[k]))})"
        return afresh(f"was made with a different configuration{diff}")
    key, last = position
    if int(state[key]) > last:
        return afresh(f"is at {key} {int(state[key])}, past the run's end ({last})")
    return state


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the repository holding this code, with '-dirty' if modified; None outside git."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def device_description(device: str | None = None) -> str:
    import torch

    device = str(device or "cpu")
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    cpu = platform.processor() or platform.machine()
    return f"{device} ({cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def provenance(
    config: dict | None = None,
    seeds: dict | list | int | None = None,
    device: str | None = None,
    wall_time_s: float | None = None,
    **extra,
) -> dict:
    """A provenance record for an artefact."""
    return {
        "config": config or {},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device_description(device),
        "host": socket.gethostname(),
        "seeds": seeds,
        "wall_time_s": wall_time_s,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def table_checksum(table: pa.Table) -> str:
    """sha256 of a table's content: row count, column names, types, nullability, every value
    (with its validity) and the schema metadata (all keys but :data:`CHECKSUM_KEY` itself).

    Independent of how the columns are chunked and of the names of list items, so the
    table written and the table read back from its Parquet file give the same digest."""
    import hashlib

    h = hashlib.sha256(f"rows {table.num_rows}\n".encode())
    for f, column in zip(table.schema, table.columns):
        h.update(json.dumps([f.name, _type_key(f.type), f.nullable]).encode() + b"\n")
        _hash_values(h, column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    for k, v in sorted((table.schema.metadata or {}).items()):
        if k != CHECKSUM_KEY:
            h.update(len(k).to_bytes(8, "little") + k + len(v).to_bytes(8, "little") + v)
    return h.hexdigest()


def _hash_values(h, arr: pa.Array) -> None:
    """Feed the values of ``arr`` (any nesting of lists and structs) into ``h``, canonically."""
    import numpy as np
    import pyarrow.compute as pc

    t = arr.type
    h.update(f"{_type_key(t)}|{len(arr)}|{arr.null_count}\n".encode())
    if arr.null_count:
        h.update(np.packbits(arr.is_null().to_numpy(zero_copy_only=False)).tobytes())
    if pa.types.is_dictionary(t):
        _hash_values(h, arr.dictionary_decode())
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        h.update(np.asarray(lengths, dtype="<i8").tobytes())
        _hash_values(h, arr.flatten())  # the items of the non-null lists, slicing taken care of
    elif pa.types.is_struct(t):
        for child in arr.flatten():
            _hash_values(h, child)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        for v in arr.to_pylist():
            b = b"" if v is None else (v.encode("utf-8", "surrogatepass") if isinstance(v, str) else bytes(v))
            h.update(len(b).to_bytes(8, "little") + b)
    elif pa.types.is_null(t):
        pass
    else:  # fixed-width: numbers, booleans, dates and times; null slots hashed as zeros
        try:
            filled = (
                pc.fill_null(arr, pa.scalar(False if pa.types.is_boolean(t) else 0, type=t)) if arr.null_count else arr
            )
            values = np.ascontiguousarray(filled.to_numpy(zero_copy_only=False))
            if values.dtype.kind == "O":
                raise TypeError("not a fixed-width type")
            h.update(values.tobytes())
        except (pa.ArrowException, TypeError, ValueError):  # any other type: its values as text
            h.update(repr(arr.to_pylist()).encode())


def _type_key(t: pa.DataType) -> str:
    """A type as text, without the names of list items (Parquet reads ``list<item: …>`` back
    as ``list<element: …>``: the same type)."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_key(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{'large_' if pa.types.is_large_list(t) else ''}list<{_type_key(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{_type_key(t.key_type)}, {_type_key(t.item_type)}>"
    if pa.types.is_struct(t):
        return (
            "struct<" + ", ".join(f"{t.field(i).name}: {_type_key(t.field(i).type)}" for i in range(t.num_fields)) + ">"
        )
    return str(t)


def write_table(df: pd.DataFrame, path: str | Path, prov: dict) -> Path:
    """Write ``df`` as Parquet at ``path`` with ``prov`` in the schema metadata, atomically,
    with page CRCs and a content checksum (see the module docstring)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, default=str).encode()
    table = table.replace_schema_metadata(meta)
    meta[CHECKSUM_KEY] = table_checksum(table).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
    return Path(path)


def verify_table(source, what: str | None = None) -> pa.Table:
    """Read a whole Parquet file (a path or a binary file object), verifying every page CRC
    and the content checksum where the file has them; DamagedArtefactError names ``what``
    (default: the path) when it is unreadable, damaged, or carries no provenance."""
    what = what or str(source)
    try:
        table = pq.ParquetFile(source, page_checksum_verification=True).read()
    except Exception as err:  # noqa: BLE001 - any reader error means damaged or not Parquet
        raise DamagedArtefactError(f"{what} is unreadable or damaged: {type(err).__name__}: {err}") from err
    meta = table.schema.metadata or {}
    if PROVENANCE_KEY not in meta:  # every artefact has one; damage to the footer can drop all metadata
        raise DamagedArtefactError(
            f"{what} carries no provenance: it was not written by prior_landscape.io.artefacts, "
            "or its metadata is damaged"
        )
    stored = meta.get(CHECKSUM_KEY)
    try:
        actual = table_checksum(table) if stored is not None else None
    except Exception as err:  # noqa: BLE001 - values a damaged file decodes into
        raise DamagedArtefactError(f"{what} is damaged: {type(err).__name__}: {err}") from err
    if stored is not None and stored.decode(errors="replace") != actual:
        raise DamagedArtefactError(
            f"{what} is damaged: its values, rows, columns or metadata (provenance) changed after it was written "
            "(content checksum mismatch)"
        )
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`, verified (:func:`verify_table`); its
    provenance is in ``df.attrs['provenance']``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artefact {path} does not exist: run the rule that produces it first")
    table = verify_table(path)
    df = table.to_pandas()
    df.attrs["provenance"] = read_provenance(path)
    return df


def read_provenance(path: str | Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if PROVENANCE_KEY not in meta:
        raise ValueError(f"{path} carries no provenance: it was not written by prior_landscape.io.artefacts")
    return json.loads(meta[PROVENANCE_KEY])
