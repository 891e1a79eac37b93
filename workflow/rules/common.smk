# Shared definitions, kept out of the files of rules. Config validation and checks of the
# names it refers to, prior lookups, target lists, the resources of the paper scale, the
# posterior and deblurring cases, the archive's rule map.

import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from prior_landscape.config import ConfigError, accuracy, posterior_settings, theta_grid, validate_config
from prior_landscape.io.images import check_photographs
from prior_landscape.jobenv import set_job_environment
from prior_landscape.io.downloads import (
    DEFAULT_LOCK_FILE,
    TRAINING_RESOURCES,
    CatalogueError,
    configured_resources as _configured_resources,
    load_catalogue_with_mirror,
    resource_location,
    resource_outputs,
)

# Every job starts with malloc backing large tensors by huge pages (prior_landscape.jobenv: 25 % faster on CPU).
set_job_environment()
# Stops the run before any job starts, naming every bad key.
validate_config(config, source="config (config.yaml and --config overrides)")
# Image files named by the configuration are read now, as the jobs will read them: a
# missing, corrupt or unusable file stops the run here (dry runs included), naming its key.
_image_problems = check_photographs(config)
if _image_problems:
    raise ConfigError(
        f"{len(_image_problems)} image file(s) of the configuration cannot be used:\n  " + "\n  ".join(_image_problems)
    )

# every output of this configuration (config.yaml: results/demo, config/paper.yaml: results/paper):
# two configurations run in one working directory never share a file, nor Snakemake's metadata of one
RESULTS = config["results"]
# its archive (archive.smk): archives/results.tar.gz for `results`, archives/results-demo.tar.gz for results/demo
ARCHIVE = "archives/" + "-".join(Path(RESULTS).parts)
# the diffusion models of the landscape part (P §2), whose potential the probability-flow ODE
# evaluates; patch priors (EPLL) serve the posterior and deblurring parts only
# priors of the learned peers only (workflow/rules/priors.smk): kernel diffusions, which model kernels,
# and released DDPM image networks, whose discrete schedule P's landscape analyses do not take
KERNEL_PRIOR_KINDS = ("kernel_network", "conditional_kernel_network")
PRIORS = [p for p, c in config["priors"].items() if c["kind"] not in ("patch", "ddpm", *KERNEL_PRIOR_KINDS)]


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


def _check_prior(key, name):
    """A prior named by the configuration that config['priors'] lacks stops the run, naming the key."""
    if name not in config["priors"]:
        raise ConfigError(f"{key}: {name!r} is not a prior of config['priors'] ({', '.join(config['priors'])})")


for _p, _c in config["priors"].items():
    if _c["kind"] == "patch":
        _check_prior(f"priors.{_p}.base", _c["base"])
        if config["priors"][_c["base"]]["kind"] == "patch":
            raise ConfigError(f"priors.{_p}.base: {_c['base']!r} is itself a patch prior")


def patch_base_model(wildcards):
    return f"{RESULTS}/priors/{config['priors'][wildcards.prior]['base']}/model.pt"


for _i, _p in enumerate(HESSIAN_PRIORS):
    _check_prior(f"hessian.priors.{_i}", _p)
for _p in config["critical_points"].get("step_by_prior", {}):
    _check_prior(f"critical_points.step_by_prior.{_p}", _p)


# ------------------------------------------------------------------------- shards
# Scatter-gather of the long stages (config `shards`, prior_landscape.shards): a stage with a
# count n > 1 runs as jobs of its rule with the wildcards {shard} and {shards} (the number of
# shards, n lowered to the number of units), each writing a shard file (temporary: deleted once
# gathered), and a gather rule writes the stage's artefact; with n = 1 the rule writes the
# artefact itself, as without the key.

from prior_landscape.shards import STAGES as SHARDED_STAGES

SHARDS = {stage: 1 for stage in SHARDED_STAGES} | config.get("shards", {})


def sharded(stage):
    return SHARDS[stage] > 1


