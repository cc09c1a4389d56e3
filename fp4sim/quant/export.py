"""Hardware export of a calibrated model, and the loader that rebuilds it (docs/quantization.md, "Export").

An export directory holds:
- ``fp4sim_quant.json``: versioned metadata (formats, shapes, the QuantConfig,
  the source model, the SHA-256 of the tensor file);
- ``model.safetensors``: per quantized linear ``<name>.weight_codes`` (uint8,
  two 4-bit codes per byte along the input axis, element 0 in the low nibble;
  one code per byte for wider formats), ``<name>.weight_scale`` (float32, one
  per output channel), ``<name>.input_scale`` (float32 scalar) and
  ``<name>.input_shift`` (uint8, one per input channel); the embedding's codes
  and per-row scales; every other parameter (the RMSNorm weights) in float32;
- the model's ``config.json`` (embeddings untied: the embedding and lm_head
  are quantized separately) and its tokenizer files.

Writing goes to a temporary directory beside the target, renamed into place
at the end: a failure leaves nothing half-written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..blockscaled import ELEMENT, BlockTensor, block_dequantize, block_quantize, get_block_format
from ..codec import decode, encode
from ..formats import Format, llm_fp4_format
from ..llama import check_llama_dir, onloaded
from ..packing import pack_fp4, unpack_fp4
from .attention import STATE, AttentionQuant, FoldedAttention, MatmulQuant, use_fp4sim_attention
from .blockquant import BlockEmbeddingQuant, BlockLinear, BlockLinearQuant, fold_block_linear
from .config import QuantConfig
from .folded import FoldedLinear, fold_linear
from .modules import BlockQuantizedLinear, QuantizedLinear, set_backend
from .search import LinearQuant, TensorQuant

EXPORT_FORMAT = "fp4sim-llm-fp4"
EXPORT_VERSION = 2  # 2 added the MXFP4 / NVFP4 module kinds; version 1 exports still load
MODULE_KINDS = {
    1: ("linear", "embedding", "attention"),
    2: ("linear", "embedding", "attention", "block_linear", "block_embedding"),
}
METADATA_FILE = "fp4sim_quant.json"
TENSORS_FILE = "model.safetensors"
EMBEDDING = "model.embed_tokens"


class ExportError(ValueError):
    """An export directory that is missing, corrupt, foreign or from an unsupported version."""


def export_quantized(
    model: Any,
    tokenizer: Any,
    params: dict[str, LinearQuant | TensorQuant | AttentionQuant | BlockLinearQuant | BlockEmbeddingQuant],
    config: QuantConfig,
    out: str | Path,
    *,
    source: str = "",
    overwrite: bool = False,
) -> Path:
    """Fold `params` (from calibrate_model) into `model`'s weights and write the export directory `out`."""
    out = Path(out)
    check_target(out, overwrite)
    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, dict] = {}
    for name, quant in params.items():
        module = model.get_submodule(name)
        if isinstance(quant, AttentionQuant):
            for operand, tensor_quant in _attention_operands(quant).items():
                tensors[f"{name}.{operand}_scale"] = tensor_quant.scale.float().cpu().reshape(())
            formats = {f"{op}_format": _format_entry(t.fmt) for op, t in _attention_operands(quant).items()}
            modules[name] = {"kind": "attention", **formats}
            continue
        if isinstance(quant, BlockEmbeddingQuant):
            with onloaded(module):
                table = block_quantize(module.weight.detach().float().cpu(), quant.fmt)
            tensors.update(_block_tensors(f"{name}.weight", table))
            modules[name] = {"kind": "block_embedding", "shape": list(table.shape), "weight_format": quant.fmt.name}
            continue
        if isinstance(quant, BlockLinearQuant):
            with onloaded(module):
                layer = fold_block_linear(module.weight, quant, module.bias)
            tensors.update(_block_tensors(f"{name}.weight", layer.weight))
            tensors[f"{name}.input_tensor_scale"] = torch.tensor(layer.input_tensor_scale)
            if layer.bias is not None:
                tensors[f"{name}.bias"] = layer.bias
            modules[name] = {
                "kind": "block_linear",
                "in_features": layer.in_features,
                "out_features": layer.out_features,
                "weight_format": quant.fmt.name,
                "input_format": None if layer.input_format is None else layer.input_format.name,
                "bias": layer.bias is not None,
            }
            continue
        if isinstance(quant, TensorQuant):
            with onloaded(module):
                codes = encode(module.weight.detach().float().cpu(), quant.fmt, scale=quant.scale.cpu(), axis=0)
            tensors[f"{name}.weight_codes"] = _pack(codes, quant.fmt)
            tensors[f"{name}.weight_scale"] = quant.scale.float().cpu()
            modules[name] = {"kind": "embedding", "shape": list(codes.shape), "weight_format": _format_entry(quant.fmt)}
            continue
        with onloaded(module):
            folded = fold_linear(module.weight, quant, module.bias)
        tensors.update(_linear_tensors(name, folded))
        modules[name] = {
            "kind": "linear",
            "in_features": folded.in_features,
            "out_features": folded.out_features,
            "weight_format": _format_entry(folded.weight_format),
            "input_format": None if folded.input_format is None else _format_entry(folded.input_format),
            "bias": folded.bias is not None,
        }
    for module_name, module in model.named_modules():
        if module_name in params or not any(True for _ in module.parameters(recurse=False)):
            continue
        with onloaded(module):  # one module at a time, also when accelerate offloaded it
            for name, value in module.named_parameters(recurse=False):
                tensors[f"{module_name}.{name}"] = value.detach().float().cpu().contiguous()
    metadata = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "source_model": source,
        "quant_config": config.to_dict(),
        "modules": modules,
    }
    model_config = copy.deepcopy(model.config)
    model_config.tie_word_embeddings = False
    _write_atomically(out, overwrite, tensors, metadata, model_config, tokenizer)
    return out


