"""fp4_mac (the cost-comparison MAC) against fp4sim.pe.product_table: running sums over every code pair and shift."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from runner import run_testbench, tb_pe_config

from fp4sim import PEConfig
from fp4sim.pe import product_table


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    config = tb_pe_config()
    table = product_table(config)
    rng = np.random.default_rng(5)
    stimuli = [(s, a, w) for s in range(config.max_shift + 1) for a in range(16) for w in range(16)]
    order = rng.permutation(len(stimuli))
    valid = rng.random(len(stimuli)) < 0.8
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    expected = 0
    for i in order:
        s, a, w = stimuli[i]
        dut.valid.value, dut.a.value, dut.w.value, dut.s.value = int(valid[i]), a, w, s
        await FallingEdge(dut.clk)
        expected += int(table[s, a, w]) if valid[i] else 0
        assert dut.acc.value.to_signed() == expected, f"after a={a:#x} w={w:#x} s={s}: RTL {dut.acc.value.to_signed()}"


@pytest.mark.parametrize(("fa", "fw", "shift_bits"), [("E2M1", "E2M1", 2), ("E2M1", "E1M2", 0), ("E3M0", "E2M1", 3)])
def test_fp4_mac(fa: str, fw: str, shift_bits: int) -> None:
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=4096)
    a, w = config.fmt_a, config.fmt_w
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits}
    params |= {"SHIFT_BITS": shift_bits, "ACC_BITS": config.acc_bits}
    run_testbench("fp4_mac", "test_fp4_mac", params, ["operand_decode.sv", "pe_product.sv", "fp4_mac.sv"])
