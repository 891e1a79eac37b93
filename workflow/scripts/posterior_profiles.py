"""Profiles ℓ^opt(θ) = inf_x ℓ_y(x, θ) along the blur families (P §4, Figs. 9–10), for x̄ a
held-out crop and x̄ the critical point of q that momentum descent reaches from it."""

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import write_table
from prior_landscape.inverse.operators import kernel, kernel_stack
from prior_landscape.config import theta_grid
from prior_landscape.landscape.critical_points import choose_step
from prior_landscape.io.images import heldout_images
from prior_landscape.inverse.profiles import (
    fft_blur,
    minimise_image,
    noiseless_profile,
    noisy_profile,
    safe_posterior_step,
    select_lambda,
)
from prior_landscape.landscape.potential import potential_batched
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
cfg = p.posterior
job = start_job(sm, {"posterior": cfg, "potential": p.potential, "data": p.data}, {"seed": cfg["seed"]}, p.device)
DT = torch.float64
prior = load_prior(sm.input.model, job.device)
exact = getattr(prior, "potential", None)  # the analytic mixture's exact q
pot = {k: v for k, v in p.potential.items() if k != "batch_size"}


def q_of(x):
    """q(x) in nats: exact for the analytic prior, else the probability-flow engine."""
    if exact is not None:
        return exact(x)
    r = potential_batched(prior, x, p.potential["batch_size"], probe_keys=np.arange(len(x)), device=job.device,
                          seed=cfg["seed"], **pot)
    return torch.as_tensor(r.q, dtype=torch.float64, device=x.device)


# x̄ from the data: held-out textured crops (paper scale: images of the prior's dataset, P: FFHQ);
# and the critical points reached from them
x_data, sources = heldout_images(p.images, p.resource_root, p.data, cfg["n_images"], cfg["seed"], cfg["min_crop_std"])
x_data = x_data.to(job.device, DT)
cp = cfg["critical_points"]
step_q = choose_step(prior, x_data, cp["step"])
# gradient descent with momentum on q alone: ℓ with a zero kernel has no data term
zero = torch.zeros(1, 1, dtype=DT, device=job.device)
x_crit = minimise_image(torch.zeros_like(x_data), zero, 1.0, prior.grad_potential, x_data, cp["n_steps"], step_q,
                        cp["momentum"])
sets = {"dataset": x_data, "critical point": x_crit}
points = []
for name, x in sets.items():
    gn = prior.grad_potential(x).flatten(1).norm(dim=1).double().cpu().numpy()
    points.append(pd.DataFrame({
        "x_bar": name, "image": range(len(x)), "source": sources,
        "q": q_of(x).cpu().numpy(), "grad_norm": gn,
        "relative_distance": ((x - x_data).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).cpu().numpy(),
        "pixels": list(x.flatten(1).cpu().numpy().astype(np.float32)),
    }))
points = pd.concat(points, ignore_index=True)
job.log.info("critical points: step %.3g, %d steps, max ‖∇q‖ %.3g", step_q, cp["n_steps"],
             points[points.x_bar == "critical point"].grad_norm.max())

theta_bar = float(cfg["theta_bar"])
thetas = np.union1d(theta_grid(cfg["theta"]), [theta_bar])
# L_q for the inner minimisations' safe step: exact for the mixture, 2 λ_max at the crops for a network
lipschitz_q = 1.0 / (step_q if cp["step"] == "auto" else choose_step(prior, x_data, "auto"))
size = cfg["kernel_size"]
noiseless, noisy, lambdas = [], [], []
for family in cfg["families"]:
    ks = kernel_stack(family, thetas, size).to(job.device, DT)
    h_bar = kernel(family, theta_bar, size).to(job.device, DT)
    # P eq. 14 on the data crops (q checked exactly for the analytic prior, round trip only otherwise)
    sel = select_lambda(ks, x_data, exact, tol=cfg["lambda_tol"])
    lambdas.append(sel.table.assign(family=family, chosen=sel.table.lam == sel.lam))
    if not np.isfinite(sel.lam):
        raise ValueError(f"no λ of the grid satisfies P eq. 14 for the {family} family; widen the grid")
    for name, x in sets.items():
        ell = noiseless_profile(x, h_bar, ks, sel.lam, q_of).cpu().numpy()
        B = len(x)
        noiseless.append(pd.DataFrame({
            "family": family, "x_bar": name, "image": np.repeat(np.arange(B), len(thetas)),
            "theta": np.tile(thetas, B), "theta_bar": theta_bar, "lam": sel.lam, "ell": ell.ravel(),
        }))
        for j, sigma in enumerate(cfg["noise_levels"]):
            g = torch.Generator().manual_seed(cfg["seed"] * 1000 + j)
            y = fft_blur(x, h_bar) + sigma * torch.randn(x.shape, generator=g, dtype=DT).to(job.device)
            inner = cfg["inner"]
            prof = noisy_profile(y, ks, sigma, prior.grad_potential, q_of, starts=inner["starts"],
                                 n_steps=inner["n_steps"], step=safe_posterior_step(sigma, lipschitz_q),
                                 momentum=inner["momentum"])
            noisy.append(pd.DataFrame({
                "family": family, "x_bar": name, "sigma_y": sigma, "image": np.repeat(np.arange(B), len(thetas)),
                "theta": np.tile(thetas, B), "theta_bar": theta_bar,
                "ell": prof.values.cpu().numpy().ravel(), "data_fit": prof.data_fit.cpu().numpy().ravel(),
                "q": prof.potential.cpu().numpy().ravel(),
                "best_start": np.asarray(inner["starts"])[prof.best_start.ravel()],
            }))
    job.log.info("%s: λ = %g", family, sel.lam)

noiseless = pd.concat(noiseless, ignore_index=True).assign(prior=sm.wildcards.prior)
noisy = pd.concat(noisy, ignore_index=True).assign(prior=sm.wildcards.prior)
points["prior"] = sm.wildcards.prior
# the minimiser over the θ grid of each profile (non-finite values never win): the paper's question
for df, keys in ((noiseless, ["family", "x_bar", "image"]), (noisy, ["family", "x_bar", "sigma_y", "image"])):
    ell = df.ell.where(np.isfinite(df.ell), np.inf)
    df["argmin_theta"] = ell.groupby([df[k] for k in keys]).transform(lambda s: df.theta.loc[s.idxmin()])
prov = job.provenance(step_critical=step_q, lipschitz_q=lipschitz_q, q_exact=exact is not None)
write_table(noiseless, sm.output.noiseless, prov)
write_table(noisy, sm.output.noisy, prov)
write_table(pd.concat(lambdas, ignore_index=True).assign(prior=sm.wildcards.prior), sm.output.lam, prov)
write_table(points, sm.output.points, prov)
