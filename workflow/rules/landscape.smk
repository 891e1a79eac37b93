# P §2.2: critical points of q, Hessian spectra at them; P §2.3 Fig. 8: samples of the digit prior.


rule critical_points:
    # sharded by start (config shards.critical_points; rule critical_points_gather)
    input:
        unpack(prior_inputs),
    output:
        summary=shard_output(
            "critical_points", "{prior}", f"{RESULTS}/critical_points/{{prior}}/summary.parquet", "summary"
        ),
        trajectory=shard_output(
            "critical_points", "{prior}", f"{RESULTS}/critical_points/{{prior}}/trajectory.parquet", "trajectory"
        ),
        images=shard_output(
            "critical_points", "{prior}", f"{RESULTS}/critical_points/{{prior}}/images.parquet", "images"
        ),
    log:
        per_shard("critical_points", f"{RESULTS}/logs/critical_points/{{prior}}.log"),
    benchmark:
        per_shard("critical_points", f"{RESULTS}/benchmarks/critical_points/{{prior}}.tsv")
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
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
        # resumable descent state (one per shard), deliberately not an output: it survives a killed job
        state=per_shard("critical_points", f"{RESULTS}/critical_points/{{prior}}/descent_state.pt"),
    script:
        "../scripts/critical_points.py"


if sharded("critical_points"):

    rule critical_points_gather:
        input:
            **{
                name: shard_inputs("critical_points", "{prior}", critical_point_starts, name)
                for name in ("summary", "trajectory", "images")
            },
        output:
            summary=f"{RESULTS}/critical_points/{{prior}}/summary.parquet",
            trajectory=f"{RESULTS}/critical_points/{{prior}}/trajectory.parquet",
            images=f"{RESULTS}/critical_points/{{prior}}/images.parquet",
        log:
            f"{RESULTS}/logs/critical_points/{{prior}}.gather.log",
        threads: 1
        resources:
            mem_mb=8000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="critical_points",
            categories={},
        script:
            "../scripts/gather_shards.py"


rule hessian_spectra:
    # sharded by critical point (config shards.hessian_spectra; rule hessian_spectra_gather)
    input:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
        images=f"{RESULTS}/critical_points/{{prior}}/images.parquet",
    output:
        table=shard_output("hessian_spectra", "{prior}", f"{RESULTS}/hessian/{{prior}}.parquet"),
    log:
        per_shard("hessian_spectra", f"{RESULTS}/logs/hessian_spectra/{{prior}}.log"),
    benchmark:
        per_shard("hessian_spectra", f"{RESULTS}/benchmarks/hessian_spectra/{{prior}}.tsv")
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=more_time(240),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        hessian=accuracy(config["hessian"], "hessian"),
    script:
        "../scripts/hessian_spectra.py"


if sharded("hessian_spectra"):

    rule hessian_spectra_gather:
        input:
            table=shard_inputs("hessian_spectra", "{prior}", lambda wc: config["hessian"]["n_points"]),
        output:
            table=f"{RESULTS}/hessian/{{prior}}.parquet",
        log:
            f"{RESULTS}/logs/hessian_spectra/{{prior}}.gather.log",
        threads: 1
        resources:
            mem_mb=4000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="hessian_spectra",
            categories={},
        script:
            "../scripts/gather_shards.py"


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
