# The base model converted once to the same GGUF type as the tuned ones: the fair baseline.
rule base_gguf:
    input:
        model="results/base/model",
    output:
        gguf=BASE_GGUF,
        check="results/base/gguf_check.json",
    log:
        "results/logs/base_gguf.log",
    benchmark:
        "results/benchmarks/base_gguf.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.model_memory_mb("base_gguf", "model"),
        runtime=sizing.model_runtime("model", seconds_per_mb=0.2),
        gpu=0,
    params:
        outtype=config["gguf"]["outtype"],
        check_tokens=config["gguf"]["check_tokens"],
    script:
        "../scripts/base_gguf.py"
