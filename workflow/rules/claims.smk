# The claims table: each of P's findings with what this run measured and a verdict from a stated rule
# (prior_landscape.report.claims); on the report's first page and in the README.


# the first dataset of synthetic blur (the claims compare kernels with the truth); None: no runs
CLAIMS_DATASET = next((d for d, spec in BENCHMARK["datasets"].items() if "pairs" not in spec), None)


rule claims_table:
    input:
        sweeps=expand(f"{RESULTS}/sweeps/{{prior}}.parquet", prior=NATURAL_PRIORS + DIGIT_PRIORS),
        critical=expand(f"{RESULTS}/critical_points/{{prior}}/summary.parquet", prior=NATURAL_PRIORS),
        hessian=expand(f"{RESULTS}/hessian/{{prior}}.parquet", prior=HESSIAN_PRIORS),
        noiseless=expand(f"{RESULTS}/posterior/{{prior}}/noiseless.parquet", prior=POSTERIOR_PRIORS),
        noisy=expand(f"{RESULTS}/posterior/{{prior}}/noisy.parquet", prior=POSTERIOR_PRIORS),
        deblur=[f"{RESULTS}/deblur/{c}/metrics.parquet" for c in DEBLUR_CASES],
        # the first dataset's runs: the methods that run on it (an entry's `datasets` may leave it out)
        benchmark=[f"{RESULTS}/benchmark/{CLAIMS_DATASET}/runs/{m}.parquet" for m in benchmark_methods(CLAIMS_DATASET)],
    output:
        **table_files("claims", category="0 Claims"),
    log:
        f"{RESULTS}/logs/tables/claims.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        natural=NATURAL_PRIORS,
        digits=DIGIT_PRIORS,
        methods=benchmark_methods(CLAIMS_DATASET),
    script:
        "../scripts/table_claims.py"
