"""Archives of a finished run, and their review.

An archive is a ``.tar.gz`` holding

* ``results/…``: every file of the run (Parquet artefacts, models, figures,
  tables, the report if made, logs, benchmarks), with their modification times,
  so that Snakemake sees everything upstream of a figure as up to date;
* ``manifest.json``: the format tag, when and where it was made, the exact
  configuration of the run, software versions, the git commit, a sha256
  checksum and size for every file, and the workflow's rules (their output and
  input patterns), so that a reviewer can tell which rule made a file and which
  figures and tables can be re-rendered from the archive alone;
* ``config.yaml``: the same configuration, so that ``snakemake`` run in the
  unpacked folder re-renders a figure with exactly the parameters of the run.

Left out: temporary files (``*.part``, dot files) and resumable job states
(``*_state.pt``, ``state.pt``: present only while a job is unfinished).

:func:`write_archive` also writes ``<archive>.sha256`` (``sha256sum`` format): a
detached checksum of the whole archive, manifest included. The manifest lists a
checksum for every file, so a changed file is found; but an archive whose files
and manifest were changed together is consistent with itself. Only a checksum
kept apart from it tells: keep (or publish) the ``.sha256`` value elsewhere and
check with ``prior-landscape review --sha256 HEX`` or ``sha256sum -c``; the
review also checks a ``.sha256`` file found beside the archive.

:func:`review` reads an archive (or a ``results/`` folder, or an unpacked
archive) without unpacking it, lists each artefact with its provenance, verifies
the checksums against the manifest, and says which figures and tables can be
re-rendered from it alone. ``prior-landscape review PATH`` prints it
(:mod:`prior_landscape.cli`). Its verdict (:attr:`Review.ok`) fails on any
member that is unreadable or damaged (every Parquet file is read whole, its
page and content checksums verified), changed, missing or not listed in the
manifest; on an archive that cannot be read to its verified end, has no
manifest, a malformed one, a config.yaml that differs from it, links or
duplicate members; and on a detached checksum that does not match. A folder
without a manifest (a working ``results/``) can only be checked for
readability, which the review says.

No Snakemake in here: ``workflow/rules/archive.smk`` passes the config and the
rules' file patterns in.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import io
import json
import os
import platform
import re
import socket
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO

import yaml

from prior_landscape.io.artefacts import (
    PROVENANCE_KEY,
    DamagedArtefactError,
    atomic_output,
    git_commit,
    package_versions,
    verify_table,
)
from prior_landscape.io.unpacking import ArchiveError, iter_tar, member_parts, safe_unpack

FORMAT = "prior-landscape-archive/1"
MANIFEST = "manifest.json"
CONFIG_FILE = "config.yaml"
RESULTS = "results"
EXCLUDE = ("*.part", ".*", "*_state.pt", "state.pt")
_EXTRA_PACKAGES = (
    "snakemake-executor-plugin-slurm",
    "snakemake-executor-plugin-slurm-jobstep",
    "torchmetrics",
    "torch-fidelity",
    "matplotlib",
    "pyyaml",
)

# Figures and tables -> the artefacts they are rendered from (glob patterns under
# the archive root; each must match at least one file), taken from the rules of
# workflow/rules/*.smk that write results/figures or results/tables. Used only
# when there is no rule map in a manifest (a bare results/ folder, or an archive
# from an older workflow): the archive rule records the rules' own inputs, which
# supersede this. To extend, add the new rule here (tests/test_archive.py checks
# that every figure or table rule of the workflow is listed).
FIGURE_INPUTS: dict[str, dict[str, list[str]]] = {
    "fig01_to_fig03_critical_points": {
        "outputs": [
            "results/figures/fig01.png",
            "results/figures/fig02.png",
            "results/figures/fig03.png",
            "results/tables/critical_points_summary.csv",
        ],
        "inputs": [
            "results/critical_points/*/summary.parquet",
            "results/critical_points/*/trajectory.parquet",
            "results/critical_points/*/images.parquet",
        ],
    },
    "fig04_hessian_spectra": {"outputs": ["results/figures/fig04.png"], "inputs": ["results/hessian/*.parquet"]},
    "fig05_blur_families": {
        "outputs": ["results/figures/fig05.png"],
        "inputs": ["results/kernels/blur_families.parquet"],
    },
    "fig06_blurred_image": {"outputs": ["results/figures/fig06.png"], "inputs": ["results/sweeps/*.parquet"]},
    "fig07_likelihood_sweeps": {
        "outputs": ["results/figures/fig07.png", "results/tables/sweep_summary.csv"],
        "inputs": ["results/sweeps/*.parquet"],
    },
    "fig08_binary_digits": {
        "outputs": ["results/figures/fig08.png"],
        "inputs": ["results/samples/*.parquet", "results/sweeps/*.parquet"],
    },
    "tab01_priors": {
        "outputs": ["results/tables/tab01.csv", "results/tables/tab01.md", "results/tables/tab01.tex"],
        "inputs": ["results/timing/priors.parquet"],
    },
    "fig09_noiseless_profiles": {
        "outputs": ["results/figures/fig09.png", "results/tables/profile_minima.csv"],
        "inputs": ["results/posterior/*/noiseless.parquet"],
    },
    "fig10_noisy_profiles": {"outputs": ["results/figures/fig10.png"], "inputs": ["results/posterior/*/noisy.parquet"]},
    "fig11_zernike_example": {
        "outputs": ["results/figures/fig11.png"],
        "inputs": [f"results/deblur/zernike-*/{k}.parquet" for k in ("metrics", "images", "trajectory")],
    },
    "fig12_simplex_initialisations": {
        "outputs": ["results/figures/fig12.png"],
        "inputs": [f"results/deblur/simplex/{k}.parquet" for k in ("metrics", "images", "trajectory")],
    },
    "fig13_kohler": {
        "outputs": ["results/figures/fig13.png"],
        "inputs": [f"results/deblur/kohler/{k}.parquet" for k in ("metrics", "images", "trajectory")],
    },
    "fig14_zernike_cases": {
        "outputs": ["results/figures/fig14.png"],
        "inputs": [f"results/deblur/zernike-*/{k}.parquet" for k in ("metrics", "images")],
    },
    "fig15_simplex_cases": {
        "outputs": ["results/figures/fig15.png"],
        "inputs": [f"results/deblur/simplex/{k}.parquet" for k in ("metrics", "images")],
    },
    "deblur_metrics_table": {
        "outputs": ["results/tables/deblur_metrics.csv"],
        "inputs": ["results/deblur/*/metrics.parquet"],
    },
    "report_pages": {"outputs": ["results/report/fig*.html"], "inputs": ["results/figures/fig*.png"]},
    "claims_table": {
        "outputs": ["results/tables/claims.csv", "results/tables/claims.md", "results/tables/claims.tex"],
        "inputs": [
            "results/sweeps/*.parquet",
            "results/critical_points/*/summary.parquet",
            "results/hessian/*.parquet",
            "results/posterior/*/*.parquet",
            "results/deblur/*/metrics.parquet",
            "results/benchmark/*/runs/*.parquet",
        ],
    },
    "benchmark_table": {
        "outputs": ["results/tables/benchmark_*.csv", "results/figures/benchmark_*.png"],
        "inputs": [
            "results/benchmark/*/testset.parquet",
            "results/benchmark/*/runs/*.parquet",
            "results/benchmark/*/estimates/*.parquet",
        ],
    },
}

# Which rule writes which file, for folders without a rule map (first match wins).
PRODUCERS: list[tuple[str, str]] = [
    ("results/kernels/*.parquet", "blur_kernels"),
    ("results/priors/*/fit_summary.parquet", "fit_mixture_prior"),
    ("results/priors/*/training_loss.parquet", "train_score_network"),
    ("results/sweeps/*.parquet", "likelihood_sweep"),
    ("results/timing/*.parquet", "measure_prior_costs"),
    ("results/critical_points/*/*.parquet", "critical_points"),
    ("results/hessian/*.parquet", "hessian_spectra"),
    ("results/samples/*.parquet", "sample_prior"),
    ("results/posterior/*/*.parquet", "posterior_profiles"),
    ("results/deblur/*/*.parquet", "deblur_runs"),
    ("results/benchmark/*/testset.parquet", "benchmark_testset"),
    ("results/benchmark/*/runs/*.parquet", "benchmark_run"),
    ("results/benchmark/*/estimates/*.parquet", "benchmark_run"),
]

# Columns that index an artefact's rows, with how to name their count in a summary.
KEY_COLUMNS = {
    "prior": ("prior", "priors"),
    "case": ("case", "cases"),
    "family": ("family", "families"),
    "theta": ("θ", "θ"),
    "image_id": ("image", "images"),
    "image": ("image", "images"),
    "group": ("group", "groups"),
    "point": ("point", "points"),
    "component": ("component", "components"),
    "sample": ("sample", "samples"),
    "run": ("run", "runs"),
    "step": ("step", "steps"),
    "iteration": ("iteration", "iterations"),
}


# --------------------------------------------------------------------------- writing


def sha256_of(fileobj: IO[bytes], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while block := fileobj.read(chunk):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return sha256_of(f)


def _excluded(name: str, exclude: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in PurePosixPath(name).parts for pat in exclude)


def _root(results_dir: str | Path, root: str | None) -> PurePosixPath:
    """The name of a results folder inside an archive: ``root`` (the configuration's
    ``results``, e.g. ``results/demo``), by default the folder's own name."""
    return PurePosixPath(root) if root else PurePosixPath(Path(results_dir).name)


