# `snakemake --cores all sweep`: every variant of config `sweep` (a Paramspace over training
# settings and seeds) is trained on the task's own SFT data and shared 4-bit base, merged,
# converted and checked as the shipped model is, and answers the quality held-out inputs without
# a grammar. The teacher is never asked again; a built variant is never rebuilt, and a variant
# with the task's own settings is the build's own model (its quality answers).
SWEEP_DIR = sweep_dir("{task}", "{variant}")


use rule train as sweep_train with:
    output:
        adapter=directory(f"{SWEEP_DIR}/adapter"),
        metrics=f"{SWEEP_DIR}/train_metrics.json",
        history=f"{SWEEP_DIR}/train_log.csv",
    log:
        "results/logs/{task}/sweep/{variant}/sweep_train.log",
    benchmark:
        "results/benchmarks/{task}/sweep/{variant}/sweep_train.tsv"
    wildcard_constraints:
        variant=SWEEP_PATTERN,
    params:
        training=sweep_training,


use rule merge as sweep_merge with:
    input:
        base="results/base/model",
        adapter=f"{SWEEP_DIR}/adapter",
    output:
        temp(directory(f"{SWEEP_DIR}/merged")),
    log:
        "results/logs/{task}/sweep/{variant}/sweep_merge.log",
    benchmark:
        "results/benchmarks/{task}/sweep/{variant}/sweep_merge.tsv"
    wildcard_constraints:
        variant=SWEEP_PATTERN,


use rule convert as sweep_convert with:
    input:
        merged=f"{SWEEP_DIR}/merged",
        examples="results/{task}/teacher.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        gguf=f"{SWEEP_DIR}/model.{GGUF_SUFFIX}.gguf",
        check=f"{SWEEP_DIR}/gguf_check.json",
    log:
        "results/logs/{task}/sweep/{variant}/sweep_convert.log",
    benchmark:
        "results/benchmarks/{task}/sweep/{variant}/sweep_convert.tsv"
    wildcard_constraints:
        variant=SWEEP_PATTERN,


use rule quality_base as sweep_answers with:
    input:
        gguf=f"{SWEEP_DIR}/model.{GGUF_SUFFIX}.gguf",
        heldout="results/quality/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        tuned=sweep_answers("{task}", "{variant}"),
    log:
        "results/logs/{task}/sweep/{variant}/sweep_answers.log",
    benchmark:
        "results/benchmarks/{task}/sweep/{variant}/sweep_answers.tsv"
    wildcard_constraints:
        variant=SWEEP_PATTERN,
    params:
        arms=["tuned"],
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,


rule sweep:
    input:
        sweep_inputs,
    output:
        json="results/sweep/sweep.json",
        markdown="results/sweep/sweep.md",
        plot="results/sweep/sweep.png",
    log:
        "results/logs/sweep.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        schemas=task_schemas(SWEEP_TASKS),
        variants=SWEEP_VARIANTS,
        answers=sweep_answer_files(),
        teacher_labels=config["quality"]["teacher_labels"],
    script:
        "../scripts/sweep.py"
