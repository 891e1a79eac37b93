# P §4–5 and Appendix B: the posterior profiles ℓ^opt(θ) (Figs. 9–10) and blind
# deconvolution by Algorithms 1 and 2 (Figs. 11–15). Config: posterior, deblur.
#
#   snakemake --cores 2 results/demo/figures/fig11.png     # one Zernike case and its figure
#
# 16×16 problems gain nothing from intra-op threads (they only add contention),
# so the compute rules run on one thread and Snakemake runs them side by side.


rule posterior_profiles:
    # sharded by image (config shards.posterior_profiles; rule posterior_profiles_gather)
    input:
        unpack(prior_inputs),
    output:
        **{
            name: shard_output("posterior_profiles", "{prior}", posterior_file(name), name)
            for name in SHARDED_STAGES["posterior_profiles"]
        },
    log:
        per_shard("posterior_profiles", f"{RESULTS}/logs/posterior_profiles/{{prior}}.log"),
    benchmark:
        per_shard("posterior_profiles", f"{RESULTS}/benchmarks/posterior_profiles/{{prior}}.tsv")
    wildcard_constraints:
        prior="|".join(re.escape(p) for p in POSTERIOR_PRIORS),
        shard=r"\d+",
        shards=r"\d+",
    priority: 5  # a network's profiles are among the longest jobs: not left for last
    threads: 1
    resources:
        mem_mb=4000,
        runtime=more_time(60),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        posterior=posterior_config,
        potential=accuracy(config["potential"], "potential"),
        data=config["data"],
        images=image_source,
        resource_root=RESOURCE_ROOT,
        terminal=prior_terminal,
    script:
        "../scripts/posterior_profiles.py"


if sharded("posterior_profiles"):

    rule posterior_profiles_gather:
        input:
            **{
                name: shard_inputs("posterior_profiles", "{prior}", posterior_images, name)
                for name in SHARDED_STAGES["posterior_profiles"]
            },
        output:
            **{name: posterior_file(name) for name in SHARDED_STAGES["posterior_profiles"]},
        log:
            f"{RESULTS}/logs/posterior_profiles/{{prior}}.gather.log",
        threads: 1
        resources:
            mem_mb=8000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="posterior_profiles",
            categories=posterior_categories,
        script:
            "../scripts/gather_shards.py"


rule deblur_runs:
    # sharded by image (config shards.deblur_runs; rule deblur_runs_gather)
    input:
        unpack(deblur_inputs),
    output:
        **{
            name: shard_output("deblur_runs", "{case}", f"{RESULTS}/deblur/{{case}}/{name}.parquet", name)
            for name in SHARDED_STAGES["deblur_runs"]
        },
    log:
        per_shard("deblur_runs", f"{RESULTS}/logs/deblur_runs/{{case}}.log"),
    benchmark:
        per_shard("deblur_runs", f"{RESULTS}/benchmarks/deblur_runs/{{case}}.tsv")
    wildcard_constraints:
        case="|".join(re.escape(c) for c in DEBLUR_CASES),
        shard=r"\d+",
        shards=r"\d+",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=more_time(120),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        setup=deblur_setup,
        data=config["data"],
        images=deblur_images,
        denoiser=deblur_denoiser,
        resource_root=RESOURCE_ROOT,
        # resumable state (one per shard), deliberately not an output: it survives a killed job
        state=per_shard("deblur_runs", f"{RESULTS}/deblur/{{case}}/state.pt"),
    script:
        "../scripts/deblur_runs.py"


if sharded("deblur_runs"):

    rule deblur_runs_gather:
        input:
            **{
                name: shard_inputs("deblur_runs", "{case}", deblur_units, name)
                for name in SHARDED_STAGES["deblur_runs"]
            },
        output:
            **{name: f"{RESULTS}/deblur/{{case}}/{name}.parquet" for name in SHARDED_STAGES["deblur_runs"]},
        log:
            f"{RESULTS}/logs/deblur_runs/{{case}}.gather.log",
        threads: 1
        resources:
            mem_mb=8000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="deblur_runs",
            categories={},
        script:
            "../scripts/gather_shards.py"


# ----------------------------------------------------------------- figures


rule fig09_noiseless_profiles:
    input:
        profiles=expand(f"{RESULTS}/posterior/{{prior}}/noiseless.parquet", prior=POSTERIOR_PRIORS),
    output:
        **table_files("profile_minima", "summary"),
        png=f"{RESULTS}/figures/fig09.png",
        pdf=f"{RESULTS}/figures/fig09.pdf",
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
        **table_files("noisy_profile_minima", "summary"),
        png=f"{RESULTS}/figures/fig10.png",
        pdf=f"{RESULTS}/figures/fig10.pdf",
    log:
        f"{RESULTS}/logs/figures/fig10.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig10.py"


rule fig11_zernike_example:
    input:
        **deblur_artefacts(ZERNIKE_CASES[:1]),
    output:
        png=f"{RESULTS}/figures/fig11.png",
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
        png=f"{RESULTS}/figures/fig12.png",
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
        png=f"{RESULTS}/figures/fig13.png",
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
        png=f"{RESULTS}/figures/fig14.png",
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
        png=f"{RESULTS}/figures/fig15.png",
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
        **table_files("deblur_metrics"),
    log:
        f"{RESULTS}/logs/tables/deblur_metrics.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table_deblur_metrics.py"
