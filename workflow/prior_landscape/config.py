"""Configuration checks: the JSON schema, with errors that name the offending key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


#: Settings that change how fast a result comes (or how densely it is recorded), never the
#: result itself: rules pass their sections without them (:func:`accuracy`), so changing one
#: reruns nothing, and jobs read them from the configuration at run time
#: (:meth:`prior_landscape.runtime.Job.speed`). ``device`` is one too (top level).
SPEED_ONLY: dict[str, tuple[str, ...]] = {
    "potential": ("batch_size",),
    "hessian": ("chunk_size",),
    "critical_points": ("checkpoint_every", "record_every"),
    "deblur": ("checkpoint_every", "record_every"),
    "training": ("checkpoint_every",),
}


def accuracy(section: dict, name: str) -> dict:
    """``section`` of the configuration without its speed-only settings (:data:`SPEED_ONLY`)."""
    return {k: v for k, v in section.items() if k not in SPEED_ONLY.get(name, ())}


def speed(section: dict, name: str) -> dict:
    """The speed-only settings of ``section`` (:data:`SPEED_ONLY`)."""
    return {k: v for k, v in section.items() if k in SPEED_ONLY.get(name, ())}


def posterior_settings(posterior: dict, prior: str) -> dict:
    """The posterior section as it applies to ``prior``: its ``by_prior[prior]`` entries over the
    section's own (nested sections merged key by key), ``by_prior`` itself removed — a costly prior
    (a score network) can profile fewer families, images or noise levels than a cheap exact one."""
    out = {k: v for k, v in posterior.items() if k != "by_prior"}
    for key, value in (posterior.get("by_prior") or {}).get(prior, {}).items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def non_finite_numbers(node, path: tuple = ()) -> list[tuple[str, float]]:
    """``(key path, value)`` of every NaN or infinite number in a parsed configuration
    (key paths as ``a.b.0``, like the schema's messages).

    JSON Schema bounds cannot reject NaN: every comparison with NaN is false, so
    ``exclusiveMinimum: 0`` lets ``.nan`` through (and ``.inf`` passes any bound
    that has no maximum). No key of the workflow takes a non-finite value, so they
    are refused everywhere, before the schema is consulted.
    """
    if isinstance(node, float) and not math.isfinite(node):  # bool is an int, never a float
        return [(".".join(map(str, path)) or "<top level>", node)]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in non_finite_numbers(v, (*path, k))]
    if isinstance(node, (list, tuple)):
        return [p for i, v in enumerate(node) for p in non_finite_numbers(v, (*path, i))]
    return []


#: Folders of a working directory that are not any configuration's: the archives of runs
#: (workflow/rules/archive.smk) and the downloads (``downloads.root``, default ``resources``).
ARCHIVES = "archives"
DEFAULT_DOWNLOAD_ROOT = "resources"


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def results_problems(config: dict) -> list[str]:
    """Problems of ``config['results']`` that the schema's pattern cannot see: the folder must
    neither hold nor lie inside the archives' folder or the downloads (``downloads.root``), which
    runs of every configuration share and an archive of the results must not pack."""
    results = config.get("results")
    if not isinstance(results, str) or not results:
        return []  # the schema names it
    here = Path(results)
    shared = {ARCHIVES: "the archives' folder (snakemake archive)"}
    root = (config.get("downloads") or {}).get("root", DEFAULT_DOWNLOAD_ROOT)
    if isinstance(root, str) and root and not Path(root).is_absolute():
        shared[root] = "downloads.root (shared by every configuration)"
    return [
        f"  results: {results!r} overlaps {folder!r}, {what}: choose a folder of its own (e.g. results/<name>)"
        for folder, what in shared.items()
        if _nested(here, Path(folder))
    ]


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH, source: str = "config") -> dict:
    """Validate ``config`` against the workflow's JSON schema.

    Raises :class:`ConfigError` listing every problem as ``key.path: message``:
    the schema's findings, every NaN or infinite number (which the schema's
    bounds cannot catch, see :func:`non_finite_numbers`) and a ``results``
    folder that overlaps a shared one (:func:`results_problems`).
    """
    import jsonschema

    lines = [
        f"  {key}: {value!r} is not a finite number (NaN and infinities are never valid here)"
        for key, value in non_finite_numbers(config)
    ]
    lines += results_problems(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    for err in errors:
        # an if/then failure hides the useful message in its context
        leaves = [e for e in err.context] if err.context else [err]
        for leaf in leaves or [err]:
            # a key the schema forbids in this place ({not: {}}) says why in its description
            forbidden = leaf.validator == "not" and leaf.validator_value == {}
            message = leaf.schema.get("description", "not allowed here") if forbidden else leaf.message
            lines.append(f"  {_key_path(leaf)}: {message}")
    if lines:
        lines = list(dict.fromkeys(lines))
        raise ConfigError(f"invalid {source} ({len(lines)} problem(s)):\n" + "\n".join(lines))
    return config


def theta_grid(spec: dict) -> np.ndarray:
    """The θ grid of a sweep: ``numpy.linspace(start, stop, num)``."""
    return np.linspace(float(spec["start"]), float(spec["stop"]), int(spec["num"]))
