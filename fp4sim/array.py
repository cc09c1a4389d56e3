"""Cycle-accurate model of the R x C output-stationary systolic array (docs/spec.md, section 3).

:func:`run_array` steps the array's registers one clock edge at a time from
the port-level input stream and returns every output pulse with the edge at
which it is sampled: the trace the RTL must reproduce. :func:`schedule_gemm`
turns an M x N x K GEMM into that input stream (tiles back to back), and
:func:`array_gemm` runs it and reassembles the result.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from .convert import OutputFormat, output_format, round_to_float_bits
from .formats import Format
from .gemm import check_operands
from .pe import K_MAX_DEFAULT, PEConfig, product_table


class ArrayInputs(NamedTuple):
    """Port values sampled at each rising edge t (row t of every field)."""

    rst: np.ndarray  # (T,) uint8, synchronous reset
    in_valid: np.ndarray  # (T,) uint8
    in_last: np.ndarray  # (T,) uint8, marks the last K step of a tile
    a_in: np.ndarray  # (T, R) uint8 activation codes, a_in[t, r] for row r
    w_in: np.ndarray  # (T, C) uint8 weight codes, w_in[t, c] for column c
    s_in: np.ndarray  # (T,) uint8 shift of the input channel carried this cycle

    @property
    def cycles(self) -> int:
        return self.rst.shape[0]


class ArrayOutputs(NamedTuple):
    """One row per output pulse: out_valid[row, col] is sampled high at rising edge `cycle`."""

    cycle: np.ndarray  # (E,) int64
    row: np.ndarray  # (E,) int64
    col: np.ndarray  # (E,) int64
    bits: np.ndarray  # (E,) out_data[row, col] as IEEE bits of the output format


class Tile(NamedTuple):
    """One output tile: rows m0.., columns n0.., and the edge its in_last is sampled."""

    m0: int
    n0: int
    last_cycle: int


def idle_inputs(cycles: int, rows: int, cols: int) -> ArrayInputs:
    """`cycles` edges with every port low (bubbles)."""
    return ArrayInputs(
        np.zeros(cycles, np.uint8),
        np.zeros(cycles, np.uint8),
        np.zeros(cycles, np.uint8),
        np.zeros((cycles, rows), np.uint8),
        np.zeros((cycles, cols), np.uint8),
        np.zeros(cycles, np.uint8),
    )


def schedule_gemm(
    a_codes: np.ndarray, w_codes: np.ndarray, shifts: np.ndarray, rows: int, cols: int
) -> tuple[ArrayInputs, list[Tile]]:
    """The input stream for a GEMM (spec 3.4): tiles in row-major order, back to back, then a drain.

    Tile (m0, n0) streams its K steps on consecutive edges; rows and columns
    past M or N carry code 0 (+0). The stream ends with R + C idle edges, enough
    for the last output to leave the array.
    """
    m_size, k_size = a_codes.shape
    n_size = w_codes.shape[1]
    origins = [(m0, n0) for m0 in range(0, m_size, rows) for n0 in range(0, n_size, cols)]
    stream = idle_inputs(len(origins) * k_size + rows + cols, rows, cols)
    tiles = []
    for i, (m0, n0) in enumerate(origins):
        steps = slice(i * k_size, (i + 1) * k_size)
        a_tile = a_codes[m0 : m0 + rows].T  # (K, rows in this tile)
        w_tile = w_codes[:, n0 : n0 + cols]
        stream.a_in[steps, : a_tile.shape[1]] = a_tile
        stream.w_in[steps, : w_tile.shape[1]] = w_tile
        stream.s_in[steps] = shifts
        stream.in_valid[steps] = 1
        stream.in_last[(i + 1) * k_size - 1] = 1
        tiles.append(Tile(m0, n0, (i + 1) * k_size - 1))
    return stream, tiles


def run_array(inputs: ArrayInputs, config: PEConfig, out: str = "fp32") -> ArrayOutputs:
    """Step the array over every edge of `inputs`; R and C come from the port widths."""
    fmt_out = output_format(out)
    rows, cols = inputs.a_in.shape[1], inputs.w_in.shape[1]
    _check_stream(inputs, config)
    capacity = int(np.count_nonzero(inputs.in_valid & inputs.in_last)) * rows * cols
    events = (np.empty(capacity, np.int64), np.empty(capacity, np.int64), np.empty(capacity, np.int64))
    bits = np.empty(capacity, np.int64)
    count = _step_cycles(
        inputs.rst,
        inputs.in_valid,
        inputs.in_last,
        np.ascontiguousarray(inputs.a_in),
        np.ascontiguousarray(inputs.w_in),
        inputs.s_in,
        product_table(config),
        config.lsb_exponent,
        fmt_out.ebits,
        fmt_out.mbits,
        *events,
        bits,
    )
    return ArrayOutputs(
        events[0][:count], events[1][:count], events[2][:count], bits[:count].astype(fmt_out.bits_dtype)
    )


def port_trace(inputs: ArrayInputs, outputs: ArrayOutputs) -> tuple[np.ndarray, np.ndarray]:
    """Every output port on every edge: (out_valid, out_data), each (T + 1, R, C).

    Entry t is what a testbench samples at rising edge t: out_valid pulses
    for one edge, out_data holds the last result and is 0 after reset (spec 3.3).
    """
    rows, cols = inputs.a_in.shape[1], inputs.w_in.shape[1]
    edges = inputs.cycles + 1
    valid = np.zeros((edges, rows, cols), dtype=np.uint8)
    valid[outputs.cycle, outputs.row, outputs.col] = 1
    changes = np.zeros((edges, rows, cols), dtype=outputs.bits.dtype)
    changes[outputs.cycle, outputs.row, outputs.col] = outputs.bits
    cleared = np.zeros((edges, rows, cols), dtype=bool)
    cleared[1:][inputs.rst.astype(bool)] = True  # reset at edge t: zero from edge t + 1
    data = np.zeros_like(changes)
    for t in range(1, edges):
        data[t] = np.where(valid[t], changes[t], np.where(cleared[t], 0, data[t - 1]))
    return valid, data


def array_gemm(
    a_codes: Any,
    w_codes: Any,
    shifts: Any,
    fmt_a: str | Format,
    fmt_w: str | Format,
    *,
    rows: int = 4,
    cols: int = 4,
    out: str = "fp32",
    shift_bits: int | None = None,
    k_max: int = K_MAX_DEFAULT,
) -> np.ndarray:
    """The GEMM computed by stepping the array cycle by cycle; same bits as ``gemm(..., scale=None)``."""
    config = PEConfig.make(fmt_a, fmt_w, shift_bits, k_max)
    a, w, s = check_operands(a_codes, w_codes, shifts, config)
    if a.shape[1] > config.k_max:
        raise ValueError(f"K={a.shape[1]} exceeds the accumulator's K_max={config.k_max}")
    if rows < 1 or cols < 1:
        raise ValueError(f"the array needs rows >= 1 and cols >= 1, got {rows} x {cols}")
    stream, tiles = schedule_gemm(a, w, s, rows, cols)
    outputs = run_array(stream, config, out)
    return collect_tiles(outputs, tiles, a.shape[0], w.shape[1], output_format(out))


def collect_tiles(outputs: ArrayOutputs, tiles: list[Tile], m_size: int, n_size: int, fmt: OutputFormat) -> np.ndarray:
    """Reassemble the (M, N) result: each PE's k-th pulse belongs to the k-th tile (outputs are in order)."""
    rows = int(outputs.row.max(initial=0)) + 1 if outputs.row.size else 1
    cols = int(outputs.col.max(initial=0)) + 1 if outputs.col.size else 1
    result = np.zeros((m_size, n_size), dtype=fmt.bits_dtype)
    seen = np.zeros((rows, cols), dtype=np.int64)
    for r, c, bits in zip(outputs.row, outputs.col, outputs.bits, strict=True):
        tile = tiles[seen[r, c]]
        seen[r, c] += 1
        if tile.m0 + r < m_size and tile.n0 + c < n_size:
            result[tile.m0 + r, tile.n0 + c] = bits
    if not np.all(seen == len(tiles)):
        raise RuntimeError(f"expected {len(tiles)} outputs from every PE, got {seen.min()}..{seen.max()}")
    return result.view(fmt.dtype)


