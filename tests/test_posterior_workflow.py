"""The posterior-profile and blind-deconvolution rules (P §4–5, Figs. 9–15) end to end on the
tiny configuration, in a scratch copy of the workflow, and the paper's findings that hold at
demo scale, read from the Parquet artefacts:

* noiseless profile (Fig. 9): for x̄ from the data the global minimum over the θ grid is the
  no-blur solution θ = 0 for most crops (Gaussian and Airy families; the exceptions are smooth,
  highly likely crops, which behave like critical points), and for x̄ a critical point of q it
  is the true blur θ̄ for every crop;
* Algorithm 1 on Zernike PSFs (Fig. 11): the small initialisation collapses onto the Airy
  pattern (the no-blur solution of the family), the large one stays away from it and ends
  nearer h(θ̄).
"""

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from test_workflow import SNAKEMAKE, _snakemake, _workdir

from prior_landscape.io.artefacts import read_table

pytestmark = pytest.mark.slow

FIGURES = [f"results/figures/fig{n:02d}.png" for n in range(9, 16)]


@pytest.fixture(scope="module")
def posterior_run(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("posterior"))
    _snakemake(work, *FIGURES, "results/tables/deblur_metrics.csv")
    return work


def test_figures_artefacts_and_no_state_left(posterior_run):
    res = posterior_run / "results"
    for rel in (
        FIGURES
        + [f.replace(".png", ".pdf") for f in FIGURES]
        + ["tables/profile_minima.csv", "tables/deblur_metrics.csv"]
    ):
        rel = rel.removeprefix("results/")
        assert (res / rel).stat().st_size > 0, rel
    for case in ("zernike-0.01", "simplex", "kohler"):
        for kind in ("trajectory", "metrics", "images"):
            assert (res / f"deblur/{case}/{kind}.parquet").exists(), (case, kind)
        assert not (res / f"deblur/{case}/state.pt").exists(), "the resumable state outlived the job"
    assert not list(res.rglob("*.part"))


def test_noiseless_profile_minima(posterior_run):
    """P Fig. 9: no blur is the global minimiser for crops of natural images; θ̄ for critical points."""
    df = read_table(posterior_run / "results/posterior/gmm-natural/noiseless.parquet")
    assert set(df.family) == {"gaussian", "airy"} and set(df.x_bar) == {"dataset", "critical point"}
    assert 2.5 in set(df.theta) and df.attrs["provenance"]["config"]["posterior"]["n_images"] == 3
    per = df.groupby(["family", "x_bar", "image"]).agg(
        argmin=("argmin_theta", "first"), theta_bar=("theta_bar", "first")
    )
    at_bar = df[np.isclose(df.theta, df.theta_bar)].set_index(["family", "x_bar", "image"]).ell.sort_index()
    at_0 = df[df.theta == 0].set_index(["family", "x_bar", "image"]).ell.sort_index()
    for family in ("gaussian", "airy"):
        data = per.loc[(family, "dataset")]
        assert (data.argmin == 0).mean() >= 0.6, (family, data)
        # and by a wide margin: blurry explanations of ȳ are far less likely than the sharp one
        assert float((at_bar - at_0).loc[(family, "dataset")].median()) > 10.0
        crit = per.loc[(family, "critical point")]
        assert np.allclose(crit.argmin, crit.theta_bar), (family, crit)
    points = read_table(posterior_run / "results/posterior/gmm-natural/points.parquet")
    crit = points[points.x_bar == "critical point"]
    data = points[points.x_bar == "dataset"].set_index("image")
    assert (crit.set_index("image").q < data.q).all()  # the descent lowered q
    noisy = read_table(posterior_run / "results/posterior/gmm-natural/noisy.parquet")
    assert np.isfinite(noisy.ell).all() and set(noisy.sigma_y) == {1e-3}
    assert set(noisy.best_start) <= {"y", "tikhonov"}
    # every profile point says whether its inner minimisation met the tolerance, and how close it came
    assert noisy.converged.dtype == bool and (noisy.inner_grad_norm[noisy.converged] <= 1e-3).all()


