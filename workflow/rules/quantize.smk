rule quantize:
    input:
        "results/base/model",
    output:
        directory(QUANTIZED_BASE),
    log:
        "results/logs/quantize.log",
    benchmark:
        "results/benchmarks/quantize.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.model_memory_mb("quantize", 0),
        runtime=sizing.model_runtime(0, sizing.quantize_seconds_per_mb()),
        gpu=sizing.gpu_count(),
    params:
        quantization=method_settings(config["quantization"]),
        device=config["training"]["device"],
        dtype=config["training"]["dtype"],
    script:
        "../scripts/quantize.py"
