"""Stage quantize: the base model's HQQ 4-bit version, made once and loaded by every task's
training.

HQQ quantizes without calibration data and runs on plain PyTorch, so the same code
trains on CUDA, ROCm and the CPU, where bitsandbytes does not.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .hardware import dtype_name, guard_torch_compile

log = logging.getLogger(__name__)

# HQQ's own save format: config.json + qmodel.pt (see hqq.models.base.BaseHQQModel).
QUANT_SETTINGS_FILE = "vault_distill_quantization.json"


def quantize_base(
    base_dir: str | Path, out_dir: str | Path, nbits: int, group_size: int, optimize: bool, device: str, dtype
) -> dict:
    """Replace every linear layer of the decoder by an HQQ layer and save with hqq's own format."""
    guard_torch_compile()
    from hqq.core.quantize import BaseQuantizeConfig
    from hqq.models.hf.base import AutoHQQHFModel
    from transformers import AutoModelForCausalLM

    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    quant_config = BaseQuantizeConfig(nbits=nbits, group_size=group_size)
    quant_config["weight_quant_params"]["optimize"] = optimize
    AutoHQQHFModel.quantize_model(model, quant_config=quant_config, compute_dtype=dtype, device=device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    AutoHQQHFModel.save_quantized(model, str(out_dir))
    info = {
        "nbits": nbits,
        "group_size": group_size,
        "optimize": optimize,
        "compute_dtype": dtype_name(dtype),
        "device": device,
        "quantized_layers": sum(type(m).__name__ == "HQQLinear" for m in model.modules()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / QUANT_SETTINGS_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("quantized %s", info)
    return info


def load_quantized(quant_dir: str | Path, device: str, dtype):
    """The HQQ model saved by quantize_base, on `device` (hqq defaults to CUDA: always pass it)."""
    guard_torch_compile()
    from hqq.models.hf.base import AutoHQQHFModel

    # An absolute path: hqq takes anything that is not an existing folder for a hub id.
    model = AutoHQQHFModel.from_quantized(str(Path(quant_dir).resolve()), device=device, compute_dtype=dtype)
    # PEFT's prepare_model_for_kbit_training upcasts every parameter to fp32 unless this is set.
    model.hqq_quantized = True
    return model
