# P §4–5 and Appendix B: the posterior profiles ℓ^opt(θ) (Figs. 9–10) and blind
# deconvolution by Algorithms 1 and 2 (Figs. 11–15). Config: posterior, deblur.
#
#   snakemake --cores 2 results/figures/fig11.png     # one Zernike case and its figure
#
# 16×16 problems gain nothing from intra-op threads (they only add contention),
# so the compute rules run on one thread and Snakemake runs them side by side.

import re
from pathlib import Path

POSTERIOR_PRIORS = list(config["posterior"]["priors"])
DEBLUR = config["deblur"]


def _check_prior(key, name):
    if name not in config["priors"]:
        raise ValueError(f"{key}: {name!r} is not a prior of config['priors'] ({', '.join(config['priors'])})")


for _i, _p in enumerate(POSTERIOR_PRIORS):
    _check_prior(f"posterior.priors.{_i}", _p)
_check_prior("deblur.prior", DEBLUR["prior"])
KOHLER = DEBLUR["kohler"]
# Fig. 13's denoiser: DRUNet weights of the catalogue (paper), else the Tweedie denoiser of a prior
KOHLER_DENOISER = KOHLER.get("denoiser")
# Fig. 13's data: real Köhler shots (paper), else the bundled-photograph stand-in
KOHLER_DATA = KOHLER.get("data")
KOHLER_PRIOR = None if KOHLER_DENOISER else KOHLER["prior"]  # with DRUNet, `prior` is unused
if KOHLER_PRIOR is not None:
    _check_prior("deblur.kohler.prior", KOHLER_PRIOR)


def _check_kohler_resources():
    from prior_landscape.config import ConfigError

    for key, section in (("denoiser", KOHLER_DENOISER), ("data", KOHLER_DATA)):
        if section and section["resource"] not in CATALOGUE:
            raise ConfigError(f"deblur.kohler.{key}.resource: unknown resource {section['resource']!r} "
                              f"(known: {', '.join(CATALOGUE)})")


_check_kohler_resources()

# one deblurring case per Zernike noise level (Figs. 11, 14), the simplex kernels
# (Figs. 12, 15) and the Köhler case (Fig. 13: real shots at paper scale, a stand-in in the demo)
ZERNIKE_CASES = [f"zernike-{s:g}" for s in DEBLUR["zernike"]["noise_levels"]]
DEBLUR_CASES = ZERNIKE_CASES + ["simplex", "kohler"]


def deblur_setup(wildcards):
    """The config slice one case depends on (a param: changing it reruns that case only)."""
    case = wildcards.case
    shared = {k: DEBLUR[k] for k in ("n_iter", "n_inner", "reset_every", "record_every", "checkpoint_every",
                                     "collapse_tol")}
    if case.startswith("zernike-"):
        sigma = DEBLUR["zernike"]["noise_levels"][ZERNIKE_CASES.index(case)]
        return {"case": case, "kind": "zernike", "prior": DEBLUR["prior"], "images": DEBLUR["images"],
                "sigma_y": sigma, "model": DEBLUR["zernike"], **shared}
    if case == "simplex":
        return {"case": case, "kind": "simplex", "prior": DEBLUR["prior"], "images": DEBLUR["images"],
                "sigma_y": DEBLUR["simplex"]["sigma_y"], "model": DEBLUR["simplex"],
                "zernike": {k: DEBLUR["zernike"][k] for k in ("fc", "pupil_size", "zernike_index")}, **shared}
    return {"case": case, "kind": "kohler", "prior": KOHLER_PRIOR, "sigma_y": KOHLER["sigma_y"],
            "model": KOHLER, **shared}


# the ground-truth kernels of the Köhler shots: a manual resource, used when in place (an input
# then, so that placing them later reruns the case), never required
KOHLER_KERNELS = "kohler2012-kernels"


def _kohler_kernels_in_place():
    return KOHLER_KERNELS in CATALOGUE and all(Path(f).is_dir() for f in resource_files(KOHLER_KERNELS))


def deblur_inputs(wildcards):
    """The case's prior, and (paper scale) the dataset its images come from; for the Köhler case
    with a DRUNet denoiser its weights, and with real data the Köhler shots (and their kernels
    when in place)."""
    setup = deblur_setup(wildcards)
    inputs = inputs_of_prior(setup["prior"]) if setup["prior"] is not None else {}
    if setup["kind"] == "kohler":
        if KOHLER_DENOISER:
            inputs["denoiser"] = resource_files(KOHLER_DENOISER["resource"])
        if KOHLER_DATA:
            inputs["kohler"] = resource_files(KOHLER_DATA["resource"])
            if _kohler_kernels_in_place():
                inputs["kernels"] = resource_files(KOHLER_KERNELS)
    return inputs


def deblur_images(wildcards):
    prior = deblur_setup(wildcards)["prior"]
    return None if prior is None else config["priors"][prior].get("images")


def deblur_denoiser(wildcards):
    """Where the Köhler case reads its DRUNet weights (None: the Tweedie denoiser of its prior)."""
    if deblur_setup(wildcards)["kind"] != "kohler" or not KOHLER_DENOISER:
        return None
    return resource_path(KOHLER_DENOISER["resource"])


