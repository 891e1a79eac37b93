"""LPIPS (per case) and FID (per seed) of one benchmark method's estimates (paper scale)."""

from prior_landscape.io.artefacts import read_table, write_table
from prior_landscape.methods.benchmark import perceptual_scores
from prior_landscape.perceptual import LPIPS, InceptionFeatures
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, {"min_images": sm.params.min_images}, {})
lpips = {k.removeprefix("lpips_"): LPIPS(k.removeprefix("lpips_"), sm.input[k], job.device)
         for k in sm.input.keys() if k.startswith("lpips_")}  # fmt: skip
inception = InceptionFeatures(sm.input.fid, job.device) if "fid" in sm.input.keys() else None
scores = perceptual_scores(read_table(sm.input.testset), read_table(sm.input.estimates), lpips, inception,
                           sm.params.min_images)  # fmt: skip
job.log.info("%s: %d cases scored (%s)", sm.wildcards.method, len(scores), ", ".join(scores.columns[3:]))
write_table(scores, sm.output[0], job.provenance(metrics=sorted(scores.columns[3:])))
