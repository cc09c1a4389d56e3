"""One writer and one reader per kind of exported module, side by side (docs/quantization.md, "Export").

A kind's writer turns a calibration result into tensors plus a metadata entry;
its reader puts what those hold back into a model built on the meta device: a
replacement module, attention state, or a dequantized weight left in
``tensors`` for ``load_state_dict``. :data:`KINDS` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ...codec import decode, encode
from ...codec.blockscaled import ELEMENT, BlockTensor, block_dequantize, block_quantize, block_scale_rule
from ...models.checkpoint import onloaded
from ..attention import STATE, AttentionQuant, FoldedAttention, MatmulQuant, use_fp4sim_attention
from ..blockquant import BlockEmbeddingQuant, BlockLinear, BlockLinearQuant, fold_block_linear
from ..folded import FoldedLinear, fold_linear
from ..modules import BlockQuantizedLinear, QuantizedLinear
from ..patches import PatchEmbeddingLinear, is_patch_conv, linear_weight
from ..search import LinearQuant, TensorQuant
from .schema import (
    ExportError,
    block_format_from_entry,
    format_entry,
    format_from_entry,
    pack_codes,
    scale,
    tensor,
    unpack_codes,
)

Tensors = dict[str, torch.Tensor]


# ---- linear: an LLM-FP4 linear layer (packed weight codes, per-output-channel scales, input scale and shifts)


def write_linear(module: Any, name: str, quant: LinearQuant) -> tuple[Tensors, dict]:
    weight, bias = module_parameters(module)
    folded = fold_linear(weight, quant, bias)
    tensors = {
        f"{name}.weight_codes": pack_codes(folded.weight_codes, folded.weight_format),
        f"{name}.weight_scale": folded.weight_scale,
        f"{name}.input_scale": folded.input_scale,
        f"{name}.input_shift": folded.input_shift,
    }
    inputs = None if folded.input_format is None else format_entry(folded.input_format)
    return _linear_record(name, folded, tensors, format_entry(folded.weight_format), inputs)


def read_linear(model: Any, tensors: Tensors, name: str, entry: dict) -> None:
    shape = (entry["out_features"], entry["in_features"])
    weight_format = format_from_entry(entry["weight_format"])
    input_format = None if entry["input_format"] is None else format_from_entry(entry["input_format"])
    codes = unpack_codes(tensor(tensors, f"{name}.weight_codes", torch.uint8), weight_format, shape, name)
    folded = FoldedLinear(
        weight_format=weight_format,
        weight_codes=codes,
        weight_scale=scale(tensors, f"{name}.weight_scale", (shape[0],)),
        input_format=input_format,
        input_scale=scale(tensors, f"{name}.input_scale", ()),
        input_shift=tensor(tensors, f"{name}.input_shift", torch.uint8, (shape[1],)),
        bias=_bias(tensors, name, entry),
    )
    if input_format is not None and int(folded.input_shift.max()) >= 1 << input_format.ebits:
        raise ExportError(f"{name}.input_shift exceeds the {input_format.ebits}-bit shift of {input_format.name}")
    if input_format is None and (float(folded.input_scale) != 1 or bool(folded.input_shift.any())):
        raise ExportError(f"{name} is weight-only, but {name}.input_scale / input_shift quantize its input")
    replace_linear(model, name, QuantizedLinear(folded))


# ---- embedding: the LLM-FP4 table (codes, one scale per row); loads as its dequantized float table


def write_embedding(module: Any, name: str, quant: TensorQuant) -> tuple[Tensors, dict]:
    codes = encode(module_parameters(module)[0], quant.fmt, scale=quant.scale.cpu(), axis=0)
    tensors = {f"{name}.weight_codes": pack_codes(codes, quant.fmt), f"{name}.weight_scale": quant.scale.float().cpu()}
    return tensors, {"shape": list(codes.shape), "weight_format": format_entry(quant.fmt)}


def read_embedding(model: Any, tensors: Tensors, name: str, entry: dict) -> None:
    fmt = format_from_entry(entry["weight_format"])
    shape = tuple(entry["shape"])
    codes = unpack_codes(tensor(tensors, f"{name}.weight_codes", torch.uint8), fmt, shape, name)
    row_scale = scale(tensors, f"{name}.weight_scale", (shape[0],))
    tensors[f"{name}.weight"] = decode(codes, fmt, scale=row_scale, axis=0)  # = the calibration's fake quantization


# ---- attention: the Q K^T and P V operand formats and scales of one attention module (quantize_attention)

ATTENTION_OPERANDS = ("query", "key", "probs", "value")  # scores.left, scores.right, context.left, context.right


def write_attention(module: Any, name: str, quant: AttentionQuant) -> tuple[Tensors, dict]:
    operands = dict(zip(ATTENTION_OPERANDS, (*quant.scores, *quant.context), strict=True))
    tensors = {f"{name}.{op}_scale": t.scale.float().cpu().reshape(()) for op, t in operands.items()}
    return tensors, {f"{op}_format": format_entry(t.fmt) for op, t in operands.items()}


def read_attention(model: Any, tensors: Tensors, name: str, entry: dict) -> None:
    query, key, probs, value = (
        TensorQuant(format_from_entry(entry[f"{op}_format"]), scale(tensors, f"{name}.{op}_scale", ()))
        for op in ATTENTION_OPERANDS
    )
    quant = AttentionQuant(MatmulQuant(query, key), MatmulQuant(probs, value))
    setattr(model.get_submodule(name), STATE, FoldedAttention(quant))
    use_fp4sim_attention(model)


# ---- block_linear: an MXFP4 / NVFP4 linear layer (element codes, block scales, tensor scales)


def write_block_linear(module: Any, name: str, quant: BlockLinearQuant) -> tuple[Tensors, dict]:
    weight, bias = module_parameters(module)
    layer = fold_block_linear(weight, quant, bias)
    tensors = {
        **_block_tensors(f"{name}.weight", layer.weight),
        f"{name}.input_tensor_scale": torch.tensor(layer.input_tensor_scale),
    }
    inputs = None if layer.input_format is None else layer.input_format.name
    tensors, entry = _linear_record(name, layer, tensors, quant.fmt.name, inputs)
    weight_rule = block_scale_rule(quant.fmt, quant.scale_rule)  # the weight's rule and tiles: provenance only
    rules = {"input_scale_rule": layer.input_scale_rule, "weight_scale_rule": weight_rule}
    return tensors, {**entry, **rules, "weight_block_2d": quant.block_2d}


def read_block_linear(model: Any, tensors: Tensors, name: str, entry: dict) -> None:
    weight = _block_tensor(tensors, name, {**entry, "shape": [entry["out_features"], entry["in_features"]]})
    input_format = None if entry["input_format"] is None else block_format_from_entry(entry["input_format"])
    rule = entry.get("input_scale_rule")  # exports before 2026-12-01: none (floor); until the NVFP4 rules "floor"
    if input_format is None or (rule == "floor" and input_format.tensor_scale):  # for every layer, NVFP4's too
        rule = None
    try:
        layer = BlockLinear(
            weight=weight,
            input_format=input_format,
            input_tensor_scale=tensor(tensors, f"{name}.input_tensor_scale", torch.float32, ()).numpy(),
            bias=_bias(tensors, name, entry),
            input_scale_rule=rule,
        )
    except ValueError as err:
        raise ExportError(f"{name}: {err}") from None
    replace_linear(model, name, BlockQuantizedLinear(layer))


# ---- block_embedding: the table block-quantized along the hidden axis; loads as its dequantized float table


def write_block_embedding(module: Any, name: str, quant: BlockEmbeddingQuant) -> tuple[Tensors, dict]:
    table = block_quantize(module_parameters(module)[0], quant.fmt, scale_rule=quant.scale_rule)
    return _block_tensors(f"{name}.weight", table), {"shape": list(table.shape), "weight_format": quant.fmt.name}


def read_block_embedding(model: Any, tensors: Tensors, name: str, entry: dict) -> None:
    tensors[f"{name}.weight"] = torch.from_numpy(block_dequantize(_block_tensor(tensors, name, entry)))


class Kind(NamedTuple):
    """A kind of exported module: its metadata name, the calibration result it writes, and the two directions."""

    name: str
    quant: type
    write: Callable[[Any, str, Any], tuple[Tensors, dict]]  # (module, name, quant) -> (tensors, entry)
    read: Callable[[Any, Tensors, str, dict], None]  # (model, tensors, name, entry)


KINDS = {
    kind.name: kind
    for kind in (
        Kind("linear", LinearQuant, write_linear, read_linear),
        Kind("embedding", TensorQuant, write_embedding, read_embedding),
        Kind("attention", AttentionQuant, write_attention, read_attention),
        Kind("block_linear", BlockLinearQuant, write_block_linear, read_block_linear),
        Kind("block_embedding", BlockEmbeddingQuant, write_block_embedding, read_block_embedding),
    )
}
KIND_OF_QUANT = {kind.quant: kind for kind in KINDS.values()}


def module_parameters(module: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias or None) as float32 CPU copies, also where accelerate offloaded the module; a patch
    convolution's weight as its (out, channels * kh * kw) matrix.

    The bias is a copy of its own: a head's bias may be the same tensor as a parameter the export also
    stores (BERT's and RoBERTa's masked-LM heads tie ``decoder.bias`` to the head's ``bias``)."""
    with onloaded(module):
        bias = getattr(module, "bias", None)
        weight = linear_weight(module) if is_patch_conv(module) else module.weight
        return weight.detach().float().cpu(), None if bias is None else bias.detach().float().cpu().clone()


