"""Outputs kept per configuration: the demo (config.yaml) and the paper run (config/paper.yaml)
share a working directory without sharing a file, and Snakemake's records of one never make
it rerun the other."""

import copy
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import REPO

from prior_landscape.config import ConfigError, validate_config

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO = yaml.safe_load((REPO / "config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


def _snakemake(work: Path, *args: str) -> str:
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "1", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def _written(log: str) -> set[str]:
    """Every path a dry run's jobs would write: their outputs, logs and benchmarks."""
    paths = set()
    for m in re.finditer(r"^\s+(?:output|log|benchmark): (.+)$", log, flags=re.M):
        paths.update(p.strip() for p in m.group(1).split(", "))
    return paths


def _overlaps(first: set[str], second: set[str]) -> list[tuple[str, str]]:
    """The pairs (a, b), a of ``first`` and b of ``second``, that are one path or one inside the other:
    every b looked up among the a's and their folders, every folder of b among the a's (not every pair
    compared: the paper's dry run names some 10 000 paths)."""
    folders = {str(f): a for a in first for f in PurePosixPath(a).parents if str(f) != "."}
    out = []
    for b in second:
        if b in first or b in folders:
            out.append((b if b in first else folders[b], b))
        out += [(str(f), b) for f in PurePosixPath(b).parents if str(f) in first]
    return sorted(out)


def test_shipped_configurations_name_different_results_folders():
    assert DEMO["results"] == "results/demo" and PAPER["results"] == "results/paper"
    validate_config(DEMO)
    validate_config(PAPER)


@pytest.mark.parametrize(
    "results, message",
    [
        ("/tmp/results", r"results: '/tmp/results' does not match"),
        ("results/../demo", r"results: 'results/\.\./demo' does not match"),
        ("results/", r"results: 'results/' does not match"),
        ("", r"results: '' does not match"),
        (".", r"results: '\.' does not match"),
        ("resources", r"results: 'resources' overlaps 'resources', downloads\.root"),
        ("resources/run", r"results: 'resources/run' overlaps 'resources'"),
        ("archives/demo", r"results: 'archives/demo' overlaps 'archives'"),
    ],
)
def test_a_bad_results_folder_is_named(results, message):
    bad = copy.deepcopy(DEMO)
    bad["results"] = results
    with pytest.raises(ConfigError, match=message):
        validate_config(bad)
    missing = copy.deepcopy(DEMO)
    del missing["results"]
    with pytest.raises(ConfigError, match="'results' is a required property"):
        validate_config(missing)


def test_demo_and_paper_dry_runs_in_one_directory_write_disjoint_paths(tmp_path):
    """Every output, log and benchmark of the demo's DAG (all, archive) and of the paper's (all,
    archive, downloads: a paper dry run starts with the downloads) is apart from the other's; only
    the downloads themselves (downloads.root) are outside the paper's results folder."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    demo = _written(_snakemake(work, "-n", "all", "archive"))
    # one dry run of the paper's three targets (its DAG of ~3000 jobs is built once, not per target)
    paper = _written(
        _snakemake(work, "--configfile", str(REPO / "config/paper.yaml"), "-n", "all", "downloads", "archive")
    )
    assert len(demo) > 100 and len(paper) > 100
    assert any(p.startswith("results/paper/logs/download/") for p in paper)  # the downloads' logs
    assert _overlaps({"r/a/x.parquet", "r/b"}, {"r/a", "r/b/y.log", "r/c", "r/a/x.parquet"}) == [
        ("r/a/x.parquet", "r/a"), ("r/a/x.parquet", "r/a/x.parquet"), ("r/b", "r/b/y.log")]  # fmt: skip
    overlaps = _overlaps(demo, paper)
    assert not overlaps, overlaps[:10]
    assert all(p.startswith(("results/demo/", "archives/results-demo.")) for p in demo), sorted(demo)[:5]
    root = PAPER["downloads"]["root"]
    outside = {p for p in paper if not p.startswith(("results/paper/", "archives/results-paper."))}
    assert outside and all(p.startswith(f"{root}/") for p in outside), sorted(outside)
    assert not (work / "results").exists()  # a dry run writes nothing


def test_one_configuration_run_never_makes_the_other_rerun(tmp_path):
    """Two configurations that differ in a parameter, run one after the other in one working
    directory: each is up to date afterwards. Had they shared a results folder, the second run
    would have replaced the first one's file, and Snakemake (its .snakemake records: the params
    changed) would rerun the first."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    configs = {}
    for name, size in (("a", 15), ("b", 9)):
        cfg = copy.deepcopy(tiny)
        cfg["results"] = f"results/{name}"
        cfg["blur"] = {"kernel_size": size, "padding": "reflect"}
        configs[name] = work / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))

    def target(name):
        return f"results/{name}/kernels/blur_families.parquet"

    for name in ("a", "b"):
        log = _snakemake(work, target(name), "--configfile", str(configs[name]))
        assert "rule blur_kernels" in log, log[-2000:]
    for name in ("a", "b"):
        log = _snakemake(work, "--configfile", str(configs[name]), "-n", target(name))
        assert "Nothing to be done" in log, log[-2000:]
    stamps = {n: (work / target(n)).stat().st_mtime_ns for n in configs}
    # a rerun of one (forced) leaves the other's file and its up-to-date status alone
    _snakemake(work, target("a"), "--forcerun", "blur_kernels", "--configfile", str(configs["a"]))
    assert (work / target("b")).stat().st_mtime_ns == stamps["b"]
    assert "Nothing to be done" in _snakemake(work, "--configfile", str(configs["b"]), "-n", target("b"))
