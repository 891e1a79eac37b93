"""A sharded stage's artefacts from its shard files (prior_landscape.shards.gather_tables): every
output of the rule gathered from the input of the same name, checked and in the unsharded order."""

from prior_landscape.io.artefacts import write_table
from prior_landscape.runtime import start_job
from prior_landscape.shards import STAGES, gather_tables

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, {"stage": sm.params.stage})
for name in STAGES[sm.params.stage]:
    df, prov = gather_tables(sm.input[name], sm.params.stage, name, sm.params.categories)
    write_table(df, sm.output[name], prov)
    job.log.info("%s: %d rows from %d shards", sm.output[name], len(df), len(sm.input[name]))
