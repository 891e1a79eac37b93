"""The claims table: P's findings, the measured numbers and a verdict from stated rules."""

import pandas as pd

from prior_landscape.io.artefacts import atomic_output, read_table
from prior_landscape.report.claims import claims_table

sm = snakemake  # noqa: F821 - injected by Snakemake


def load(paths):
    return pd.concat([read_table(p) for p in paths], ignore_index=True) if paths else pd.DataFrame()


table = claims_table(
    sweeps=load(sm.input.sweeps), natural=sm.params.natural, digits=sm.params.digits,
    critical=load(sm.input.critical), spectra=load(sm.input.hessian), noiseless=load(sm.input.noiseless),
    noisy=load(sm.input.noisy), deblur=load(sm.input.deblur), benchmark=load(sm.input.benchmark),
    methods=sm.params.methods,
)  # fmt: skip
for path, write in ((sm.output.csv, lambda t: table.to_csv(t, index=False)),
                    (sm.output.md, lambda t: open(t, "w").write(table.to_markdown(index=False))),
                    (sm.output.tex, lambda t: table.to_latex(t, index=False, longtable=True))):  # fmt: skip
    with atomic_output(path) as tmp:
        write(tmp)
