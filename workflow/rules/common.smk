# Shared definitions: config validation, prior lookups, target lists.

from prior_landscape.config import validate_config, theta_grid

# Stops the run before any job starts, naming every bad key.
validate_config(config, source="config (config.yaml and --config overrides)")

RESULTS = "results"
PRIORS = list(config["priors"])


def priors_of_kind(kind):
    names = [p for p, c in config["priors"].items() if c["kind"] == kind]
    # a regex that matches nothing when no prior has this kind
    return "|".join(names) if names else "(?!x)x"


def prior_config(wildcards):
    return config["priors"][wildcards.prior]


def all_targets():
    return [
        f"{RESULTS}/figures/fig05.png",
        f"{RESULTS}/figures/fig07.png",
        f"{RESULTS}/tables/tab01.csv",
    ]
