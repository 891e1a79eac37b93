# The blind-deblurring benchmark (prior_landscape.methods): every configured method on the same
# test cases of every dataset, scored with the same metrics; one job per dataset and method.
#
#   snakemake --cores 2 results/tables/benchmark_demo-photographs.csv


rule benchmark_testset:
    input:
        unpack(benchmark_dataset_inputs),
    output:
        f"{RESULTS}/benchmark/{{dataset}}/testset.parquet",
    log:
        f"{RESULTS}/logs/benchmark_testset/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=lambda wc: BENCHMARK["datasets"][wc.dataset],
        data=config["data"],
        images=benchmark_images,
        resource_root=RESOURCE_ROOT,
    script:
        "../scripts/benchmark_testset.py"


rule benchmark_run:
    # sharded by blocks of benchmark.batch_size cases (config shards.benchmark; rule benchmark_run_gather)
    input:
        unpack(benchmark_run_inputs),
    output:
        runs=shard_output(
            "benchmark", "{dataset}/{method}", f"{RESULTS}/benchmark/{{dataset}}/runs/{{method}}.parquet", "runs"
        ),
        estimates=shard_output(
            "benchmark",
            "{dataset}/{method}",
            f"{RESULTS}/benchmark/{{dataset}}/estimates/{{method}}.parquet",
            "estimates",
        ),
    log:
        per_shard("benchmark", f"{RESULTS}/logs/benchmark_run/{{dataset}}/{{method}}.log"),
    benchmark:
        per_shard("benchmark", f"{RESULTS}/benchmarks/benchmark_run/{{dataset}}/{{method}}.tsv")
    wildcard_constraints:
        shard=r"\d+",
        shards=r"\d+",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=more_time(120),
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        entry=lambda wc: BENCHMARK["methods"][wc.method],
        seeds=benchmark_seeds,
        collapse_tol=BENCHMARK["collapse_tol"],
        batch_size=BENCHMARK.get("batch_size"),
        # resumable state of long methods (one per shard), deliberately not an output: it survives a killed job
        state=per_shard("benchmark", f"{RESULTS}/benchmark/{{dataset}}/runs/{{method}}.state.pt"),
    script:
        "../scripts/benchmark_run.py"


rule benchmark_perceptual:
    # paper scale (benchmark.perceptual): LPIPS per case and FID per seed of one method's estimates
    input:
        unpack(benchmark_perceptual_inputs),
    output:
        f"{RESULTS}/benchmark/{{dataset}}/perceptual/{{method}}.parquet",
    log:
        f"{RESULTS}/logs/benchmark_perceptual/{{dataset}}/{{method}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=more_time(60),
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        min_images=BENCHMARK.get("perceptual", {}).get("fid", {}).get("min_images", 1000),
    script:
        "../scripts/benchmark_perceptual.py"


if sharded("benchmark"):

    rule benchmark_run_gather:
        input:
            runs=shard_inputs("benchmark", "{dataset}/{method}", benchmark_blocks, "runs"),
            estimates=shard_inputs("benchmark", "{dataset}/{method}", benchmark_blocks, "estimates"),
        output:
            runs=f"{RESULTS}/benchmark/{{dataset}}/runs/{{method}}.parquet",
            estimates=f"{RESULTS}/benchmark/{{dataset}}/estimates/{{method}}.parquet",
        log:
            f"{RESULTS}/logs/benchmark_run/{{dataset}}/{{method}}.gather.log",
        threads: 1
        resources:
            mem_mb=4000 if config["scale"] == "paper" else 1000,
            runtime=10,
        params:
            stage="benchmark",
            categories=lambda wc: {"seed": benchmark_seeds(wc)},
        script:
            "../scripts/gather_shards.py"


rule benchmark_table:
    input:
        unpack(benchmark_perceptual_tables),
        testset=f"{RESULTS}/benchmark/{{dataset}}/testset.parquet",
        runs=lambda wc: [f"{RESULTS}/benchmark/{wc.dataset}/runs/{m}.parquet" for m in benchmark_methods(wc.dataset)],
        estimates=lambda wc: [
            f"{RESULTS}/benchmark/{wc.dataset}/estimates/{m}.parquet" for m in benchmark_methods(wc.dataset)
        ],
    output:
        csv=report(
            f"{RESULTS}/tables/benchmark_{{dataset}}.csv",
            caption="../report/benchmark_table.rst",
            category="Benchmark",
            labels=lambda wc: {"table": "Benchmark table", "title": wc.dataset},
        ),
        md=f"{RESULTS}/tables/benchmark_{{dataset}}.md",
        tex=f"{RESULTS}/tables/benchmark_{{dataset}}.tex",
        grid=report(
            f"{RESULTS}/figures/benchmark_{{dataset}}_grid.png",
            caption="../report/benchmark_grid.rst",
            category="Benchmark",
            labels=lambda wc: {"figure": "Benchmark examples", "title": wc.dataset},
        ),
        kernels=report(
            f"{RESULTS}/figures/benchmark_{{dataset}}_kernels.png",
            caption="../report/benchmark_kernels.rst",
            category="Benchmark",
            labels=lambda wc: {"figure": "Benchmark kernels", "title": wc.dataset},
        ),
    log:
        f"{RESULTS}/logs/benchmark_table/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        methods=lambda wc: benchmark_methods(wc.dataset),
        reported=lambda wc: BENCHMARK["datasets"][wc.dataset].get("reported", []),
    script:
        "../scripts/benchmark_table.py"
