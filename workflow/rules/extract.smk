rule extract:
    input:
        notes=task_notes,
    output:
        "results/{task}/inputs.jsonl",
    log:
        "results/logs/{task}/extract.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        vault=config["vault"],
        header=task_setting("header"),
        select=task_setting("select"),
    script:
        "../scripts/extract.py"
