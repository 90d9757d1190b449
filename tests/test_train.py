"""Stage train, its fast unit tests: memory trades decided from the budget, the dequantized
weight cache bitwise equal to HQQ's own path (and within rounding of bitsandbytes'), the optimizers
as transformers and bitsandbytes run them, LoRA products under autocast. The real training
runs in test_model_stages.py."""

import pytest
from conftest import default_config

from vault_distill.config import training_settings
from vault_distill.quantize import quantized_layers
from vault_distill.train import (
    cache_dequantized_weights,
    check_tokenized,
    completion_only_trainer,
    decide_dequantized_cache,
    decide_gradient_checkpointing,
    dequantized_bytes,
    final_eval_loss,
    last_checkpoint,
    mixed_precision_forward,
    optimizer_fallback,
    sft_config,
    tokenized_rows,
    trained_tokens,
    training_autocast,
    untrained_row,
)


@pytest.mark.parametrize(
    ("setting", "free_gb", "expected"),
    [("auto", 24, False), ("auto", 0.5, True), (True, 24, True), (False, 0.5, False)],
)
def test_gradient_checkpointing_is_decided_from_the_memory_budget(setting, free_gb, expected):
    from types import SimpleNamespace

    smollm2 = SimpleNamespace(hidden_size=576, num_hidden_layers=30, num_attention_heads=9)
    decision = decide_gradient_checkpointing(setting, smollm2, 4, 512, 2, free_gb * 2**30)
    assert decision.enabled is expected
    assert 500 < decision.need_mb < 4000  # ~1.6 GB for 4x512 tokens of SmolLM2-135M


@pytest.mark.parametrize(
    ("setting", "weight_gb", "free_gb", "expected"),
    [("auto", 0.2, 24, True), ("auto", 14, 24, False), (True, 14, 24, True), (False, 0.2, 24, False)],
    ids=["135M-cpu", "7B-24GB", "forced-on", "forced-off"],
)
def test_dequantized_cache_is_decided_from_the_memory_budget(setting, weight_gb, free_gb, expected):
    decision = decide_dequantized_cache(setting, weight_gb * 2**30, free_gb * 2**30)
    assert decision.enabled is expected
    assert decision.need_mb == pytest.approx(weight_gb * 1024, rel=1e-3)


def test_cached_dequantized_weights_give_hqqs_own_outputs_and_gradients():
    """The cache is a speed trade only: the same forward values and the same input gradients
    as HQQ's own dequantize-every-time path, on real HQQ 4-bit layers."""
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 192, bias=True), torch.nn.SiLU(), torch.nn.Linear(192, 64))
    quant = BaseQuantizeConfig(nbits=4, group_size=64)
    for index in (0, 2):
        model[index] = HQQLinear(model[index], quant, compute_dtype=torch.bfloat16, device="cpu")
    x = torch.randn(3, 5, 128, dtype=torch.bfloat16)

    def run():
        inputs = x.clone().requires_grad_(True)
        out = model(inputs)
        out.float().square().sum().backward()
        return out.detach(), inputs.grad

    reference_out, reference_grad = run()
    layers = quantized_layers(model)
    assert dequantized_bytes(layers, 2) == (128 * 192 + 192 * 64) * 2
    cache_dequantized_weights(layers)
    cached_out, cached_grad = run()
    torch.testing.assert_close(cached_out, reference_out, rtol=0, atol=0)
    torch.testing.assert_close(cached_grad, reference_grad, rtol=0, atol=0)


