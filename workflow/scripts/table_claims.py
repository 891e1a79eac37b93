"""The claims table: P's findings, the measured numbers and a verdict from stated rules."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.claims import claims_table
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake


def load(paths):
    return pd.concat([read_table(p) for p in paths], ignore_index=True) if paths else pd.DataFrame()


table = claims_table(
    sweeps=load(sm.input.sweeps), natural=sm.params.natural, digits=sm.params.digits,
    critical=load(sm.input.critical), spectra=load(sm.input.hessian), noiseless=load(sm.input.noiseless),
    noisy=load(sm.input.noisy), deblur=load(sm.input.deblur), benchmark=load(sm.input.benchmark),
    methods=sm.params.methods,
)  # fmt: skip
o = sm.output
caption = "P's findings, as this run measured them"
write_table_files(table, o.csv, markdown=o.csv_md, latex=o.csv_tex, caption=caption)
