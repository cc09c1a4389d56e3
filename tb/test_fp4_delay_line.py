"""fp4_delay_line against its golden twin: random words with random synchronous resets, output checked every edge."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from fp4sim.hw.fp4_delay_line import fp4_delay_line
from fp4sim.rtlsim.runner import run_testbench, tb_params


@cocotb.test()
async def random_words_and_resets(dut) -> None:
    p = tb_params()
    rng = np.random.default_rng(7)
    stages = np.zeros(p["DEPTH"], dtype=np.int64)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for t in range(600):
        rst = bool(t == 0 or rng.random() < 0.03)
        value = int(rng.integers(0, 1 << p["WIDTH"]))
        dut.rst.value = int(rst)
        getattr(dut, "in").value = value  # `in` is a Python keyword
        await FallingEdge(dut.clk)
        fp4_delay_line(stages, value, rst)
        got = dut.out.value
        assert got.is_resolvable, f"X/Z on out at edge {t}"
        assert int(got) == stages[-1], f"edge {t}: RTL {int(got)}, model {int(stages[-1])}"


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_fp4_delay_line(depth: int, simulator: str) -> None:
    run_testbench("fp4_delay_line", "test_fp4_delay_line", {"WIDTH": 5, "DEPTH": depth}, simulator=simulator)
