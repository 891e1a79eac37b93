"""The blind-deconvolution cases of P §5 and Appendix B (Figs. 11–15): data, kernels, runs, tables.

A case is one configuration entry of ``deblur`` (a :func:`deblur_setup` slice): its sharp
images x̄, blurry data y, true kernels h̄ (or none, for real shots without ground truth), the
kernel model, and the initialisations θ₀ it is run from ("large" / "small", P §5).

* ``zernike``: diffraction PSFs from five Zernike coefficients θ̄ (Figs. 11, 14), Algorithm 1
  from θ̄ + ε·sign θ̄ for each configured ε;
* ``simplex``: free kernels on the simplex (Figs. 12, 15), true kernels cycled over the images
  (diagonal motion, a seeded deepinv camera shake, diffraction PSFs), Algorithm 1 from the
  uniform ("large") and a Gaussian ("small") kernel;
* ``kohler``: Algorithm 2 (Douglas–Rachford with a denoiser) from the uniform kernel, on real
  shots of the Köhler benchmark (P Fig. 13: y the recorded blurry shot, x̄ the sharp reference
  frame, h̄ the ground-truth kernel when the manual resource is in place) or on the demo's
  stand-in (bundled photographs blurred whole by seeded motion kernels, then cropped).

Synthetic cases add noise σ_y to y (a real shot carries its own). Every initialisation of a
case runs in one batch (:func:`run_case`); :func:`case_tables` gives the trajectory, the
per-run metrics (PSNR, SSIM, kernel error, MNC, no-blur flag, before and after) and the images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from prior_landscape.inverse.algorithms import AlternatingSettings, DeblurResult, algorithm1, algorithm2
from prior_landscape.inverse.kernels import (
    SimplexKernel,
    ZernikeKernel,
    diagonal_motion_kernel,
    random_motion_kernel,
    simplex_initialisation,
    zernike_initialisation,
)
from prior_landscape.inverse.operators import fft_blur
from prior_landscape.metrics import aligned_psnr, centred_kernels, collapse_distance, kernel_error, mnc, psnr, ssim

__all__ = ["DeblurCase", "build_case", "run_case", "case_tables", "alternating_settings", "n_kohler_images"]

DT = torch.float64


@dataclass
class DeblurCase:
    name: str
    kind: str  # "zernike", "simplex" or "kohler"
    x: torch.Tensor  # (B, C, H, W) sharp images x̄
    y: torch.Tensor  # (B, C, H, W) blurry data
    h_bar: torch.Tensor | None  # (B, k, k) true kernels (None: unknown)
    model: object  # the kernel model (ZernikeKernel or SimplexKernel)
    inits: dict  # name → θ₀ of shape (B, *param_shape)
    sources: list[str]  # where each image comes from
    sigma_y: float
    theta_bar: torch.Tensor | None = None  # (B, P) Zernike coefficients of h̄
    image_ids: np.ndarray | None = None  # (B,) the images' numbers in the case (default 0 … B − 1)
    n_images: int | None = None  # the case's number of images (a shard holds some: :meth:`subset`)

    def __post_init__(self):
        self.image_ids = np.arange(len(self.x)) if self.image_ids is None else np.asarray(self.image_ids, np.int64)
        self.n_images = len(self.x) if self.n_images is None else int(self.n_images)

    def subset(self, units) -> DeblurCase:
        """The case's images numbered ``units`` (a shard's, prior_landscape.shards), keeping their numbers:
        their data, noise and initialisations are those of the whole case."""
        units = np.asarray(units, dtype=np.int64)
        i = torch.as_tensor(units, device=self.x.device)
        pick = lambda t: None if t is None else t[i.to(t.device)]  # noqa: E731
        return DeblurCase(
            self.name, self.kind, pick(self.x), pick(self.y), pick(self.h_bar), self.model,
            {n: pick(t) for n, t in self.inits.items()}, [self.sources[u] for u in units], self.sigma_y,
            pick(self.theta_bar), self.image_ids[units], self.n_images,
        )  # fmt: skip

    @property
    def size(self) -> int:
        return self.model.size

    def describe(self) -> str:
        """One line for the log: images, their sources, and how many true kernels are known."""
        known = 0 if self.h_bar is None else int(torch.isfinite(self.h_bar).flatten(1).all(1).sum())
        B, H, W = len(self.x), self.x.shape[-2], self.x.shape[-1]
        kernels = "none" if known == 0 else f"{known} of {B}"
        return (
            f"{self.name}: {B} images {H}×{W} ({', '.join(self.sources)}), {self.model.describe()['family']} "
            f"kernels {self.size}×{self.size}, σ_y = {self.sigma_y:g}; ground-truth kernels: {kernels}"
        )


def _zernike(setup, x, device):
    m, B = setup["model"], len(x)
    model = ZernikeKernel(m["kernel_size"], m["zernike_index"], m["fc"], m["pupil_size"], device=device)
    theta_bar = torch.tensor(m["theta_bar"], dtype=DT)[torch.arange(B) % len(m["theta_bar"])].to(device)
    inits = {name: zernike_initialisation(theta_bar, float(eps)) for name, eps in m["inits"].items()}
    return model, model.kernel(theta_bar).detach(), inits, theta_bar


def _simplex(setup, x, device):
    m, z, k = setup["model"], setup["zernike"], setup["model"]["kernel_size"]
    diffraction = ZernikeKernel(k, z["zernike_index"], z["fc"], z["pupil_size"])

    def true_kernel(spec):
        if spec["kind"] == "diagonal_motion":
            return diagonal_motion_kernel(k, spec.get("length"))
        if spec["kind"] == "motion":
            return random_motion_kernel(k, spec["seed"], spec.get("length_scale", 0.3), spec.get("sigma", 0.25))
        return diffraction.kernel(torch.tensor(spec["theta"], dtype=DT)).detach()

    h_bar = torch.stack([true_kernel(m["kernels"][i % len(m["kernels"])]) for i in range(len(x))])
    inits = {
        "large": simplex_initialisation(k, "large"),  # P: uniform vs Gaussian σ = 1.5 px
        "small": simplex_initialisation(k, "small", sigma=m["gaussian_sigma"]),
    }
    return SimplexKernel(k), h_bar.to(device), inits


def n_kohler_images(kohler: dict) -> int:
    """The Köhler case's number of images (configuration ``deblur.kohler``): its real shots (``data``),
    else the stand-in's photographs (one crop each). The workflow's units of the case (what its shards
    split) and the plan's items both ask this function."""
    return len(kohler["data"]["shots"]) if kohler.get("data") else len(kohler["photographs"])


