"""The learned peers' image priors at paper scale: DDPM ε-networks of the guided-diffusion family (deepinv's
``DiffUNet``: DPS/BlindDPS's FFHQ-256 model ``diffusion_ffhq_10m.pt``, the ImageNet-256 model
``diffusion_openai.pt``, BlindDPS's AFHQ-dog-256 model) seen through the project's prior interface.

A DDPM network ε_θ(x_t, t) on the linear schedule (T = 1000) is a VE prior on [0, 1] images at the
noise levels σ_t = ½ √((1 − ᾱ_t)/ᾱ_t) of its grid (:mod:`prior_landscape.methods.ddpm`, docs/peers_design.md §0.2):
a [0, 1] image u with VE noise σ_t is the VP state x_t = √ᾱ_t (2u − 1), and Tweedie's estimate gives

    x̂₀ = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t))/√ᾱ_t,   D(u, σ_t) = (x̂₀ + 1)/2,   s(u, σ_t) = (D − u)/σ_t².

The peers' samplers only ask for σ on the grid, where this is exact; other σ use the nearest t (in
log σ), an approximation. The network's learned-variance channels are not used (our samplers take the
fixed-small variance; a labelled deviation from BlindDPS's learned range).
"""

from __future__ import annotations

from pathlib import Path

import torch

from prior_landscape.priors.base import NetworkPrior, sigma_batch
from prior_landscape.priors.schedules import VESchedule

__all__ = ["DDPMPrior", "load_benchmark_prior"]


def _alpha_bar(T: int = 1000) -> torch.Tensor:
    return torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0)


class DDPMPrior(NetworkPrior):
    """A guided-diffusion ε-network (``forward_diffusion(x_t, t)`` → ε and variance channels) as a VE prior
    on (C, H, W) images in [0, 1] (module docstring)."""

    def __init__(self, net: torch.nn.Module, image_shape, name: str = "ddpm", config: dict | None = None):
        self._setup(net)
        self.image_shape, self.name, self.config = tuple(int(s) for s in image_shape), name, dict(config or {})
        ab = _alpha_bar()
        self.sigmas = 0.5 * ((1 - ab) / ab).sqrt()  # σ_t of the grid, increasing in t
        self.schedule = VESchedule(float(self.sigmas[0]), float(self.sigmas[-1]), t_eps=1e-3)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The grid index t whose σ_t is nearest σ (in log σ), per sample."""
        d = (self.sigmas.log()[None, :] - sigma.double().log()[:, None].cpu()).abs()
        return d.argmin(1)

    def score(self, u: torch.Tensor, sigma) -> torch.Tensor:
        self._check(u)
        sig = sigma_batch(sigma, u)
        t = self.timestep(sig)
        ab = _alpha_bar()[t].to(u.device, u.dtype)[:, None, None, None]
        x_t = ab.sqrt() * (2.0 * u - 1.0)
        eps = self.net.forward_diffusion(x_t.to(self.dtype), t.to(u.device))[:, : u.shape[1]].to(u.dtype)
        D = ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt() + 1.0) / 2.0
        return (D - u) / sig[:, None, None, None] ** 2

    def at_shape(self, image_shape) -> DDPMPrior:
        if tuple(image_shape) == self.image_shape:
            return self
        return DDPMPrior(self.net, image_shape, self.name, self.config)

    def defining_values(self) -> dict:
        return {"net": self.net, "config": self.config}

    def state(self) -> dict:
        return {"kind": "ddpm", "name": self.name, "config": self.config, "image_shape": list(self.image_shape),
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}  # fmt: skip

    def save(self, path: str | Path) -> None:
        from prior_landscape.io.artefacts import atomic_output

        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, image_shape, name: str, large_model: bool = False) -> DDPMPrior:
        """deepinv's ``DiffUNet`` (guided-diffusion's UNet; ``large_model``: the ImageNet-256 one) with the
        released weights at ``checkpoint`` (strict loading: a wrong file is an error naming it)."""
        from deepinv.models import DiffUNet

        try:
            net = DiffUNet(in_channels=image_shape[0], out_channels=image_shape[0], large_model=large_model,
                           pretrained=str(checkpoint))  # fmt: skip
        except RuntimeError as err:
            raise ValueError(f"{checkpoint} does not hold DiffUNet(large_model={large_model}) weights: {err}") from err
        return cls(net, image_shape, name, {"large_model": bool(large_model), "channels": int(image_shape[0])})

    @classmethod
    def from_state(cls, state: dict, source: str = "the state") -> DDPMPrior:
        from deepinv.models import DiffUNet

        if not isinstance(state, dict) or state.get("kind") != "ddpm":
            raise ValueError(f"{source} does not hold a DDPM prior")
        cfg = state["config"]
        with torch.random.fork_rng(devices=[]):
            net = DiffUNet(cfg["channels"], cfg["channels"], large_model=cfg["large_model"], pretrained=None)
        net.load_state_dict(state["state_dict"])
        return cls(net, tuple(state["image_shape"]), state["name"], cfg)


def load_benchmark_prior(path: str | Path, device: str = "cpu"):
    """A prior a benchmark method names: a DDPM prior (kind ``ddpm``) or any prior :func:`load_prior` reads."""
    from prior_landscape.priors import load_prior

    path = Path(path)
    if path.suffix == ".pt" and path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - not ours: load_prior says what it is
            state = None
        if isinstance(state, dict) and state.get("kind") == "ddpm":
            return DDPMPrior.from_state(state, source=str(path)).to(device)
    return load_prior(path, device)
