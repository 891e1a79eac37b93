"""A released DDPM network (guided-diffusion / deepinv DiffUNet weights) as a prior of the learned peers."""

from prior_landscape.priors.ddpm_prior import DDPMPrior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, name = sm.params.prior, sm.wildcards.prior
job = start_job(sm, {"prior": cfg})
net = cfg.get("network", {})
shape = (int(net.get("channels", 3)), int(cfg["image_size"]), int(cfg["image_size"]))
prior = DDPMPrior.from_checkpoint(sm.params.checkpoint, shape, name, large_model=bool(net.get("large_model", False)))
job.log.info("%s: %d parameters, σ from %.3g to %.3g", name, prior.num_parameters(), *prior.sigmas[[0, -1]].tolist())
prior.save(sm.output.model)
