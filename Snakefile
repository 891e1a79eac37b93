# Reproduces "How Diffusion Prior Landscapes Shape the Posterior in Blind
# Deconvolution" (Nguyen, Pauwels, Weiss): see README.md.
#
#   snakemake --cores 2 all                            # the demo (config.yaml), offline
#   snakemake --cores 2 results/demo/figures/fig07.png # one figure, from cached artefacts
#   snakemake --report results/demo/report.html        # captioned HTML report
#
# Every output goes under the configuration's `results` folder (config.yaml: results/demo,
# config/paper.yaml: results/paper): two configurations never share a file.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/priors.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/archive.smk"
include: "workflow/rules/posterior.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/benchmark.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
