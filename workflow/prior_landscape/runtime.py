"""What every workflow job needs around the science: logging, threads, device, seeds,
timing and provenance. Kept here so that the scripts under workflow/scripts stay thin."""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from prior_landscape.config import speed
from prior_landscape.io.artefacts import provenance


def resolve_device(name: str) -> str:
    """'auto' → 'cuda' when a GPU is visible, else 'cpu'; explicit CUDA without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but no CUDA GPU is visible; set device: cpu or auto")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Job:
    """A running job: call ``provenance()`` when writing an artefact."""

    config: dict
    device: str
    seeds: dict
    workflow_config: dict = field(default_factory=dict)  # the whole configuration (speed-only settings)
    started: float = field(default_factory=time.perf_counter)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prior_landscape"))

    def provenance(self, **extra) -> dict:
        return provenance(self.config, self.seeds, self.device, time.perf_counter() - self.started, **extra)

    def speed(self, *path: str) -> dict:
        """The speed-only settings (:data:`prior_landscape.config.SPEED_ONLY`) of the configuration
        section at ``path`` (e.g. ``job.speed("potential")``, ``job.speed("priors", name, "training")``):
        read at run time, they are not rule parameters, so changing them reruns nothing."""
        section = self.workflow_config
        for key in path:
            section = section.get(key, {})
        return speed(section, path[-1])

    def settings(self, section: dict, *path: str) -> dict:
        """A section passed as a rule parameter (:func:`prior_landscape.config.accuracy`) completed
        with its speed-only settings."""
        return {**section, **self.speed(*path)}


def start_job(snakemake, config_slice: dict, seeds: dict | None = None) -> Job:
    """Set up a job run by a Snakemake ``script:``: log to its log file and stderr,
    use its thread count, fix seeds, resolve the configuration's device (read at run time,
    not a rule parameter: where a job runs does not change its result)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(snakemake, "log", None):
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers, force=True
    )

    def log_uncaught(exc_type, exc, tb):
        # the job's log names the cause of a failure, not only Snakemake's console
        logging.getLogger("prior_landscape").error(
            "rule %s failed: %s: %s",
            getattr(snakemake, "rule", "?"),
            exc_type.__name__,
            exc,
            exc_info=(exc_type, exc, tb),
        )

    sys.excepthook = log_uncaught
    torch.set_num_threads(max(1, int(getattr(snakemake, "threads", 1))))
    seeds = seeds or {}
    if "seed" in seeds:
        seed_everything(int(seeds["seed"]))
    workflow_config = dict(getattr(snakemake, "config", {}) or {})
    device = resolve_device(str(workflow_config.get("device", "cpu")))
    job = Job(config=config_slice, device=device, seeds=seeds, workflow_config=workflow_config)
    job.log.info(
        "rule %s started on %s with %d thread(s), GLIBC_TUNABLES=%s",
        snakemake.rule,
        job.device,
        torch.get_num_threads(),
        os.environ.get("GLIBC_TUNABLES", ""),
    )
    return job
