"""fp4_block_array against the cycle-accurate golden model fp4sim.hw.fp4_block_array (docs/spec.md 8): every output
pulse (edge, row, column, bits) must match. Streams hold random MXFP4 / NVFP4 GEMMs back to back with ragged K and
extreme scale codes, bubbles with junk on the data ports, X on them while idle (Icarus), and resets mid-stream;
one build per accumulator mode and format."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from block_streams import random_block_gemms, with_block_bubbles, with_block_resets

from fp4sim.hw.fp4_block_array import BlockArrayInputs, fp4_block_array
from fp4sim.rtlsim.block_array_driver import play_block
from fp4sim.rtlsim.mac_driver import four_state
from fp4sim.rtlsim.runner import run_testbench, tb_block_config, tb_params


async def check_stream(dut, stream: BlockArrayInputs, x_when_idle: bool = False) -> None:
    golden = fp4_block_array(stream, tb_block_config())
    expected = sorted(zip(*(x.tolist() for x in golden), strict=True))
    got = sorted(await play_block(dut, stream, x_when_idle))
    assert len(got) == len(expected), f"{len(got)} output pulses, model has {len(expected)}"
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"pulse (edge, row, col, bits): RTL {g}, model {e}"
    dut._log.info("%d pulses over %d edges match the model", len(got), stream.cycles)


def gemms(seed: int, count: int) -> tuple[np.random.Generator, BlockArrayInputs]:
    p, rng = tb_params(), np.random.default_rng(seed)
    return rng, random_block_gemms(rng, tb_block_config(), p["ROWS"], p["COLS"], count)


@cocotb.test()
async def back_to_back_gemms(dut) -> None:
    _, stream = gemms(51, 8)
    await check_stream(dut, stream)


@cocotb.test()
async def bubbles_resets_and_x_while_idle(dut) -> None:
    rng, stream = gemms(52, 8)
    await check_stream(dut, with_block_resets(rng, with_block_bubbles(rng, stream), 4), x_when_idle=four_state())


ARRAY_BUILDS = [  # (block format, accumulator, N, F, rows, cols)
    (0, 0, 35, 4, 3, 2),  # MXFP4 exact: the 533-bit accumulator
    (1, 0, 35, 4, 2, 3),  # NVFP4 exact
    (1, 1, 35, 4, 3, 2),  # NVFP4 aligned_truncate:35 (Blackwell)
    (0, 1, 35, 4, 2, 2),  # MXFP4 aligned_truncate:35
    (1, 1, 13, 1, 1, 2),  # aligned_truncate:13:16
]


def build_id(build: tuple) -> str:
    block_format, acc_mode, frac_bits, fused, rows, cols = build
    mode = f"aligned{frac_bits}x{fused}" if acc_mode else "exact"
    return f"{('mxfp4', 'nvfp4')[block_format]}-{mode}-{rows}x{cols}"


@pytest.mark.parametrize("build", ARRAY_BUILDS, ids=build_id)
def test_fp4_block_array(build: tuple, simulator: str) -> None:
    block_format, acc_mode, frac_bits, fused, rows, cols = build
    params = {"BLOCK_FORMAT": block_format, "ACC_MODE": acc_mode, "FRAC_BITS": frac_bits, "FUSED_GROUPS": fused,
              "K_MAX": 65536, "ROWS": rows, "COLS": cols}  # fmt: skip
    run_testbench("fp4_block_array", "test_fp4_block_array", params, simulator=simulator)
