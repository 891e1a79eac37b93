"""Requests no SLURM node can meet, found before anything is submitted.

A job that asks for more CPUs, memory or GPUs than any node of its partition has never starts:
SLURM keeps it pending (``squeue`` reason ``PartitionConfig`` or ``Resources``) and the run waits
forever. Under the SLURM executor the workflow reads the partition's node sizes with ``sinfo``
(:func:`query_nodes`) when it starts (``onstart``, workflow/rules/common.smk, after the DAG is
built and before the first ``sbatch``) and checks every job it is about to submit
(:func:`check_requests`):

- **capped** where that is harmless: the ``cores`` setting (the profile's ``cores: 8``, or
  ``--cores``) is lowered to the largest node's CPU count. It caps every rule's threads and the
  CPUs of a grouped job (the figures group runs fewer members side by side), which then fits;
- **refused**, naming the rule (or group), the setting and the node's size, where a cap would
  change what the job does or where the setting is the site's own: a rule's ``mem_mb`` beyond
  every node's memory, a ``gpu`` request on a partition whose nodes have fewer GPUs (or none), an
  explicit ``cpus_per_task`` beyond every node, a ``runtime`` beyond the partition's time limit,
  a partition that does not exist, and a group whose members side by side need more memory than
  a node has.

The check looks at the first attempt: a retry's longer runtime (``more_time``) is not checked.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "SINFO_FORMAT",
    "Node",
    "Request",
    "SinfoError",
    "SlurmResourceError",
    "Verdict",
    "check_requests",
    "parse_sinfo",
    "parse_time_limit",
    "query_nodes",
]

#: one line per node and partition: name, partition (default marked *), CPUs, memory (MB), GRES, time limit
SINFO_FORMAT = "%N|%P|%c|%m|%G|%l"
SINFO_COMMAND = ["sinfo", "--noheader", "--Node", f"--format={SINFO_FORMAT}"]
#: where the cores setting comes from, for the messages
CORES_ORIGIN = "`cores` (profiles/slurm/config.yaml, or --cores)"


class SinfoError(ValueError):
    """sinfo could not be run, or its output is not what :data:`SINFO_FORMAT` asks for (the line is named)."""


class SlurmResourceError(ValueError):
    """A job asks for what no node of its partition has; the message names each such job and setting."""


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: float | None  # None: no limit
    default: bool = False  # the cluster's default partition


@dataclass
class Request:
    """What one job (a rule's job, or the members of a group) will ask sbatch for."""

    name: str  # "rule likelihood_sweep" or "group figures"
    partition: str | None  # None: the default partition (or PRIOR_LANDSCAPE_SLURM_PARTITION)
    threads: int = 1
    mem_mb: float | None = None
    gpus: int = 0
    runtime_min: float | None = None
    cpus_per_task: int | None = None  # set explicitly (set-resources), not from threads
    origin: str = ""  # where the rule's resources are declared
    members_mem_mb: list[float] = field(default_factory=list)  # a group's members, for the side-by-side check


@dataclass
class Verdict:
    cores: int | None  # the capped cores setting, or None when it fits
    notes: list[str]  # what was capped
    problems: list[str]  # what cannot be capped: the run must not start

    def raise_if_problems(self) -> None:
        if self.problems:
            raise SlurmResourceError(
                "these jobs ask for what no SLURM node of their partition has (they would pend forever, "
                "squeue reason PartitionConfig); nothing was submitted:\n  " + "\n  ".join(self.problems)
            )


def parse_time_limit(text: str) -> float | None:
    """Minutes of a SLURM time limit: ``infinite``/``UNLIMITED`` → None; ``MM``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``. Raises ValueError for anything else."""
    t = text.strip()
    if t.lower() in ("infinite", "unlimited"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if not m:
        raise ValueError(f"{text!r} is not a SLURM time limit")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return int(days) * 1440 + h * 60 + mi + s / 60
    if c is not None:  # HH:MM:SS
        return int(a) * 60 + int(b) + int(c) / 60
    if b is not None:  # MM:SS
        return int(a) + int(b) / 60
    return float(a)  # MM


def _gpus(gres: str) -> int:
    """GPUs of a node's GRES: ``gpu:4``, ``gpu:a100:2(S:0-1)``, ``gpu:1,mps:100``; ``(null)`` → 0."""
    total = 0
    for item in gres.split(","):
        item = item.split("(")[0].strip()
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 1:
            total += 1
        elif parts[-1].isdigit():
            total += int(parts[-1])
        else:
            raise ValueError(f"GRES {item!r} has no GPU count")
    return total


def parse_sinfo(text: str, source: str = " ".join(SINFO_COMMAND)) -> list[Node]:
    """The nodes in the output of :data:`SINFO_COMMAND`; :class:`SinfoError` naming the line otherwise."""
    nodes = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 6:
            raise SinfoError(f"{source}: line {i} {line!r}: {len(fields)} fields, expected 6 ({SINFO_FORMAT})")
        name, partition, cpus, mem, gres, limit = (f.strip() for f in fields)
        try:
            node = Node(
                name=name,
                partition=partition.rstrip("*"),
                cpus=int(cpus.rstrip("+")),
                memory_mb=int(mem.rstrip("+")),
                gpus=_gpus(gres),
                time_limit_min=parse_time_limit(limit),
                default=partition.endswith("*"),
            )
        except ValueError as e:
            raise SinfoError(f"{source}: line {i} {line!r}: {e}") from None
        if not name or not node.partition or node.cpus < 1:
            raise SinfoError(f"{source}: line {i} {line!r}: no node name, partition or CPU")
        nodes.append(node)
    if not nodes:
        raise SinfoError(f"{source}: no node listed")
    return nodes


def query_nodes(run: Callable = subprocess.run, timeout: float = 30) -> list[Node]:
    """Every node of every partition, by :data:`SINFO_COMMAND`."""
    try:
        proc = run(SINFO_COMMAND, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        raise SinfoError(f"{' '.join(SINFO_COMMAND)}: could not run ({e})") from None
    if proc.returncode != 0:
        raise SinfoError(f"{' '.join(SINFO_COMMAND)}: exit status {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return parse_sinfo(proc.stdout)


def _partition(nodes: Sequence[Node], name: str | None) -> tuple[str | None, list[Node]]:
    if name is None:
        defaults = sorted({n.partition for n in nodes if n.default})
        if not defaults:
            return None, []
        name = defaults[0]
    return name, [n for n in nodes if n.partition == name]


def _fmt_mb(mb: float) -> str:
    return f"{mb:.0f} MB ({mb / 1024:.3g} GiB)"


def check_requests(
    requests: Iterable[Request],
    nodes: Sequence[Node],
    cores: int | None,
    *,
    partition_origin: str = "slurm_partition (default-resources, PRIOR_LANDSCAPE_SLURM_PARTITION)",
) -> Verdict:
    """Check every request against the nodes of its partition (module docstring). ``cores``: the run's
    cores setting (None: unset). Returns the capped cores, what was capped and what cannot be."""
    requests = list(requests)
    notes, problems = [], []
    by_partition: dict[str | None, list[Request]] = {}
    for r in requests:
        by_partition.setdefault(r.partition, []).append(r)
    capped = cores
    for name, reqs in by_partition.items():
        part, pnodes = _partition(nodes, name)
        if not pnodes:
            known = ", ".join(sorted({n.partition for n in nodes}))
            what = f"partition {name!r}" if name else "no default partition"
            for r in reqs:
                problems.append(f"{r.name}: {what} ({partition_origin}); the cluster's partitions: {known}")
            continue
        max_cpus = max(n.cpus for n in pnodes)
        max_mem = max(n.memory_mb for n in pnodes)
        max_gpus = max(n.gpus for n in pnodes)
        limits = [n.time_limit_min for n in pnodes]
        max_time = None if any(t is None for t in limits) else max(limits)
        where = f"partition {part!r}: largest node {max_cpus} CPUs, {_fmt_mb(max_mem)}, {max_gpus} GPUs"
        if cores is not None and cores > max_cpus and (capped is None or capped > max_cpus):
            capped = max_cpus
            notes.append(
                f"{CORES_ORIGIN} is {cores}, more than any node of {where.split(':')[0]} has ({max_cpus} CPUs): "
                f"capped to {max_cpus} (rules' threads and grouped jobs' CPUs with it)"
            )
        for r in reqs:
            origin = f" ({r.origin})" if r.origin else ""
            if r.cpus_per_task is not None and r.cpus_per_task > max_cpus:
                problems.append(f"{r.name}: cpus_per_task={r.cpus_per_task}{origin}, but {where}")
            if r.mem_mb is not None and r.mem_mb > max_mem:
                problems.append(f"{r.name}: mem_mb={r.mem_mb:.0f}{origin}, but {where}")
            if r.gpus > max_gpus:
                problems.append(
                    f"{r.name}: gpu={r.gpus}{origin}, but {where}"
                    + (" (no GPU GRES: choose a GPU partition, e.g. in set-resources)" if max_gpus == 0 else "")
                )
            if r.runtime_min is not None and max_time is not None and r.runtime_min > max_time:
                problems.append(
                    f"{r.name}: runtime={r.runtime_min:g} min{origin}, but partition {part!r} allows {max_time:g} min"
                )
            if r.members_mem_mb:  # a group: at most `cores` members side by side, their memory summed
                side = sorted(r.members_mem_mb, reverse=True)[: max(1, min(capped or max_cpus, max_cpus))]
                if sum(side) > max_mem and side[0] <= max_mem:  # (a member too large alone is named by its rule)
                    problems.append(
                        f"{r.name}: {len(side)} members side by side (cores {capped}) ask for {_fmt_mb(sum(side))} "
                        f"(their mem_mb summed), but {where}; lower cores or the members' mem_mb"
                    )
            if r.threads > max_cpus and not (capped is not None and capped <= max_cpus):
                problems.append(f"{r.name}: threads={r.threads}{origin}, but {where}")
    return Verdict(capped if capped != cores else None, notes, problems)


# ------------------------------------------------------------------------- the Snakemake hook


def _int(value, default=0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _gpu_request(res: Mapping) -> int:
    """GPUs a job asks for: the plugin's ``gpu`` (or ``gpus``) resource, or a GPU GRES."""
    n = _int(res.get("gpu")) or _int(res.get("gpus"))
    gres = res.get("gres")
    if not n and isinstance(gres, str) and gres.strip():
        try:
            n = _gpus(gres.replace("/", ":"))
        except ValueError:
            n = 1
    return n


def job_request(job, partition: str | None) -> Request:
    """A :class:`Request` from a Snakemake job (its evaluated resources)."""
    res = dict(job.resources.items())
    rule = job.rule
    mem = res.get("mem_mb")
    runtime = res.get("runtime")
    cpt = res.get("cpus_per_task")
    return Request(
        name=f"rule {rule.name}",
        partition=res.get("slurm_partition") or partition,
        threads=_int(job.threads, 1),
        mem_mb=float(mem) if isinstance(mem, (int, float)) else None,
        gpus=_gpu_request(res),
        runtime_min=float(runtime) if isinstance(runtime, (int, float)) else None,
        cpus_per_task=_int(cpt) if cpt is not None and _int(cpt) > 0 else None,
        origin=f"resources of rule {rule.name}, {rule.snakefile}; or the profile's default-/set-resources",
    )


def preflight(workflow, env: Mapping[str, str], log=print, query: Callable = query_nodes) -> Verdict | None:
    """Under the SLURM executor: read the nodes, cap ``cores``, refuse what cannot fit (module docstring).
    ``workflow`` is Snakemake's; called from ``onstart`` (before any submission). Returns None when not
    under SLURM (or when sinfo's answer cannot be read: then a warning says the check was skipped)."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "name", None) != "slurm":
        return None
    try:
        nodes = query()
    except SinfoError as e:
        log(f"prior-landscape: SLURM resources not checked: {e}")
        return None
    partition = env.get("PRIOR_LANDSCAPE_SLURM_PARTITION") or None
    dag = workflow.dag
    jobs = [j for j in dag.needrun_jobs() if not j.is_local]
    requests, groups = [], {}
    for job in jobs:
        req = job_request(job, partition)
        requests.append(req)
        if job.group is not None:  # each member as itself, and the group for its members side by side
            req.name += f" (in group {job.group})"
            g = groups.setdefault(
                job.group, Request(f"group {job.group}", req.partition, origin="`groups` of the profile")
            )
            g.members_mem_mb.append(req.mem_mb or 0.0)
    requests += list(groups.values())
    cores_res = workflow.global_resources.get("_cores")
    cores = _int(getattr(cores_res, "value", cores_res)) or None
    verdict = check_requests(requests, nodes, cores)
    for note in verdict.notes:
        log(f"prior-landscape: {note}")
    verdict.raise_if_problems()
    if verdict.cores is not None:
        # threads are evaluated against this constraint, and grouped jobs size themselves by it; drop what
        # was evaluated with the old value, so that every job is sized anew when it is submitted
        workflow.global_resources["_cores"] = verdict.cores
        try:  # and the --cores the job steps are started with (a group runs that many members side by side)
            workflow.resource_settings.cores = verdict.cores
        except (AttributeError, TypeError):  # pragma: no cover - a frozen settings object
            pass
        grouped = getattr(dag, "_group", {})
        for job in jobs:
            job._resources = None
            if job in grouped:
                grouped[job]._resources = None
    return verdict
