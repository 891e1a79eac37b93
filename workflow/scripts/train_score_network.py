"""Train a score network by denoising score matching on the VE schedule (resumable)."""

from pathlib import Path

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import training_images
from prior_landscape.priors.schedules import schedule_from_config
from prior_landscape.priors.training import train_dsm
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, data, seed, name = sm.params.prior, sm.params.data, sm.params.seed, sm.wildcards.prior
job = start_job(sm, {"prior": cfg, "data": data}, {"seed": seed})
crops = training_images(
    cfg.get("training_data", "photographs"), data, seed, images=cfg.get("images"), resource_root=sm.params.resource_root
)
training = cfg["training"]


def progress(step, record):
    job.log.info("step %d/%d  loss %.4f  (%.0f s)", step, training["steps"], record["loss"], record["wall_s"])


options = RunOptions(
    state_path=sm.params.state, record_every=50, progress=progress, **job.speed("priors", name, "training")
)  # checkpoint cadence: a speed-only setting
prior, history = train_dsm(
    crops,
    schedule_from_config(cfg["schedule"]),
    seed=seed,
    name=name,
    net_kwargs=cfg.get("network"),
    options=options,
    **training,
)
write_table(history, sm.output.loss, job.provenance(n_crops=len(crops)))
prior.save(sm.output.model)
Path(sm.params.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