def test_cached_dequantized_weights_give_bitsandbytes_nf4_outputs_and_gradients():
    """The same trade on bitsandbytes' NF4 layers: the cached weight is the one bitsandbytes
    dequantizes to; its fused CPU kernel rounds the products differently, within bf16 rounding."""
    import bitsandbytes as bnb
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 192, bias=True), torch.nn.SiLU(), torch.nn.Linear(192, 64))
    for index in (0, 2):
        dense = model[index]
        layer = bnb.nn.Linear4bit(dense.in_features, dense.out_features, compute_dtype=torch.bfloat16, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(dense.weight.data, requires_grad=False, quant_type="nf4")
        layer.bias = torch.nn.Parameter(dense.bias.data.to(torch.bfloat16), requires_grad=False)
        model[index] = layer.to("cpu")  # Params4bit quantizes on its move to the device
        assert model[index].weight.dtype == torch.uint8
    x = torch.randn(3, 5, 128, dtype=torch.bfloat16)

    def run():
        inputs = x.clone().requires_grad_(True)
        out = model(inputs)
        out.float().square().sum().backward()
        return out.detach().float(), inputs.grad.float()

    reference_out, reference_grad = run()
    layers = quantized_layers(model)
    assert [type(layer).__name__ for layer in layers] == ["Linear4bit", "Linear4bit"]
    assert dequantized_bytes(layers, 2) == (128 * 192 + 192 * 64) * 2
    cache_dequantized_weights(layers)
    cached_out, cached_grad = run()
    torch.testing.assert_close(cached_out, reference_out, rtol=0.02, atol=0.02)
    torch.testing.assert_close(cached_grad, reference_grad, rtol=0.02, atol=0.05)
    assert not torch.equal(cached_out, torch.zeros_like(cached_out))


def test_a_paged_optimizer_on_the_cpu_is_what_bitsandbytes_runs_unpaged():
    """Measured, not assumed: bitsandbytes' PagedAdamW8bit steps on the CPU, warns, and keeps its
    state as ordinary tensors. optimizer_fallback says so for the log and train_metrics.json."""
    import warnings

    import bitsandbytes as bnb
    import torch

    weight = torch.nn.Parameter(torch.randn(256, 512))  # > 4096 elements: 8-bit state
    before = weight.detach().clone()
    optimizer = bnb.optim.PagedAdamW8bit([weight], lr=1e-2)
    weight.grad = torch.randn_like(weight)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer.step()
    assert any("Paged optimizers are not supported on CPU" in str(w.message) for w in caught)
    state = optimizer.state[weight]
    assert state["state1"].dtype == torch.uint8 and not getattr(state["state1"], "is_paged", False)
    assert not torch.equal(weight.detach(), before)
    assert optimizer_fallback("paged_adamw_8bit", "cpu") and "unpaged" in optimizer_fallback("paged_adamw_8bit", "cpu")
    assert optimizer_fallback("paged_adamw_8bit", "cuda") is None
    assert optimizer_fallback("adamw_8bit", "cpu") is None


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        ("adamw_torch_fused", ("torch.optim.adamw", {"fused": True})),
        ("adamw_torch", ("torch.optim.adamw", {})),
        ("adamw_8bit", ("bitsandbytes.optim.adamw", {"optim_bits": 8, "is_paged": False})),
        ("paged_adamw_8bit", ("bitsandbytes.optim.adamw", {"optim_bits": 8, "is_paged": True})),
    ],
)
def test_every_optimizer_the_schema_allows_is_one_transformers_builds(tmp_path, optimizer, expected):
    """The schema's spellings are transformers' own: the Trainer turns each into its optimizer."""
    import yaml
    from conftest import ROOT
    from transformers import Trainer, TrainingArguments

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text(encoding="utf-8"))
    assert optimizer in schema["$defs"]["training_values"]["properties"]["optimizer"]["enum"]
    args = TrainingArguments(output_dir=str(tmp_path), optim=optimizer, use_cpu=True, report_to=[])
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    module, options = expected
    assert cls.__module__ == module and cls.__name__ == "AdamW"
    assert options.items() <= kwargs.items()


def hqq_lora_toy():
    """Two HQQ 4-bit layers with random LoRA A and B (not PEFT's zero B, so that the LoRA branch
    changes the output), and a bf16 input."""
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQLinear
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 192), torch.nn.SiLU(), torch.nn.Linear(192, 64))
    quant = BaseQuantizeConfig(nbits=4, group_size=64)
    for index in (0, 2):
        model[index] = HQQLinear(model[index], quant, compute_dtype=torch.bfloat16, device="cpu")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["0", "2"], init_lora_weights=False))
    return model, torch.randn(3, 5, 128, dtype=torch.bfloat16)


def lora_modules(model, suffix: str) -> list:
    return [module for name, module in model.named_modules() if name.endswith(suffix)]


