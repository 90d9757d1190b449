# Named targets: one per stage, and one per task (`snakemake --cores 1 judge`).


rule teacher_all:
    input:
        per_task("results/{task}/teacher.jsonl"),


rule sft_all:
    input:
        per_task("results/{task}/sft/train.jsonl"),
        per_task("results/{task}/sft/val.jsonl"),


rule gguf_all:
    input:
        per_task(f"results/{{task}}/{{task}}.{GGUF_SUFFIX}.gguf"),


rule ollama:
    input:
        per_task("results/{task}/ollama_created.json"),


for _task in TASKS:

    rule:
        name:
            _task
        input:
            task_outputs(_task),
