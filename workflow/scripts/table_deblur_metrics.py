"""Blind-deconvolution metrics per case and initialisation (medians and no-blur rate)."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.posterior_figures import deblur_summary
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
metrics = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
o = sm.output
caption = "Deblurring metrics (Figs. 11–15)"
write_table_files(deblur_summary(metrics), o.csv, markdown=o.csv_md, latex=o.csv_tex, caption=caption)
