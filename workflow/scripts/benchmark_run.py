"""One benchmark method on every case of one dataset, or on the cases of one shard (rule benchmark_run
with the {shard} wildcard: prior_landscape.shards): estimates, metrics and cost."""

from prior_landscape.inverse.denoisers import drunet_from_config
from prior_landscape.io.artefacts import read_table, write_table
from prior_landscape.methods import PRIOR_KEYS, method_context
from prior_landscape.methods.benchmark import run_on_testset, run_states, testset_tensors
from prior_landscape.priors.ddpm_prior import load_benchmark_prior
from prior_landscape.priors.kernel_priors import load_kernel_prior
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
entry, name = sm.params.entry, sm.wildcards.method
job = start_job(sm, {"method": entry, "seeds": sm.params.seeds}, {"seeds": sm.params.seeds})
testset = read_table(sm.input.testset)
# units: blocks of batch_size cases, the batches a method sees (all cases at once without one)
shard = Shard.of_job("benchmark", sm.wildcards, len(testset), sm.params.batch_size or len(testset))
testset = testset.iloc[shard.units].reset_index(drop=True)  # this job's cases (all when unsharded)
job.log.info("shard %d of %d: cases %s", shard.index, shard.count, testset.case.tolist())
x, _, _ = testset_tensors(testset)
loaders = {"kernel_prior": load_kernel_prior}  # the learned peers' kernel priors
priors = {
    key: loaders.get(key, load_benchmark_prior)(sm.input[key], job.device)
    for key in PRIOR_KEYS
    if key in sm.input.keys()
}
if "denoiser" in entry:  # DRUNet weights in place of a prior's Tweedie denoiser (P's Algorithm 2 at paper scale)
    priors["drunet"] = drunet_from_config(sm.input.denoiser, entry["denoiser"], f"benchmark.methods.{name}.denoiser",
                                          job.device)  # fmt: skip
    job.log.info("denoiser: DRUNet %s (sha256 %s)", sm.input.denoiser, priors["drunet"].weights_sha256[:12])
context, hyper = method_context(entry, x.shape[1:], float(testset.sigma_y.iloc[0]), **priors, device=job.device,
                                options=RunOptions(state_path=sm.params.state))  # fmt: skip
runs, estimates = run_on_testset(name, entry["method"], hyper, testset, context, seeds=sm.params.seeds,
                                 collapse_tol=sm.params.collapse_tol, batch_size=sm.params.batch_size)  # fmt: skip
job.log.info("%s: median PSNR %.2f dB over %d runs, %.2f s per image", name, runs.psnr.median(), len(runs),
             runs.wall_s.median())  # fmt: skip
prov = job.provenance(method=entry["method"], hyper=hyper, **shard.provenance())
write_table(runs, sm.output.runs, prov)
write_table(estimates, sm.output.estimates, prov)
for state in run_states(sm.params.state):  # every run's resumable state: the job is done
    state.unlink()
