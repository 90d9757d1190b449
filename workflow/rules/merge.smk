rule merge:
    input:
        base="results/base/model",
        adapter="results/{task}/adapter",
    output:
        keep_or_temp(directory("results/{task}/merged")),
    log:
        "results/logs/{task}/merge.log",
    benchmark:
        "results/benchmarks/{task}/merge.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    script:
        "../scripts/merge.py"
