"""Archives of a run and their review: manifest, checksums, provenance summaries,
re-renderable figures; and re-rendering a figure from an unpacked archive without
recomputation (a real tiny workflow run, marked slow)."""

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from prior_landscape.cli import main as cli_main
from prior_landscape.io.archive import (
    CONFIG_FILE,
    FIGURE_INPUTS,
    FORMAT,
    MANIFEST,
    collect_files,
    format_review,
    review,
    unpack,
    write_archive,
)
from prior_landscape.io.artefacts import provenance, write_table

SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# the rules' file patterns, as rule_map() records them from Snakemake's Rule objects
RULES = [
    {
        "rule": "blur_kernels",
        "outputs": ["results/kernels/blur_families.parquet"],
        "output_regex": [r"results/kernels/blur_families\.parquet$"],
        "inputs": [],
        "input_functions": False,
    },
    {
        "rule": "fit_mixture_prior",
        "outputs": ["results/priors/{prior,gmm-natural}/model.pt"],
        "output_regex": [r"results/priors/(?P<prior>gmm-natural)/model\.pt$"],
        "inputs": [],
        "input_functions": False,
    },
    {
        "rule": "likelihood_sweep",
        "outputs": ["results/sweeps/{prior}.parquet"],
        "output_regex": [r"results/sweeps/(?P<prior>.+)\.parquet$"],
        "inputs": ["results/priors/{prior}/model.pt"],
        "input_functions": False,
    },
    {
        "rule": "fig05_blur_families",
        "outputs": ["results/figures/fig05.png", "results/figures/fig05.pdf"],
        "output_regex": [r"results/figures/fig05\.png$", r"results/figures/fig05\.pdf$"],
        "inputs": ["results/kernels/blur_families.parquet"],
        "input_functions": False,
    },
    {
        "rule": "fig07_likelihood_sweeps",
        "outputs": ["results/figures/fig07.png", "results/tables/sweep_summary.csv"],
        "output_regex": [r"results/figures/fig07\.png$", r"results/tables/sweep_summary\.csv$"],
        "inputs": ["results/sweeps/gmm-natural.parquet"],
        "input_functions": False,
    },
    {
        "rule": "fig04_hessian_spectra",
        "outputs": ["results/figures/fig04.png"],
        "output_regex": [r"results/figures/fig04\.png$"],
        "inputs": ["results/hessian/gmm-natural.parquet"],
        "input_functions": False,
    },
]
CONFIG = {"scale": "demo", "device": "cpu", "seed": 0, "priors": {"gmm-natural": {"kind": "gaussian_mixture"}}}


def _results_tree(root: Path, name: str = "results") -> Path:
    """A small results folder shaped like a run's: ``root/name`` (a configuration's ``results``)."""
    res = root / name
    sweep = pd.DataFrame(
        [
            {"prior": "gmm-natural", "family": f, "theta": t, "image_id": i, "q": float(i + t)}
            for f in ("gaussian", "motion")
            for t in (0.0, 2.0, 4.0)
            for i in range(2)
        ]
    )
    write_table(
        sweep, res / "sweeps/gmm-natural.parquet", provenance({"sweep": {"n_images": 2}}, {"crops": 1}, "cpu", 1.5)
    )
    kernels = pd.DataFrame({"family": ["gaussian", "motion"], "theta": [0.0, 0.0], "kernel": [[1.0], [1.0]]})
    write_table(kernels, res / "kernels/blur_families.parquet", provenance({"families": ["gaussian", "motion"]}))
    (res / "priors/gmm-natural").mkdir(parents=True)
    (res / "priors/gmm-natural/model.pt").write_bytes(b"model weights")
    (res / "figures").mkdir()
    for name in ("fig05.png", "fig05.pdf", "fig07.png"):
        (res / "figures" / name).write_bytes(b"\x89PNG fake " + name.encode())
    (res / "tables").mkdir()
    (res / "tables/sweep_summary.csv").write_text("family,share\ngaussian,1\n")
    (res / "logs").mkdir()
    (res / "logs/blur_kernels.log").write_text("ok\n")
    (res / "benchmarks/likelihood_sweep").mkdir(parents=True)
    (res / "benchmarks/likelihood_sweep/gmm-natural.tsv").write_text("s\n1.0\n")
    # left out of archives: a temporary file and a resumable state
    (res / "sweeps/.gmm-natural.parquet.abc.part").write_bytes(b"partial")
    (res / "priors/gmm-natural/training_state.pt").write_bytes(b"state")
    return res


