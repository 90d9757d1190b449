# The quality benchmark (`snakemake --cores all quality`, not part of `all`): four arms per task
# (five with gguf.deploy adapter or both)
# on every held-out input. Base answers depend only on the base GGUF, the held-out inputs and
# the decoding settings, so a retrain reruns the tuned arms and never the base ones.


rule quality_heldout:
    input:
        inputs="results/{task}/inputs.jsonl",
        train="results/{task}/sft/train.jsonl",
        val="results/{task}/sft/val.jsonl",
        tokenizer="results/base/tokenizer",
        system_prompt=task_setting("system_prompt"),
    output:
        heldout="results/quality/{task}/heldout.jsonl",
        unseen_inputs="results/quality/{task}/unseen_inputs.jsonl",
    log:
        "results/logs/{task}/quality_heldout.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        max_length=task_training("max_length"),
        max_inputs=config["quality"]["max_inputs"],
    script:
        "../scripts/quality_heldout.py"


# Gold values for the held-out inputs, from the notes each was built from (vault_distill/gold.py):
# truth that no model gave. The notes are inputs, so an edit to one re-derives its labels.
rule quality_gold:
    input:
        heldout="results/quality/{task}/heldout.jsonl",
        inputs="results/{task}/inputs.jsonl",
        notes=task_notes,
    output:
        "results/quality/{task}/gold.jsonl",
    log:
        "results/logs/{task}/quality_gold.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        vault=config["vault"],
    script:
        "../scripts/quality_gold.py"


# Teacher answers for the held-out inputs that have none (quality.teacher_labels), through the
# same cache as the teach jobs: an input already answered there is never paid for again.
rule quality_teach:
    input:
        inputs="results/quality/{task}/unseen_inputs.jsonl",
        system_prompt=task_setting("system_prompt"),
        output_schema=task_setting("output_schema"),
        teacher_prompt=teacher_prompt_file,
    output:
        examples="results/quality/{task}/teacher.jsonl",
        rejects="results/quality/{task}/teacher_rejects.jsonl",
        stats="results/quality/{task}/teacher_stats.json",
    log:
        "results/logs/{task}/quality_teach.log",
    benchmark:
        "results/benchmarks/{task}/quality_teach.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: sizing.teacher_threads()
    resources:
        mem_mb=sizing.teacher_memory_mb,
        runtime=120,
        gpu=0,
    params:
        teacher=TEACHER_GENERATION,
        acceptance=TEACHER_ACCEPTANCE,
        examples=config["quality"]["max_inputs"],
    script:
        "../scripts/teach.py"


# One rule pattern answers every arm with llama.cpp (quality_answers.py): the base GGUF here; the
# rules below reuse it for the merged tuned GGUF and the LoRA GGUFs, changing only what they read.
rule quality_base:
    input:
        gguf=BASE_GGUF,
        heldout="results/quality/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(BASE_ARMS),
    log:
        "results/logs/{task}/quality_base.log",
    benchmark:
        "results/benchmarks/{task}/quality_base.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    params:
        arms=list(BASE_ARMS),
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,
    script:
        "../scripts/quality_answers.py"


use rule quality_base as quality_tuned with:
    input:
        gguf=MERGED_GGUF,
        heldout="results/quality/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(TUNED_ARMS),
    log:
        "results/logs/{task}/quality_tuned.log",
    benchmark:
        "results/benchmarks/{task}/quality_tuned.tsv"
    params:
        arms=list(TUNED_ARMS),
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,


# gguf.deploy adapter or both: the task's LoRA GGUF on the base GGUF, as `serve` answers.
use rule quality_base as quality_tuned_adapter with:
    input:
        gguf=BASE_GGUF,
        lora=LORA_GGUF,
        heldout="results/quality/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(ADAPTER_ARMS),
    log:
        "results/logs/{task}/quality_tuned_adapter.log",
    benchmark:
        "results/benchmarks/{task}/quality_tuned_adapter.tsv"
    params:
        arms=list(ADAPTER_ARMS),
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,


rule quality:
    input:
        quality_inputs(),
        tracked=tracked_runs(),
    output:
        json="results/quality/quality.json",
        markdown=report(
            "results/quality/quality.md",
            caption="../report/quality.rst",
            category="Quality",
            labels={"file": "quality.md"},
        ),
        plot=report(
            "results/quality/quality.png",
            caption="../report/quality.rst",
            category="Quality",
            labels={"file": "plot"},
        ),
    log:
        "results/logs/quality.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        schemas=task_schemas(),
        teacher={key: config["teacher"][key] for key in ("backend", "model")},
        base_model=config["base_model"],
        decoding=task_decodings(),
        teacher_labels=config["quality"]["teacher_labels"],
        arms=QUALITY_ARMS_BUILT,
        enforce_schema=config["serve"]["enforce_schema"],
    script:
        "../scripts/quality.py"


