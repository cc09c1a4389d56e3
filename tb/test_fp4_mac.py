"""fp4_mac (the cost-comparison MAC) against its golden twin fp4sim.hw.fp4_mac: running sums over every code pair
and shift, each compared after every edge."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from fp4sim import PEConfig
from fp4sim.hw.fp4_mac import fp4_mac
from fp4sim.rtlsim.runner import run_testbench, tb_pe_config


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    config = tb_pe_config()
    rng = np.random.default_rng(5)
    grid = np.array([(s, a, w) for s in range(config.max_shift + 1) for a in range(16) for w in range(16)], np.uint8)
    s_seq, a_seq, w_seq = grid[rng.permutation(len(grid))].T
    valid = rng.random(len(grid)) < 0.8
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    for i in range(len(grid)):
        a, w, s = int(a_seq[i]), int(w_seq[i]), int(s_seq[i])
        dut.valid.value, dut.a.value, dut.w.value, dut.s.value = int(valid[i]), a, w, s
        await FallingEdge(dut.clk)
        kept = valid[: i + 1]
        expected = fp4_mac(a_seq[: i + 1][kept], w_seq[: i + 1][kept], s_seq[: i + 1][kept], config.operand_params)
        assert dut.acc.value.to_signed() == expected, f"after a={a:#x} w={w:#x} s={s}: RTL {dut.acc.value.to_signed()}"


@pytest.mark.parametrize(("fa", "fw", "shift_bits"), [("E2M1", "E2M1", 2), ("E2M1", "E1M2", 0), ("E3M0", "E2M1", 3)])
def test_fp4_mac(fa: str, fw: str, shift_bits: int) -> None:
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=4096)
    a, w = config.fmt_a, config.fmt_w
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits}
    params |= {"SHIFT_BITS": shift_bits, "ACC_BITS": config.acc_bits}
    run_testbench("fp4_mac", "test_fp4_mac", params)
