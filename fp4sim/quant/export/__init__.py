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
  are quantized separately; ``architectures`` names the class that was
  quantized, the class it loads as) and its tokenizer files (a vision
  model's image processor).

Writing goes to a temporary directory beside the target, renamed into place
at the end: a failure leaves nothing half-written.

Layout: ``schema`` (versions, metadata, checked readers), ``kinds`` (one
writer and one reader per module kind, side by side), ``store`` (the atomic
directory on disk); this module runs them over a model.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ...models.checkpoint import load_preprocessor, model_class, onloaded, use_full_float32
from ..config import QuantConfig
from ..modules import set_backend
from .kinds import KIND_OF_QUANT, KINDS
from .schema import (
    COMPRESSED_TENSORS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    METADATA_FILE,
    MODELOPT,
    TENSORS_FILE,
    ExportError,
    read_metadata,
    third_party_format,
)
from .store import check_target, load_tensors, write_atomically

__all__ = [
    "EXPORT_VERSION",
    "METADATA_FILE",
    "TENSORS_FILE",
    "ExportError",
    "check_target",
    "export_quantized",
    "finish_model",
    "load_export",
    "load_quantized",
    "load_tokenizer",
    "meta_model",
    "plain_parameters",
    "read_metadata",
    "third_party_format",
    "untied_config",
]


def export_quantized(
    model: Any,
    tokenizer: Any,
    params: dict[str, Any],
    config: QuantConfig,
    out: str | Path,
    *,
    source: str = "",
    overwrite: bool = False,
    pooling: tuple[str, ...] | None = None,
) -> Path:
    """Fold `params` (from calibrate_model) into `model`'s weights and write the export directory `out`.

    `pooling`: a sentence-transformers model's pooling modes, recorded in the metadata.
    Raises FileExistsError / FileNotFoundError for a target it may not write,
    TypeError for a calibration result of no known kind.
    """
    out = Path(out)
    check_target(out, overwrite)
    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, dict] = {}
    for name, quant in params.items():
        kind = KIND_OF_QUANT.get(type(quant))
        if kind is None:
            raise TypeError(f"{name}: no export kind for a {type(quant).__name__}")
        written, entry = kind.write(model.get_submodule(name), name, quant)
        tensors.update(written)
        modules[name] = {"kind": kind.name, **entry}
    tensors.update(plain_parameters(model, params))
    metadata = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "source_model": source,
        "quant_config": config.to_dict(),
        "modules": modules,
    }
    if pooling is not None:
        metadata["pooling"] = list(pooling)
    write_atomically(out, overwrite, tensors, metadata, untied_config(model), tokenizer)
    return out


def plain_parameters(model: Any, quantized: Any) -> dict[str, torch.Tensor]:
    """float32 CPU copies of the parameters of every module not in `quantized` (names), by state-dict key."""
    tensors = {}
    for module_name, module in model.named_modules():
        if module_name in quantized or not any(True for _ in module.parameters(recurse=False)):
            continue
        with onloaded(module):  # one module at a time, also when accelerate offloaded it
            for name, value in module.named_parameters(recurse=False):
                tensors[f"{module_name}.{name}"] = value.detach().float().cpu().contiguous()
    return tensors


def untied_config(model: Any) -> Any:
    """The model's config as an export writes it: embeddings untied (the embedding and lm_head are quantized
    separately) and ``architectures`` naming the class that was quantized, the class it loads as."""
    model_config = copy.deepcopy(model.config)
    model_config.tie_word_embeddings = False
    model_config.architectures = [type(model).__name__]
    return model_config


def load_quantized(
    path: str | Path, *, backend: str = "torch", accum: str = "exact", dtype: str = "float32", device: str = "cpu"
) -> Any:
    """The model of an export directory, as the transformers class that was quantized (``LlamaForCausalLM``,
    ``BertModel``, ``BertForSequenceClassification``, ``ViTForImageClassification``...), in eval mode: code
    written for that model runs unchanged.

    Every quantized linear layer (and, where the export quantized them, each attention's Q K^T and P V) runs
    on `backend`: "torch" (torch ops, any device) or "simulator" (the golden model: fp4sim.gemm, or
    fp4sim.block_gemm for MXFP4 / NVFP4, under accumulation model `accum`, on the CPU); in exact mode both
    give the same bits. Non-quantized parameters load as `dtype` onto `device`. Its tokenizer loads with
    ``AutoTokenizer.from_pretrained(path)`` (a vision model's image processor with AutoImageProcessor).
    Raises ExportError (a ValueError) for a directory that is not a readable export of a supported version,
    ValueError for an unknown backend.
    """
    return load_export(path, backend=backend, accum=accum, dtype=dtype, device=device)[0]


