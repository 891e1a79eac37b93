"""Fig. 7: q(h_θ ⋆ x) versus θ, one panel per prior, one curve per blur family."""

import pandas as pd

from prior_landscape.io.artefacts import atomic_output, read_table
from prior_landscape.landscape.sweeps import sweep_summary
from prior_landscape.report.landscape_figures import plot_likelihood_sweeps, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
df = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
save_figure(plot_likelihood_sweeps(df), sm.output.png, sm.output.pdf)
with atomic_output(sm.output.summary) as tmp:
    sweep_summary(df).to_csv(tmp, index=False, float_format="%.4g")
