"""One block-quantized tensor in the compressed-tensors format and back (docs/spec.md 7.8).

compressed-tensors (vLLM's checkpoint format) stores a layer's FP4 weight as
``weight_packed`` (uint8, two E2M1 codes per byte along the input axis,
element 0 in the low nibble), ``weight_scale`` (one code per block: E4M3 as
``float8_e4m3fn`` for NVFP4, the E8M0 biased exponent as uint8 for MXFP4) and,
for NVFP4 only, ``weight_global_scale``: a float32 divisor ``g``, the block's
scale being ``S_b / g``. fp4sim's tensor scale is a multiplier ``s_t``; the two
are converted with one float32 reciprocal each way.

The library's packing and unpacking (``pack_fp4_to_uint8``,
``unpack_fp4_from_uint8``) move the elements. The scale codes are moved as
bytes, by hand: the library's scale compressors start from float scales (and
its MX one takes ``floor(log2 s)`` in float), where fp4sim already holds the
codes; a byte view is exact by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from ...codec import decode, encode
from ...codec.blockscaled import ELEMENT, MXFP4, NVFP4, BlockFormat, BlockTensor

# compressed-tensors' format names, and the preset names of its schemes (W4A4 and weight-only)
FORMAT_NAMES = {NVFP4.name: "nvfp4-pack-quantized", MXFP4.name: "mxfp4-pack-quantized"}
PRESETS = {NVFP4.name: ("NVFP4", "NVFP4A16"), MXFP4.name: ("MXFP4", "MXFP4A16")}
SCALE_DTYPES = {NVFP4.name: torch.float8_e4m3fn, MXFP4.name: torch.uint8}


class CompressedTensorsError(ValueError):
    """A compressed-tensors checkpoint fp4sim cannot read, or a tensor it cannot write."""


def global_scale(tensor_scale: float) -> np.float32:
    """The divisor compressed-tensors stores for fp4sim's tensor scale `s_t`: ``g = fp32(1 / s_t)`` (spec 7.8)."""
    return np.float32(np.float32(1) / np.float32(tensor_scale))


def tensor_scale(divisor: float, name: str) -> np.float32:
    """fp4sim's tensor scale for a stored global scale `g`: ``s_t = fp32(1 / g)`` (spec 7.8).

    Raises CompressedTensorsError (naming tensor `name`) unless g is a finite float32 > 0 whose reciprocal is a
    positive float32.
    """
    g = np.float32(divisor)
    if not (np.isfinite(g) and g > 0):
        raise CompressedTensorsError(f"{name} must be a finite float32 > 0, got {g}")
    with np.errstate(over="ignore"):  # a reciprocal past float32's range is refused just below
        scale = np.float32(1) / g
    if not (np.isfinite(scale) and scale > 0):
        raise CompressedTensorsError(f"{name} = {g} has no float32 reciprocal")
    return scale


def to_compressed(t: BlockTensor, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors ``<prefix>_packed``, ``<prefix>_scale`` (and NVFP4's ``<prefix>_global_scale``, shape (1,)) of a
    2-D block tensor (out, in). Raises CompressedTensorsError when `in` is not a multiple of the block size
    (compressed-tensors stores whole blocks only)."""
    from compressed_tensors.compressors.nvfp4.helpers import pack_fp4_to_uint8

    k = t.shape[-1]
    if k % t.fmt.block_size:
        raise CompressedTensorsError(
            f"{prefix}: {k} input channels are not a multiple of {t.fmt.name}'s block of {t.fmt.block_size}; "
            "compressed-tensors stores whole blocks only (export with --export-format fp4sim)"
        )
    values = torch.from_numpy(decode(t.codes, ELEMENT).astype(np.float32))  # exact E2M1 values, -0 kept
    scales = torch.from_numpy(t.scales.copy())
    tensors = {
        f"{prefix}_packed": pack_fp4_to_uint8(values),
        f"{prefix}_scale": scales.view(torch.float8_e4m3fn) if t.fmt.tensor_scale else scales,
    }
    if t.fmt.tensor_scale:
        tensors[f"{prefix}_global_scale"] = torch.tensor([global_scale(t.tensor_scale)])
    return tensors


def from_compressed(
    fmt: BlockFormat, packed: torch.Tensor, scale: torch.Tensor, s_t: np.float32, name: str
) -> BlockTensor:
    """The block tensor (out, in) of one stored weight: `packed` (out, in / 2) uint8, `scale` (out, in / B) codes,
    `s_t` fp4sim's tensor scale (the multiplier: tensor_scale of a compressed-tensors divisor; 1 for MXFP4).

    Raises CompressedTensorsError (naming `name`) for wrong dtypes or shapes, or scale codes the format does not
    have (an E4M3 code with the sign bit or the NaN code set).
    """
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8

    if packed.dtype != torch.uint8 or packed.ndim != 2:
        raise CompressedTensorsError(
            f"{name}: packed codes must be a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}"
        )
    rows, k = packed.shape[0], 2 * packed.shape[1]
    expected = (rows, k // fmt.block_size)
    if k % fmt.block_size or tuple(scale.shape) != expected:
        raise CompressedTensorsError(
            f"{name}_scale is {tuple(scale.shape)}; {fmt.name} blocks of {fmt.block_size} along {k} inputs need "
            f"{expected} (a swizzled or padded layout? run fp4sim check)"
        )
    if scale.dtype != SCALE_DTYPES[fmt.name]:
        raise CompressedTensorsError(f"{name}_scale is {scale.dtype}; {fmt.name} stores {SCALE_DTYPES[fmt.name]}")
    values = unpack_fp4_from_uint8(packed, rows, k, dtype=torch.float32)
    codes = encode(values.numpy(), ELEMENT)  # E2M1 values back to their codes: exact
    try:
        return BlockTensor(fmt, codes, scale.view(torch.uint8).numpy().copy(), s_t)
    except ValueError as err:
        raise CompressedTensorsError(f"{name}: {err}") from None


def stored_scalar(tensors: dict[str, torch.Tensor], key: str) -> float:
    """The one float32 value of a stored per-tensor scale (the largest of several, as vLLM takes for fused layers);
    CompressedTensorsError if it is missing or empty."""
    value = tensors.get(key)
    if value is None or value.numel() == 0:
        raise CompressedTensorsError(f"the checkpoint has no {key}")
    return float(value.float().max())