def shard_count(stage, n_units):
    """The number of shards of ``stage`` for ``n_units`` units: the configured count, at most n_units."""
    return max(1, min(int(SHARDS[stage]), int(n_units)))


def _shard_file(stage, key, name):
    return f"{RESULTS}/shards/{stage}/{key}/{name}.{{shard}}-of-{{shards}}.parquet"


def shard_output(stage, key, artefact, name="table"):
    """A stage rule's output ``name``: its artefact when unsharded, else its (temporary) shard file
    under <results>/shards/<stage>/ (``key``: the artefact's wildcards, e.g. "{prior}")."""
    return temp(_shard_file(stage, key, name)) if sharded(stage) else artefact


def per_shard(stage, path):
    """A stage rule's log, benchmark or state file: one per shard when sharded ("x.log" -> "x.{shard}-of-{shards}.log")."""
    stem, dot, ext = path.rpartition(".")
    return f"{stem}.{{shard}}-of-{{shards}}{dot}{ext}" if sharded(stage) else path


def shard_inputs(stage, key, n_units, name="table"):
    """The gather's inputs of output ``name``: every shard file, in shard order (``n_units(wildcards)``:
    the number of the stage's units, or of its blocks of units)."""
    pattern = _shard_file(stage, key, name)

    def files(wildcards):
        count = shard_count(stage, n_units(wildcards))
        return [pattern.format(**dict(wildcards.items()), shard=i, shards=count) for i in range(count)]

    return files


def critical_point_starts(wildcards):
    """The number of a descent's starts (its units when sharded): n_per_group in each of three groups."""
    return 3 * config["critical_points"]["n_per_group"]


def more_time(minutes):
    """A runtime that grows with the attempt (profiles/slurm retries failed jobs): the long jobs
    resume from their saved state, so a job killed at its time limit finishes on the next try."""
    return lambda wildcards, attempt: minutes * attempt


def prior_config(wildcards):
    """A prior's configuration without its speed-only training settings and its terminal density
    (they rerun nothing here: the terminal density is chosen where the prior is used, prior_terminal)."""
    cfg = dict(config["priors"][wildcards.prior])
    cfg.pop("terminal", None)
    if "training" in cfg:
        cfg["training"] = accuracy(cfg["training"], "training")
    return cfg


# the priors whose potential the probability-flow ODE integrates up to p_T (P eq. 7)
NETWORK_PRIOR_KINDS = ("score_network", "edm", "score_sde")


def terminal_of(prior):
    """A prior's terminal density (its config's ``terminal``, default data_gaussian: priors/terminal.py);
    None for priors whose p_T is not chosen (the mixture's is exact; patch and peer priors)."""
    cfg = config["priors"][prior]
    return cfg.get("terminal", "data_gaussian") if cfg["kind"] in NETWORK_PRIOR_KINDS else None


def prior_terminal(wildcards):
    """A param of the jobs that evaluate q: changing the terminal density reruns them, not the training."""
    return terminal_of(wildcards.prior)


