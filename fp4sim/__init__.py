"""fp4sim: a bit-accurate reference for FP4 inference hardware.

The public surface is numpy-like: formats by name, ``encode``/``decode`` for
any array shape, 4-bit packing, and the MAC array: ``gemm`` (fast, exact) and
``array_gemm`` (cycle by cycle), which give the same bits; the block-scaled
formats MXFP4 and NVFP4 (``block_quantize``, ``block_gemm``). See
docs/spec.md for the exact rules.
"""

from .array import array_gemm
from .block_gemm import block_gemm
from .blockscaled import (
    MXFP4,
    NVFP4,
    BlockFormat,
    BlockTensor,
    block_dequantize,
    block_quantize,
    pack_block,
    unpack_block,
)
from .codec import decode, encode
from .formats import LLM_FP4_NAMES, Format, format_names, get_format, llm_fp4_format
from .gemm import gemm
from .packing import as_float4_e2m1fn_x2, pack_fp4, unpack_fp4
from .pe import PEConfig

__version__ = "0.1.0"

__all__ = [
    "LLM_FP4_NAMES",
    "MXFP4",
    "NVFP4",
    "BlockFormat",
    "BlockTensor",
    "Format",
    "PEConfig",
    "array_gemm",
    "as_float4_e2m1fn_x2",
    "block_dequantize",
    "block_gemm",
    "block_quantize",
    "decode",
    "encode",
    "format_names",
    "gemm",
    "get_format",
    "llm_fp4_format",
    "pack_block",
    "pack_fp4",
    "unpack_block",
    "unpack_fp4",
]
