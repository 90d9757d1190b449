rule report:
    input:
        report_inputs(),
    output:
        report=report(
            "results/report.md",
            caption="../report/report_md.rst",
            category="Summary",
            labels={"file": "report.md"},
        ),
        tables=report(
            "results/report_tables.html",
            caption="../report/report_tables.rst",
            category="Summary",
            labels={"file": "tables"},
        ),
        compliance=report(
            "results/plots/compliance.png",
            caption="../report/compliance.rst",
            category="Summary",
            labels={"file": "compliance"},
        ),
        loss=[
            report(
                f"results/plots/{task}_loss.png",
                caption="../report/loss.rst",
                category="Training",
                labels={"task": task},
            )
            for task in TASKS
        ],
    log:
        "results/logs/report.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tasks=TASKS,
        base_model=config["base_model"],
        gguf_type=GGUF_SUFFIX,
        deploy=config["gguf"]["deploy"],
        preference=PREFERENCE,
        meaningful_examples=task_thresholds("meaningful_examples"),
    script:
        "../scripts/report.py"
