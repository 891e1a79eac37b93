"""Critical points of q by P's descent from three groups of starts (P §2.2, Figs. 1–3): all starts, or
those of one shard (rule critical_points with the {shard} wildcard: prior_landscape.shards)."""

from pathlib import Path

from prior_landscape.io.artefacts import write_table
from prior_landscape.landscape.critical_points import (
    choose_eta,
    critical_point_tables,
    descend_in_segments,
    descent_starts,
)
from prior_landscape.landscape.potential import PotentialSettings, potential_batched
from prior_landscape.priors import load_prior
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
p, prior_name = sm.params, sm.wildcards.prior
cfg = p.critical_points
job = start_job(
    sm,
    {"critical_points": cfg, "potential": p.potential, "data": p.data, "terminal": p.terminal},
    {"seed": cfg["seed"]},
)
prior = load_prior(sm.input.model, job.device, terminal=p.terminal)  # p_T of P eq. 7: the config's
starts = descent_starts(prior, cfg["n_per_group"], cfg, p.data, p.source, p.seed, p.images, p.resource_root)
# η in P's convention (x ← (1 − η) x + η D_σε(x)), or "auto" (from every start: the same in every shard);
# per prior if configured
# (a prior pooling classes evaluates each start under its class: with_labels)
eta = choose_eta(
    prior.with_labels(starts.labels),
    starts.x.to(job.device),
    cfg.get("step_by_prior", {}).get(prior_name, cfg["step"]),
)
shard = Shard.of_job("critical_points", sm.wildcards, len(starts.x))
starts = starts.subset(shard.units)  # this job's starts (all when unsharded), keeping their numbers
prior = prior.with_labels(starts.labels)
x0 = starts.x.to(job.device)
job.log.info(
    "descent: η = %.4g for starts %s of %d, %d steps", eta, shard.units.tolist(), shard.n_units, cfg["n_steps"]
)
settings = PotentialSettings.from_config(job.settings(p.potential, "potential"))


def q_of(x):  # probes keyed by start image: q(x) − q(x̄) shares them
    return potential_batched(prior, x, settings, seed=cfg["seed"], probe_keys=starts.ids, device=job.device)


options = RunOptions(state_path=p.state, **job.speed("critical_points"))  # cadences: speed-only settings
res, along = descend_in_segments(
    prior,
    x0,
    eta=eta,
    n_steps=cfg["n_steps"],
    n_segments=cfg["n_segments"],
    q_of=q_of,
    options=options,
    log=job.log,
    image_ids=starts.ids,
)
prov = job.provenance(step_eta=eta, step_size=eta * prior.sigma_eps**2, **shard.provenance())
for key, table in critical_point_tables(prior, starts, res, along, cfg["grad_tol"]).items():
    write_table(table, sm.output[key], prov)
Path(p.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
