rule base_tokenizer:
    output:
        directory("results/base/tokenizer"),
    log:
        "results/logs/base/tokenizer.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        base_model=config["base_model"],
    script:
        "../scripts/base_tokenizer.py"
