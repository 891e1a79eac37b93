"""Download (or pick up, for manual sources) one resource of the catalogue, verified."""

from prior_landscape.io.downloads import ensure_resource, load_catalogue_with_mirror, resource_root
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
entry = load_catalogue_with_mirror(sm.params.catalogue)[sm.params.resource]
root = resource_root(entry, sm.output[0])  # downloads.root, read back from where the rule's output goes
job = start_job(sm, {"resource": sm.params.resource, "root": str(root)})
job.log.info("%s: %s", entry["id"], " ".join(str(entry.get("description", "")).split()))
location = ensure_resource(entry, root, sm.params.lock_file)  # ManualDownloadRequired says what to do
job.log.info("%s ready at %s", entry["id"], location)