@pytest.fixture
def archived(tmp_path):
    res = _results_tree(tmp_path / "run")
    out = tmp_path / "archives/results.tar.gz"
    manifest = write_archive(res, out, config=CONFIG, rules=RULES)
    return res, out, manifest


def test_archive_holds_manifest_config_and_results(archived):
    res, out, manifest = archived
    with tarfile.open(out) as tar:
        names = tar.getnames()
        got = json.load(tar.extractfile(MANIFEST))
        cfg = yaml.safe_load(tar.extractfile(CONFIG_FILE))
    assert names[-2:] == [MANIFEST, CONFIG_FILE]
    assert got["format"] == FORMAT and got == json.loads(json.dumps(manifest, default=str))
    assert cfg == CONFIG and got["config"] == CONFIG
    assert got["software"]["torch"] and got["software"]["python"] and "snakemake" in got["software"]
    paths = [f["path"] for f in got["files"]]
    assert paths == sorted(paths) == collect_files(res) == names[:-2]
    assert "results/sweeps/gmm-natural.parquet" in paths and "results/logs/blur_kernels.log" in paths
    assert not any(p.endswith((".part", "_state.pt")) for p in paths)
    kinds = {f["path"]: f["kind"] for f in got["files"]}
    assert kinds["results/sweeps/gmm-natural.parquet"] == "artefact" and kinds["results/figures/fig05.png"] == "figure"
    assert kinds["results/priors/gmm-natural/model.pt"] == "model"
    sweep = next(f for f in got["files"] if f["path"] == "results/sweeps/gmm-natural.parquet")
    assert sweep["size"] == (res / "sweeps/gmm-natural.parquet").stat().st_size and len(sweep["sha256"]) == 64


def test_archive_of_a_configuration_results_folder_keeps_its_path(tmp_path):
    """results: results/demo: the archive holds results/demo/… (where the configuration reads and
    writes them), its manifest says so, and the review finds that folder from the archive, the
    unpacked folder, the results folder itself, or a working directory's config.yaml."""
    run = tmp_path / "run"
    res = _results_tree(run, "results/demo")
    rules = json.loads(json.dumps(RULES).replace("results/", "results/demo/"))
    config = {**CONFIG, "results": "results/demo"}
    out = tmp_path / "archives/results-demo.tar.gz"
    manifest = write_archive(res, out, config=config, rules=rules, root="results/demo")
    assert manifest["results"] == "results/demo"
    paths = [f["path"] for f in manifest["files"]]
    assert (
        paths and all(p.startswith("results/demo/") for p in paths) and paths == collect_files(res, root="results/demo")
    )
    kinds = {f["path"]: f["kind"] for f in manifest["files"]}
    assert kinds["results/demo/sweeps/gmm-natural.parquet"] == "artefact"
    assert kinds["results/demo/figures/fig05.png"] == "figure" and kinds["results/demo/logs/blur_kernels.log"] == "log"
    assert kinds["results/demo/tables/sweep_summary.csv"] == "table"

    unpacked = unpack(out, tmp_path / "unpacked")
    assert (unpacked / "results/demo/sweeps/gmm-natural.parquet").exists()
    for where in (out, unpacked, unpacked / "results/demo"):
        rv = review(where)
        assert rv.ok and rv.root == "results/demo" and not rv.missing, (where, format_review(rv))
        assert {e.path: e.kind for e in rv.entries} == kinds
        assert {e.path: e.rule for e in rv.entries}["results/demo/sweeps/gmm-natural.parquet"] == "likelihood_sweep"
        status = {r["rule"]: r["status"] for r in rv.renderable}
        assert status["fig05_blur_families"] == "yes" and status["fig04_hessian_spectra"] == "no"

    # a manifest whose results folder leaves the archive is refused, naming the key
    m = json.loads((unpacked / MANIFEST).read_text())
    (unpacked / MANIFEST).write_text(json.dumps({**m, "results": "../elsewhere"}))
    rv = review(unpacked)
    assert not rv.ok and any("'results' '../elsewhere' is not a relative path" in p for p in rv.problems)

    # a working directory without a manifest: its config.yaml says where its results are
    (run / "config.yaml").write_text(yaml.safe_dump({"results": "results/demo"}))
    rv = review(run)
    assert rv.manifest is None and rv.root == "results/demo" and rv.ok
    assert {e.path: e.kind for e in rv.entries} == kinds
    status = {r["rule"]: r["status"] for r in rv.renderable}  # FIGURE_INPUTS, under results/demo
    assert status["fig05_blur_families"] == "yes" and status["fig04_hessian_spectra"] == "no"


