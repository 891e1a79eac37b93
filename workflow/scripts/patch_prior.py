"""An EPLL-style patch prior: another prior of the configuration on every overlapping patch of larger images."""

from prior_landscape.priors import load_prior
from prior_landscape.priors.patch import PatchPrior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg = sm.params.prior
job = start_job(sm, {"prior": cfg})
base = load_prior(sm.input.base)
prior = PatchPrior(base, (base.image_shape[0], cfg["image_size"], cfg["image_size"]), cfg["stride"], sm.wildcards.prior)
job.log.info(
    "%s: %s on %d×%d patches (stride %d) of %s images",
    prior.name,
    cfg["base"],
    prior.size,
    prior.size,
    prior.stride,
    "×".join(map(str, prior.image_shape)),
)
prior.save(sm.output.model)
