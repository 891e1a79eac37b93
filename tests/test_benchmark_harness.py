"""The benchmark harness: its test sets, metrics, cost accounting and table prove what they state.

Each test checks a property against an independent computation (scipy's convolution, numpy's PSNR,
scikit-image's SSIM, closed forms of the kernel metrics, hand-computed medians) or against what a toy
method registered here did (its calls, its arguments, the kernel it was lent). Images are 32×32 crops
of the bundled held-out photographs, 7×7 kernels, one or two cases: the module runs in seconds."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import torch
import yaml
from skimage.metrics import structural_similarity

from prior_landscape.io.images import load_photographs
from prior_landscape.methods import METHODS, Context, Estimate, Problem, method, method_context, run_method
from prior_landscape.methods.benchmark import evaluate, make_kernel, make_testset, run_on_testset
from prior_landscape.methods.benchmark import testset_tensors as tensors_of
from prior_landscape.report.benchmark_figures import METRICS, benchmark_table, format_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
DATA = CONFIG["data"]
DEMO = CONFIG["benchmark"]["datasets"]["demo-photographs"]
DT = torch.float64
K = 7  # kernel side of the small test sets (half-size m = 3)

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(**over) -> dict:
    """The demo dataset's spec at test size: 32×32 crops, 7×7 kernels, camera shake and random walk."""
    spec = dict(DEMO, n_images=1, size=32, kernel_size=K, kernels=DEMO["kernels"][:2])
    spec.update(over)
    return spec


@pytest.fixture(scope="module")
def testset():
    return make_testset(_spec(), DATA)


@pytest.fixture
def register():
    """Register toy methods under unique names; they are removed from METHODS afterwards."""
    names = []

    def reg(name, **kw):
        names.append(name)
        return method(name, **kw)

    yield reg
    for name in names:
        METHODS.pop(name, None)


