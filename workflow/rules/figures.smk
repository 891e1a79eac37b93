# Figures and tables: they read Parquet artefacts only, so one re-renders in seconds.


rule fig05_blur_families:
    input:
        f"{RESULTS}/kernels/blur_families.parquet",
    output:
        png=f"{RESULTS}/figures/fig05.png",
        pdf=f"{RESULTS}/figures/fig05.pdf",
    log:
        f"{RESULTS}/logs/figures/fig05.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig05.py"


rule fig07_likelihood_sweeps:
    input:
        expand(f"{RESULTS}/sweeps/{{prior}}.parquet", prior=NATURAL_PRIORS),
    output:
        **table_files("sweep_summary", "summary"),
        png=f"{RESULTS}/figures/fig07.png",
        pdf=f"{RESULTS}/figures/fig07.pdf",
    log:
        f"{RESULTS}/logs/figures/fig07.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig07.py"


rule tab01_priors:
    input:
        f"{RESULTS}/timing/priors.parquet",
    output:
        **table_files("tab01"),
    log:
        f"{RESULTS}/logs/tables/tab01.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        # what the table shows of each prior (not its training cadence: a speed setting)
        priors={
            p: {"kind": c["kind"], "dataset": c.get("dataset", ""), "schedule": {"kind": c["schedule"]["kind"]}}
            for p, c in config["priors"].items()
            if p in PRIORS
        },
    script:
        "../scripts/table_tab01.py"


rule fig01_to_fig03_critical_points:
    input:
        summary=expand(f"{RESULTS}/critical_points/{{prior}}/summary.parquet", prior=NATURAL_PRIORS),
        trajectory=expand(f"{RESULTS}/critical_points/{{prior}}/trajectory.parquet", prior=NATURAL_PRIORS),
        images=expand(f"{RESULTS}/critical_points/{{prior}}/images.parquet", prior=NATURAL_PRIORS),
    output:
        **table_files("critical_points_summary", "summary"),
        fig01=f"{RESULTS}/figures/fig01.png",
        fig01_pdf=f"{RESULTS}/figures/fig01.pdf",
        fig02=f"{RESULTS}/figures/fig02.png",
        fig02_pdf=f"{RESULTS}/figures/fig02.pdf",
        fig03=f"{RESULTS}/figures/fig03.png",
        fig03_pdf=f"{RESULTS}/figures/fig03.pdf",
    log:
        f"{RESULTS}/logs/figures/fig01_to_fig03.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_critical_points.py"


rule fig04_hessian_spectra:
    input:
        expand(f"{RESULTS}/hessian/{{prior}}.parquet", prior=HESSIAN_PRIORS),
    output:
        png=f"{RESULTS}/figures/fig04.png",
        pdf=f"{RESULTS}/figures/fig04.pdf",
    log:
        f"{RESULTS}/logs/figures/fig04.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        threshold=config["hessian"]["threshold"],
        relative=config["hessian"]["relative"],
    script:
        "../scripts/plot_fig04.py"


rule fig06_blurred_image:
    input:
        f"{RESULTS}/sweeps/{NATURAL_PRIORS[0]}.parquet",
    output:
        png=f"{RESULTS}/figures/fig06.png",
        pdf=f"{RESULTS}/figures/fig06.pdf",
    log:
        f"{RESULTS}/logs/figures/fig06.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig06.py"


rule fig08_binary_digits:
    input:
        samples=expand(f"{RESULTS}/samples/{{prior}}.parquet", prior=DIGIT_PRIORS),
        sweeps=expand(f"{RESULTS}/sweeps/{{prior}}.parquet", prior=DIGIT_PRIORS),
    output:
        png=f"{RESULTS}/figures/fig08.png",
        pdf=f"{RESULTS}/figures/fig08.pdf",
    log:
        f"{RESULTS}/logs/figures/fig08.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig08.py"


# The report's entries for the figures: one page each, the figure with its caption beside it
# (snakemake --report shows a figure's caption only on request), titled from the caption.
rule report_pages:
    input:
        **{f: f"{RESULTS}/figures/{f}.png" for f in FIGURES},
    output:
        **{
            f: report(
                f"{RESULTS}/report/{f}.html",
                caption=f"../report/{f}.rst",
                category=REPORT_CATEGORIES.get(f, "Figures"),
                labels=report_labels(f),
            )
            for f in FIGURES
        },
    log:
        f"{RESULTS}/logs/report_pages.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        labels={f: report_labels(f) for f in FIGURES},
        captions=rendered_captions,
    script:
        "../scripts/report_pages.py"