def _walk(results_dir: str | Path, exclude: Iterable[str], root: str | None) -> list[tuple[str, Path]]:
    """(name in the archive, path) of every file under ``results_dir``, sorted by name."""
    results_dir, prefix = Path(results_dir), _root(results_dir, root)
    out = []
    for path in results_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            inner = path.relative_to(results_dir).as_posix()
            if not _excluded(inner, exclude):
                out.append(((prefix / inner).as_posix(), path))
    return sorted(out)


def collect_files(results_dir: str | Path, exclude: Iterable[str] = EXCLUDE, root: str | None = None) -> list[str]:
    """Files under ``results_dir``, as sorted paths under ``root`` (default: the folder's own
    name, ``results/…``; the archive rule passes the configuration's ``results``)."""
    return [rel for rel, _ in _walk(results_dir, exclude, root)]


def _inner_parts(rel: str, root: str = RESULTS) -> tuple[str, ...]:
    """The parts of ``rel`` below the results folder ``root`` (below its first part otherwise)."""
    parts, top = PurePosixPath(rel).parts, PurePosixPath(root).parts
    return parts[len(top) :] if parts[: len(top)] == top else parts[1:]


def classify(rel: str, root: str = RESULTS) -> str:
    """The kind of a file of a run, from its path under the results folder ``root``."""
    parts = _inner_parts(rel, root)
    sub = parts[0] if len(parts) > 1 else ""
    name = PurePosixPath(rel).name
    if sub == "logs":
        return "log"
    if sub == "benchmarks":
        return "benchmark"
    if sub == "figures":
        return "figure"
    if sub == "tables":
        return "table"
    if name == "report.html" or sub == "report":
        return "report"
    if name.endswith(".parquet"):
        return "artefact"
    if name.endswith((".pt", ".pkl", ".pth", ".ckpt", ".safetensors")):
        return "model"
    return "other"


def software_versions() -> dict:
    out = package_versions()
    for name in _EXTRA_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["platform"] = platform.platform()
    return out


def _manifest(files: list[dict], config: dict | None, rules: list[dict] | None, root: str = RESULTS) -> dict:
    return {
        "format": FORMAT,
        "results": root,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "software": software_versions(),
        "config": config or {},
        "rules": rules or [],
        "files": files,
    }


