"""P's methods in the benchmark: Algorithm 1 from the large and from the small initialisation,
Algorithm 2 with a denoiser, and P's image step with the true kernel (the prior's ceiling).

Free kernels on the simplex of the problem's support (P §5.2): "large" is the uniform kernel,
"small" a Gaussian of ``gaussian_sigma`` px (P Fig. 12). A run's convergence criterion is the
relative change of the kernel over its last outer iteration, ‖θ_K − θ_{K−1}‖ / ‖θ_{K−1}‖ ≤
``kernel_tol``; the estimate says whether every image met it.
"""

from __future__ import annotations

import torch

from prior_landscape.inverse.algorithms import AlternatingSettings, algorithm1, algorithm1_image_step, algorithm2
from prior_landscape.inverse.kernels import SimplexKernel, simplex_initialisation
from prior_landscape.inverse.operators import kernel_otf
from prior_landscape.methods.base import Context, Estimate, Problem, method

__all__ = ["p_algorithm1", "p_algorithm2", "p_image_step"]


def _settings(problem, n_iter, n_inner, gamma_x, gamma_theta, reset_every) -> AlternatingSettings:
    return AlternatingSettings(
        problem.sigma_y,
        n_iter=n_iter,
        n_inner=n_inner,
        gamma_x=gamma_x,
        gamma_theta=gamma_theta,
        reset_every=reset_every,
    )


def _estimate(res, kernel_tol: float) -> Estimate:
    change = res.trajectory[res.trajectory.iteration == res.n_iter].theta_change.to_numpy()
    met = bool((change <= kernel_tol).all())
    return Estimate(
        res.x,
        res.kernel,
        converged=met,
        note=f"kernel change {change.max():.2e} at K = {res.n_iter} ({'≤' if met else '>'} {kernel_tol:g})",
    )


@method("p-algorithm1", needs=("prior",))
def p_algorithm1(
    problem: Problem,
    context: Context,
    *,
    init: str = "large",
    n_iter: int = 100,
    n_inner: int = 10,
    gamma_x: float = 1.0,
    gamma_theta: float = 0.05,
    reset_every: int | None = 50,
    gaussian_sigma: float = 1.5,
    kernel_tol: float = 1e-3,
) -> Estimate:
    """P's Algorithm 1 (prox-gradient image steps with the diffusion prior's ∇q, projected kernel steps)."""
    theta0 = simplex_initialisation(problem.kernel_size, init, sigma=gaussian_sigma).to(problem.y)
    res = algorithm1(
        problem.y,
        SimplexKernel(problem.kernel_size),
        theta0,
        context.prior,
        _settings(problem, n_iter, n_inner, gamma_x, gamma_theta, reset_every),
        options=context.options,
    )
    return _estimate(res, kernel_tol)


@method("p-algorithm2", needs=("denoiser",))
def p_algorithm2(
    problem: Problem,
    context: Context,
    *,
    n_iter: int = 100,
    n_inner: int = 10,
    gamma_x: float = 1.0,
    gamma_theta: float = 0.05,
    reset_every: int | None = 50,
    kernel_tol: float = 1e-3,
) -> Estimate:
    """P's Algorithm 2 (Douglas–Rachford image steps with a denoiser) from the uniform kernel."""
    theta0 = simplex_initialisation(problem.kernel_size, "large").to(problem.y)
    res = algorithm2(
        problem.y,
        SimplexKernel(problem.kernel_size),
        theta0,
        context.denoiser,
        _settings(problem, n_iter, n_inner, gamma_x, gamma_theta, reset_every),
        options=context.options,
    )
    return _estimate(res, kernel_tol)


@method("p-image-step", reference=True, needs=("prior", "true_kernel"))
def p_image_step(problem: Problem, context: Context, *, n_steps: int = 200, gamma_x: float = 1.0) -> Estimate:
    """P's image step with the true kernel: x ← prox_{γ_x f}(x − γ_x σ_y² ∇q(x)), the prior's non-blind ceiling."""
    y = problem.y
    otf = kernel_otf(context.true_kernel.to(y), tuple(y.shape[-2:]))
    x = y.clone()
    with torch.no_grad():
        for _ in range(n_steps):
            x = algorithm1_image_step(x, y, otf, context.prior, problem.sigma_y, gamma_x)
    return Estimate(x, context.true_kernel)