def test_review_of_an_intact_archive(archived):
    _, out, _ = archived
    rv = review(out)
    assert rv.ok and not (rv.mismatched or rv.missing or rv.extra)
    sweep = next(e for e in rv.entries if e.path == "results/sweeps/gmm-natural.parquet")
    assert sweep.rows == 12 and sweep.rule == "likelihood_sweep"
    assert sweep.summary == "1 prior × 2 families × 3 θ × 2 images"
    assert sweep.provenance["config"] == {"sweep": {"n_images": 2}} and sweep.provenance["wall_time_s"] == 1.5
    status = {r["rule"]: r["status"] for r in rv.renderable}
    assert status == {"fig05_blur_families": "yes", "fig07_likelihood_sweeps": "yes", "fig04_hessian_spectra": "no"}
    text = format_review(rv)
    assert "Checksums: all" in text and "1 prior × 2 families × 3 θ × 2 images" in text
    assert re.search(r"yes\s+fig05_blur_families", text) and re.search(r"no\s+fig04_hessian_spectra", text)
    assert text.rstrip().endswith("OK")


def _summary(text: str) -> str:
    return text[: text.index("\nDetail\n")]


def test_review_opens_with_a_one_screen_summary(archived, tmp_path):
    """What was run, what passed, what is flagged (counts, not lists), the verdict: before the
    detail, on one screen however much is wrong."""
    _, out, _ = archived
    text = format_review(review(out))
    summary = _summary(text)
    assert text.startswith(f"Review of archive {out}\nSummary\n") and len(summary.splitlines()) <= 24
    assert re.search(r"run\s+scale demo, results results, device cpu, seed 0; 1 prior: gmm-natural", summary)
    assert re.search(r"commit\s+\S+ \(manifest\); artefacts made at 1 commit", summary)
    assert re.search(r"dates\s+artefacts made \d{4}-\d\d-\d\d \d\d:\d\d UTC; archived", summary)
    assert "9 files" in summary and "2 artefacts, 1 model, 3 figures, 1 table, 1 log, 1 benchmark" in summary
    assert "passed (4)" in summary and "all 9 files match the manifest" in summary and "sha256 matches" in summary
    assert "flagged (0 failing" in summary and "not re-renderable from this alone (fig04_hessian_spectra)" in summary
    assert summary.rstrip().endswith("verdict   OK")

    unpacked = unpack(out, tmp_path / "unpacked")
    for png in (unpacked / "results/figures").glob("*.png"):
        png.write_bytes(b"changed")  # 2 figures changed
    (unpacked / "results/tables/sweep_summary.csv").unlink()
    for i in range(60):  # many unlisted files: counted in the summary, listed only in the detail
        (unpacked / f"results/logs/extra{i}.log").write_text("x")
    text = format_review(review(unpacked))
    summary = _summary(text)
    assert len(summary.splitlines()) <= 24 and "extra0.log" not in summary and "extra0.log" in text
    assert "FAIL  2 changed since the manifest" in summary and "FAIL  1 missing" in summary
    assert "FAIL  60 not listed in the manifest" in summary and "flagged (63 failing" in summary
    assert "passed (2)" in summary and "every file readable" in summary and "manifest well formed" in summary
    assert "verdict   FAILED: 2 changed, 1 missing, 60 not listed in the manifest" in summary
    assert text.rstrip().splitlines()[-1] == summary.rstrip().splitlines()[-1].split("verdict   ")[1]


