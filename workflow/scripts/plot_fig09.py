"""Fig. 9: noiseless profiles ℓ^opt(θ) = q(H̃_θ⁻¹ȳ), x̄ from the data and x̄ a critical point."""

import pandas as pd

from prior_landscape.io.artefacts import read_table
from prior_landscape.report.posterior_figures import plot_noiseless_profiles, profile_minima, save_figure
from prior_landscape.report.tables import write_table_files

sm = snakemake  # noqa: F821 - injected by Snakemake
profiles = pd.concat([read_table(p) for p in sm.input.profiles], ignore_index=True)
save_figure(plot_noiseless_profiles(profiles), sm.output.png, sm.output.pdf)
o = sm.output
write_table_files(
    profile_minima(profiles), o.summary, markdown=o.summary_md, latex=o.summary_tex, caption="Profile minima (Fig. 9)"
)