def build_manifest(
    results_dir: str | Path,
    config: dict | None = None,
    rules: list[dict] | None = None,
    exclude: Iterable[str] = EXCLUDE,
    root: str | None = None,
) -> dict:
    """The manifest of ``results_dir`` as it is now: checksums, sizes, config, versions, rules."""
    name = str(_root(results_dir, root))
    files = []
    for rel, path in _walk(results_dir, exclude, root):
        files.append(
            {"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path), "kind": classify(rel, name)}
        )
    return _manifest(files, config, rules, name)


class _HashingReader:
    """Reads a file for tarfile and hashes exactly the bytes that go into the archive."""

    def __init__(self, f: IO[bytes]):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_archive(
    results_dir: str | Path,
    out: str | Path,
    config: dict | None = None,
    rules: list[dict] | None = None,
    exclude: Iterable[str] = EXCLUDE,
    root: str | None = None,
) -> dict:
    """Pack ``results_dir`` with its manifest and config into the tar.gz ``out`` (atomically).

    Members are ``<root>/…`` (``root``: the configuration's ``results``, e.g.
    ``results/demo``, so that ``snakemake`` run in the unpacked folder finds them
    where the configuration puts them; default the folder's own name) in sorted
    order with their modification times, then ``manifest.json`` (which records
    ``root`` as ``results``) and ``config.yaml``. Each file is read once: its
    checksum is that of the bytes packed. Returns the manifest.
    """
    name = str(_root(results_dir, root))
    files = []
    with atomic_output(out) as tmp:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for rel, path in _walk(results_dir, exclude, root):
                info = tar.gettarinfo(path, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    reader = _HashingReader(f)
                    tar.addfile(info, reader)
                files.append(
                    {"path": rel, "size": reader.n, "sha256": reader.h.hexdigest(), "kind": classify(rel, name)}
                )
            manifest = _manifest(files, config, rules, name)
            now = _dt.datetime.now(_dt.UTC).timestamp()
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, default=str).encode(), now)
            _add_bytes(
                tar, CONFIG_FILE, yaml.safe_dump(config or {}, sort_keys=False, allow_unicode=True).encode(), now
            )
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes it private; an archive is for sharing
    write_checksum_file(out)
    return manifest


def checksum_path(archive: str | Path) -> Path:
    """Where the detached checksum of ``archive`` is kept: ``<archive>.sha256``."""
    archive = Path(archive)
    return archive.with_name(archive.name + ".sha256")


def write_checksum_file(archive: str | Path) -> Path:
    """Write ``<archive>.sha256`` (``sha256sum`` format: ``<hex>  <name>``), atomically."""
    archive = Path(archive)
    with atomic_output(checksum_path(archive)) as tmp:
        tmp.write_text(f"{sha256_file(archive)}  {archive.name}\n")
    return checksum_path(archive)


def read_checksum_file(path: str | Path) -> str:
    """The sha256 recorded in a ``sha256sum``-format file (its first line); ValueError naming it otherwise."""
    path = Path(path)
    text = path.read_text(errors="replace").strip()
    m = re.fullmatch(r"([0-9a-fA-F]{64})(?:\s+\*?.+)?", text.splitlines()[0].strip() if text else "")
    if not m:
        raise ValueError(f"{path} does not hold a sha256 checksum (expected '<64 hex digits>  <file name>')")
    return m.group(1).lower()


def rule_map(rules: Iterable) -> list[dict]:
    """The rules' file patterns for the manifest, from Snakemake ``Rule`` objects.

    Each entry: ``rule``, ``outputs`` and ``inputs`` (patterns as written in the
    rule, ``{wildcard}`` or ``{wildcard,regex}``), ``output_regex`` (the rule's own
    regular expressions, constraints included) and ``input_functions`` (true when
    some input is computed by a function, which a review cannot evaluate)."""

    def computed(i) -> bool:  # a function, or unpack(function) (a file object flagged "unpack")
        return not isinstance(i, str) or bool((getattr(i, "flags", None) or {}).get("unpack"))

    out = []
    for r in rules:
        outputs = [str(o) for o in r.output]
        if not outputs:
            continue
        inputs = [str(i) for i in r.input if not computed(i)]
        try:
            regex = [o.regex().pattern for o in r.output]
        except Exception:  # noqa: BLE001 - Snakemake internals; fall back to the patterns
            regex = [_pattern_regex(o) for o in outputs]
        out.append(
            {
                "rule": r.name,
                "outputs": outputs,
                "output_regex": regex,
                "inputs": inputs,
                "input_functions": any(computed(i) for i in r.input),
            }
        )
    return out


# --------------------------------------------------------------------------- reading

_WILDCARD = re.compile(r"\{\s*([A-Za-z_]\w*)\s*(?:,\s*((?:[^{}]|\{[^{}]*\})*))?\}")


def _pattern_regex(pattern: str) -> str:
    out, last, seen = [], 0, set()
    for m in _WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[last : m.start()]))
        name, constraint = m.group(1), m.group(2)
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{constraint or '.+'})")
        seen.add(name)
        last = m.end()
    out.append(re.escape(pattern[last:]))
    return "".join(out) + "$"


@dataclass
class Entry:
    path: str
    size: int
    sha256: str
    kind: str
    rows: int | None = None
    columns: list[str] = field(default_factory=list)
    summary: str = ""
    provenance: dict | None = None
    error: str | None = None
    rule: str | None = None


@dataclass
class Review:
    source: str
    source_kind: str  # "archive", "folder"
    manifest: dict | None
    entries: list[Entry]
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    renderable: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    archive_sha256: str | None = None  # of the archive file (archives only)
    checksum_source: str | None = None  # where the expected archive checksum came from, if any
    root: str = RESULTS  # the results folder's path in the archive (the manifest's ``results``)

    @property
    def unreadable(self) -> list[str]:
        """Files that could not be read, or whose own checksums (Parquet pages, content) fail."""
        return [e.path for e in self.entries if e.error]

    @property
    def ok(self) -> bool:
        """True only when nothing is unreadable, changed, missing, unlisted or otherwise wrong."""
        return not (self.mismatched or self.missing or self.extra or self.problems or self.unreadable)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "source_kind": self.source_kind,
            "ok": self.ok,
            "manifest": None if self.manifest is None else {k: v for k, v in self.manifest.items() if k != "files"},
            "entries": [e.__dict__ for e in self.entries],
            "mismatched": self.mismatched,
            "missing": self.missing,
            "extra": self.extra,
            "unreadable": self.unreadable,
            "renderable": self.renderable,
            "problems": self.problems,
            "archive_sha256": self.archive_sha256,
            "checksum_source": self.checksum_source,
            "results": self.root,
        }


