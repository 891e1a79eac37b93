# Paper scale: one download rule per checkpoint and per dataset of the catalogue
# (workflow/prior_landscape/io/resources.yaml), and the conversion of released
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

for _rid, _entry in CATALOGUE.items():

    rule:
        name:
            f"download_{_rid.replace('-', '_')}"
        output:
            [directory(str(p)) if is_dir else str(p) for p, is_dir in resource_outputs(_entry, RESOURCE_ROOT)],
        log:
            f"{RESULTS}/logs/download/{_rid}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=1000,
            runtime=240,
        params:
            resource=_rid,
            catalogue=CATALOGUE_FILE,
            lock_file=LOCK_FILE,
        script:
            "../scripts/download_resource.py"


rule downloads:
    input:
        [f for rid in used_resources() for f in resource_files(rid)],


rule import_pretrained_prior:
    input:
        unpack(import_inputs),
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
    log:
        f"{RESULTS}/logs/import_pretrained_prior/{{prior}}.log",
    wildcard_constraints:
        prior=priors_of_kind("edm", "score_sde"),
    threads: 1
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        prior=prior_config,
        checkpoint=lambda wc: resource_path(config["priors"][wc.prior]["resource"]),
        resource_root=RESOURCE_ROOT,
    script:
        "../scripts/import_pretrained_prior.py"