def test_lora_products_run_in_the_training_dtype_under_training_autocast():
    """PEFT keeps the LoRA weights in fp32 for the optimizer. Without autocast (the Trainer's
    CPU case) their products run in fp32; under training_autocast they run in bf16, the
    gradients still reach the fp32 weights, and the output differs only by rounding."""
    import torch

    model, x = hqq_lora_toy()
    lora_b = lora_modules(model, "lora_B.default")
    seen_dtypes = []
    for module in lora_b:
        module.register_forward_hook(lambda module, args, out: seen_dtypes.append(out.dtype))

    def run(autocast: bool):
        seen_dtypes.clear()
        model.zero_grad()
        with training_autocast("cpu", torch.bfloat16 if autocast else torch.float32):
            out = model(x)
        out.float().square().sum().backward()
        grads = [module.weight.grad for module in lora_b]
        return out.detach().float(), list(seen_dtypes), grads

    fp32_out, fp32_dtypes, _ = run(autocast=False)
    mixed_out, mixed_dtypes, mixed_grads = run(autocast=True)
    assert fp32_dtypes == [torch.float32, torch.float32]
    assert mixed_dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0 for grad in mixed_grads)
    torch.testing.assert_close(mixed_out, fp32_out, rtol=0.02, atol=0.02)


def test_the_mixed_precision_forward_drops_peft_s_input_casts_and_computes_bitwise_the_same():
    """PEFT casts every LoRA input to its weights' fp32, and autocast casts it straight back to bf16
    for the product. Without that round trip the LoRA layers see the bf16 input itself, and the
    output and every gradient are bitwise those of training_autocast alone."""
    import torch

    model, x = hqq_lora_toy()
    lora_a = lora_modules(model, "lora_A.default")
    input_dtypes = []
    for module in lora_a:
        module.register_forward_pre_hook(lambda module, args: input_dtypes.append(args[0].dtype))

    def run(forward):
        input_dtypes.clear()
        model.zero_grad()
        with forward:
            out = model(x)
        out.float().square().sum().backward()
        grads = [param.grad.clone() for param in model.parameters() if param.requires_grad]
        return out.detach(), list(input_dtypes), grads

    cast_out, cast_inputs, cast_grads = run(training_autocast("cpu", torch.bfloat16))
    out, inputs, grads = run(mixed_precision_forward(model, "cpu", torch.bfloat16))
    assert cast_inputs == [torch.float32, torch.float32]
    assert inputs == [torch.bfloat16, torch.bfloat16]
    assert torch.equal(out, cast_out)
    assert len(grads) == len(cast_grads) == 4
    assert all(torch.equal(a, b) for a, b in zip(grads, cast_grads, strict=True))
    # PEFT's own setting is back once the forward is done, for any code that runs without autocast.
    assert all(module.cast_input_dtype_enabled for module in lora_modules(model, "0") + lora_modules(model, "2"))
    # Without mixed precision there is no cast to drop: fp32 stays fp32.
    with mixed_precision_forward(model, "cpu", torch.float32):
        assert all(module.cast_input_dtype_enabled for module in lora_modules(model, "0"))


def test_an_untrained_end_of_turn_row_is_told_from_a_trained_one():
    import torch

    torch.manual_seed(0)
    embedding = torch.randn(2000, 32)
    embedding[7] = 0  # never trained and left at zero (Llama 3 base's <|eot_id|>)
    shared = torch.randn(32)
    embedding[1000:1400] = shared + 1e-3 * torch.randn(400, 32)  # left at one initialisation (Gemma 3 pt)
    assert untrained_row(embedding, 7).startswith("its embedding row is zero")
    assert untrained_row(embedding, 1200) == "its embedding row is one of 400 near-identical rows (cosine > 0.99)"
    assert untrained_row(embedding, 3) is None
    embedding[10:30] = torch.randn(32)  # a few similar special tokens, as SmolLM2-Instruct's (18 twins) are: trained
    assert untrained_row(embedding, 15) is None


