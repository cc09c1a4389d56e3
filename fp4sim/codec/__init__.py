"""Codecs: floats <-> format codes element by element, 4-bit packing, and the block-scaled formats (spec 1, 7.1-7.4)."""

from .blockscaled import (
    BLOCK_FORMATS,
    MX_SCALE_RULES,
    MXFP4,
    NVFP4,
    NVFP4_SCALE_RULES,
    SCALE_RULES,
    BlockFormat,
    BlockTensor,
    block_dequantize,
    block_quantize,
    block_scale_rule,
    get_block_format,
    pack_block,
    unpack_block,
)
from .elementwise import decode, encode, quantize_dequantize_rows
from .packing import as_float4_e2m1fn_x2, pack_fp4, unpack_fp4

__all__ = [
    "BLOCK_FORMATS",
    "MXFP4",
    "MX_SCALE_RULES",
    "NVFP4",
    "NVFP4_SCALE_RULES",
    "SCALE_RULES",
    "BlockFormat",
    "BlockTensor",
    "as_float4_e2m1fn_x2",
    "block_dequantize",
    "block_quantize",
    "block_scale_rule",
    "decode",
    "encode",
    "get_block_format",
    "pack_block",
    "pack_fp4",
    "quantize_dequantize_rows",
    "unpack_block",
    "unpack_fp4",
]
