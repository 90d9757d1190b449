rule base_tokenizer:
    output:
        directory("results/base/tokenizer"),
    log:
        "results/logs/base/tokenizer.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fingerprint=base_tokenizer_fingerprint,
    script:
        "../scripts/base_tokenizer.py"


rule base:
    output:
        directory("results/base/model"),
    log:
        "results/logs/base/model.log",
    benchmark:
        "results/benchmarks/base/model.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=base_memory_mb,
        runtime=base_runtime,
        gpu=0,
    params:
        base_model=config["base_model"],
    script:
        "../scripts/base_model.py"
