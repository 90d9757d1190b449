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
