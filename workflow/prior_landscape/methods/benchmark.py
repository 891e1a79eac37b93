"""The benchmark's data, runs and metrics: every method on the same images, kernels, noise and metrics.

* :func:`make_testset` draws a dataset's test cases once from its seed — images × kernel
  families — and returns them as one table (sharp image, kernel, blurry image, noise level):
  an artefact every method reads, so all see the same cases (neither peer's released code fixes
  its test set).
* :func:`run_on_testset` runs one configured method on every case of a test set through
  :func:`~prior_landscape.methods.base.run_method` (stochastic methods once per seed) and
  :func:`evaluate` scores each estimate.
* Metrics (:func:`evaluate`): PSNR and SSIM (Wang et al.) of x̂ after the best integer shift
  within the kernel's half-size, on the interior (blind estimates are defined up to a shift;
  borders carry the boundary mismatch); HaarPSI (deepinv, no weights); for kernel estimates the
  kernel MSE (on the true kernel's support, after alignment), the aligned ℓ² kernel error, MNC,
  and the no-blur flag (the estimate within ``collapse_tol`` of the Dirac). At paper scale
  :func:`perceptual_scores` adds LPIPS (AlexNet and VGG backbones, labelled) per case and FID per
  seed (``prior_landscape.perceptual``; weights from the download rules).

Real blur (``pairs`` in place of ``kernels``): RealBlur-J crops and Köhler shots, each blurry image
against its sharp reference (:func:`real_pairs`). No kernel is known: kernel error, kernel MSE and MNC
are NaN, the references that need the true kernel do not run on them
(:func:`~prior_landscape.methods.base.MethodSpec.needs_true_kernel`), and the no-blur flag — which
needs only the estimate — is kept.

Kernel generators of a dataset's ``kernels`` entries: ``motion`` (deepinv's Gaussian-process
camera shake), ``random_walk`` (the peers' trajectory model), ``gaussian`` (FWHM θ, the landscape
family) and ``diffraction`` (a Zernike PSF).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prior_landscape.inverse.operators import blurred_crops, fft_blur
from prior_landscape.methods.base import METHODS, Context, Problem, run_method
from prior_landscape.metrics import aligned_psnr, collapse_distance, kernel_error, mnc, ssim
from prior_landscape.runs import RunOptions

__all__ = ["make_kernel", "make_testset", "real_pairs", "n_cases", "methods_on", "evaluate", "align",
           "perceptual_scores", "run_on_testset", "run_options", "run_states", "testset_tensors"]  # fmt: skip

DT = torch.float64


def make_kernel(spec: dict, size: int, seed: int) -> torch.Tensor:
    """A (size, size) kernel of the generator ``spec["generator"]`` (module docstring), seeded."""
    from prior_landscape.inverse.kernels import ZernikeKernel, random_motion_kernel, random_walk_motion_kernel
    from prior_landscape.landscape.families import kernel

    gen = spec["generator"]
    if gen == "motion":
        return random_motion_kernel(size, seed, spec.get("length_scale", 0.3), spec.get("sigma", 0.5))
    if gen == "random_walk":
        return random_walk_motion_kernel(size, float(spec.get("intensity", 0.5)), seed)
    if gen == "gaussian":
        return kernel("gaussian", float(spec["fwhm"]), size)
    if gen == "diffraction":
        g = torch.Generator().manual_seed(seed)
        theta = spec.get("amplitude", 0.2) * (2 * torch.rand(5, generator=g, dtype=DT) - 1)
        return (
            ZernikeKernel(size, fc=spec.get("fc", 0.25), pupil_size=spec.get("pupil_size", 128)).kernel(theta).detach()
        )
    raise ValueError(f"unknown kernel generator {gen!r}: use motion, random_walk, gaussian or diffraction")


def n_cases(spec: dict) -> int:
    """A dataset's number of cases: every image under every kernel entry, or every real pair."""
    return int(spec["n_images"]) * len(spec.get("kernels", [None]))


def methods_on(dataset: str, benchmark: dict) -> dict:
    """The method entries (``benchmark.methods``) run on ``dataset``: all, except entries whose ``datasets``
    list omits it (a method whose prior fits some datasets only, e.g. the peers' face and animal priors at
    paper scale) and, on real blur (``pairs``: no kernel is known), the references that need the true
    kernel. The workflow's jobs, the claims table and the plan all ask this function."""
    datasets = benchmark.get("datasets", {})
    real = "pairs" in datasets.get(dataset, {})
    return {
        m: e
        for m, e in benchmark.get("methods", {}).items()
        if dataset in e.get("datasets", datasets) and not (real and METHODS[e["method"]].needs_true_kernel)
    }


#: the shots of the Köhler et al. 2012 benchmark, in the order :func:`real_pairs` draws from
KOHLER_SHOTS = [(image, trajectory) for image in range(1, 5) for trajectory in range(1, 13)]