def load_quantized(
    path: str | Path, *, backend: str = "torch", accum: str = "exact", dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any, dict]:
    """(model, tokenizer, metadata) from an export directory; quantized linears run on `backend`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    root = Path(path)
    metadata = read_metadata(root)
    tensors = _load_tensors(root, metadata)
    model_config = AutoConfig.from_pretrained(root, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    for name, entry in metadata["modules"].items():
        try:
            _load_module(model, tensors, name, entry)
        except KeyError as err:
            raise ExportError(f"{root}: the metadata of {name} lacks {err}") from None
    rest = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items() if not _is_export_tensor(k, metadata)}
    missing, unexpected = model.load_state_dict(rest, strict=False, assign=True)
    if unexpected or [k for k in missing if not _belongs_to_quantized(k, metadata)]:
        raise ExportError(f"{root}: tensors do not match the model config (missing {missing}, unexpected {unexpected})")
    _rebuild_meta_buffers(model)
    set_backend(model, backend, accum)
    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
    return model.to(device).eval(), tokenizer, metadata


def _load_module(model: Any, tensors: dict[str, torch.Tensor], name: str, entry: dict) -> None:
    """Put one exported module into `model` (built on the meta device), or its weight into `tensors`."""
    kind = entry["kind"]
    if kind == "embedding":
        tensors[f"{name}.weight"] = embedding_weight(tensors, name, entry)
    elif kind == "block_embedding":
        tensors[f"{name}.weight"] = torch.from_numpy(block_dequantize(block_tensor(tensors, name, entry)))
    elif kind == "attention":
        setattr(model.get_submodule(name), STATE, FoldedAttention(attention_from_tensors(tensors, name, entry)))
        use_fp4sim_attention(model)
    else:
        if kind == "block_linear":
            layer = BlockQuantizedLinear(block_linear_from_tensors(tensors, name, entry))
        else:
            layer = QuantizedLinear(folded_from_tensors(tensors, name, entry))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)


def read_metadata(root: Path) -> dict:
    """The export's metadata after checking it is an fp4sim export of a supported version."""
    if not root.is_dir():
        raise ExportError(f"quantized model {str(root)!r} is not a directory; pass the --out DIR of fp4sim quantize")
    meta_file = root / METADATA_FILE
    if not meta_file.is_file():
        raise ExportError(f"{root} has no {METADATA_FILE}: it is not an fp4sim export (make one with fp4sim quantize)")
    try:
        metadata = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{meta_file} is corrupt: {err}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{meta_file} does not describe an {EXPORT_FORMAT} export")
    version = metadata.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in MODULE_KINDS:
        raise ExportError(
            f"{root} is export version {version!r}; this fp4sim reads versions {tuple(MODULE_KINDS)}. "
            "Re-export the model with this fp4sim"
        )
    kinds = MODULE_KINDS[version]
    if not isinstance(metadata.get("modules"), dict):
        raise ExportError(f"{meta_file} lists no modules: the export is incomplete")
    for name, entry in metadata["modules"].items():
        if not isinstance(entry, dict) or entry.get("kind") not in kinds:
            known = ", ".join(kinds)
            raise ExportError(f"{meta_file}: module {name} has no kind that version {version} knows ({known})")
    check_llama_dir(root)
    return metadata


