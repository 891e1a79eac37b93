"""Fig. 4: Hessian spectra at critical points and the intrinsic dimension."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.landscape_figures import plot_hessian_spectra, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
spectra = pd.concat([read_table(p) for p in sm.input], ignore_index=True)
fig = plot_hessian_spectra(spectra, sm.params.threshold, sm.params.relative)
save_figure(fig, sm.output.png, sm.output.pdf)
