"""The report's entries for the figures: each figure with its caption beside it (report/pages.py)."""

from prior_landscape.report.pages import write_figure_page
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
job = start_job(sm, {})
for name, page in sm.output.items():
    write_figure_page(getattr(sm.input, name), page, sm.params.labels[name], sm.params.captions[name])
job.log.info("%d figure pages written", len(sm.output))