def folded_from_tensors(tensors: dict[str, torch.Tensor], name: str, entry: dict) -> FoldedLinear:
    """One linear layer's FoldedLinear from the export's tensors, shapes and dtypes checked."""
    shape = (entry["out_features"], entry["in_features"])
    weight_format = _format_from_entry(entry["weight_format"])
    input_format = None if entry["input_format"] is None else _format_from_entry(entry["input_format"])
    codes = _unpack(_tensor(tensors, f"{name}.weight_codes", torch.uint8), weight_format, shape, name)
    folded = FoldedLinear(
        weight_format=weight_format,
        weight_codes=codes,
        weight_scale=_tensor(tensors, f"{name}.weight_scale", torch.float32, (shape[0],)),
        input_format=input_format,
        input_scale=_tensor(tensors, f"{name}.input_scale", torch.float32, ()),
        input_shift=_tensor(tensors, f"{name}.input_shift", torch.uint8, (shape[1],)),
        bias=_tensor(tensors, f"{name}.bias", torch.float32, (shape[0],)) if entry["bias"] else None,
    )
    if input_format is not None and int(folded.input_shift.max()) >= 1 << input_format.ebits:
        raise ExportError(f"{name}.input_shift exceeds the {input_format.ebits}-bit shift of {input_format.name}")
    return folded


def block_linear_from_tensors(tensors: dict[str, torch.Tensor], name: str, entry: dict) -> BlockLinear:
    """One MXFP4 / NVFP4 linear layer from the export's tensors, shapes and codes checked."""
    weight = block_tensor(tensors, name, {**entry, "shape": [entry["out_features"], entry["in_features"]]})
    input_format = None if entry["input_format"] is None else _block_format(entry["input_format"])
    try:
        return BlockLinear(
            weight=weight,
            input_format=input_format,
            input_tensor_scale=_tensor(tensors, f"{name}.input_tensor_scale", torch.float32, ()).numpy(),
            bias=_tensor(tensors, f"{name}.bias", torch.float32, (entry["out_features"],)) if entry["bias"] else None,
        )
    except ValueError as err:
        raise ExportError(f"{name}: {err}") from None


def block_tensor(tensors: dict[str, torch.Tensor], name: str, entry: dict) -> BlockTensor:
    """The block-quantized weight of module `name` (codes, block scales, tensor scale), checked against `entry`."""
    fmt = _block_format(entry["weight_format"])
    shape = tuple(entry["shape"])
    codes = _unpack(_tensor(tensors, f"{name}.weight_codes", torch.uint8), ELEMENT, shape, name).numpy()
    scales = _tensor(tensors, f"{name}.weight_block_scales", torch.uint8, (shape[0], fmt.blocks(shape[1]))).numpy()
    tensor_scale = _tensor(tensors, f"{name}.weight_tensor_scale", torch.float32, ()).numpy()
    try:
        return BlockTensor(fmt, codes, scales, tensor_scale)
    except ValueError as err:
        raise ExportError(f"{name}.weight: {err}") from None


def _block_tensors(prefix: str, t: BlockTensor) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}_codes": _pack(torch.from_numpy(t.codes), ELEMENT),
        f"{prefix}_block_scales": torch.from_numpy(t.scales),
        f"{prefix}_tensor_scale": torch.tensor(t.tensor_scale),
    }


def _block_format(name: str) -> Any:
    try:
        return get_block_format(name)
    except ValueError as err:
        raise ExportError(f"bad block format in the export metadata: {err}") from None


def attention_from_tensors(tensors: dict[str, torch.Tensor], name: str, entry: dict) -> AttentionQuant:
    """Q K^T and P V operand quantization of one attention module from the export."""

    def operand(op: str) -> TensorQuant:
        return TensorQuant(
            _format_from_entry(entry[f"{op}_format"]), _tensor(tensors, f"{name}.{op}_scale", torch.float32, ())
        )

    return AttentionQuant(
        MatmulQuant(operand("query"), operand("key")), MatmulQuant(operand("probs"), operand("value"))
    )


def _attention_operands(quant: AttentionQuant) -> dict[str, TensorQuant]:
    return {
        "query": quant.scores.left,
        "key": quant.scores.right,
        "probs": quant.context.left,
        "value": quant.context.right,
    }