def _kohler_shots(setup, resource_root, channels):
    """P Fig. 13: real camera shake (Köhler et al. 2012), centre crops of the shots."""
    from prior_landscape.io.datasets import read_kohler

    d = setup["model"]["data"]
    shots = [
        read_kohler(
            resource_root,
            image=int(i),
            trajectory=int(t),
            crop=d.get("crop", 512),
            channels=channels,
            frames=d.get("frames", "middle"),
        )
        for i, t in d["shots"]
    ]
    x = torch.stack([shot["sharp"][0] for shot in shots]).to(DT)  # x̄: the sharp reference frame
    y = torch.stack([shot["blurry"] for shot in shots]).to(DT)  # y: the real blurry shot, as recorded
    found = [shot.get("kernel") for shot in shots]
    h_bar = centred_kernels(found) if any(h is not None for h in found) else None  # h̄ unknown without kernels
    return x, y, h_bar, [f"kohler-{int(i)}-{int(t)}" for i, t in d["shots"]]


def _kohler_stand_in(setup, data):
    """One bundled photograph per image, blurred whole by a seeded deepinv motion kernel, then cropped."""
    from prior_landscape.inverse.operators import blurred_crops
    from prior_landscape.io.images import crop_positions, extract_crops, load_photographs

    m, k = setup["model"], setup["model"]["kernel_size"]
    size = m.get("size", data["crop_size"])
    photos = load_photographs(m["photographs"], data["downscale"])
    specs = crop_positions(photos, len(photos), size, m["seed"], margin=k, min_std=0.1)
    x = extract_crops(photos, specs).to(DT)
    h_bar = torch.stack(
        [
            random_motion_kernel(k, m["seed"] + i, m["motion"]["length_scale"], m["motion"]["sigma"])
            for i in range(len(specs))
        ]
    )
    if m["padding"] == "circular":
        y = fft_blur(x, h_bar)
    else:
        y = torch.cat([blurred_crops(photos, [c], h_bar[i], m["padding"]) for i, c in enumerate(specs)]).to(DT)
    return x, y, h_bar, [f"{c.image}@{c.row},{c.col}" for c in specs]


