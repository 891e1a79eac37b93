"""Fig. 7: q(h_θ ⋆ x) versus θ, one panel per prior, one curve per blur family."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.landscape.sweeps import sweep_summary
from prior_landscape.report.landscape_figures import plot_likelihood_sweeps, save_figure
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
df = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
save_figure(plot_likelihood_sweeps(df), sm.output.png, sm.output.pdf)
o = sm.output
write_table_files(
    sweep_summary(df), o.summary, markdown=o.summary_md, latex=o.summary_tex, caption="Sweep summary (Fig. 7)"
)
