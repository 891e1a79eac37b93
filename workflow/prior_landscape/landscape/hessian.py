"""The Hessian of the potential and its spectrum (P §2.2, Fig. 4).

P builds the full Hessian ∇²q(x̄) at critical points x̄ column by column,

    ∇²q(x̄) e_k = ∂/∂x [∇q](x̄) · e_k,     ∇q = −score(·, σ(t_ε)),

one Jacobian–vector product of the score network per basis vector e_k, calling
``torch.autograd.functional.jvp`` d times in a Python loop (d = 12288 for 64×64×3
images), then takes its singular values with ``torch.linalg.svdvals`` in double
precision and counts those below 1e-5 as the local intrinsic dimension.

:func:`hessian_of_potential` computes the same matrix with forward-mode AD
(``torch.func.jvp``) vectorised by ``torch.func.vmap`` over chunks of
``chunk_size`` basis vectors: one batched pass per chunk instead of one
double-backward pass per column, memory bounded by ``chunk_size`` tangents.
:func:`hessian_loop` is P's loop, kept as the baseline of ``benchmarks/hessian.py``
and as an independent check.

Measured on 2 shared CPU cores (float32, the demo UNet, d = 256): the batched
JVPs are 5–9× faster than P's loop and ``mode="vjp"`` (vmapped pullback) 10–13×;
a loop of plain ``autograd.grad`` calls on one retained graph is about as fast as
either on CPU. At d = 1024 on CPU the batched JVPs are only ~2.5× faster than P's
loop (the work, d forward-mode passes, is the same; batching only removes the
per-call overhead), so the large-d case (P: d = 12288) is for a GPU:
``python benchmarks/hessian.py --size 64 --channels 3 --device cuda``.

A score network is not exactly a gradient field, so its Jacobian is not exactly
symmetric; the Hessian returned is the symmetric part (J + Jᵀ)/2 unless
``symmetrize=False``. For the analytic mixture prior J is symmetric and equals
``prior.hessian_potential`` to rounding (compute in float64: the mixture works in
float64 and returns the input's dtype).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from prior_landscape.priors.base import DiffusionPrior

__all__ = ["hessian_of_potential", "hessian_loop", "spectrum", "eigenvalues", "intrinsic_dimension"]


def _single_image(prior: DiffusionPrior, x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1 or tuple(x.shape[1:]) != tuple(prior.image_shape):
        raise ValueError(
            f"x must be one image of shape (1, {', '.join(map(str, prior.image_shape))}), got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinity")
    return x.detach()


def _flat_grad(prior: DiffusionPrior, shape: torch.Size):
    """v ↦ ∇q(v) on flattened images: R^d → R^d."""

    def f(v: torch.Tensor) -> torch.Tensor:
        return prior.grad_potential(v.reshape(shape)).reshape(-1)

    return f


def _finish(J: torch.Tensor, symmetrize: bool) -> torch.Tensor:
    """J[i] = ∇²q e_i is the i-th column of the Jacobian: return the Jacobian (or its symmetric part) in float64."""
    J = J.to(torch.float64).T.contiguous()
    if symmetrize:
        J = 0.5 * (J + J.T)
    if not torch.isfinite(J).all():
        raise FloatingPointError("the Hessian of q has non-finite entries (check x's range and the prior)")
    return J


def hessian_of_potential(
    prior: DiffusionPrior,
    x: torch.Tensor,
    *,
    chunk_size: int = 256,
    symmetrize: bool = True,
    mode: str = "jvp",
) -> torch.Tensor:
    """The full Hessian ∇²q(x) (d × d, float64) of one image x (1, C, H, W), by batched JVPs.

    ∇²q = ∂(−score(·, σ(t_ε)))/∂x is assembled from ``torch.func.jvp`` of
    ``prior.grad_potential`` along the basis vectors (columns J e_i), ``chunk_size``
    of them at a time under ``torch.func.vmap`` (memory ∝ chunk_size; the result
    does not depend on it beyond rounding). ``mode="vjp"`` uses reverse mode
    instead (``torch.func.vjp`` once, its pullback vmapped over the basis: rows
    e_iᵀ J), the same matrix after symmetrisation and often faster on CPU. The
    products run in x's dtype and on its device (pass float64 for exactness
    checks); the result is symmetrised (H + Hᵀ)/2 unless ``symmetrize=False`` (then
    the Jacobian J of ∇q itself) and returned in float64 on x's device.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    if mode not in ("jvp", "vjp"):
        raise ValueError(f"mode must be 'jvp' or 'vjp', got {mode!r}")
    x = _single_image(prior, x)
    d = x.numel()
    f = _flat_grad(prior, x.shape)
    x_flat = x.reshape(-1)
    parts = []
    with warnings.catch_warnings():
        # torch loads its forward-AD decompositions through torch.jit.script on first use
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        if mode == "jvp":
            batched = torch.func.vmap(lambda e: torch.func.jvp(f, (x_flat,), (e,))[1])
        else:
            with torch.enable_grad():
                _, pullback = torch.func.vjp(f, x_flat)
            batched = torch.func.vmap(lambda e: pullback(e)[0])
        with torch.no_grad():  # no reverse-mode graph of the products themselves
            for start in range(0, d, chunk_size):
                n = min(chunk_size, d - start)
                E = torch.zeros(n, d, dtype=x.dtype, device=x.device)
                E[torch.arange(n), start + torch.arange(n)] = 1
                parts.append(batched(E))
    V = torch.cat(parts)  # jvp: V[i] = J e_i (column i); vjp: V[i] = e_iᵀ J (row i)
    return _finish(V if mode == "jvp" else V.T, symmetrize)


