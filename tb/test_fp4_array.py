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
from array_streams import ARRAY_BUILDS, build_config, build_id, random_gemms, with_bubbles, with_resets

from fp4sim import PEConfig
from fp4sim.hw.fp4_array import ArrayInputs, fp4_array
from fp4sim.rtlsim.array_driver import play
from fp4sim.rtlsim.runner import array_parameters, output_name, run_testbench, tb_params, tb_pe_config


def gemm_stream(seed: int, count: int) -> tuple[PEConfig, np.random.Generator, ArrayInputs]:
    """The build's PEConfig, a seeded generator and `count` random GEMMs as one stream."""
    p, config, rng = tb_params(), tb_pe_config(), np.random.default_rng(seed)
    return config, rng, random_gemms(rng, config, p["ROWS"], p["COLS"], count)


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
    _, _, stream = gemm_stream(11, 40)
    await check_stream(dut, stream)


@cocotb.test()
async def bubbles_with_junk(dut) -> None:
    config, rng, stream = gemm_stream(12, 25)
    await check_stream(dut, with_bubbles(config, rng, stream))


@cocotb.test()
async def x_on_data_while_idle(dut) -> None:
    """Bubbles, drains and resets with X on every data port while in_valid is low: no output ever shows X."""
    config, rng, stream = gemm_stream(14, 20)
    await check_stream(dut, with_resets(rng, with_bubbles(config, rng, stream), 4), x_when_idle=True)


@cocotb.test()
async def resets_mid_stream(dut) -> None:
    _, rng, stream = gemm_stream(13, 30)
    await check_stream(dut, with_resets(rng, stream, 6))


@pytest.mark.parametrize("build", ARRAY_BUILDS, ids=build_id)
def test_fp4_array(build: tuple, simulator: str) -> None:
    _, _, _, _, rows, cols, out = build
    params = array_parameters(build_config(build), rows, cols, out)
    run_testbench("fp4_array", "test_fp4_array", params, simulator=simulator)
