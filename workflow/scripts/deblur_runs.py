"""Blind deconvolution of one case (P §5, Appendix B, Figs. 11–15), resumable: Algorithm 1 on
Zernike PSFs or simplex kernels from "large" and "small" initialisations, or Algorithm 2
(Douglas–Rachford with DRUNet, or the demo's Tweedie denoiser) on the Köhler case
(prior_landscape.inverse.cases): every image of the case, or those of one shard (rule deblur_runs with
the {shard} wildcard: prior_landscape.shards)."""

from pathlib import Path

from prior_landscape.inverse.cases import alternating_settings, build_case, case_tables, denoiser_sigma, run_case
from prior_landscape.inverse.denoisers import DRUNetDenoiser, TweedieDenoiser, drunet_from_config
from prior_landscape.io.artefacts import write_table
from prior_landscape.priors import load_prior
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
p, s = sm.params, sm.params.setup
job = start_job(
    sm, {"deblur": s, "data": p.data}, {"seed": s["model"]["seed"] if s["kind"] == "kohler" else s["images"]["seed"]}
)
prior = load_prior(sm.input.model, job.device) if s["prior"] is not None else None  # None: DRUNet
drunet = s["model"].get("denoiser") if s["kind"] == "kohler" else None
channels = drunet["channels"] if drunet else (prior.image_shape[0] if prior is not None else None)
case = build_case(s, p.data, images=p.images, resource_root=p.resource_root, channels=channels, device=job.device)
shard = Shard.of_job("deblur_runs", sm.wildcards, case.n_images)
case = case.subset(shard.units) if shard.sharded else case  # data and noise of the whole case, then the shard's
job.log.info("%s", case.describe())
if prior is not None:
    prior = prior.at_shape(tuple(case.x.shape[1:]))  # a patch prior or a convolutional network: any size
settings = alternating_settings(s)
denoiser = None
if s["kind"] == "kohler":  # Algorithm 2: P's DRUNet as the prox of the prior, or the demo prior's Tweedie denoiser
    sigma = denoiser_sigma(s)
    if drunet:
        net = drunet_from_config(p.denoiser, drunet, "deblur.kohler.denoiser", job.device)
        job.log.info("denoiser: DRUNet %s (sha256 %s), σ = %.4g", p.denoiser, net.weights_sha256[:12], sigma)
    denoiser = DRUNetDenoiser(net, sigma) if drunet else TweedieDenoiser(prior, sigma)


def progress(it, rec):
    if it % (4 * options.record_every) == 0 or it == settings.n_iter:
        job.log.info("iteration %d/%d: median data fit %.4g", it, settings.n_iter, float(rec["data_fit"].median()))


options = RunOptions(state_path=p.state, progress=progress, **job.speed("deblur"))  # cadences: speed-only settings
res = run_case(case, settings, prior=prior, denoiser=denoiser, options=options)
job.log.info(
    "%s: %d runs, K = %d, resumed from iteration %d, %.1f s",
    s["case"],
    len(res.x),
    settings.n_iter,
    res.resumed_from,
    res.wall_time_s,
)
prov = job.provenance(
    method=res.method,
    resumed_from=res.resumed_from,
    deblur_wall_time_s=res.wall_time_s,
    record_iterations=res.record_iterations,
    **({"runs": len(res.x)} if not shard.sharded else shard.provenance()),
)
for key, table in case_tables(case, res, s["collapse_tol"]).items():
    write_table(table, sm.output[key], prov)
Path(p.state).unlink(missing_ok=True)  # finished: the resumable state is no longer needed
