"""Fig. 13: Algorithm 2 on the Köhler stand-in (photographs blurred by camera-shake kernels)."""

import pandas as pd

from prior_landscape.artefacts import read_table
from prior_landscape.plots_posterior import plot_kohler, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
fig = plot_kohler(load(sm.input.metrics), load(sm.input.images), load(sm.input.trajectory))
save_figure(fig, sm.output.png, sm.output.pdf)
