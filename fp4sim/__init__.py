"""fp4sim: a bit-accurate reference for FP4 inference hardware.

The public surface is numpy-like: formats by name, ``encode``/``decode`` for
any array shape, and 4-bit packing. See docs/spec.md for the exact rules.
"""

from .codec import decode, encode
from .formats import LLM_FP4_NAMES, Format, format_names, get_format, llm_fp4_format
from .packing import as_float4_e2m1fn_x2, pack_fp4, unpack_fp4

__version__ = "0.1.0"

__all__ = [
    "LLM_FP4_NAMES",
    "Format",
    "as_float4_e2m1fn_x2",
    "decode",
    "encode",
    "format_names",
    "get_format",
    "llm_fp4_format",
    "pack_fp4",
    "unpack_fp4",
]
