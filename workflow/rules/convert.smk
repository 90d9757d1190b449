rule convert:
    input:
        merged="results/{task}/merged",
        examples="results/{task}/teacher.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        gguf=MERGED_GGUF,
        check="results/{task}/gguf_check.json",
    log:
        "results/logs/{task}/convert.log",
    benchmark:
        "results/benchmarks/{task}/convert.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.model_memory_mb("convert", "merged"),
        runtime=sizing.model_runtime("merged", seconds_per_mb=0.2),
        gpu=0,
    params:
        outtype=config["gguf"]["outtype"],
        check_tokens=config["gguf"]["check_tokens"],
    script:
        "../scripts/convert.py"


# The task's LoRA as a GGUF adapter for the base GGUF (gguf.deploy: adapter or both), checked
# against the bf16 base with the adapter merged in memory: no merged folder is needed.
rule convert_adapter:
    input:
        unpack(lora_check_inputs),
        adapter=TUNED_ADAPTER,
        base="results/base/model",
        base_gguf=BASE_GGUF,
        examples="results/{task}/teacher.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        gguf=LORA_GGUF,
        check="results/{task}/lora_check.json",
    log:
        "results/logs/{task}/convert_adapter.log",
    benchmark:
        "results/benchmarks/{task}/convert_adapter.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.model_memory_mb("convert", "base"),
        runtime=sizing.model_runtime("base", seconds_per_mb=0.2),
        gpu=0,
    params:
        check_tokens=config["gguf"]["check_tokens"],
    script:
        "../scripts/convert_adapter.py"
