"""The workflow end to end on a tiny configuration: artefacts, figures, report,
caching, and clean failures. These run Snakemake in a scratch copy of the workflow."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO
from test_paper_scale import _job_counts

from prior_landscape.io.artefacts import read_table
from prior_landscape.jobenv import HUGEPAGES

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# the whole tiny run is the first test's setup: 5–10 min on 2 free cores, up to 20 on the shared
# development machine (Table 1 is timed in one job that has both cores: its 3 × 3 potential
# evaluations run alone), so the first test gets more than the suite's 900 s
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _workdir(tmp: Path, overrides: dict | None = None) -> Path:
    """A scratch working directory holding config.yaml and the tiny test config."""
    work = tmp / "work"
    work.mkdir()
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        node = tiny
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    return work


def _snakemake(work: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "tiny.yaml"),
        "--cores",
        "2",
        *args,
    ]
    # started without GLIBC_TUNABLES (`make test` exports it): the jobs get it from the workflow itself
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("demo"))
    _snakemake(work, "all", timeout=2400)
    return work


def test_run_leaves_artefacts_figures_tables(finished_run):
    res = finished_run / "results"
    for rel in [
        "figures/fig05.png",
        "figures/fig05.pdf",
        "figures/fig07.png",
        "figures/fig07.pdf",
        "tables/tab01.csv",
        "tables/tab01.md",
        "tables/tab01.tex",
        "tables/sweep_summary.csv",
        "report/fig07.html",
        "priors/scorenet-natural/training_loss.parquet",
        "kernels/blur_families.parquet",
    ]:
        assert (res / rel).stat().st_size > 0, rel
    assert not list(res.rglob("*.part")), "a temporary file was left behind"
    assert not (res / "priors/scorenet-natural/training_state.pt").exists()


def test_every_job_starts_with_mallocs_huge_pages(finished_run):
    """common.smk gives the jobs GLIBC_TUNABLES (prior_landscape.jobenv), though Snakemake was started without."""
    starts = [
        line
        for log in (finished_run / "results/logs").rglob("*.log")
        for line in log.read_text().splitlines()
        if " started on " in line
    ]
    assert len(starts) >= 10, starts
    assert all(HUGEPAGES in line.partition("GLIBC_TUNABLES=")[2].split(":") for line in starts), starts


def test_descent_trajectory_has_engine_and_exact_potentials(finished_run):
    """fig02 reads q (the engine, at the segment ends); the analytic prior adds its exact q at every record."""
    traj = read_table(finished_run / "results/critical_points/gmm-natural/trajectory.parquet")
    assert {"q", "q_exact", "q_stderr", "grad_norm"} <= set(traj.columns)
    at_segments = traj[traj.q.notna()]
    assert sorted(at_segments.step.unique()) == [0, 10, 20] and (at_segments.groupby("step").size() == 6).all()
    assert traj.q_exact.notna().all() and sorted(traj.step.unique()) == [0, 5, 10, 15, 20]
    # the engine and the exact value agree where both exist (tiny config: loose tolerances)
    rel = np.abs(at_segments.q - at_segments.q_exact) / np.abs(at_segments.q_exact)
    assert np.median(rel) < 0.05, rel
    net = read_table(finished_run / "results/critical_points/scorenet-natural/trajectory.parquet")
    assert net.q_exact.isna().all() and net.q.notna().sum() == 3 * 6


def test_sweep_artefact_has_provenance_and_exact_values(finished_run):
    df = read_table(finished_run / "results/sweeps/gmm-natural.parquet")
    assert len(df) == 2 * 3 * 2  # families × θ × images
    assert set(df.family) == {"gaussian", "motion"} and sorted(df.theta.unique()) == [0.0, 2.0, 4.0]
    assert np.isfinite(df.q).all() and np.isfinite(df.q_exact).all() and (df.nfe > 0).all()
    # the tiny config integrates at atol = rtol = 1e-4 with 2 probes, so only a coarse check
    # here (the 1e-5 accuracy target is tested in test_potential.py)
    rel = np.abs(df.q - df.q_exact) / np.abs(df.q_exact)
    assert np.median(rel) < 0.05 and rel.max() < 0.15, rel
    # probes are shared along θ and across families: identical images give identical estimates
    at0 = df[df.theta == 0].pivot(index="image_id", columns="family", values="q")
    np.testing.assert_array_equal(at0["gaussian"], at0["motion"])
    prov = df.attrs["provenance"]
    assert prov["config"]["sweep"]["n_images"] == 2 and prov["config"]["potential"]["n_probes"] == 2
    assert prov["versions"]["torch"] and prov["wall_time_s"] > 0 and prov["device"].startswith("cpu")
    net = read_table(finished_run / "results/sweeps/scorenet-natural.parquet")
    assert net.q_exact.isna().all() and np.isfinite(net.q).all()


def test_tab01_measures_every_prior_in_one_job_with_repeats(finished_run):
    import pandas as pd

    priors = ["gmm-natural", "scorenet-digits", "scorenet-natural"]
    timing = read_table(finished_run / "results/timing/priors.parquet")  # one job's artefact
    assert sorted(timing.prior.unique()) == priors and set(timing.device) == {"cpu"}
    counts = timing.groupby(["measurement", "prior"]).size()
    assert (counts >= 3).all() and set(timing.measurement) == {"model", "potential"}, counts
    # round-robin: every prior's repeat r before any prior's repeat r + 1
    for _, g in timing.groupby("measurement", sort=False):
        block = list(g.prior[: len(priors)])
        assert sorted(block) == priors and list(g.prior) == block * (len(g) // len(priors)), list(g.prior)
        assert list(g.repeat) == sorted(g.repeat)
    tab = pd.read_csv(finished_run / "results/tables/tab01.csv")
    assert sorted(tab.prior) == priors
    for what in ("model", "potential"):
        lo, med, hi = (tab[f"{what} eval {s} (s/image)"] for s in ("min", "median", "max"))
        assert (lo > 0).all() and (lo <= med).all() and (med <= hi).all()
    assert (tab["potential eval median (s/image)"] > tab["model eval median (s/image)"]).all()
    assert set(tab["repeats (model, potential)"]) == {"3, 3"} and set(tab.resolution) == {"16×16×1"}
    assert tab.loc[tab.prior == "gmm-natural", "parameters"].item() == 2 + 2 * 256 + 2 * 256 * 8 + 2 * 8 + 1


def test_every_table_in_csv_markdown_and_latex(finished_run):
    import pandas as pd

    tables = sorted((finished_run / "results/tables").glob("*.csv"))
    assert len(tables) >= 5, tables  # Table 1, sweep, critical-point and profile summaries, deblurring
    for csv in tables:
        df = pd.read_csv(csv)
        md, tex = csv.with_suffix(".md").read_text(), csv.with_suffix(".tex").read_text()
        if csv.stem.startswith("benchmark_"):  # Markdown and LaTeX render value ± std ★ per method
            assert all(str(m) in md and str(m) in tex for m in df.method), csv.name
        else:
            assert all(str(c) in md for c in df.columns), csv.name
        assert "\\begin{tabular}" in tex and "\\bottomrule" in tex and f"\\label{{tab:{csv.stem}}}" in tex
        assert md.count("\n|") == len(df) + 2 - md.startswith("|"), csv.name  # header, rule, one row each


def test_nothing_to_do_after_a_finished_run(finished_run):
    out = _snakemake(finished_run, "-n", "all")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_speed_settings_rerun_nothing_and_accuracy_settings_rerun_their_jobs(finished_run):
    """Batch and chunk sizes, cadences and the device change how fast a result comes, not the
    result: no job reruns; an accuracy setting reruns exactly the jobs that use it."""
    speed = {
        "potential": {"batch_size": 3},
        "hessian": {"chunk_size": 7},
        "device": "auto",
        "critical_points": {"checkpoint_every": 3, "record_every": 7},
        "deblur": {"checkpoint_every": 3, "record_every": 7},
    }
    tiny = yaml.safe_load((finished_run / "tiny.yaml").read_text())
    edited = finished_run / "speed.yaml"
    for key, value in speed.items():
        tiny[key] = {**tiny.get(key, {}), **value} if isinstance(value, dict) else value
    for prior in tiny["priors"].values():
        if "training" in prior:
            prior["training"]["checkpoint_every"] = 7
    edited.write_text(yaml.safe_dump(tiny))
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(finished_run),
        "--configfile",
        str(edited),
        "--cores",
        "2",
        "-n",
        "all",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "Nothing to be done" in out.stdout + out.stderr, out.stdout[-3000:]
    tiny["potential"]["atol"] = 2e-4  # accuracy: every job evaluating q reruns
    edited.write_text(yaml.safe_dump(tiny))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    jobs = _job_counts(out.stdout + out.stderr)
    assert {"likelihood_sweep", "critical_points", "measure_prior_costs", "posterior_profiles"} <= set(jobs), jobs
    assert not {"train_score_network", "fit_mixture_prior", "deblur_runs"} & set(jobs), jobs


def test_one_figure_rerenders_without_recomputation(finished_run):
    (finished_run / "results/figures/fig07.png").unlink()
    out = _snakemake(finished_run, "results/figures/fig07.png")
    log = out.stdout + out.stderr
    assert "rule fig07_likelihood_sweeps" in log
    for compute in ("likelihood_sweep:", "train_score_network", "fit_mixture_prior"):
        assert f"rule {compute}" not in log
    assert (finished_run / "results/figures/fig07.png").exists()


def test_report_is_generated_with_titled_entries_captions_and_tables(finished_run):
    import base64
    import json

    _snakemake(finished_run, "--report", "results/report.html")
    html = (finished_run / "results/report.html").read_text(errors="ignore")
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, flags=re.S).group(1))
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html, flags=re.S).group(1))
    category = {Path(p).name: c for c, subs in categories.items() for paths in subs.values() for p in paths}
    entries = {Path(path).name: r for path, r in results.items()}
    figures = sorted(p.stem for p in (finished_run / "results/figures").glob("fig*.png"))
    tables = sorted(p.name for p in (finished_run / "results/tables").glob("*.csv"))
    bench = sorted(p.name for p in (finished_run / "results/figures").glob("benchmark_*.png"))
    assert len(bench) == 2, bench  # the benchmark's grid and kernel figures, entries of their own
    assert set(entries) == {f"{f}.html" for f in figures} | set(tables) | set(bench), sorted(entries)
    for f in figures:  # a page per figure, titled "Fig. N", its caption beside the figure
        r = entries[f"{f}.html"]
        assert r["labels"]["figure"] == f"Fig. {int(f[3:])}" and len(r["labels"]["title"]) > 10, r["labels"]
        page = base64.b64decode(r["data_uri"].split(",", 1)[1]).decode()
        assert "data:image/png;base64," in page and 'class="caption"' in page and "<strong>Figure" in page
        assert category[f"{f}.html"].startswith("P §"), category
    assert entries["fig07.html"]["labels"]["title"] == "Potential of blurred images relative to the sharp image"
    for t in tables:  # every CSV table, titled, its caption showing the table itself
        r = entries[t]
        expected = "0 Claims" if t == "claims.csv" else "Benchmark" if t.startswith("benchmark_") else "Tables"
        assert category[t] == expected and r["labels"]["table"] and r["labels"]["title"], (t, r["labels"])
        assert "<table" in r["caption"], t
    assert entries["tab01.csv"]["labels"] == {"table": "Table 1", "title": "The priors of this run"}
    for b in bench:
        assert category[b] == "Benchmark" and entries[b]["labels"]["title"] == "demo-photographs", entries[b]


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"sweep.theta.num": 1}, "sweep.theta.num: 1 is less than the minimum of 2"),
        ({"hessian.priors": ["gmm-natural", "no-such-prior"]}, "hessian.priors.1: 'no-such-prior' is not a prior"),
        ({"posterior.priors": ["nope"]}, "posterior.priors.0: 'nope' is not a prior"),
        ({"critical_points.step_by_prior": {"gmm": "auto"}}, "critical_points.step_by_prior.gmm: 'gmm' is not a prior"),
        ({"critical_points.step": -0.02}, "critical_points.step"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, message):
    work = _workdir(tmp_path, edit)
    proc = _snakemake(work, "all", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (work / "results").exists()


@pytest.mark.parametrize("bad", ["missing", "unreadable"])
def test_bad_input_image_stops_with_its_name_and_no_partial_artefact(tmp_path, bad):
    name = str(tmp_path / f"{bad}.png")
    if bad == "unreadable":
        Path(name).write_bytes(b"this is not a PNG file")
    work = _workdir(tmp_path, {"data.photographs.heldout": ["flower", name]})
    proc = _snakemake(work, "results/sweeps/gmm-natural.parquet", check=False)
    assert proc.returncode != 0
    # the file is read when the DAG is built: the run stops before any job, naming key and file
    out = proc.stdout + proc.stderr
    expected = "is neither a bundled photograph" if bad == "missing" else "could not be read as an image"
    assert f"data.photographs.heldout.1: input image {name!r}" in out and expected in out
    assert not (work / "results").exists()
