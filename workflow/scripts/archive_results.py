"""Pack the results folder (config["results"]) into the archive with its manifest and config (io.archive)."""

from prior_landscape.io.archive import write_archive
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, {})
results = sm.params.results
manifest = write_archive(results, sm.output[0], config=dict(sm.params.config), rules=sm.params.rules, root=results)
total = sum(f["size"] for f in manifest["files"])
job.log.info("archived %d files (%.1f MiB) into %s", len(manifest["files"]), total / 2**20, sm.output[0])
