"""The benchmark's methods behind one interface (:mod:`prior_landscape.methods.base`); importing this
package registers every method (:data:`METHODS`)."""

from prior_landscape.methods import blind_dps, classical, kernel_diff, paper  # noqa: F401 - registers their methods
from prior_landscape.methods.base import METHODS, Context, Estimate, Problem, method, run_method

__all__ = ["METHODS", "PRIOR_KEYS", "Context", "Estimate", "Problem", "method", "run_method", "method_context"]

#: keys naming priors of the configuration (their model files are the run's inputs)
PRIOR_KEYS = ("prior", "denoiser_prior", "kernel_prior")
#: keys of a configured method entry that are not hyper-parameters of its function
ENTRY_KEYS = ("method", *PRIOR_KEYS, "denoiser", "denoiser_sigma", "datasets")


def method_context(
    entry: dict,
    shape,
    sigma_y: float,
    *,
    prior=None,
    denoiser_prior=None,
    kernel_prior=None,
    drunet=None,
    device="cpu",
    options=None,
):
    """The :class:`Context` a configured method entry asks for: its image prior at the images' shape, and
    a Tweedie denoiser of ``denoiser_prior``, or the ``drunet`` network (the entry's ``denoiser``: P's
    Algorithm 2 at paper scale), at σ = ``denoiser_sigma`` (``auto``: σ_y √γ_x, so that D ≈ prox of
    γ_x σ_y² q, as in P's Algorithm 2); a kernel prior (the learned peers') goes to
    ``extra["kernel_prior"]``. Returns the context and the hyper-parameters."""
    import math

    from prior_landscape.inverse.denoisers import DRUNetDenoiser, TweedieDenoiser

    hyper = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
    if (denoiser_prior is not None) + (drunet is not None) > 1:
        raise ValueError("a method entry takes one denoiser: denoiser_prior or denoiser (DRUNet), not both")
    spec = entry.get("denoiser_sigma", "auto")
    sigma = sigma_y * math.sqrt(hyper.get("gamma_x", 1.0)) if spec == "auto" else float(spec)
    denoiser = None
    if denoiser_prior is not None:
        denoiser = TweedieDenoiser(denoiser_prior.at_shape(tuple(shape)), sigma)
    elif drunet is not None:
        denoiser = DRUNetDenoiser(drunet, sigma)
    prior = None if prior is None else prior.at_shape(tuple(shape))
    extra = {} if kernel_prior is None else {"kernel_prior": kernel_prior}
    return Context(prior=prior, denoiser=denoiser, device=device, options=options, extra=extra), hyper