def test_review_names_a_corrupted_file_in_a_folder_and_in_an_archive(archived, tmp_path, capsys):
    _, out, _ = archived
    unpacked = unpack(out, tmp_path / "unpacked")
    assert cli_main(["review", str(unpacked)]) == 0
    target = unpacked / "results/sweeps/gmm-natural.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    target.write_bytes(bytes(data))
    (unpacked / "results/figures/fig05.pdf").unlink()
    capsys.readouterr()
    assert cli_main(["review", str(unpacked)]) == 1
    printed = capsys.readouterr().out
    assert "CHANGED  results/sweeps/gmm-natural.parquet" in printed
    assert "MISSING  results/figures/fig05.pdf" in printed and "FAILED" in printed
    rv = review(unpacked / "results")  # the results/ folder itself finds the manifest beside it
    assert rv.mismatched == ["results/sweeps/gmm-natural.parquet"] and rv.missing == ["results/figures/fig05.pdf"]
    assert {r["rule"]: r["status"] for r in rv.renderable}["fig07_likelihood_sweeps"] == "no"

    # the same damage inside a .tar.gz (repacked with the original manifest)
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for p in sorted(unpacked.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(unpacked).as_posix())
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "prior-landscape"), "review", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CHANGED  results/sweeps/gmm-natural.parquet" in proc.stdout


def test_review_json_and_usage_errors(archived, tmp_path, capsys):
    _, out, _ = archived
    assert cli_main(["review", "--json", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["manifest"]["config"] == CONFIG and "files" not in data["manifest"]
    assert cli_main(["review", str(tmp_path / "nope.tar.gz")]) == 2


def test_review_of_a_bare_results_folder_uses_the_static_map(tmp_path):
    res = _results_tree(tmp_path / "run")
    rv = review(res)
    assert rv.manifest is None and rv.ok  # nothing to verify against
    status = {r["rule"]: r["status"] for r in rv.renderable}
    assert status["fig05_blur_families"] == "yes" and status["fig07_likelihood_sweeps"] == "yes"
    assert status["fig04_hessian_spectra"] == "no"
    rules = {e.path: e.rule for e in rv.entries}
    assert rules["results/sweeps/gmm-natural.parquet"] == "likelihood_sweep"
    assert "checksums cannot be verified" in format_review(rv)


def test_static_map_lists_every_figure_and_table_rule():
    """FIGURE_INPUTS is the fallback for folders without a manifest: keep it in step with the rules."""
    figure_rules = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), flags=re.M | re.S):
            rendered = ("{RESULTS}/figures/", "{RESULTS}/tables/", "{RESULTS}/report/", "table_files(")
            if any(mark in body for mark in rendered):
                figure_rules.add(name)
    missing = figure_rules - set(FIGURE_INPUTS)
    assert figure_rules and not missing, f"add {sorted(missing)} to FIGURE_INPUTS in prior_landscape/io/archive.py"


# --------------------------------------------------------------------------- a real run


