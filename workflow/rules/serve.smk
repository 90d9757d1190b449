# `snakemake --cores all serve`, never part of `all`: builds every task's LoRA GGUF if needed,
# then serves all tasks from one process (the base GGUF once, five adapters) until Ctrl-C. It
# has no output, so it runs each time it is asked for; it runs where snakemake runs, never on
# a cluster node.
rule serve:
    input:
        base_gguf=BASE_GGUF,
        loras=per_task(LORA_GGUF),
        system_prompts=[config["tasks"][task]["system_prompt"] for task in TASKS],
        formats=per_task(FORMAT_JSON),
    log:
        "results/logs/serve.log",
    localrule: True
    conda:
        "../../envs/vault-distill.yaml"
    threads: 64  # scaled down to --cores: the server is the only job
    params:
        tasks=TASKS,
        host=config["serve"]["host"],
        port=config["serve"]["port"],
        enforce_schema=config["serve"]["enforce_schema"],
        n_ctx=serve_n_ctx(),
        repeat_last_n=config["decoding"]["repeat_last_n"],
    script:
        "../scripts/serve.py"
