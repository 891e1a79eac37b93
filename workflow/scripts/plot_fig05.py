"""Fig. 5: the four 1-D blur families."""

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.landscape_figures import plot_blur_families, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
fig = plot_blur_families(read_table(sm.input[0]))
save_figure(fig, sm.output.png, sm.output.pdf)
