"""Fit the analytic Gaussian-mixture prior on crops of the training photographs."""

import pandas as pd

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import training_images
from prior_landscape.priors import GaussianMixturePrior
from prior_landscape.priors.schedules import schedule_from_config
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, data, seed = sm.params.prior, sm.params.data, sm.params.seed
job = start_job(sm, {"prior": cfg, "data": data}, {"seed": seed})

crops = training_images(cfg.get("training_data", "photographs"), data, seed)
prior = GaussianMixturePrior.fit(
    crops.numpy(),
    tuple(crops.shape[1:]),
    schedule_from_config(cfg["schedule"]),
    n_components=cfg["n_components"],
    rank=cfg["rank"],
    seed=seed,
    name=sm.wildcards.prior,
)
job.log.info("fitted %d components of rank %d, floor %.3g", cfg["n_components"], cfg["rank"], prior.floor)
summary = pd.DataFrame(
    {
        "component": range(cfg["n_components"]),
        "weight": prior.weights.numpy(),
        "top_variance": prior.spectra[:, 0].numpy() + prior.floor,
        "floor": prior.floor,
        "rank": cfg["rank"],
    }
)
write_table(summary, sm.output.summary, job.provenance(n_crops=len(crops)))
prior.save(sm.output.model)
