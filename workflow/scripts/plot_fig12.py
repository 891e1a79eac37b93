"""Fig. 12: Algorithm 1 with simplex kernels, uniform and Gaussian initialisations, kernels along the iterations."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.posterior_figures import plot_simplex_initialisations, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
fig = plot_simplex_initialisations(load(sm.input.metrics), load(sm.input.images), load(sm.input.trajectory))
save_figure(fig, sm.output.png, sm.output.pdf)
