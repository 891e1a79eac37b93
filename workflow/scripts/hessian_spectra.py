"""Full Hessian spectra of q at critical points and the intrinsic dimension (P §2.2, Fig. 4): every point,
or those of one shard (rule hessian_spectra with the {shard} wildcard: prior_landscape.shards)."""

import numpy as np
import pandas as pd
import torch

from prior_landscape.io.artefacts import read_table, write_table
from prior_landscape.landscape.hessian import hessian_of_potential, intrinsic_dimension, spectrum
from prior_landscape.priors import load_prior
from prior_landscape.runtime import start_job
from prior_landscape.shards import Shard

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg = sm.params.hessian
job = start_job(sm, {"hessian": cfg}, {})
chunk_size = job.speed("hessian")["chunk_size"]  # a speed-only setting
prior = load_prior(sm.input.model, job.device).to(torch.float64)  # float64 throughout (P: singular values in float64)
points = read_table(sm.input.images)
points = points[points.group == "training set"].head(cfg["n_points"]).reset_index(drop=True)
if list(points.image) != list(range(len(points))):  # the points are the shards' units 0 … n − 1
    raise ValueError(f"{sm.input.images}: the training-set starts are images {list(points.image)}, not 0 … n − 1")
shard = Shard.of_job("hessian_spectra", sm.wildcards, len(points))
job.log.info("critical points %s of %d", shard.units.tolist(), shard.n_units)
rows = []
for _, pt in points.iloc[shard.units].iterrows():
    x = torch.as_tensor(np.asarray(pt["end"], dtype=np.float64)).reshape(1, *prior.image_shape).to(job.device)
    # a prior pooling classes: the Hessian of the class the point descended under
    at = prior if prior.pooled_labels is None else prior.for_class(int(pt["class_label"]))
    H = hessian_of_potential(at, x, chunk_size=chunk_size)
    sv = spectrum(H)
    dim = intrinsic_dimension(sv, cfg["threshold"], relative=cfg["relative"])
    job.log.info("critical point %d: intrinsic dimension %d (λ_max %.3g, λ_min %.3g)", pt["image"], dim, sv[0], sv[-1])
    rows.append(
        pd.DataFrame(
            {
                "prior": prior.name,
                "point": int(pt["image"]),
                "index": np.arange(len(sv)),
                "singular_value": sv,
                "intrinsic_dimension": dim,
            }
        )
    )
columns = ["prior", "point", "index", "singular_value", "intrinsic_dimension"]
table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)  # an empty shard
write_table(table, sm.output.table, job.provenance(**shard.provenance()))
