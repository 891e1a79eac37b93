# Paper scale: one download rule per checkpoint and per dataset of the catalogue
# (workflow/prior_landscape/resources.yaml), and the conversion of released
# checkpoints into priors. The demo needs none of this: its priors are fitted or
# trained here on data that ships with scikit-image and scikit-learn.
#
#   snakemake download_edm_ffhq64          # one resource
#   snakemake downloads                    # every resource the configuration uses
#
# Downloads run on the submitting host (localrule): cluster nodes often have no
# internet. `kind: manual` resources (a login or a licence to accept) fail with a
# message naming the files, the page and the exact place to put them; once they
# are there the rule has nothing left to do.

from prior_landscape.downloads import DEFAULT_LOCK_FILE, load_catalogue, resource_location, resource_outputs

DOWNLOADS = config.get("downloads", {})
RESOURCE_ROOT = DOWNLOADS.get("root", "resources")
LOCK_FILE = DOWNLOADS.get("lock_file", str(DEFAULT_LOCK_FILE))


def _catalogue():
    """The packaged catalogue, or downloads.catalogue (a site mirror: other addresses and
    checksums, the same ids and places, which every reader relies on)."""
    from prior_landscape.config import ConfigError

    packaged = load_catalogue()
    if "catalogue" not in DOWNLOADS:
        return packaged, None
    mirror = load_catalogue(DOWNLOADS["catalogue"])
    for rid, entry in mirror.items():
        if rid not in packaged:
            raise ConfigError(f"downloads.catalogue: {DOWNLOADS['catalogue']} has an unknown resource {rid!r}")
        if [p for p, _ in resource_outputs(entry, "")] != [p for p, _ in resource_outputs(packaged[rid], "")]:
            raise ConfigError(f"downloads.catalogue: resource {rid!r} of {DOWNLOADS['catalogue']} puts its files "
                              "elsewhere than the packaged catalogue; a mirror may change addresses and checksums only")
    return {**packaged, **mirror}, str(DOWNLOADS["catalogue"])


CATALOGUE, CATALOGUE_FILE = _catalogue()
# training data read from a downloaded dataset (the demo's ship with installed packages)
TRAINING_RESOURCES = {"mnist": "mnist"}


def resource_files(rid):
    """The paths the download rule of resource ``rid`` produces (files and unpacked folders)."""
    if rid not in CATALOGUE:
        raise ValueError(f"unknown resource {rid!r} (catalogue: {', '.join(CATALOGUE)})")
    return [str(p) for p, _ in resource_outputs(CATALOGUE[rid], RESOURCE_ROOT)]


def resource_path(rid):
    """Where a reader finds resource ``rid`` (downloads.resource_location)."""
    return str(resource_location(CATALOGUE[rid], RESOURCE_ROOT))


def _check_resources():
    """A resource id of the configuration that the catalogue lacks stops the run, naming the key."""
    from prior_landscape.config import ConfigError

    for prior, cfg in config["priors"].items():
        for key, rid in (("resource", cfg.get("resource")), ("images.resource", cfg.get("images", {}).get("resource"))):
            if rid is not None and rid not in CATALOGUE:
                raise ConfigError(f"priors.{prior}.{key}: unknown resource {rid!r} (known: {', '.join(CATALOGUE)})")


_check_resources()


def inputs_of_prior(prior):
    """A rule's inputs about one prior: its model file, and (paper scale) the dataset its images come from."""
    cfg = config["priors"][prior]
    inputs = {"model": f"{RESULTS}/priors/{prior}/model.pt"}
    if "images" in cfg:
        inputs["images"] = resource_files(cfg["images"]["resource"])
    return inputs


def prior_inputs(wildcards):
    return inputs_of_prior(wildcards.prior)


def image_source(wildcards):
    """A prior's ``images`` (paper scale: its dataset, read by prior_landscape.data.prior_images), or None."""
    return config["priors"][wildcards.prior].get("images")


def training_inputs(wildcards):
    """Training data downloaded for a prior trained here (MNIST at paper scale), else nothing."""
    source = config["priors"][wildcards.prior].get("training_data", "photographs")
    return {"data": resource_files(TRAINING_RESOURCES[source])} if source in TRAINING_RESOURCES else {}


for _rid, _entry in CATALOGUE.items():

    rule:
        name:
            f"download_{_rid.replace('-', '_')}"
        output:
            [directory(str(p)) if is_dir else str(p) for p, is_dir in resource_outputs(_entry, RESOURCE_ROOT)],
        params:
            resource=_rid,
            root=RESOURCE_ROOT,
            catalogue=CATALOGUE_FILE,
            lock_file=LOCK_FILE,
        log:
            f"{RESULTS}/logs/download/{_rid}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=240,
        script:
            "../scripts/download_resource.py"


def used_resources():
    """Resources the configuration needs: pre-trained priors, training and evaluation data, and
    Fig. 13's DRUNet weights and Köhler shots (deblur.kohler.denoiser / data)."""
    ids = []
    for cfg in config["priors"].values():
        ids += [cfg["resource"]] if "resource" in cfg else []
        ids += [cfg["images"]["resource"]] if "images" in cfg else []
        ids += [TRAINING_RESOURCES[cfg["training_data"]]] if cfg.get("training_data") in TRAINING_RESOURCES else []
    kohler = config["deblur"]["kohler"]
    ids += [kohler[key]["resource"] for key in ("denoiser", "data") if key in kohler]
    return list(dict.fromkeys(ids))


rule downloads:
    input:
        [f for rid in used_resources() for f in resource_files(rid)],


rule import_pretrained_prior:
    input:
        checkpoint=lambda wc: resource_files(config["priors"][wc.prior]["resource"]),
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
    wildcard_constraints:
        prior=priors_of_kind("edm", "score_sde"),
    params:
        prior=prior_config,
        checkpoint=lambda wc: resource_path(config["priors"][wc.prior]["resource"]),
    log:
        f"{RESULTS}/logs/import_pretrained_prior/{{prior}}.log",
    threads: 1
    resources:
        mem_mb=16000,
        runtime=30,
    script:
        "../scripts/import_pretrained_prior.py"