def _linear_record(
    name: str, layer: Any, tensors: Tensors, weight_format: Any, input_format: Any
) -> tuple[Tensors, dict]:
    """What both linear kinds record: `tensors` plus the bias, and the shape, formats and bias flag."""
    if layer.bias is not None:
        tensors[f"{name}.bias"] = layer.bias
    entry = {
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "weight_format": weight_format,
        "input_format": input_format,
        "bias": layer.bias is not None,
    }
    return tensors, entry


def _block_tensors(prefix: str, t: BlockTensor) -> Tensors:
    return {
        f"{prefix}_codes": pack_codes(torch.from_numpy(t.codes), ELEMENT),
        f"{prefix}_block_scales": torch.from_numpy(t.scales),
        f"{prefix}_tensor_scale": torch.tensor(t.tensor_scale),
    }


def _block_tensor(tensors: Tensors, name: str, entry: dict) -> BlockTensor:
    """The block-quantized weight of module `name` (codes, block scales, tensor scale), checked against `entry`."""
    fmt = block_format_from_entry(entry["weight_format"])
    shape = tuple(entry["shape"])
    codes = unpack_codes(tensor(tensors, f"{name}.weight_codes", torch.uint8), ELEMENT, shape, name).numpy()
    scales = tensor(tensors, f"{name}.weight_block_scales", torch.uint8, (shape[0], fmt.blocks(shape[1]))).numpy()
    tensor_scale = tensor(tensors, f"{name}.weight_tensor_scale", torch.float32, ()).numpy()
    try:
        return BlockTensor(fmt, codes, scales, tensor_scale)
    except ValueError as err:
        raise ExportError(f"{name}.weight: {err}") from None


def _bias(tensors: Tensors, name: str, entry: dict) -> torch.Tensor | None:
    return tensor(tensors, f"{name}.bias", torch.float32, (entry["out_features"],)) if entry["bias"] else None


def replace_linear(model: Any, name: str, layer: Any) -> None:
    """Put `layer` where the model (built from config.json) has the linear layer `name`, of the same shape; where
    it has a patch convolution, `layer` computes it on rows of patches (PatchEmbeddingLinear)."""
    original = model.get_submodule(name)
    if is_patch_conv(original):
        shape = tuple(linear_weight(original).shape)
        replacement = PatchEmbeddingLinear(original.kernel_size, layer)
    else:
        shape = (getattr(original, "out_features", None), getattr(original, "in_features", None))
        replacement = layer
    if shape != (layer.out_features, layer.in_features):
        raise ExportError(
            f"{name} is {layer.out_features} x {layer.in_features}; config.json makes it {shape[0]} x {shape[1]}"
        )
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, replacement)
