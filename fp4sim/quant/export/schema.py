"""What an export directory holds and how it is checked: versions, metadata, tensor names, format entries.

Every reader here raises :class:`ExportError` with the file and the field at
fault; nothing is trusted that the metadata or the tensors did not say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ...codec import pack_fp4, unpack_fp4
from ...codec.blockscaled import BlockFormat, get_block_format
from ...formats import Format, llm_fp4_format
from ...models.checkpoint import check_checkpoint
from ...models.sentence_transformers import POOLING_MODES
from ..config import UNQUANTIZED, QuantConfig

EXPORT_FORMAT = "fp4sim-llm-fp4"
EXPORT_VERSION = 2  # 2 added the MXFP4 / NVFP4 module kinds; version 1 exports still load
MODULE_KINDS = {
    1: ("linear", "embedding", "attention"),
    2: ("linear", "embedding", "attention", "block_linear", "block_embedding"),
}
METADATA_FILE = "fp4sim_quant.json"
TENSORS_FILE = "model.safetensors"
COMPRESSED_TENSORS = "compressed-tensors"
MODELOPT = "modelopt"


class ExportError(ValueError):
    """An export directory that is missing, corrupt, foreign or from an unsupported version."""


def third_party_format(root: Path) -> str | None:
    """``"compressed-tensors"`` or ``"modelopt"`` when directory `root` holds such a checkpoint (a config.json
    ``quantization_config`` naming its ``quant_method``, or ModelOpt's ``hf_quant_config.json``; quant.compressed
    reads both), else None."""
    if (root / "hf_quant_config.json").is_file():
        return MODELOPT
    try:
        config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    return method if method in (COMPRESSED_TENSORS, MODELOPT) else None


def is_compressed_tensors(root: Path) -> bool:
    """Whether directory `root` holds a compressed-tensors checkpoint (vLLM's format)."""
    return third_party_format(root) == COMPRESSED_TENSORS


def read_metadata(root: Path) -> dict:
    """The export's metadata after checking it is an fp4sim export of a supported version."""
    if not root.is_dir():
        raise ExportError(f"quantized model {str(root)!r} is not a directory; pass the --out DIR of fp4sim quantize")
    meta_file = root / METADATA_FILE
    if not meta_file.is_file():
        raise ExportError(
            f"{root} has no {METADATA_FILE}: it is not an fp4sim export (make one with fp4sim quantize) or a "
            f"{COMPRESSED_TENSORS} or ModelOpt checkpoint"
        )
    try:
        metadata = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
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
    for field, kind in (("tensors_sha256", str), ("files_sha256", dict), ("source_model", str), ("quant_config", dict)):
        if field in metadata and not isinstance(metadata[field], kind):
            raise ExportError(f"{meta_file}: {field} must be a {kind.__name__}, got {metadata[field]!r}")
    pooling = metadata.get("pooling", POOLING_MODES)
    if not isinstance(pooling, list | tuple) or not pooling or not set(pooling) <= set(POOLING_MODES):
        raise ExportError(f"{meta_file}: pooling must list modes among {', '.join(POOLING_MODES)}, got {pooling!r}")
    weight_only = _weight_only(metadata)
    for name, entry in metadata["modules"].items():
        if not isinstance(entry, dict) or entry.get("kind") not in kinds:
            known = ", ".join(kinds)
            raise ExportError(f"{meta_file}: module {name} has no kind that version {version} knows ({known})")
        for field, check in ENTRY_FIELDS[entry["kind"]].items():
            if field not in entry:
                raise ExportError(f"{meta_file}: modules.{name} lacks {field!r}")
            if not check(entry[field]):
                raise ExportError(f"{meta_file}: modules.{name}.{field} is malformed: {entry[field]!r}")
        if entry["kind"] in ("linear", "block_linear") and weight_only is not None:
            if (entry["input_format"] is None) != weight_only:
                wanted = "no input format (weight-only)" if weight_only else "an input format"
                bits = metadata["quant_config"]["bits"]
                raise ExportError(f"{meta_file}: modules.{name}.input_format: quant_config.bits {bits} needs {wanted}")
    try:
        check_checkpoint(root)
    except (OSError, ValueError) as err:
        raise ExportError(f"{root / 'config.json'}: {err}") from None
    return metadata


def _weight_only(metadata: dict) -> bool | None:
    """Whether the export's quant_config keeps activations in floating point; None when it cannot be read."""
    try:
        config = dict(metadata["quant_config"])
        if config.get("scale_rule") == "floor" and config.get("method") != "mxfp4":
            config["scale_rule"] = None  # exports before 2026-12-01 recorded OCP's floor for every method
        return QuantConfig(**config).activation_bits == UNQUANTIZED
    except (KeyError, TypeError, ValueError):
        return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _shape(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_count(v) for v in value)


def _present(value: Any) -> bool:  # formats are checked where they are read (format_from_entry and its block twin)
    return True


# What each kind's metadata entry must hold (besides "kind"), and how each field is checked; extra fields are ignored.
_LINEAR = {"in_features": _count, "out_features": _count, "bias": lambda value: isinstance(value, bool)}
ENTRY_FIELDS = {
    "linear": {**_LINEAR, "weight_format": _present, "input_format": _present},
    "embedding": {"shape": _shape, "weight_format": _present},
    "attention": {f"{op}_format": _present for op in ("query", "key", "probs", "value")},
    "block_linear": {**_LINEAR, "weight_format": _present, "input_format": _present},
    "block_embedding": {"shape": _shape, "weight_format": _present},
}


def tensor(tensors: dict, key: str, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """tensors[key], checked for presence, dtype and (when given) shape."""
    if key not in tensors:
        raise ExportError(f"the export lacks tensor {key}")
    value = tensors[key]
    if value.dtype != dtype or (shape is not None and tuple(value.shape) != shape):
        raise ExportError(f"{key} is {value.dtype} {tuple(value.shape)}, expected {dtype} {shape}")
    return value


def scale(tensors: dict, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 scale tensor, checked like :func:`tensor` and for every value being finite and > 0."""
    value = tensor(tensors, key, torch.float32, shape)
    bad = value[~(torch.isfinite(value) & (value > 0))]
    if bad.numel():
        raise ExportError(f"{key} holds {bad.numel()} scale(s) that are not finite and > 0 (e.g. {bad[0].item()})")
    return value


def pack_codes(codes: torch.Tensor, fmt: Format) -> torch.Tensor:
    """4-bit codes two per byte along the last axis (padded with code 0 to even length); wider: one per byte."""
    if fmt.nbits != 4:
        return codes.contiguous()
    if codes.shape[-1] % 2:
        codes = torch.nn.functional.pad(codes, (0, 1))
    return pack_fp4(codes.contiguous())


def unpack_codes(stored: torch.Tensor, fmt: Format, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """The (rows, columns) = `shape` codes of module `name` from pack_codes' bytes, checked against `fmt`."""
    expected = (shape[0], (shape[1] + 1) // 2) if fmt.nbits == 4 else shape
    if tuple(stored.shape) != expected:
        raise ExportError(f"{name}.weight_codes has shape {tuple(stored.shape)}, metadata says {expected}")
    codes = unpack_fp4(stored)[:, : shape[1]].contiguous() if fmt.nbits == 4 else stored
    if codes.numel() and int(codes.max()) >= 1 << fmt.nbits:
        raise ExportError(f"{name}.weight_codes holds codes outside the {fmt.nbits}-bit format {fmt.name}")
    return codes


def format_entry(fmt: Format) -> dict:
    """The metadata entry of an LLM-FP4 family format."""
    return {"name": fmt.name, "ebits": fmt.ebits, "mbits": fmt.mbits, "bias": fmt.bias}


def format_from_entry(entry: Any) -> Format:
    """The format a metadata entry describes, checked against the name it gives."""
    try:
        fmt = llm_fp4_format(int(entry["ebits"]), int(entry["mbits"]), int(entry["bias"]))
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise ExportError(f"bad format entry {entry!r} in the export metadata: {err}") from None
    if fmt.name != entry.get("name"):
        raise ExportError(f"format entry {entry!r} names {entry.get('name')!r} but describes {fmt.name}")
    return fmt


def block_format_from_entry(name: Any) -> BlockFormat:
    """The block format a metadata entry names ("mxfp4" or "nvfp4")."""
    try:
        return get_block_format(name)
    except ValueError as err:
        raise ExportError(f"bad block format in the export metadata: {err}") from None
