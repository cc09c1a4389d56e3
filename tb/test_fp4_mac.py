"""fp4_mac (the cost-comparison MAC) against its golden twin fp4sim.hw.fp4_mac: running sums over every code pair
and shift, each compared after every edge, with X on the operands while valid is low and resets mid-stream."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from fp4sim import PEConfig
from fp4sim.hw.fp4_mac import fp4_mac
from fp4sim.rtlsim.runner import run_testbench, tb_pe_config


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    """Every (a, w, s) once in random order; X on the operands while valid is low; synchronous resets mid-stream."""
    config = tb_pe_config()
    rng = np.random.default_rng(5)
    grid = np.array([(s, a, w) for s in range(config.max_shift + 1) for a in range(16) for w in range(16)], np.uint8)
    s_seq, a_seq, w_seq = grid[rng.permutation(len(grid))].T
    valid = rng.random(len(grid)) < 0.8
    rst = rng.random(len(grid)) < 0.02
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    since_reset = 0
    for i in range(len(grid)):
        a, w, s = int(a_seq[i]), int(w_seq[i]), int(s_seq[i])
        dut.rst.value, dut.valid.value = int(rst[i]), int(valid[i])
        for port, value in ((dut.a, a), (dut.w, w), (dut.s, s)):
            port.value = value if valid[i] else LogicArray("X" * len(port))
        await FallingEdge(dut.clk)
        since_reset = i + 1 if rst[i] else since_reset
        kept = valid[since_reset : i + 1]
        span = slice(since_reset, i + 1)
        expected = fp4_mac(a_seq[span][kept], w_seq[span][kept], s_seq[span][kept], config.operand_params)
        got = dut.acc.value
        assert got.is_resolvable, f"X/Z on acc after edge {i}"
        assert got.to_signed() == expected, f"after a={a:#x} w={w:#x} s={s}: RTL {got.to_signed()}, model {expected}"


@pytest.mark.parametrize(("fa", "fw", "shift_bits"), [("E2M1", "E2M1", 2), ("E2M1", "E1M2", 0), ("E3M0", "E2M1", 3)])
def test_fp4_mac(fa: str, fw: str, shift_bits: int) -> None:
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=4096)
    a, w = config.fmt_a, config.fmt_w
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits}
    params |= {"SHIFT_BITS": shift_bits, "ACC_BITS": config.acc_bits}
    run_testbench("fp4_mac", "test_fp4_mac", params)