def hessian_loop(
    prior: DiffusionPrior, x: torch.Tensor, *, method: str = "jvp", columns: int | None = None, symmetrize: bool = True
) -> torch.Tensor:
    """P's construction: one product per basis vector in a Python loop (the benchmark's baseline).

    ``method="jvp"`` is P's call, ``torch.autograd.functional.jvp`` (a
    double-backward pass per column); ``method="vjp"`` keeps one reverse graph and
    takes one ``torch.autograd.grad`` per basis vector (rows of the Jacobian; the
    cheapest loop). ``columns=m < d`` computes only the first m products and
    returns them as an (m, d) float64 block, unsymmetrised (row i = J e_i for
    "jvp", e_iᵀ J for "vjp"; the same for a symmetric Jacobian), for timing a loop
    too long to finish; otherwise the result is as :func:`hessian_of_potential`'s.
    """
    x = _single_image(prior, x)
    d = x.numel()
    m = d if columns is None else int(columns)
    if not 1 <= m <= d:
        raise ValueError(f"columns must be in [1, {d}], got {columns}")
    f = _flat_grad(prior, x.shape)
    x_flat = x.reshape(-1)
    out = []
    if method == "jvp":
        for i in range(m):
            e = torch.zeros(d, dtype=x.dtype, device=x.device)
            e[i] = 1
            out.append(torch.autograd.functional.jvp(f, x_flat, e)[1].detach())
    elif method == "vjp":
        with torch.enable_grad():
            xg = x_flat.clone().requires_grad_(True)
            g = f(xg)
            for i in range(m):
                e = torch.zeros(d, dtype=x.dtype, device=x.device)
                e[i] = 1
                (row,) = torch.autograd.grad(g, xg, e, retain_graph=i < m - 1)
                out.append(row.detach())
    else:
        raise ValueError(f"method must be 'jvp' or 'vjp', got {method!r}")
    V = torch.stack(out)  # jvp: V[i] = J e_i (column i); vjp: V[i] = e_iᵀ J (row i)
    if m < d:
        return V.to(torch.float64)
    # _finish takes columns stacked as rows
    return _finish(V if method == "jvp" else V.T, symmetrize)


def spectrum(H: torch.Tensor | np.ndarray) -> np.ndarray:
    """Singular values of H in float64, in descending order (P: ``torch.linalg.svdvals``, double precision).

    For a symmetric H they are the absolute eigenvalues, so a saddle's negative
    curvature counts by its magnitude; use :func:`eigenvalues` for the signs.
    """
    H = torch.as_tensor(H).to(torch.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {tuple(H.shape)}")
    if not torch.isfinite(H).all():
        raise ValueError("H contains NaN or infinity")
    return torch.linalg.svdvals(H).cpu().numpy()


def eigenvalues(H: torch.Tensor | np.ndarray) -> np.ndarray:
    """Signed eigenvalues of the symmetric part of H in float64, ascending (second-order criticality: all ≥ 0)."""
    H = torch.as_tensor(H).to(torch.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {tuple(H.shape)}")
    return torch.linalg.eigvalsh(0.5 * (H + H.T)).cpu().numpy()


def intrinsic_dimension(singular_values, threshold: float = 1e-5, relative: bool = False) -> int:
    """The number of singular values below ``threshold``: P's local intrinsic dimension (Fig. 4).

    P thresholds at an absolute 1e-5 and finds 36 (FFHQ-64) and 16 (AFHQ-64). An
    absolute threshold is tied to the scale of its networks' potentials (images in
    [−1, 1], σ(t_ε) of its schedules): the Hessian's scale is ~1/σ_ε² across the
    image manifold and much smaller along it, and a prior on [0, 1] images or with
    another t_ε shifts every value. ``relative=True`` counts values below
    ``threshold × max(singular_values)`` instead, a scale-free variant (the ratio
    of manifold to off-manifold curvature). For the analytic mixture near a
    component mean the values are 1/(s_j + c) along its rank-r subspace and 1/c
    elsewhere (c = φ + σ_ε²), so any threshold between them counts r.
    """
    sv = np.asarray(singular_values, dtype=np.float64).ravel()
    if sv.size == 0:
        raise ValueError("no singular values given")
    if not np.isfinite(sv).all():
        raise ValueError("singular values contain NaN or infinity")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    cut = threshold * float(np.max(np.abs(sv))) if relative else threshold
    return int(np.count_nonzero(np.abs(sv) < cut))
