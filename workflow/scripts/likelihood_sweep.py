"""q(h_θ ⋆ x) for one prior over every blur family and θ (P §2.3, Figs. 6–8): the whole sweep, or
the images of one shard (rule likelihood_sweep with the {shard} wildcard: prior_landscape.shards)."""

import pandas as pd

from prior_landscape.config import theta_grid
from prior_landscape.inverse.operators import blur, blurred_crops
from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import class_labels, crop_positions, heldout_digits, load_photographs, prior_images
from prior_landscape.landscape.potential import PotentialSettings
from prior_landscape.landscape.sweeps import likelihood_sweep
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
p = sm.params
job = start_job(
    sm,
    {
        "sweep": p.sweep,
        "blur": p.blur,
        "potential": p.potential,
        "data": p.data,
        "training_data": p.source,
        "terminal": p.terminal,
    },
    {"crops": p.sweep["seed"], "probes": p.sweep["seed"]},
)
prior = load_prior(sm.input.model, job.device, terminal=p.terminal)  # p_T of P eq. 7: the config's
n, size, padding = p.sweep["n_images"], p.data["crop_size"], p.blur["padding"]
if p.images:
    # paper scale: whole images of the prior's own training set (P Fig. 7), blurred with the
    # configured boundary mode (reflect: no artificial edges)
    x, ids = prior_images(p.images, p.resource_root, n, p.sweep["seed"])
    table = pd.DataFrame({"image": ids, "row": 0, "col": 0})
    labels = class_labels(prior.pooled_labels, p.images, ids)  # a prior pooling classes: each image's own
    if labels is not None:
        table["class_label"] = labels
elif p.source == "photographs":
    # held-out photographs, blurred whole then cropped (no wrapped or padded borders)
    photos, x = load_photographs(p.data["photographs"]["heldout"], p.data["downscale"]), None
    crops = crop_positions(photos, n, size, p.sweep["seed"], p.blur["kernel_size"] // 2, p.sweep["min_crop_std"])
    table = pd.DataFrame(
        {"image": [c.image for c in crops], "row": [c.row for c in crops], "col": [c.col for c in crops]}
    )
else:
    # held-out binary digits: black background, so the whole image is blurred
    x = heldout_digits(n, size)
    table = pd.DataFrame({"image": [f"digit-{i}" for i in range(n)], "row": 0, "col": 0})
shard = Shard.of_job("likelihood_sweep", sm.wildcards, len(table))
units = shard.units  # the sweep's images this job computes (all when unsharded)
job.log.info("shard %d of %d: images %s", shard.index, shard.count, units.tolist())
if x is None:  # crops of the photographs
    mine = [crops[u] for u in units]
    blurred = lambda h: blurred_crops(photos, mine, h, padding)  # noqa: E731
else:
    mine = x[units].double()
    blurred = lambda h: blur(mine, h, padding=padding).float()  # noqa: E731
settings = PotentialSettings.from_config(job.settings(p.potential, "potential"))
df = likelihood_sweep(
    prior,
    blurred,
    table.iloc[units].reset_index(drop=True),
    p.sweep["families"],
    theta_grid(p.sweep["theta"]),
    kernel_size=p.blur["kernel_size"],
    settings=settings,
    device=job.device,
    seed=p.sweep["seed"],
    image_ids=units,
)
write_table(df, sm.output[0], job.provenance(**shard.provenance()))
