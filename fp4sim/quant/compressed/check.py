"""``fp4sim check``: how a compressed-tensors or ModelOpt FP4 checkpoint reads, and where runtimes could read it
differently.

Every quantized tensor (compressed-tensors' ``*.weight_packed``, ModelOpt's
uint8 ``*.weight``) is decoded under both readings a runtime could take and
the checkpoint's encoding is checked against docs/spec.md 7.8. Errors (the
checkpoint is wrong, or no runtime reads it as written): scale codes with the
sign bit or the NaN code, a scale tensor in the swizzled layout or in neither
layout, an input width that is not a whole number of blocks, a weight
per-tensor scale on the wrong side of 1 for its producer's convention (a
compressed-tensors divisor ``g`` below 1, a ModelOpt multiplier ``s_t`` above
1: the block scales cap ``max |value(q) S_b|`` at 2688, so either means a
tensor amax beyond 2688, what the other convention's value stored in its
place looks like), tied embeddings stored twice with different values.
Warnings (legal, but read differently by different producers): all-zero
blocks with a nonzero scale, an activation per-tensor scale on the wrong side
of 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ...codec import decode
from ...codec.blockscaled import MXFP4, NVFP4, BlockFormat
from .codec import FORMAT_NAMES, SCALE_DTYPES
from .modelopt import modelopt_config
from .read import read_tensors

TILE_ROWS, TILE_COLUMNS = 128, 4  # the swizzled layout's tile: 128 rows x 4 scale columns (cuBLAS, TensorRT-LLM)
E4M3_SIGN, E4M3_NAN = 0x80, 0x7F
E8M0_NAN = 0xFF
NVFP4_RANGE = 6 * 448


class Convention(NamedTuple):
    """How a producer names a quantized layer's tensors and which way its per-tensor scales go (spec 7.8)."""

    producer: str
    packed: str  # the packed E2M1 codes, uint8
    weight_scale: str  # the weight's per-tensor scale
    input_scale: str  # the activations'
    divisor: bool  # True: g = 2688 / amax, values are value(q) S_b / g; False: s_t = amax / 2688, times s_t


COMPRESSED_TENSORS = Convention(
    "compressed-tensors", "weight_packed", "weight_global_scale", "input_global_scale", True
)
MODELOPT = Convention("ModelOpt", "weight", "weight_scale_2", "input_scale", divisor=False)


@dataclass
class Finding:
    """One problem: `severity` "error" or "warning", the rule's short name, what was seen."""

    severity: str
    rule: str
    message: str


@dataclass
class TensorReport:
    """One quantized tensor decoded both ways: `amax_divisor` / `amax_multiplier` are max |w| with the global scale
    read as compressed-tensors' divisor and as a multiplier (equal for MXFP4, which has none)."""

    name: str
    fmt: str
    shape: tuple[int, int]
    layout: str
    global_scale: float | None = None
    amax_divisor: float = float("nan")
    amax_multiplier: float = float("nan")
    zero_blocks_with_scale: int = 0
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CheckReport:
    """The checkpoint's tensors and the findings that concern no single tensor (the config, tied embeddings)."""

    path: str
    tensors: list[TensorReport]
    findings: list[Finding]

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for _, f in self.all_findings())

    def all_findings(self) -> list[tuple[str, Finding]]:
        return [("(checkpoint)", f) for f in self.findings] + [(t.name, f) for t in self.tensors for f in t.findings]

    def markdown(self) -> str:
        """The table of tensors, then every finding, then a one-line verdict."""
        lines = [
            f"# fp4sim check {self.path}",
            "",
            "| tensor | format | shape | scale layout | global scale g | amax, g a divisor | amax, g a multiplier "
            "| zero blocks with a scale | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in self.tensors:
            worst = "error" if any(f.severity == "error" for f in t.findings) else "warning" if t.findings else "ok"
            scale = "-" if t.global_scale is None else f"{t.global_scale:.6g}"
            lines.append(
                f"| {t.name} | {t.fmt} | {t.shape[0]} x {t.shape[1]} | {t.layout} | {scale} | {t.amax_divisor:.6g} "
                f"| {t.amax_multiplier:.6g} | {t.zero_blocks_with_scale} | {worst} |"
            )
        findings = self.all_findings()
        if findings:
            lines += ["", *(f"- {f.severity} [{f.rule}] {where}: {f.message}" for where, f in findings)]
        warnings = len(findings) - self.errors
        lines += ["", f"{len(self.tensors)} quantized tensors, {self.errors} errors, {warnings} warnings"]
        return "\n".join(lines)


def check_checkpoint(path: str | Path) -> CheckReport:
    """Check the compressed-tensors or ModelOpt (hf_quant_config.json) checkpoint directory `path` (spec 7.8).

    Raises FileNotFoundError / ValueError for a directory without a readable config.json or safetensors file.
    """
    root = Path(path)
    config_file = root / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{root} has no config.json; pass a compressed-tensors or ModelOpt checkpoint directory"
        )
    config = json.loads(config_file.read_text())
    findings: list[Finding] = []
    modelopt = modelopt_config(root)
    convention = COMPRESSED_TENSORS if modelopt is None else MODELOPT
    if modelopt is None:
        fmt = _configured_format(config.get("quantization_config"), findings)
    else:
        fmt = _modelopt_format(modelopt, findings)
    tensors = read_tensors(root)
    reports = [
        check_tensor(name, tensors, fmt, convention)
        for name in sorted(key.removesuffix(f".{convention.packed}") for key in tensors)
        if _is_packed(tensors, name, convention)
    ]
    if config.get("tie_word_embeddings"):
        findings += _tied_copies(tensors, fmt, convention)
    return CheckReport(str(root), reports, findings)


