rule modelfile:
    input:
        gguf=f"results/{{task}}/{{task}}.{GGUF_SUFFIX}.gguf",
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
        decoding=config["decoding"],
        num_ctx=task_num_ctx,
    script:
        "../scripts/modelfile.py"


# Optional, never part of `all`: registers every model with a local Ollama.
rule ollama_create:
    input:
        modelfile="results/{task}/Modelfile",
        gguf=f"results/{{task}}/{{task}}.{GGUF_SUFFIX}.gguf",
    output:
        "results/{task}/ollama_created.json",
    log:
        "results/logs/{task}/ollama_create.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        name=ollama_model_name,
    script:
        "../scripts/ollama_create.py"
