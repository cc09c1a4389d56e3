"""fp4_mac (the cost-comparison MAC) against its golden twin fp4sim.hw.fp4_mac: running sums over every code pair
and shift, each compared after every edge, with X on the operands while valid is low and resets mid-stream."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest

from fp4sim import PEConfig
from fp4sim.hw.fp4_mac import fp4_mac
from fp4sim.rtlsim.mac_driver import play_running_sum
from fp4sim.rtlsim.runner import run_testbench, tb_pe_config


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    """Every (a, w, s) once in random order; X on the operands while valid is low; synchronous resets mid-stream."""
    config = tb_pe_config()
    rng = np.random.default_rng(5)
    grid = np.array([(s, a, w) for s in range(config.max_shift + 1) for a in range(16) for w in range(16)], np.uint8)
    s_seq, a_seq, w_seq = grid[rng.permutation(len(grid))].T
    valid, rst = rng.random(len(grid)) < 0.8, rng.random(len(grid)) < 0.02
    await play_running_sum(
        dut,
        {"a": a_seq, "w": w_seq, "s": s_seq},
        valid,
        rst,
        lambda picked: fp4_mac(a_seq[picked], w_seq[picked], s_seq[picked], config.operand_params),
    )


@pytest.mark.parametrize(("fa", "fw", "shift_bits"), [("E2M1", "E2M1", 2), ("E2M1", "E1M2", 0), ("E3M0", "E2M1", 3)])
def test_fp4_mac(fa: str, fw: str, shift_bits: int, simulator: str) -> None:
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=4096)
    a, w = config.fmt_a, config.fmt_w
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits}
    params |= {"SHIFT_BITS": shift_bits, "ACC_BITS": config.acc_bits}
    run_testbench("fp4_mac", "test_fp4_mac", params, simulator=simulator)
