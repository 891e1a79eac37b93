# Demo priors: an analytic Gaussian mixture and a score network trained here,
# both on crops of the bundled photographs (config: data).


rule fit_mixture_prior:
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
        summary=f"{RESULTS}/priors/{{prior}}/fit_summary.parquet",
    log:
        f"{RESULTS}/logs/fit_mixture_prior/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fit_mixture_prior/{{prior}}.tsv"
    wildcard_constraints:
        prior=priors_of_kind("gaussian_mixture"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        prior=prior_config,
        data=config["data"],
        seed=config["seed"],
    script:
        "../scripts/fit_mixture_prior.py"


rule train_score_network:
    input:
        unpack(training_inputs),
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
        loss=f"{RESULTS}/priors/{{prior}}/training_loss.parquet",
    log:
        f"{RESULTS}/logs/train_score_network/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_score_network/{{prior}}.tsv"
    wildcard_constraints:
        prior=priors_of_kind("score_network"),
    priority: 10  # first: the longest chain of the demo (sweeps, descents, profiles, Table 1) needs the network
    threads: 2
    resources:
        mem_mb=4000,
        runtime=more_time(120),  # minutes × attempt: a retry after a time-out gets more
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        prior=prior_config,
        data=config["data"],
        seed=config["seed"],
        # resumable state, deliberately not an output: it survives a killed job
        state=f"{RESULTS}/priors/{{prior}}/training_state.pt",
        resource_root=RESOURCE_ROOT,
    script:
        "../scripts/train_score_network.py"


rule patch_prior:
    input:
        base=patch_base_model,
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
    log:
        f"{RESULTS}/logs/patch_prior/{{prior}}.log",
    wildcard_constraints:
        prior=priors_of_kind("patch"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        prior=prior_config,
    script:
        "../scripts/patch_prior.py"


# The learned peers' kernel priors (issue 15; prior_landscape.priors.kernel_priors): BlindDPS's
# unconditional kernel diffusion (also Kernel Diffusion's ablation) and Kernel Diffusion's kernel
# prior conditioned on the blurry image, trained on generated kernels (and training photographs).


rule train_kernel_prior:
    input:
        unpack(kernel_prior_inputs),
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
        loss=f"{RESULTS}/priors/{{prior}}/training_loss.parquet",
    log:
        f"{RESULTS}/logs/train_kernel_prior/{{prior}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_kernel_prior/{{prior}}.tsv"
    wildcard_constraints:
        prior=priors_of_kind(*KERNEL_PRIOR_KINDS),
    threads: 1  # small networks: two such jobs in parallel use 2 cores better than one with 2 threads
    resources:
        mem_mb=4000,
        runtime=more_time(120),
        gpu=1 if config["scale"] == "paper" else 0,
    params:
        prior=prior_config,
        data=config["data"],
        seed=config["seed"],
        # resumable state, deliberately not an output: it survives a killed job
        state=f"{RESULTS}/priors/{{prior}}/training_state.pt",
        resource_root=RESOURCE_ROOT,
    script:
        "../scripts/train_kernel_prior.py"


# The peers' image priors at paper scale: released DDPM networks (deepinv DiffUNet weights), converted.
rule import_ddpm_prior:
    input:
        checkpoint=lambda wc: resource_files(config["priors"][wc.prior]["resource"]),
    output:
        model=f"{RESULTS}/priors/{{prior}}/model.pt",
    log:
        f"{RESULTS}/logs/import_ddpm_prior/{{prior}}.log",
    wildcard_constraints:
        prior=priors_of_kind("ddpm"),
    threads: 1
    resources:
        mem_mb=16000,
        runtime=30,
    params:
        prior=prior_config,
        checkpoint=lambda wc: resource_path(config["priors"][wc.prior]["resource"]),
    script:
        "../scripts/import_ddpm_prior.py"
