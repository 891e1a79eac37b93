"""Fig. 13: Algorithm 2 on the Köhler case: real shots with DRUNet (paper), or the stand-in
(photographs blurred by camera-shake kernels, Tweedie denoiser of a prior; demo)."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.posterior_figures import plot_kohler, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
load = lambda paths: pd.concat([read_table(p) for p in paths], ignore_index=True)  # noqa: E731
kohler = sm.config["deblur"]["kohler"]
denoiser = "DRUNet" if kohler.get("denoiser") else "Tweedie denoiser"
data = "real Köhler et al. shots" if kohler.get("data") else "photographs blurred by camera-shake kernels"
title = f"Algorithm 2 (Douglas–Rachford, {denoiser}) on {data}"
fig = plot_kohler(load(sm.input.metrics), load(sm.input.images), load(sm.input.trajectory), title=title)
save_figure(fig, sm.output.png, sm.output.pdf)