rule posterior_profiles:
    input:
        unpack(prior_inputs),
    output:
        noiseless=f"{RESULTS}/posterior/{{prior}}/noiseless.parquet",
        noisy=f"{RESULTS}/posterior/{{prior}}/noisy.parquet",
        lam=f"{RESULTS}/posterior/{{prior}}/lambda.parquet",
        points=f"{RESULTS}/posterior/{{prior}}/points.parquet",
    wildcard_constraints:
        prior="|".join(re.escape(p) for p in POSTERIOR_PRIORS),
    params:
        posterior=config["posterior"],
        potential=config["potential"],
        data=config["data"],
        device=config["device"],
        images=image_source,
        resource_root=RESOURCE_ROOT,
    log:
        f"{RESULTS}/logs/posterior_profiles/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/posterior_profiles/{{prior}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=more_time(60),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    script:
        "../scripts/posterior_profiles.py"


rule deblur_runs:
    input:
        unpack(deblur_inputs),
    output:
        trajectory=f"{RESULTS}/deblur/{{case}}/trajectory.parquet",
        metrics=f"{RESULTS}/deblur/{{case}}/metrics.parquet",
        images=f"{RESULTS}/deblur/{{case}}/images.parquet",
    wildcard_constraints:
        case="|".join(re.escape(c) for c in DEBLUR_CASES),
    params:
        setup=deblur_setup,
        data=config["data"],
        device=config["device"],
        images=deblur_images,
        denoiser=deblur_denoiser,
        resource_root=RESOURCE_ROOT,
        # resumable state, deliberately not an output: it survives a killed job
        state=f"{RESULTS}/deblur/{{case}}/state.pt",
    log:
        f"{RESULTS}/logs/deblur_runs/{{case}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/deblur_runs/{{case}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=more_time(120),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    script:
        "../scripts/deblur_runs.py"


# ----------------------------------------------------------------- figures


rule fig09_noiseless_profiles:
    input:
        profiles=expand(f"{RESULTS}/posterior/{{prior}}/noiseless.parquet", prior=POSTERIOR_PRIORS),
    output:
        png=report(f"{RESULTS}/figures/fig09.png", caption="../report/fig09.rst", category="P §4 Posterior landscape"),
        pdf=f"{RESULTS}/figures/fig09.pdf",
        summary=f"{RESULTS}/tables/profile_minima.csv",
    log:
        f"{RESULTS}/logs/figures/fig09.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig09.py"


rule fig10_noisy_profiles:
    input:
        profiles=expand(f"{RESULTS}/posterior/{{prior}}/noisy.parquet", prior=POSTERIOR_PRIORS),
    output:
        png=report(f"{RESULTS}/figures/fig10.png", caption="../report/fig10.rst", category="P §4 Posterior landscape"),
        pdf=f"{RESULTS}/figures/fig10.pdf",
        summary=f"{RESULTS}/tables/noisy_profile_minima.csv",
    log:
        f"{RESULTS}/logs/figures/fig10.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig10.py"


def deblur_artefacts(cases, kinds=("metrics", "images", "trajectory")):
    return {k: [f"{RESULTS}/deblur/{c}/{k}.parquet" for c in cases] for k in kinds}


rule fig11_zernike_example:
    input:
        **deblur_artefacts(ZERNIKE_CASES[:1]),
    output:
        png=report(f"{RESULTS}/figures/fig11.png", caption="../report/fig11.rst", category="P §5 Blind deconvolution"),
        pdf=f"{RESULTS}/figures/fig11.pdf",
    log:
        f"{RESULTS}/logs/figures/fig11.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig11.py"


rule fig12_simplex_initialisations:
    input:
        **deblur_artefacts(["simplex"]),
    output:
        png=report(f"{RESULTS}/figures/fig12.png", caption="../report/fig12.rst", category="P §5 Blind deconvolution"),
        pdf=f"{RESULTS}/figures/fig12.pdf",
    log:
        f"{RESULTS}/logs/figures/fig12.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig12.py"


rule fig13_kohler:
    input:
        **deblur_artefacts(["kohler"]),
    output:
        png=report(f"{RESULTS}/figures/fig13.png", caption="../report/fig13.rst", category="P §5 Blind deconvolution"),
        pdf=f"{RESULTS}/figures/fig13.pdf",
    log:
        f"{RESULTS}/logs/figures/fig13.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig13.py"


rule fig14_zernike_cases:
    input:
        **deblur_artefacts(ZERNIKE_CASES, ("metrics", "images")),
    output:
        png=report(f"{RESULTS}/figures/fig14.png", caption="../report/fig14.rst", category="P §5 Blind deconvolution"),
        pdf=f"{RESULTS}/figures/fig14.pdf",
    log:
        f"{RESULTS}/logs/figures/fig14.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig14.py"


rule fig15_simplex_cases:
    input:
        **deblur_artefacts(["simplex"], ("metrics", "images")),
    output:
        png=report(f"{RESULTS}/figures/fig15.png", caption="../report/fig15.rst", category="P §5 Blind deconvolution"),
        pdf=f"{RESULTS}/figures/fig15.pdf",
    log:
        f"{RESULTS}/logs/figures/fig15.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig15.py"


rule deblur_metrics_table:
    input:
        [f"{RESULTS}/deblur/{c}/metrics.parquet" for c in DEBLUR_CASES],
    output:
        f"{RESULTS}/tables/deblur_metrics.csv",
    log:
        f"{RESULTS}/logs/tables/deblur_metrics.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table_deblur_metrics.py"
