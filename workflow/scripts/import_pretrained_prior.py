"""Convert a released checkpoint (EDM pickle, score_sde .pth) into the workflow's prior file."""

from prior_landscape.priors import load_prior
from prior_landscape.priors.pretrained import convert_pretrained_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg = sm.params.prior
job = start_job(sm, {"prior": cfg})
prior = convert_pretrained_prior(
    sm.params.checkpoint,
    sm.output.model,
    name=sm.wildcards.prior,
    class_label=cfg.get("class_label"),
    schedule=cfg["schedule"],
    network=cfg.get("network"),
)
job.log.info(
    "%s: %s, %d parameters, image shape %s, schedule %s",
    sm.wildcards.prior,
    type(prior).__name__,
    prior.num_parameters(),
    prior.image_shape,
    prior.schedule,
)
check = load_prior(sm.output.model)  # reads back what was written
job.log.info("read back as %s on images in [0, 1]", type(check).__name__)
