rule base_tokenizer:
    output:
        directory("results/base/tokenizer"),
    log:
        "results/logs/base_tokenizer.log",
    conda:
        "../../envs/vault-distill.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fingerprint=base_tokenizer_fingerprint,
    script:
        "../scripts/base_tokenizer.py"
