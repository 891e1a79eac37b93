"""Diffusion priors behind one interface (:class:`DiffusionPrior`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from prior_landscape.priors.base import DiffusionPrior
from prior_landscape.priors.mixture import GaussianMixturePrior
from prior_landscape.priors.scorenet import ScoreNetworkPrior

__all__ = ["DiffusionPrior", "GaussianMixturePrior", "ScoreNetworkPrior", "load_prior", "prior_from_state"]


def load_prior(
    path: str | Path,
    device: str = "cpu",
    name: str | None = None,
    class_label: int | None = None,
    terminal: str | None = None,
) -> DiffusionPrior:
    """Load a prior: a checkpoint written by this package (dispatching on its ``kind``;
    converted pre-trained networks come as their view on [0, 1] images), an EDM
    pickle (``.pkl``) or a score_sde checkpoint (``.pth``) in the release's scale.

    ``terminal``: the terminal density p_T of P eq. 7 (a prior config's ``terminal`` key,
    :meth:`DiffusionPrior.use_terminal`): "data_gaussian" refuses a network prior saved without
    data statistics, "isotropic" is P's N(0, σ_T² I); None keeps what the file gives — the data
    Gaussian when it stores statistics, else N(0, σ_T² I) with a logged note."""
    from prior_landscape.priors.pretrained import checkpoint_format, load_converted_prior, load_pretrained_prior

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prior checkpoint {path} does not exist")
    if checkpoint_format(path) is not None:
        prior = load_pretrained_prior(path, name=name, class_label=class_label, device=device)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            kind = state.get("kind")
        except Exception as err:  # noqa: BLE001 - any unpickling failure means not ours
            raise ValueError(f"{path} is not a readable prior checkpoint: {err}") from err
        if kind in ("edm", "score_sde"):
            prior = load_converted_prior(state, device)
        else:
            prior = prior_from_state(state, source=str(path)).to(device)
    if terminal is not None:
        try:
            prior.use_terminal(terminal)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    elif not prior.has_exact_potential and prior.data_statistics is None:
        logging.getLogger(__name__).warning(
            "%s stores no data statistics: its terminal density is P's N(0, σ_T² I), biased far from the data "
            "(prior_landscape.priors.terminal)",
            path,
        )
    return prior


def prior_from_state(state: dict, source: str = "the state") -> DiffusionPrior:
    """A prior of this package from the dict its ``state()`` gives (``source`` names it in errors)."""
    from prior_landscape.priors.patch import PatchPrior

    kind = state.get("kind") if isinstance(state, dict) else None
    if kind == "gaussian_mixture":
        return GaussianMixturePrior.from_state(state, source=source)
    if kind == "score_network":
        return ScoreNetworkPrior.from_state(state, source=source)
    if kind == "patch":
        base = prior_from_state(state["base"], source=f"{source} (its patch prior)")
        return PatchPrior(base, tuple(state["image_shape"]), int(state["stride"]), state["name"])
    raise ValueError(f"{source} holds an unknown prior kind {kind!r}")
