"""benchmarks/gpu_check.py on CPU at toy sizes (the same code paths the GPU check runs at paper scale),
its arithmetic (card fits, the per-step difference), and the batched peer schemes of
benchmarks/potential_engine.py against the exact potential of the analytic prior."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402
import potential_engine  # noqa: E402

from prior_landscape.landscape.potential import PotentialSettings, potential  # noqa: E402


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    rec = gpu_check.run("tiny", "cpu", out, budget_s=600, engine=False)
    return rec, out


def _rows(rec, what):
    return {r["network"]: r for r in rec["rows"] if r["what"] == what}


def test_every_paper_network_is_measured_without_failure(record):
    rec, out = record
    assert json.loads(out.read_text()) == json.loads(json.dumps(rec, default=str))  # what was written
    failed = [r for r in rec["rows"] if "error" in r]
    assert failed == []
    models = _rows(rec, "model")
    assert set(models) == set(gpu_check.networks("tiny"))
    for r in models.values():
        assert r["seconds_per_image"] > 0 and r["batch"] in gpu_check.SCALES["tiny"]["ladder"]
        assert r["peak_gb"] is None  # not measured on CPU, and not invented
    assert set(_rows(rec, "potential_rhs")) == set(gpu_check.LANDSCAPE)
    hess = _rows(rec, "hessian")
    assert set(hess) == set(gpu_check.HESSIAN)
    assert all(h["d"] == 3 * 8 * 8 for h in hess.values())
    assert {"spectrum_eigvalsh", "spectrum_svdvals"} <= {r["what"] for r in rec["rows"]}


def test_a_method_step_costs_what_the_algorithm_says(record):
    """One iteration of Algorithm 1 is K_x image steps, one prior evaluation each (P Algorithm 1); one
    DPS-type step is one evaluation of the image prior; every benchmark method is timed."""
    rec, _ = record
    steps = {r["method"]: r for r in rec["rows"] if r["what"] == "method_step"}
    assert set(steps) == set(gpu_check.METHOD_STEPS)
    n_inner = gpu_check.SCALES["tiny"]["n_inner"]
    assert steps["p-algorithm1"]["nfe_per_step"] == n_inner
    assert steps["p-algorithm2"]["nfe_per_step"] == n_inner
    assert steps["p-image-step"]["nfe_per_step"] == 1
    assert steps["blind-dps"]["nfe_per_step"] == 1 and steps["dps-true-kernel"]["nfe_per_step"] == 1
    (alg1,) = [r for r in rec["rows"] if r["what"] == "algorithm1_iteration"]
    assert alg1["seconds_per_image"] == steps["p-algorithm1"]["seconds_per_image"]


def test_the_table_names_failures():
    rec = dict(date="d", device="cpu", torch="t", scale="tiny", wall_s=1.0, rows=[])
    rec["rows"].append(dict(network="ffhq64", what="model", error="RuntimeError: boom"))
    text = gpu_check.table(rec)
    assert "ffhq64" in text and "FAILED: RuntimeError: boom" in text


def test_card_fit_extrapolates_the_linear_memory_model():
    pts = [dict(batch=b, seconds_per_image=1.0, peak_gb=2.0 + 0.5 * b) for b in (1, 2, 4, 8)]
    fits, batch_for = gpu_check.card_fit(pts)
    assert fits == {"16": True, "40": True, "80": True}
    # 0.9·C = 2 + 0.5·B  →  B = (0.9·C − 2)/0.5
    assert batch_for == {"16": 24, "40": 68, "80": 140}
    big = [dict(batch=1, seconds_per_image=1.0, peak_gb=20.0)]
    assert gpu_check.card_fit(big)[0] == {"16": False, "40": True, "80": True}
    assert gpu_check.card_fit([dict(batch=1, seconds_per_image=1.0, peak_gb=None)]) == ({}, {})


def test_the_ladder_stops_at_out_of_memory_and_keeps_what_it_measured():
    def fn(b):
        if b >= 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.zeros(b)

    pts = gpu_check.ladder(fn, "cpu", (1, 2, 4, 8), gpu_check.Budget(60), cap_gb=1e9, max_call_s=10)
    assert [p["batch"] for p in pts] == [1, 2, 4]
    assert pts[-1] == dict(batch=4, oom=True)

    def broken(b):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # not an OOM: not swallowed
        gpu_check.ladder(broken, "cpu", (1,), gpu_check.Budget(60), cap_gb=1e9, max_call_s=10)


def test_the_batched_peer_schemes_meet_the_exact_potential(demo_mixture, heldout_images):
    """torchdiffeq's dopri5 and the flattened scipy RK45 solve the same ODE with the same probes as the
    engine: on the analytic prior each is within 3 standard errors + 1e-3·|q| of the exact q."""
    from prior_landscape.io.images import crop_positions, extract_crops

    x = extract_crops(heldout_images, crop_positions(heldout_images, 3, 16, seed=4, margin=15, min_std=0.05))
    settings = PotentialSettings(n_probes=4, atol=1e-5, rtol=1e-5)
    exact = demo_mixture.potential(x).double().numpy()
    eng = potential(demo_mixture, x, settings)
    for scheme in (potential_engine.potential_torchdiffeq, potential_engine.potential_scipy_batch):
        r = scheme(demo_mixture, x, settings)
        assert np.all(np.abs(r.q - exact) <= 3 * r.stderr + 1e-3 * np.abs(exact)), scheme.__name__
        # the same probes: per probe, the peers and the engine differ by discretisation only, a tenth of
        # one probe's Monte-Carlo spread at most (the engine's divergence integrals are not in its error
        # norm: landscape/potential.py's docstring measures the error this adds)
        spread = eng.stderr * np.sqrt(settings.n_probes)  # the per-probe estimates' standard deviation
        bound = 0.1 * spread[:, None] + 1e-3 * np.abs(exact)[:, None]
        assert np.all(np.abs(r.per_probe - eng.per_probe) <= bound), (r.per_probe - eng.per_probe, bound)


def test_the_plan_reads_the_check_it_writes(record, capsys):
    """`prior-landscape plan` takes its costs from the record: a potential evaluation from one ODE
    right-hand side × the stated NFE, the 64-px Hessian for both priors of that architecture."""
    from prior_landscape.cli import main
    from prior_landscape.plan import RHS_PER_POTENTIAL, read_gpu_check

    rec, out = record
    read = read_gpu_check(out)
    rhs = _rows(rec, "potential_rhs")["ffhq64"]["seconds_per_image"]
    pot = {r["network"]: r for r in read["rows"] if r["what"] == "potential"}
    assert pot["ffhq64"]["seconds_per_image"] == pytest.approx(rhs * RHS_PER_POTENTIAL)
    assert pot["afhq64"]["seconds_per_image"] == pot["ffhq64"]["seconds_per_image"]  # same architecture
    assert main(["plan", "--gpus", "1,8", "--gpu-check", str(out), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    sweeps = {r["key"]: r for r in plan["rows"] if r["stage"] == "likelihood_sweep"}
    label = f"gpu-check {rec['date']} {rec['device']}"
    assert sweeps["ffhq64"]["source"] == sweeps["afhq64"]["source"] == label
    assert sweeps["ffhq64"]["s_per_unit"] == [pytest.approx(rhs * RHS_PER_POTENTIAL)]
