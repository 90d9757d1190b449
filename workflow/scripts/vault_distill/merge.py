"""Stage 5: fold a task's LoRA adapter into the bf16 base: a plain HF model again.

PEFT's merge_and_unload() on the 4-bit model would re-quantize, leaving HQQ's W_q/scale/zero
or bitsandbytes' absmax/quant_map tensors, which llama.cpp's converter cannot read. So the
adapter, trained against the 4-bit weights (HQQ or NF4), is applied to the original bf16
weights instead (the usual QLoRA merge).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

# Tensor names that only a quantized model (HQQ: W_q, meta, scale, zero; bitsandbytes: absmax,
# quant_map, nested_*, quant_state) or an unmerged adapter has.
QUANTIZED_TENSOR = re.compile(
    r"(^|\.)(W_q|meta|scale|zero|absmax|quant_map|nested_absmax|nested_quant_map|quant_state|lora_[AB]|base_layer)(\.|$)"
)


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, device: str = "cpu") -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = {} if device == "cpu" else {"device_map": device}
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.bfloat16, **placement)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    leftovers = [name for name in merged.state_dict() if QUANTIZED_TENSOR.search(name)]
    if leftovers:
        raise ValueError(f"merge left quantized/adapter tensors behind, e.g. {leftovers[:3]}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))
    info = {"tensors": len(merged.state_dict()), "dtype": str(next(merged.parameters()).dtype)}
    log.info("merged %s into %s: %s", adapter_dir, out_dir, info)
    return info
