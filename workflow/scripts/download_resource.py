"""Download (or pick up, for manual sources) one resource of the catalogue, verified."""

from prior_landscape.io.downloads import ensure_resource, load_catalogue_with_mirror
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, {"resource": sm.params.resource, "root": sm.params.root})
entry = load_catalogue_with_mirror(sm.params.catalogue)[sm.params.resource]
job.log.info("%s: %s", entry["id"], " ".join(str(entry.get("description", "")).split()))
location = ensure_resource(entry, sm.params.root, sm.params.lock_file)  # ManualDownloadRequired says what to do
job.log.info("%s ready at %s", entry["id"], location)
