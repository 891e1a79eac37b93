# P §2.2: critical points of q, Hessian spectra at them; P §2.3 Fig. 8: samples of the digit prior.


rule critical_points:
    input:
        unpack(prior_inputs),
    output:
        summary=f"{RESULTS}/critical_points/{{prior}}/summary.parquet",
        trajectory=f"{RESULTS}/critical_points/{{prior}}/trajectory.parquet",
        images=f"{RESULTS}/critical_points/{{prior}}/images.parquet",
    log:
        f"{RESULTS}/logs/critical_points/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/critical_points/{{prior}}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=more_time(240),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        critical_points=accuracy(config["critical_points"], "critical_points"),
        potential=accuracy(config["potential"], "potential"),
        data=config["data"],
        seed=config["seed"],
        source=lambda wc: training_data(wc.prior),
        images=image_source,
        resource_root=RESOURCE_ROOT,
        terminal=prior_terminal,
        # resumable descent state, deliberately not an output: it survives a killed job
        state=f"{RESULTS}/critical_points/{{prior}}/descent_state.pt",
    script:
        "../scripts/critical_points.py"


rule hessian_spectra:
    input:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
        images=f"{RESULTS}/critical_points/{{prior}}/images.parquet",
    output:
        f"{RESULTS}/hessian/{{prior}}.parquet",
    log:
        f"{RESULTS}/logs/hessian_spectra/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian_spectra/{{prior}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=more_time(240),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        hessian=accuracy(config["hessian"], "hessian"),
    script:
        "../scripts/hessian_spectra.py"


rule sample_prior:
    input:
        unpack(prior_inputs),
    output:
        f"{RESULTS}/samples/{{prior}}.parquet",
    log:
        f"{RESULTS}/logs/sample_prior/{{prior}}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=more_time(60),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        sampling=config["sampling"],
        data=config["data"],
        seed=config["seed"],
        source=lambda wc: training_data(wc.prior),
        images=image_source,
        resource_root=RESOURCE_ROOT,
    script:
        "../scripts/sample_prior.py"
