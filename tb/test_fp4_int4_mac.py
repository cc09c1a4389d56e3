"""fp4_int4_mac (the cost baseline) against its golden twin: a running sum over every INT4 pair."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from fp4sim.hw.fp4_int4_mac import fp4_int4_mac
from fp4sim.rtlsim.runner import run_testbench


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    pairs = np.array([(a, w) for a in range(-8, 8) for w in range(-8, 8)])
    a_seq, w_seq = pairs[np.random.default_rng(6).permutation(len(pairs))].T
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    dut.rst.value, dut.valid.value = 0, 1
    for i in range(len(pairs)):
        a, w = int(a_seq[i]), int(w_seq[i])
        dut.a.value, dut.w.value = a & 0xF, w & 0xF
        await FallingEdge(dut.clk)
        expected = fp4_int4_mac(a_seq[: i + 1], w_seq[: i + 1])
        assert dut.acc.value.to_signed() == expected, (
            f"after {a} * {w}: RTL {dut.acc.value.to_signed()}, expected {expected}"
        )


def test_fp4_int4_mac() -> None:
    run_testbench("fp4_int4_mac", "test_fp4_int4_mac", {"ACC_BITS": 20})