def _parquet_info(fileobj: IO[bytes], entry: Entry) -> None:
    """Read the whole table, verifying its page and content checksums (a damaged file is
    reported in ``entry.error``, not raised), and summarise it."""
    try:
        table = verify_table(fileobj, entry.path)
    except DamagedArtefactError as e:
        entry.error = str(e)
        return
    entry.rows = table.num_rows
    entry.columns = list(table.schema.names)
    try:
        entry.provenance = json.loads(table.schema.metadata[PROVENANCE_KEY])
    except (ValueError, TypeError) as e:
        entry.error = f"{entry.path}: its provenance is not valid JSON ({e})"
        return
    entry.summary = _summary(table, entry)


def _summary(table, entry: Entry) -> str:
    """Distinct values of the columns that index the rows, e.g. '2 priors × 4 families × 11 θ'."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = [c for c in KEY_COLUMNS if c in entry.columns]
    if "image_id" in keys and "image" in keys:
        keys.remove("image")
    parts = []
    for c in keys:
        try:
            col = table.column(c)
            if pa.types.is_nested(col.type):  # e.g. a list per row: not an index
                continue
            n = len(pc.unique(col))
        except Exception:  # noqa: BLE001 - a summary is a courtesy, never a failure
            continue
        parts.append(f"{n} {KEY_COLUMNS[c][0 if n == 1 else 1]}")
    return " × ".join(parts) if entry.rows else "empty"


def _entry(rel: str, size: int, fileobj: IO[bytes]) -> Entry:
    digest = sha256_of(fileobj)
    entry = Entry(path=rel, size=size, sha256=digest, kind=classify(rel))
    if rel.endswith(".parquet"):
        fileobj.seek(0)
        _parquet_info(fileobj, entry)
    return entry


def _file_entry(path: Path, rel: str) -> Entry:
    """The entry of the file ``path`` (``rel`` in the review); one that cannot be opened or read is
    an entry with an error."""
    try:
        with open(path, "rb") as f:
            return _entry(rel, os.fstat(f.fileno()).st_size, f)
    except OSError as e:
        return Entry(path=rel, size=0, sha256="", kind=classify(rel), error=f"unreadable: {type(e).__name__}: {e}")


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _relative_path(p: str) -> bool:
    pure = PurePosixPath(p)
    return bool(p) and not pure.is_absolute() and ".." not in pure.parts


def _parse_manifest(raw: bytes, where: str) -> tuple[dict | None, list[str]]:
    """(the manifest, problems): None when it is not JSON or not shaped like one of ours."""
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return None, [f"{where} is not valid JSON ({e}): nothing can be verified"]
    if not isinstance(manifest, dict):
        return None, [f"{where} is not a JSON object: nothing can be verified"]
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"{where}: unknown manifest format {manifest.get('format')!r} (expected {FORMAT})")
    root = manifest.get("results", RESULTS)
    if not (isinstance(root, str) and _relative_path(root)):
        problems.append(f"{where}: 'results' {root!r} is not a relative path without '..' (read as {RESULTS!r})")
    files = manifest.get("files")
    if not isinstance(files, list):
        return None, problems + [f"{where} has no list of files: nothing can be verified"]
    seen = set()
    for i, f in enumerate(files):
        ok = (
            isinstance(f, dict)
            and isinstance(f.get("path"), str)
            and _relative_path(f["path"])
            and isinstance(f.get("size"), int)
            and not isinstance(f["size"], bool)
            and f["size"] >= 0
            and isinstance(f.get("sha256"), str)
            and _HEX64.fullmatch(f["sha256"])
        )
        if not ok:
            return None, problems + [
                f"{where}: entry {i} of 'files' is malformed (needs a relative path, a size and "
                "a sha256): nothing can be verified"
            ]
        if f["path"] in seen:
            problems.append(f"{where} lists {f['path']!r} twice")
        seen.add(f["path"])
    return manifest, problems


def _check_config(rv: Review, text: bytes | None, where: str) -> None:
    """The config.yaml of an archive must be the manifest's configuration (it is what a re-render uses)."""
    if rv.manifest is None:
        return
    if text is None:
        rv.problems.append(f"{where} is missing: a re-render would not use the run's configuration")
        return
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        rv.problems.append(f"{where} is not valid YAML ({e})")
        return
    if json.loads(json.dumps(cfg or {}, default=str)) != json.loads(
        json.dumps(rv.manifest.get("config") or {}, default=str)
    ):
        rv.problems.append(f"{where} differs from the configuration recorded in the manifest")


def _spooled(data: IO[bytes]):
    buf = tempfile.SpooledTemporaryFile(max_size=64 << 20)
    while block := data.read(1 << 20):
        buf.write(block)
    buf.seek(0)
    return buf


