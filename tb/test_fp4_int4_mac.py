"""fp4_int4_mac (the cost baseline) against its golden twin: a running sum over every INT4 pair, with X on the
operands while valid is low and resets mid-stream."""

from __future__ import annotations

import cocotb
import numpy as np

from fp4sim.hw.fp4_int4_mac import fp4_int4_mac
from fp4sim.rtlsim.mac_driver import play_running_sum
from fp4sim.rtlsim.runner import run_testbench


@cocotb.test()
async def running_sum_over_every_pair(dut) -> None:
    """Every INT4 pair once in random order; X on the operands while valid is low; synchronous resets mid-stream."""
    rng = np.random.default_rng(6)
    pairs = np.array([(a, w) for a in range(-8, 8) for w in range(-8, 8)])
    a_seq, w_seq = pairs[rng.permutation(len(pairs))].T
    valid, rst = rng.random(len(pairs)) < 0.8, rng.random(len(pairs)) < 0.03
    await play_running_sum(
        dut, {"a": a_seq & 0xF, "w": w_seq & 0xF}, valid, rst, lambda picked: fp4_int4_mac(a_seq[picked], w_seq[picked])
    )


def test_fp4_int4_mac(simulator: str) -> None:
    run_testbench("fp4_int4_mac", "test_fp4_int4_mac", {"ACC_BITS": 20}, simulator=simulator)
