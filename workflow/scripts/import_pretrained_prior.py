"""Convert a released checkpoint (EDM pickle, score_sde .pth) into the workflow's prior file."""

from prior_landscape.io.images import statistics_images
from prior_landscape.priors import load_prior
from prior_landscape.priors.pretrained import convert_pretrained_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg = sm.params.prior
job = start_job(sm, {"prior": cfg})
# the data statistics of the terminal density (P eq. 7, prior_landscape.priors.terminal): from the
# prior's own dataset (its `images`), none without one (then only P's N(0, σ_T² I) is available)
images = statistics_images(cfg["images"], sm.params.resource_root) if cfg.get("images") else None
prior = convert_pretrained_prior(
    sm.params.checkpoint,
    sm.output.model,
    name=sm.wildcards.prior,
    class_label=cfg.get("class_label"),
    pooled_labels=cfg.get("class_labels"),  # P's imagenet64: the first ten classes, each image under its own
    schedule=cfg["schedule"],
    network=cfg.get("network"),
    images=images,
)
job.log.info(
    "%s: %s, %d parameters, image shape %s, schedule %s",
    sm.wildcards.prior,
    type(prior).__name__,
    prior.num_parameters(),
    prior.image_shape,
    prior.schedule,
)
if images is not None:
    job.log.info("data statistics (terminal density) from %d images of %s", len(images), cfg["images"]["dataset"])
check = load_prior(sm.output.model)  # reads back what was written
job.log.info("read back as %s on images in [0, 1]", type(check).__name__)
