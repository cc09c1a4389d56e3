"""fp4_array against the cycle-accurate golden model: every output pulse, value and edge, must match.

The driver plays an `ArrayInputs` stream into the RTL one edge at a time; the
monitor records every out_valid pulse with the edge it is sampled at; the
scoreboard compares that list with the golden twin `fp4sim.hw.fp4_array` on the same
stream. Streams hold random GEMMs back to back (ragged tiles, K = 1), bubbles
with junk on the data ports, and resets in mid-stream.
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest

from fp4sim import PEConfig, get_format
from fp4sim.hw.fp4_array import ArrayInputs, fp4_array, idle_inputs, schedule_gemm, stitch_streams
from fp4sim.rtlsim.array_driver import play
from fp4sim.rtlsim.runner import run_testbench, tb_params, tb_pe_config


def output_name(p: dict) -> str:
    return {(8, 23): "fp32", (8, 7): "bf16", (5, 10): "fp16"}[(p["OUT_EBITS"], p["OUT_MBITS"])]


def gemm_stream(seed: int, count: int) -> tuple[dict, PEConfig, np.random.Generator, ArrayInputs]:
    """The build's parameters, its PEConfig, a seeded generator and `count` random GEMMs as one stream."""
    p, config, rng = tb_params(), tb_pe_config(), np.random.default_rng(seed)
    return p, config, rng, random_gemms(rng, config, p["ROWS"], p["COLS"], count)


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


async def check_stream(dut, stream: ArrayInputs, x_when_idle: bool = False) -> None:
    p = tb_params()
    golden = fp4_array(stream, tb_pe_config(), output_name(p))
    expected = sorted(
        zip(golden.cycle.tolist(), golden.row.tolist(), golden.col.tolist(), golden.bits.tolist(), strict=True)
    )
    got = sorted(await play(dut, stream, p, x_when_idle))
    assert len(got) == len(expected), f"{len(got)} output pulses, model has {len(expected)}"
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"pulse (edge, row, col, bits): RTL {g}, model {e}"
    dut._log.info("%d pulses over %d edges match the model", len(got), stream.cycles)


@cocotb.test()
async def back_to_back_gemms(dut) -> None:
    _, _, _, stream = gemm_stream(11, 40)
    await check_stream(dut, stream)


def with_bubbles(p: dict, config: PEConfig, rng: np.random.Generator, stream: ArrayInputs) -> ArrayInputs:
    """`stream` with idle edges (random junk on the data ports, in_valid low) between its valid ones."""
    idle = rng.random(stream.cycles) < 0.3
    idle[0] = False
    keep = np.flatnonzero(stream.in_valid | stream.rst)
    total = keep.size + int(idle.sum()) + 2 * (p["ROWS"] + p["COLS"])
    bubbly = idle_inputs(total, p["ROWS"], p["COLS"])
    bubbly.a_in[:] = rng.integers(0, 1 << config.fmt_a.nbits, bubbly.a_in.shape)
    bubbly.w_in[:] = rng.integers(0, 1 << config.fmt_w.nbits, bubbly.w_in.shape)
    bubbly.s_in[:] = rng.integers(0, config.max_shift + 1, total)
    bubbly.in_last[:] = rng.integers(0, 2, total)  # ignored without in_valid
    gaps = rng.integers(0, 3, keep.size) * (rng.random(keep.size) < 0.3)
    at = np.cumsum(gaps + 1) - 1
    at = at[at < total - p["ROWS"] - p["COLS"]]
    for field in ArrayInputs._fields:
        getattr(bubbly, field)[at] = getattr(stream, field)[keep[: at.size]]
    return bubbly


@cocotb.test()
async def bubbles_with_junk(dut) -> None:
    p, config, rng, stream = gemm_stream(12, 25)
    await check_stream(dut, with_bubbles(p, config, rng, stream))


@cocotb.test()
async def x_on_data_while_idle(dut) -> None:
    """Bubbles, drains and resets with X on every data port while in_valid is low: no output ever shows X."""
    p, config, rng, stream = gemm_stream(14, 20)
    bubbly = with_bubbles(p, config, rng, stream)
    for t in rng.choice(np.arange(5, bubbly.cycles - 5), 4, replace=False):
        bubbly.rst[t] = 1
    await check_stream(dut, bubbly, x_when_idle=True)


@cocotb.test()
async def resets_mid_stream(dut) -> None:
    _, _, rng, stream = gemm_stream(13, 30)
    for t in rng.choice(np.arange(5, stream.cycles - 5), 6, replace=False):
        stream.rst[t] = 1
    await check_stream(dut, stream)


ARRAY_BUILDS = [
    # (A, W, shift bits, K_MAX, rows, cols, output (ebits, mbits))
    ("E2M1", "E2M1", 2, 65536, 4, 4, (8, 23)),
    ("E3M0", "E1M2", 3, 4096, 3, 2, (8, 23)),
    ("E1M2", "E2M1", 1, 1024, 2, 5, (8, 7)),
    ("E2M1", "E3M0", 2, 300, 1, 3, (5, 10)),
]


@pytest.mark.parametrize("build", ARRAY_BUILDS, ids=lambda b: f"{b[0]}x{b[1]}-{b[4]}x{b[5]}-e{b[6][0]}m{b[6][1]}")
def test_fp4_array(build: tuple) -> None:
    fa, fw, shift_bits, k_max, rows, cols, (out_e, out_m) = build
    a, w = get_format(fa), get_format(fw)
    params = {
        "A_EBITS": a.ebits, "A_MBITS": a.mbits, "A_BIAS": a.bias,
        "W_EBITS": w.ebits, "W_MBITS": w.mbits, "W_BIAS": w.bias,
        "SHIFT_BITS": shift_bits, "K_MAX": k_max, "ROWS": rows, "COLS": cols,
        "OUT_EBITS": out_e, "OUT_MBITS": out_m,
    }  # fmt: skip
    run_testbench("fp4_array", "test_fp4_array", params)
