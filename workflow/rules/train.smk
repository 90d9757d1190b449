rule train:
    input:
        quantized=QUANTIZED_BASE,
        tokenizer="results/base/tokenizer",
        train="results/{task}/sft/train.jsonl",
        val="results/{task}/sft/val.jsonl",
    output:
        adapter=directory("results/{task}/adapter"),
        metrics="results/{task}/train_metrics.json",
        history="results/{task}/train_log.csv",
    log:
        "results/logs/{task}/train.log",
    benchmark:
        "results/benchmarks/{task}/train.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.train_memory_mb,
        runtime=sizing.train_runtime,
        gpu=sizing.gpu_count(),
    params:
        training=task_training(*TRAINING_KEYS),
    script:
        "../scripts/train.py"
