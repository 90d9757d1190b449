# Named targets: one per stage for every task (`snakemake --cores 1 teacher`), and one per
# task for all of its stages (`snakemake --cores 1 judge`). The per-task rules that do the
# work are named by their verb (teach, split, convert) so that these names stay free.


rule teacher:
    input:
        per_task("results/{task}/teacher.jsonl"),


rule sft:
    input:
        per_task("results/{task}/sft/train.jsonl"),
        per_task("results/{task}/sft/val.jsonl"),


rule gguf:
    input:
        [per_task(pattern) for pattern in deployed_ggufs()],


rule ollama:
    input:
        per_task("results/{task}/ollama_created.json"),


for _task in TASKS:

    rule:
        name:
            _task
        input:
            task_outputs(_task),
