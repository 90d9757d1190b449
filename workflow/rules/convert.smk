rule convert:
    input:
        merged="results/{task}/merged",
        examples="results/{task}/teacher.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        gguf=f"results/{{task}}/{{task}}.{GGUF_SUFFIX}.gguf",
        check="results/{task}/gguf_check.json",
    log:
        "results/logs/{task}/convert.log",
    benchmark:
        "results/benchmarks/{task}/convert.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=model_memory_mb("convert", "merged"),
        runtime=model_runtime("merged", seconds_per_mb=0.2),
        gpu=0,
    params:
        outtype=config["gguf"]["outtype"],
        check_tokens=config["gguf"]["check_tokens"],
    script:
        "../scripts/convert.py"
