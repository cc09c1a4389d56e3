"""``fp4sim quantize --export-format compressed-tensors``: an MXFP4 / NVFP4 model as vLLM loads it (spec 7.8).

The directory holds ``model.safetensors`` (per quantized linear layer the
tensors of codec.to_compressed, NVFP4 W4A4's ``input_global_scale``, the bias;
every other parameter in float32), the model's ``config.json`` with the
``quantization_config`` compressed-tensors writes (its ``ModelCompressor``,
schemes from its presets NVFP4 / NVFP4A16 / MXFP4 / MXFP4A16, one config group
per preset, the layers named as targets) and the tokenizer files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..._files import atomic_directory
from ...codec.blockscaled import FOUR_OVER_SIX, block_dequantize, block_quantize, block_scale_rule
from ..blockquant import BlockEmbeddingQuant, BlockLinearQuant, fold_block_linear
from ..config import QuantConfig
from ..export import plain_parameters, untied_config
from ..export.kinds import module_parameters
from .codec import FORMAT_NAMES, PRESETS, CompressedTensorsError, global_scale, to_compressed

TENSORS_FILE = "model.safetensors"


def export_compressed_tensors(
    model: Any, tokenizer: Any, params: dict[str, Any], config: QuantConfig, out: str | Path, *, overwrite: bool = False
) -> Path:
    """Write `model` quantized by `params` (calibrate_model under --method mxfp4 / nvfp4) to the compressed-tensors
    checkpoint `out`; returns `out`.

    The embedding table (vLLM quantizes linear layers only) is stored as the float32 values of its block-quantized
    table, so the checkpoint computes what fp4sim's own export does. Raises CompressedTensorsError for an LLM-FP4
    calibration (not a block format), a quantized module that is not nn.Linear (a patch convolution), NVFP4 W4A4
    under scale rule 4over6 (the format has no such activation scheme; 4over6 weights and 16 x 16 weight tiles
    are ordinary NVFP4 codes and export as such) or a layer whose input width is not a multiple of the block
    size; the
    target is checked by the caller (export.check_target); nothing is left on failure.
    """
    out = Path(out)
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, list[str]] = {}
    fmt_name = config.method
    for name, quant in params.items():
        module = model.get_submodule(name)
        if isinstance(quant, BlockLinearQuant):
            if not isinstance(module, torch.nn.Linear):  # a ViT patch convolution: no compressed-tensors layout
                raise CompressedTensorsError(
                    f"{name} is a {type(module).__name__}; compressed-tensors stores quantized linear layers only"
                )
            if quant.quantize_input and block_scale_rule(quant.fmt, quant.scale_rule) == FOUR_OVER_SIX:
                raise CompressedTensorsError(
                    f"{name}: compressed-tensors has no 4over6 activation scheme (a runtime would quantize these "
                    "activations under NVFP4's static_6 rule); export 4over6 weight-only (--bits 4/4/16) or use "
                    "--export-format fp4sim"
                )
            weight, bias = module_parameters(module)
            layer = fold_block_linear(weight, quant, bias)
            tensors.update(to_compressed(layer.weight, f"{name}.weight"))
            if layer.input_format is not None and layer.input_format.tensor_scale:
                tensors[f"{name}.input_global_scale"] = torch.tensor([global_scale(layer.input_tensor_scale)])
            if bias is not None:
                tensors[f"{name}.bias"] = bias
            groups.setdefault(PRESETS[fmt_name][0 if quant.quantize_input else 1], []).append(name)
        elif isinstance(quant, BlockEmbeddingQuant):
            table = block_quantize(module_parameters(module)[0], quant.fmt, scale_rule=quant.scale_rule)
            tensors[f"{name}.weight"] = torch.from_numpy(block_dequantize(table))
        else:
            raise CompressedTensorsError(
                f"{name}: the compressed-tensors export takes MXFP4 / NVFP4 models (--method mxfp4 or nvfp4), "
                f"not a {type(quant).__name__}"
            )
    tensors.update(plain_parameters(model, params))
    compressor = _compressor(groups, FORMAT_NAMES[fmt_name])
    with atomic_directory(out, replace=overwrite) as staging:
        save_file({k: v.contiguous() for k, v in tensors.items()}, staging / TENSORS_FILE)
        untied_config(model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        compressor.update_config(str(staging))  # the library writes its own quantization_config into config.json
    return out


def _compressor(groups: dict[str, list[str]], format_name: str) -> Any:
    """compressed-tensors' ModelCompressor for one config group per preset, its targets the layers' names."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, preset_name_to_scheme

    schemes = {
        f"group_{i}": preset_name_to_scheme(preset, targets)
        for i, (preset, targets) in enumerate(sorted(groups.items()))
    }
    for scheme in schemes.values():
        scheme.format = format_name
    config = QuantizationConfig(
        config_groups=schemes, format=format_name, quantization_status=QuantizationStatus.COMPRESSED
    )
    return ModelCompressor(quantization_config=config)
