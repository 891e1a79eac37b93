"""Figs. 1–3: critical points, q along the descent, distance and potential gap by start group."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.landscape_figures import (
    plot_critical_point_statistics,
    plot_critical_points,
    plot_descent_potential,
    save_figure,
)
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
summary, trajectory, images = load(sm.input.summary), load(sm.input.trajectory), load(sm.input.images)
save_figure(plot_critical_points(images, summary), sm.output.fig01, sm.output.fig01_pdf)
save_figure(plot_descent_potential(trajectory, summary), sm.output.fig02, sm.output.fig02_pdf)
save_figure(plot_critical_point_statistics(summary), sm.output.fig03, sm.output.fig03_pdf)
by = summary.groupby(["prior", "group"], sort=False)
table = (
    by[["relative_distance", "q_drop", "grad_norm_end", "grad_ratio"]].median().rename(columns=lambda c: f"median {c}")
)
table["critical points reached"] = by.converged.sum().astype(int).astype(str) + "/" + by.size().astype(str)
o = sm.output
caption = "Critical-point summary (Figs. 1–3)"
write_table_files(table, o.summary, markdown=o.summary_md, latex=o.summary_tex, caption=caption, index=True)