def figure_names():
    figures = ["fig05", "fig07"]
    if NATURAL_PRIORS:
        figures += ["fig01", "fig02", "fig03", "fig04", "fig06"]
    if DIGIT_PRIORS:
        figures += ["fig08"]
    # P §4–5 and Appendix B: posterior profiles and blind deconvolution (workflow/rules/posterior.smk)
    figures += ["fig09", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15"]
    return sorted(figures)


FIGURES = figure_names()


def all_targets():
    return (
        [f"{RESULTS}/figures/{f}.png" for f in FIGURES]
        + [f"{RESULTS}/tables/tab01.csv", f"{RESULTS}/tables/deblur_metrics.csv", f"{RESULTS}/tables/claims.csv"]
        + benchmark_targets()
        # the report's entries for the figures: each with its caption beside it (rule report_pages)
        + [f"{RESULTS}/report/{f}.html" for f in FIGURES]
    )


# ------------------------------------------------------------------------- the report
# Entries titled from their captions (workflow/report/<name>.rst: "Fig. 7", its first sentence);
# figures as pages with the caption beside them (rule report_pages), tables as CSV files (with
# their Markdown and LaTeX beside them, not in the report).

REPORT_DIR = Path(workflow.current_basedir.join("../report").get_path_or_uri(secret_free=True))
REPORT_CATEGORIES = {
    **dict.fromkeys(["fig01", "fig02", "fig03", "fig04"], "P §2.2 Critical points"),
    **dict.fromkeys(["fig05", "fig06", "fig07", "fig08"], "P §2.3 Blurry images are more likely"),
    **dict.fromkeys(["fig09", "fig10"], "P §4 Posterior landscape"),
    **dict.fromkeys(["fig11", "fig12", "fig13", "fig14", "fig15"], "P §5 Blind deconvolution"),
}


def report_labels(name, kind="figure"):
    """The labels of a report entry, from its caption (prior_landscape.report.pages.caption_labels)."""
    from prior_landscape.report.pages import caption_labels

    path = REPORT_DIR / f"{name}.rst"
    return caption_labels(path.read_text(encoding="utf-8"), kind, source=str(path))


def table_files(name, key="csv", category="Tables"):
    """A table's outputs: ``key`` its CSV, in the report under "Tables" (captioned by
    workflow/report/<name>.rst, titled from it), ``<key>_md`` and ``<key>_tex`` its Markdown
    and LaTeX (prior_landscape.report.tables.write_table_files)."""
    base = f"{RESULTS}/tables/{name}"
    csv = report(f"{base}.csv", caption=f"../report/{name}.rst", category=category, labels=report_labels(name, "table"))
    return {key: csv, f"{key}_md": f"{base}.md", f"{key}_tex": f"{base}.tex"}


def rendered_captions(wildcards):
    """Every figure's caption as the report shows it (a param: a caption that changes, or a value
    of the configuration it quotes, renders its page again)."""
    from prior_landscape.report.pages import render_caption

    return {
        f: render_caption((REPORT_DIR / f"{f}.rst").read_text(encoding="utf-8"), config, f"{f}.rst") for f in FIGURES
    }


# ------------------------------------------------------------------ paper-scale resources
# (the download rules and the import of released checkpoints: resources.smk)


DOWNLOADS = config.get("downloads", {})
RESOURCE_ROOT = DOWNLOADS.get("root", "resources")
LOCK_FILE = DOWNLOADS.get("lock_file", str(DEFAULT_LOCK_FILE))


# the packaged catalogue, or with downloads.catalogue's entries (a site mirror) in their place
CATALOGUE_FILE = DOWNLOADS.get("catalogue")
try:
    CATALOGUE = load_catalogue_with_mirror(CATALOGUE_FILE)
except CatalogueError as err:
    raise ConfigError(f"downloads.catalogue: {err}") from None


def resource_files(rid):
    """The paths the download rule of resource ``rid`` produces (files and unpacked folders)."""
    if rid not in CATALOGUE:
        raise ValueError(f"unknown resource {rid!r} (catalogue: {', '.join(CATALOGUE)})")
    return [str(p) for p, _ in resource_outputs(CATALOGUE[rid], RESOURCE_ROOT)]


def resource_path(rid):
    """Where a reader finds resource ``rid`` (downloads.resource_location)."""
    return str(resource_location(CATALOGUE[rid], RESOURCE_ROOT))


def configured_resources():
    """(config key, resource id) of every resource the configuration uses: released priors,
    their images, downloaded training data, and Fig. 13's DRUNet weights and Köhler shots
    (prior_landscape.io.downloads.configured_resources: what its listing says the configuration needs)."""
    return _configured_resources(config)


# a resource id of the configuration that the catalogue lacks stops the run, naming the key
for _key, _rid in configured_resources():
    if _rid not in CATALOGUE:
        raise ConfigError(f"{_key}: unknown resource {_rid!r} (known: {', '.join(CATALOGUE)})")


def inputs_of_prior(prior):
    """A rule's inputs about one prior: its model file, and (paper scale) the dataset its images come from."""
    cfg = config["priors"][prior]
    inputs = {"model": f"{RESULTS}/priors/{prior}/model.pt"}
    if "images" in cfg:
        inputs["images"] = resource_files(cfg["images"]["resource"])
    return inputs


def prior_inputs(wildcards):
    return inputs_of_prior(wildcards.prior)


def timing_inputs(wildcards):
    """Every prior's model file (in PRIORS' order) and (paper scale) the datasets their images come from."""
    inputs = {"models": [inputs_of_prior(p)["model"] for p in PRIORS]}
    images = [f for p in PRIORS for f in inputs_of_prior(p).get("images", [])]
    if images:
        inputs["images"] = list(dict.fromkeys(images))
    return inputs


def image_source(wildcards):
    """A prior's ``images`` (paper scale: its dataset, read by prior_landscape.io.images.prior_images), or None."""
    return config["priors"][wildcards.prior].get("images")


def import_inputs(wildcards):
    """A released prior's checkpoint, and the dataset of its images (their statistics: its terminal density)."""
    cfg = config["priors"][wildcards.prior]
    inputs = {"checkpoint": resource_files(cfg["resource"])}
    if "images" in cfg:
        inputs["images"] = resource_files(cfg["images"]["resource"])
    return inputs


def training_inputs(wildcards):
    """Training data downloaded for a prior trained here (MNIST at paper scale), else nothing."""
    source = config["priors"][wildcards.prior].get("training_data", "photographs")
    return {"data": resource_files(TRAINING_RESOURCES[source])} if source in TRAINING_RESOURCES else {}


def used_resources():
    """Resources the configuration needs (configured_resources), each once."""
    return list(dict.fromkeys(rid for _, rid in configured_resources()))


# ------------------------------------------------------------ posterior and deblurring
# (posterior.smk)


POSTERIOR_PRIORS = list(config["posterior"]["priors"])
for _p in config["posterior"].get("by_prior", {}):
    _check_prior(f"posterior.by_prior.{_p}", _p)


def posterior_config(wildcards):
    """The posterior section as it applies to the job's prior (its posterior.by_prior entries)."""
    return posterior_settings(config["posterior"], wildcards.prior)


def posterior_categories(wildcards):
    """What every gathered shard of a prior's profiles must cover (prior_landscape.shards)."""
    post = posterior_config(wildcards)
    return {
        "family": post["families"],
        "x_bar": ["dataset", "critical point"],
        "sigma_y": post["noise_levels"],
    }


# the file of an output of posterior_profiles and of its gather (SHARDED_STAGES["posterior_profiles"]):
# posterior/<prior>/<name>.parquet, but lambda.parquet for P eq. 14's λ table (output lam)
POSTERIOR_FILES = {"lam": "lambda"}


def posterior_file(name):
    return f"{RESULTS}/posterior/{{prior}}/{POSTERIOR_FILES.get(name, name)}.parquet"


DEBLUR = config["deblur"]


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


# one deblurring case per Zernike noise level (Figs. 11, 14), the simplex kernels
# (Figs. 12, 15) and the Köhler case (Fig. 13: real shots at paper scale, a stand-in in the demo)
ZERNIKE_CASES = [f"zernike-{s:g}" for s in DEBLUR["zernike"]["noise_levels"]]
DEBLUR_CASES = ZERNIKE_CASES + ["simplex", "kohler"]


def deblur_setup(wildcards):
    """The config slice one case depends on (a param: changing it reruns that case only)."""
    case = wildcards.case
    # the cadences (record_every, checkpoint_every) are speed-only settings: read by the job, not params
    shared = {k: DEBLUR[k] for k in ("n_iter", "n_inner", "reset_every", "collapse_tol")}

    def own(model):  # a case may set its own budget (K, K_x, reset), else the section's
        return {**shared, **{k: model[k] for k in ("n_iter", "n_inner", "reset_every") if k in model}}

    if case.startswith("zernike-"):
        sigma = DEBLUR["zernike"]["noise_levels"][ZERNIKE_CASES.index(case)]
        return {
            "case": case,
            "kind": "zernike",
            "prior": DEBLUR["prior"],
            "images": DEBLUR["images"],
            "sigma_y": sigma,
            "model": DEBLUR["zernike"],
            **shared,
        }
    if case == "simplex":
        return {
            "case": case,
            "kind": "simplex",
            "prior": DEBLUR["prior"],
            "images": DEBLUR["images"],
            "sigma_y": DEBLUR["simplex"]["sigma_y"],
            "model": DEBLUR["simplex"],
            "zernike": {k: DEBLUR["zernike"][k] for k in ("fc", "pupil_size", "zernike_index")},
            **own(DEBLUR["simplex"]),
        }
    return {
        "case": case,
        "kind": "kohler",
        "prior": KOHLER_PRIOR,
        "sigma_y": KOHLER["sigma_y"],
        "model": KOHLER,
        **own(KOHLER),
    }


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


def posterior_images(wildcards):
    """The number of the posterior profiles' images (their units when sharded)."""
    return posterior_config(wildcards)["n_images"]


def deblur_units(wildcards):
    """The number of a case's images (its units when sharded): deblur.images.n, or the Köhler case's
    shots (real data) or photographs (the stand-in): prior_landscape.inverse.cases.n_kohler_images."""
    from prior_landscape.inverse.cases import n_kohler_images

    setup = deblur_setup(wildcards)
    if setup["kind"] != "kohler":
        return setup["images"]["n"]
    return n_kohler_images(KOHLER)


def deblur_denoiser(wildcards):
    """Where the Köhler case reads its DRUNet weights (None: the Tweedie denoiser of its prior)."""
    if deblur_setup(wildcards)["kind"] != "kohler" or not KOHLER_DENOISER:
        return None
    return resource_path(KOHLER_DENOISER["resource"])


def deblur_artefacts(cases, kinds=("metrics", "images", "trajectory")):
    return {k: [f"{RESULTS}/deblur/{c}/{k}.parquet" for c in cases] for k in kinds}


# -------------------------------------------------------------------------- archive


def archive_rule_map(wildcards):
    from prior_landscape.io.archive import rule_map  # imported here: pandas/pyarrow only when archiving

    return rule_map(workflow.rules)


# ------------------------------------------------------------------------- benchmark
# (benchmark.smk; prior_landscape.methods)

BENCHMARK = config.get("benchmark", {"datasets": {}, "methods": {}, "seeds": [0], "collapse_tol": 0.05})
from prior_landscape.methods import METHODS as _METHODS, PRIOR_KEYS as _PRIOR_KEYS

for _m, _entry in BENCHMARK["methods"].items():
    if _entry["method"] not in _METHODS:
        raise ConfigError(
            f"benchmark.methods.{_m}.method: {_entry['method']!r} is not a registered method "
            f"({', '.join(sorted(_METHODS))})"
        )
    for _key in _PRIOR_KEYS:
        if _key in _entry:
            _check_prior(f"benchmark.methods.{_m}.{_key}", _entry[_key])
    for _d in _entry.get("datasets", []):
        if _d not in BENCHMARK["datasets"]:
            raise ConfigError(f"benchmark.methods.{_m}.datasets: {_d!r} is not a dataset of benchmark.datasets")
        if "pairs" in BENCHMARK["datasets"][_d] and _METHODS[_entry["method"]].needs_true_kernel:
            raise ConfigError(
                f"benchmark.methods.{_m}.datasets: {_d!r} is real blur (pairs), whose kernel is unknown, and "
                f"{_entry['method']!r} needs the true kernel"
            )


def benchmark_images(wildcards):
    """A dataset's own images at paper scale (``images``: a resource and its reader), else None (demo)."""
    return BENCHMARK["datasets"][wildcards.dataset].get("images")


def benchmark_dataset_inputs(wildcards):
    """The downloaded files a test set is drawn from: the dataset's images, or its real blurry/sharp pairs."""
    spec = BENCHMARK["datasets"][wildcards.dataset]
    source = spec.get("images") or spec.get("pairs")
    return {"images": resource_files(source["resource"])} if source else {}


def benchmark_run_inputs(wildcards):
    """The test set, and the model files of the priors the method's entry names."""
    entry = BENCHMARK["methods"][wildcards.method]
    inputs = {"testset": f"{RESULTS}/benchmark/{wildcards.dataset}/testset.parquet"}
    for key in _PRIOR_KEYS:
        if key in entry:
            inputs[key] = f"{RESULTS}/priors/{entry[key]}/model.pt"
    if "denoiser" in entry:  # DRUNet weights (P's Algorithm 2 at paper scale), from their download rule
        inputs["denoiser"] = resource_path(entry["denoiser"]["resource"])
    return inputs


def benchmark_perceptual_inputs(wildcards):
    """One method's estimates, the test set, and the weights of the configured perceptual metrics."""
    d, m = wildcards.dataset, wildcards.method
    spec = BENCHMARK.get("perceptual", {})
    inputs = {
        "testset": f"{RESULTS}/benchmark/{d}/testset.parquet",
        "estimates": f"{RESULTS}/benchmark/{d}/estimates/{m}.parquet",
    }
    for net, rid in spec.get("lpips", {}).items():
        inputs[f"lpips_{net}"] = resource_files(rid)[0]
    if "fid" in spec:
        inputs["fid"] = resource_files(spec["fid"]["resource"])[0]
    return inputs


def benchmark_perceptual_tables(wildcards):
    """The perceptual scores of every method of a dataset, when the configuration asks for them."""
    if not BENCHMARK.get("perceptual"):
        return {}
    methods = benchmark_methods(wildcards.dataset)
    return {"perceptual": [f"{RESULTS}/benchmark/{wildcards.dataset}/perceptual/{m}.parquet" for m in methods]}


def benchmark_seeds(wildcards):
    """Stochastic methods run with every configured seed, the others once."""
    from prior_landscape.methods import METHODS

    entry = BENCHMARK["methods"][wildcards.method]
    return list(BENCHMARK["seeds"]) if METHODS[entry["method"]].stochastic else [0]


def benchmark_blocks(wildcards):
    """The number of a dataset's blocks of benchmark.batch_size cases (its units when sharded; one without
    a batch size); its cases are every image with every kernel entry, or every real pair."""
    from prior_landscape.methods.benchmark import n_cases
    from prior_landscape.shards import n_blocks

    cases = n_cases(BENCHMARK["datasets"][wildcards.dataset])
    return n_blocks(cases, BENCHMARK.get("batch_size", cases))


def benchmark_methods(dataset):
    """The method entries run on ``dataset`` (prior_landscape.methods.benchmark.methods_on)."""
    from prior_landscape.methods.benchmark import methods_on

    return methods_on(dataset, BENCHMARK)


def benchmark_targets():
    return [f"{RESULTS}/tables/benchmark_{d}.csv" for d in BENCHMARK["datasets"]]


def kernel_prior_inputs(wildcards):
    """Paper scale: the dataset the conditional prior's training images come from, else nothing."""
    pairs = config["priors"][wildcards.prior].get("pairs", {})
    return {"images": resource_files(pairs["images"]["resource"])} if "images" in pairs else {}


# ------------------------------------------------------------------------- SLURM resources
# Under the SLURM executor, before the first sbatch: the partition's node sizes from sinfo; the cores
# setting capped to the largest node, and a job no node can run (memory, GPUs, time) refused, naming
# the rule, the setting and the node (prior_landscape.slurm_resources). Other executors: nothing.


onstart:
    from prior_landscape.slurm_resources import SlurmResourceError, preflight

    try:
        preflight(workflow, os.environ, log=lambda msg: print(msg, file=sys.stderr))
    except SlurmResourceError as err:
        raise WorkflowError(str(err)) from None
