"""Driving fp4_block_array from cocotb: one BlockArrayInputs edge per clock, every out_valid pulse recorded.

Imported inside a running testbench (tb/test_fp4_block_array.py), where cocotb is loaded.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from ..hw.fp4_block_array import BlockArrayInputs


def pack_lanes(values: np.ndarray, width: int) -> int:
    """Lane i of the flattened `values` at bits [i*width +: width] of one bus."""
    return sum(int(v) << (i * width) for i, v in enumerate(np.asarray(values).reshape(-1)))


async def play_block(dut, stream: BlockArrayInputs, x_when_idle: bool = False) -> list[tuple[int, int, int, int]]:
    """Drive one edge per clock; return every (edge, row, col, bits) pulse sampled (spec 8.1, 8.7), checking for X.

    With `x_when_idle`, the data ports (in_last, a_in, a_scale, w_in, w_scale) are X on edges where in_valid is low.
    """
    rows, cols = stream.a_scale.shape[1], stream.w_scale.shape[1]
    row_bits = max(1, (rows - 1).bit_length())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    pulses = []
    for t in range(stream.cycles + 1):
        await FallingEdge(dut.clk)  # registers updated at edge t - 1: what edge t samples
        if t > 0:
            valid, row, data = dut.out_valid.value, dut.out_row.value, dut.out_data.value
            assert valid.is_resolvable and row.is_resolvable and data.is_resolvable, f"X/Z on the outputs at edge {t}"
            for c in range(cols):
                if int(valid) >> c & 1:
                    r = int(row) >> (c * row_bits) & ((1 << row_bits) - 1)
                    pulses.append((t, r, c, int(data) >> (32 * c) & 0xFFFFFFFF))
        if t < stream.cycles:
            dut.rst.value, dut.in_valid.value = int(stream.rst[t]), int(stream.in_valid[t])
            ports = {
                dut.in_last: int(stream.in_last[t]),
                dut.a_in: pack_lanes(stream.a_in[t], 4), dut.a_scale: pack_lanes(stream.a_scale[t], 8),
                dut.w_in: pack_lanes(stream.w_in[t], 4), dut.w_scale: pack_lanes(stream.w_scale[t], 8),
            }  # fmt: skip
            idle = x_when_idle and not stream.in_valid[t]
            for port, value in ports.items():
                port.value = LogicArray("X" * len(port)) if idle else value
    return pulses
