rule merge:
    input:
        base="results/base/model",
        adapter=TUNED_ADAPTER,
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
        mem_mb=sizing.model_memory_mb("merge", "base"),
        runtime=sizing.model_runtime("base", seconds_per_mb=0.1),
        gpu=sizing.gpu_count(),
    script:
        "../scripts/merge.py"
