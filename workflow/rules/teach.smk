rule teach:
    input:
        inputs="results/{task}/inputs.jsonl",
        system_prompt=task_setting("system_prompt"),
        output_schema=task_setting("output_schema"),
    output:
        examples="results/{task}/teacher.jsonl",
        rejects="results/{task}/teacher_rejects.jsonl",
        stats="results/{task}/teacher_stats.json",
    log:
        "results/logs/{task}/teach.log",
    benchmark:
        "results/benchmarks/{task}/teach.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: teacher_threads()
    resources:
        mem_mb=teacher_memory_mb,
        runtime=teacher_runtime,
        gpu=0,
    params:
        teacher=TEACHER_GENERATION,
        examples=task_setting("examples"),
    script:
        "../scripts/teach.py"
