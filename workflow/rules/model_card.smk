# The task's model card (results/{task}/MODEL_CARD.md), as the HF hub lays one out: its base and
# license, where its training data came from, how it was trained and evaluated, how to run it.
rule model_card:
    input:
        unpack(model_card_inputs),
        train_metrics="results/{task}/train_metrics.json",
        teacher_stats="results/{task}/teacher_stats.json",
        extract_stats="results/{task}/extract_stats.json",
        evaluation=eval_json("{task}"),
        format=FORMAT_JSON,
    output:
        model_card_path("{task}"),
    log:
        "results/logs/{task}/model_card.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        base_model=config["base_model"],
        vault=config["vault"],
        select=task_setting("select"),
        teacher=TEACHER_GENERATION,
        teacher_prompt=task_setting("teacher_prompt"),
        training=task_training(*TRAINING_KEYS),
        quantization=method_settings(config["quantization"]),
        meaningful_examples=task_setting("meaningful_examples"),
        model_name=ollama_model_name,
        adapter=not DEPLOYS_MERGED,
    script:
        "../scripts/model_card.py"
