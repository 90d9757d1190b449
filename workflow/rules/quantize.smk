rule quantize:
    input:
        "results/base/model",
    output:
        directory("results/base/hqq"),
    log:
        "results/logs/base/quantize.log",
    benchmark:
        "results/benchmarks/base/quantize.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=gpu_count(),
    params:
        quantization=config["quantization"],
        device=config["training"]["device"],
        dtype=config["training"]["dtype"],
    script:
        "../scripts/quantize.py"
