"""Blind deconvolution of one case (P §5, Appendix B, Figs. 11–15), resumable: Algorithm 1 on
Zernike PSFs or simplex kernels from "large" and "small" initialisations, or Algorithm 2
(Douglas–Rachford with a denoiser) on the Köhler case.

Köhler case (deblur.kohler). Denoiser: DRUNet (``denoiser``, P) or the Tweedie denoiser of
``prior`` (demo). Data: real shots of the Köhler benchmark (``data``, P Fig. 13) — x̄ the sharp
reference frame, y the real blurry shot as recorded (no synthetic blur, no added noise: σ_y
only sets the denoiser's σ), h̄ the ground-truth kernel when the kohler2012-kernels resource
is in place, else unknown (kernel errors and MNC NaN) — or the demo's stand-in: bundled
photographs blurred by seeded deepinv motion kernels, plus noise σ_y.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import blurred_crops, crop_positions, extract_crops, heldout_images, load_photographs
from prior_landscape.inverse.algorithms import blind_deconvolution, tweedie_denoiser
from prior_landscape.inverse.denoisers import DRUNET_NC, drunet_denoiser, load_drunet
from prior_landscape.inverse.kernels import (
    SimplexKernel,
    ZernikeKernel,
    diagonal_motion_kernel,
    random_motion_kernel,
    simplex_initialisation,
    zernike_initialisation,
)
from prior_landscape.metrics import collapse_distance, kernel_error, mnc, psnr, ssim
from prior_landscape.inverse.profiles import fft_blur
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
s = p.setup
kind, m, sigma_y = s["kind"], s["model"], float(s["sigma_y"])
seed = m["seed"] if kind == "kohler" else s["images"]["seed"]
job = start_job(sm, {"deblur": s, "data": p.data}, {"seed": seed}, p.device)
DT = torch.float64
prior = load_prior(sm.input.model, job.device) if s["prior"] is not None else None  # None: DRUNet
size, k = p.data["crop_size"], m["kernel_size"]
noise = torch.Generator().manual_seed(seed)
denoiser_cfg = m.get("denoiser") if kind == "kohler" else None
real_data = kind == "kohler" and m.get("data") is not None  # real blurry shots: nothing synthetic


def centred_kernels(kernels):
    """Kernels of several sizes on one odd square support, centred (zero padding changes no
    aligned kernel error or MNC); None for a shot without kernel gives a NaN kernel."""
    known = [h for h in kernels if h is not None]
    side = max(max(h.shape) for h in known)
    side += 1 - side % 2
    out = torch.full((len(kernels), side, side), float("nan"), dtype=DT)
    for i, h in enumerate(kernels):
        if h is not None:
            top, left = (side - h.shape[0]) // 2, (side - h.shape[1]) // 2
            out[i] = 0.0
            out[i, top:top + h.shape[0], left:left + h.shape[1]] = h.to(DT)
    return out


# ------------------------------------------------------------ the problem
if real_data:
    # P Fig. 13: real camera shake (Köhler et al. 2012), centre crops of the shots
    from prior_landscape.io.datasets import read_kohler

    d = m["data"]
    channels = denoiser_cfg["channels"] if denoiser_cfg else prior.image_shape[0]
    shots = [read_kohler(p.resource_root, image=int(i), trajectory=int(t), crop=d.get("crop", 512),
                         channels=channels, frames=d.get("frames", "middle")) for i, t in d["shots"]]
    x = torch.stack([shot["sharp"][0] for shot in shots]).to(DT)  # x̄: the sharp reference frame
    y = torch.stack([shot["blurry"] for shot in shots]).to(DT)  # y: the real blurry shot, as recorded
    sources = [f"kohler-{int(i)}-{int(t)}" for i, t in d["shots"]]
    found = [shot.get("kernel") for shot in shots]
    h_bar = centred_kernels(found) if any(h is not None for h in found) else None  # h̄ unknown without kernels
    job.log.info("Köhler shots %s (%s frame %s), %d×%d crops; ground-truth kernels: %s", ", ".join(sources),
                 d.get("frames", "middle"), [shot["frames"][0] for shot in shots], x.shape[-2], x.shape[-1],
                 "none" if h_bar is None else f"{sum(h is not None for h in found)} of {len(found)}")
    model, family = SimplexKernel(k), "simplex"
    inits = {"large": simplex_initialisation(k, "large")}  # P: the uniform 51×51 kernel
    small_ref = None
elif kind == "kohler":
    # stand-in for Köhler's real camera shake: one bundled photograph per image, blurred whole by
    # a seeded deepinv motion kernel and then cropped (no wrapped borders), plus noise
    photos = load_photographs(m["photographs"], p.data["downscale"])
    specs = crop_positions(photos, len(photos), size, seed, margin=k, min_std=0.1)
    x = extract_crops(photos, specs).to(DT)
    sources = [f"{c.image}@{c.row},{c.col}" for c in specs]
    h_bar = torch.stack([random_motion_kernel(k, seed + i, m["motion"]["length_scale"], m["motion"]["sigma"])
                         for i in range(len(specs))])
    if m["padding"] == "circular":
        y = fft_blur(x, h_bar)
    else:
        y = torch.cat([blurred_crops(photos, [c], h_bar[i], m["padding"]) for i, c in enumerate(specs)]).to(DT)
    model, family = SimplexKernel(k), "simplex"
    inits = {"large": simplex_initialisation(k, "large")}  # P: the uniform kernel
    small_ref = None
else:
    # paper scale: images of the prior's dataset (P: FFHQ-256); demo: textured held-out crops
    x, sources = heldout_images(p.images, p.resource_root, p.data, s["images"]["n"], seed, s["images"]["min_crop_std"])
    x = x.to(DT)
    B = len(x)
    if kind == "zernike":
        model, family = ZernikeKernel(k, m["zernike_index"], m["fc"], m["pupil_size"]), "zernike"
        theta_bar = torch.tensor(m["theta_bar"], dtype=DT)[torch.arange(B) % len(m["theta_bar"])]
        h_bar = model.kernel(theta_bar).detach()
        inits = {name: zernike_initialisation(theta_bar, float(eps)) for name, eps in m["inits"].items()}
        small_ref = model.airy()  # the family's smallest kernel: the no-blur solution
    else:
        z = s["zernike"]
        diffraction = ZernikeKernel(k, z["zernike_index"], z["fc"], z["pupil_size"])

        def true_kernel(spec):
            if spec["kind"] == "diagonal_motion":
                return diagonal_motion_kernel(k, spec.get("length"))
            if spec["kind"] == "motion":
                return random_motion_kernel(k, spec["seed"], spec.get("length_scale", 0.3), spec.get("sigma", 0.25))
            return diffraction.kernel(torch.tensor(spec["theta"], dtype=DT)).detach()

        model, family = SimplexKernel(k), "simplex"
        h_bar = torch.stack([true_kernel(m["kernels"][i % len(m["kernels"])]) for i in range(B)])
        inits = {"large": simplex_initialisation(k, "large"),  # P: uniform vs Gaussian σ = 1.5 px
                 "small": simplex_initialisation(k, "small", sigma=m["gaussian_sigma"])}
        small_ref = None  # the Dirac
    y = fft_blur(x, h_bar)
if not real_data:  # synthetic blur: add the noise σ_y (a real shot already carries its own)
    y = y + sigma_y * torch.randn(x.shape, generator=noise, dtype=DT)
B = len(x)
inits = {n: (t.expand(B, *t.shape) if t.dim() == len(model.param_shape) else t) for n, t in inits.items()}

# ---------------------------------------------------- every init in one batch
names = list(inits)
runs = pd.DataFrame({"run": range(len(names) * B), "init": np.repeat(names, B), "image": np.tile(np.arange(B), len(names)),
                     "source": sources * len(names)})
theta0 = torch.cat([inits[n] for n in names]).to(DT)
rep = lambda t: t.repeat(len(names), *([1] * (t.dim() - 1)))  # noqa: E731
y_all, x_all = rep(y), rep(x)
h_all = rep(h_bar) if h_bar is not None else None


def on_device(fn):
    """Evaluate the prior on the job's device while the kernels (deepinv PSFs) and the rest of the
    problem stay on the CPU; keeps what the checkpoint fingerprint reads (the prior, σ, the name)."""
    if fn is None or job.device == "cpu":
        return fn

    def wrapped(z):
        return fn(z.to(job.device)).to(z.device)

    wrapped.prior, wrapped.__qualname__ = prior, getattr(fn, "__qualname__", "prior_function")
    if hasattr(fn, "sigma"):
        wrapped.sigma = fn.sigma
    return wrapped


exact = on_device(getattr(prior, "potential", None))  # q along the runs: exact for the mixture, else not recorded
method = "douglas_rachford" if kind == "kohler" else "proximal_gradient"
kw = {}
if method == "douglas_rachford":
    sigma_spec = (denoiser_cfg or {}).get("sigma", m["denoiser_sigma"])
    sigma_d = sigma_y * math.sqrt(m["gamma_x"]) if sigma_spec == "auto" else float(sigma_spec)
    if denoiser_cfg:  # P: DRUNet as the prox of the prior; it runs on the job's device itself
        net = load_drunet(p.denoiser, channels=denoiser_cfg["channels"], nc=denoiser_cfg.get("nc", DRUNET_NC),
                          device=job.device)
        kw["denoiser"] = drunet_denoiser(net, sigma_d)
        job.log.info("denoiser: DRUNet %s (sha256 %s), σ = %.4g", p.denoiser, net.weights_sha256[:12], sigma_d)
    else:
        kw["denoiser"] = on_device(tweedie_denoiser(prior, sigma_d))
else:
    kw["grad_potential"] = on_device(prior.grad_potential)


def progress(it, rec):
    if it % (4 * s["record_every"]) == 0 or it == s["n_iter"]:
        ke = rec.get("kernel_error")  # absent when h̄ is unknown (real shots without kernels)
        ke = np.nanmedian(ke) if ke is not None and np.isfinite(ke).any() else float("nan")
        job.log.info("iteration %d/%d: median data fit %.4g, median kernel error %.3f", it, s["n_iter"],
                     np.median(rec["data_fit"]), ke)


res = blind_deconvolution(
    y_all, model, theta0, sigma_y=sigma_y, method=method, n_iter=s["n_iter"], n_inner=s["n_inner"],
    gamma_x=m["gamma_x"], gamma_theta=m["gamma_theta"], reset_every=s["reset_every"],
    record_every=s["record_every"], potential_fn=exact, reference_kernel=h_all, reference_image=x_all,
    checkpoint_path=p.state, checkpoint_every=s["checkpoint_every"], fingerprint={"case": s["case"]},
    progress=progress, **kw,
)
job.log.info("%s: %d runs, K = %d, resumed from iteration %d, %.1f s", s["case"], len(runs), s["n_iter"],
             res.resumed_from, res.wall_time_s)

# ------------------------------------------------------------- trajectory
flip = family == "zernike"
traj = res.trajectory.rename(columns={"image": "run"})
for col in ("q", "loss"):
    if col not in traj:
        traj[col] = np.nan
traj = traj.merge(runs, on="run", how="left")
R = len(runs)
kernels = res.kernels.reshape(-1, k, k)  # record-major, as the trajectory rows
traj["collapse_distance"] = collapse_distance(kernels, small_ref).numpy()
traj["kernel"] = list(kernels.reshape(len(kernels), -1).numpy().astype(np.float32))
if family == "zernike":
    traj["theta"] = list(res.thetas.reshape(-1, *model.param_shape).numpy())
traj.insert(0, "case", s["case"])

# ---------------------------------------------------------------- metrics
def aligned_psnr(a, b, m):
    """PSNR of a against b on the interior (a border of m px dropped), at the best integer shift of a
    with |shift| ≤ m per axis: blind estimates are defined up to a shift, and borders carry the
    boundary mismatch of a circular model (as in the usual evaluation of Levin et al. and Köhler et al.)."""
    H, W = a.shape[-2:]
    ref = b[..., m:H - m, m:W - m]
    shifted = [psnr(a[..., m + i:H - m + i, m + j:W - m + j], ref) for i in range(-m, m + 1) for j in range(-m, m + 1)]
    return torch.stack(shifted).amax(0).numpy()


h0 = model.kernel(model.project(theta0)).detach()
x_hat, h_hat = res.x.detach(), res.kernel.detach()
last = traj[traj.iteration == s["n_iter"]].sort_values("run")
ssim_of = lambda a, b: ssim(a.float(), b.float()).double().numpy()  # noqa: E731
if h_all is not None:
    known = dict(
        kernel_error=kernel_error(h_hat, h_all, flip=flip).numpy(), kernel_error_init=kernel_error(h0, h_all, flip=flip).numpy(),
        mnc=mnc(h_hat, h_all, flip=flip).numpy(), mnc_init=mnc(h0, h_all, flip=flip).numpy(),
        collapse_distance_true=collapse_distance(h_all, small_ref).numpy(),
    )
else:  # h̄ unknown (real shots without ground-truth kernels): the kernel metrics are NaN
    known = {c: np.full(R, np.nan) for c in ("kernel_error", "kernel_error_init", "mnc", "mnc_init",
                                              "collapse_distance_true")}
metrics = runs.assign(
    case=s["case"], method=method, family=family, sigma_y=sigma_y, n_iter=s["n_iter"],
    psnr=psnr(x_hat, x_all).numpy(), ssim=ssim_of(x_hat, x_all),
    psnr_blurry=psnr(y_all, x_all).numpy(), ssim_blurry=ssim_of(y_all, x_all),
    psnr_aligned=aligned_psnr(x_hat, x_all, k // 2), psnr_blurry_aligned=aligned_psnr(y_all, x_all, k // 2),
    kernel_error=known["kernel_error"], kernel_error_init=known["kernel_error_init"],
    mnc=known["mnc"], mnc_init=known["mnc_init"],
    collapse_distance=collapse_distance(h_hat, small_ref).numpy(),
    collapse_distance_init=collapse_distance(h0, small_ref).numpy(),
    collapse_distance_true=known["collapse_distance_true"],
    data_fit=last.data_fit.to_numpy(), q=last.q.to_numpy(), loss=last.loss.to_numpy(),
)
metrics["no_blur"] = metrics.collapse_distance <= s["collapse_tol"]
if res.denoised is not None:
    metrics["psnr_denoised"] = psnr(res.denoised, x_all).numpy()

# ----------------------------------------------------------------- images
flat = lambda t: list(t.reshape(len(t), -1).cpu().numpy().astype(np.float32))  # noqa: E731
h_true = h_all if h_all is not None else torch.full((R, k, k), float("nan"), dtype=DT)  # NaN: h̄ unknown
images = runs.assign(case=s["case"], height=x.shape[-2], width=x.shape[-1], kernel_size=k,
                     sharp=flat(x_all), blurry=flat(y_all), estimate=flat(x_hat),
                     h_true=flat(h_true), h_init=flat(h0), h_hat=flat(h_hat))
if res.denoised is not None:
    images["denoised"] = flat(res.denoised)
if small_ref is not None:
    images["h_small"] = flat(small_ref.expand(R, k, k))
if family == "zernike":
    images["theta_bar"] = list(rep(theta_bar).numpy())
    images["theta_init"] = list(theta0.numpy())
    images["theta_hat"] = list(res.theta.detach().numpy())

prov = job.provenance(method=method, resumed_from=res.resumed_from, deblur_wall_time_s=res.wall_time_s,
                      runs=R, record_iterations=res.record_iterations)
write_table(traj, sm.output.trajectory, prov)
write_table(metrics, sm.output.metrics, prov)
write_table(images, sm.output.images, prov)
Path(p.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
