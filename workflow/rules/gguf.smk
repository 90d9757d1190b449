rule convert:
    input:
        merged="results/{task}/merged",
        examples="results/{task}/teacher.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        gguf=f"results/{{task}}/{{task}}.{GGUF_SUFFIX}.gguf",
        check="results/{task}/gguf_check.json",
    log:
        "results/logs/{task}/gguf.log",
    benchmark:
        "results/benchmarks/{task}/gguf.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    params:
        outtype=config["gguf"]["outtype"],
        check_tokens=config["gguf"]["check_tokens"],
    script:
        "../scripts/to_gguf.py"
