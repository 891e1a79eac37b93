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
        expand(f"{RESULTS}/sweeps/{{prior}}.parquet", prior=NATURAL_PRIORS),
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
    log:
        f"{RESULTS}/logs/tables/tab01.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        priors=config["priors"],
        crop_size=config["data"]["crop_size"],
    script:
        "../scripts/table_tab01.py"


rule fig01_to_fig03_critical_points:
    input:
        summary=expand(f"{RESULTS}/critical_points/{{prior}}/summary.parquet", prior=NATURAL_PRIORS),
        trajectory=expand(f"{RESULTS}/critical_points/{{prior}}/trajectory.parquet", prior=NATURAL_PRIORS),
        images=expand(f"{RESULTS}/critical_points/{{prior}}/images.parquet", prior=NATURAL_PRIORS),
    output:
        fig01=report(f"{RESULTS}/figures/fig01.png", caption="../report/fig01.rst", category="P §2.2 Critical points"),
        fig01_pdf=f"{RESULTS}/figures/fig01.pdf",
        fig02=report(f"{RESULTS}/figures/fig02.png", caption="../report/fig02.rst", category="P §2.2 Critical points"),
        fig02_pdf=f"{RESULTS}/figures/fig02.pdf",
        fig03=report(f"{RESULTS}/figures/fig03.png", caption="../report/fig03.rst", category="P §2.2 Critical points"),
        fig03_pdf=f"{RESULTS}/figures/fig03.pdf",
        summary=f"{RESULTS}/tables/critical_points_summary.csv",
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
        png=report(f"{RESULTS}/figures/fig04.png", caption="../report/fig04.rst", category="P §2.2 Critical points"),
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
        png=report(
            f"{RESULTS}/figures/fig06.png",
            caption="../report/fig06.rst",
            category="P §2.3 Blurry images are more likely",
        ),
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
        png=report(
            f"{RESULTS}/figures/fig08.png",
            caption="../report/fig08.rst",
            category="P §2.3 Blurry images are more likely",
        ),
        pdf=f"{RESULTS}/figures/fig08.pdf",
    log:
        f"{RESULTS}/logs/figures/fig08.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_fig08.py"
