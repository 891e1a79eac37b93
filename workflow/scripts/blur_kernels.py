"""Tabulate the 1-D blur families h_θ (P Fig. 5) on the sweep's θ grid."""

import pandas as pd

from prior_landscape.config import theta_grid
from prior_landscape.io.artefacts import write_table
from prior_landscape.landscape.families import kernel
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, dict(sm.params))
size = sm.params.kernel_size
rows = []
for family in sm.params.families:
    for theta in theta_grid(sm.params.theta):
        h = kernel(family, float(theta), size).numpy()
        rows.append({"family": family, "theta": float(theta), "size": size, "kernel": h.ravel().tolist()})
write_table(pd.DataFrame(rows), sm.output[0], job.provenance())
