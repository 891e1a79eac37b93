"""What a configuration costs on GPUs: every stage's work, its GPU-hours and the run's wall time on N GPUs.

``prior-landscape plan --gpus 1,8,32 [--config config/paper.yaml]`` (:mod:`prior_landscape.cli`)
reads the stages and their sizes from the configuration (images, θ values, families, starts,
probes, iterations, …), prices each unit of work, and schedules the jobs:

- **Work.** One row per stage and prior (or case, or dataset and method), and per kind of unit
  where a job does two kinds (a descent's steps and its potential evaluations): the number of
  units (network evaluations, potential evaluations, Hessians, iterations, method steps,
  training image-steps) and the job's *items*, what its shards split (images, starts, shots, cases).
- **Cost per unit**, in order of preference, each row naming its source:

  1. ``measured``: ``{results}/timing/priors.parquet`` of the rule ``measure_prior_costs``
     (the median seconds per image of a model and of a potential evaluation, per prior);
  2. ``gpu-check <date> <device>``: a GPU-check record (``docs/gpu_check/*.json``,
     :func:`read_gpu_check`), which may also time a Hessian, an Algorithm 1 iteration or a
     benchmark method's step directly;
  3. ``P Table 1``: P's Table 1 (one V100; :data:`P_TABLE1`);
  4. where none of these has the network: ``README estimate`` (:data:`README_ESTIMATES`, the MNIST
     training of the README's former estimate table) or ``proxy``: the P Table 1 network of the
     nearest pixel count, scaled by the pixel ratio (the peers' DDPMs, kernel priors, DRUNet).

  A quantity none of them times directly is derived from the model evaluation of the same
  source (:data:`DERIVED`: a Hessian = d Jacobian–vector products of 3 model evaluations each,
  an Algorithm 1 iteration = K_x model evaluations, a method step = forward and backward
  through its networks, a training image-step = 3 model evaluations); the row then says
  ``derived``, and from what.
- **Jobs.** One Snakemake job per prior or case, as the rules run them, unless the configuration
  has ``shards.<stage>: n``: that stage's jobs are then split into at most n jobs each (their
  items dealt out as evenly as possible; never more jobs than items). Training and the timing
  job are never split.
- **Wall time on N GPUs** (:func:`wall_time`): longest-processing-time-first list scheduling
  (Graham 1969: each job, longest first, on the GPU that frees first), the best of that on
  1 … N GPUs, so it never grows with N; it equals the sum at N = 1 and the longest job once
  N ≥ jobs, and is within 4/3 of the optimum. Dependencies between jobs (a training before
  the jobs that use its prior) are not scheduled; :func:`critical_path` gives the longest
  chain, a lower bound any schedule meets. Downloads, conversions, test sets, figures and
  tables run on CPUs in minutes and are left out.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from prior_landscape.config import posterior_settings

__all__ = [
    "P_TABLE1",
    "PlanError",
    "CostBook",
    "Plan",
    "build_plan",
    "critical_path",
    "format_markdown",
    "format_text",
    "latest_gpu_check",
    "lpt_makespan",
    "read_gpu_check",
    "read_timing",
    "wall_time",
]

#: P Table 1 (one V100-16GB): seconds per image of a model evaluation and of a potential evaluation
P_TABLE1 = {
    "ffhq256": {"model": 0.036, "potential": 8.46, "values": 256 * 256 * 3},
    "imagenet64": {"model": 0.014, "potential": 10.26, "values": 64 * 64 * 3},
    "ffhq64": {"model": 0.006, "potential": 5.05, "values": 64 * 64 * 3},
    "afhq64": {"model": 0.006, "potential": 5.05, "values": 64 * 64 * 3},
}
#: the README's former per-stage estimates, where P Table 1 has no row: "train_score_network
#: (MNIST): 46 875 steps of 128 images, 32×32, ≈ 0.5 h (rough)" -> seconds per model evaluation
#: (a training image-step = 3 model evaluations, :data:`DERIVED`)
README_ESTIMATES = {"mnist": {"model": 0.5 * 3600 / (46875 * 128) / 3}}
#: a potential evaluation costs this many model evaluations where no source times it: P Table 1's
#: ratio for its 64-px EDM networks (5.05 s / 0.006 s), the same ODE at the same tolerance
POTENTIAL_PER_MODEL = P_TABLE1["ffhq64"]["potential"] / P_TABLE1["ffhq64"]["model"]
#: model evaluations per Jacobian–vector product (forward + forward-mode derivative), per training
#: image-step (forward + backward) and per guided sampling step (forward + backward through the network)
JVP_MODEL_EVALS = 3
TRAIN_MODEL_EVALS = 3
GUIDED_STEP_MODEL_EVALS = 3
#: how a quantity no source times is derived from model evaluations (said in each such row)
DERIVED = {
    "hessian": f"d JVPs × {JVP_MODEL_EVALS} model evals",
    "algorithm1_iteration": "K_x model evals",
    "method_step": f"{GUIDED_STEP_MODEL_EVALS} model evals per network",
    "training": f"{TRAIN_MODEL_EVALS} model evals per image",
    "potential": f"{POTENTIAL_PER_MODEL:.0f} model evals (P Table 1 ratio)",
}
#: what a GPU-check row may time
GPU_CHECK_WHATS = ("model", "potential", "hessian", "algorithm1_iteration", "method_step")
#: rows of benchmarks/gpu_check.py the plan reads no cost from (a right-hand side of the ODE becomes a
#: potential evaluation below; the spectra and the engine comparison are for reading)
GPU_CHECK_OTHER = ("potential_rhs", "spectrum_eigvalsh", "spectrum_svdvals", "engine_vs_peers")
#: right-hand sides of the probability-flow ODE per potential evaluation where a GPU check times one
#: right-hand side (random weights say nothing about the NFE): the demo score network's measured
#: 134 per image at atol = rtol = 1e-5 with 4 probes (benchmarks/potential_engine.py)
RHS_PER_POTENTIAL = 134
GPU_CHECK_FITS = ("16", "40", "80")
#: the ``shards`` key of a stage whose rule has another name (prior_landscape.shards.STAGES)
SHARD_KEYS = {"benchmark_run": "benchmark"}
#: stages never split, whatever ``shards`` says
UNSHARDABLE = ("train_score_network", "train_kernel_prior", "measure_prior_costs", "sample_prior")


class PlanError(ValueError):
    """An input of the plan (configuration, timing artefact, GPU-check record) cannot be used;
    the message names the file and the key."""


# ----------------------------------------------------------------------------- cost sources


@dataclass(frozen=True)
class Cost:
    seconds: float
    source: str  # "measured", "gpu-check <date> <device>", "P Table 1", "README estimate", "proxy …"
    basis: str = ""  # how it was obtained when not timed directly (e.g. "derived: d JVPs × 3 model evals")


def _fail(path, key, msg) -> PlanError:
    return PlanError(f"{path}: {key}: {msg}")


def _positive_number(value, path, key, allow_zero=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, key, f"{value!r} is not a number")
    v = float(value)
    if not math.isfinite(v):
        raise _fail(path, key, f"{value!r} is not finite")
    if v < 0 or (v == 0 and not allow_zero):
        raise _fail(path, key, f"{value!r} is {'negative' if v < 0 else 'zero'}; a cost must be positive")
    return v


def read_gpu_check(path) -> dict:
    """A GPU-check record, checked key by key (:class:`PlanError` naming the file and key):
    ``{"date", "device", "torch", "rows": [{"network", "what", "batch", "seconds_per_image",
    "peak_gb", "fits": {"16", "40", "80"}, "method"?}]}``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no such GPU-check record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: not a readable JSON GPU-check record ({e})") from None
    if not isinstance(record, dict):
        raise PlanError(f"{path}: a GPU-check record is a JSON object, not {type(record).__name__}")
    for key in ("date", "device", "torch"):
        if key not in record:
            raise _fail(path, key, "missing")
        if not isinstance(record[key], str) or not record[key].strip():
            raise _fail(path, key, f"{record[key]!r} is not a non-empty string")
    if "rows" not in record:
        raise _fail(path, "rows", "missing")
    if not isinstance(record["rows"], list) or not record["rows"]:
        raise _fail(path, "rows", "must be a non-empty list")
    rows = []
    for i, row in enumerate(record["rows"]):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            raise _fail(path, where, f"{row!r} is not an object")
        if "error" in row:  # an item the check could not measure (or did not reach): it says so, no cost
            if not isinstance(row["error"], str):
                raise _fail(path, f"{where}.error", f"{row['error']!r} is not a string")
            continue
        if row.get("what") in GPU_CHECK_OTHER and row.get("what") != "potential_rhs":
            continue
        for key in ("network", "what", "batch", "seconds_per_image", "peak_gb", "fits"):
            if key not in row:
                raise _fail(path, f"{where}.{key}", "missing")
        if not isinstance(row["network"], str) or not row["network"]:
            raise _fail(path, f"{where}.network", f"{row['network']!r} is not a non-empty string")
        if row["what"] not in (*GPU_CHECK_WHATS, "potential_rhs"):
            known = ", ".join((*GPU_CHECK_WHATS, *GPU_CHECK_OTHER))
            raise _fail(path, f"{where}.what", f"{row['what']!r} is not one of {known}")
        if isinstance(row["batch"], bool) or not isinstance(row["batch"], int) or row["batch"] < 1:
            raise _fail(path, f"{where}.batch", f"{row['batch']!r} is not a positive integer")
        seconds = _positive_number(row["seconds_per_image"], path, f"{where}.seconds_per_image")
        if row["peak_gb"] is not None:  # None: not measured (a CPU run)
            _positive_number(row["peak_gb"], path, f"{where}.peak_gb", allow_zero=True)
        fits = row["fits"]
        if not isinstance(fits, dict):
            raise _fail(path, f"{where}.fits", f"{fits!r} is not an object")
        for gb in GPU_CHECK_FITS if row["peak_gb"] is not None else ():
            if gb not in fits:
                raise _fail(path, f"{where}.fits.{gb}", "missing")
            if not isinstance(fits[gb], bool):
                raise _fail(path, f"{where}.fits.{gb}", f"{fits[gb]!r} is not true or false")
        if "method" in row and not isinstance(row["method"], str):
            raise _fail(path, f"{where}.method", f"{row['method']!r} is not a string")
        same = row.get("same_as", [])
        if not isinstance(same, list) or not all(isinstance(n, str) and n for n in same):
            raise _fail(path, f"{where}.same_as", f"{same!r} is not a list of network names")
        for name in (row["network"], *same):  # one architecture timed for several priors
            if row["what"] == "potential_rhs":
                derived = f"one ODE right-hand side × {RHS_PER_POTENTIAL} NFE"
                rows.append({**row, "network": name, "what": "potential", "derived": derived,
                             "seconds_per_image": seconds * RHS_PER_POTENTIAL})  # fmt: skip
            else:
                rows.append({**row, "network": name, "seconds_per_image": seconds})
    if not rows:
        raise _fail(path, "rows", "no row with a cost (every item failed or was skipped)")
    return {**record, "rows": rows, "path": str(path)}


