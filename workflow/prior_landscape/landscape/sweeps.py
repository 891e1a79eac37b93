"""Likelihood sweeps q(h_θ ⋆ x) along the 1-D blur families (P §2.3, Figs. 6–7).

For each family and each θ of the grid, every photograph is blurred whole by h_θ
and the same crops are cut from it; the potential engine then evaluates q on all
(family, θ, crop) images in batches. An image's Hutchinson probes are keyed by
the crop, so the Monte-Carlo noise is shared along θ and the shape of the curve
θ ↦ q(h_θ ⋆ x) is resolved far more finely than a single value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from prior_landscape.landscape.families import kernel
from prior_landscape.landscape.potential import PotentialSettings, potential_batched
from prior_landscape.priors.base import DiffusionPrior

log = logging.getLogger(__name__)


def likelihood_sweep(
    prior: DiffusionPrior,
    blurred: Callable[[torch.Tensor], torch.Tensor],
    images: pd.DataFrame,
    families: list[str],
    thetas: np.ndarray,
    *,
    kernel_size: int = 31,
    settings: PotentialSettings | None = None,
    device: str = "cpu",
    seed: int = 0,
    keep_pixels: int = 1,
    image_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per (family, θ, image): q estimate, its standard error, NFE, and the exact
    q where the prior has one (the analytic mixture).

    ``blurred(h)`` returns the sweep's images blurred by kernel h, in the order of the
    rows of ``images`` (a table describing them: image, row, col, and ``class_label`` for a prior
    that pools classes — each image is evaluated under its class). ``image_ids``: the sweep's
    number of each of them (default 0, 1, …; a shard's, prior_landscape.shards: its units), the key
    of its probes. The pixels of the images numbered below ``keep_pixels`` are kept in the table
    (for P Fig. 6).
    """
    image_ids = np.arange(len(images)) if image_ids is None else np.asarray(image_ids)
    if len(image_ids) != len(images):
        raise ValueError(f"{len(image_ids)} image ids for {len(images)} images")
    blocks, meta = [], []
    for family in families:
        for theta in thetas:
            blocks.append(blurred(kernel(family, float(theta), kernel_size)))
            meta += [(family, float(theta), i) for i in range(len(images))]
    x = torch.cat(blocks)
    rows = np.array([m[2] for m in meta], dtype=np.int64)  # each image's row of ``images``
    ids = image_ids[rows]
    probe_keys = ids  # same probes for an image along θ and across families
    labelled = prior.with_labels(images["class_label"].to_numpy()[rows] if "class_label" in images else None)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        log.info(
            "%s: %d/%d images, %.0f s elapsed, ~%.0f s left",
            prior.name,
            done,
            total,
            elapsed,
            elapsed / done * (total - done),
        )

    res = potential_batched(labelled, x, settings, seed=seed, probe_keys=probe_keys, progress=progress, device=device)
    exact = np.full(len(x), np.nan)
    if prior.has_exact_potential:
        exact = np.concatenate(
            [prior.potential(x[i : i + 256].to(torch.float64)).cpu().numpy() for i in range(0, len(x), 256)]
        )
    flat = x.reshape(len(x), -1).cpu().numpy().astype(np.float32)
    return pd.DataFrame(
        {
            "prior": prior.name,
            "family": [m[0] for m in meta],
            "theta": [m[1] for m in meta],
            "image_id": ids,
            **{col: images[col].to_numpy()[rows] for col in images.columns},
            "pixels": [flat[k] if ids[k] < keep_pixels else None for k in range(len(x))],
            "q": res.q,
            "q_stderr": res.stderr,
            "q_ci95_halfwidth": res.ci95_halfwidth,  # q ± this: a 95 % interval (Student-t over the probes)
            "q_exact": exact,
            "nfe": res.nfe,
        }
    )


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per prior and family: share of images whose q decreases from θ = 0 to θ_max,
    and share whose curve is monotonically decreasing."""
    rows = []
    for (prior, family), g in df.groupby(["prior", "family"]):
        wide = g.pivot(index="image_id", columns="theta", values="q").sort_index(axis=1)
        steps = np.diff(wide.to_numpy(), axis=1)
        rows.append(
            {
                "prior": prior,
                "family": family,
                "n_images": len(wide),
                "share_end_below_start": float((wide.iloc[:, -1] < wide.iloc[:, 0]).mean()),
                "share_monotone_decreasing": float((steps < 0).all(1).mean()),
                "median_q_start": float(wide.iloc[:, 0].median()),
                "median_q_end": float(wide.iloc[:, -1].median()),
            }
        )
    return pd.DataFrame(rows)
