# The task's evaluation added to its training's run, where training.report_to records runs
# (TensorBoard, MLflow). Only built when report_to is on: turning it on never retrains.
rule track:
    input:
        metrics="results/{task}/train_metrics.json",
        history="results/{task}/train_log.csv",
        evaluation=eval_json("{task}"),
    output:
        TRACKED_JSON,
    log:
        "results/logs/{task}/track.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        report_to=task_training("report_to"),
        experiment=task_training("experiment"),
        training=task_training(*TRAINING_KEYS),
        quantization=config["quantization"],
    script:
        "../scripts/track.py"
