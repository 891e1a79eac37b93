"""A prior on whole images from a prior on patches, in the spirit of EPLL (Zoran & Weiss 2011).

The demo's analytic mixture models 16×16 crops; deblurring needs images large enough to
deblur (64×64 and up). Following the expected patch log likelihood, the potential of an image
is the mean of the patch potentials over the overlapping size×size patches P_i x of a grid of
stride s on the image torus,

    q(x) = (1/c) Σ_i q_p(P_i x),        c = (size/s)²  (the patches covering each pixel),

so that ∇q(x) = (1/c) Σ_i P_iᵀ ∇q_p(P_i x), and at every noise level the score is the same
patch average of the patch prior's score (a product of experts; at σ > 0 an approximation of
the diffused density's score, used for the Tweedie denoiser). Everything the patch prior
declares carries over: an exact potential (the mixture's), and the Lipschitz bound of ∇q, since
(1/c) Σ_i P_iᵀ H P_i ≼ L_p (1/c) Σ_i P_iᵀ P_i = L_p I. The image size is the prior's
``image_shape``; :meth:`at_shape` gives the same prior for another size. Written here: no
library implements EPLL for diffusion priors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prior_landscape.priors.base import DiffusionPrior

__all__ = ["PatchPrior"]


class PatchPrior(DiffusionPrior):
    def __init__(self, base: DiffusionPrior, image_shape: tuple[int, int, int], stride: int = 8, name: str = "patch"):
        C, p, p2 = base.image_shape
        if p != p2:
            raise ValueError(f"the patch prior must model square patches, got {base.image_shape}")
        if not (1 <= stride <= p and p % stride == 0):
            raise ValueError(f"stride must divide the patch size {p}, got {stride}")
        if image_shape[0] != C or image_shape[1] % stride or image_shape[2] % stride or min(image_shape[1:]) < p:
            raise ValueError(f"images {image_shape} must have {C} channel(s), sides ≥ {p} and divisible by {stride}")
        self.base, self.stride, self.size = base, int(stride), int(p)
        self.image_shape, self.name, self.schedule = tuple(int(s) for s in image_shape), name, base.schedule
        self.has_exact_potential = base.has_exact_potential

    # ------------------------------------------------------------ patches of the torus
    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B·L, C, p, p): every patch of the stride-s grid, wrapping around the image."""
        B, C = x.shape[:2]
        pad = self.size - self.stride
        xp = F.pad(x, (0, pad, 0, pad), mode="circular")
        cols = F.unfold(xp, self.size, stride=self.stride)  # (B, C·p·p, L)
        return cols.transpose(1, 2).reshape(-1, C, self.size, self.size)

    def _average(self, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(1/c) Σ_i P_iᵀ v_i: patch values folded back onto the torus and averaged."""
        B, C, H, W = x.shape
        pad = self.size - self.stride
        cols = values.reshape(B, -1, C * self.size * self.size).transpose(1, 2)
        canvas = F.fold(cols, (H + pad, W + pad), self.size, stride=self.stride)
        out = canvas[..., :H, :W].clone()
        out[..., :pad, :] += canvas[..., H:, :W]
        out[..., :, :pad] += canvas[..., :H, W:]
        out[..., :pad, :pad] += canvas[..., H:, W:]
        return out / (self.size // self.stride) ** 2

    # ------------------------------------------------------------ the interface
    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        per_patch = (x.shape[-2] // self.stride) * (x.shape[-1] // self.stride)
        if sig.ndim == 1:  # one σ per image: repeat it for its patches
            sig = sig.repeat_interleave(per_patch)
        return self._average(self.base.score(self._patches(x), sig), x)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        q = self.base.potential(self._patches(x)).reshape(x.shape[0], -1)
        return q.sum(1) / (self.size // self.stride) ** 2

    def hessian_potential(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [
                torch.func.jacrev(lambda v: self.grad_potential(v[None])[0].flatten())(xi).reshape(
                    xi.numel(), xi.numel()
                )
                for xi in x
            ]
        )

    def lipschitz_bound(self) -> float | None:
        return self.base.lipschitz_bound()

    def num_parameters(self) -> int:
        return self.base.num_parameters()

    def defining_values(self) -> dict:
        return {"base": self.base, "stride": self.stride}

    def at_shape(self, image_shape: tuple[int, int, int]) -> PatchPrior:
        """The same prior on images of another size."""
        return PatchPrior(self.base, image_shape, self.stride, self.name)

    def save(self, path) -> None:
        from prior_landscape.io.artefacts import atomic_output

        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    def to(self, device_or_dtype) -> PatchPrior:
        self.base.to(device_or_dtype)
        return self

    def state(self) -> dict:
        """What :func:`prior_landscape.priors.load_prior` reads back (the patch prior's own state inside)."""
        return {
            "kind": "patch",
            "name": self.name,
            "image_shape": list(self.image_shape),
            "stride": self.stride,
            "base": self.base.state(),
        }
