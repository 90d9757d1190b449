"""Stage quantize: the base model's 4-bit version, made once and loaded by every task's training.

Two methods, one config switch (`quantization.method`):
- `hqq` (default): HQQ quantizes without calibration data and runs on plain PyTorch, so the
  same code trains on CUDA, ROCm and the CPU. Saved in hqq's own format.
- `nf4`: bitsandbytes NF4 with optional double quantization, the QLoRA paper's recipe, through
  transformers' BitsAndBytesConfig. Saved with bitsandbytes' 4-bit serialization (safetensors).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .hardware import dtype_name, guard_torch_compile, release_freed_memory

log = logging.getLogger(__name__)

# Written beside either method's files; training reads the method back from it.
QUANT_SETTINGS_FILE = "vault_distill_quantization.json"
# The keys of config/schema.yaml's `quantization` that each method reads: the quantize rule's
# rerun trigger, so that an HQQ knob never requantizes an NF4 base, nor the other way round.
METHOD_KEYS = {"hqq": ("nbits", "group_size", "optimize"), "nf4": ("double_quant",)}


def method_settings(quantization: dict) -> dict:
    """The method and only the settings it reads."""
    method = quantization["method"]
    return {"method": method, **{key: quantization[key] for key in METHOD_KEYS[method]}}


def bits_per_weight(quantization: dict) -> int:
    return 4 if quantization["method"] == "nf4" else quantization["nbits"]


def quantize_base(base_dir: str | Path, out_dir: str | Path, settings: dict, device: str, dtype) -> dict:
    """Quantize every linear layer of the decoder with `settings["method"]` and save it."""
    settings = method_settings(settings)
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = QUANTIZERS[settings["method"]](base_dir, out_dir, settings, device, dtype)
    info = {
        **settings,
        "compute_dtype": dtype_name(dtype),
        "device": device,
        "quantized_layers": len(quantized_layers(model)),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / QUANT_SETTINGS_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("quantized %s", info)
    return info


def _quantize_hqq(base_dir, out_dir: Path, settings: dict, device: str, dtype):
    guard_torch_compile()
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    quant_config = BaseQuantizeConfig(nbits=settings["nbits"], group_size=settings["group_size"])
    quant_config["weight_quant_params"]["optimize"] = settings["optimize"]
    AutoHQQHFModel.quantize_model(model, quant_config=quant_config, compute_dtype=dtype, device=device)
    release_freed_memory()  # the replaced bf16 layers, before saving reads every tensor again
    AutoHQQHFModel.save_quantized(model, str(out_dir))  # config.json + qmodel.pt
    return model


def _quantize_nf4(base_dir, out_dir: Path, settings: dict, device: str, dtype):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=settings["double_quant"],
        bnb_4bit_compute_dtype=dtype,
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(base_dir), quantization_config=config, dtype=dtype, device_map=_device_map(device)
    )
    # bitsandbytes' 4-bit serialization: packed weights + absmax/quant_map tensors, and the
    # BitsAndBytesConfig in config.json, so from_pretrained alone loads it back.
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return model


QUANTIZERS = {"hqq": _quantize_hqq, "nf4": _quantize_nf4}


def _device_map(device: str) -> dict:
    return {"": device}


def saved_settings(quant_dir: str | Path) -> dict:
    """The settings file a quantize job wrote: the method, its knobs, device, time."""
    return json.loads((Path(quant_dir) / QUANT_SETTINGS_FILE).read_text(encoding="utf-8"))


def load_quantized(quant_dir: str | Path, device: str, dtype, settings: dict | None = None):
    """The 4-bit model saved by quantize_base, on `device`; `settings`: its saved_settings, if read
    already (older builds wrote no method: HQQ)."""
    settings = settings if settings is not None else saved_settings(quant_dir)
    if settings.get("method", "hqq") == "nf4":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(quant_dir), dtype=dtype, device_map=_device_map(device))
        keep_nf4_weights_trainable(model)
        return model
    guard_torch_compile()
    from hqq.models.hf.base import AutoHQQHFModel

    # An absolute path: hqq takes anything that is not an existing folder for a hub id; and hqq
    # defaults to CUDA, so the device is always passed.
    model = AutoHQQHFModel.from_quantized(str(Path(quant_dir).resolve()), device=device, compute_dtype=dtype)
    # PEFT's prepare_model_for_kbit_training upcasts every parameter to fp32 unless this is set.
    model.hqq_quantized = True
    return model


def keep_nf4_weights_trainable(model) -> None:
    """Keep bitsandbytes from repacking the weights for its CPU inference kernel.

    On a CPU with AVX512-BF16, bitsandbytes 0.50.2 repacks a Linear4bit's weight on its first
    eval-mode forward without gradients (the eval loss between epochs does exactly that) and
    keeps it repacked; the kernel it then uses has no backward ("an autograd kernel was not
    registered"), so every later training step silently drops the gradient through that layer.
    Measured here, and tested in test_quantize.py. Training never uses that kernel, so it is off.
    """
    for layer in quantized_layers(model):
        if hasattr(layer, "support_avx512bf16_for_cpu"):
            layer.support_avx512bf16_for_cpu = False


# The 4-bit layers of either method -----------------------------------------------------


def is_quantized_layer(module) -> bool:
    """An HQQLinear or a bitsandbytes Linear4bit (by name: neither library need be imported)."""
    return type(module).__name__ in ("HQQLinear", "Linear4bit")


def quantized_layers(model) -> list:
    return [module for module in model.modules() if is_quantized_layer(module)]


def weight_shape(layer) -> tuple[int, int]:
    """(out_features, in_features) of the full-precision weight a 4-bit layer stands for."""
    if type(layer).__name__ == "HQQLinear":
        return tuple(layer.meta["shape"])
    return tuple(layer.weight.quant_state.shape)


def dequantize(layer):
    """The weight a 4-bit layer multiplies by, in its compute dtype: what its own forward uses."""
    if type(layer).__name__ == "HQQLinear":
        return layer.dequantize()
    import bitsandbytes.functional as bnb_functional

    weight = bnb_functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    return weight.to(layer.compute_dtype or weight.dtype)