def _dirac(k: int, batch: int) -> torch.Tensor:
    d = torch.zeros(batch, k, k, dtype=DT)
    d[:, k // 2, k // 2] = 1.0
    return d


# ------------------------------------------------------------------------------------------ test sets
def test_testset_is_a_pure_function_of_spec_and_seed(testset):
    again = make_testset(_spec(), DATA)
    for col in ("sharp", "blurry", "kernel"):  # bit-identical arrays
        assert all(np.array_equal(a, b) for a, b in zip(testset[col], again[col], strict=True)), col
    assert testset.drop(columns=["sharp", "blurry", "kernel"]).equals(again.drop(columns=["sharp", "blurry", "kernel"]))
    other = make_testset(_spec(seed=DEMO["seed"] + 1), DATA)
    assert list(testset.source) != list(other.source)  # other crops
    for a, b in zip(testset.kernel, other.kernel, strict=True):  # other kernels (seeded families)
        assert not np.allclose(a, b)
    # the seeded generators differ with the seed; the Gaussian family is the same kernel for any seed
    assert not torch.equal(make_kernel(DEMO["kernels"][0], K, 1), make_kernel(DEMO["kernels"][0], K, 2))
    assert torch.equal(make_kernel(DEMO["kernels"][2], K, 1), make_kernel(DEMO["kernels"][2], K, 2))


@pytest.mark.parametrize("kspec", DEMO["kernels"] + [{"name": "zernike", "generator": "diffraction"}])
@pytest.mark.parametrize("size", [5, 7])
def test_every_kernel_is_on_the_simplex_and_of_the_stated_size(kspec, size):
    for seed in (0, 1):
        h = make_kernel(kspec, size, seed)
        assert tuple(h.shape) == (size, size)
        assert (h >= 0).all()
        assert float(h.sum()) == pytest.approx(1.0, abs=1e-9)


def test_testset_cases_are_images_times_kernel_families():
    ts = make_testset(_spec(n_images=2), DATA)
    assert list(ts.case) == list(range(4))
    assert list(ts.kernel_family) == [DEMO["kernels"][0]["name"]] * 2 + [DEMO["kernels"][1]["name"]] * 2
    assert list(ts.image) == [0, 1, 0, 1]
    assert ts.source[0] == ts.source[2] and ts.source[0] != ts.source[1]  # every image under every family
    x, y, h = tensors_of(ts)
    assert tuple(x.shape) == tuple(y.shape) == (4, 1, 32, 32) and tuple(h.shape) == (4, K, K)
    assert (ts.kernel_size == K).all() and (ts.sigma_y == DEMO["sigma_y"]).all()
    assert x.std(dim=(1, 2, 3)).min() >= DEMO["min_crop_std"]  # the spec's crop-contrast floor


def test_circular_testset_y_is_the_circular_blur_of_x_plus_noise_of_sigma_y():
    sigma = 0.02
    ts = make_testset(_spec(n_images=2, sigma_y=sigma), DATA)
    x, y, h = (t.numpy() for t in tensors_of(ts))
    residuals = []
    for i in range(len(ts)):
        blurred = ndi.convolve(x[i, 0], h[i], mode="wrap")  # circular convolution, kernel centred at k // 2
        r = y[i, 0] - blurred
        assert abs(r.mean()) < 4 * sigma / 32  # zero-mean noise (4 standard errors)
        assert r.std() == pytest.approx(sigma, rel=0.15)
        # white and independent of the image: no blur of x is left in the residual
        assert abs(np.corrcoef(r.ravel(), blurred.ravel())[0, 1]) < 0.15
        residuals.append(r)
    assert not np.allclose(residuals[0], residuals[1])  # a fresh noise draw per case
    # a noiseless spec gives exactly the blur (up to FFT rounding)
    ts0 = make_testset(_spec(sigma_y=0.0), DATA)
    x0, y0, h0 = (t.numpy() for t in tensors_of(ts0))
    np.testing.assert_allclose(y0[0, 0], ndi.convolve(x0[0, 0], h0[0], mode="wrap"), atol=1e-12)


def test_whole_testset_y_is_the_photograph_blurred_whole_then_cropped():
    ts = make_testset(_spec(boundary="whole", sigma_y=0.0), DATA)
    photos = load_photographs(DATA["photographs"]["heldout"], DATA["downscale"])
    x, y, h = (t.numpy() for t in tensors_of(ts))
    for i, source in enumerate(ts.source):
        name, row, col = re.fullmatch(r"(.+)@(\d+),(\d+)", source).groups()
        row, col = int(row), int(col)
        photo = np.asarray(photos[name], dtype=np.float64)
        np.testing.assert_allclose(x[i, 0], photo[row : row + 32, col : col + 32], atol=1e-7)
        whole = ndi.convolve(photo, h[i], mode="mirror")  # the margin keeps the padding out of the crop
        np.testing.assert_allclose(y[i, 0], whole[row : row + 32, col : col + 32], atol=1e-6)
        circular = ndi.convolve(x[i, 0], h[i], mode="wrap")
        assert np.abs(y[i, 0] - circular).max() > 1e-3  # not the circular model: real content at the borders


# ------------------------------------------------------------------------------------------ metrics
def _numpy_aligned_psnr(x_hat, x, m):
    """max over |shift| ≤ m of 10 log10(1 / MSE) on the interior (border of m), data range 1."""
    H, W = x.shape[-2:]
    ref = x[..., m : H - m, m : W - m]
    best = -np.inf
    for i in range(-m, m + 1):
        for j in range(-m, m + 1):
            mse = np.mean((x_hat[..., m + i : H - m + i, m + j : W - m + j] - ref) ** 2)
            best = max(best, 10 * np.log10(1.0 / mse))
    return best


def _noisy(x, amount=0.03, seed=0):
    g = torch.Generator().manual_seed(seed)
    return x + amount * torch.randn(x.shape, generator=g, dtype=DT)


def test_evaluate_of_the_truth_is_perfect(testset):
    x, _, h = tensors_of(testset)
    ev = evaluate(x, h, x, h)
    assert len(ev) == len(x)
    assert np.isinf(ev.psnr).all() and (ev.psnr > 0).all()
    np.testing.assert_allclose(ev.ssim, 1.0, atol=1e-12)
    np.testing.assert_allclose(ev.kernel_error, 0.0, atol=1e-7)
    np.testing.assert_allclose(ev.kernel_mse, 0.0, atol=1e-14)
    np.testing.assert_allclose(ev.mnc, 1.0, atol=1e-12)
    np.testing.assert_allclose(ev.haarpsi, 1.0, atol=1e-4)
    assert not ev.no_blur.any()


def test_evaluate_psnr_and_ssim_match_independent_formulas(testset):
    x, _, h = tensors_of(testset)
    x_hat = _noisy(x)
    ev = evaluate(x_hat, None, x, h)
    m = K // 2
    for b in range(len(x)):
        xh, xb = x_hat[b].numpy(), x[b].numpy()
        ind = _numpy_aligned_psnr(xh, xb, m)
        assert ev.psnr[b] == pytest.approx(ind, abs=1e-9)
        zero_shift = 10 * np.log10(1 / np.mean((xh - xb)[:, m:-m, m:-m] ** 2))
        assert ind == pytest.approx(zero_shift, abs=1e-9)  # independent noise: the best shift is none
        # SSIM: Wang et al. as scikit-image, Gaussian window σ = 1.5, population covariances, range 1, on
        # the interior, x̂ clipped to [0, 1]
        ref = structural_similarity(np.clip(xh[:, m:-m, m:-m], 0, 1), xb[:, m:-m, m:-m], gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0)  # fmt: skip
        assert ev.ssim[b] == pytest.approx(ref, abs=1e-9)
    # no kernel estimate: kernel metrics NaN, no-blur flag False
    assert ev[["kernel_mse", "kernel_error", "mnc"]].isna().all().all() and not ev.no_blur.any()


@pytest.mark.parametrize("shift", [(1, 0), (0, -2), (3, -3), (-2, 1)])
def test_evaluate_is_invariant_to_shifts_within_the_kernel_half_size(testset, shift):
    x, _, h = tensors_of(testset)
    x_hat = _noisy(x, seed=1)
    base = evaluate(x_hat, None, x, h)
    moved = evaluate(torch.roll(x_hat, shift, (-2, -1)), None, x, h)
    np.testing.assert_allclose(moved.psnr, base.psnr, rtol=0, atol=1e-9)
    np.testing.assert_allclose(moved.ssim, base.ssim, rtol=0, atol=1e-9)
    np.testing.assert_allclose(moved.haarpsi, base.haarpsi, rtol=0, atol=1e-5)
    # a shift beyond the half-size is not forgiven
    far = evaluate(torch.roll(x_hat, (K, 0), (-2, -1)), None, x, h)
    assert (far.psnr < base.psnr - 1).all()


def test_evaluate_dirac_kernel_is_no_blur_with_closed_form_kernel_metrics(testset):
    x, _, h = tensors_of(testset)
    ev = evaluate(x, _dirac(K, len(h)), x, h)
    assert ev.no_blur.all()
    for b in range(len(h)):
        hb = h[b].numpy()
        # ‖δ_s − h‖² = ‖h‖² + 1 − 2 h[s], smallest at the largest entry of h
        ke = math.sqrt((hb**2).sum() + 1 - 2 * hb.max())
        assert ev.kernel_error[b] == pytest.approx(ke, abs=1e-9)
        assert ev.kernel_mse[b] == pytest.approx(ke**2 / K**2, abs=1e-12)
        assert ev.mnc[b] == pytest.approx(hb.max() / np.linalg.norm(hb), abs=1e-9)
    # the true kernel off-centre by a pixel (on a larger canvas): aligned error 0, MNC 1, not no-blur
    moved = torch.zeros(len(h), K + 2, K + 2, dtype=DT)
    moved[:, 2 : K + 2, 1 : K + 1] = h
    ev2 = evaluate(x, moved, x, h)
    assert not ev2.no_blur.any()
    np.testing.assert_allclose(ev2.kernel_error, 0.0, atol=1e-7)
    np.testing.assert_allclose(ev2.mnc, 1.0, atol=1e-9)


# ------------------------------------------------------------------------------------------ run_method
class ToyPrior:
    """Counts its own calls (ground truth for the harness's NFE) and answers zeros."""

    marker = "toy-prior"

    def __init__(self):
        self.calls = 0

    def score(self, x, sigma):
        self.calls += x.shape[0]
        return torch.zeros_like(x)

    def grad_potential(self, x):
        self.calls += x.shape[0]
        return torch.zeros_like(x)

    def __call__(self, x):
        self.calls += x.shape[0]
        return x

    def fingerprint(self):
        return "toy"


def test_run_method_counts_every_prior_and_denoiser_evaluation(register):
    seen = {}

    @register("test-harness-nfe", needs=("prior", "denoiser"))
    def nfe_method(problem, context, *, n_score=3, n_grad=2, n_denoise=4):
        seen["marker"] = context.prior.marker  # other attributes pass through to the wrapped prior
        for _ in range(n_score):
            context.prior.score(problem.y, 1.0)
        for _ in range(n_grad):
            context.prior.grad_potential(problem.y)
        for _ in range(n_denoise):
            context.denoiser(problem.y)
        context.prior.score(problem.y[:1], 1.0)  # a batch of one counts one
        return Estimate(problem.y.clone(), None)

    prior, denoiser = ToyPrior(), ToyPrior()
    y = torch.rand(3, 1, 16, 16, dtype=DT)
    est, cost = run_method("test-harness-nfe", Problem(y, 0.01, K), Context(prior=prior, denoiser=denoiser))
    assert seen["marker"] == "toy-prior"
    assert prior.calls == 3 * (3 + 2) + 1 and denoiser.calls == 3 * 4
    assert cost.nfe == prior.calls + denoiser.calls == 28
    assert cost.wall_s >= 0 and cost.peak_memory_mb > 0
    # the hyper-parameters change the count by exactly what they ask for
    prior2 = ToyPrior()
    _, cost2 = run_method("test-harness-nfe", Problem(y, 0.01, K), Context(prior=prior2, denoiser=ToyPrior()),
                          {"n_score": 0, "n_grad": 1, "n_denoise": 0})  # fmt: skip
    assert cost2.nfe == 3 * 1 + 1 == prior2.calls
    # a prior the method needs but the context lacks is an error naming it
    with pytest.raises(ValueError, match="'denoiser'"):
        run_method("test-harness-nfe", Problem(y, 0.01, K), Context(prior=ToyPrior()))


def test_run_method_rejects_an_estimate_of_the_wrong_shape(register):
    @register("test-harness-badshape")
    def bad(problem, context):
        return Estimate(problem.y[..., :-1], None)

    with pytest.raises(ValueError, match="shape"):
        run_method("test-harness-badshape", Problem(torch.rand(1, 1, 8, 8), 0.0, 3), Context())
    with pytest.raises(KeyError, match="test-harness-nowhere"):
        run_method("test-harness-nowhere", Problem(torch.rand(1, 1, 8, 8), 0.0, 3), Context())


def test_run_on_testset_nfe_is_per_image(testset, register):
    @register("test-harness-nfe-per-image", needs=("prior",))
    def per_image(problem, context, *, n=5):
        for _ in range(n):
            context.prior.score(problem.y, 1.0)
        return Estimate(problem.y.clone(), None)

    prior = ToyPrior()
    runs, _ = run_on_testset("toy", "test-harness-nfe-per-image", {"n": 5}, testset, Context(prior=prior))
    assert (runs.nfe == 5).all() and prior.calls == 5 * len(testset)


def test_only_reference_methods_see_the_true_kernel(testset, register):
    lent = {}

    def recorder(key):
        def fn(problem, context):
            lent[key] = context.true_kernel
            return Estimate(problem.y.clone(), None)

        return fn

    register("test-harness-blind")(recorder("blind"))
    register("test-harness-reference", reference=True)(recorder("reference"))
    ctx = Context()
    run_on_testset("b", "test-harness-blind", {}, testset, ctx)
    run_on_testset("r", "test-harness-reference", {}, testset, ctx)
    assert lent["blind"] is None  # although run_on_testset builds its context with the true kernels
    truth = torch.as_tensor(np.stack(testset.kernel.to_numpy())).reshape(-1, K, K)
    assert torch.equal(lent["reference"], truth)
    assert ctx.true_kernel is None  # the caller's context is not changed
    # run_method directly: a blind method handed the truth still does not see it
    run_method("test-harness-blind", Problem(torch.rand(2, 1, 8, 8), 0.0, K), Context(true_kernel=truth))
    assert lent["blind"] is None


def _benchmark_seeds():
    """benchmark_seeds of workflow/rules/common.smk (plain Python), with its BENCHMARK global."""
    src = (REPO / "workflow/rules/common.smk").read_text()
    body = re.search(r"^def benchmark_seeds\(.*?(?=^\S)", src, re.S | re.M).group(0)
    ns = {"BENCHMARK": {"seeds": [0, 1, 2], "methods": {}}}
    exec(body, ns)
    return ns


def test_stochastic_methods_run_once_per_seed_deterministic_ones_once(testset, register):
    @register("test-harness-stochastic", stochastic=True)
    def stochastic(problem, context, *, amount=0.05):
        g = torch.Generator().manual_seed(problem.seed)
        return Estimate(problem.y + amount * torch.randn(problem.y.shape, generator=g, dtype=DT), None)

    @register("test-harness-deterministic")
    def deterministic(problem, context):
        return Estimate(problem.y.clone(), None)

    ns = _benchmark_seeds()
    ns["BENCHMARK"]["methods"] = {"s": {"method": "test-harness-stochastic"},
                                  "d": {"method": "test-harness-deterministic"}}  # fmt: skip
    seeds_s = ns["benchmark_seeds"](type("W", (), {"method": "s"}))
    seeds_d = ns["benchmark_seeds"](type("W", (), {"method": "d"}))
    assert seeds_s == [0, 1, 2] and seeds_d == [0]

    runs, est = run_on_testset("s", "test-harness-stochastic", {}, testset, Context(), seeds=seeds_s)
    assert len(runs) == len(est) == 3 * len(testset)
    assert sorted(runs.groupby("seed").size().items()) == [(s, len(testset)) for s in seeds_s]
    for _, by_case in runs.groupby("case"):
        assert by_case.psnr.nunique() == 3  # each seed its own result
    images = {s: np.stack(est[est.seed == s].estimate.to_numpy()) for s in seeds_s}
    assert not np.allclose(images[0], images[1]) and not np.allclose(images[1], images[2])
    again, _ = run_on_testset("s", "test-harness-stochastic", {}, testset, Context(), seeds=[1])
    np.testing.assert_array_equal(again.psnr.to_numpy(), runs[runs.seed == 1].psnr.to_numpy())  # seeded
    runs_d, _ = run_on_testset("d", "test-harness-deterministic", {}, testset, Context(), seeds=seeds_d)
    assert len(runs_d) == len(testset) and (runs_d.seed == 0).all()


class _Counter:
    """A resumable loop (prior_landscape.runs.Loop) whose state is the number of steps taken."""

    def __init__(self):
        self.taken = 0

    def step(self, k):
        self.taken += 1

    def record(self, k):
        return {"k": k}

    def state_dict(self):
        return {"taken": self.taken}

    def load_state_dict(self, state):
        self.taken = state["taken"]


def test_each_run_of_a_job_resumes_from_its_own_state(testset, register, tmp_path, caplog):
    """Seeds × batches of one job, each with its own state file: a job killed in its last run resumes
    there and reads the runs before it back finished (no step taken again, no foreign-state warning);
    the files are listed for clean-up."""
    from prior_landscape.methods.benchmark import run_states
    from prior_landscape.runs import RunOptions, drive

    steps, kill = [], {"at": (1, 5)}  # kill seed 1's run at its 5th step

    @register("test-harness-resumable", stochastic=True)
    def resumable(problem, context, *, n=8):
        loop = _Counter()

        def progress(k, rec):
            if (problem.seed, k) == kill["at"]:
                raise KeyboardInterrupt("killed")

        opts = RunOptions(state_path=context.options.state_path, checkpoint_every=2, progress=progress)
        res = drive(loop, n, kind="test", fingerprint=f"seed {problem.seed}", options=opts)
        steps.append((problem.seed, res.resumed_from, loop.taken))
        return Estimate(problem.y.clone(), None)

    state = tmp_path / "m.state.pt"
    ctx = Context(options=RunOptions(state_path=state))
    with pytest.raises(KeyboardInterrupt):
        run_on_testset("m", "test-harness-resumable", {}, testset, ctx, seeds=[0, 1], batch_size=1)
    assert steps == [(0, 0, 8), (0, 0, 8)]  # seed 0's two batches (cases 0 and 1) finished
    files = [p.name for p in run_states(state)]
    assert files == ["m.state.seed0.case0.pt", "m.state.seed0.case1.pt", "m.state.seed1.case0.pt"], files
    steps.clear()
    kill["at"] = None
    with caplog.at_level("WARNING"):
        runs, _ = run_on_testset("m", "test-harness-resumable", {}, testset, ctx, seeds=[0, 1], batch_size=1)
    # seed 0 read back finished (8 of 8), seed 1's first batch resumed at its checkpoint 4, its second afresh
    assert steps == [(0, 8, 8), (0, 8, 8), (1, 4, 8), (1, 0, 8)], steps
    assert "another run" not in caplog.text and len(runs) == 2 * len(testset)
    assert len(run_states(state)) == 4 and not state.exists()


def test_a_method_added_as_the_readme_says_runs_with_its_hyper_parameters(register):
    received = []

    @register("test-harness-readme")
    def my_method(problem: Problem, context: Context, *, alpha=1.0, n_iter=3) -> Estimate:
        """A toy deconvolution: y itself, the Dirac kernel."""
        received.append({"alpha": alpha, "n_iter": n_iter, "shape": tuple(problem.y.shape),
                         "sigma_y": problem.sigma_y, "kernel_size": problem.kernel_size})  # fmt: skip
        return Estimate(problem.y.clone(), _dirac(problem.kernel_size, len(problem.y)), converged=True, note="toy")

    assert METHODS["test-harness-readme"].description == "A toy deconvolution: y itself, the Dirac kernel."
    ts = make_testset(_spec(kernels=DEMO["kernels"][:1]), DATA)  # a 1-image test set
    entry = {"method": "test-harness-readme", "alpha": 0.25, "n_iter": 7}  # its benchmark.methods entry
    x, y, h = tensors_of(ts)
    context, hyper = method_context(entry, x.shape[1:], float(ts.sigma_y.iloc[0]))
    assert hyper == {"alpha": 0.25, "n_iter": 7}
    runs, estimates = run_on_testset("my-entry", entry["method"], hyper, ts, context, seeds=[0])
    assert received == [{"alpha": 0.25, "n_iter": 7, "shape": (1, 1, 32, 32), "sigma_y": DEMO["sigma_y"],
                         "kernel_size": K}]  # fmt: skip
    assert len(runs) == len(estimates) == 1
    r = runs.iloc[0]
    assert (r.method, r.registered, r.seed, r.case, r.converged, r.note) == ("my-entry", entry["method"], 0, 0,
                                                                             True, "toy")  # fmt: skip
    perceptual = {"lpips_alex", "lpips_vgg", "fid"}  # paper scale only (a job of their own: test_perceptual.py)
    assert set(METRICS) - perceptual <= set(runs.columns) and not perceptual & set(runs.columns)
    assert r.psnr == pytest.approx(_numpy_aligned_psnr(y[0].numpy(), x[0].numpy(), K // 2), abs=1e-6)
    assert bool(r.no_blur) and r.nfe == 0
    np.testing.assert_allclose(estimates.estimate.iloc[0], y[0].flatten().numpy(), atol=1e-6)  # float32 store
    np.testing.assert_array_equal(estimates.kernel_estimate.iloc[0], _dirac(K, 1).flatten().numpy())


# ------------------------------------------------------------------------------------------ the table
def _runs_table() -> pd.DataFrame:
    """Three methods, three cases: a deterministic blind one, a stochastic blind one (3 seeds), a reference."""
    rows = []

    def add(name, seed, psnr, kernel_error, no_blur, converged):
        for case in range(3):
            rows.append({"method": name, "case": case, "seed": seed, "psnr": psnr[case], "ssim": psnr[case] / 100,
                         "haarpsi": 0.5, "kernel_error": kernel_error[case], "mnc": 1 - kernel_error[case],
                         "no_blur": no_blur[case], "wall_s": 1.0 + case, "nfe": 10.0 * case,
                         "converged": converged[case]})  # fmt: skip

    add("det", 0, [20.0, 22.0, 30.0], [0.1, 0.2, 0.3], [True, False, False], [True, False, None])
    add("sto", 0, [24.0, 25.0, 26.0], [0.3, 0.4, 0.5], [False] * 3, [None] * 3)
    add("sto", 1, [23.0, 23.5, 40.0], [0.3, 0.4, 0.5], [True, True, False], [None] * 3)
    add("sto", 2, [26.0, 27.0, 1.0], [0.3, 0.6, 0.5], [False] * 3, [None] * 3)
    add("ref", 0, [40.0, 41.0, 42.0], [0.0, 0.0, 0.01], [False] * 3, [None] * 3)
    return pd.DataFrame(rows)


METHOD_ENTRIES = {
    "det": {"method": "levin-map-k"},  # blind, deterministic
    "ref": {"method": "wiener"},  # reference: sees the true kernel
    "sto": {"method": "blind-dps"},  # blind, stochastic
}


def test_benchmark_table_medians_over_cases_and_mean_std_over_seeds():
    assert not METHODS["levin-map-k"].reference and METHODS["wiener"].reference
    assert METHODS["blind-dps"].stochastic and not METHODS["blind-dps"].reference
    table = benchmark_table(_runs_table(), METHOD_ENTRIES).set_index("method")
    det, sto, ref = table.loc["det"], table.loc["sto"], table.loc["ref"]
    assert (det.runs, det.seeds, sto.runs, sto.seeds) == (3, 1, 9, 3)
    assert det.psnr == 22.0 and np.isnan(det.psnr_std)  # the median over cases, one seed: no spread
    per_seed = np.array([25.0, 23.5, 26.0])  # medians over cases of seeds 0, 1, 2
    assert sto.psnr == pytest.approx(per_seed.mean(), abs=1e-12)
    assert sto.psnr_std == pytest.approx(per_seed.std(ddof=1), abs=1e-12)
    assert sto.kernel_error == pytest.approx(np.mean([0.4, 0.4, 0.5]), abs=1e-12)
    assert det.wall_s == 2.0 and det.nfe == 10.0 and ref.psnr == 41.0
    # the no-blur rate is the share of cases at the Dirac (not the median of the flags)
    assert det.no_blur == pytest.approx(1 / 3, abs=1e-12)
    assert sto.no_blur == pytest.approx(np.mean([0.0, 2 / 3, 0.0]), abs=1e-12)
    assert det.converged == "1/3" and sto.converged == ""


def test_benchmark_table_marks_the_best_blind_method_never_a_reference_nor_a_reported_row():
    reported = [{"method": "BlindDPS (paper's table)", "psnr": 50.0, "ssim": 0.99}]
    table = benchmark_table(_runs_table(), METHOD_ENTRIES, reported)
    assert list(table.method) == ["det", "sto", "ref", "BlindDPS (paper's table)"]  # blind, reference, reported
    assert list(table.kind) == ["blind", "blind", "reference", "reported"]
    best = lambda col: list(table.method[table[f"{col}_best"] == True])  # noqa: E712, E731
    assert best("psnr") == ["sto"]  # 24.8 dB: the reference's 41 dB and the reported 50 dB are not candidates
    assert best("ssim") == ["sto"]
    assert best("kernel_error") == ["det"]  # lower is better; the reference's 0.0 is not a candidate
    assert best("mnc") == ["det"]
    assert "no_blur_best" not in table and "wall_s_best" not in table and "nfe_best" not in table
    rep = table.iloc[-1]
    assert rep.psnr == 50.0 and np.isnan(rep.kernel_error) and pd.isna(rep.get("runs"))  # only its own numbers
    assert table.iloc[:3].psnr.max() < 50.0  # and never folded into a measured row

    out = format_table(table).set_index("method")
    assert out.loc["sto", "PSNR (dB)"] == f"{24.833333333:.2f} ± {np.std([25.0, 23.5, 26.0], ddof=1):.2g} ★"
    assert out.loc["det", "PSNR (dB)"] == "22.00"  # one seed: no ±, not the best
    assert out.loc["det", "kernel error"].endswith("★") and not out.loc["sto", "kernel error"].endswith("★")
    assert "★" not in "".join(map(str, out.loc["ref"])) + "".join(map(str, out.loc["BlindDPS (paper's table)"]))
    assert out.loc["BlindDPS (paper's table)", "PSNR (dB)"] == "50.00"
    assert out.loc["BlindDPS (paper's table)", "kind"] == "reported"


def test_benchmark_table_with_one_blind_method_still_marks_it():
    runs = _runs_table()
    table = benchmark_table(runs[runs.method == "det"], {"det": METHOD_ENTRIES["det"]})
    assert format_table(table).iloc[0]["PSNR (dB)"] == "22.00 ★"