def test_prompt_and_completion_are_tokenized_apart_as_served(tokenizer):
    rows = tokenized_rows([{"prompt": "<|im_start|>assistant\n\n", "completion": '{"a": 1}<|im_end|>'}], tokenizer)
    prompt_ids = tokenizer("<|im_start|>assistant\n\n")["input_ids"]
    assert rows[0]["input_ids"][: len(prompt_ids)] == prompt_ids  # joined, "\n\n{" would split as "\n", "\n{"
    assert rows[0]["completion_mask"] == [0] * len(prompt_ids) + [1] * (len(rows[0]["input_ids"]) - len(prompt_ids))
    assert tokenizer.decode(rows[0]["input_ids"][len(prompt_ids) :]) == '{"a": 1}<|im_end|>'


def tiny_llama(vocab_size: int = 32, layers: int = 2):
    """A randomly initialised Llama with SDPA attention, small enough for a step in milliseconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def tiny_trainer(output_dir, max_steps: int, eval_steps: int | None = None, callbacks=()):
    """A real Trainer on a two-layer Llama small enough to save a checkpoint every step; with
    `eval_steps`, it evaluates on other rows that often."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = tiny_llama()
    rows = Dataset.from_list([{"input_ids": [1, 5, 7, 9], "labels": [1, 5, 7, 9]}] * 4)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        save_steps=1,
        per_device_train_batch_size=1,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
    )
    evals = Dataset.from_list([{"input_ids": [1, 9, 7, 5], "labels": [1, 9, 7, 5]}] * 2)
    return Trainer(model=model, args=args, train_dataset=rows, eval_dataset=evals, callbacks=list(callbacks))


def evaluation_counter():
    """A Trainer callback that counts the evaluations the Trainer runs."""
    from transformers import TrainerCallback

    class EvaluationCounter(TrainerCallback):
        calls = 0

        def on_evaluate(self, args, state, control, **kwargs):
            self.calls += 1

    return EvaluationCounter()


@pytest.mark.parametrize(("eval_steps", "evaluations_after_training"), [(2, 0), (None, 1)])
def test_the_final_eval_loss_is_evaluated_again_only_when_training_did_not(
    tmp_path, eval_steps, evaluations_after_training
):
    """A run that evaluated as it trained (every 2 of 4 steps) has just measured its final model:
    that figure is reused. A run that never evaluated is evaluated once, after training."""
    counter = evaluation_counter()
    trainer = tiny_trainer(tmp_path, max_steps=4, eval_steps=eval_steps, callbacks=[counter])
    trainer.train()
    during_training = counter.calls

    loss = final_eval_loss(trainer)

    assert counter.calls - during_training == evaluations_after_training
    assert loss == pytest.approx(trainer.evaluate()["eval_loss"], abs=1e-6)
    step_two = [e["eval_loss"] for e in trainer.state.log_history if e.get("step") == 2 and "eval_loss" in e]
    assert len(step_two) == (0 if eval_steps is None else 1)
    assert loss not in step_two  # the final model's loss, not an earlier evaluation's


def test_a_checkpoint_whose_save_was_cut_off_is_never_resumed(tmp_path):
    """A SIGKILL in the middle of a save leaves the newest folder without (or with half of) the
    trainer state the Trainer writes last: resuming goes back to the last one saved to the end."""
    tiny_trainer(tmp_path, max_steps=3).train()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")

    (tmp_path / "checkpoint-3" / "trainer_state.json").unlink()  # killed after the optimizer state
    state = tmp_path / "checkpoint-2" / "trainer_state.json"
    state.write_text(state.read_text(encoding="utf-8")[:40], encoding="utf-8")  # killed mid-write
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")

    resumed = tiny_trainer(tmp_path, max_steps=3)
    resumed.train(resume_from_checkpoint=last_checkpoint(tmp_path))
    assert resumed.state.global_step == 3
    assert last_checkpoint(tmp_path / "no-such-run") is None


@pytest.mark.parametrize(("alpha", "expected"), [("default", 5), (None, None), (10, 10)])
def test_neftune_alpha_reaches_trl_and_is_on_by_default(tmp_path, alpha, expected):
    config = default_config()
    if alpha != "default":
        config["training"]["neftune_alpha"] = alpha
    settings = training_settings(config, "judge")
    args = sft_config(settings, tmp_path, "cpu", None, checkpoint_every=20, evaluate=False)
    assert args.neftune_noise_alpha == expected


