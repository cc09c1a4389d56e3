"""fp4_int4_mac (the cost baseline) against its golden twin: a running sum over every INT4 pair, with X on the
operands while valid is low and resets mid-stream."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from fp4sim.hw.fp4_int4_mac import fp4_int4_mac
from fp4sim.rtlsim.runner import run_testbench


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    """Every INT4 pair once in random order; X on the operands while valid is low; synchronous resets mid-stream."""
    rng = np.random.default_rng(6)
    pairs = np.array([(a, w) for a in range(-8, 8) for w in range(-8, 8)])
    a_seq, w_seq = pairs[rng.permutation(len(pairs))].T
    valid = rng.random(len(pairs)) < 0.8
    rst = rng.random(len(pairs)) < 0.03
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    since_reset = 0
    for i in range(len(pairs)):
        a, w = int(a_seq[i]), int(w_seq[i])
        dut.rst.value, dut.valid.value = int(rst[i]), int(valid[i])
        for port, value in ((dut.a, a & 0xF), (dut.w, w & 0xF)):
            port.value = value if valid[i] else LogicArray("X" * len(port))
        await FallingEdge(dut.clk)
        since_reset = i + 1 if rst[i] else since_reset
        kept = valid[since_reset : i + 1]
        expected = fp4_int4_mac(a_seq[since_reset : i + 1][kept], w_seq[since_reset : i + 1][kept])
        got = dut.acc.value
        assert got.is_resolvable, f"X/Z on acc after edge {i}"
        assert got.to_signed() == expected, f"after {a} * {w}: RTL {got.to_signed()}, expected {expected}"


def test_fp4_int4_mac() -> None:
    run_testbench("fp4_int4_mac", "test_fp4_int4_mac", {"ACC_BITS": 20})
