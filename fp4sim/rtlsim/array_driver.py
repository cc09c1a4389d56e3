"""Driving fp4_array from cocotb: one ArrayInputs edge per clock, every out_valid pulse recorded with its edge.

Imported inside a running testbench (tb/test_fp4_array.py, tb/test_cosim_tiles.py), where cocotb is loaded.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from ..hw.fp4_array import ArrayInputs


def pack(values: np.ndarray, width: int) -> int:
    """Lane i of `values` at bits [i*width +: width] of one flat bus."""
    return sum(int(v) << (i * width) for i, v in enumerate(values))


async def play(dut, stream: ArrayInputs, p: dict, x_when_idle: bool = False) -> list[tuple[int, int, int, int]]:
    """Drive one edge per clock; return every (edge, row, col, bits) pulse sampled, checking for X.

    With `x_when_idle`, every data port (in_last, a_in, w_in, s_in) is X on edges where in_valid is low:
    the outputs must stay free of X all the same.
    """
    rows, cols = p["ROWS"], p["COLS"]
    out_width = 1 + p["OUT_EBITS"] + p["OUT_MBITS"]
    a_width = 1 + p["A_EBITS"] + p["A_MBITS"]
    w_width = 1 + p["W_EBITS"] + p["W_MBITS"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    pulses = []
    for t in range(stream.cycles + 1):
        await FallingEdge(dut.clk)  # registers updated at edge t - 1: what edge t samples
        if t > 0:
            valid, data = dut.out_valid.value, dut.out_data.value
            assert valid.is_resolvable and data.is_resolvable, f"X/Z on the outputs at edge {t}"
            valid_bits, data_bits = int(valid), int(data)
            for pe in range(rows * cols):
                if valid_bits >> pe & 1:
                    bits = data_bits >> (pe * out_width) & ((1 << out_width) - 1)
                    pulses.append((t, pe // cols, pe % cols, bits))
        if t < stream.cycles:
            dut.rst.value = int(stream.rst[t])
            dut.in_valid.value = int(stream.in_valid[t])
            if x_when_idle and not stream.in_valid[t]:
                for port in (dut.in_last, dut.a_in, dut.w_in, dut.s_in):
                    port.value = LogicArray("X" * len(port))
                continue
            dut.in_last.value = int(stream.in_last[t])
            dut.a_in.value = pack(stream.a_in[t], a_width)
            dut.w_in.value = pack(stream.w_in[t], w_width)
            dut.s_in.value = int(stream.s_in[t])
    return pulses
