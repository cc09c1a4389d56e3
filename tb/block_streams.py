"""Random fp4_block_array input streams for tb/test_fp4_block_array.py: block GEMMs back to back with ragged K
(K not a multiple of the block, K below 16, fewer groups than rows), scale codes at their extremes (NaN, E8M0's
2^-127 and 2^127, E4M3's zero, subnormals, 448 and the sign bit), bubbles with junk data, resets mid-stream."""

from __future__ import annotations

import numpy as np

from fp4sim.codec.blockscaled import block_quantize
from fp4sim.hw.fp4_block_array import BlockArrayInputs, idle_block_inputs, schedule_block_gemm, stitch_block_streams
from fp4sim.hw.fp4_pkg import BlockConfig

EXTREME_SCALES = {"mxfp4": (0x00, 0x01, 0xFE, 0xFF), "nvfp4": (0x00, 0x01, 0x07, 0x7E, 0x7F, 0xB8)}


def random_operand(rng: np.random.Generator, config: BlockConfig, rows: int, k: int):
    """A block tensor of `rows` x `k` normal values whose rows span 2^+-40 (MXFP4) or 2^+-3 (NVFP4)."""
    span = 40 if config.block_format == "mxfp4" else 3
    x = rng.standard_normal((rows, k)) * np.exp2(rng.integers(-span, span + 1, (rows, 1)))
    x[rng.random((rows, k)) < 0.1] = 0
    scale = {"tensor_scale": 1.0} if config.nvfp4 else {}
    return block_quantize(x.astype(np.float32), config.block_format, **scale)


def random_block_gemms(rng: np.random.Generator, config: BlockConfig, rows: int, cols: int, count: int):
    """`count` random GEMMs back to back after a reset edge, then a drain; 5% of the scale codes set to extremes."""
    streams = []
    for _ in range(count):
        m, n = (int(v) for v in rng.integers(1, 2 * max(rows, cols) + 1, 2))
        k = int(rng.choice([1, 15, 16, 33, int(rng.integers(17, 150))]))
        stream, _ = schedule_block_gemm(
            random_operand(rng, config, m, k), random_operand(rng, config, n, k), rows, cols
        )
        for scales in (stream.a_scale, stream.w_scale):
            extreme = rng.random(scales.shape) < 0.05
            scales[extreme] = rng.choice(EXTREME_SCALES[config.block_format], int(extreme.sum()))
        streams.append(stream)
    return stitch_block_streams(streams)


def with_block_bubbles(rng: np.random.Generator, stream: BlockArrayInputs) -> BlockArrayInputs:
    """`stream` with idle edges carrying random junk (in_valid low) inserted before 30% of its edges."""
    gaps = rng.integers(1, 4, stream.cycles) * (rng.random(stream.cycles) < 0.3)
    gaps[0] = 0
    at = np.cumsum(gaps + 1) - 1
    total = int(at[-1]) + 1
    rows, cols = stream.a_scale.shape[1], stream.w_scale.shape[1]
    out = idle_block_inputs(total, rows, cols)
    for field in ("a_in", "w_in"):
        getattr(out, field)[:] = rng.integers(0, 16, getattr(out, field).shape)
    for field in ("a_scale", "w_scale"):
        getattr(out, field)[:] = rng.integers(0, 256, getattr(out, field).shape)
    out.in_last[:] = rng.integers(0, 2, total)  # ignored without in_valid
    for field in BlockArrayInputs._fields:
        getattr(out, field)[at] = getattr(stream, field)
    return out


def with_block_resets(rng: np.random.Generator, stream: BlockArrayInputs, count: int) -> BlockArrayInputs:
    """`stream` with `count` synchronous resets at random edges away from its ends (in place; returned)."""
    stream.rst[rng.choice(np.arange(5, stream.cycles - 5), count, replace=False)] = 1
    return stream