def embedding_weight(tensors: dict[str, torch.Tensor], name: str, entry: dict) -> torch.Tensor:
    """The dequantized embedding table, bit-identical to the calibration's fake quantization."""
    fmt = _format_from_entry(entry["weight_format"])
    shape = tuple(entry["shape"])
    codes = _unpack(_tensor(tensors, f"{name}.weight_codes", torch.uint8), fmt, shape, name)
    scale = _tensor(tensors, f"{name}.weight_scale", torch.float32, (shape[0],))
    return decode(codes, fmt, scale=scale, axis=0)


def _linear_tensors(name: str, folded: FoldedLinear) -> dict[str, torch.Tensor]:
    tensors = {
        f"{name}.weight_codes": _pack(folded.weight_codes, folded.weight_format),
        f"{name}.weight_scale": folded.weight_scale,
        f"{name}.input_scale": folded.input_scale,
        f"{name}.input_shift": folded.input_shift,
    }
    if folded.bias is not None:
        tensors[f"{name}.bias"] = folded.bias
    return tensors


def _pack(codes: torch.Tensor, fmt: Format) -> torch.Tensor:
    """4-bit codes two per byte along the last axis (padded with code 0 to even length); wider: one per byte."""
    if fmt.nbits != 4:
        return codes.contiguous()
    if codes.shape[-1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return pack_fp4(codes.contiguous())


def _unpack(stored: torch.Tensor, fmt: Format, shape: tuple[int, ...], name: str) -> torch.Tensor:
    expected = (shape[0], (shape[1] + 1) // 2) if fmt.nbits == 4 else shape
    if tuple(stored.shape) != expected:
        raise ExportError(f"{name}.weight_codes has shape {tuple(stored.shape)}, metadata says {expected}")
    codes = unpack_fp4(stored)[:, : shape[1]].contiguous() if fmt.nbits == 4 else stored
    if codes.numel() and int(codes.max()) >= 1 << fmt.nbits:
        raise ExportError(f"{name}.weight_codes holds codes outside the {fmt.nbits}-bit format {fmt.name}")
    return codes


def _tensor(tensors: dict, key: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if key not in tensors:
        raise ExportError(f"the export lacks tensor {key}")
    value = tensors[key]
    if value.dtype != dtype or (shape is not None and tuple(value.shape) != shape):
        raise ExportError(f"{key} is {value.dtype} {tuple(value.shape)}, expected {dtype} {shape}")
    return value


def _format_entry(fmt: Format) -> dict:
    return {"name": fmt.name, "ebits": fmt.ebits, "mbits": fmt.mbits, "bias": fmt.bias}


def _format_from_entry(entry: dict) -> Format:
    try:
        fmt = llm_fp4_format(int(entry["ebits"]), int(entry["mbits"]), int(entry["bias"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ExportError(f"bad format entry {entry!r} in the export metadata: {err}") from None
    if fmt.name != entry.get("name"):
        raise ExportError(f"format entry {entry!r} names {entry.get('name')!r} but describes {fmt.name}")
    return fmt


def _is_export_tensor(key: str, metadata: dict) -> bool:
    name, _, field = key.rpartition(".")
    return name in metadata["modules"] and field != "weight"


def _belongs_to_quantized(key: str, metadata: dict) -> bool:
    return key.rpartition(".")[0] in metadata["modules"]


def _rebuild_meta_buffers(model: Any) -> None:
    """Re-create the modules built on the meta device whose buffers are computed, not stored (rotary tables)."""
    for name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, type(module)(config=model.config))
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise ExportError(f"the export did not provide {', '.join(leftover[:5])}")


def _load_tensors(root: Path, metadata: dict) -> dict[str, torch.Tensor]:
    tensor_file = root / TENSORS_FILE
    if not tensor_file.is_file():
        raise ExportError(f"{root} has no {TENSORS_FILE}; the export is incomplete")
    if _sha256(tensor_file) != metadata.get("tensors_sha256"):
        raise ExportError(f"{tensor_file} does not match the checksum in {METADATA_FILE}: the export is corrupt")
    return load_file(tensor_file)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_target(out: Path, overwrite: bool) -> None:
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: {out.parent} is not a directory")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
        if not (out / METADATA_FILE).is_file():
            raise FileExistsError(f"{out} exists and is not an fp4sim export; refusing to replace it")


def _write_atomically(
    out: Path, overwrite: bool, tensors: dict, metadata: dict, model_config: Any, tokenizer: Any
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, staging / TENSORS_FILE)
        metadata["tensors_sha256"] = _sha256(staging / TENSORS_FILE)
        model_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        if out.exists() and overwrite:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
