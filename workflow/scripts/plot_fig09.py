"""Fig. 9: noiseless profiles ℓ^opt(θ) = q(H̃_θ⁻¹ȳ), x̄ from the data and x̄ a critical point."""

import pandas as pd

from prior_landscape.io.artefacts import atomic_output, read_table
from prior_landscape.report.posterior_figures import plot_noiseless_profiles, profile_minima, save_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
profiles = pd.concat([read_table(p) for p in sm.input.profiles], ignore_index=True)
save_figure(plot_noiseless_profiles(profiles), sm.output.png, sm.output.pdf)
with atomic_output(sm.output.summary) as tmp:
    profile_minima(profiles).to_csv(tmp, index=False, float_format="%.4g")
