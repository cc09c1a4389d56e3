"""Golden twin of rtl/fp4_array.sv: the cycle-accurate R x C output-stationary systolic array (docs/spec.md 3).

:func:`fp4_array` steps the array's registers one clock edge at a time from
the port-level input stream and returns every output pulse with the edge at
which it is sampled: the trace the RTL must reproduce. :func:`schedule_gemm`
turns an M x N x K GEMM into that input stream (tiles back to back),
:func:`stitch_streams` joins streams the way a testbench plays them, and
:func:`array_gemm` runs a GEMM and reassembles the result.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np

from .._interop import require_uint8, to_numpy
from ..formats import Format
from .fp4_delay_line import fp4_delay_line
from .fp4_pe import fp4_pe
from .fp4_pe_product import product_table
from .fp4_pkg import K_MAX_DEFAULT, PEConfig
from .fp4_round_to_float import OutputFormat, output_format

ARRAY_ROWS = ARRAY_COLS = 4  # the default array: R x C PEs


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


def concat_streams(streams: list[ArrayInputs]) -> ArrayInputs:
    """The streams one after another, edge for edge."""
    return ArrayInputs(*(np.concatenate(parts) for parts in zip(*streams, strict=True)))


def stitch_streams(streams: list[ArrayInputs], rows: int, cols: int) -> ArrayInputs:
    """A power-up reset edge, each scheduled GEMM without its drain (the next starts at once), then a drain.

    `streams` come from :func:`schedule_gemm`; the final R + C + 1 idle edges
    let the last output leave the array and be sampled.
    """
    reset = idle_inputs(1, rows, cols)
    reset.rst[0] = 1
    bodies = [ArrayInputs(*(field[: -(rows + cols)] for field in stream)) for stream in streams]
    return concat_streams([reset, *bodies, idle_inputs(rows + cols + 1, rows, cols)])


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


def fp4_array(inputs: ArrayInputs, config: PEConfig, out: str = "fp32") -> ArrayOutputs:
    """Step the array over every edge of `inputs`; R and C come from the port widths (spec 3.2, 3.3)."""
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
    rows: int = ARRAY_ROWS,
    cols: int = ARRAY_COLS,
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
    outputs = fp4_array(stream, config, out)
    return collect_tiles(outputs, tiles, a.shape[0], w.shape[1], output_format(out))


def check_operands(a_codes: Any, w_codes: Any, shifts: Any, config: PEConfig) -> tuple[np.ndarray, ...]:
    """Validated C-contiguous (M, K) and (K, N) uint8 codes and (K,) uint8 shifts."""
    a = to_numpy(a_codes, "a_codes")
    w = to_numpy(w_codes, "w_codes")
    require_uint8(a, "a_codes")
    require_uint8(w, "w_codes")
    if a.ndim != 2 or w.ndim != 2:
        raise ValueError(f"a_codes must be (M, K) and w_codes (K, N); got shapes {a.shape} and {w.shape}")
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"inner dimensions differ: a_codes is {a.shape}, w_codes is {w.shape}")
    if a.shape[1] == 0:
        raise ValueError("K must be at least 1")
    for name, codes, fmt in (("a_codes", a, config.fmt_a), ("w_codes", w, config.fmt_w)):
        if codes.size and int(codes.max()) >= 1 << fmt.nbits:
            raise ValueError(
                f"{name} holds code {int(codes.max())}, outside the {fmt.nbits}-bit format {fmt.name} "
                f"(valid 0..{(1 << fmt.nbits) - 1}); packed data must go through fp4sim.unpack_fp4 first"
            )
    s = _check_shifts(shifts, a.shape[1], config)
    return np.ascontiguousarray(a), np.ascontiguousarray(w), s


def _check_shifts(shifts: Any, k: int, config: PEConfig) -> np.ndarray:
    if shifts is None:
        return np.zeros(k, dtype=np.uint8)
    s = to_numpy(shifts, "shifts")
    if s.dtype.kind not in "iu":
        raise TypeError(f"shifts must hold integers, got {s.dtype}")
    if s.shape != (k,):
        raise ValueError(f"shifts must have shape ({k},), one per input channel; got {s.shape}")
    if s.size and (int(s.min()) < 0 or int(s.max()) > config.max_shift):
        raise ValueError(
            f"shifts must lie in 0..{config.max_shift} ({config.shift_bits}-bit port); "
            f"got {int(s.min())}..{int(s.max())}. Pass shift_bits= for a wider port."
        )
    return np.ascontiguousarray(s, dtype=np.uint8)


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

    PEs (fp4_pe) are visited bottom-right first, so every PE reads its left
    and upper neighbours' registers before they take their new values, as
    flip-flops do. Row r's skew line (fp4_delay_line) holds r stages, column
    c's holds c; a line's output is its last stage.
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
                acc[r, c], out_valid, bits = fp4_pe(
                    acc[r, c], a, w, s, valid != 0, last != 0, products, lsb, out_ebits, out_mbits
                )
                if out_valid:
                    ev_cycle[n_events], ev_row[n_events], ev_col[n_events] = t + 1, r, c
                    ev_bits[n_events] = bits
                    n_events += 1
                a_reg[r, c], v_reg[r, c], l_reg[r, c] = a, valid, last
                w_reg[r, c], s_reg[r, c] = w, s
        for r in range(1, rows):
            fp4_delay_line(a_line[r, :r], a_in[t, r], False)
            fp4_delay_line(v_line[r, :r], in_valid[t], False)
            fp4_delay_line(l_line[r, :r], in_last[t], False)
        for c in range(1, cols):
            fp4_delay_line(w_line[c, :c], w_in[t, c], False)
            fp4_delay_line(s_line[c, :c], s_in[t], False)
    return n_events
