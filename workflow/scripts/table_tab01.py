"""Table 1: the priors, their size and their measured cost."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.tables import prior_table, write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
timing = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
table = prior_table(timing, sm.params.priors, sm.params.crop_size)
write_table_files(table, sm.output.csv, sm.output.html, caption="Table 1 (demo scale): priors and their cost")
