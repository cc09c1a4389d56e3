"""An NVIDIA ModelOpt NVFP4 checkpoint (its unified Hugging Face export) as fp4sim block layers (docs/spec.md 7.8).

ModelOpt writes ``hf_quant_config.json`` (``quantization.quant_algo: NVFP4``,
``group_size: 16``; newer exports repeat it as ``quantization_config`` with
``quant_method: modelopt`` in config.json) and per quantized linear layer
``weight`` (uint8, packed as compressed-tensors packs), ``weight_scale`` (E4M3
block scales), ``weight_scale_2`` and ``input_scale`` (float32). Unlike
compressed-tensors' divisors, both per-tensor scales are multipliers:
``weight_scale_2 = s_t`` of the weight and ``input_scale = s_t`` of the
activations, which vLLM multiplies into its GEMM as they are. So they become
fp4sim's tensor scales with no rounding at all.

Written by hand: ModelOpt (``nvidia-modelopt``) is not a dependency of fp4sim,
and this is a plain safetensors layout; the codes cross through the same
codec as compressed-tensors' (they pack alike).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...codec.blockscaled import NVFP4
from ..export import meta_model
from .codec import CompressedTensorsError, from_compressed, stored_scalar
from .read import assemble, install, read_tensors

MODELOPT_CONFIG = "hf_quant_config.json"


def modelopt_config(root: Path) -> dict | None:
    """The ``quantization`` section of a ModelOpt export in directory `root` (hf_quant_config.json, else a
    config.json ``quantization_config`` with ``quant_method: modelopt``), or None if it is not one."""
    try:
        quantization = json.loads((root / MODELOPT_CONFIG).read_text()).get("quantization")
    except (OSError, ValueError, AttributeError):
        try:
            quantization = json.loads((root / "config.json").read_text()).get("quantization_config")
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(quantization, dict) or quantization.get("quant_method") != "modelopt":
            return None
    return quantization if isinstance(quantization, dict) else None


def load_modelopt(
    path: str | Path, *, backend: str = "torch", accum: str = "exact", dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any, dict]:
    """(model, tokenizer, metadata) of the ModelOpt NVFP4 export `path`, as export.load_export gives them: every
    linear layer stored with uint8 ``weight`` codes becomes an NVFP4 W4A4 BlockLinear, bit for bit.

    Raises CompressedTensorsError (a ValueError) for another algorithm (ModelOpt's FP8, INT4 AWQ...), a quantized
    KV cache, or a bad tensor; ExportError for files that do not make the model.
    """
    root = Path(path)
    config = modelopt_config(root)
    if config is None:
        raise CompressedTensorsError(f"{root} is not a ModelOpt export (no {MODELOPT_CONFIG})")
    algorithm, group = config.get("quant_algo"), config.get("group_size", NVFP4.block_size)
    if algorithm != "NVFP4" or group != NVFP4.block_size:
        raise CompressedTensorsError(
            f"{root}: ModelOpt quant_algo {algorithm!r} with group_size {group!r}; fp4sim simulates NVFP4 (16)"
        )
    if config.get("kv_cache_quant_algo"):
        raise CompressedTensorsError(f"{root}: a quantized KV cache ({config['kv_cache_quant_algo']}) is not simulated")
    tensors = read_tensors(root)
    model = meta_model(root)
    quantized = set()
    for name, module in model.named_modules():
        stored = tensors.get(f"{name}.weight")
        if isinstance(module, torch.nn.Linear) and stored is not None and stored.dtype == torch.uint8:
            _load_layer(model, tensors, name, module)
            quantized.add(name)
    if not quantized:
        raise CompressedTensorsError(f"{root}: no linear layer holds NVFP4 codes (uint8 weight)")
    metadata = {"format": "modelopt", "source_model": "", "quantization_config": config}
    return assemble(model, root, tensors, quantized, metadata, backend=backend, accum=accum, dtype=dtype, device=device)


def _load_layer(model: Any, tensors: dict[str, torch.Tensor], name: str, module: Any) -> None:
    scales = {}
    for field in ("weight_scale_2", "input_scale"):  # multipliers: fp4sim's tensor scales as stored
        value = np.float32(stored_scalar(tensors, f"{name}.{field}"))
        if not (np.isfinite(value) and value > 0):
            raise CompressedTensorsError(f"{name}.{field} must be a finite float32 > 0, got {value}")
        scales[field] = value
        tensors.pop(f"{name}.{field}")
    if f"{name}.weight_scale" not in tensors:
        raise CompressedTensorsError(f"{name}: the checkpoint has no {name}.weight_scale")
    weight = from_compressed(
        NVFP4, tensors.pop(f"{name}.weight"), tensors.pop(f"{name}.weight_scale"), scales["weight_scale_2"], name
    )
    install(model, tensors, name, module, weight, NVFP4, scales["input_scale"])
