rule teach:
    input:
        inputs="results/{task}/inputs.jsonl",
        system_prompt=task_setting("system_prompt"),
        output_schema=task_setting("output_schema"),
        # tasks.<task>.teacher_prompt: the teacher's own addition to the system prompt, if any.
        teacher_prompt=teacher_prompt_file,
        # Waits for the settings check, which must pass before anything is paid for. A rerun of
        # the check (a new max_length) reruns this job too, from the cache: nothing is paid again.
        # (ancient() would spare that rerun, but then Snakemake never looks at this job's own
        # reasons while the check reruns, and a changed system prompt would ask no teacher.)
        preflight="results/{task}/preflight.json",
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
    threads: sizing.teacher_threads()
    resources:
        mem_mb=sizing.teacher_memory_mb,
        runtime=sizing.teacher_runtime,
        gpu=0,
    params:
        teacher=TEACHER_GENERATION,
        acceptance=TEACHER_ACCEPTANCE,
        examples=task_setting("examples"),
    script:
        "../scripts/teach.py"