def latest_gpu_check(folder="docs/gpu_check") -> Path | None:
    """The newest GPU-check record of ``folder``: the last ``*.json`` by name (name them by date)."""
    files = sorted(Path(folder).glob("*.json"))
    return files[-1] if files else None


def read_timing(path) -> dict[str, dict[str, float]]:
    """prior -> {"model", "potential"}: median seconds per image of ``measure_prior_costs``' artefact."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such timing artefact") from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
        raise PlanError(f"{path}: not a readable Parquet timing artefact ({e})") from None
    for col in ("prior", "measurement", "s_per_image"):
        if col not in df.columns:
            raise _fail(path, f"column {col}", "missing (written by the rule measure_prior_costs)")
    out: dict[str, dict[str, float]] = {}
    for (prior, what), g in df.groupby(["prior", "measurement"]):
        s = g["s_per_image"].astype(float)
        if not s.map(math.isfinite).all() or (s <= 0).any():
            raise _fail(path, f"s_per_image of {prior} {what}", "not all positive and finite")
        out.setdefault(str(prior), {})[str(what)] = float(s.median())
    return out


class CostBook:
    """Seconds per unit of each (network, quantity), from the best source that has it (module docstring)."""

    def __init__(self, timing: Mapping | None = None, gpu_check: Mapping | None = None):
        self.timing = dict(timing or {})
        self.gpu_check = gpu_check
        self.gpu_label = f"gpu-check {gpu_check['date']} {gpu_check['device']}" if gpu_check else None

    def _direct(self, names: Sequence[str], what: str, method: str | None = None) -> Cost | None:
        for name in names:
            if what in self.timing.get(name, {}):
                return Cost(self.timing[name][what], "measured")
        if self.gpu_check:
            rows = [
                r
                for r in self.gpu_check["rows"]
                if r["network"] in names and r["what"] == what and (method is None or r.get("method") == method)
            ]
            if rows:  # the fastest batch it measured
                best = min(rows, key=lambda r: r["seconds_per_image"])
                basis = f"batch {best['batch']}" + (f"; {best['derived']}" if "derived" in best else "")
                return Cost(best["seconds_per_image"], self.gpu_label, basis)
        for name in names:
            if what in P_TABLE1.get(name, {}):
                return Cost(P_TABLE1[name][what], "P Table 1")
        return None

    def model(self, names: Sequence[str], values: int) -> Cost:
        """One network evaluation of one image; a proxy where no source has the network."""
        found = self._direct(names, "model")
        if found:
            return found
        for name in names:
            if name in README_ESTIMATES:
                return Cost(README_ESTIMATES[name]["model"], "README estimate", "MNIST training ≈ 0.5 h, ÷ 3")
        # the nearest size (C·H·W), the cheaper network of a tie (the peers' kernel networks are small)
        ref = min(P_TABLE1, key=lambda n: (abs(math.log(P_TABLE1[n]["values"] / values)), P_TABLE1[n]["model"]))
        ratio = values / P_TABLE1[ref]["values"]
        return Cost(P_TABLE1[ref]["model"] * ratio, f"proxy: P Table 1 {ref}", f"× {ratio:.3g} in size")

    def quantity(self, names, what, values, per_model: float, method: str | None = None) -> Cost:
        """``what`` timed directly, else ``per_model`` model evaluations of the same source (derived)."""
        found = self._direct(names, what, method)
        if found:
            return found
        m = self.model(names, values)
        basis = f"derived: {DERIVED.get(what, what)}" + (f"; model {m.basis}" if m.basis else "")
        return Cost(m.seconds * per_model, m.source, basis)


# ------------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Component:
    """One kind of work of a job: ``items`` (what shards split) × ``per_item`` units of ``cost`` each."""

    stage: str  # the rule, e.g. "likelihood_sweep"
    part: str  # "" or the kind of work within the job ("descent", "q at points", "noisy", …)
    key: str  # the job's wildcard: prior, case or dataset/method
    items: int
    item_name: str
    per_item: float
    unit: str
    cost: Cost

    @property
    def units(self) -> float:
        return self.items * self.per_item

    @property
    def seconds(self) -> float:
        return self.units * self.cost.seconds


@dataclass
class Job:
    stage: str
    key: str
    components: list[Component]
    after: tuple[str, ...] = ()  # names of the jobs it needs ("stage:key")
    shards: int = 1

    @property
    def name(self) -> str:
        return f"{self.stage}:{self.key}"

    @property
    def items(self) -> int:
        return self.components[0].items

    def shard_seconds(self) -> list[float]:
        """Each shard's seconds: shard i of n takes items i, i + n, … (as prior_landscape.shards deals them)."""
        n = self.shards
        out = []
        for i in range(n):
            out.append(sum(c.seconds * len(range(i, c.items, n)) / c.items for c in self.components if c.items))
        return out


