"""fp4sim: a bit-accurate reference for FP4 inference hardware.

The public surface is numpy-like: formats by name, ``encode``/``decode`` for
any array shape, 4-bit packing, and the MAC array: ``gemm`` (fast, exact) and
``array_gemm`` (cycle by cycle), which give the same bits. See docs/spec.md for the exact rules.
"""

from .array import array_gemm
from .codec import decode, encode
from .formats import LLM_FP4_NAMES, Format, format_names, get_format, llm_fp4_format
from .gemm import gemm
from .packing import as_float4_e2m1fn_x2, pack_fp4, unpack_fp4
from .pe import PEConfig

__version__ = "0.1.0"

__all__ = [
    "LLM_FP4_NAMES",
    "Format",
    "PEConfig",
    "array_gemm",
    "as_float4_e2m1fn_x2",
    "decode",
    "encode",
    "format_names",
    "gemm",
    "get_format",
    "llm_fp4_format",
    "pack_fp4",
    "unpack_fp4",
]
