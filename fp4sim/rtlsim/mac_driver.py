"""Driving a multiply-accumulate unit from cocotb (fp4_mac, fp4_int4_mac): ports clk, rst, valid, the operands, acc.

Imported inside a running testbench, where cocotb is loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray


def four_state() -> bool:
    """Whether the running simulator has X (Icarus). Verilator is two-state: X driven on a port reads as 0, so a
    bench that parks X on data while valid is low would not see the RTL use that data; it drives junk there."""
    return "verilator" not in cocotb.SIM_NAME.lower()


async def play_running_sum(
    dut, operands: dict[str, np.ndarray], valid: np.ndarray, rst: np.ndarray, model: Callable[[np.ndarray], int]
) -> None:
    """One edge per entry: rst[i], valid[i] and operands[port][i] on the ports; while valid is low, X on the
    operands under a four-state simulator, the entry's operands as junk under a two-state one. After every edge
    acc must be resolvable and equal model(picked): the golden twin's sum over `picked`, the indices of the valid
    entries since the last reset."""
    junk = not four_state()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value, dut.valid.value = 1, 0
    await FallingEdge(dut.clk)
    since_reset = 0
    for i in range(valid.size):
        dut.rst.value, dut.valid.value = int(rst[i]), int(valid[i])
        for name, values in operands.items():
            port = getattr(dut, name)
            port.value = int(values[i]) if valid[i] or junk else LogicArray("X" * len(port))
        await FallingEdge(dut.clk)
        since_reset = i + 1 if rst[i] else since_reset
        picked = since_reset + np.flatnonzero(valid[since_reset : i + 1])
        expected, got = model(picked), dut.acc.value
        assert got.is_resolvable, f"X/Z on acc after edge {i}"
        drove = {name: int(values[i]) for name, values in operands.items()}
        assert got.to_signed() == expected, f"edge {i}, {drove}: RTL {got.to_signed()}, model {expected}"
