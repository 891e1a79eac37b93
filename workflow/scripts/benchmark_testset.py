"""The test cases of one benchmark dataset, drawn once from its seed: images × kernels, blurred, noisy."""

from prior_landscape.io.artefacts import write_table
from prior_landscape.methods.benchmark import make_testset
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
spec = sm.params.spec
job = start_job(sm, {"dataset": spec, "data": sm.params.data}, {"seed": spec["seed"]})
testset = make_testset(spec, sm.params.data, images=sm.params.images, resource_root=sm.params.resource_root)
job.log.info("%s: %d cases (%s)", sm.wildcards.dataset, len(testset), ", ".join(testset.kernel_family.unique()))
write_table(testset, sm.output[0], job.provenance())
