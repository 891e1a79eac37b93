"""Table 1: the priors, their size and their measured cost (median and range over the repeats of one job)."""

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.tables import prior_table, write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
o = sm.output
table = prior_table(read_table(sm.input[0]), sm.params.priors)
write_table_files(table, o.csv, markdown=o.csv_md, latex=o.csv_tex, caption="Table 1: the priors and their cost")