def _size(cfg: Mapping, prior: str) -> int:
    """The size d = C·H·W of a prior's images."""
    p = cfg["priors"][prior]
    if "images" in p:
        size, channels = (
            p["images"].get("size", cfg.get("data", {}).get("crop_size", 16)),
            p["images"].get("channels", 3),
        )
    elif "image_size" in p:
        size, channels = p["image_size"], p.get("network", {}).get("channels", 3)
    elif "kernels" in p:  # kernel diffusions: the kernel on an even canvas (63×63 on 64×64)
        size, channels = p["kernels"]["kernel_size"] + 1, 1
    else:
        size, channels = cfg.get("data", {}).get("crop_size", 16), p.get("channels", 1)
    return int(size) ** 2 * int(channels)


def _names(cfg: Mapping, prior: str) -> tuple[str, ...]:
    """What a GPU-check row or the timing artefact may call a prior: its name, its training data, its resource."""
    p = cfg["priors"][prior]
    return tuple(dict.fromkeys(n for n in (prior, p.get("training_data"), p.get("resource")) if n))


def _get(cfg: Mapping, dotted: str, source: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise PlanError(f"{source}: {dotted}: missing (the plan reads the stage sizes from it)")
        node = node[part]
    return node


def _theta_count(theta: Mapping) -> int:
    return int(theta["num"])


def _posterior_thetas(post: Mapping) -> int:
    import numpy as np

    grid = np.linspace(float(post["theta"]["start"]), float(post["theta"]["stop"]), int(post["theta"]["num"]))
    return len(np.union1d(grid, [float(post["theta_bar"])]))


def stage_jobs(cfg: Mapping, book: CostBook, source: str = "config") -> list[Job]:
    """The GPU jobs of a configuration, each with its work and costs (module docstring). A section the
    configuration lacks (``sweep``, ``posterior``, …) adds no job; a key missing from a section that is
    there, or a size that is not a number, is a :class:`PlanError` naming the section and the key."""
    where = ["priors"]
    try:
        return _stage_jobs(cfg, book, source, where)
    except KeyError as e:
        raise PlanError(
            f"{source}: {where[0]}: key {e.args[0]!r} missing (the plan reads the stage sizes from it)"
        ) from None
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, PlanError):
            raise
        raise PlanError(f"{source}: {where[0]}: not a size the plan can read ({e})") from None


