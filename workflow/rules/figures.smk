# Figures and tables: they read Parquet artefacts only, so one re-renders in seconds.


rule fig05_blur_families:
    input:
        f"{RESULTS}/kernels/blur_families.parquet",
    output:
        png=report(
            f"{RESULTS}/figures/fig05.png",
            caption="../report/fig05.rst",
            category="P §2.3 Blurry images are more likely",
        ),
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
        expand(f"{RESULTS}/sweeps/{{prior}}.parquet", prior=PRIORS),
    output:
        png=report(
            f"{RESULTS}/figures/fig07.png",
            caption="../report/fig07.rst",
            category="P §2.3 Blurry images are more likely",
        ),
        pdf=f"{RESULTS}/figures/fig07.pdf",
        summary=f"{RESULTS}/tables/sweep_summary.csv",
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
        expand(f"{RESULTS}/timing/{{prior}}.parquet", prior=PRIORS),
    output:
        csv=f"{RESULTS}/tables/tab01.csv",
        html=report(
            f"{RESULTS}/tables/tab01.html",
            caption="../report/tab01.rst",
            category="Tables",
        ),
    params:
        priors=config["priors"],
        crop_size=config["data"]["crop_size"],
    log:
        f"{RESULTS}/logs/tables/tab01.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table_tab01.py"