def _snakemake(work: Path, *args: str, check: bool = True, snakefile: Path = REPO / "Snakefile"):
    cmd = [*SNAKEMAKE, "-s", str(snakefile), "--directory", str(work), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


# a Snakefile around the workflow that narrows `all` (and so the archive) to Figs. 5 and 7
NARROW = """include: {snakefile!r}


def all_targets():
    return ["results/figures/fig05.png", "results/figures/fig07.png"]
"""


@pytest.fixture(scope="module")
def archived_run(tmp_path_factory):
    """The tiny configuration's Figs. 5 and 7 (a minute or two), run and archived by `snakemake archive`."""
    tmp = tmp_path_factory.mktemp("archive")
    work = tmp / "work"
    work.mkdir()
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    shutil.copy(REPO / "tests/configs/tiny.yaml", work / "tiny.yaml")
    narrow = tmp / "Snakefile"
    narrow.write_text(NARROW.format(snakefile=str(REPO / "Snakefile")))
    t0 = time.perf_counter()
    proc = _snakemake(work, "archive", "--configfile", str(work / "tiny.yaml"), snakefile=narrow)
    print(f"tiny run of Figs. 5 and 7 + archive: {time.perf_counter() - t0:.0f} s")
    return work, proc, narrow


@pytest.mark.slow
def test_archive_rule_packs_the_run(archived_run):
    work, proc, narrow = archived_run
    assert re.search(r"^(local)?rule archive:", proc.stdout + proc.stderr, flags=re.M)
    out = work / "archives/results.tar.gz"
    rv = review(out)
    assert rv.ok, format_review(rv)
    m = rv.manifest
    assert m["config"]["sweep"]["n_images"] == 2 and m["config"]["scale"] == "demo"  # config.yaml + tiny.yaml
    assert yaml.safe_load(tarfile.open(out).extractfile(CONFIG_FILE)) == m["config"]
    assert {r["rule"] for r in m["rules"]} >= {"likelihood_sweep", "fig07_likelihood_sweeps", "archive"}
    assert m["software"]["snakemake"] and m["software"]["snakemake-executor-plugin-slurm"]
    paths = {e.path for e in rv.entries}
    assert "results/sweeps/scorenet-natural.parquet" in paths and "results/figures/fig07.png" in paths
    assert any(p.startswith("results/logs/") for p in paths) and any(p.startswith("results/benchmarks/") for p in paths)
    assert not any(p.endswith(("_state.pt", ".part")) for p in paths)
    status = {r["rule"]: r["status"] for r in rv.renderable}
    assert status["fig05_blur_families"] == status["fig07_likelihood_sweeps"] == "yes", rv.renderable
    assert status["tab01_priors"] == "no"  # its timing artefacts are not part of this run
    sweep = next(e for e in rv.entries if e.path == "results/sweeps/gmm-natural.parquet")
    assert sweep.rule == "likelihood_sweep" and sweep.provenance["config"]["sweep"]["n_images"] == 2
    assert sweep.summary.endswith("2 families × 3 θ × 2 images"), sweep.summary
    rules = {e.path: e.rule for e in rv.entries}
    assert rules["results/priors/gmm-natural/model.pt"] == "fit_mixture_prior"
    assert rules["results/priors/scorenet-natural/model.pt"] == "train_score_network"
    dry = _snakemake(work, "-n", "archive", "--configfile", str(work / "tiny.yaml"), snakefile=narrow)
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_figure_rerenders_from_the_unpacked_archive_without_recomputation(archived_run, tmp_path):
    work, _, _ = archived_run
    unpacked = unpack(work / "archives/results.tar.gz", tmp_path / "unpacked")
    assert (unpacked / "config.yaml").exists() and (unpacked / MANIFEST).exists()
    fig = unpacked / "results/figures/fig07.png"
    before = fig.read_bytes()
    fig.unlink()
    proc = _snakemake(unpacked, "results/figures/fig07.png")
    log = proc.stdout + proc.stderr
    assert "rule fig07_likelihood_sweeps" in log
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    assert ran == {"fig07_likelihood_sweeps"}, f"recomputed: {ran}\n{log[-3000:]}"
    assert fig.exists() and fig.stat().st_size > 0 and len(before) > 0
    # the rest of the unpacked run is up to date: Fig. 5 needs nothing either
    dry = _snakemake(unpacked, "-n", "results/figures/fig05.png", "results/figures/fig07.png")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # and its review now reports the re-rendered figure as a changed file
    rv = review(unpacked)
    assert set(rv.mismatched) <= {
        "results/figures/fig07.png",
        "results/figures/fig07.pdf",
        "results/tables/sweep_summary.csv",
        "results/logs/figures/fig07.log",
    }
    assert not rv.missing