def _stage_jobs(cfg: Mapping, book: CostBook, source: str, where: list[str]) -> list[Job]:
    priors = _get(cfg, "priors", source)
    if not isinstance(priors, Mapping) or not priors:
        raise PlanError(f"{source}: priors: must be a non-empty mapping of name -> prior")
    kinds = {p: c.get("kind") for p, c in priors.items()}
    landscape = [
        p for p, k in kinds.items() if k not in ("patch", "ddpm", "kernel_network", "conditional_kernel_network")
    ]
    natural = [p for p in landscape if priors[p].get("training_data", "photographs") == "photographs"]
    digits = [p for p in landscape if priors[p].get("training_data") in ("binary_digits", "mnist")]
    trained = {p for p, k in kinds.items() if k in ("score_network", "kernel_network", "conditional_kernel_network")}

    def model(p):
        return book.model(_names(cfg, p), _size(cfg, p))

    def potential(p):
        return book.quantity(_names(cfg, p), "potential", _size(cfg, p), POTENTIAL_PER_MODEL)

    def after(*ps):
        return tuple(
            f"{'train_kernel_prior' if kinds[p] != 'score_network' else 'train_score_network'}:{p}"
            for p in ps
            if p in trained
        )

    jobs: list[Job] = []
    # trainings: steps × batch image-steps of 3 model evaluations
    for p in sorted(trained):
        where[0] = f"priors.{p}.training"
        t = priors[p].get("training")
        if not t:
            raise PlanError(f"{source}: priors.{p}.training: missing (a trained prior's steps and batch size)")
        stage = "train_score_network" if kinds[p] == "score_network" else "train_kernel_prior"
        cost = book.quantity(_names(cfg, p), "training", _size(cfg, p), TRAIN_MODEL_EVALS)
        comp = Component(stage, "", p, int(t["steps"]), "steps", int(t["batch_size"]), "image-step", cost)
        jobs.append(Job(stage, p, [comp]))
    # P Table 1: one job, every prior in turn
    if landscape and "timing" in cfg:
        where[0] = "timing"
        timing = cfg["timing"]
        comps = []
        for p in landscape:
            n = int(timing["n_images"])
            comps.append(
                Component(
                    "measure_prior_costs", "model", p, n, "images", int(timing["repeats"]), "model eval", model(p)
                )
            )
            comps.append(
                Component(
                    "measure_prior_costs", "potential", p, n, "images", int(timing["potential_repeats"]),
                    "potential eval", potential(p),
                )
            )  # fmt: skip
        jobs.append(Job("measure_prior_costs", "all priors", comps, after(*landscape)))
    # P §2.3: q(h_θ ⋆ x) for every family × θ × image
    where[0] = "sweep"
    sweep = cfg.get("sweep")
    per_image = len(sweep["families"]) * _theta_count(sweep["theta"]) if sweep else 0
    for p in landscape if sweep else []:
        comp = Component(
            "likelihood_sweep", "", p, int(sweep["n_images"]), "images", per_image, "potential eval", potential(p)
        )
        jobs.append(Job("likelihood_sweep", p, [comp], after(p)))
    # P §2.2: descents from 3 groups of starts, q at n_segments + 1 points of each
    where[0] = "critical_points"
    cp = cfg.get("critical_points")
    starts = 3 * int(cp["n_per_group"]) if cp else 0
    for p in natural if cp else []:
        comps = [
            Component("critical_points", "descent", p, starts, "starts", int(cp["n_steps"]), "model eval", model(p)),
            Component("critical_points", "q at points", p, starts, "starts", int(cp["n_segments"]) + 1,
                      "potential eval", potential(p)),
        ]  # fmt: skip
        jobs.append(Job("critical_points", p, comps, after(p)))
    # P Fig. 4: full Hessians (d JVPs each) at critical points
    where[0] = "hessian"
    hess = cfg.get("hessian") or {}
    for p in hess.get("priors", natural) if hess else []:
        if p not in priors:
            raise PlanError(f"{source}: hessian.priors: {p!r} is not a prior of priors")
        d = _size(cfg, p)
        cost = book.quantity(_names(cfg, p), "hessian", d, JVP_MODEL_EVALS * d)
        comp = Component("hessian_spectra", "", p, int(hess["n_points"]), "points", 1, "Hessian", cost)
        jobs.append(Job("hessian_spectra", p, [comp], (f"critical_points:{p}",) if p in natural else ()))
    # P Fig. 8: reverse-SDE samples of the digit priors
    where[0] = "sampling"
    sampling = cfg.get("sampling")
    for p in digits if sampling else []:
        comp = Component("sample_prior", "", p, int(sampling["n_samples"]), "samples", int(sampling["n_steps"]),
                         "model eval", model(p))  # fmt: skip
        jobs.append(Job("sample_prior", p, [comp], after(p)))
    # P §4: profiles on |θ grid ∪ θ̄| points per family, for x̄ the images and their critical points
    where[0] = "posterior"
    post = cfg.get("posterior") or {}
    for p in post.get("priors", []):
        if p not in priors:
            raise PlanError(f"{source}: posterior.priors: {p!r} is not a prior of priors")
        own = posterior_settings(post, p)  # with its by_prior entries
        n = int(own["n_images"])
        points = 2 * len(own["families"]) * _posterior_thetas(own)  # per image: 2 x̄ × families × θ
        noisy = points * len(own["noise_levels"]) * len(own["inner"]["starts"])
        comps = [
            Component("posterior_profiles", "x̄ descent", p, n, "images", int(own["critical_points"]["n_steps"]),
                      "model eval", model(p)),
            Component("posterior_profiles", "noiseless", p, n, "images", points, "potential eval", potential(p)),
            Component("posterior_profiles", "noisy, inner steps (at most)", p, n, "images",
                      noisy * int(own["inner"]["max_steps"]), "model eval", model(p)),
            Component("posterior_profiles", "noisy, q at minimisers", p, n, "images", noisy, "potential eval",
                      potential(p)),
        ]  # fmt: skip
        jobs.append(Job("posterior_profiles", p, comps, after(p)))
    # P §5: Algorithm 1 (Zernike and simplex kernels), Algorithm 2 (Köhler, DRUNet)
    where[0] = "deblur"
    deblur = cfg.get("deblur") or {}
    cases, kohler = [], deblur.get("kohler")
    if deblur:
        dp, z, s = deblur["prior"], deblur["zernike"], deblur["simplex"]
        if dp not in priors:
            raise PlanError(f"{source}: deblur.prior: {dp!r} is not a prior of priors")
        n = int(deblur["images"]["n"])  # a case's images: what its shards split, each with all its initialisations
        cases = [(f"zernike-{sig:g}", n, len(z["inits"]), deblur) for sig in z["noise_levels"]]
        cases.append(("simplex", n, 2, {**deblur, **s}))  # two initialisations: large, small
    for case, n, inits, budget in cases:
        cost = book.quantity(_names(cfg, dp), "algorithm1_iteration", _size(cfg, dp), int(budget["n_inner"]))
        iters = inits * int(budget["n_iter"])
        comp = Component("deblur_runs", "Algorithm 1", case, n, "images", iters, "iteration", cost)
        jobs.append(Job("deblur_runs", case, [comp], after(dp)))
    if kohler:
        from prior_landscape.inverse.cases import n_kohler_images

        where[0] = "deblur.kohler"
        budget = {**deblur, **kohler}
        runs = n_kohler_images(kohler)
        den = kohler.get("denoiser")
        if den:
            names = tuple(dict.fromkeys(n for n in (den.get("kind"), den.get("resource")) if n))
            side = int(kohler["data"].get("crop", 512)) if kohler.get("data") else int(kohler.get("size", 64))
            size, dep = side * side * int(den.get("channels", 3)), ()
        else:
            names, size, dep = _names(cfg, kohler["prior"]), _size(cfg, kohler["prior"]), after(kohler["prior"])
        cost = book.quantity(names, "algorithm1_iteration", size, int(budget["n_inner"]))
        comp = Component(
            "deblur_runs", "Algorithm 2", "kohler", runs, "shots", int(budget["n_iter"]), "iteration", cost
        )
        jobs.append(Job("deblur_runs", "kohler", [comp], dep))
    # the benchmark: every method with a network on every dataset it runs on
    where[0] = "benchmark"
    bench = cfg.get("benchmark") or {}
    if bench.get("methods"):
        from prior_landscape.methods import METHODS
        from prior_landscape.methods.benchmark import methods_on, n_cases

        runs_on = {d: methods_on(d, bench) for d in bench["datasets"]}  # dataset -> the entries run on it
        for m, entry in bench["methods"].items():
            if "prior" not in entry or entry["method"] not in METHODS:
                continue  # no network: a CPU method (or an unknown one, which the workflow refuses)
            nets = [entry["prior"]] + ([entry["kernel_prior"]] if "kernel_prior" in entry else [])
            for p in nets:
                if p not in priors:
                    raise PlanError(f"{source}: benchmark.methods.{m}: {p!r} is not a prior of priors")
            direct = book._direct(_names(cfg, entry["prior"]), "method_step", entry["method"])
            if direct:
                cost = direct
            else:  # forward and backward through each of its networks
                parts = [book.model(_names(cfg, p), _size(cfg, p)) for p in nets]
                cost = Cost(
                    GUIDED_STEP_MODEL_EVALS * sum(c.seconds for c in parts),
                    " + ".join(dict.fromkeys(c.source for c in parts)),
                    f"derived: {DERIVED['method_step']} ({' + '.join(nets)})",
                )
            stochastic = METHODS[entry["method"]].stochastic
            seeds = len(bench.get("seeds", [0])) if stochastic else 1
            for d in [d for d, entries in runs_on.items() if m in entries]:
                comp = Component(
                    "benchmark_run", "", f"{d}/{m}", n_cases(bench["datasets"][d]), "cases",
                    seeds * int(entry.get("n_steps", 1)),
                    "method step", cost,
                )  # fmt: skip
                jobs.append(Job("benchmark_run", f"{d}/{m}", [comp], after(*nets)))
    # shards: at most that many jobs per job of the stage, never more than its items
    where[0] = "shards"
    shards = cfg.get("shards") or {}
    if not isinstance(shards, Mapping):
        raise PlanError(f"{source}: shards: {shards!r} is not a mapping of stage -> count")
    for stage, n in shards.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PlanError(f"{source}: shards.{stage}: {n!r} is not a positive integer")
    for job in jobs:
        key = SHARD_KEYS.get(job.stage, job.stage)
        if key in shards and job.stage not in UNSHARDABLE:
            job.shards = max(1, min(int(shards[key]), job.items))
    return jobs


