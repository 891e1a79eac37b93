"""Train a learned peer's kernel prior (resumable): BlindDPS's unconditional one (kind kernel_network) or
Kernel Diffusion's y-conditioned one (kind conditional_kernel_network)."""

from pathlib import Path

from prior_landscape.io.artefacts import write_table
from prior_landscape.priors.kernel_priors import (
    kernel_training_set,
    train_conditional_kernel_prior,
    train_kernel_prior,
)
from prior_landscape.priors.schedules import schedule_from_config
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, data, seed, name = sm.params.prior, sm.params.data, sm.params.seed, sm.wildcards.prior
job = start_job(sm, {"prior": cfg, "data": data}, {"seed": seed})
spec, training = cfg["kernels"], dict(cfg["training"])
kernels = kernel_training_set(int(spec["n"]), int(spec["kernel_size"]), seed, spec["mix"])
job.log.info(
    "%d training kernels of %d×%d (mix %s)", len(kernels), spec["kernel_size"], spec["kernel_size"], spec["mix"]
)


def progress(step, record):
    job.log.info("step %d/%d  loss %.4f  (%.0f s)", step, training["steps"], record["loss"], record["wall_s"])


options = RunOptions(
    state_path=sm.params.state, record_every=50, progress=progress, **job.speed("priors", name, "training")
)  # checkpoint cadence: a speed-only setting
schedule = schedule_from_config(cfg["schedule"])
if cfg["kind"] == "kernel_network":
    prior, history = train_kernel_prior(
        kernels, schedule, seed=seed, name=name, net_kwargs=cfg.get("network"), options=options, **training
    )
    n_data = len(kernels)
else:
    from prior_landscape.io.images import crop_positions, extract_crops, load_photographs, prior_images

    pairs = cfg["pairs"]
    if "images" in pairs:  # paper scale: a dataset's training images at the pairs' size
        images, _ = prior_images(pairs["images"], sm.params.resource_root, int(pairs["n_images"]), seed)
    else:  # demo: crops of the training photographs (never the held-out ones)
        photos = load_photographs(data["photographs"]["train"], data["downscale"])
        crops = crop_positions(photos, int(pairs["n_images"]), int(pairs["size"]), seed, min_std=pairs["min_crop_std"])
        images = extract_crops(photos, crops)
    prior, history = train_conditional_kernel_prior(
        images, kernels, schedule, sigma_y=float(pairs["sigma_y"]), boundary=pairs["boundary"], seed=seed, name=name,
        net_kwargs=cfg.get("network"), options=options, **training,
    )  # fmt: skip
    n_data = len(images)
write_table(history, sm.output.loss, job.provenance(n_kernels=len(kernels), n_images=n_data))
prior.save(sm.output.model)
Path(sm.params.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
