"""Fig. 8: the binary-digit prior: true and generated samples, q(h_θ ⋆ x) versus θ."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.landscape_figures import plot_digit_prior, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
save_figure(plot_digit_prior(load(sm.input.samples), load(sm.input.sweeps)), sm.output.png, sm.output.pdf)
