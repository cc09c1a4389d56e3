"""A compressed-tensors MXFP4 / NVFP4 checkpoint as fp4sim block layers (docs/spec.md 7.8).

compressed-tensors parses the ``quantization_config`` (``QuantizationConfig``)
and matches each config group's targets to modules (``match_named_modules``);
each matched linear layer's stored codes and scales become a BlockLinear
bit for bit (codec.from_compressed), run by the checkpoint's own activation
scheme: none (W4A16), dynamic per-token blocks (MXFP4), or dynamic per-token
blocks under the static ``input_global_scale`` (NVFP4 W4A4). A quantized
embedding loads as its dequantized table. Anything fp4sim cannot simulate
exactly (other bit widths, asymmetric or integer schemes, transforms,
sparsity, a quantized KV cache, output activations) is refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ...codec.blockscaled import MXFP4, NVFP4, BlockFormat, BlockTensor, block_dequantize
from ..blockquant import BlockLinear
from ..export import ExportError, finish_model, load_tokenizer, meta_model
from ..export.kinds import replace_linear
from ..modules import BlockQuantizedLinear
from .codec import FORMAT_NAMES, CompressedTensorsError, from_compressed, stored_scalar, tensor_scale

METADATA_FORMAT = "compressed-tensors"


def load_compressed_tensors(
    path: str | Path, *, backend: str = "torch", accum: str = "exact", dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any, dict]:
    """(model, tokenizer, metadata) of the compressed-tensors checkpoint `path`, as export.load_export gives them.

    metadata: ``{"format": "compressed-tensors", "source_model": "", "quantization_config": <the config>}``.
    Raises CompressedTensorsError (a ValueError) for a scheme or tensor fp4sim cannot simulate, ExportError for
    a directory whose files do not make the model.
    """
    root = Path(path)
    config = read_quantization_config(root)
    tensors = read_tensors(root)
    model = meta_model(root)
    quantized = set()
    for scheme in config.config_groups.values():
        fmt, quantize_input = block_scheme(scheme)
        for name, module in _matches(model, scheme.targets, config.ignore):
            _load_module(model, tensors, name, module, fmt, quantize_input)
            quantized.add(name)
    if not quantized:
        raise CompressedTensorsError(f"{root}: no module matches the quantization_config's targets")
    metadata = {"format": METADATA_FORMAT, "source_model": "", "quantization_config": config.model_dump(mode="json")}
    return assemble(model, root, tensors, quantized, metadata, backend=backend, accum=accum, dtype=dtype, device=device)


def assemble(
    model: Any,
    root: Path,
    tensors: dict,
    quantized: set[str],
    metadata: dict,
    *,
    backend: str,
    accum: str,
    dtype: str,
    device: str,
) -> tuple[Any, Any, dict]:
    """(model, tokenizer, metadata) once the `quantized` modules are in place: every other tensor loads as `dtype`
    (a tied lm_head stored once, as the table), then export.finish_model. ExportError for tensors that do not fit."""
    rest = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(rest, strict=False, assign=True)
    missing = [k for k in missing if k.rpartition(".")[0] not in quantized]
    if missing and model.config.tie_word_embeddings and set(missing) == {"lm_head.weight"}:
        model.lm_head.weight = model.get_input_embeddings().weight
        missing = []
    if missing or unexpected:
        raise ExportError(f"{root}: tensors do not match the model config (missing {missing}, unexpected {unexpected})")
    return finish_model(model, root, backend, accum, device), load_tokenizer(root), metadata


def read_quantization_config(root: Path) -> Any:
    """compressed-tensors' QuantizationConfig of the checkpoint, parsed by the library, after checking it holds
    nothing fp4sim ignores (sparsity, transforms, a KV-cache scheme)."""
    from compressed_tensors.quantization import QuantizationConfig
    from pydantic import ValidationError

    raw = json.loads((root / "config.json").read_text())["quantization_config"]
    for key in ("sparsity_config", "transform_config"):
        if raw.get(key):
            raise CompressedTensorsError(f"{root}: the checkpoint has a {key}; fp4sim simulates quantization only")
    try:
        config = QuantizationConfig.model_validate(raw)
    except ValidationError as err:
        raise CompressedTensorsError(
            f"{root}: compressed-tensors cannot parse its quantization_config: {err}"
        ) from None
    if config.kv_cache_scheme is not None:
        raise CompressedTensorsError(f"{root}: a quantized KV cache (kv_cache_scheme) is not simulated")
    return config


def read_tensors(root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint's safetensors files (one file or shards)."""
    files = sorted(root.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{root} has no .safetensors file")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            tensors.update(load_file(file))
        except Exception as err:  # safetensors raises its own error type for a malformed file
            raise ExportError(f"{file} is not a readable safetensors file: {err}") from None
    return tensors


def block_scheme(scheme: Any) -> tuple[BlockFormat, bool]:
    """(block format, whether activations are quantized) of a QuantizationScheme: NVFP4 (FP4, tensor_group, blocks
    of 16) or MXFP4 (FP4, group, blocks of 32), weights and inputs alike; CompressedTensorsError otherwise."""
    weights, inputs = scheme.weights, scheme.input_activations
    fmt = _block_format(weights, "weights", scheme.targets)
    if scheme.output_activations is not None:
        raise CompressedTensorsError(f"{scheme.targets}: quantized output activations are not simulated")
    if inputs is None:
        return fmt, False
    if _block_format(inputs, "input_activations", scheme.targets) != fmt:
        raise CompressedTensorsError(f"{scheme.targets}: activations and weights in different block formats")
    dynamic = str(getattr(inputs.dynamic, "value", inputs.dynamic)).lower()
    wanted = "local" if fmt.tensor_scale else "true"  # NVFP4: per-token blocks, static global; MXFP4: per-token blocks
    if dynamic != wanted:
        raise CompressedTensorsError(
            f"{scheme.targets}: {fmt.name} activations with dynamic={inputs.dynamic}; fp4sim simulates "
            f"dynamic={wanted} (per-token blocks{', a static input_global_scale' if fmt.tensor_scale else ''})"
        )
    return fmt, True


def _block_format(args: Any, what: str, targets: Any) -> BlockFormat:
    strategy = str(getattr(args.strategy, "value", args.strategy))
    kind = str(getattr(args.type, "value", args.type))
    for fmt, wanted in ((NVFP4, "tensor_group"), (MXFP4, "group")):
        if (args.num_bits, kind, strategy, args.group_size) == (4, "float", wanted, fmt.block_size):
            if not args.symmetric:
                break
            return fmt
    raise CompressedTensorsError(
        f"{targets}: {what} are {args.num_bits}-bit {kind}, strategy {strategy}, group {args.group_size}"
        f"{'' if args.symmetric else ', asymmetric'}; fp4sim simulates {' and '.join(FORMAT_NAMES.values())} only"
    )


def _matches(model: Any, targets: list[str], ignore: list[str] | None) -> list[tuple[str, Any]]:
    from compressed_tensors.utils import match_named_modules

    return list(match_named_modules(model, targets, ignore))


def _load_module(
    model: Any, tensors: dict[str, torch.Tensor], name: str, module: Any, fmt: BlockFormat, quantize_input: bool
) -> None:
    """Take module `name`'s quantized tensors out of `tensors` and put the module back as fp4sim holds it."""

    def take(field: str) -> torch.Tensor:
        key = f"{name}.{field}"
        if key not in tensors:
            raise CompressedTensorsError(f"{name}: the checkpoint has no {key}")
        return tensors.pop(key)

    s_t = np.float32(1)
    if fmt.tensor_scale:
        s_t = tensor_scale(stored_scalar(tensors, f"{name}.weight_global_scale"), f"{name}.weight_global_scale")
    weight = from_compressed(fmt, take("weight_packed"), take("weight_scale"), s_t, f"{name}.weight")
    tensors.pop(f"{name}.weight_global_scale", None)
    input_scale = np.float32(1)
    if quantize_input and fmt.tensor_scale:
        key = f"{name}.input_global_scale"
        input_scale = tensor_scale(stored_scalar(tensors, key), key)
        tensors.pop(key)
    install(model, tensors, name, module, weight, fmt if quantize_input else None, input_scale)


def install(
    model: Any,
    tensors: dict[str, torch.Tensor],
    name: str,
    module: Any,
    weight: BlockTensor,
    input_format: BlockFormat | None,
    input_scale: np.float32,
) -> None:
    """Put module `name` back as fp4sim holds it: a linear layer as a BlockQuantizedLinear with `weight` (its bias
    taken from `tensors`), an embedding as its dequantized table (left in `tensors`)."""
    if isinstance(module, torch.nn.Embedding):
        tensors[f"{name}.weight"] = torch.from_numpy(block_dequantize(weight))
        return
    if not isinstance(module, torch.nn.Linear):
        raise CompressedTensorsError(f"{name}: a quantized {type(module).__name__}; fp4sim simulates linear layers")
    bias = tensors.pop(f"{name}.bias", None) if module.bias is not None else None
    if module.bias is not None and bias is None:
        raise CompressedTensorsError(f"{name}: the checkpoint has no {name}.bias")
    try:
        layer = BlockLinear(weight, input_format, input_scale, None if bias is None else bias.float())
    except ValueError as err:
        raise CompressedTensorsError(f"{name}: {err}") from None
    replace_linear(model, name, BlockQuantizedLinear(layer))
