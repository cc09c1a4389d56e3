"""fp4sim: a bit-accurate reference for FP4 inference hardware.

The public surface is numpy-like: formats by name, ``encode``/``decode`` for
any array shape, 4-bit packing, and the MAC array: ``gemm`` (fast, exact) and
``array_gemm`` (cycle by cycle), which give the same bits; the block-scaled
formats MXFP4 and NVFP4 (``block_quantize``, ``block_gemm``). See
docs/spec.md for the exact rules. ``load_quantized(export_dir, backend=...)``
loads an export of ``fp4sim quantize`` as the transformers class it came
from, on torch ops or on the simulator (imported on first use: it needs torch
and transformers, which the rest does not load).

The package is built in layers, each importing only those below it (checked
by ``make lint``): ``formats`` -> ``codec`` (element and block codecs) ->
``hw`` (one golden twin per RTL module) -> ``gemm`` (fast GEMMs, study
accumulation models) -> ``rtlsim`` (the cocotb flow) -> ``models``
(checkpoints, perplexity, tasks) -> ``quant`` (LLM-FP4, MXFP4, NVFP4,
export) -> ``e2e`` (simulate, cosim, demo) -> ``cli``.
"""

from .codec import (
    MXFP4,
    NVFP4,
    BlockFormat,
    BlockTensor,
    as_float4_e2m1fn_x2,
    block_dequantize,
    block_quantize,
    decode,
    encode,
    pack_block,
    pack_fp4,
    unpack_block,
    unpack_fp4,
)
from .formats import LLM_FP4_NAMES, Format, format_names, get_format, llm_fp4_format
from .gemm import block_gemm, gemm
from .hw.fp4_array import array_gemm
from .hw.fp4_pkg import PEConfig

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
    "load_quantized",
    "pack_block",
    "pack_fp4",
    "unpack_block",
    "unpack_fp4",
]


def __getattr__(name: str) -> object:
    if name == "load_quantized":  # the model front end, imported only when asked for
        from .quant.export import load_quantized

        return load_quantized
    raise AttributeError(f"module 'fp4sim' has no attribute {name!r}")
