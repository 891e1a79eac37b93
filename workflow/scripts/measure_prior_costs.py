"""Seconds per image of a model evaluation and of a potential evaluation of every prior (P Table 1):
one job, the priors measured in turn, round-robin, each measurement repeated (landscape/timing.py)."""

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import heldout_images
from prior_landscape.landscape.potential import PotentialSettings
from prior_landscape.landscape.timing import cost_summary, measure_costs
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
job = start_job(sm, {"timing": p.timing, "potential": p.potential, "terminal": p.terminal}, {"seed": p.seed})
cases = {}
for name, model in zip(p.priors, sm.input.models, strict=True):
    x, _ = heldout_images(p.images[name], p.resource_root, p.data, p.timing["n_images"], p.seed)
    prior = load_prior(model, job.device, terminal=p.terminal[name])
    if prior.pooled_labels is not None:  # the cost of an evaluation is the same for every class
        job.log.info("%s pools classes %s: timed on class %d", name, list(prior.pooled_labels), prior.pooled_labels[0])
        prior = prior.for_class(prior.pooled_labels[0])
    cases[name] = (prior, x)
settings = PotentialSettings.from_config(job.settings(p.potential, "potential"))
timing = measure_costs(
    cases,
    settings,
    repeats=p.timing["repeats"],
    potential_repeats=p.timing["potential_repeats"],
    device=job.device,
    log=job.log,
)
timing["device"] = str(job.device)
job.log.info("seconds per image (median, min, max):\n%s", cost_summary(timing).to_string(index=False))
write_table(timing, sm.output[0], job.provenance())
