"""True and generated samples of a prior (P Fig. 8a–b)."""

import numpy as np
import pandas as pd

from prior_landscape.io.artefacts import write_table
from prior_landscape.io.images import prior_images, training_images
from prior_landscape.priors import load_prior
from prior_landscape.priors.sampling import sample_reverse_sde
from prior_landscape.runtime import start_job

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg = sm.params.sampling
job = start_job(sm, {"sampling": cfg}, {"seed": cfg["seed"]})
prior = load_prior(sm.input.model, job.device)
n = cfg["n_samples"]
if sm.params.images:  # paper scale: the prior's own dataset (binarized MNIST)
    true, _ = prior_images(sm.params.images, sm.params.resource_root, n, cfg["seed"])
else:
    true = training_images(sm.params.source, sm.params.data, sm.params.seed)
    true = true[np.random.default_rng(cfg["seed"]).choice(len(true), n, replace=False)]
generated = sample_reverse_sde(prior, n, cfg["n_steps"], cfg["seed"], job.device).cpu()
flat = lambda x: list(x.reshape(n, -1).numpy().astype(np.float32))  # noqa: E731
C, H, W = prior.image_shape
table = pd.concat(
    [
        pd.DataFrame({"prior": prior.name, "kind": "true", "index": range(n), "pixels": flat(true)}),
        pd.DataFrame({"prior": prior.name, "kind": "generated", "index": range(n), "pixels": flat(generated)}),
    ],
    ignore_index=True,
).assign(channels=C, height=H, width=W)
write_table(table, sm.output[0], job.provenance())
