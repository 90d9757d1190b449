rule base:
    output:
        directory("results/base/model"),
    log:
        "results/logs/base.log",
    benchmark:
        "results/benchmarks/base.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.base_memory_mb,
        runtime=sizing.base_runtime,
        gpu=0,
    params:
        base_model=config["base_model"],
    script:
        "../scripts/base.py"
