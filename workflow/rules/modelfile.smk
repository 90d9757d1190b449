rule modelfile:
    input:
        gguf=MERGED_GGUF,
        tokenizer="results/base/tokenizer",
        system_prompt=task_setting("system_prompt"),
    output:
        "results/{task}/Modelfile",
    log:
        "results/logs/{task}/modelfile.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        decoding=task_decoding,
        num_ctx=task_num_ctx,
    script:
        "../scripts/modelfile.py"


# FROM the shared base GGUF, ADAPTER the task's LoRA GGUF: Ollama stores the base blob once.
rule modelfile_adapter:
    input:
        lora=LORA_GGUF,
        base_gguf=BASE_GGUF,
        tokenizer="results/base/tokenizer",
        system_prompt=task_setting("system_prompt"),
    output:
        "results/{task}/adapter.Modelfile",
    log:
        "results/logs/{task}/modelfile_adapter.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        decoding=task_decoding,
        num_ctx=task_num_ctx,
    script:
        "../scripts/modelfile_adapter.py"
