"""Train the demo score network by denoising score matching on the VE schedule (resumable)."""

from pathlib import Path

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import training_images
from prior_landscape.priors.scorenet import train_dsm
from prior_landscape.runtime import start_job
from prior_landscape.priors.schedules import schedule_from_config

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, data, seed = sm.params.prior, sm.params.data, sm.params.seed
job = start_job(sm, {"prior": cfg, "data": data}, {"seed": seed}, device=sm.params.device)

crops = training_images(cfg.get("training_data", "photographs"), data, seed, images=cfg.get("images"),
                        resource_root=sm.params.resource_root)
training = dict(cfg["training"])
checkpoint_every = training.pop("checkpoint_every", 500)


def progress(step, record):
    job.log.info("step %d/%d  loss %.4f  (%.0f s)", step, training["steps"], record["loss"], record["wall_s"])


prior, history = train_dsm(
    crops,
    schedule_from_config(cfg["schedule"]),
    seed=seed,
    checkpoint_path=sm.params.state,
    checkpoint_every=checkpoint_every,
    progress=progress,
    name=sm.wildcards.prior,
    net_kwargs=cfg.get("network"),
    **training,
)
write_table(history, sm.output.loss, job.provenance(n_crops=len(crops)))
prior.save(sm.output.model)
Path(sm.params.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