@pytest.mark.parametrize("weight", [1.0, 10.0, 0.0])
def test_the_end_of_turn_weight_scales_that_token_s_loss_alone(weight):
    """The loss is transformers' causal-LM loss over the completion, with the end-of-turn token's
    term multiplied by `end_of_turn_weight`, still divided by the count of trained tokens."""
    import torch
    import torch.nn.functional as F

    model = tiny_llama(layers=1)
    end_of_turn = 31
    input_ids = torch.tensor([[1, 5, 7, 9, 4, end_of_turn], [1, 6, 8, end_of_turn, 0, 0]])
    labels = torch.tensor([[-100, -100, 7, 9, 4, end_of_turn], [-100, -100, 8, end_of_turn, -100, -100]])
    inputs = {"input_ids": input_ids, "attention_mask": (labels != -100) | (input_ids != 0), "labels": labels}
    trainer_class = completion_only_trainer("cpu", torch.float32, end_of_turn, weight)

    loss = trainer_class.compute_loss(None, model, inputs)

    logits = model(input_ids=input_ids, attention_mask=inputs["attention_mask"]).logits[:, :-1]
    targets = labels[:, 1:]
    each = F.cross_entropy(logits.reshape(-1, 32), targets.reshape(-1), reduction="none", ignore_index=-100)
    scale = torch.where(targets.reshape(-1) == end_of_turn, weight, 1.0)
    assert loss.item() == pytest.approx((each * scale).sum().item() / 6, rel=1e-5)
    if weight == 1.0:
        assert loss.item() == pytest.approx(model(**inputs).loss.item(), rel=1e-5)  # transformers' own loss


def test_a_packed_batch_gives_the_padded_batch_s_loss_on_cpu_sdpa():
    """BFD packing hands the loss one row with position_ids restarting at each example and no
    attention mask (TRL's padding-free collator). Through SDPA on the CPU, each example must attend
    to itself alone: the loss is the padded batch's, to rounding."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = tiny_llama()
    assert model.config._attn_implementation == "sdpa"
    examples = [
        {"input_ids": [1, 5, 7, 9, 4, 31], "labels": [-100, -100, 7, 9, 4, 31]},
        {"input_ids": [1, 6, 8, 31], "labels": [-100, -100, 8, 31]},
        {"input_ids": [1, 2, 3, 11, 12, 13, 14, 31], "labels": [-100, -100, -100, 11, 12, 13, 14, 31]},
    ]
    trainer_class = completion_only_trainer("cpu", torch.float32)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert packed["input_ids"].shape == (1, 18) and "attention_mask" not in packed

    padded_loss = trainer_class.compute_loss(None, model, padded)
    packed_loss = trainer_class.compute_loss(None, model, packed)

    assert packed_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)
    unmasked = dict(packed, position_ids=torch.arange(18)[None])  # one long example: attends across
    assert trainer_class.compute_loss(None, model, unmasked).item() != pytest.approx(padded_loss.item(), rel=1e-3)


def test_bfd_packing_trains_every_example_in_fewer_rows(tmp_path, tokenizer):
    """`training.packing`: TRL packs the records into rows of max_length, none is dropped, and the
    run counts the tokens it trained on, as an unpacked run does."""
    import torch
    from datasets import Dataset

    answers = ['{"a": 1}', '{"b": [2, 3]}', '{"c": "d"}', '{"e": true}', '{"f": null}']
    records = [
        {"prompt": f"<|im_start|>user\nq{i}<|im_end|>\n<|im_start|>assistant\n", "completion": a + "<|im_end|>"}
        for i, a in enumerate(answers)
    ]
    rows = tokenized_rows(records, tokenizer)
    settings = {**training_settings(default_config(), "judge"), "packing": True, "max_length": 64, "epochs": 1}
    settings |= {"neftune_alpha": None, "batch_size": 2}
    args = sft_config(settings, tmp_path, "cpu", torch.float32, checkpoint_every=100, evaluate=False)
    trainer = completion_only_trainer("cpu", torch.float32)(
        model=tiny_llama(len(tokenizer), layers=1),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )

    check_tokenized(trainer, rows, 64)
    assert len(trainer.train_dataset) < len(rows)
    trainer.train()
    assert trained_tokens(trainer, rows, settings, None) == sum(len(row["input_ids"]) for row in rows)
