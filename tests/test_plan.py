"""`prior-landscape plan` (prior_landscape.plan): exact GPU-hours of a small configuration whose costs
are known, the wall-time schedule's invariants, where each cost comes from, and damaged inputs."""

import json
import random

import pandas as pd
import pytest
import yaml
from conftest import REPO

from prior_landscape import cli
from prior_landscape.config import theta_grid
from prior_landscape.plan import P_TABLE1, PlanError, build_plan, lpt_makespan, read_gpu_check, wall_time

DATE, DEVICE = "2026-11-30", "NVIDIA H200"
# the record's costs (seconds per image): model and potential evaluations of the two priors
COSTS = {"ffhq64": {"model": 0.5, "potential": 10.0}, "afhq64": {"model": 0.25, "potential": 4.0}}
SIZE = 8  # 8×8×3 images: d = 192, a Hessian = 3·192 model evaluations (derived)


def _config(tmp_path, **extra) -> dict:
    cfg = {
        "results": str(tmp_path / "results"),
        "priors": {p: {"kind": "edm", "images": {"size": SIZE}} for p in COSTS},
        "timing": {"n_images": 2, "repeats": 3, "potential_repeats": 3},
        "sweep": {"families": ["gaussian", "motion"], "theta": {"start": 0.0, "stop": 1.0, "num": 3}, "n_images": 5},
        "critical_points": {"n_per_group": 2, "n_steps": 100, "n_segments": 4},
        "hessian": {"priors": ["ffhq64"], "n_points": 2},
        **extra,
    }
    return cfg


