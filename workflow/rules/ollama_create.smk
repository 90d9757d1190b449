# Optional, never part of `all`: registers every model with a local Ollama (the merged one when
# gguf.deploy ships it, else base + adapter).
rule ollama_create:
    input:
        unpack(ollama_inputs),
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