# preference.enabled: the SFT adapter before DPO (the LoRA GGUF the prefer_pairs job made), beside
# `tuned`, which is then SFT + preference.
use rule quality_base as quality_sft with:
    input:
        gguf=BASE_GGUF,
        lora=SFT_LORA_GGUF,
        heldout="results/quality/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(SFT_ARMS),
    log:
        "results/logs/{task}/quality_sft.log",
    benchmark:
        "results/benchmarks/{task}/quality_sft.tsv"
    params:
        arms=list(SFT_ARMS),
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,


# The holdout vault (quality.holdout): a second vault that no model learnt from, scored with the
# same arms, teacher cache and gold rules. `snakemake --cores all quality_holdout`.
rule quality_holdout_extract:
    input:
        notes=holdout_notes,
    output:
        inputs="results/holdout/{task}/inputs.jsonl",
        stats="results/holdout/{task}/extract_stats.json",
    log:
        "results/logs/{task}/quality_holdout_extract.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        vault=HOLDOUT["vault"],
        header=task_setting("header"),
        select=holdout_selector,
        select_key="quality.holdout.select.{task}",
    script:
        "../scripts/extract.py"


# Every holdout input is held out (no train or val split: none was ever trained on).
use rule quality_heldout as quality_holdout_heldout with:
    input:
        inputs="results/holdout/{task}/inputs.jsonl",
        tokenizer="results/base/tokenizer",
        system_prompt=task_setting("system_prompt"),
    output:
        heldout="results/holdout/{task}/heldout.jsonl",
        unseen_inputs="results/holdout/{task}/unseen_inputs.jsonl",
    log:
        "results/logs/{task}/quality_holdout_heldout.log",


use rule quality_teach as quality_holdout_teach with:
    input:
        inputs="results/holdout/{task}/unseen_inputs.jsonl",
        system_prompt=task_setting("system_prompt"),
        output_schema=task_setting("output_schema"),
        teacher_prompt=teacher_prompt_file,
    output:
        examples="results/holdout/{task}/teacher.jsonl",
        rejects="results/holdout/{task}/teacher_rejects.jsonl",
        stats="results/holdout/{task}/teacher_stats.json",
    log:
        "results/logs/{task}/quality_holdout_teach.log",
    benchmark:
        "results/benchmarks/{task}/quality_holdout_teach.tsv"


use rule quality_gold as quality_holdout_gold with:
    input:
        heldout="results/holdout/{task}/heldout.jsonl",
        inputs="results/holdout/{task}/inputs.jsonl",
        notes=holdout_notes,
    output:
        "results/holdout/{task}/gold.jsonl",
    log:
        "results/logs/{task}/quality_holdout_gold.log",
    params:
        vault=HOLDOUT["vault"],


use rule quality_base as quality_holdout_base with:
    input:
        gguf=BASE_GGUF,
        heldout="results/holdout/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(BASE_ARMS, "holdout"),
    log:
        "results/logs/{task}/quality_holdout_base.log",
    benchmark:
        "results/benchmarks/{task}/quality_holdout_base.tsv"


use rule quality_base as quality_holdout_tuned with:
    input:
        gguf=MERGED_GGUF,
        heldout="results/holdout/{task}/heldout.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        **quality_arm_outputs(TUNED_ARMS, "holdout"),
    log:
        "results/logs/{task}/quality_holdout_tuned.log",
    benchmark:
        "results/benchmarks/{task}/quality_holdout_tuned.tsv"
    params:
        arms=list(TUNED_ARMS),
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,


# The holdout report, with the sample vault's figures beside it.
rule quality_holdout:
    input:
        holdout_inputs(),
        sample="results/quality/quality.json",
        tracked=tracked_runs(HOLDOUT_TASKS),
    output:
        json="results/holdout/quality.json",
        markdown="results/holdout/quality.md",
        plot="results/holdout/quality.png",
    log:
        "results/logs/quality_holdout.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        schemas={task: config["tasks"][task]["output_schema"] for task in HOLDOUT_TASKS},
        teacher={key: config["teacher"][key] for key in ("backend", "model")},
        base_model=config["base_model"],
        decoding=task_decodings(),
        teacher_labels=config["quality"]["teacher_labels"],
        enforce_schema=config["serve"]["enforce_schema"],
        arms=list(QUALITY_ARMS),
        bench="holdout",
        vault=HOLDOUT["vault"],
    script:
        "../scripts/quality.py"
