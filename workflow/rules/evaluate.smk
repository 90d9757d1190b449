rule evaluate:
    input:
        unpack(evaluated_models),
        val="results/{task}/sft/val.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        evaluation=eval_json("{task}"),
        samples=report(
            eval_samples("{task}"),
            caption="../report/eval_samples.rst",
            category="Evaluation",
            labels={"task": "{task}"},
        ),
    log:
        "results/logs/{task}/evaluate.log",
    benchmark:
        "results/benchmarks/{task}/evaluate.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=0,
    params:
        decoding=task_decoding,
        n_ctx=evaluation_n_ctx,
        samples=config["evaluation"]["samples"],
    script:
        "../scripts/evaluate.py"
