"""Fig. 6: one image blurred along θ, each panel titled with its q."""

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.landscape_figures import plot_blurred_image_potential, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
save_figure(plot_blurred_image_potential(read_table(sm.input[0])), sm.output.png, sm.output.pdf)
