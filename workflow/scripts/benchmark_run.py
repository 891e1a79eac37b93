"""One benchmark method on every case of one dataset: estimates, metrics and cost."""

from pathlib import Path

from prior_landscape.io.artefacts import read_table, write_table
from prior_landscape.methods import PRIOR_KEYS, method_context
from prior_landscape.methods.benchmark import run_on_testset, testset_tensors
from prior_landscape.priors.ddpm_prior import load_benchmark_prior
from prior_landscape.priors.kernel_priors import load_kernel_prior
from prior_landscape.runs import RunOptions
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
entry, name = sm.params.entry, sm.wildcards.method
job = start_job(sm, {"method": entry, "seeds": sm.params.seeds}, {"seeds": sm.params.seeds})
testset = read_table(sm.input.testset)
x, _, _ = testset_tensors(testset)
loaders = {"kernel_prior": load_kernel_prior}  # the learned peers' kernel priors
priors = {
    key: loaders.get(key, load_benchmark_prior)(sm.input[key], job.device)
    for key in PRIOR_KEYS
    if key in sm.input.keys()
}
context, hyper = method_context(entry, x.shape[1:], float(testset.sigma_y.iloc[0]), **priors, device=job.device,
                                options=RunOptions(state_path=sm.params.state))  # fmt: skip
runs, estimates = run_on_testset(name, entry["method"], hyper, testset, context, seeds=sm.params.seeds,
                                 collapse_tol=sm.params.collapse_tol)  # fmt: skip
job.log.info("%s: median PSNR %.2f dB over %d runs, %.2f s per image", name, runs.psnr.median(), len(runs),
             runs.wall_s.median())  # fmt: skip
prov = job.provenance(method=entry["method"], hyper=hyper)
write_table(runs, sm.output.runs, prov)
write_table(estimates, sm.output.estimates, prov)
Path(sm.params.state).unlink(missing_ok=True)
