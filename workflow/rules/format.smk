# The task's output schema as Ollama's `format` takes it, checked to be one that llama.cpp turns
# into a grammar: the file a client sends with each request (a Modelfile cannot carry it).
rule format:
    input:
        schema=task_setting("output_schema"),
    output:
        FORMAT_JSON,
    log:
        "results/logs/{task}/format.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/format.py"
