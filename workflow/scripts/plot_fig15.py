"""Fig. 15: Algorithm 1 with simplex kernels from the uniform initialisation, every image and kernel."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.posterior_figures import plot_simplex_cases, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
save_figure(plot_simplex_cases(load(sm.input.metrics), load(sm.input.images)), sm.output.png, sm.output.pdf)
