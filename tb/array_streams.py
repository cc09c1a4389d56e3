"""Random fp4_array input streams shared by the cocotb bench (tb/test_fp4_array.py) and the bulk player's test
(tb/test_fp4_array_player.py): back-to-back GEMMs (ragged tiles, K = 1), bubbles with junk data, resets mid-stream."""

from __future__ import annotations

import numpy as np

from fp4sim import PEConfig
from fp4sim.hw.fp4_array import ArrayInputs, idle_inputs, schedule_gemm, stitch_streams
from fp4sim.hw.fp4_round_to_float import output_format

ARRAY_BUILDS = [
    # (A, W, shift bits, K_MAX, rows, cols, output)
    ("E2M1", "E2M1", 2, 65536, 4, 4, "fp32"),
    ("E3M0", "E1M2", 3, 4096, 3, 2, "fp32"),
    ("E1M2", "E2M1", 1, 1024, 2, 5, "bf16"),
    ("E2M1", "E3M0", 2, 300, 1, 3, "fp16"),
]


def build_id(build: tuple) -> str:
    fa, fw, _, _, rows, cols, out = build
    fmt = output_format(out)
    return f"{fa}x{fw}-{rows}x{cols}-e{fmt.ebits}m{fmt.mbits}"


def build_config(build: tuple) -> PEConfig:
    fa, fw, shift_bits, k_max, *_ = build
    return PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=k_max)


def random_gemms(rng: np.random.Generator, config: PEConfig, rows: int, cols: int, count: int) -> ArrayInputs:
    """`count` random GEMMs, each tile right after the previous one, then one drain."""
    streams = []
    for _ in range(count):
        m, n = (int(x) for x in rng.integers(1, 2 * max(rows, cols) + 1, 2))
        k = int(rng.choice([1, 2, 3, int(rng.integers(4, 40))]))
        a = rng.integers(0, 1 << config.fmt_a.nbits, (m, k), dtype=np.uint8)
        w = rng.integers(0, 1 << config.fmt_w.nbits, (k, n), dtype=np.uint8)
        s = rng.integers(0, config.max_shift + 1, k, dtype=np.uint8)
        streams.append(schedule_gemm(a, w, s, rows, cols)[0])
    return stitch_streams(streams, rows, cols)


def with_bubbles(config: PEConfig, rng: np.random.Generator, stream: ArrayInputs) -> ArrayInputs:
    """`stream` with idle edges (random junk on the data ports, in_valid low) between its valid ones."""
    rows, cols = stream.a_in.shape[1], stream.w_in.shape[1]
    idle = rng.random(stream.cycles) < 0.3
    idle[0] = False
    keep = np.flatnonzero(stream.in_valid | stream.rst)
    total = keep.size + int(idle.sum()) + 2 * (rows + cols)
    bubbly = idle_inputs(total, rows, cols)
    bubbly.a_in[:] = rng.integers(0, 1 << config.fmt_a.nbits, bubbly.a_in.shape)
    bubbly.w_in[:] = rng.integers(0, 1 << config.fmt_w.nbits, bubbly.w_in.shape)
    bubbly.s_in[:] = rng.integers(0, config.max_shift + 1, total)
    bubbly.in_last[:] = rng.integers(0, 2, total)  # ignored without in_valid
    gaps = rng.integers(0, 3, keep.size) * (rng.random(keep.size) < 0.3)
    at = np.cumsum(gaps + 1) - 1
    at = at[at < total - rows - cols]
    for field in ArrayInputs._fields:
        getattr(bubbly, field)[at] = getattr(stream, field)[keep[: at.size]]
    return bubbly


def with_resets(rng: np.random.Generator, stream: ArrayInputs, count: int) -> ArrayInputs:
    """`stream` with `count` synchronous resets at random edges away from its ends (in place; returned)."""
    for t in rng.choice(np.arange(5, stream.cycles - 5), count, replace=False):
        stream.rst[t] = 1
    return stream