def _write(tmp_path, cfg, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _record(rows=None, **top):
    if rows is None:
        rows = [
            {"network": net, "what": what, "batch": 4, "seconds_per_image": s, "peak_gb": 1.5,
             "fits": {"16": True, "40": True, "80": True}}
            for net, costs in COSTS.items() for what, s in costs.items()
        ]  # fmt: skip
    return {"date": DATE, "device": DEVICE, "torch": "2.5.1", "rows": rows, **top}


@pytest.fixture
def setup(tmp_path):
    config = _write(tmp_path, _config(tmp_path))
    check = tmp_path / "check.json"
    check.write_text(json.dumps(_record()))
    return config, check


# hand-computed seconds of every job (costs above):
# measure_prior_costs: ffhq64 2·(3·0.5 + 3·10) = 63, afhq64 2·(3·0.25 + 3·4) = 25.5           -> 88.5
# likelihood_sweep: 5 images × 2 families × 3 θ = 30 potential evals: ffhq64 300, afhq64 120
# critical_points: 6 starts × (100 model evals + 5 potential evals): ffhq64 300 + 300 = 600, afhq64 150 + 120 = 270
# hessian_spectra (ffhq64, after its critical points): 2 points × 3·192·0.5 = 576
JOBS = {"measure": 88.5, "sweep-f": 300.0, "sweep-a": 120.0, "cp-f": 600.0, "cp-a": 270.0, "hess-f": 576.0}
TOTAL = sum(JOBS.values())  # 1954.5 s


def test_gpu_hours_of_a_small_configuration_are_exact(setup):
    config, check = setup
    plan = build_plan(config, [1, 2, 100], gpu_check_path=check)
    assert plan.total_gpu_hours == pytest.approx(TOTAL / 3600, rel=1e-12)
    rows = {(r.stage, r.part, r.key): r for r in plan.rows}
    assert rows["likelihood_sweep", "", "ffhq64"].units == 30
    assert rows["likelihood_sweep", "", "ffhq64"].gpu_hours == pytest.approx(300 / 3600, rel=1e-12)
    assert rows["critical_points", "descent", "afhq64"].units == 600
    assert rows["critical_points", "q at points", "afhq64"].gpu_hours == pytest.approx(120 / 3600, rel=1e-12)
    assert rows["hessian_spectra", "", "ffhq64"].s_per_unit == [pytest.approx(288.0)]
    assert rows["measure_prior_costs", "potential", "ffhq64"].gpu_hours == pytest.approx(60 / 3600, rel=1e-12)
    assert len(plan.jobs) == len(JOBS) and plan.n_jobs == len(JOBS)
    # one GPU runs everything in turn; 2 GPUs: the chain cp-f → hess-f (1176 s) on one, the rest (778.5 s)
    # on the other; enough GPUs: the longest chain
    assert plan.wall_hours[1] == pytest.approx(TOTAL / 3600, rel=1e-12)
    assert plan.wall_hours[2] == pytest.approx(1176 / 3600, rel=1e-12)
    assert plan.wall_hours[100] == pytest.approx(1176 / 3600, rel=1e-12)
    assert plan.critical_path_hours == pytest.approx(1176 / 3600, rel=1e-12)
    # the per-stage view sums the same work
    stages = build_plan(config, [1], gpu_check_path=check, stages=True)
    assert sum(r.gpu_hours for r in stages.rows) == pytest.approx(TOTAL / 3600, rel=1e-12)
    assert {(r.stage, r.part) for r in stages.rows} == {(r.stage, r.part) for r in plan.rows}
    timing = [r for r in stages.rows if r.stage == "measure_prior_costs"]  # one job timing every prior in turn
    assert [r.jobs for r in timing] == [1, 1]
    assert sum(r.wall_hours[1] for r in timing) == pytest.approx(88.5 / 3600, rel=1e-12)


def test_shards_split_a_stage_into_at_most_that_many_jobs(tmp_path, setup):
    _, check = setup
    for count, jobs_per_sweep, longest in ((2, 2, 180.0), (10, 5, 60.0)):  # 5 images: 3 + 2, or one each
        cfg = _config(tmp_path, shards={"likelihood_sweep": count})
        plan = build_plan(_write(tmp_path, cfg, f"shards{count}.yaml"), [1, 1000], gpu_check_path=check)
        assert plan.total_gpu_hours == pytest.approx(TOTAL / 3600, rel=1e-12)  # the same work
        sweeps = [j for j in plan.jobs if j.stage == "likelihood_sweep"]
        assert [j.shards for j in sweeps] == [jobs_per_sweep] * 2
        assert max(next(j for j in sweeps if j.key == "ffhq64").shard_seconds()) == pytest.approx(longest)
        assert plan.n_jobs == len(JOBS) + 2 * (jobs_per_sweep - 1)
        assert plan.wall_hours[1] == pytest.approx(TOTAL / 3600, rel=1e-12)


def test_wall_time_invariants():
    rng = random.Random(0)
    for trial in range(50):
        durations = [rng.uniform(0.1, 10) for _ in range(rng.randint(1, 15))]
        after = [[j for j in range(i) if rng.random() < 0.15] for i in range(len(durations))] if trial % 2 else None
        walls = [wall_time(durations, n, after) for n in range(1, len(durations) + 3)]
        assert walls[0] == pytest.approx(sum(durations))  # one GPU: everything in turn, never idle
        assert all(b <= a + 1e-12 for a, b in zip(walls, walls[1:]))  # more GPUs never take longer
        if after is None:
            assert walls[-1] == pytest.approx(max(durations))  # as many GPUs as jobs: the longest job
            assert all(w >= max(max(durations), sum(durations) / n) - 1e-9 for n, w in enumerate(walls, 1))
    # LPT itself: 3, 3, 2, 2, 2 on two GPUs gives 7 (3+2+2 | 3+2), on three 5 (3+2 | 3 | 2+2)
    assert lpt_makespan([3, 3, 2, 2, 2], 2) == 7
    assert lpt_makespan([2, 3, 2, 3, 2], 3) == 5
    with pytest.raises(ValueError):
        wall_time([1.0], 0)


def test_each_cost_names_its_source(tmp_path, setup):
    config, check = setup
    # no record, no timing artefact: P Table 1 (the 8-px stand-ins carry the names of its rows)
    table1 = build_plan(config, [1], gpu_check_folder=tmp_path / "none")
    rows = {(r.stage, r.part, r.key): r for r in table1.rows}
    assert rows["likelihood_sweep", "", "ffhq64"].source == "P Table 1"
    assert rows["likelihood_sweep", "", "ffhq64"].s_per_unit == [P_TABLE1["ffhq64"]["potential"]]
    assert rows["hessian_spectra", "", "ffhq64"].basis.startswith("derived")
    assert table1.sources == {}
    # the newest record of the folder, by name, when none is named
    folder = tmp_path / "gpu_check"
    folder.mkdir()
    (folder / "2026-01-01.json").write_text(json.dumps(_record(date="2026-01-01")))
    (folder / "2026-11-30.json").write_text(json.dumps(_record()))
    checked = build_plan(config, [1], gpu_check_folder=folder)
    assert checked.sources == {"gpu_check": str(folder / "2026-11-30.json")}
    assert {r.source for r in checked.rows} == {f"gpu-check {DATE} {DEVICE}"}
    # a measured timing artefact (under the configuration's results folder) wins for the priors it has
    timing = tmp_path / "results/timing/priors.parquet"
    timing.parent.mkdir(parents=True)
    pd.DataFrame(
        {"prior": ["ffhq64"] * 6, "measurement": ["model"] * 3 + ["potential"] * 3,
         "s_per_image": [0.1, 0.3, 0.2, 2.0, 9.0, 3.0]}
    ).to_parquet(timing)  # fmt: skip
    measured = build_plan(config, [1], gpu_check_path=check)
    rows = {(r.stage, r.part, r.key): r for r in measured.rows}
    assert rows["likelihood_sweep", "", "ffhq64"].source == "measured"
    assert rows["likelihood_sweep", "", "ffhq64"].s_per_unit == [3.0]  # the median
    assert rows["critical_points", "descent", "ffhq64"].s_per_unit == [pytest.approx(0.2)]
    assert rows["likelihood_sweep", "", "afhq64"].source == f"gpu-check {DATE} {DEVICE}"
    # a network no source has: a proxy of P Table 1's nearest size, scaled
    cfg = _config(tmp_path)
    cfg["priors"]["mine"] = {"kind": "edm", "images": {"size": 200}}
    other = build_plan(_write(tmp_path, cfg, "other.yaml"), [1], gpu_check_path=check)
    mine = next(r for r in other.rows if r.key == "mine" and r.stage == "likelihood_sweep")
    assert mine.source == "proxy: P Table 1 ffhq256"
    assert mine.s_per_unit == [pytest.approx(P_TABLE1["ffhq256"]["model"] * (200 / 256) ** 2 * 5.05 / 0.006)]


def test_paper_configuration_prices_every_stage():
    plan = build_plan(REPO / "config/paper.yaml", [1, 8, 32], gpu_check_folder=REPO / "no-such-folder")
    stages = {r.stage for r in plan.rows}
    assert {"likelihood_sweep", "critical_points", "hessian_spectra", "posterior_profiles", "deblur_runs"} <= stages
    assert {"benchmark_run", "train_score_network", "train_kernel_prior", "measure_prior_costs"} <= stages
    sweep = next(r for r in plan.rows if r.stage == "likelihood_sweep" and r.key == "ffhq256")
    assert sweep.units == 100 * 4 * 11 and sweep.source == "P Table 1"
    assert sweep.gpu_hours == pytest.approx(4400 * 8.46 / 3600)
    assert plan.wall_hours[1] == pytest.approx(plan.total_gpu_hours)
    assert plan.wall_hours[1] >= plan.wall_hours[8] >= plan.wall_hours[32] >= plan.critical_path_hours - 1e-9


def test_cli_prints_a_table_json_and_markdown(setup, capsys):
    config, check = setup
    for flags, probe in (([], "likelihood_sweep"), (["--markdown"], "| likelihood_sweep |"), (["--json"], '"rows"')):
        assert cli.main(["plan", "--gpus", "1,4", "--config", str(config), "--gpu-check", str(check), *flags]) == 0
        out = capsys.readouterr().out
        assert probe in out and f"gpu-check {DATE} {DEVICE}" in out
    assert json.loads(out)["total_gpu_hours"] == pytest.approx(TOTAL / 3600)


def _bad_row(**change):
    row = dict(_record()["rows"][0])
    row.update(change)
    return _record(rows=[row])


@pytest.mark.parametrize(
    "text, key",
    [
        ("{not json", "not a readable JSON"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({k: v for k, v in _record().items() if k != "device"}), "device: missing"),
        (json.dumps(_record(rows=[])), "rows: must be a non-empty list"),
        (json.dumps({**_record(), "rows": [{"network": "ffhq64"}]}), "rows[0].what: missing"),
        (json.dumps(_bad_row(seconds_per_image=-0.5)), "rows[0].seconds_per_image: -0.5 is negative"),
        (json.dumps(_bad_row(seconds_per_image="fast")), "rows[0].seconds_per_image: 'fast' is not a number"),
        (json.dumps(_bad_row(what="everything")), "rows[0].what: 'everything' is not one of"),
        (json.dumps(_bad_row(batch=0)), "rows[0].batch: 0 is not a positive integer"),
        (json.dumps(_bad_row(fits={"16": True, "40": True})), "rows[0].fits.80: missing"),
        (json.dumps(_bad_row(peak_gb=-1)), "rows[0].peak_gb: -1 is negative"),
    ],
)
def test_a_damaged_gpu_check_record_is_refused_naming_file_and_key(setup, capsys, text, key):
    config, check = setup
    check.write_text(text)
    with pytest.raises(PlanError, match=r"check\.json"):
        read_gpu_check(check)
    assert cli.main(["plan", "--gpus", "8", "--config", str(config), "--gpu-check", str(check)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing printed as a table
    assert str(check) in err and key in err, err


def test_a_damaged_configuration_or_timing_artefact_is_refused(tmp_path, setup, capsys):
    config, check = setup
    cfg = _config(tmp_path)
    del cfg["sweep"]["n_images"]
    bad = _write(tmp_path, cfg, "bad.yaml")
    assert cli.main(["plan", "--gpus", "8", "--config", str(bad), "--gpu-check", str(check)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(bad) in err and "sweep" in err and "n_images" in err, err
    timing = tmp_path / "timing.parquet"
    pd.DataFrame({"prior": ["ffhq64"], "seconds": [1.0]}).to_parquet(timing)
    assert cli.main(["plan", "--gpus", "8", "--config", str(config), "--timing", str(timing)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(timing) in err and "measurement" in err, err


def test_a_prior_s_own_posterior_settings_size_its_profiles():
    """posterior.by_prior (config.yaml: the score network on 1 family, 2 images, 1 noise level) sizes that
    prior's profile job; the patch prior's keeps the section's own sizes."""
    from prior_landscape.plan import CostBook, stage_jobs

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert cfg["posterior"]["priors"] == ["epll-natural", "scorenet-natural"]
    jobs = {j.key: j for j in stage_jobs(cfg, CostBook()) if j.stage == "posterior_profiles"}
    parts = {k: {c.part: c for c in j.components} for k, j in jobs.items()}
    grid = 7  # θ ∈ linspace(0, 5, 6) ∪ {θ̄ = 2.5}
    net, patch = parts["scorenet-natural"], parts["epll-natural"]
    assert net["noiseless"].items == 2 and net["noiseless"].per_item == 2 * 1 * grid  # x̄ kinds × families × θ
    assert net["noisy, q at minimisers"].per_item == 2 * 1 * grid * 1 * 2  # … × σ_y × inner starts
    post = cfg["posterior"]
    n_theta = len(set(theta_grid(post["theta"])) | {post["theta_bar"]})
    assert patch["noiseless"].items == post["n_images"]
    assert patch["noiseless"].per_item == 2 * len(post["families"]) * n_theta