def _check_stream(inputs: ArrayInputs, config: PEConfig) -> None:
    t = inputs.cycles
    if inputs.a_in.ndim != 2 or inputs.w_in.ndim != 2 or inputs.a_in.shape[0] != t or inputs.w_in.shape[0] != t:
        raise ValueError("a_in must be (T, R) and w_in (T, C), with T the length of rst")
    for name in ("rst", "in_valid", "in_last", "s_in"):
        if getattr(inputs, name).shape != (t,):
            raise ValueError(f"{name} must have shape ({t},)")
    for name, values, limit in (
        ("a_in", inputs.a_in, 1 << config.fmt_a.nbits),
        ("w_in", inputs.w_in, 1 << config.fmt_w.nbits),
        ("s_in", inputs.s_in, config.max_shift + 1),
    ):
        if values.dtype != np.uint8 or (values.size and int(values.max()) >= limit):
            raise ValueError(f"{name} must be uint8 below {limit}")


@numba.njit(cache=True)
def _step_cycles(
    rst, in_valid, in_last, a_in, w_in, s_in, products, lsb, out_ebits, out_mbits, ev_cycle, ev_row, ev_col, ev_bits
):
    """Register-transfer simulation of spec 3.2: one iteration per rising edge.

    PEs are visited bottom-right first, so every PE reads its left and upper
    neighbours' registers before they take their new values, as flip-flops do.
    Row r's skew line holds r stages, column c's holds c; stage d of a line
    holds the value that entered d + 1 edges ago.
    """
    n_cycles, rows = a_in.shape
    cols = w_in.shape[1]
    a_line = np.zeros((rows, rows), np.uint8)  # [row, stage]: activation, valid, last
    v_line = np.zeros((rows, rows), np.uint8)
    l_line = np.zeros((rows, rows), np.uint8)
    w_line = np.zeros((cols, cols), np.uint8)  # [column, stage]: weight, shift
    s_line = np.zeros((cols, cols), np.uint8)
    a_reg = np.zeros((rows, cols), np.uint8)
    v_reg = np.zeros((rows, cols), np.uint8)
    l_reg = np.zeros((rows, cols), np.uint8)
    w_reg = np.zeros((rows, cols), np.uint8)
    s_reg = np.zeros((rows, cols), np.uint8)
    acc = np.zeros((rows, cols), np.int64)
    n_events = 0
    for t in range(n_cycles):
        if rst[t]:
            a_line[:], v_line[:], l_line[:], w_line[:], s_line[:] = 0, 0, 0, 0, 0
            a_reg[:], v_reg[:], l_reg[:], w_reg[:], s_reg[:] = 0, 0, 0, 0, 0
            acc[:] = 0
            continue
        for r in range(rows - 1, -1, -1):
            for c in range(cols - 1, -1, -1):
                if c > 0:
                    a, valid, last = a_reg[r, c - 1], v_reg[r, c - 1], l_reg[r, c - 1]
                elif r > 0:
                    a, valid, last = a_line[r, r - 1], v_line[r, r - 1], l_line[r, r - 1]
                else:
                    a, valid, last = a_in[t, 0], in_valid[t], in_last[t]
                if r > 0:
                    w, s = w_reg[r - 1, c], s_reg[r - 1, c]
                elif c > 0:
                    w, s = w_line[c, c - 1], s_line[c, c - 1]
                else:
                    w, s = w_in[t, 0], s_in[t]
                if valid:
                    total = acc[r, c] + products[s, a, w]
                    if last:  # the tile's sum leaves through the converter; the accumulator restarts at 0
                        ev_cycle[n_events], ev_row[n_events], ev_col[n_events] = t + 1, r, c
                        ev_bits[n_events] = round_to_float_bits(total, lsb, out_ebits, out_mbits, False)
                        n_events += 1
                        total = 0
                    acc[r, c] = total
                a_reg[r, c], v_reg[r, c], l_reg[r, c] = a, valid, last
                w_reg[r, c], s_reg[r, c] = w, s
        for r in range(1, rows):
            for d in range(r - 1, 0, -1):
                a_line[r, d], v_line[r, d], l_line[r, d] = a_line[r, d - 1], v_line[r, d - 1], l_line[r, d - 1]
            a_line[r, 0], v_line[r, 0], l_line[r, 0] = a_in[t, r], in_valid[t], in_last[t]
        for c in range(1, cols):
            for d in range(c - 1, 0, -1):
                w_line[c, d], s_line[c, d] = w_line[c, d - 1], s_line[c, d - 1]
            w_line[c, 0], s_line[c, 0] = w_in[t, c], s_in[t]
    return n_events
