"""Seconds per image of a model evaluation and of a potential evaluation (P Table 1)."""

import pandas as pd

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import heldout_images
from prior_landscape.landscape.potential import PotentialSettings
from prior_landscape.landscape.timing import measure_prior_cost
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
job = start_job(sm, {"timing": p.timing, "potential": p.potential}, {"seed": p.seed})
prior = load_prior(sm.input.model, job.device)
x, _ = heldout_images(p.images, p.resource_root, p.data, p.timing["n_images"], p.seed)
settings = PotentialSettings.from_config(job.settings(p.potential, "potential"))
row = measure_prior_cost(prior, x, settings, repeats=p.timing["repeats"], device=job.device)
row["device"] = job.device
job.log.info("%s", row)
write_table(pd.DataFrame([row]), sm.output[0], job.provenance())
