"""Blind-deconvolution metrics per case and initialisation (medians and no-blur rate)."""

import pandas as pd

from prior_landscape.io.artefacts import atomic_output, read_table
from prior_landscape.report.posterior_figures import deblur_summary

sm = snakemake  # noqa: F821 - injected by Snakemake
metrics = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
with atomic_output(sm.output[0]) as tmp:
    deblur_summary(metrics).to_csv(tmp, index=False, float_format="%.4g")