def check_tensor(
    name: str, tensors: dict[str, torch.Tensor], fmt: BlockFormat | None, convention: Convention = COMPRESSED_TENSORS
) -> TensorReport:
    """Decode and check the quantized weight of module `name`, stored as `convention` says; `fmt` is the configured
    format (None: infer it from the stored scale dtype)."""
    packed = tensors[f"{name}.{convention.packed}"]
    scale = tensors.get(f"{name}.weight_scale")
    rows, k = packed.shape[0], 2 * packed.shape[1]
    if fmt is None:
        fmt = NVFP4 if scale is not None and scale.dtype == torch.float8_e4m3fn else MXFP4
    report = TensorReport(name, fmt.name, (rows, k), "-")
    if scale is None:
        report.findings.append(Finding("error", "missing", f"no {name}.weight_scale"))
        return report
    if k % fmt.block_size:
        report.findings.append(
            Finding("error", "shape", f"{k} inputs are not a whole number of {fmt.name} blocks of {fmt.block_size}")
        )
        return report
    if scale.dtype != SCALE_DTYPES[fmt.name]:
        report.findings.append(
            Finding("error", "dtype", f"scales are {scale.dtype}, {fmt.name} stores them as {SCALE_DTYPES[fmt.name]}")
        )
        return report
    codes = scale.view(torch.uint8).numpy()
    linear = (rows, k // fmt.block_size)
    report.layout, codes = _layout(codes, linear, report.findings)
    if codes is None:
        return report
    report.findings += _bad_scale_codes(codes, fmt)
    elements = _element_values(packed)
    blocks = elements.reshape(rows, -1, fmt.block_size)
    zero_blocks = ~blocks.any(-1)
    report.zero_blocks_with_scale = int((zero_blocks & (codes != 0)).sum())
    if report.zero_blocks_with_scale:
        report.findings.append(
            Finding(
                "warning",
                "zero-block-scale",
                f"{report.zero_blocks_with_scale} all-zero blocks carry a nonzero scale (spec 7.2 / 7.3 give them "
                "scale 0 or 2^-127; other producers clamp): harmless to the values, but not what fp4sim would write",
            )
        )
    valid = _valid_scales(codes, fmt)
    scaled = np.abs(blocks * np.where(valid, decode(codes, fmt.scale), 0.0)[..., None]).max(initial=0.0)
    report.amax_divisor = report.amax_multiplier = float(scaled)
    if fmt.tensor_scale:
        _global_scales(name, tensors, float(scaled), report, convention)
    return report


def swizzle(scales: np.ndarray) -> np.ndarray:
    """The (rows, columns) scale codes in the swizzled layout cuBLAS and TensorRT-LLM read: zero-padded to whole
    128 x 4 tiles, each tile stored as 32 rows of 16 (row r of the tile at (r % 32, 4 * (r // 32) + column)),
    tiles in row-major order; shape (ceil(rows / 128) * 128, ceil(columns / 4) * 4)."""
    rows, columns = scales.shape
    padded_rows, padded_columns = -(-rows // TILE_ROWS) * TILE_ROWS, -(-columns // TILE_COLUMNS) * TILE_COLUMNS
    padded = np.zeros((padded_rows, padded_columns), scales.dtype)
    padded[:rows, :columns] = scales
    tiles = padded.reshape(padded_rows // TILE_ROWS, TILE_ROWS, padded_columns // TILE_COLUMNS, TILE_COLUMNS)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(-1, 4, 32, TILE_COLUMNS).transpose(0, 2, 1, 3)
    return tiles.reshape(padded_rows, padded_columns)


def unswizzle(stored: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """swizzle's inverse: the (rows, columns) = `shape` linear scale codes of a swizzled tensor."""
    padded_rows, padded_columns = stored.shape
    tiles = stored.reshape(-1, 32, 4, TILE_COLUMNS).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(padded_rows // TILE_ROWS, padded_columns // TILE_COLUMNS, TILE_ROWS, TILE_COLUMNS)
    return tiles.transpose(0, 2, 1, 3).reshape(padded_rows, padded_columns)[: shape[0], : shape[1]]


def _configured_format(quantization: object, findings: list[Finding]) -> BlockFormat | None:
    """The one block format the config names (its ``format``), or None (findings say why when it is wrong)."""
    if not isinstance(quantization, dict) or quantization.get("quant_method") != "compressed-tensors":
        findings.append(Finding("error", "config", "config.json has no compressed-tensors quantization_config"))
        return None
    by_name = {name: fmt for fmt, name in ((NVFP4, FORMAT_NAMES["nvfp4"]), (MXFP4, FORMAT_NAMES["mxfp4"]))}
    named = quantization.get("format")
    if named not in by_name:
        findings.append(Finding("warning", "config", f"format {named!r}: each tensor's format is read from its scales"))
        return None
    return by_name[named]


def _modelopt_format(quantization: dict, findings: list[Finding]) -> BlockFormat | None:
    """NVFP4 for a ModelOpt NVFP4 export (its only FP4 algorithm); None, with an error, for another."""
    algorithm, group = quantization.get("quant_algo"), quantization.get("group_size", NVFP4.block_size)
    if algorithm != "NVFP4" or group != NVFP4.block_size:
        findings.append(
            Finding("error", "config", f"ModelOpt quant_algo {algorithm!r}, group_size {group!r}: not NVFP4 (16)")
        )
        return None
    return NVFP4


def _is_packed(tensors: dict[str, torch.Tensor], name: str, convention: Convention) -> bool:
    """Whether module `name` stores packed FP4 codes: uint8 (ModelOpt's ``weight`` is also a float layer's name)."""
    stored = tensors.get(f"{name}.{convention.packed}")
    return stored is not None and stored.dtype == torch.uint8


def _layout(codes: np.ndarray, linear: tuple[int, int], findings: list[Finding]) -> tuple[str, np.ndarray | None]:
    """(layout name, the scale codes in the linear layout, or None when no layout fits)."""
    swizzled_shape = swizzle(np.zeros(linear, np.uint8)).shape
    if codes.shape == linear:
        same = " (swizzled would have the same shape)" if swizzled_shape == linear else ""
        return f"linear{same}", codes
    if codes.shape == swizzled_shape:
        findings.append(
            Finding(
                "error",
                "layout",
                f"scales are {codes.shape}: the swizzled 128 x 4 tile layout of {linear}; compressed-tensors stores "
                "the linear layout (runtimes swizzle at load time), so a loader reads them in the wrong blocks",
            )
        )
        return "swizzled", unswizzle(codes, linear)
    findings.append(
        Finding("error", "layout", f"scales are {codes.shape}; linear {linear} or swizzled {swizzled_shape}")
    )
    return "unknown", None


def _valid_scales(codes: np.ndarray, fmt: BlockFormat) -> np.ndarray:
    if fmt.tensor_scale:
        return (codes & E4M3_SIGN == 0) & (codes & E4M3_NAN != E4M3_NAN)
    return codes != E8M0_NAN


def _bad_scale_codes(codes: np.ndarray, fmt: BlockFormat) -> list[Finding]:
    found = []
    nan = codes & E4M3_NAN == E4M3_NAN if fmt.tensor_scale else codes == E8M0_NAN
    signed = int((codes & E4M3_SIGN != 0).sum() - (nan & (codes & E4M3_SIGN != 0)).sum()) if fmt.tensor_scale else 0
    if signed:
        found.append(
            Finding(
                "error",
                "scale-sign",
                f"{signed} E4M3 block scales have the sign bit set "
                "(NVFP4 scales are unsigned: a runtime reading them signed negates those blocks)",
            )
        )
    if nan.any():
        found.append(Finding("error", "scale-nan", f"{int(nan.sum())} block scales are the NaN code"))
    return found


def _element_values(packed: torch.Tensor) -> np.ndarray:
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8

    return unpack_fp4_from_uint8(packed, packed.shape[0], 2 * packed.shape[1], dtype=torch.float32).numpy()


def _beyond_range(value: float, convention: Convention) -> bool:
    """Whether a per-tensor scale stored under `convention` means a tensor amax beyond 2688 (spec 7.8)."""
    return value < 1 if convention.divisor else value > 1


def _global_scales(
    name: str, tensors: dict[str, torch.Tensor], scaled: float, report: TensorReport, convention: Convention
) -> None:
    """NVFP4: read the weight's per-tensor scale as a divisor (compressed-tensors' g) and as a multiplier
    (ModelOpt's s_t); an error where the producer's own reading puts the tensor amax beyond 2688."""
    field = convention.weight_scale
    stored = tensors.get(f"{name}.{field}")
    if stored is None or stored.numel() != 1 or not (np.isfinite(g := float(stored.float().reshape(()))) and g > 0):
        report.findings.append(Finding("error", "global-scale", f"{field} is missing or not one finite value > 0"))
        return
    report.global_scale = g
    report.amax_divisor, report.amax_multiplier = scaled / g, scaled * g
    if convention.divisor:
        meant, other, read, misread = "divisor", "multiplier", report.amax_divisor, report.amax_multiplier
        stored_as, belongs = f"s_t = amax / {NVFP4_RANGE}", f"g = {NVFP4_RANGE} / amax"
    else:
        meant, other, read, misread = "multiplier", "divisor", report.amax_multiplier, report.amax_divisor
        stored_as, belongs = f"g = {NVFP4_RANGE} / amax", f"s_t = amax / {NVFP4_RANGE}"
    if _beyond_range(g, convention):
        report.findings.append(
            Finding(
                "error",
                "global-scale",
                f"{field} = {g:.6g} {'<' if convention.divisor else '>'} 1: read as the {meant} "
                f"{convention.producer} defines, the weights reach {read:.6g}, a tensor amax beyond the "
                f"{NVFP4_RANGE} this scale is set from; read as a {other} they reach {misread:.6g}. It looks like "
                f"{stored_as} stored where {belongs} belongs",
            )
        )
    stored_input = tensors.get(f"{name}.{convention.input_scale}")
    g_input = None if stored_input is None else float(stored_input.float().max())
    if g_input is not None and _beyond_range(g_input, convention):
        report.findings.append(
            Finding(
                "warning",
                "global-scale",
                f"{convention.input_scale} = {g_input:.6g} {'<' if convention.divisor else '>'} 1: activations "
                f"beyond {NVFP4_RANGE}, or a {other} stored where the {meant} belongs",
            )
        )


def _tied_copies(tensors: dict[str, torch.Tensor], fmt: BlockFormat | None, convention: Convention) -> list[Finding]:
    """Tied embeddings (config.json) stored as two tensors whose values differ: a runtime that ties them keeps one."""
    head = _dequantized(tensors, "lm_head", fmt, convention)
    table = _dequantized(tensors, "model.embed_tokens", fmt, convention)
    # equal up to the float32 roundings of the global scale (an NVFP4 table stored in float, its head quantized)
    if head is None or table is None or (head.shape == table.shape and np.allclose(head, table, rtol=2**-20, atol=0)):
        return []
    return [
        Finding(
            "error",
            "tied-embeddings",
            "tie_word_embeddings is true but lm_head and model.embed_tokens are stored separately with different "
            "values (different scales): a runtime that ties them uses one and drops the other",
        )
    ]


def _dequantized(
    tensors: dict[str, torch.Tensor], name: str, fmt: BlockFormat | None, convention: Convention
) -> np.ndarray | None:
    """Module `name`'s weight as float32 (a quantized one decoded with its per-tensor scale read as `convention`
    says), or None if not stored or undecodable (its own findings say why)."""
    if not _is_packed(tensors, name, convention):
        return tensors[f"{name}.weight"].float().numpy() if f"{name}.weight" in tensors else None
    if check_tensor(name, tensors, fmt, convention).findings:
        return None
    block = NVFP4 if tensors[f"{name}.weight_scale"].dtype == torch.float8_e4m3fn else MXFP4
    elements = _element_values(tensors[f"{name}.{convention.packed}"])
    codes = tensors[f"{name}.weight_scale"].view(torch.uint8).numpy()
    values = elements.reshape(*codes.shape, block.block_size) * decode(codes, block.scale)[..., None]
    if block.tensor_scale:
        stored = float(tensors[f"{name}.{convention.weight_scale}"])
        values = values / stored if convention.divisor else values * stored
    return values.reshape(elements.shape).astype(np.float32)