# -------------------------------------------------------------------------------- scheduling


def list_schedule(durations: Sequence[float], gpus: int, after: Sequence[Sequence[int]] | None = None) -> float:
    """Makespan of list scheduling on ``gpus`` identical GPUs: whenever a GPU is free it takes the ready
    job (all of ``after[i]`` done) with the longest chain still ahead of it, then the longest; without
    dependencies that is LPT (longest processing time first, Graham 1969)."""
    if gpus < 1:
        raise ValueError(f"gpus = {gpus}: at least 1")
    n = len(durations)
    after = [tuple(a) for a in after] if after is not None else [()] * n
    users: list[list[int]] = [[] for _ in range(n)]
    for i, preds in enumerate(after):
        for j in preds:
            users[j].append(i)
    rank: dict[int, float] = {}

    def chain(i: int) -> float:  # the job and the longest chain of its users
        if i not in rank:
            rank[i] = durations[i] + max((chain(u) for u in users[i]), default=0.0)
        return rank[i]

    waiting = [len(set(a)) for a in after]
    ready = [(-chain(i), -durations[i], i) for i in range(n) if waiting[i] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now, free = 0.0, gpus
    while ready or running:
        while free and ready:
            _, _, i = heapq.heappop(ready)
            heapq.heappush(running, (now + durations[i], i))
            free -= 1
        now, i = heapq.heappop(running)
        free += 1
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (-chain(u), -durations[u], u))
    return now


