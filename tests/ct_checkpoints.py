"""compressed-tensors checkpoints made by the compressed-tensors library itself, as llm-compressor makes them.

The library's presets (NVFP4, NVFP4A16, MXFP4) are applied to a model, its own
observers' formulas give the scales (``generate_gparam`` for the global scales,
``calculate_qparams`` for the block scales, activation global scales from the
inputs of a short forward pass), and its ModelCompressor packs and writes the
checkpoint. Nothing here comes from fp4sim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

FORMAT_OF_PRESET = {
    "NVFP4": "nvfp4-pack-quantized",
    "NVFP4A16": "nvfp4-pack-quantized",
    "MXFP4": "mxfp4-pack-quantized",
}


def library_checkpoint(model: Any, tokenizer: Any, preset: str, ids: torch.Tensor, out: Path) -> Path:
    """Quantize `model` (in place) with compressed-tensors' `preset` on every linear layer but lm_head, calibrating
    activation global scales on `ids` (1, T), and save it with `tokenizer` to `out`."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config, preset_name_to_scheme
    from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

    input_amax = _input_amax(model, ids)
    config = QuantizationConfig(
        config_groups={"group_0": preset_name_to_scheme(preset, ["Linear"])}, ignore=["lm_head"]
    )
    apply_quantization_config(model, config)
    for name, module in model.named_modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None:
            continue
        weight, args = module.weight.data, scheme.weights
        divisor = None
        if hasattr(module, "weight_global_scale"):
            divisor = generate_gparam(weight.min(), weight.max())
            module.weight_global_scale.data.copy_(divisor.reshape(module.weight_global_scale.shape))
        blocks = weight.reshape(weight.shape[0], -1, args.group_size)
        scale, _ = calculate_qparams(blocks.amin(-1), blocks.amax(-1), args, global_scale=divisor)
        module.weight_scale.data.copy_(scale.to(module.weight_scale.dtype))
        if hasattr(module, "input_global_scale"):
            amax = input_amax[name]
            module.input_global_scale.data.copy_(generate_gparam(-amax, amax).reshape(module.input_global_scale.shape))
    compressor = ModelCompressor.from_pretrained_model(model, FORMAT_OF_PRESET[preset])
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(out)
    tokenizer.save_pretrained(out)
    return out


def _input_amax(model: Any, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """max |x| of every linear layer's input over one forward pass on `ids`."""
    amax: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: amax.update({name: args[0].abs().amax()}))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    with torch.no_grad():
        model(ids)
    for hook in hooks:
        hook.remove()
    return amax