def _review_archive(path: Path, rv: Review) -> None:
    config_text = None
    manifest_seen = False
    seen: set[str] = set()
    try:
        for member, data in iter_tar(path):
            name = "/".join(member_parts(member.name, path))
            if member.isdir():
                continue
            if not member.isreg():
                what = "a link" if (member.issym() or member.islnk()) else "a special file"
                rv.problems.append(f"member {name!r} is {what}: `snakemake archive` writes regular files only")
                continue
            if name in seen:
                rv.problems.append(f"member {name!r} appears twice (unpacking would keep only the last)")
                continue
            seen.add(name)
            with _spooled(data) as buf:
                if name == MANIFEST:
                    manifest_seen = True
                    rv.manifest, problems = _parse_manifest(buf.read(), f"{path}: {MANIFEST}")
                    rv.problems.extend(problems)
                elif name == CONFIG_FILE:
                    config_text = buf.read()
                else:
                    rv.entries.append(_entry(name, member.size, buf))
    except ArchiveError as e:
        rv.problems.append(f"the archive could not be read to its end: {e}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:  # while reading a member's data
        rv.problems.append(
            f"the archive could not be read to its end: {path} is damaged or truncated: {type(e).__name__}: {e}"
        )
    rv.root = _manifest_root(rv.manifest)
    if not manifest_seen:
        rv.problems.append(
            f"no {MANIFEST} in the archive: its files cannot be verified "
            "(an archive made by `snakemake archive` always has one)"
        )
    _check_config(rv, config_text, f"{path}: {CONFIG_FILE}")


def _manifest_root(manifest) -> str:
    """The results folder's path recorded in a manifest (``results``; archives made before it: ``results``)."""
    root = manifest.get("results") if isinstance(manifest, dict) else None
    return root if isinstance(root, str) and _relative_path(root) else RESULTS


def _review_folder(path: Path, rv: Review) -> None:
    results, mpath, rv.root = _locate(path)
    if mpath is not None:
        try:
            raw = mpath.read_bytes()
        except OSError as e:
            rv.problems.append(f"{mpath} is unreadable ({e}): nothing can be verified")
        else:
            rv.manifest, problems = _parse_manifest(raw, str(mpath))
            rv.problems.extend(problems)
        cfg = mpath.parent / CONFIG_FILE
        try:
            _check_config(rv, cfg.read_bytes() if cfg.exists() else None, str(cfg))
        except OSError as e:
            rv.problems.append(f"{cfg} is unreadable ({e})")
    for rel, file in _walk(results, EXCLUDE, rv.root):
        rv.entries.append(_file_entry(file, rel))


def _peek_root(mpath: Path) -> str:
    """The ``results`` of the manifest ``mpath``, read leniently (the full check comes later)."""
    try:
        return _manifest_root(json.loads(mpath.read_bytes()))
    except (OSError, ValueError, UnicodeDecodeError):
        return RESULTS


def _configured_results(path: Path) -> str | None:
    """The ``results`` of the config.yaml in ``path`` (a working directory), when it names a folder there."""
    try:
        root = (yaml.safe_load((path / CONFIG_FILE).read_text()) or {}).get("results")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return root if isinstance(root, str) and _relative_path(root) and (path / root).is_dir() else None


def _locate(path: Path) -> tuple[Path, Path | None, str]:
    """For a folder: (its results folder, the manifest that describes it or None, the results
    folder's path in the manifest's terms).

    ``path`` is a folder holding a manifest (an unpacked archive: its results folder is the
    manifest's ``results``, e.g. ``results/demo``), the results folder itself (the manifest
    is found that many levels up), or a folder without a manifest: a working directory (its
    config.yaml's ``results``, else its ``results/``) or a results folder."""
    if (path / MANIFEST).exists():
        root = _peek_root(path / MANIFEST)
        return path / root, path / MANIFEST, root
    for base in list(path.resolve().parents)[:8]:
        if (base / MANIFEST).exists():
            root = _peek_root(base / MANIFEST)
            if (base / root).resolve() == path.resolve():
                return path, base / MANIFEST, root
    configured = _configured_results(path)
    if configured:
        return path / configured, None, configured
    if (path / RESULTS).is_dir():
        return path / RESULTS, None, RESULTS
    return path, None, path.resolve().name


def _check_detached(path: Path, rv: Review, expected_sha256: str | None) -> None:
    """Compare the archive's sha256 with one given out of band, else with ``<archive>.sha256`` if present."""
    rv.archive_sha256 = sha256_file(path)
    if expected_sha256 is not None:
        expected, rv.checksum_source = expected_sha256.strip().lower(), "given on the command line"
    elif checksum_path(path).exists():
        rv.checksum_source = str(checksum_path(path))
        try:
            expected = read_checksum_file(checksum_path(path))
        except (ValueError, OSError) as e:
            rv.problems.append(str(e))
            return
    else:
        return
    if not _HEX64.fullmatch(expected):
        rv.problems.append(f"the expected checksum {expected_sha256!r} is not 64 hex digits")
    elif expected != rv.archive_sha256:
        rv.problems.append(
            f"the archive's sha256 {rv.archive_sha256} differs from {expected} "
            f"({rv.checksum_source}): the archive changed since it was made"
        )


def review(path: str | Path, *, expected_sha256: str | None = None) -> Review:
    """Review an archive (.tar.gz), an unpacked archive or a ``results/`` folder.

    ``expected_sha256``: the archive's checksum obtained apart from it (else a
    ``<archive>.sha256`` beside it is used when present). See the module docstring
    for what makes the verdict fail."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    rv = Review(source=str(path), source_kind="archive" if path.is_file() else "folder", manifest=None, entries=[])
    if path.is_file():
        _check_detached(path, rv, expected_sha256)
        _review_archive(path, rv)
    else:
        if expected_sha256 is not None:
            raise ValueError("a checksum of the archive can only be checked on the archive file, not a folder")
        _review_folder(path, rv)
    for e in rv.entries:  # the kinds, now that the results folder is known (an archive's manifest comes last)
        e.kind = classify(e.path, rv.root)
    _attribute_rules(rv)
    _verify(rv)
    _renderability(rv)
    return rv


#: the folders of a results folder whose files are rendered from artefacts: figures, tables, report pages
_RENDERED = ("figures", "tables", "report")


def _rebase(pattern: str, root: str) -> str:
    """A pattern of :data:`FIGURE_INPUTS` or :data:`PRODUCERS` (``results/…``) under the results folder ``root``."""
    return root + pattern[len(RESULTS) :] if pattern.startswith(f"{RESULTS}/") else pattern


def _rules(rv: Review) -> list[dict]:
    return (rv.manifest or {}).get("rules") or []


def _attribute_rules(rv: Review) -> None:
    rules = _rules(rv)
    compiled = [(r["rule"], [re.compile(x) for x in r.get("output_regex") or []]) for r in rules]
    for e in rv.entries:
        if e.kind in ("log", "benchmark"):
            continue
        for name, regexes in compiled:
            if any(rx.match(e.path) for rx in regexes):
                e.rule = name
                break
        else:
            if not rules:
                e.rule = next((r for pat, r in PRODUCERS if fnmatch.fnmatch(e.path, _rebase(pat, rv.root))), None)


def _verify(rv: Review) -> None:
    if rv.manifest is None:
        return
    expected = {f["path"]: f for f in rv.manifest.get("files", [])}
    have = {e.path: e for e in rv.entries}
    for p, f in sorted(expected.items()):
        if p not in have:
            rv.missing.append(p)
        elif have[p].sha256 != f["sha256"] or have[p].size != f["size"]:
            rv.mismatched.append(p)
    rv.extra = sorted(p for p in have if p not in expected)


def _renderability(rv: Review) -> None:
    """Which figure and table rules have all their inputs, intact, in this archive.

    Snakemake renders such a target without recomputing anything: it leaves
    existing inputs alone (their own inputs need not be there), as long as no
    input is newer than the files made from it, which an archive preserves."""
    damaged = set(rv.mismatched) | set(rv.unreadable)
    present = {e.path for e in rv.entries if e.path not in damaged}
    rules = _rules(rv)
    targets = []
    if rules:
        for r in rules:
            outs = r["outputs"]
            is_figure = any(o.startswith(tuple(f"{rv.root}/{sub}/" for sub in _RENDERED)) for o in outs)
            if not is_figure or any(_WILDCARD.search(o) for o in outs) or r["rule"] in ("all", "archive"):
                continue
            targets.append((r["rule"], outs, r["inputs"], r.get("input_functions", False), False))
    else:
        for name, spec in FIGURE_INPUTS.items():
            outs, inputs = ([_rebase(p, rv.root) for p in spec[k]] for k in ("outputs", "inputs"))
            targets.append((name, outs, inputs, False, True))
    for name, outs, inputs, has_functions, globbing in targets:
        if globbing:
            missing = [p for p in inputs if not any(fnmatch.fnmatch(x, p) for x in present)]
            matched = sorted({x for p in inputs for x in present if fnmatch.fnmatch(x, p)})
        else:
            missing = [p for p in inputs if p not in present]
            matched = [p for p in inputs if p in present]
        # a damaged file that an input needs (named, or matched by a pattern) rules the target out
        bad = sorted(x for x in damaged if any(x == p or (globbing and fnmatch.fnmatch(x, p)) for p in inputs))
        if missing or bad:
            status = "no"
        elif has_functions:
            status = "unknown"
        else:
            status = "yes"
        rv.renderable.append(
            {
                "rule": name,
                "outputs": outs,
                "status": status,
                "inputs": matched,
                "missing": sorted(set(missing) | set(bad)),
            }
        )


# --------------------------------------------------------------------------- printing


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _short(commit) -> str:
    commit = str(commit)
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def _provenance_line(p: dict) -> str:
    v = p.get("versions") or {}
    bits = [f"config [{', '.join(p.get('config') or {})}]"]
    if p.get("git_commit"):
        bits.append(f"commit {_short(p['git_commit'])}")
    if v:
        bits.append(" ".join(f"{k} {v[k]}" for k in ("prior-landscape", "torch", "numpy") if k in v))
    if p.get("device"):
        bits.append(f"device {p['device']}")
    if p.get("wall_time_s") is not None:
        w = float(p["wall_time_s"])
        bits.append(f"wall {w:.0f} s" if w >= 100 else f"wall {w:.3g} s")
    if p.get("created_utc"):
        bits.append(f"made {p['created_utc']}" + (f" on {p['host']}" if p.get("host") else ""))
    return "; ".join(bits)


def format_review(rv: Review, verbose: bool = False) -> str:
    """The review as text: a one-screen summary (what was run, what passed, what is flagged),
    then the detail (manifest, artefacts, other files, checksums, re-renderable figures and
    tables) and the verdict as the last line."""
    lines = [f"Review of {'archive' if rv.source_kind == 'archive' else 'folder'} {rv.source}"]
    lines += _summary_lines(rv)
    lines += ["", "Detail", *_manifest_lines(rv)]
    lines += ["", *_artefact_lines(rv)]
    lines += ["", *_other_file_lines(rv, verbose)]
    lines += ["", *_checksum_lines(rv)]
    lines += ["", *_renderable_lines(rv)]
    lines += ["", verdict(rv)]
    return "\n".join(lines)


# ------------------------------------------------------------------ the one-screen summary


#: the kinds of files of a run (:func:`classify`), in the order a review lists them
_KINDS = ("artefact", "model", "figure", "table", "report", "log", "benchmark", "other")


def _when(stamp) -> str:
    """An ISO time stamp as 'YYYY-MM-DD HH:MM UTC' (as given when it is not one)."""
    try:
        t = _dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if t.tzinfo is not None:
        t = t.astimezone(_dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M") + " UTC"


def _artefacts(rv: Review) -> list[Entry]:
    return [e for e in rv.entries if e.kind == "artefact"]


def _commits(rv: Review) -> list[str]:
    return sorted({str(e.provenance.get("git_commit")) for e in _artefacts(rv) if e.provenance})


def _summary_lines(rv: Review) -> list[str]:
    """What was run, what passed, what is flagged (with counts), and the verdict: one screen."""
    lines = ["Summary"]
    lines += [f"  {k:<9} {v}" for k, v in _what_was_run(rv)]
    passed, failed, notes = _passed(rv), _failed(rv), _notes(rv)
    lines.append(f"  passed ({len(passed)})")
    lines += [f"    ok    {p}" for p in passed] or ["    (nothing)"]
    lines.append(f"  flagged ({sum(n for n, _ in failed)} failing, {len(notes)} notes)")
    lines += [f"    FAIL  {n} {what}" for n, what in failed]
    lines += [f"    note  {note}" for note in notes]
    if not failed and not notes:
        lines.append("    (nothing)")
    lines.append(f"  verdict   {verdict(rv)}")
    return lines


def _what_was_run(rv: Review) -> list[tuple[str, str]]:
    """(heading, text): configuration and scale, git commit, dates, contents."""
    m = rv.manifest or {}
    cfg = m.get("config") or {}
    if cfg:
        priors = cfg.get("priors") or {}
        run = (
            f"scale {cfg.get('scale')}, results {cfg.get('results', rv.root)}, device {cfg.get('device')}, "
            f"seed {cfg.get('seed')}; {len(priors)} prior{'' if len(priors) == 1 else 's'}: {', '.join(priors)}"
        )
    else:
        run = f"results {rv.root}; configuration unknown (no manifest)"
    commits = _commits(rv)
    commit = _short(m["git_commit"]) + " (manifest)" if m.get("git_commit") else "unknown (no manifest)"
    if commits:
        commit += f"; artefacts made at {len(commits)} commit{'' if len(commits) == 1 else 's'}"
    made = sorted(_when(e.provenance["created_utc"]) for e in _artefacts(rv) if (e.provenance or {}).get("created_utc"))
    dates = (
        "artefacts: no dates" if not made else f"artefacts made {made[0]}" + (f" to {made[-1]}" * (made[-1] != made[0]))
    )
    if m.get("created_utc"):
        dates += f"; archived {_when(m['created_utc'])}" + (f" on {m['host']}" if m.get("host") else "")
    kinds = [(k, sum(e.kind == k for e in rv.entries)) for k in _KINDS]
    contents = f"{len(rv.entries)} files, {_size(sum(e.size for e in rv.entries))}: " + ", ".join(
        f"{n} {k}{'' if n == 1 else 's'}" for k, n in kinds if n
    )
    return [("run", run), ("commit", commit), ("dates", dates), ("contents", contents)]


def _passed(rv: Review) -> list[str]:
    out = []
    parquet = [e for e in rv.entries if e.path.endswith(".parquet")]
    if rv.entries and not rv.unreadable:
        out.append(f"every file readable ({len(parquet)} Parquet files read whole, their own checksums verified)")
    if rv.manifest is not None and not (rv.mismatched or rv.missing or rv.extra):
        out.append(f"all {len(rv.manifest.get('files', []))} files match the manifest (sha256 and size)")
    if rv.manifest is not None and not rv.problems:
        where = "archive read to its end; " if rv.source_kind == "archive" else ""
        out.append(f"{where}manifest well formed; config.yaml is the configuration it records")
    if rv.checksum_source and not any("sha256" in p for p in rv.problems):
        out.append(f"archive sha256 matches the checksum {rv.checksum_source}")
    yes = sum(r["status"] == "yes" for r in rv.renderable)
    if rv.renderable and yes == len(rv.renderable):
        out.append(f"all {yes} figure, table and page rules re-renderable from this alone")
    return out


def _failed(rv: Review) -> list[tuple[int, str]]:
    """(count, what) of everything that fails the verdict (named one by one in the detail)."""
    counts = [
        (len(rv.unreadable), "unreadable or damaged (UNREADABLE below)"),
        (len(rv.mismatched), "changed since the manifest (CHANGED below)"),
        (len(rv.missing), "missing (MISSING below)"),
        (len(rv.extra), "not listed in the manifest (NOT LISTED below)"),
        (len(rv.problems), "other problems (PROBLEM below)"),
    ]
    return [(n, what) for n, what in counts if n]


def _notes(rv: Review) -> list[str]:
    """What does not fail the verdict but a reader should know."""
    notes = []
    if rv.manifest is None:
        notes.append("no manifest: files checked for readability only (make one with `snakemake archive`)")
    elif rv.source_kind == "archive" and not rv.checksum_source:
        notes.append("no detached checksum: an archive changed with its manifest goes unseen (see --sha256)")
    commits = _commits(rv)
    if len(commits) > 1:
        notes.append(f"artefacts from {len(commits)} git commits: rerun for a single-commit archive")
    if any(c.endswith("-dirty") for c in commits):
        notes.append("artefacts made from a working tree with uncommitted changes (-dirty)")
    torches = sorted({str((e.provenance.get("versions") or {}).get("torch")) for e in _artefacts(rv) if e.provenance})
    if len(torches) > 1:
        notes.append(f"artefacts made with torch {', '.join(torches)}")
    no = [r["rule"] for r in rv.renderable if r["status"] == "no"]
    if no:
        which = f" ({', '.join(no)})" if len(no) <= 3 else ""
        notes.append(
            f"{len(no)} of {len(rv.renderable)} figure and table rules not re-renderable from this alone{which}"
        )
    unknown = sum(r["status"] == "unknown" for r in rv.renderable)
    if unknown:
        notes.append(f"{unknown} rules with inputs computed by a function: re-renderability unknown")
    return notes


# ----------------------------------------------------------------------------- the detail


def _manifest_lines(rv: Review) -> list[str]:
    m = rv.manifest
    if not m:
        return ["  no manifest: checksums cannot be verified (make one with `snakemake archive`)"]
    sw = m.get("software") or {}
    lines = [
        f"  manifest {m.get('format')}, made {m.get('created_utc')} on {m.get('host')}, "
        f"git commit {m.get('git_commit') or 'unknown'}",
        "  software: "
        + ", ".join(
            f"{k} {sw[k]}"
            for k in ("python", "prior-landscape", "torch", "numpy", "snakemake", "snakemake-executor-plugin-slurm")
            if k in sw
        ),
    ]
    cfg = m.get("config") or {}
    if cfg:
        priors = cfg.get("priors") or {}
        lines.append(
            f"  config: scale {cfg.get('scale')}, device {cfg.get('device')}, seed {cfg.get('seed')}; "
            f"priors: " + ", ".join(f"{k} ({v.get('kind')})" for k, v in priors.items())
        )
    commits = _commits(rv)
    if len(commits) > 1:
        lines.append(
            f"  note: the artefacts were made at {len(commits)} git commits ({', '.join(_short(c) for c in commits)}); "
            "rerun for a single-commit archive"
        )
    return lines


def _artefact_lines(rv: Review) -> list[str]:
    artefacts = _artefacts(rv)
    lines = [f"Artefacts ({len(artefacts)})"]
    for e in artefacts:
        head = f"  {e.path}  {_size(e.size)}"
        if e.rows is not None:
            head += f", {e.rows} row{'' if e.rows == 1 else 's'}"
        if e.rule:
            head += f", rule {e.rule}"
        lines.append(head)
        if e.error:
            lines.append(f"      ERROR {e.error}")
            continue
        cols = ", ".join(e.columns[:12]) + (f", … ({len(e.columns)} columns)" if len(e.columns) > 12 else "")
        lines.append(f"      columns: {cols}")
        if e.summary:
            lines.append(f"      summary: {e.summary}")
        lines.append("      provenance: " + (_provenance_line(e.provenance) if e.provenance else "none"))
    return lines


def _other_file_lines(rv: Review, verbose: bool) -> list[str]:
    others: dict[str, list[Entry]] = {}
    for e in rv.entries:
        if e.kind != "artefact":
            others.setdefault(e.kind, []).append(e)
    lines = ["Other files"]
    for kind in _KINDS[1:]:
        group = others.get(kind, [])
        if not group:
            continue
        lines.append(f"  {kind}s: {len(group)}, {_size(sum(e.size for e in group))}")
        if verbose or kind in ("model", "figure", "table", "report"):
            lines += [f"      {e.path}  {_size(e.size)}" + (f", rule {e.rule}" if e.rule else "") for e in group]
    return lines


def _checksum_lines(rv: Review) -> list[str]:
    lines = []
    if rv.source_kind == "archive":
        if rv.checksum_source:
            lines.append(f"Archive sha256 {rv.archive_sha256}, checked against {rv.checksum_source}")
        else:
            lines.append(
                f"Archive sha256 {rv.archive_sha256}; no detached checksum to check it against (an archive "
                "changed together with its manifest is detected only that way: see --sha256)"
            )
    m = rv.manifest
    if m is None:
        lines.append("Checksums: not verified (no usable manifest); every file was read and its own checksums checked")
    else:
        n = len(m.get("files", []))
        if not (rv.mismatched or rv.missing or rv.extra):
            lines.append(f"Checksums: all {n} files match the manifest")
        else:
            lines.append(
                f"Checksums: FAILED ({len(rv.mismatched)} changed, {len(rv.missing)} missing, "
                f"{len(rv.extra)} not listed, of {n} files)"
            )
        lines += [f"  CHANGED  {p}  (sha256 or size differs from the manifest)" for p in rv.mismatched]
        lines += [f"  MISSING  {p}" for p in rv.missing]
        lines += [f"  NOT LISTED  {p}  (not in the manifest)" for p in rv.extra]
    lines += [f"  UNREADABLE  {e.path}: {e.error}" for e in rv.entries if e.error]
    lines += [f"  PROBLEM  {p}" for p in rv.problems]
    return lines


def _renderable_lines(rv: Review) -> list[str]:
    lines = ["Figures and tables re-renderable from this alone (snakemake <output>, no recomputation)"]
    for r in rv.renderable:
        outs = ", ".join(PurePosixPath(o).name for o in r["outputs"])
        if r["status"] == "yes":
            lines.append(f"  yes      {r['rule']}: {outs}")
        elif r["status"] == "unknown":
            lines.append(f"  unknown  {r['rule']}: {outs} (inputs computed by a function)")
        else:
            lines.append(f"  no       {r['rule']}: {outs}; missing or damaged: {', '.join(r['missing'][:4])}")
    return lines


def verdict(rv: Review) -> str:
    """The review's last line: OK, or FAILED with what failed."""
    if rv.ok:
        return "OK" if rv.manifest is not None else "OK (every file readable; no manifest to verify them against)"
    counts = [
        (len(rv.unreadable), "unreadable or damaged"),
        (len(rv.mismatched), "changed"),
        (len(rv.missing), "missing"),
        (len(rv.extra), "not listed in the manifest"),
        (len(rv.problems), "other problems"),
    ]
    return "FAILED: " + ", ".join(f"{n} {what}" for n, what in counts if n)


def unpack(archive: str | Path, dest: str | Path, *, expected_sha256: str | None = None) -> Path:
    """Unpack an archive made by :func:`write_archive` into the new (or empty) folder ``dest``.

    The archive's detached checksum is checked first (``expected_sha256``, else
    ``<archive>.sha256`` when present). Members are written by
    :func:`prior_landscape.io.unpacking.safe_unpack` (no absolute paths, ``..``,
    links or devices; a damaged or truncated archive refused) into a hidden folder
    that is reviewed (:func:`review`) before it is renamed onto ``dest``: any file
    changed, missing, unlisted or damaged, a missing or malformed manifest, and
    ``dest`` is not created. Raises :class:`ArchiveError` naming the archive and
    what failed.
    """
    archive, dest = Path(archive), Path(dest)
    detached = Review(source=str(archive), source_kind="archive", manifest=None, entries=[])
    _check_detached(archive, detached, expected_sha256)
    if detached.problems:
        raise ArchiveError(f"refusing to unpack {archive}: " + "; ".join(detached.problems))

    def check(folder: Path, files) -> None:
        rv = review(folder)
        if rv.manifest is None or not rv.ok:
            details = [f"changed {p}" for p in rv.mismatched] + [f"missing {p}" for p in rv.missing]
            details += [f"not listed {p}" for p in rv.extra] + [f"unreadable {p}" for p in rv.unreadable]
            details += rv.problems + ([] if rv.manifest is not None else [f"no usable {MANIFEST}"])
            shown = "; ".join(details[:8]) + (f"; and {len(details) - 8} more" if len(details) > 8 else "")
            raise ArchiveError(f"refusing to unpack {archive}: it does not match its manifest ({shown})")

    return safe_unpack(archive, dest, check=check)


__all__ = [
    "FORMAT",
    "MANIFEST",
    "CONFIG_FILE",
    "FIGURE_INPUTS",
    "PRODUCERS",
    "EXCLUDE",
    "collect_files",
    "classify",
    "build_manifest",
    "write_archive",
    "rule_map",
    "review",
    "format_review",
    "verdict",
    "unpack",
    "Review",
    "Entry",
    "sha256_file",
    "checksum_path",
    "write_checksum_file",
    "read_checksum_file",
]
