"""Scatter–gather of a long stage: which units belong to shard i of n, and the gather of the shards.

A long stage (a likelihood sweep over its images, a benchmark over its cases, …) is split into
``count`` shards, each a job of its own that computes the stage's rows for its units only and
writes them, with a shard record in its provenance, to a shard file. The gather concatenates
the shard files into the artefact the unsharded job writes, row for row:

- **assignment** (:func:`shard_units`): unit u (0 ≤ u < n_units) belongs to shard ``u mod count``
  (strided, deterministic: the units of a stage are often ordered by kind, e.g. training crops
  before white noise, so that every shard gets a share of each kind; ``count > n_units`` leaves
  the last shards empty); with ``block = b``, blocks of b consecutive units are dealt out so
  (unit u in shard ``(u // b) mod count``), for stages whose units are computed in batches that
  couple them (a benchmark method stops when every image of its batch has converged): the
  batches are then the same whether the stage is sharded or not;
- **gather** (:func:`gather_tables`): every shard present once, written for this stage, shard
  count and number of units; every unit present in its own shard and nowhere else; every shard
  made with the same configuration, seeds, package versions and code (its provenance); then the
  rows concatenated and put in the stage's order (:data:`STAGES`: the unsharded job's row order,
  e.g. family, θ, image for a sweep), a stable sort that keeps the order of rows within a unit. A
  table that every shard computes from all units (P eq. 14's λ table of the posterior profiles,
  chosen from every image) must be equal in every shard and is written once.

A shard's random numbers must be keyed by unit, not by batch or position in the shard (the
potential's probes are keyed by image: :func:`prior_landscape.landscape.potential.rademacher_probes`),
so that a sharded and an unsharded run compute the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["STAGES", "Shard", "ShardError", "gather_tables", "n_blocks", "shard_units"]

#: the provenance key of a shard file's shard record (absent from a gathered or unsharded artefact)
SHARD_KEY = "shard"
#: provenance entries that define a result: shards that differ in one are never gathered together
DEFINING = ("config", "seeds", "versions", "git_commit")


class ShardError(ValueError):
    """A shard file is missing, duplicated, foreign to the gather, or its units are not its own."""


@dataclass(frozen=True)
class StageOrder:
    """How a stage's table is gathered: the column naming each row's unit, and the columns whose
    values, in the unsharded job's order, sort the concatenated rows (stable: rows of one unit
    keep their order). Columns given ``categories`` at the gather sort in that order, not by value."""

    unit: str | None  # None: a table every shard computes whole (from all units), equal in every shard
    order: tuple[str, ...]


#: every sharded stage's outputs (the rule's output names) and how each is gathered
STAGES: dict[str, dict[str, StageOrder]] = {
    # rows: family × θ × image (prior_landscape.landscape.sweeps.likelihood_sweep)
    "likelihood_sweep": {"table": StageOrder(unit="image_id", order=("family", "theta", "image_id"))},
    # P's descent from each start: summary and images one row per start, the trajectory start × step
    # (prior_landscape.landscape.critical_points.critical_point_tables)
    "critical_points": {
        "summary": StageOrder(unit="image", order=("image",)),
        "trajectory": StageOrder(unit="image", order=("image", "step")),
        "images": StageOrder(unit="image", order=("image",)),
    },
    # the full Hessian's spectrum at each critical point: rows point × singular value (scripts/hessian_spectra.py)
    "hessian_spectra": {"table": StageOrder(unit="point", order=("point", "index"))},
    # P Figs. 9–10 (prior_landscape.inverse.profiles.profile_study): the profiles family × x̄ kind (× σ_y)
    # × image × θ, the x̄ points kind × image; P eq. 14's λ table is chosen from every image, in every shard
    "posterior_profiles": {
        "noiseless": StageOrder(unit="image", order=("family", "x_bar", "image", "theta")),
        "noisy": StageOrder(unit="image", order=("family", "x_bar", "sigma_y", "image", "theta")),
        "lam": StageOrder(unit=None, order=()),
        "points": StageOrder(unit="image", order=("x_bar", "image")),
    },
    # P §5's deblurring runs of one case (prior_landscape.inverse.cases.case_tables): run = initialisation
    # × image; the trajectory record × run
    "deblur_runs": {
        "trajectory": StageOrder(unit="image", order=("iteration", "run")),
        "metrics": StageOrder(unit="image", order=("run",)),
        "images": StageOrder(unit="image", order=("run",)),
    },
    # one method on one dataset's cases: rows seed × σ_y × case (prior_landscape.methods.benchmark.run_on_testset)
    "benchmark": {
        "runs": StageOrder(unit="case", order=("seed", "sigma_y", "case")),
        "estimates": StageOrder(unit="case", order=("seed", "case")),
    },
}


def shard_units(n_units: int, index: int, count: int, block: int = 1) -> np.ndarray:
    """The units of shard ``index`` of ``count``: u ∈ [0, n_units) with u // block ≡ index (mod count), ascending."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count}: the index must be in [0, {count}) and the count ≥ 1")
    if n_units < 0 or block < 1:
        raise ValueError(f"n_units must be ≥ 0 and block ≥ 1, got {n_units} and {block}")
    units = np.arange(n_units)
    return units[(units // block) % count == index]


def n_blocks(n_units: int, block: int = 1) -> int:
    """How many blocks of ``block`` consecutive units ``n_units`` units make (the most shards that are not empty)."""
    return -(-int(n_units) // int(block))


@dataclass(frozen=True)
class Shard:
    """The shard a job computes: shard ``index`` of ``count`` of ``stage``'s ``n_units`` units.
    ``count == 1`` is the unsharded job (it writes the artefact itself, with no shard record)."""

    stage: str
    index: int
    count: int
    n_units: int
    block: int = 1

    def __post_init__(self):
        shard_units(self.n_units, self.index, self.count, self.block)  # checks the numbers

    @classmethod
    def of_job(cls, stage: str, wildcards: Mapping, n_units: int, block: int = 1) -> Shard:
        """The shard of a job: its rule's ``{shard}`` and ``{shards}`` wildcards when the stage is
        sharded, the whole stage when it has none. ``{shards}`` must be the shard count the workflow
        computed (at most the number of blocks: a job never writes a shard that no gather expects)."""
        if stage not in STAGES:
            raise ValueError(f"{stage!r} is not a sharded stage ({', '.join(STAGES)})")
        if wildcards.get("shard") is None:
            return cls(stage, 0, 1, n_units, block)
        index, count = int(wildcards.get("shard")), int(wildcards.get("shards"))
        if count > max(n_blocks(n_units, block), 1):
            raise ValueError(f"{stage}: {count} shards of {n_blocks(n_units, block)} block(s) of units: too many")
        return cls(stage, index, count, n_units, block)

    @property
    def units(self) -> np.ndarray:
        return shard_units(self.n_units, self.index, self.count, self.block)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def provenance(self) -> dict:
        """The shard record to add to the provenance of the file the job writes (``{}`` when unsharded)."""
        if not self.sharded:
            return {}
        record = {"stage": self.stage, "index": self.index, "count": self.count, "n_units": self.n_units}
        record |= {"block": self.block} if self.block > 1 else {}
        return {SHARD_KEY: record}


def _check_record(path: str, prov: dict, stage: str, index: int, count: int, seen: dict[int, str]) -> dict:
    record = prov.get(SHARD_KEY)
    if not isinstance(record, dict):
        raise ShardError(f"{path} is not a shard file (its provenance has no shard record)")
    if record.get("stage") != stage:
        raise ShardError(f"{path} is a shard of stage {record.get('stage')!r}, not of {stage!r}: a foreign shard")
    if record.get("count") != count:
        raise ShardError(
            f"{path} is shard {record.get('index')} of {record.get('count')}, but {count} shard file(s) "
            "were given: a shard is missing, or this one is foreign"
        )
    if record.get("index") in seen:
        first = seen[record.get("index")]
        raise ShardError(f"{path} is shard {record.get('index')} of {count}, as {first}: duplicated")
    if record.get("index") != index:
        raise ShardError(
            f"{path} is shard {record.get('index')} of {count}, given in the place of shard {index}: "
            f"shard {index} is missing"
        )
    seen[index] = path
    return record


def _check_units(path: str, units: np.ndarray, expected: np.ndarray, owner: dict[int, str]) -> None:
    if len(units) and not np.issubdtype(np.asarray(units).dtype, np.integer):
        raise ShardError(f"{path}: its unit column is not integer")
    found = set(np.unique(units).tolist())
    own = set(expected.tolist())
    for u in sorted(found - own):
        where = f", which {owner[u]} holds" if u in owner else ""
        raise ShardError(f"{path} holds unit {u}, which is not one of its units {sorted(own)}{where}")
    missing = sorted(own - found)
    if missing:
        raise ShardError(f"{path} lacks unit(s) {missing} of its units {sorted(own)}")
    for u in found:
        owner[u] = path


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal columns, types and values (NaN equal to NaN), provenance aside."""
    a, b = a.copy(), b.copy()
    a.attrs, b.attrs = {}, {}
    return list(a.columns) == list(b.columns) and a.equals(b)


def _merged_provenance(provs: list[dict], paths: list[str], started: float) -> dict:
    """The gathered artefact's provenance: what defines the result as the shards' (equal in all);
    where and how long it ran, merged (device and host: every distinct one; wall time: the sum of the
    shards'); the shard count and files under ``shards``."""
    out = {k: v for k, v in provs[0].items() if k != SHARD_KEY}

    def distinct(key):
        values = list(dict.fromkeys(str(p.get(key)) for p in provs))
        return values[0] if len(values) == 1 else "; ".join(values)

    out["device"], out["host"] = distinct("device"), distinct("host")
    walls = [p.get("wall_time_s") for p in provs]
    out["wall_time_s"] = float(sum(w for w in walls if w is not None))
    out["created_utc"] = max(str(p.get("created_utc")) for p in provs)
    out["shards"] = {
        "count": len(provs),
        "files": [Path(p).name for p in paths],
        "wall_time_s": walls,
        "gather_s": time.perf_counter() - started,
    }
    return out


def gather_tables(
    paths: Sequence[str | Path],
    stage: str,
    output: str,
    categories: Mapping[str, Sequence] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The table and provenance of ``stage``'s output ``output`` gathered from its shard files
    ``paths`` (shard 0, 1, …, count − 1 in this order), checked as the module docstring says;
    :class:`ShardError` names the offending file."""
    from prior_landscape.io.artefacts import read_table

    started = time.perf_counter()
    if stage not in STAGES or output not in STAGES[stage]:
        raise ValueError(f"{stage!r} has no sharded output {output!r}")
    spec = STAGES[stage][output]
    paths = [str(p) for p in paths]
    count = len(paths)
    if count < 1:
        raise ShardError(f"no shard files to gather for {stage} ({output})")
    if count == 1:  # a stage sharded by configuration but lowered to one shard: the whole job's table
        df = read_table(paths[0])
        if SHARD_KEY not in df.attrs["provenance"]:
            return df, dict(df.attrs["provenance"])
    frames, provs, owner, seen = [], [], {}, {}
    n_units = block = None
    for index, path in enumerate(paths):
        df = read_table(path)
        prov = df.attrs["provenance"]
        record = _check_record(path, prov, stage, index, count, seen)
        if n_units is None:
            n_units, block = record.get("n_units"), record.get("block", 1)
        elif (record.get("n_units"), record.get("block", 1)) != (n_units, block):
            raise ShardError(
                f"{path} is a shard of {record.get('n_units')} units in blocks of {record.get('block', 1)}, "
                f"{paths[0]} of {n_units} in blocks of {block}"
            )
        for key in DEFINING:
            if provs and prov.get(key) != provs[0].get(key):
                raise ShardError(
                    f"{path} was made with another {key} than {paths[0]}: shards of different runs "
                    "are never gathered (rerun its shard)"
                )
        if spec.unit is None:  # the same table in every shard
            if frames and not _same_table(df, frames[0]):
                raise ShardError(
                    f"{path}: its {output} table differs from {paths[0]}'s, though every shard computes it "
                    "from all units: the shards did not run the same computation (rerun them)"
                )
        elif spec.unit not in df.columns:
            raise ShardError(f"{path} has no unit column {spec.unit!r}")
        else:
            _check_units(path, df[spec.unit].to_numpy(), shard_units(n_units, index, count, block), owner)
        frames.append(df)
        provs.append(prov)
    if spec.unit is None:
        table = frames[0].reset_index(drop=True)
        table.attrs = {}
        return table, _merged_provenance(provs, paths, started)
    nonempty = [f for f in frames if len(f)] or frames[:1]
    table = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0].reset_index(drop=True)
    table.attrs = {}
    keys = []
    for col in reversed(spec.order):  # np.lexsort: the last key is the primary one
        values = table[col]
        if categories and col in categories:
            rank = {v: i for i, v in enumerate(categories[col])}
            unknown = sorted(set(values) - set(rank))
            if unknown:
                raise ShardError(f"{stage} ({output}): {col} value(s) {unknown} are not among {list(rank)}")
            values = values.map(rank)
        keys.append(values.to_numpy())
    table = table.iloc[np.lexsort(keys)].reset_index(drop=True) if keys else table
    return table, _merged_provenance(provs, paths, started)
