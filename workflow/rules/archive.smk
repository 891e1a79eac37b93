# An archive of a finished run: the configuration's results folder (config["results"],
# results/demo for config.yaml) with a manifest (sha256 checksums, sizes, the exact config,
# software versions, the rules' file patterns) and the config, named after that folder.
#
#   snakemake --cores 2 archive                          # runs what is missing, then packs
#   prior-landscape review archives/results-demo.tar.gz  # exit status 0 only when everything verifies
#
# Make the report first (snakemake --report results/demo/report.html) to have it in the
# archive; after changing results by hand: snakemake --forcerun archive archive.


rule archive:
    input:
        # every target of `all`, looked up when the DAG is built (so that a Snakefile
        # including this workflow can narrow the run it archives by redefining all_targets)
        lambda wildcards: all_targets(),
    output:
        f"{ARCHIVE}.tar.gz",
        # its detached checksum (sha256sum format): keep or publish the value apart from the archive
        # to detect an archive changed together with its manifest (prior-landscape review --sha256)
        f"{ARCHIVE}.tar.gz.sha256",
    log:
        f"{ARCHIVE}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        results=RESULTS,
        config=config,
        # every rule's output and input patterns: which rule made which file, and
        # which figures and tables can be re-rendered from the archive alone
        rules=archive_rule_map,
    script:
        "../scripts/archive_results.py"
