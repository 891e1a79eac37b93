# P §2.3: the blur families, the likelihood sweeps q(h_θ ⋆ x), and the cost of the priors (Table 1).


rule blur_kernels:
    output:
        f"{RESULTS}/kernels/blur_families.parquet",
    log:
        f"{RESULTS}/logs/blur_kernels.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        families=config["sweep"]["families"],
        theta=config["sweep"]["theta"],
        kernel_size=config["blur"]["kernel_size"],
    script:
        "../scripts/blur_kernels.py"


rule likelihood_sweep:
    # sharded by image (config shards.likelihood_sweep; rule likelihood_sweep_gather)
    input:
        unpack(prior_inputs),
    output:
        shard_output("likelihood_sweep", "{prior}", f"{RESULTS}/sweeps/{{prior}}.parquet"),
    log:
        per_shard("likelihood_sweep", f"{RESULTS}/logs/likelihood_sweep/{{prior}}.log"),
    benchmark:
        per_shard("likelihood_sweep", f"{RESULTS}/benchmarks/likelihood_sweep/{{prior}}.tsv")
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    threads: 2
    resources:
        # every blurred image of the job is held at once (paper: 100 × 4 × 11 images of 3×256×256,
        # ≈ 3.5 GB, twice)
        mem_mb=32000 if config["scale"] == "paper" else 4000,
        runtime=more_time(240),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        sweep=config["sweep"],
        blur=config["blur"],
        potential=accuracy(config["potential"], "potential"),
        data=config["data"],
        source=lambda wc: training_data(wc.prior),
        images=image_source,
        resource_root=RESOURCE_ROOT,
        terminal=prior_terminal,
    script:
        "../scripts/likelihood_sweep.py"


if sharded("likelihood_sweep"):

    rule likelihood_sweep_gather:
        input:
            table=shard_inputs("likelihood_sweep", "{prior}", lambda wc: config["sweep"]["n_images"]),
        output:
            table=f"{RESULTS}/sweeps/{{prior}}.parquet",
        log:
            f"{RESULTS}/logs/likelihood_sweep/{{prior}}.gather.log",
        threads: 1
        resources:
            mem_mb=8000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="likelihood_sweep",
            categories={"family": config["sweep"]["families"]},
        script:
            "../scripts/gather_shards.py"


rule measure_prior_costs:
    # one job for every prior (P Table 1): measured in turn, round-robin, in one process, so that
    # two rows are comparable; threads = the demo's 2 cores, so no other job runs beside it
    input:
        unpack(timing_inputs),
    output:
        f"{RESULTS}/timing/priors.parquet",
    log:
        f"{RESULTS}/logs/measure_prior_costs.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure_prior_costs.tsv"
    threads: 2
    resources:
        mem_mb=16000 if config["scale"] == "paper" else 4000,
        runtime=more_time(60),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        priors=PRIORS,
        timing=config["timing"],
        potential=accuracy(config["potential"], "potential"),
        data=config["data"],
        seed=config["seed"],
        images={p: config["priors"][p].get("images") for p in PRIORS},
        resource_root=RESOURCE_ROOT,
        terminal={p: terminal_of(p) for p in PRIORS},
    script:
        "../scripts/measure_prior_costs.py"
