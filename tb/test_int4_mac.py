"""int4_mac (the cost baseline) against Python integers: a running sum over every INT4 pair."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from runner import run_testbench


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    pairs = [(a, w) for a in range(-8, 8) for w in range(-8, 8)]
    order = np.random.default_rng(6).permutation(len(pairs))
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    dut.rst.value, dut.valid.value = 0, 1
    expected = 0
    for i in order:
        a, w = pairs[i]
        dut.a.value, dut.w.value = a & 0xF, w & 0xF
        await FallingEdge(dut.clk)
        expected += a * w
        assert dut.acc.value.to_signed() == expected, (
            f"after {a} * {w}: RTL {dut.acc.value.to_signed()}, expected {expected}"
        )


def test_int4_mac() -> None:
    run_testbench("int4_mac", "test_int4_mac", {"ACC_BITS": 20}, ["int4_mac.sv"])
