"""Every computed result as tidy Parquet, with its provenance, written atomically.

A table is a pandas DataFrame with one row per observation (prior × image ×
family × θ …). Its Parquet file carries, under the schema metadata key
``prior_landscape.provenance``, a JSON record of what produced it: the config
slice, package and dependency versions, git commit, device, seeds and wall time.

Writes go to a temporary file in the destination folder and are renamed into
place only once complete, so a failed or killed job never leaves a file that
looks finished.
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
from importlib import metadata
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PROVENANCE_KEY = b"prior_landscape.provenance"
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
    return f"{device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


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
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def write_table(df: pd.DataFrame, path: str | Path, prov: dict) -> Path:
    """Write ``df`` as Parquet at ``path`` with ``prov`` in the schema metadata, atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[PROVENANCE_KEY] = json.dumps(prov, default=str).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; its provenance is in ``df.attrs['provenance']``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artefact {path} does not exist: run the rule that produces it first")
    table = pq.read_table(path)
    df = table.to_pandas()
    df.attrs["provenance"] = read_provenance(path)
    return df


def read_provenance(path: str | Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    if PROVENANCE_KEY not in meta:
        raise ValueError(f"{path} carries no provenance: it was not written by prior_landscape.io.artefacts")
    return json.loads(meta[PROVENANCE_KEY])
