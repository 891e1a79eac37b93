"""The benchmark table (CSV, Markdown, LaTeX) and figures of one dataset."""

import pandas as pd

from prior_landscape.io.artefacts import atomic_output, read_table
from prior_landscape.report.benchmark_figures import (
    benchmark_table,
    format_table,
    plot_benchmark_grid,
    plot_benchmark_kernels,
)
from prior_landscape.report.landscape_figures import save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
methods = sm.params.methods
testset = read_table(sm.input.testset)
runs = pd.concat([read_table(p) for p in sm.input.runs], ignore_index=True)
estimates = pd.concat([read_table(p) for p in sm.input.estimates], ignore_index=True)
table = benchmark_table(runs, methods, sm.params.reported)
readable = format_table(table)
with atomic_output(sm.output.csv) as tmp:
    table.to_csv(tmp, index=False, float_format="%.5g")
with atomic_output(sm.output.md) as tmp:
    tmp.write_text(readable.to_markdown(index=False))
with atomic_output(sm.output.tex) as tmp:
    readable.to_latex(tmp, index=False)
save_figure(plot_benchmark_grid(testset, estimates, runs, methods), sm.output.grid, None)
save_figure(plot_benchmark_kernels(testset, runs, methods), sm.output.kernels, None)
