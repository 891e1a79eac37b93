"""The benchmark table (CSV, Markdown, LaTeX) and figures of one dataset."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.benchmark_figures import (
    benchmark_table,
    format_table,
    plot_benchmark_grid,
    plot_benchmark_kernels,
)
from prior_landscape.report.landscape_figures import save_figure
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
methods = sm.params.methods
testset = read_table(sm.input.testset)
runs = pd.concat([read_table(p) for p in sm.input.runs], ignore_index=True)
if "perceptual" in sm.input.keys():  # paper scale: LPIPS per case, FID per seed
    scores = pd.concat([read_table(p) for p in sm.input.perceptual], ignore_index=True)
    runs = runs.merge(scores.drop(columns=["fid_images"], errors="ignore"), on=["case", "method", "seed"], how="left")
estimates = pd.concat([read_table(p) for p in sm.input.estimates], ignore_index=True)
table = benchmark_table(runs, methods, sm.params.reported)
o = sm.output
caption = f"Benchmark, {sm.wildcards.dataset}: medians over the cases (mean ± std over seeds), ★ best blind method"
write_table_files(format_table(table), o.csv, markdown=o.md, latex=o.tex, caption=caption, data=table)
save_figure(plot_benchmark_grid(testset, estimates, runs, methods), sm.output.grid, None)
save_figure(plot_benchmark_kernels(testset, runs, methods, estimates), sm.output.kernels, None)