def lpt_makespan(durations: Sequence[float], gpus: int) -> float:
    """LPT on independent jobs: each job, longest first, on the GPU that frees first."""
    return list_schedule(durations, gpus)


def wall_time(durations: Sequence[float], gpus: int, after: Sequence[Sequence[int]] | None = None) -> float:
    """The best list schedule (:func:`list_schedule`) on at most ``gpus`` GPUs (a GPU may stay idle), so it
    never grows with ``gpus``: the sum at 1 GPU, the longest chain (the longest job, without dependencies)
    once ``gpus`` ≥ the number of jobs."""
    if gpus < 1:
        raise ValueError(f"gpus = {gpus}: at least 1")
    if not durations:
        return 0.0
    return min(list_schedule(durations, k, after) for k in range(1, min(gpus, len(durations)) + 1))


def _tasks(jobs: Sequence[Job]) -> tuple[list[float], list[list[int]]]:
    """Every shard of every job as a task; a job's shards wait for every shard of the jobs it needs."""
    index: dict[str, list[int]] = {}
    durations: list[float] = []
    for j in jobs:
        index[j.name] = list(range(len(durations), len(durations) + j.shards))
        durations += j.shard_seconds()
    after = []
    for j in jobs:
        preds = [t for a in j.after for t in index.get(a, [])]
        after += [preds] * j.shards
    return durations, after