def build_case(
    setup: dict, data: dict, *, images=None, resource_root="resources", channels: int | None = None, device="cpu"
) -> DeblurCase:
    """The case a :func:`deblur_setup` slice describes (``data``: the configuration's ``data``; ``images``:
    the prior's dataset at paper scale; ``channels``: of the Köhler shots). Tensors on ``device``."""
    from prior_landscape.io.images import heldout_images

    kind, m, sigma_y = setup["kind"], setup["model"], float(setup["sigma_y"])
    theta_bar, real = None, kind == "kohler" and m.get("data") is not None
    if kind == "kohler":
        x, y, h_bar, sources = _kohler_shots(setup, resource_root, channels) if real else _kohler_stand_in(setup, data)
        model, inits, seed = (
            SimplexKernel(m["kernel_size"]),
            {"large": simplex_initialisation(m["kernel_size"])},
            m["seed"],
        )
        x, y, h_bar = x.to(device), y.to(device), None if h_bar is None else h_bar.to(device)
    else:  # paper scale: images of the prior's dataset (P: FFHQ-256); demo: textured held-out crops
        seed = setup["images"]["seed"]
        spec = setup["images"]
        x, sources = heldout_images(
            images, resource_root, data, spec["n"], seed, spec["min_crop_std"], spec.get("size")
        )
        x = x.to(device, DT)
        if kind == "zernike":
            model, h_bar, inits, theta_bar = _zernike(setup, x, device)
        else:
            model, h_bar, inits = _simplex(setup, x, device)
        y = fft_blur(x, h_bar)
    if not real:  # synthetic blur: add the noise σ_y (a real shot already carries its own)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=DT)
        y = y + sigma_y * noise.to(device)
    B = len(x)
    inits = {
        n: (t.expand(B, *t.shape) if t.dim() == len(model.param_shape) else t).to(device) for n, t in inits.items()
    }
    return DeblurCase(setup["case"], kind, x, y, h_bar, model, inits, sources, sigma_y, theta_bar)


def alternating_settings(setup: dict) -> AlternatingSettings:
    m = setup["model"]
    return AlternatingSettings(
        sigma_y=float(setup["sigma_y"]),
        n_iter=setup["n_iter"],
        n_inner=setup["n_inner"],
        gamma_x=m["gamma_x"],
        gamma_theta=m["gamma_theta"],
        reset_every=setup["reset_every"],
    )


def run_case(
    case: DeblurCase, settings: AlternatingSettings, *, prior=None, denoiser=None, options=None
) -> DeblurResult:
    """Every initialisation of ``case`` in one batch: Algorithm 1 with ``prior``, or Algorithm 2 with
    ``denoiser`` (q recorded along the runs where the prior's potential is exact)."""
    n = len(case.inits)
    theta0 = torch.cat(list(case.inits.values())).to(DT)
    y, h = case.y.repeat(n, 1, 1, 1), None if case.h_bar is None else case.h_bar.repeat(n, 1, 1)
    refs = dict(reference_kernel=h, reference_image=case.x.repeat(n, 1, 1, 1), options=options)
    if denoiser is not None:
        exact = prior.potential if prior is not None and prior.has_exact_potential else None
        return algorithm2(y, case.model, theta0, denoiser, settings, potential=exact, **refs)
    return algorithm1(y, case.model, theta0, prior, settings, **refs)


def denoiser_sigma(setup: dict) -> float:
    """σ of Algorithm 2's denoiser: configured, or ``auto`` = σ_y √γ_x (D ≈ prox of γ_x σ_y² q)."""
    m = setup["model"]
    spec = (m.get("denoiser") or {}).get("sigma", m["denoiser_sigma"])
    return float(setup["sigma_y"]) * math.sqrt(m["gamma_x"]) if spec == "auto" else float(spec)


def _flat(t: torch.Tensor) -> list:
    return list(t.reshape(len(t), -1).cpu().numpy().astype(np.float32))


