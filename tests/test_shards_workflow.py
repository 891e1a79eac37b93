"""Sharded stages in the workflow (config ``shards``, prior_landscape.shards): on the tiny
configuration a stage run as shards and gathered gives the artefact of the unsharded job.

Tolerance: the potential engine solves a batch of images at once with per-image adaptive steps and
probes keyed by image, but float32 arithmetic on a batch of another size rounds differently
(BLAS blocking), so q and its spread may differ in the last digits between the unsharded job's
batches and a shard's (as between two ``potential.batch_size``, tests/test_potential.py): q,
q_stderr and q_ci95_halfwidth (the spread of per-probe estimates of q's size), and the descent
summary's q at its ends, are compared to 1e-4·|q| (a few thousandths of a nat at the tiny
configuration's |q| ≈ 300); everything else exactly (the descent itself: ‖∇q‖, distances, exact q,
start and end images). The posterior profiles' values (exact q of the mixture, data fits, inner
gradient norms) are float64 products over batches of another size: compared to 1e-8 relative (the
largest, q ≈ 1e7–1e10 of noise-amplifying deconvolutions, are differences of larger terms), and
to 1e-9 absolute (relative inner gradient norms at the rounding floor, ≈ 1e-12, against a tolerance of 1e-3)."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from test_paper_scale import _job_counts
from test_workflow import _snakemake, _workdir

from prior_landscape.io.artefacts import read_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: the potential engine's values (columns): equal up to float32 batch effects (module docstring),
#: compared to 1e-4 × the row's |q| (the largest magnitude of its engine q values)
ENGINE_COLUMNS = ("q", "q_stderr", "q_ci95_halfwidth")
ENGINE_Q = ("q",)
DESCENT_ENGINE = {
    "columns": ENGINE_COLUMNS
    + ("q_start", "q_end", "q_drop", "q_start_stderr", "q_end_stderr")
    + ("q_start_ci95_halfwidth", "q_end_ci95_halfwidth"),
    "q": ("q", "q_start", "q_end"),
}


def _set_shards(work, **counts: int) -> None:
    tiny = yaml.safe_load((work / "tiny.yaml").read_text())
    tiny["shards"] = counts
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny))


def _assert_same_artefact(whole: pd.DataFrame, gathered: pd.DataFrame, measured=(), engine=None) -> None:
    """The same columns, types, rows and values (``measured``: a job's own measurements, e.g. its
    wall time, compared in type only; ``engine``: the potential engine's columns and its q columns,
    to the stated tolerance) and the same provenance of what defines the result."""
    engine = engine or {"columns": ENGINE_COLUMNS, "q": ENGINE_Q}
    assert list(gathered.columns) == list(whole.columns)
    assert (gathered.dtypes == whole.dtypes).all(), (gathered.dtypes, whole.dtypes)
    assert len(gathered) == len(whole)
    q_cols = [c for c in engine["q"] if c in whole]
    scale = whole[q_cols].abs().max(axis=1).to_numpy() if q_cols else None
    for col in whole.columns:
        if col in measured:
            continue
        if col in engine["columns"]:
            a, b = gathered[col].to_numpy(float), whole[col].to_numpy(float)
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=col)
            ok = ~np.isnan(b)
            np.testing.assert_array_less(np.abs(a - b)[ok], 1e-4 * scale[ok], err_msg=col)
        elif whole[col].dtype == object:  # arrays (pixels) or None
            for a, b in zip(gathered[col], whole[col]):
                assert (a is None and b is None) or np.array_equal(a, b), col
        else:
            pd.testing.assert_series_equal(gathered[col], whole[col], check_exact=True)
    pw, pg = whole.attrs["provenance"], gathered.attrs["provenance"]
    for key in ("config", "seeds", "versions", "git_commit", "device", "host"):
        assert pg[key] == pw[key], key


def _assert_close_artefact(rel, whole: pd.DataFrame, gathered: pd.DataFrame, exact=()) -> None:
    """As :func:`_assert_same_artefact`, the values computed in float64 on the exact mixture (numbers and
    arrays, but not the columns ``exact``, configured values) to 1e-8 relative and 1e-9 absolute (the
    module docstring), those stored in float32 (images, kernels) to 1e-6 relative."""
    close = []
    for col in whole.columns:
        if col in exact and whole[col].dtype != object:  # a configured number (an array column is computed)
            continue
        if whole[col].dtype == float:
            a, b = gathered[col].to_numpy(), whole[col].to_numpy()
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9, err_msg=f"{rel}: {col}")
            close.append(col)
        elif whole[col].dtype == object and isinstance(whole[col].iloc[0], np.ndarray):
            for a, b in zip(gathered[col], whole[col]):
                tol = dict(rtol=1e-6, atol=1e-7) if b.dtype == np.float32 else dict(rtol=1e-8, atol=1e-9)
                np.testing.assert_allclose(a, b, **tol, err_msg=f"{rel}: {col}")
            close.append(col)
    _assert_same_artefact(whole.drop(columns=close), gathered.drop(columns=close), ("deblur_wall_time_s",))


def test_sharded_sweep_descents_and_hessians_equal_the_unsharded_ones(tmp_path):
    """The likelihood sweep (its 2 images: 3 shards lowered to 2), the critical-point descents
    (6 starts, 2 per group, in 4 shards: {0, 4}, {1, 5}, {2}, {3}, each group split across shards; the
    step η "auto" chosen from every start in every shard) and the Hessian spectra at the 2 training-set
    critical points (2 shards of one point) of the mixture, sharded and not."""
    work = _workdir(tmp_path, {"hessian.n_points": 2})
    sweep, hessian = "results/sweeps/gmm-natural.parquet", "results/hessian/gmm-natural.parquet"
    descent = [f"results/critical_points/gmm-natural/{k}.parquet" for k in ("summary", "trajectory", "images")]
    _snakemake(work, sweep, *descent, hessian)
    whole = {rel: read_table(work / rel) for rel in [sweep, *descent, hessian]}
    for rel in whole:
        shutil.move(work / rel, tmp_path / rel.replace("/", "_"))

    _set_shards(work, likelihood_sweep=3, critical_points=4, hessian_spectra=2)
    out = _snakemake(work, sweep, *descent, hessian)
    jobs = _job_counts(out.stdout + out.stderr)
    assert jobs == {  # the prior is not refitted
        "likelihood_sweep": 2,
        "likelihood_sweep_gather": 1,
        "critical_points": 4,
        "critical_points_gather": 1,
        "hessian_spectra": 2,
        "hessian_spectra_gather": 1,
    }, jobs
    # the Hessian at a critical point is the exact mixture's: bit for bit whatever the shard
    gathered_hessian = read_table(work / hessian)
    _assert_same_artefact(whole[hessian], gathered_hessian)
    assert sorted(set(gathered_hessian.point)) == [0, 1]
    assert gathered_hessian.attrs["provenance"]["shards"]["count"] == 2
    gathered = read_table(work / sweep)
    _assert_same_artefact(whole[sweep], gathered)
    assert gathered.attrs["provenance"]["shards"]["count"] == 2
    for rel in descent:
        _assert_same_artefact(whole[rel], read_table(work / rel), engine=DESCENT_ENGINE)
    logs = sorted(p.name for p in (work / "results/logs/likelihood_sweep").iterdir())
    assert logs == ["gmm-natural.0-of-2.log", "gmm-natural.1-of-2.log", "gmm-natural.gather.log", "gmm-natural.log"]
    # the shard files and resumable states are temporary: gone once gathered, so the results folder
    # (and its archive) is as before
    assert not list((work / "results").rglob("*-of-*.parquet")) and not list((work / "results").rglob("*state*.pt"))


# classical methods, whose results depend on their batch (they stop when all of it has converged);
# the stochastic methods' seed order: tests/test_shards.py
BENCH_METHODS = ["levin-map-k", "tv-alternating"]
BENCH_MEASURED = ("wall_s", "peak_memory_mb")


def test_sharded_benchmark_runs_equal_the_unsharded_ones(tmp_path):
    """Units are blocks of benchmark.batch_size cases, the batches a method sees (a classical method
    stops when all of its batch have converged): 3 cases in blocks of 2, shards of 2 cases and 1."""
    edits = {
        "benchmark.batch_size": 2,
        "benchmark.datasets.demo-photographs.n_images": 3,
    }
    work = _workdir(tmp_path, edits)
    runs = [
        f"results/benchmark/demo-photographs/{kind}/{m}.parquet"
        for m in BENCH_METHODS
        for kind in ("runs", "estimates")
    ]
    _snakemake(work, *runs)
    whole = {rel: read_table(work / rel) for rel in runs}
    for rel in runs:
        (work / rel).unlink()

    _set_shards(work, benchmark=4)  # more shards than the 2 blocks: lowered to 2
    out = _snakemake(work, *runs)
    jobs = _job_counts(out.stdout + out.stderr)
    assert jobs == {"benchmark_run": 2 * len(BENCH_METHODS), "benchmark_run_gather": len(BENCH_METHODS)}, jobs
    for rel in runs:
        _assert_same_artefact(whole[rel], read_table(work / rel), BENCH_MEASURED)
    assert list(read_table(work / runs[0]).case) == [0, 1, 2]
    assert not list((work / "results").rglob("*-of-2.parquet")) and not list((work / "results").rglob("*.pt.*"))


def test_sharded_posterior_profiles_and_deblurring_runs_equal_the_unsharded_ones(tmp_path):
    """P Figs. 9–10's profiles of the mixture's 3 images in 2 shards ({0, 2}, {1}): each shard chooses η
    (step "auto"), L_q and P eq. 14's λ from all 3 images, draws image i's noise as the i-th of the
    3, and stops an image's inner minimisation at its own tolerance, so every table equals the
    unsharded job's; the λ table, the same in every shard, is written once. P §5's Algorithm 1 on the
    Zernike case's 2 images and the simplex case's 2 (each image with all its initialisations) in 2
    shards of one image: the noise of the whole case, then the shard's images; runs numbered
    initialisation × image of the whole case; the same trajectory, metrics and images."""
    work = _workdir(tmp_path, {})
    profiles = [f"results/posterior/gmm-natural/{k}.parquet" for k in ("noiseless", "noisy", "lambda", "points")]
    cases = ["zernike-0.01", "simplex"]
    deblur = [f"results/deblur/{c}/{k}.parquet" for c in cases for k in ("trajectory", "metrics", "images")]
    outs = profiles + deblur
    _snakemake(work, *outs)
    whole = {rel: read_table(work / rel) for rel in outs}
    for rel in outs:
        (work / rel).unlink()

    _set_shards(work, posterior_profiles=2, deblur_runs=2)
    out = _snakemake(work, *outs)
    jobs = _job_counts(out.stdout + out.stderr)
    assert jobs == {
        "posterior_profiles": 2,
        "posterior_profiles_gather": 1,
        "deblur_runs": 2 * len(cases),
        "deblur_runs_gather": len(cases),
    }, jobs
    for rel in outs:
        gathered = read_table(work / rel)
        _assert_close_artefact(rel, whole[rel], gathered, exact=("theta", "theta_bar", "sigma_y", "lam"))
        assert gathered.attrs["provenance"]["shards"]["count"] == 2
    noisy = read_table(work / profiles[1])
    assert sorted(set(noisy.image)) == [0, 1, 2] and noisy.converged.any()
    metrics = read_table(work / deblur[1])
    assert list(metrics.run) == list(range(len(metrics))) and set(metrics.image) == {0, 1}
    assert not list((work / "results").rglob("*-of-*.parquet")) and not list((work / "results").rglob("state*.pt"))
