"""Critical points of q by gradient descent from three groups of starts (P §2.2, Figs. 1–3)."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import write_table
from prior_landscape.landscape.critical_points import choose_step, descend, white_noise_starts
from prior_landscape.io.images import (
    crop_positions,
    extract_crops,
    load_photographs,
    prior_images,
    training_images,
    unrelated_images,
)
from prior_landscape.landscape.potential import potential_batched
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
cfg = p.critical_points
job = start_job(sm, {"critical_points": cfg, "potential": p.potential, "data": p.data}, {"seed": cfg["seed"]}, p.device)
prior = load_prior(sm.input.model, job.device)
n, size = cfg["n_per_group"], p.data["crop_size"]

# the three start groups of P Fig. 3
if p.images:  # paper scale: the prior's own dataset, and bundled photographs at its resolution
    train_x, train_ids = prior_images(p.images, p.resource_root, n, cfg["seed"])
    unrelated_x, unrelated_ids = unrelated_images(cfg["unrelated"], n, prior.image_shape, cfg["seed"])
else:  # demo: crops of the training photographs (or digits) and of unrelated photographs
    train = training_images(p.source, p.data, p.seed)
    pick = np.random.default_rng(cfg["seed"]).choice(len(train), n, replace=False)
    train_x, train_ids = train[pick], [f"{p.source}[{i}]" for i in pick]
    unrelated_photos = load_photographs(cfg["unrelated"], p.data["downscale"])
    unrelated_crops = crop_positions(unrelated_photos, n, size, cfg["seed"], min_std=0.05)
    unrelated_x = extract_crops(unrelated_photos, unrelated_crops)
    unrelated_ids = [f"{c.image}@{c.row},{c.col}" for c in unrelated_crops]
groups = {
    "training set": train_x,
    "unrelated images": unrelated_x,
    "white noise": white_noise_starts(n, prior.image_shape, cfg["noise"]["mean"], cfg["noise"]["std"], cfg["seed"]),
}
x0 = torch.cat(list(groups.values())).to(job.device)
labels = np.repeat(list(groups), n)
sources = [*train_ids, *unrelated_ids, *(f"noise-{i}" for i in range(n))]

# the step: η in P's convention (x ← (1 − η) x + η D_σε(x)), or "auto"; per prior if configured
eta = cfg.get("step_by_prior", {}).get(sm.wildcards.prior, cfg["step"])
step = choose_step(prior, x0, eta)
step_eta = step / prior.sigma_eps**2  # the same step in P's convention (on σ_ε² ∇q = x − D(x))
job.log.info("descent step %.3g on ∇q (η = %.3g) for %d starts, %d steps", step, step_eta, len(x0), cfg["n_steps"])
pot = {k: v for k, v in p.potential.items() if k != "batch_size"}
exact = getattr(prior, "potential", None)


def q_of(x):
    """q by the potential engine; probes keyed by start image, so q(x) − q(x̄) shares them."""
    r = potential_batched(prior, x, p.potential["batch_size"], probe_keys=np.arange(len(x)), device=job.device,
                          seed=cfg["seed"], **pot)
    return r.q, r.stderr


# descend in segments, evaluating q with the engine after each (P Fig. 2); the descent
# resumes from its checkpoint, so the segments add up to one uninterrupted run
checkpoints = np.linspace(0, cfg["n_steps"], cfg["n_segments"] + 1).round().astype(int)
q, se = q_of(x0)
along = [pd.DataFrame({"image": range(len(x0)), "step": 0, "q": q, "q_stderr": se})]
state = Path(p.state)
for k in checkpoints[1:]:
    res = descend(prior, x0, step=step, n_steps=int(k), record_every=cfg["record_every"], energy_fn=exact,
                  checkpoint_path=state, checkpoint_every=cfg["checkpoint_every"])
    q, se = q_of(res.end)
    along.append(pd.DataFrame({"image": range(len(x0)), "step": int(k), "q": q, "q_stderr": se}))
    job.log.info("step %d: median q %.1f, median ‖∇q‖ %.3g", k, np.median(q), np.median(res.final_grad_norm))

along = pd.concat(along, ignore_index=True)
q_start = along[along.step == 0].q.to_numpy()
q_end = along[along.step == cfg["n_steps"]].q.to_numpy()
summary = res.summary(q_start, q_end)
summary.insert(1, "group", labels)
summary.insert(2, "source", sources)
summary["q_start_stderr"] = along[along.step == 0].q_stderr.to_numpy()
summary["q_end_stderr"] = along[along.step == cfg["n_steps"]].q_stderr.to_numpy()
if exact is not None:
    summary["q_start_exact"] = exact(res.start.double()).cpu().numpy()
    summary["q_end_exact"] = exact(res.end.double()).cpu().numpy()
summary["step_size"] = step  # on ∇q
summary["step_eta"] = step_eta
summary["prior"] = prior.name

# q by the engine at the segment ends; the analytic prior's exact q at every record as q_exact
traj = res.trajectory.rename(columns={"q": "q_exact"})
if "q_exact" not in traj:  # a network: no exact value
    traj["q_exact"] = np.nan
traj = traj.merge(along, on=["image", "step"], how="outer")
traj = traj.sort_values(["image", "step"])
traj["group"] = labels[traj.image.to_numpy()]
traj["prior"] = prior.name
C, H, W = prior.image_shape
images = pd.DataFrame({
    "prior": prior.name, "image": range(len(x0)), "group": labels, "channels": C, "height": H, "width": W,
    "start": list(res.start.reshape(len(x0), -1).cpu().numpy().astype(np.float32)),
    "end": list(res.end.reshape(len(x0), -1).cpu().numpy().astype(np.float32)),
})
prov = job.provenance(step_size=step, step_eta=step_eta)
write_table(summary, sm.output.summary, prov)
write_table(traj.reset_index(drop=True), sm.output.trajectory, prov)
write_table(images, sm.output.images, prov)
state.unlink(missing_ok=True)