def case_tables(case: DeblurCase, res: DeblurResult, collapse_tol: float) -> dict[str, pd.DataFrame]:
    """The artefacts of one case: ``trajectory`` (per run and record: data fit, ‖∇_θ f‖, q, kernel
    error, MNC, PSNR, the distance of ĥ to the family's no-blur kernel, ĥ and θ), ``metrics`` (per run:
    PSNR / SSIM of x̂ and of y, aligned PSNR, kernel error and MNC at the start and the end, the
    no-blur flag) and ``images`` (x̄, y, x̂ and the kernels)."""
    model, B, n = case.model, len(case.x), len(case.inits)
    k, flip, family = model.size, model.up_to_rotation, model.describe()["family"]
    smallest = model.smallest().to(case.x)
    ids, N = case.image_ids, case.n_images  # run of (initialisation i, image j): i·N + j, whatever the shard
    runs = pd.DataFrame(
        {
            "run": (np.arange(n)[:, None] * N + ids[None, :]).ravel(),
            "init": np.repeat(list(case.inits), B),
            "image": np.tile(ids, n),
            "source": case.sources * n,
        }
    )
    rep = lambda t: t.repeat(n, *([1] * (t.dim() - 1)))  # noqa: E731
    x_all, y_all, h_all = rep(case.x), rep(case.y), None if case.h_bar is None else rep(case.h_bar)
    traj = res.trajectory.rename(columns={"image": "run"})
    traj["run"] = runs.run.to_numpy()[traj.run.to_numpy()]  # the batch's run r is the r-th of ``runs``
    for col in ("q", "loss"):
        if col not in traj:
            traj[col] = np.nan
    traj = traj.merge(runs, on="run", how="left")
    kernels = res.kernels.reshape(-1, k, k)  # record-major, as the trajectory rows
    traj["collapse_distance"] = collapse_distance(kernels, smallest).cpu().numpy()
    traj["kernel"] = _flat(kernels)
    if case.theta_bar is not None:
        traj["theta"] = list(res.thetas.reshape(-1, *model.param_shape).cpu().numpy())
    traj.insert(0, "case", case.name)

    theta0 = torch.cat(list(case.inits.values()))
    h0, x_hat, h_hat = model.kernel(model.project(theta0)).detach(), res.x.detach(), res.kernel.detach()
    last = traj[traj.iteration == res.n_iter].sort_values("run")
    ssim_of = lambda a, b: ssim(a.float(), b.float()).double().cpu().numpy()  # noqa: E731
    if h_all is not None:
        known = dict(
            kernel_error=kernel_error(h_hat, h_all, flip=flip),
            kernel_error_init=kernel_error(h0, h_all, flip=flip),
            mnc=mnc(h_hat, h_all, flip=flip),
            mnc_init=mnc(h0, h_all, flip=flip),
            collapse_distance_true=collapse_distance(h_all, smallest),
        )
        known = {key: v.cpu().numpy() for key, v in known.items()}
    else:  # h̄ unknown (real shots without ground-truth kernels): the kernel metrics are NaN
        known = {
            c: np.full(n * B, np.nan)
            for c in ("kernel_error", "kernel_error_init", "mnc", "mnc_init", "collapse_distance_true")
        }
    metrics = runs.assign(
        case=case.name,
        method=res.method,
        family=family,
        sigma_y=case.sigma_y,
        n_iter=res.n_iter,
        psnr=psnr(x_hat, x_all).cpu().numpy(),
        ssim=ssim_of(x_hat, x_all),
        psnr_blurry=psnr(y_all, x_all).cpu().numpy(),
        ssim_blurry=ssim_of(y_all, x_all),
        psnr_aligned=aligned_psnr(x_hat, x_all, k // 2),
        psnr_blurry_aligned=aligned_psnr(y_all, x_all, k // 2),
        kernel_error=known["kernel_error"],
        kernel_error_init=known["kernel_error_init"],
        mnc=known["mnc"],
        mnc_init=known["mnc_init"],
        collapse_distance=collapse_distance(h_hat, smallest).cpu().numpy(),
        collapse_distance_init=collapse_distance(h0, smallest).cpu().numpy(),
        collapse_distance_true=known["collapse_distance_true"],
        data_fit=last.data_fit.to_numpy(),
        q=last.q.to_numpy(),
        loss=last.loss.to_numpy(),
    )
    metrics["no_blur"] = metrics.collapse_distance <= collapse_tol
    if res.denoised is not None:
        metrics["psnr_denoised"] = psnr(res.denoised, x_all).cpu().numpy()

    h_true = h_all if h_all is not None else torch.full((n * B, k, k), float("nan"), dtype=DT)  # NaN: h̄ unknown
    images = runs.assign(
        case=case.name,
        height=case.x.shape[-2],
        width=case.x.shape[-1],
        kernel_size=k,
        sharp=_flat(x_all),
        blurry=_flat(y_all),
        estimate=_flat(x_hat),
        h_true=_flat(h_true),
        h_init=_flat(h0),
        h_hat=_flat(h_hat),
        h_small=_flat(smallest.expand(n * B, k, k)),
    )
    if res.denoised is not None:
        images["denoised"] = _flat(res.denoised)
    if case.theta_bar is not None:
        images["theta_bar"] = list(rep(case.theta_bar).cpu().numpy())
        images["theta_init"] = list(theta0.cpu().numpy())
        images["theta_hat"] = list(res.theta.detach().cpu().numpy())
    return {"trajectory": traj, "metrics": metrics, "images": images}
