"""The export directory on disk: written whole or not at all, read back only when its checksum matches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..._files import atomic_directory
from .schema import METADATA_FILE, TENSORS_FILE, ExportError, is_compressed_tensors


def check_target(out: Path, overwrite: bool) -> None:
    """FileNotFoundError / FileExistsError unless `out` may be written (replacing only an fp4sim export or a
    compressed-tensors checkpoint)."""
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: {out.parent} is not a directory")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
        if not ((out / METADATA_FILE).is_file() or is_compressed_tensors(out)):
            raise FileExistsError(f"{out} exists and is not an fp4sim export; refusing to replace it")


def write_atomically(
    out: Path, overwrite: bool, tensors: dict, metadata: dict, model_config: Any, tokenizer: Any
) -> None:
    """Write the export into a staging directory beside `out`, then rename it into place (fp4sim._files).

    The metadata records the SHA-256 of the tensor file (``tensors_sha256``) and of every other file, the
    config and the tokenizer's (``files_sha256``; exports before 2026-11-30 record only the first).
    """
    with atomic_directory(out, replace=overwrite) as staging:
        save_file({k: v.contiguous() for k, v in tensors.items()}, staging / TENSORS_FILE)
        model_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        others = sorted(path for path in staging.iterdir() if path.is_file() and path.name != TENSORS_FILE)
        metadata.update(
            tensors_sha256=sha256(staging / TENSORS_FILE), files_sha256={path.name: sha256(path) for path in others}
        )
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def load_tensors(root: Path, metadata: dict) -> dict[str, torch.Tensor]:
    """Every tensor of the export, after checking every file the metadata lists against its checksum."""
    tensor_file = root / TENSORS_FILE
    if not tensor_file.is_file():
        raise ExportError(f"{root} has no {TENSORS_FILE}; the export is incomplete")
    if sha256(tensor_file) != metadata.get("tensors_sha256"):
        raise ExportError(f"{tensor_file} does not match the checksum in {METADATA_FILE}: the export is corrupt")
    for name, digest in metadata.get("files_sha256", {}).items():
        path = root / str(name)
        if Path(str(name)).name != name or not path.is_file() or sha256(path) != digest:
            raise ExportError(
                f"{path} is missing or does not match its checksum in {METADATA_FILE}: the export is corrupt"
            )
    try:
        return load_file(tensor_file)
    except Exception as err:  # safetensors raises its own error type for a malformed file
        raise ExportError(f"{tensor_file} is not a readable safetensors file: {err}") from None


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