def real_pairs(pairs: dict, n: int, size: int, seed: int, resource_root) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(sharp, blurry, ids) of ``n`` real pairs (``pairs.reader``): ``realblur`` — RealBlur-J test pairs,
    one random ``size``² crop each (:func:`~prior_landscape.io.datasets.read_realblur_pairs`); ``kohler`` —
    Köhler shots drawn from the 48 by ``seed`` (all 48 for n = 48), the centre ``size``² crop of the blurry
    shot against that of its sharp frame ``pairs.frames`` (default the middle one; the benchmark's own
    protocol takes the best of ~199 frames, not done here)."""
    from prior_landscape.io.datasets import read_kohler, read_realblur_pairs, select_indices

    channels = int(pairs.get("channels", 3))
    if pairs["reader"] == "realblur":
        blurry, sharp, ids = read_realblur_pairs(resource_root, n=n, size=size, seed=seed, channels=channels)
        return sharp, blurry, ids
    if pairs["reader"] == "kohler":
        if n > len(KOHLER_SHOTS):
            raise ValueError(f"kohler: {n} shots requested but the benchmark has {len(KOHLER_SHOTS)}")
        shots = [KOHLER_SHOTS[i] for i in sorted(select_indices(len(KOHLER_SHOTS), n, seed))]
        read = [read_kohler(resource_root, image=i, trajectory=t, crop=size, channels=channels,
                            frames=pairs.get("frames", "middle")) for i, t in shots]  # fmt: skip
        sharp, blurry = torch.stack([r["sharp"][0] for r in read]), torch.stack([r["blurry"] for r in read])
        return sharp, blurry, [r["id"] for r in read]
    raise ValueError(f"unknown pairs reader {pairs['reader']!r}: use realblur or kohler")


def _pair_rows(spec: dict, resource_root) -> list[dict]:
    """The cases of a real-blur dataset: one per pair, no kernel (``kernel`` None)."""
    size, k = int(spec["size"]), int(spec["kernel_size"])
    x, y, ids = real_pairs(spec["pairs"], int(spec["n_images"]), size, int(spec["seed"]), resource_root)
    if x.shape[-2:] != (size, size):
        raise ValueError(f"{spec['pairs']['reader']}: pairs of {tuple(x.shape[-2:])} px, expected {size}×{size}")
    family = spec["pairs"].get("name", "real blur")
    return [{"case": i, "image": i, "source": ids[i], "kernel_family": family, "sigma_y": float(spec["sigma_y"]),
             "channels": x.shape[1], "height": size, "width": size, "kernel_size": k,
             "sharp": x[i].to(DT).flatten().numpy(), "blurry": y[i].to(DT).flatten().numpy(), "kernel": None}
            for i in range(len(x))]  # fmt: skip


def make_testset(spec: dict, data: dict, *, images=None, resource_root="resources") -> pd.DataFrame:
    """The cases of one dataset (``benchmark.datasets.<name>``): ``n_images`` held-out images of side
    ``size`` (paper scale: the dataset's own), each blurred by one kernel of every ``kernels`` entry
    (seeded by dataset seed, image and entry), with noise ``sigma_y``; ``boundary`` ``circular`` (the
    methods' own model) or ``whole`` (the photograph blurred whole, then cropped). A dataset of real
    blur (``pairs``) has one case per pair, as read (no synthetic blur or noise; ``sigma_y`` is the
    noise level the methods assume)."""
    from prior_landscape.io.images import crop_positions, extract_crops, heldout_images, load_photographs

    if "pairs" in spec:
        return pd.DataFrame(_pair_rows(spec, resource_root))
    seed, size, k = int(spec["seed"]), int(spec["size"]), int(spec["kernel_size"])
    if spec.get("boundary", "circular") == "whole" and not images:
        photos = load_photographs(data["photographs"]["heldout"], data["downscale"])
        crops = crop_positions(photos, spec["n_images"], size, seed, margin=k, min_std=spec.get("min_crop_std", 0.0))
        x, sources = extract_crops(photos, crops).to(DT), [f"{c.image}@{c.row},{c.col}" for c in crops]
    else:
        x, sources = heldout_images(images, resource_root, data, spec["n_images"], seed, spec.get("min_crop_std", 0.0),
                                    size)  # fmt: skip
        x, crops = x.to(DT), None
    rows, g = [], torch.Generator().manual_seed(seed)
    for j, kspec in enumerate(spec["kernels"]):
        for i in range(len(x)):
            h = make_kernel(kspec, k, seed * 1000 + 100 * j + i)
            if crops is None:
                y = fft_blur(x[i : i + 1], h)
            else:
                y = blurred_crops(photos, [crops[i]], h, "reflect").to(DT)
            y = y + spec["sigma_y"] * torch.randn(y.shape, generator=g, dtype=DT)
            rows.append({"case": len(rows), "image": i, "source": sources[i], "kernel_family": kspec["name"],
                         "sigma_y": float(spec["sigma_y"]), "channels": x.shape[1], "height": x.shape[2],
                         "width": x.shape[3], "kernel_size": k, "sharp": x[i].flatten().numpy().astype(np.float64),
                         "blurry": y[0].flatten().numpy(), "kernel": h.flatten().numpy()})  # fmt: skip
    return pd.DataFrame(rows)


def testset_tensors(testset: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x̄, y, h̄) of a test set as tensors (N, C, H, W), (N, C, H, W), (N, k, k); h̄ None for real blur."""
    C, H, W, k = (int(testset[c].iloc[0]) for c in ("channels", "height", "width", "kernel_size"))
    stack = lambda col, shape: torch.as_tensor(np.stack(testset[col].to_numpy())).reshape(-1, *shape)  # noqa: E731
    known = testset.kernel.notna()
    if known.any() and not known.all():
        raise ValueError(f"a test set has true kernels for some cases only ({int(known.sum())} of {len(known)})")
    return stack("sharp", (C, H, W)), stack("blurry", (C, H, W)), stack("kernel", (k, k)) if known.all() else None


def _kernel_mse(k_hat: torch.Tensor, k: torch.Tensor) -> np.ndarray:
    """Mean squared error between the sum-normalised kernels after the alignment that minimises the ℓ²
    error (the aligned kernel error squared over the number of entries). Not comparable to BlindDPS's
    reported kernel MSE, computed on kernels saved as min–max normalised images."""
    return (kernel_error(k_hat, k).pow(2) / k[0].numel()).cpu().numpy()


def align(x_hat: torch.Tensor, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each estimate at the circular shift within ±m px that maximises its PSNR (the alignment of
    ``aligned_psnr``), and the sharp images, both cropped by m px: what SSIM, HaarPSI and LPIPS compare."""
    H, W = x.shape[-2:]
    interior = (slice(None), slice(None), slice(m, H - m), slice(m, W - m))
    shifts = [(i, j) for i in range(-m, m + 1) for j in range(-m, m + 1)]
    best = []
    for b in range(len(x)):
        cand = [torch.roll(x_hat[b : b + 1], (i, j), (-2, -1)) for i, j in shifts]
        errs = [float((c[interior] - x[b : b + 1][interior]).pow(2).mean()) for c in cand]
        best.append(cand[int(np.argmin(errs))])
    return torch.cat(best)[interior], x[interior]


def perceptual_scores(testset: pd.DataFrame, estimates: pd.DataFrame, lpips: dict, inception=None,
                      min_images: int = 1000) -> pd.DataFrame:  # fmt: skip
    """Paper scale: LPIPS per case and seed (``lpips``: backbone → :class:`~prior_landscape.perceptual.LPIPS`,
    after the alignment of :func:`align`), and FID per seed between the estimates and the sharp images
    (:class:`~prior_landscape.perceptual.InceptionFeatures`, whole images). FID from fewer than
    ``min_images`` images is not comparable with the seeds' (their 1000 or more): its value is NaN and
    ``fid_images`` says how many there were."""
    from prior_landscape.perceptual import frechet_distance

    x, _, _ = testset_tensors(testset)
    m = int(testset.kernel_size.iloc[0]) // 2
    by_case = {c: i for i, c in enumerate(testset.case.to_numpy())}
    rows = []
    sharp_features = inception(x) if inception is not None else None
    for seed, est in estimates.groupby("seed", sort=True):
        idx = np.array([by_case[c] for c in est.case])
        x_hat = torch.as_tensor(np.stack(est.estimate.to_numpy())).reshape(len(idx), *x.shape[1:]).to(x)
        out = pd.DataFrame({"case": est.case.to_numpy(), "method": est.method.to_numpy(), "seed": seed})
        aligned, sharp = align(x_hat, x[idx], m)
        for net, metric in lpips.items():
            out[f"lpips_{net}"] = metric(aligned, sharp)
        if inception is not None:
            n = len(idx)
            fid = frechet_distance(inception(x_hat), sharp_features[idx]) if n >= min_images else np.nan
            out["fid"], out["fid_images"] = fid, n
        rows.append(out)
    return pd.concat(rows, ignore_index=True)


def evaluate(x_hat, k_hat, x, h, collapse_tol: float = 0.05, kernel_size: int | None = None) -> pd.DataFrame:
    """One row of metrics per case (module docstring); kernel metrics NaN where no kernel was estimated
    or none is known (``h`` None: real blur, the shift search then spans ``kernel_size`` // 2)."""
    from deepinv.loss.metric import HaarPSI

    if h is None and kernel_size is None:
        raise ValueError("evaluate: without a true kernel, kernel_size sets the alignment's shift range")
    m = (h.shape[-1] if h is not None else kernel_size) // 2
    out = {"psnr": aligned_psnr(x_hat, x, m)}
    aligned, sharp = align(x_hat, x, m)
    out["ssim"] = ssim(aligned.clamp(0, 1), sharp).cpu().numpy()
    out["haarpsi"] = HaarPSI(norm_inputs="clip")(aligned.float(), sharp.float()).cpu().numpy()
    nan = np.full(len(x), np.nan)
    out.update(kernel_mse=nan, kernel_error=nan, mnc=nan, no_blur=np.zeros(len(x), dtype=bool))
    if k_hat is not None:  # the no-blur flag needs only the estimate; the other kernel metrics the truth too
        k_hat = k_hat.to(x_hat.device, DT)
        out["no_blur"] = (collapse_distance(k_hat) <= collapse_tol).cpu().numpy()
        if h is not None:
            h = h.to(k_hat)
            out.update(kernel_mse=_kernel_mse(k_hat, h), kernel_error=kernel_error(k_hat, h).cpu().numpy(),
                       mnc=mnc(k_hat, h).cpu().numpy())  # fmt: skip
    return pd.DataFrame(out)


def run_options(options: RunOptions | None, seed: int, first_case: int) -> RunOptions | None:
    """The run driver's options of one run of a job (a seed, a batch of cases from ``first_case``): its own
    state file beside the job's (``<job state stem>.seed<s>.case<c>.pt``), so that a job killed in its third
    run resumes there and reads its first two back finished — one shared file would hold another run's
    state (and a run would start afresh with a warning). :func:`run_states` lists them for clean-up."""
    if options is None or options.state_path is None:
        return options
    path = Path(options.state_path)
    return replace(options, state_path=path.with_name(f"{path.stem}.seed{seed}.case{first_case}{path.suffix}"))


def run_states(state_path: str | Path) -> list[Path]:
    """The state files :func:`run_options` derived from a job's ``state_path`` (to delete once it is done)."""
    path = Path(state_path)
    return sorted(path.parent.glob(f"{path.stem}.seed*.case*{path.suffix}"))


def run_on_testset(name: str, method: str, hyper: dict, testset: pd.DataFrame, context: Context, *,
                   seeds=(0,), collapse_tol: float = 0.05, batch_size: int | None = None,
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Run ``method`` (registered name) as configured entry ``name`` on every case, once per seed:
    returns the per-case metrics with the cost of each run, and the estimates (for the figures).

    The method sees a batch of cases at once: those of one noise level, and with ``batch_size`` those
    of one block of ``batch_size`` consecutive case numbers (``case // batch_size``, whatever other
    cases ``testset`` holds: a shard's cases run in the batches of the whole test set's run). A
    case's result may depend on its batch (a method stops when all of its batch have converged)."""
    x, y, h = testset_tensors(testset)
    k = int(testset.kernel_size.iloc[0])
    rows, images = [], []
    block = testset.case.to_numpy() // batch_size if batch_size else np.zeros(len(testset), dtype=np.int64)
    for seed in seeds:
        for (sigma_y, _), idx in testset.groupby(["sigma_y", block]).groups.items():
            idx = np.asarray(list(idx))
            truth = None if h is None else h[idx]
            options = run_options(context.options, seed, int(testset.case.iloc[idx[0]]))
            ctx = Context(prior=context.prior, denoiser=context.denoiser, device=context.device,
                          options=options, true_kernel=truth, extra=context.extra)  # fmt: skip
            problem = Problem(y[idx], float(sigma_y), k, int(seed))
            est, cost = run_method(method, problem, ctx, hyper)
            scores = evaluate(est.x.to(DT), est.kernel, x[idx], truth, collapse_tol, kernel_size=k)
            cases = testset.iloc[idx][["case", "image", "source", "kernel_family", "sigma_y"]].reset_index(drop=True)
            rows.append(cases.join(scores).assign(method=name, registered=method, seed=seed,
                                                  wall_s=cost.wall_s / len(idx), nfe=cost.nfe / len(idx),
                                                  peak_memory_mb=cost.peak_memory_mb, converged=est.converged,
                                                  note=est.note))  # fmt: skip
            k_flat = [None] * len(idx) if est.kernel is None else list(est.kernel.flatten(1).cpu().numpy())
            images.append(pd.DataFrame({"case": testset.case.to_numpy()[idx], "method": name, "seed": seed,
                                        "estimate": list(est.x.flatten(1).cpu().numpy().astype(np.float32)),
                                        "kernel_estimate": k_flat}))  # fmt: skip
    return pd.concat(rows, ignore_index=True), pd.concat(images, ignore_index=True)
