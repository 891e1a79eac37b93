"""Real blur in the benchmark: RealBlur-J crops and Köhler shots, blurry images against their sharp
references with no kernel known (issue 14).

Stand-ins in the real folder layouts (``resource_location`` of each catalogue entry): the blurry image
of a pair is its sharp image blurred by a known box kernel, so what the harness does without the
kernel can be compared with what is true. Properties: the test set is the pairs as the readers return
them; images are scored (PSNR against an independent computation), the no-blur flag is kept (it needs
only the estimate), every kernel metric is NaN; references that need the true kernel refuse real blur —
in the harness, in the configuration check and in the DAG."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import skimage.data
import torch
import yaml
from PIL import Image
from test_benchmark_harness import _numpy_aligned_psnr, register  # noqa: F401 - register: toy methods
from test_hostile import _dry_run

from prior_landscape.io import datasets as ds
from prior_landscape.io.downloads import load_catalogue, resource_location
from prior_landscape.methods import METHODS, Estimate
from prior_landscape.methods.base import Context
from prior_landscape.methods.benchmark import KOHLER_SHOTS, evaluate, make_testset, run_on_testset
from prior_landscape.methods.benchmark import testset_tensors as tensors_of
from prior_landscape.report.benchmark_figures import benchmark_table, plot_benchmark_grid, plot_benchmark_kernels

REPO = Path(__file__).resolve().parents[1]
CAT = load_catalogue()
K = 7  # the kernel support the blind methods estimate
BOX = np.zeros((K, K))
BOX[K // 2, 1:6] = 0.2  # the stand-ins' blur: horizontal motion over 5 px

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(path)


def _pair(i: int, h: int = 40, w: int = 44) -> tuple[np.ndarray, np.ndarray]:
    """A sharp colour window of a bundled photograph and the same blurred by BOX (reflect), (h, w, 3)."""
    photo = skimage.data.astronaut()[::4, ::4] / 255.0  # (128, 128, 3)
    sharp = photo[20 * i : 20 * i + h, 30 * i : 30 * i + w]
    blurry = np.stack([ndi.convolve(sharp[..., c], BOX, mode="reflect") for c in range(3)], -1)
    return sharp, blurry


@pytest.fixture(scope="module")
def realblur_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("realblur")
    loc = resource_location(CAT["realblur-j"], root)
    top, lines = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref", []
    for i in range(4):
        sharp, blurry = _pair(i)
        s_rel, b_rel = f"{top}/scene{i:03d}/gt/gt_1.png", f"{top}/scene{i:03d}/blur/blur_1.png"
        _save(loc / s_rel, sharp)
        _save(loc / b_rel, blurry)
        lines.append(f"{s_rel} {b_rel}")
    (loc / ds.REALBLUR_TEST_LIST).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def kohler_root(tmp_path_factory):
    """All 48 shots, tiny: the blurry shot and three sharp frames (the middle one the pair's sharp image)."""
    root = tmp_path_factory.mktemp("kohler")
    loc = resource_location(CAT["kohler2012"], root)
    for n, (image, trajectory) in enumerate(KOHLER_SHOTS):
        sharp, blurry = _pair(n % 4, 24, 28)
        _save(loc / "BlurryImages" / f"Blurry{image}_{trajectory}.png", blurry * (0.9 + 0.002 * n))
        frames = loc / f"GroundTruth_pngs_Image{image}" / f"Image{image}" / f"Kernel{trajectory}"
        for f, gain in ((1, 0.5), (2, 1.0), (3, 0.7)):
            _save(frames / f"GroundTruth{image}_{trajectory}_{f}.png", sharp * gain)
    return root


def _spec(reader: str, resource: str, n: int, size: int = 32, **pairs) -> dict:
    return {"pairs": {"resource": resource, "reader": reader, **pairs}, "n_images": n, "size": size,
            "kernel_size": K, "seed": 5, "sigma_y": 0.01}  # fmt: skip


# ------------------------------------------------------------------------------------------ test sets
def test_realblur_testset_is_the_pairs_as_read_without_kernels(realblur_root):
    ts = make_testset(_spec("realblur", "realblur-j", 3, name="real camera shake"), {}, resource_root=realblur_root)
    blurred, sharp, ids = ds.read_realblur_pairs(realblur_root, n=3, size=32, seed=5, channels=3)
    assert list(ts.case) == [0, 1, 2] and list(ts.source) == ids
    assert (ts.kernel_family == "real camera shake").all() and ts.kernel.isna().all()
    assert (ts.kernel_size == K).all() and (ts.sigma_y == 0.01).all() and (ts.channels == 3).all()
    x, y, h = tensors_of(ts)
    assert h is None  # nobody knows the kernel of real blur
    torch.testing.assert_close(x, sharp.double(), rtol=0, atol=0)
    torch.testing.assert_close(y, blurred.double(), rtol=0, atol=0)  # no synthetic blur or noise added
    with pytest.raises(ValueError, match="5 pairs requested but .* lists only 4"):
        make_testset(_spec("realblur", "realblur-j", 5), {}, resource_root=realblur_root)


def test_kohler_testset_draws_shots_by_seed_against_the_chosen_frame(kohler_root):
    ts = make_testset(_spec("kohler", "kohler2012", 3, size=16), {}, resource_root=kohler_root)
    shots = [KOHLER_SHOTS[i] for i in sorted(ds.select_indices(48, 3, 5))]
    assert list(ts.source) == [f"Blurry{i}_{t}" for i, t in shots] and ts.kernel.isna().all()
    x, y, _ = tensors_of(ts)
    for row, (image, trajectory) in enumerate(shots):
        shot = ds.read_kohler(kohler_root, image=image, trajectory=trajectory, crop=16, frames="all")
        torch.testing.assert_close(y[row], shot["blurry"].double(), rtol=0, atol=0)
        torch.testing.assert_close(x[row], shot["sharp"][1].double(), rtol=0, atol=0)  # frame 2 of 1..3: the middle
    first = make_testset(_spec("kohler", "kohler2012", 3, size=16, frames="first"), {}, resource_root=kohler_root)
    torch.testing.assert_close(tensors_of(first)[0], 0.5 * x, rtol=0, atol=1 / 255)
    every = make_testset(_spec("kohler", "kohler2012", 48, size=16), {}, resource_root=kohler_root)
    assert sorted(every.source) == sorted(f"Blurry{i}_{t}" for i, t in KOHLER_SHOTS)
    with pytest.raises(ValueError, match="49 shots requested but the benchmark has 48"):
        make_testset(_spec("kohler", "kohler2012", 49, size=16), {}, resource_root=kohler_root)
    with pytest.raises(ValueError, match="unknown pairs reader 'gopro'"):
        make_testset(_spec("gopro", "kohler2012", 1), {}, resource_root=kohler_root)


def test_a_test_set_with_kernels_for_some_cases_only_is_refused(realblur_root):
    ts = make_testset(_spec("realblur", "realblur-j", 2), {}, resource_root=realblur_root)
    ts.at[0, "kernel"] = BOX.flatten()
    with pytest.raises(ValueError, match="true kernels for some cases only \\(1 of 2\\)"):
        tensors_of(ts)


# ------------------------------------------------------------------------------------------ metrics and runs
def test_real_blur_scores_images_and_no_blur_with_every_kernel_metric_nan(realblur_root, register):  # noqa: F811
    ts = make_testset(_spec("realblur", "realblur-j", 3), {}, resource_root=realblur_root)
    x, y, _ = tensors_of(ts)
    dirac = torch.zeros(3, K, K, dtype=torch.float64)
    dirac[:, K // 2, K // 2] = 1
    seen = {}

    @register("test-real-dirac")
    def _dirac(problem, context):  # the no-blur solution: y itself with the Dirac kernel
        seen["true_kernel"] = context.true_kernel
        return Estimate(problem.y, dirac[: len(problem.y)].clone())

    @register("test-real-oracle")
    def _oracle(problem, context):  # the sharp images (taken from the test set) with the stand-ins' blur
        return Estimate(x.clone(), torch.as_tensor(BOX).expand(len(problem.y), K, K).clone())

    runs, estimates = run_on_testset("dirac", "test-real-dirac", {}, ts, Context())
    assert seen["true_kernel"] is None
    assert runs.no_blur.all() and runs[["kernel_error", "kernel_mse", "mnc"]].isna().all().all()
    expected = [_numpy_aligned_psnr(y[i].numpy(), x[i].numpy(), K // 2) for i in range(3)]
    np.testing.assert_allclose(runs.psnr, expected, rtol=1e-12)
    oracle, _ = run_on_testset("oracle", "test-real-oracle", {}, ts, Context())
    assert not oracle.no_blur.any() and np.isinf(oracle.psnr).all() and np.allclose(oracle.ssim, 1)
    assert oracle[["kernel_error", "kernel_mse", "mnc"]].isna().all().all()
    # no kernel known: the shift search needs the support the methods estimate
    with pytest.raises(ValueError, match="kernel_size sets the alignment"):
        evaluate(y, None, x, None)
    # the table and the figures of a real-blur dataset
    methods = {"dirac": {"method": "test-real-dirac"}, "oracle": {"method": "test-real-oracle"}}
    both = pd.concat([runs, oracle], ignore_index=True)
    table = benchmark_table(both, methods)
    assert table.set_index("method").loc["dirac", "no_blur"] == 1.0
    assert table.kernel_error.isna().all() and "kernel_error_best" not in table  # nothing to rank
    _, oracle_est = run_on_testset("oracle", "test-real-oracle", {}, ts, Context())
    fig = plot_benchmark_kernels(ts, both, methods, pd.concat([estimates, oracle_est]))
    sizes = [line.get_xdata() for line in fig.axes[0].lines]  # estimated kernels' RMS radii per method
    assert np.allclose(sizes[0], 0) and np.allclose(sizes[1], np.sqrt(2))  # the Dirac; the 5-px box: √2 px
    plot_benchmark_grid(ts, pd.concat([estimates, oracle_est]), both, methods)


def test_references_that_need_the_true_kernel_refuse_real_blur(realblur_root):
    ts = make_testset(_spec("realblur", "realblur-j", 2), {}, resource_root=realblur_root)
    needing = {n for n, spec in METHODS.items() if spec.needs_true_kernel}
    assert {"wiener", "p-image-step", "dps-true-kernel"} <= needing and "blurry" not in needing
    with pytest.raises(ValueError, match="'wiener' needs the true kernel, which a dataset of real blur does not"):
        run_on_testset("wiener", "wiener", {}, ts, Context())
    floor, _ = run_on_testset("blurry", "blurry", {}, ts, Context())  # the floor needs no kernel
    assert floor.psnr.notna().all() and not floor.no_blur.any()


# ------------------------------------------------------------------------------------------ the workflow
def _demo_with_real_blur(**wiener) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    # first in order (the test's YAML sorts keys): the claims table must still read the first synthetic one
    cfg["benchmark"]["datasets"] = {"bench-real": _spec("realblur", "realblur-j", 2), **cfg["benchmark"]["datasets"]}
    cfg["benchmark"]["methods"]["wiener"].update(wiener)
    return cfg


def test_the_dag_runs_blind_methods_and_the_floor_on_real_blur_and_no_true_kernel_reference(tmp_path):
    proc = _dry_run(tmp_path / "ok", _demo_with_real_blur(), "results/demo/tables/benchmark_bench-real.csv")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    jobs = set()
    for line in proc.stdout.splitlines():
        if "results/demo/benchmark/bench-real/runs/" in line:
            jobs.add(line.split("runs/")[1].split(".parquet")[0])
    config = yaml.safe_load((REPO / "config.yaml").read_text())["benchmark"]["methods"]
    expected = {m for m, e in config.items() if e["method"] not in ("wiener", "p-image-step", "dps-true-kernel")}
    assert jobs == expected and "blurry" in jobs and "p-alg1-small" in jobs
    # the claims table stays on the first dataset of synthetic blur
    claims = _dry_run(tmp_path / "claims", _demo_with_real_blur(), "results/demo/tables/claims.csv")
    assert claims.returncode == 0 and "benchmark/bench-real/" not in claims.stdout
    assert "benchmark/demo-photographs/runs/p-alg1-small.parquet" in claims.stdout
    # a reference needing the true kernel, listed on real blur: refused by name before any job
    bad = _dry_run(tmp_path / "bad", _demo_with_real_blur(datasets=["bench-real"]))
    assert bad.returncode != 0
    assert "benchmark.methods.wiener.datasets: 'bench-real' is real blur (pairs)" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad" / "results").exists()
