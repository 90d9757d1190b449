# The preference stage (preference.enabled): DPO on the SFT model's own format failures.


# The SFT adapter as a LoRA GGUF on the base GGUF answers every training input, decoded as
# served; each answer that is not compliant becomes a pair against the teacher's answer.
rule prefer_pairs:
    input:
        base_gguf=BASE_GGUF,
        base="results/base/model",
        adapter=SFT_ADAPTER,
        train="results/{task}/sft/train.jsonl",
        output_schema=task_setting("output_schema"),
    output:
        lora=SFT_LORA_GGUF,
        answers="results/{task}/preference/sft_answers.json",
        pairs="results/{task}/preference/pairs.jsonl",
    log:
        "results/logs/{task}/prefer_pairs.log",
    benchmark:
        "results/benchmarks/{task}/prefer_pairs.tsv"
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
    script:
        "../scripts/prefer_pairs.py"


# TRL's DPOTrainer from the SFT adapter, on the same 4-bit base. No pairs: the SFT adapter, unchanged.
rule prefer:
    input:
        quantized=QUANTIZED_BASE,
        tokenizer="results/base/tokenizer",
        adapter=SFT_ADAPTER,
        pairs="results/{task}/preference/pairs.jsonl",
    output:
        adapter=directory("results/{task}/preference/adapter"),
        metrics="results/{task}/preference/metrics.json",
    log:
        "results/logs/{task}/prefer.log",
    benchmark:
        "results/benchmarks/{task}/prefer.tsv"
    conda:
        "../../envs/vault-distill.yaml"
    threads: 2
    resources:
        mem_mb=sizing.train_memory_mb,
        runtime=sizing.prefer_runtime,
        gpu=sizing.gpu_count(),
    params:
        preference=PREFERENCE_TRAINING,
        training=task_training("seed", "device", "dtype"),
    script:
        "../scripts/prefer.py"