def critical_path(jobs: Sequence[Job]) -> float:
    """The longest chain of jobs through their dependencies (each job at its longest shard)."""
    durations, after = _tasks(jobs)
    memo: dict[int, float] = {}

    def finish(i: int) -> float:
        if i not in memo:
            memo[i] = durations[i] + max((finish(a) for a in after[i]), default=0.0)
        return memo[i]

    return max((finish(i) for i in range(len(durations))), default=0.0)


# ------------------------------------------------------------------------------------- plan


@dataclass
class Row:
    """One line of the plan: a stage (and part) for one prior or case, or for all of them (:func:`by_stage`)."""

    stage: str
    part: str
    key: str
    items: int
    item_name: str
    units: float
    unit: str
    s_per_unit: list[float]  # one value, or the range [min, max] of a stage's rows
    source: str  # "measured", "gpu-check <date> <device>", "P Table 1", "README estimate", "proxy: …"
    basis: str  # how the cost was obtained when not timed directly ("derived: …")
    gpu_hours: float
    jobs: int
    wall_hours: dict[int, float] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list, repr=False)  # its shards' seconds (not in JSON)
    job: str = field(default="", repr=False)  # the job it is part of ("stage:key"; not in JSON)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("durations")
        d.pop("job")
        return d


SCHEDULE = (
    "list scheduling: a free GPU takes the ready job with the longest chain of jobs still ahead of it "
    "(LPT, longest job first, when jobs are independent); the best such schedule on 1..N GPUs"
)


@dataclass
class Plan:
    config: str
    gpus: list[int]
    rows: list[Row]
    jobs: list[Job]
    total_gpu_hours: float
    wall_hours: dict[int, float]
    lower_bound_hours: dict[int, float]
    critical_path_hours: float
    sources: dict[str, str]  # what was read: timing, gpu_check

    @property
    def n_jobs(self) -> int:
        return sum(j.shards for j in self.jobs)

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "gpus": self.gpus,
            "sources": self.sources,
            "schedule": SCHEDULE,
            "rows": [r.to_dict() for r in self.rows],
            "total_gpu_hours": self.total_gpu_hours,
            "jobs": self.n_jobs,
            "wall_hours": self.wall_hours,
            "lower_bound_hours": self.lower_bound_hours,
            "critical_path_hours": self.critical_path_hours,
        }


def _rows(jobs: Sequence[Job], gpus: Sequence[int]) -> list[Row]:
    rows = []
    for job in jobs:
        for c in job.components:
            per_shard = [c.seconds * len(range(i, c.items, job.shards)) / c.items for i in range(job.shards)]
            rows.append(
                Row(c.stage, c.part, c.key, c.items, c.item_name, c.units, c.unit, [c.cost.seconds], c.cost.source,
                    c.cost.basis, c.seconds / 3600, job.shards, {n: wall_time(per_shard, n) / 3600 for n in gpus},
                    per_shard, job.name)
            )  # fmt: skip
    return rows