def load_export(
    path: str | Path, *, backend: str = "torch", accum: str = "exact", dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any, dict]:
    """(model, preprocessor, metadata) from an export directory: load_quantized's model, with the export's
    tokenizer (or image processor) and its metadata (fp4sim_quant.json). A compressed-tensors checkpoint
    loads through quant.compressed.read instead, a ModelOpt NVFP4 export through quant.compressed.modelopt
    (schema.third_party_format), their metadata ``{"format": "compressed-tensors" | "modelopt", ...}``.
    Raises what load_quantized raises.
    """
    root = Path(path)
    foreign = third_party_format(root)
    if foreign == COMPRESSED_TENSORS:
        from ..compressed.read import load_compressed_tensors

        return load_compressed_tensors(root, backend=backend, accum=accum, dtype=dtype, device=device)
    if foreign == MODELOPT:
        from ..compressed.modelopt import load_modelopt

        return load_modelopt(root, backend=backend, accum=accum, dtype=dtype, device=device)
    metadata = read_metadata(root)
    tensors = load_tensors(root, metadata)
    tensor_file = root / TENSORS_FILE
    model = meta_model(root)
    tensors = _Reads(tensors)
    for name, entry in metadata["modules"].items():
        with _as_export_error(root, f"module {name}: "):
            KINDS[entry["kind"]].read(model, tensors, name, entry)
    unread = [k for k in tensors if _is_export_tensor(k, metadata) and k not in tensors.read]
    if unread:
        raise ExportError(f"{tensor_file}: tensors the metadata does not account for: {', '.join(unread[:5])}")
    rest = {k: v for k, v in tensors.items() if not _is_export_tensor(k, metadata)}
    for key, value in rest.items():
        if value.dtype != torch.float32:
            raise ExportError(f"{tensor_file}: {key} is {value.dtype}; the export holds float32 parameters")
    with _as_export_error(tensor_file):
        missing, unexpected = model.load_state_dict(
            {k: v.to(getattr(torch, dtype)) for k, v in rest.items()}, strict=False, assign=True
        )
    if unexpected or [k for k in missing if not _belongs_to_quantized(k, metadata)]:
        raise ExportError(f"{root}: tensors do not match the model config (missing {missing}, unexpected {unexpected})")
    return finish_model(model, root, backend, accum, device), load_tokenizer(root), metadata


def meta_model(root: Path) -> Any:
    """The model class of the directory's config.json, built from it on the meta device (no weights yet)."""
    from transformers import AutoConfig

    with _as_export_error(root / "config.json", third_party=True):
        model_config = AutoConfig.from_pretrained(root, local_files_only=True)
        with torch.device("meta"):
            return model_class(model_config.to_dict())(model_config)


def finish_model(model: Any, root: Path, backend: str, accum: str, device: str) -> Any:
    """A model whose weights are all loaded: computed buffers rebuilt, quantized layers on `backend`, on `device`,
    in eval mode (ExportError naming `root` for anything the directory did not provide)."""
    _rebuild_meta_buffers(model)
    set_backend(model, backend, accum)
    if torch.device(device).type != "cpu":
        use_full_float32()
    return model.to(device).eval()


def load_tokenizer(root: Path) -> Any:
    """The directory's tokenizer (or image processor); any error it raises becomes an ExportError naming `root`."""
    with _as_export_error(root, third_party=True):
        return load_preprocessor(root)


@contextmanager
def _as_export_error(where: Path, prefix: str = "", third_party: bool = False) -> Iterator[None]:
    """Any error reading a damaged export becomes an ExportError naming the file (and the module).

    `third_party`: transformers parses the files here and raises its own (and huggingface_hub's) error types.
    """
    caught = (
        Exception
        if third_party
        else (KeyError, AttributeError, TypeError, ValueError, ArithmeticError, RuntimeError, OSError)
    )
    try:
        yield
    except ExportError as err:
        raise ExportError(f"{where}: {prefix}{err}") from None
    except caught as err:
        raise ExportError(f"{where}: {prefix}{type(err).__name__}: {err}") from None


class _Reads(dict):
    """The export's tensors, remembering which ones the module readers took (the rest must not exist)."""

    def __init__(self, tensors: dict) -> None:
        super().__init__(tensors)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> torch.Tensor:
        self.read.add(key)
        return super().__getitem__(key)


def _is_export_tensor(key: str, metadata: dict) -> bool:
    name, _, field = key.rpartition(".")
    return name in metadata["modules"] and field != "weight"


def _belongs_to_quantized(key: str, metadata: dict) -> bool:
    return key.rpartition(".")[0] in metadata["modules"]


def _rebuild_meta_buffers(model: Any) -> None:
    """Compute the buffers that are computed, not stored (rotary tables, BERT's position ids), which the model built
    on the meta device lacks: each such module's are taken from a fresh copy built from the config."""
    for module in model.modules():
        missing = [name for name, value in module.named_buffers(recurse=False) if value.is_meta]
        if missing:
            fresh = type(module)(config=model.config)
            for name in missing:
                setattr(module, name, getattr(fresh, name))
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise ExportError(f"the export did not provide {', '.join(leftover[:5])}")
