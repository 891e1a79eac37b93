"""q(h_θ ⋆ x) for one prior over every blur family and θ (P §2.3, Fig. 7)."""

from prior_landscape.artefacts import write_table
from prior_landscape.config import theta_grid
from prior_landscape.data import crop_positions, load_photographs
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job
from prior_landscape.sweeps import likelihood_sweep

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
job = start_job(
    sm, {"sweep": p.sweep, "blur": p.blur, "potential": p.potential, "data": p.data},
    {"crops": p.sweep["seed"], "probes": p.sweep["seed"]}, device=p.device,
)
prior = load_prior(sm.input.model, job.device)
images = load_photographs(p.data["photographs"]["heldout"], p.data["downscale"])
margin = p.blur["kernel_size"] // 2
crops = crop_positions(images, p.sweep["n_images"], p.data["crop_size"], p.sweep["seed"], margin, p.sweep["min_crop_std"])
pot = dict(p.potential)
df = likelihood_sweep(
    prior, images, crops, p.sweep["families"], theta_grid(p.sweep["theta"]),
    kernel_size=p.blur["kernel_size"], padding=p.blur["padding"], batch_size=pot.pop("batch_size"),
    device=job.device, seed=p.sweep["seed"], **pot,
)
write_table(df, sm.output[0], job.provenance())