def by_stage(rows: Sequence[Row], gpus: Sequence[int]) -> list[Row]:
    """One row per stage and part: units, GPU-hours and jobs summed, the range of the costs, every source,
    the wall time of that stage's jobs alone."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.stage, r.part), []).append(r)
    out = []
    for (stage, part), rs in groups.items():
        costs = [c for r in rs for c in r.s_per_unit]
        per_job: dict[str, list[float]] = {}  # parts of one job (the timing job's priors) add up shard by shard
        for r in rs:
            per_job[r.job] = [a + b for a, b in zip(per_job.get(r.job, [0.0] * len(r.durations)), r.durations)]
        durations = [d for ds in per_job.values() for d in ds]
        out.append(
            Row(stage, part, ", ".join(r.key for r in rs) if len(rs) <= 2 else f"{len(rs)} priors or cases",
                sum(r.items for r in rs), rs[0].item_name, sum(r.units for r in rs), rs[0].unit,
                sorted({min(costs), max(costs)}), "; ".join(dict.fromkeys(r.source for r in rs)), "",
                sum(r.gpu_hours for r in rs), len(durations),
                {n: wall_time(durations, n) / 3600 for n in gpus}, durations)
        )  # fmt: skip
    return out


def build_plan(
    config_path,
    gpus: Sequence[int],
    *,
    timing_path=None,
    gpu_check_path=None,
    gpu_check_folder="docs/gpu_check",
    stages: bool = False,
) -> Plan:
    """The plan of the configuration at ``config_path`` on each of ``gpus`` GPU counts. Costs: the timing
    artefact ``timing_path`` (default ``{results}/timing/priors.parquet`` if present), the GPU-check record
    ``gpu_check_path`` (default the newest of ``gpu_check_folder``), then P Table 1 (module docstring).
    ``stages``: one row per stage (:func:`by_stage`) instead of one per stage and prior or case."""
    gpus = [int(n) for n in gpus]
    if not gpus or any(n < 1 for n in gpus):
        raise PlanError(f"--gpus {gpus}: every count must be at least 1")
    config_path = Path(config_path)
    try:
        cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{config_path}: no such configuration") from None
    except (OSError, yaml.YAMLError) as e:
        raise PlanError(f"{config_path}: not a readable YAML configuration ({e})") from None
    if not isinstance(cfg, dict):
        raise PlanError(f"{config_path}: a configuration is a mapping")
    sources: dict[str, str] = {}
    if timing_path is None and "results" in cfg:
        default = Path(cfg["results"]) / "timing/priors.parquet"
        timing_path = default if default.exists() else None
    timing = read_timing(timing_path) if timing_path is not None else None
    if timing_path is not None:
        sources["timing"] = str(timing_path)
    if gpu_check_path is None:
        gpu_check_path = latest_gpu_check(gpu_check_folder)
    gpu_check = read_gpu_check(gpu_check_path) if gpu_check_path is not None else None
    if gpu_check is not None:
        sources["gpu_check"] = str(gpu_check_path)
    jobs = stage_jobs(cfg, CostBook(timing, gpu_check), source=str(config_path))
    rows = _rows(jobs, gpus)
    durations, after = _tasks(jobs)
    total = sum(durations)
    chain = critical_path(jobs)
    return Plan(
        config=str(config_path),
        gpus=gpus,
        rows=by_stage(rows, gpus) if stages else rows,
        jobs=jobs,
        total_gpu_hours=total / 3600,
        wall_hours={n: wall_time(durations, n, after) / 3600 for n in gpus},
        lower_bound_hours={n: max(chain, total / n) / 3600 for n in gpus},
        critical_path_hours=chain / 3600,
        sources=sources,
    )


# --------------------------------------------------------------------------------- rendering


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    if abs(x) >= 100:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.3g}"


def _cells(plan: Plan) -> tuple[list[str], list[list[str]], list[str]]:
    head = ["stage", "prior / case", "work", "s / unit", "source", "GPU-h", "jobs"] + [
        f"wall h, {n} GPU{'s' if n > 1 else ''}" for n in plan.gpus
    ]
    body = []
    for r in plan.rows:
        stage = r.stage + (f" ({r.part})" if r.part else "")
        work = f"{_num(r.units)} {r.unit}s ({_num(r.items)} {r.item_name})"
        cost = "–".join(f"{c:.3g}" for c in r.s_per_unit)
        body.append(
            [stage, r.key, work, cost, r.source + (f" ({r.basis})" if r.basis else ""), _num(r.gpu_hours), str(r.jobs)]
            + [_num(r.wall_hours[n]) for n in plan.gpus]
        )
    total = ["total (every job, dependencies kept)", "", "", "", "", _num(plan.total_gpu_hours), str(plan.n_jobs)]
    total += [_num(plan.wall_hours[n]) for n in plan.gpus]
    return head, body, total


def _notes(plan: Plan) -> list[str]:
    read = ", ".join(f"{k} {v}" for k, v in plan.sources.items()) or "none (no timing artefact, no GPU-check record)"
    bounds = ", ".join(f"{n} GPU{'s' if n > 1 else ''}: {_num(plan.lower_bound_hours[n])} h" for n in plan.gpus)
    return [
        f"configuration {plan.config}; measured costs read: {read}",
        f"wall time: {SCHEDULE}; a row's wall time is its own jobs alone, the total's every job with its "
        "dependencies (a training before the jobs using its prior, descents before Hessians)",
        f"no schedule is shorter than max(longest chain {_num(plan.critical_path_hours)} h, GPU-h / N): {bounds}",
        "noisy profiles count every inner minimisation at its max_steps (an upper bound: most stop at tol); "
        "downloads, conversions, test sets, figures and tables (CPU, minutes) are left out",
    ]


def format_text(plan: Plan) -> str:
    head, body, total = _cells(plan)
    rows = [head, *body, total]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 5, 6, *range(7, len(head))}

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *map(line, body), rule, line(total), "", *_notes(plan)])


def format_markdown(plan: Plan) -> str:
    head, body, total = _cells(plan)
    total = [f"**{c}**" if c else c for c in total]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in [*body, total]]
    return "\n".join(out + [""] + [f"- {n}" for n in _notes(plan)])
