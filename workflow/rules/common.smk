# Shared definitions: config validation, prior lookups, target lists.

from prior_landscape.config import validate_config, theta_grid

# Stops the run before any job starts, naming every bad key.
validate_config(config, source="config (config.yaml and --config overrides)")

RESULTS = "results"
PRIORS = list(config["priors"])


def priors_of_kind(*kinds):
    names = [p for p, c in config["priors"].items() if c["kind"] in kinds]
    # a regex that matches nothing when no prior has this kind
    return "|".join(names) if names else "(?!x)x"


def training_data(prior):
    return config["priors"][prior].get("training_data", "photographs")


def priors_trained_on(source):
    return [p for p in PRIORS if training_data(p) == source]


NATURAL_PRIORS = priors_trained_on("photographs")
# P §2.3 Fig. 8: binarized digits (scikit-learn's at demo scale, MNIST at paper scale)
DIGIT_PRIORS = priors_trained_on("binary_digits") + priors_trained_on("mnist")
# P Fig. 4: full Hessians (d × d) only where d allows (the paper: the 64-px priors)
HESSIAN_PRIORS = config["hessian"].get("priors", NATURAL_PRIORS)
for _i, _p in enumerate(HESSIAN_PRIORS):
    if _p not in config["priors"]:
        from prior_landscape.config import ConfigError

        raise ConfigError(f"hessian.priors.{_i}: {_p!r} is not a prior of config['priors'] ({', '.join(PRIORS)})")


def more_time(minutes):
    """A runtime that grows with the attempt (profiles/slurm retries failed jobs): the long jobs
    resume from their saved state, so a job killed at its time limit finishes on the next try."""
    return lambda wildcards, attempt: minutes * attempt


def prior_config(wildcards):
    return config["priors"][wildcards.prior]


def all_targets():
    figures = ["fig05", "fig07"]
    if NATURAL_PRIORS:
        figures += ["fig01", "fig02", "fig03", "fig04", "fig06"]
    if DIGIT_PRIORS:
        figures += ["fig08"]
    # P §4–5 and Appendix B: posterior profiles and blind deconvolution (workflow/rules/posterior.smk)
    figures += ["fig09", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15"]
    return [f"{RESULTS}/figures/{f}.png" for f in sorted(figures)] + [
        f"{RESULTS}/tables/tab01.csv",
        f"{RESULTS}/tables/deblur_metrics.csv",
    ]