def test_zernike_small_init_collapses_and_large_init_does_not(posterior_run):
    """P Fig. 11: the small initialisation ends on the Airy pattern, the large one nearer h(θ̄)."""
    m = read_table(posterior_run / "results/deblur/zernike-0.01/metrics.parquet").set_index(["init", "image"])
    large, small = m.loc["large"], m.loc["small"]
    assert small.no_blur.all() and (small.collapse_distance < 0.05).all()
    assert (small.collapse_distance < 0.5 * small.collapse_distance_init).all()
    assert not large.no_blur.any() and (large.collapse_distance > 0.2).all()
    assert (large.kernel_error < small.kernel_error - 0.05).all()
    # the large start ends at least twice as near h(θ̄) as the Airy pattern (aligned ℓ² distances)
    assert (large.kernel_error < 0.5 * large.collapse_distance).all()
    for col in ("psnr", "ssim", "kernel_error", "mnc", "psnr_blurry"):
        assert np.isfinite(m[col]).all(), col
    traj = read_table(posterior_run / "results/deblur/zernike-0.01/trajectory.parquet")
    assert {
        "iteration",
        "run",
        "init",
        "image",
        "data_fit",
        "q",
        "loss",
        "kernel",
        "theta",
        "kernel_error",
        "mnc",
        "collapse_distance",
    } <= set(traj.columns)
    assert sorted(traj.iteration.unique()) == list(range(0, 61, 10))
    assert len(traj.theta.iloc[0]) == 5 and len(traj.kernel.iloc[0]) == 81


def test_simplex_and_algorithm2_runs(posterior_run):
    simplex = read_table(posterior_run / "results/deblur/simplex/metrics.parquet")
    assert set(simplex.init) == {"large", "small"} and len(simplex) == 4
    traj = read_table(posterior_run / "results/deblur/simplex/trajectory.parquet")
    kernels = np.stack(traj.kernel.to_numpy())
    assert np.allclose(kernels.sum(1), 1.0, atol=1e-5) and (kernels >= 0).all()  # on the simplex
    dr = read_table(posterior_run / "results/deblur/kohler/metrics.parquet")
    assert set(dr.method) == {"douglas_rachford"} and len(dr) == 2
    assert np.isfinite(dr[["psnr", "psnr_denoised", "ssim", "mnc", "kernel_error"]]).all().all()
    table = pd.read_csv(posterior_run / "results/tables/deblur_metrics.csv")
    assert set(table.case) == {"zernike-0.01", "simplex", "kohler"}
    assert table.set_index(["case", "init"]).loc[("zernike-0.01", "small"), "no-blur rate"] == 1.0


def test_a_case_runs_its_own_number_of_iterations(posterior_run):
    """deblur.kohler.n_iter (40 in the tiny configuration) is the Köhler case's K; the other cases run
    deblur.n_iter (60): the case's key is not silently ignored."""
    k = {c: read_table(posterior_run / f"results/deblur/{c}/metrics.parquet").n_iter.unique().tolist()
         for c in ("kohler", "simplex", "zernike-0.01")}  # fmt: skip
    assert k == {"kohler": [40], "simplex": [60], "zernike-0.01": [60]}, k
    trajectory = read_table(posterior_run / "results/deblur/kohler/trajectory.parquet")
    assert trajectory.iteration.max() == 40


def test_report_has_the_posterior_tables(posterior_run):
    # a report of these figures' rules alone holds their tables; the figures enter the report as
    # pages with their captions (rule report_pages, made for `all`: test_workflow.py checks them)
    _snakemake(posterior_run, "--report", "results/report.html", *FIGURES)
    html = (posterior_run / "results/report.html").read_text(errors="ignore")
    assert "profile_minima.csv" in html and "noisy_profile_minima.csv" in html
    assert '"table": "Profile minima"' in html


def test_a_killed_deblur_run_resumes_from_its_state(tmp_path):
    """The state (a param, not an output) survives a killed job; the rerun resumes from it."""
    long_run = {"deblur.simplex.n_iter": 400, "deblur.checkpoint_every": 20, "deblur.record_every": 100}
    work = _workdir(tmp_path, long_run)
    target = "results/deblur/simplex/metrics.parquet"
    _snakemake(work, "results/priors/gmm-natural/model.pt")
    state = work / "results/deblur/simplex/state.pt"
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "tiny.yaml"),
        "--cores",
        "1",
        target,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), "no checkpoint was written"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job: Snakemake and its script
        proc.wait()
    assert not (work / target).exists()
    _snakemake(work, "--unlock")  # the killed Snakemake left its lock behind
    _snakemake(work, "--rerun-incomplete", target)
    log = (work / "results/logs/deblur_runs/simplex.log").read_text()
    resumed = int(log.split("resumed from iteration ")[1].split(",")[0])
    assert resumed > 0, log
    assert read_table(work / target).attrs["provenance"]["resumed_from"] == resumed
    assert not state.exists()
