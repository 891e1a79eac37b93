"""Profiles ℓ^opt(θ) = inf_x ℓ_y(x, θ) along the blur families (P §4, Figs. 9–10), for x̄ a
held-out image and x̄ the critical point of q that momentum descent reaches from it: every image,
or those of one shard (rule posterior_profiles with the {shard} wildcard: prior_landscape.shards)."""

import torch

from prior_landscape.inverse.profiles import profile_study
from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import heldout_images
from prior_landscape.landscape.potential import PotentialSettings, potential_function
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
cfg = p.posterior
job = start_job(
    sm, {"posterior": cfg, "potential": p.potential, "data": p.data, "terminal": p.terminal}, {"seed": cfg["seed"]}
)
prior = load_prior(sm.input.model, job.device, terminal=p.terminal)  # p_T of P eq. 7: the config's
settings = PotentialSettings.from_config(job.settings(p.potential, "potential"))
# x̄ from the data: held-out textured crops (paper scale: images of the prior's dataset, P: FFHQ)
x_data, sources = heldout_images(
    p.images, p.resource_root, p.data, cfg["n_images"], cfg["seed"], cfg["min_crop_std"], cfg.get("image_size")
)
shard = Shard.of_job("posterior_profiles", sm.wildcards, cfg["n_images"])
if len(x_data) != shard.n_units:
    raise ValueError(f"posterior.n_images is {cfg['n_images']}, but {len(x_data)} images were found")
job.log.info("images %s of %d", shard.units.tolist(), shard.n_units)
prior = prior.at_shape(tuple(x_data.shape[1:]))  # a patch prior or a convolutional network: any size
q_of = potential_function(prior, settings, seed=cfg["seed"], device=job.device)  # exact for analytic priors
tables, steps = profile_study(
    prior, x_data.to(job.device, torch.float64), sources, cfg, q_of, log=job.log, image_ids=shard.units
)
prov = job.provenance(**steps, q_exact=prior.has_exact_potential, **shard.provenance())
for key, table in tables.items():
    write_table(table.assign(prior=sm.wildcards.prior), sm.output[key], prov)
