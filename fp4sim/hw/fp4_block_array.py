"""Golden twin of rtl/fp4_block_array.sv: the cycle-accurate R x C block-scaled dot-product array (docs/spec.md 8).

:func:`fp4_block_array` steps the array one clock edge at a time from the
port-level stream and returns every output pulse with the edge at which it
is sampled; :func:`schedule_block_gemm` turns a block GEMM into that stream
(spec 8.8) and :func:`block_array_gemm` runs one and reassembles the result.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..codec.blockscaled import BlockTensor
from .fp4_block_pe import BlockPEState, fp4_block_pe
from .fp4_block_term import fp4_block_term
from .fp4_pkg import BLOCK_GROUP, BlockConfig
from .fp4_round_to_float import fp4_round_to_float

FP32_NAN = 0x7FC00000  # the canonical quiet NaN, what block_gemm's np.nan is in FP32
_KEEP_BITS = 60  # a wide accumulator keeps this many top bits and a sticky bit before rounding


class BlockArrayInputs(NamedTuple):
    """Port values sampled at each rising edge t (row t of every field), spec 8.1."""

    rst: np.ndarray  # (T,) uint8
    in_valid: np.ndarray  # (T,) uint8
    in_last: np.ndarray  # (T,) uint8
    a_in: np.ndarray  # (T, R, 16) uint8 E2M1 codes of row r's group
    a_scale: np.ndarray  # (T, R) uint8 scale codes
    w_in: np.ndarray  # (T, C, 16) uint8
    w_scale: np.ndarray  # (T, C) uint8

    @property
    def cycles(self) -> int:
        return self.rst.shape[0]


class BlockArrayOutputs(NamedTuple):
    """One row per pulse: out_valid[col] sampled high at edge `cycle`, with out_row = row and out_data = bits."""

    cycle: np.ndarray  # (E,) int64
    row: np.ndarray  # (E,) int64
    col: np.ndarray  # (E,) int64
    bits: np.ndarray  # (E,) uint32 FP32 bits


class BlockTile(NamedTuple):
    """One output tile: rows m0.., columns n0.., and the edge its in_last is sampled."""

    m0: int
    n0: int
    last_cycle: int


def idle_block_inputs(cycles: int, rows: int, cols: int) -> BlockArrayInputs:
    """`cycles` edges with every port low (bubbles)."""
    z = np.zeros
    return BlockArrayInputs(
        z(cycles, np.uint8), z(cycles, np.uint8), z(cycles, np.uint8),
        z((cycles, rows, BLOCK_GROUP), np.uint8), z((cycles, rows), np.uint8),
        z((cycles, cols, BLOCK_GROUP), np.uint8), z((cycles, cols), np.uint8),
    )  # fmt: skip


def stitch_block_streams(streams: list[BlockArrayInputs]) -> BlockArrayInputs:
    """A power-up reset edge, each scheduled stream without its drain (the next starts at once), then a drain.

    `streams` come from :func:`schedule_block_gemm`; every one starts with its own bubbles where needed, so the
    joined stream keeps spec 8.1's spacing rule.
    """
    rows, cols = streams[0].a_scale.shape[1], streams[0].w_scale.shape[1]
    drain = rows + cols + 2
    reset = idle_block_inputs(1, rows, cols)
    reset.rst[0] = 1
    bodies = [BlockArrayInputs(*(field[:-drain] for field in stream)) for stream in streams]
    parts = [reset, *bodies, idle_block_inputs(drain, rows, cols)]
    return BlockArrayInputs(*(np.concatenate(fields) for fields in zip(*parts, strict=True)))


def stitch_block_gemms(
    scheduled: list[tuple[BlockArrayInputs, list[BlockTile]]],
) -> tuple[BlockArrayInputs, list[BlockTile]]:
    """:func:`stitch_block_streams` of scheduled GEMMs ((stream, tiles) pairs from :func:`schedule_block_gemm`),
    with every tile's last_cycle moved to its edge in the joined stream; the tiles in stream order (spec 8.8)."""
    streams = [stream for stream, _ in scheduled]
    drain = streams[0].a_scale.shape[1] + streams[0].w_scale.shape[1] + 2
    starts = 1 + np.cumsum([0] + [stream.cycles - drain for stream in streams[:-1]])  # after the reset edge
    tiles = [tile._replace(last_cycle=tile.last_cycle + int(start))
             for start, (_, own) in zip(starts, scheduled, strict=True) for tile in own]  # fmt: skip
    return stitch_block_streams(streams), tiles


def wide_to_fp32(value: int, exponent: int) -> int:
    """FP32 bits of value * 2^exponent for any Python int, nearest-even, overflow to Inf (spec 2.4).

    Bits far below the rounding point are folded into one sticky bit, which
    keeps the rounding exact while the rest fits the 64-bit converter.
    """
    magnitude = abs(value)
    excess = magnitude.bit_length() - _KEEP_BITS
    if excess > 0:
        sticky = int(magnitude & ((1 << excess) - 1) != 0)
        magnitude, exponent = (magnitude >> excess) | sticky, exponent + excess
    return int(fp4_round_to_float(-magnitude if value < 0 else magnitude, exponent, 8, 23, False))


def drain_bits(state: BlockPEState, config: BlockConfig) -> int:
    """The column converter on a finished PE's accumulator: FP32 NaN, the rounded exact sum, or c (spec 8.6)."""
    if state.nan:
        return FP32_NAN
    return wide_to_fp32(state.acc, config.term_lsb) if config.exact else state.acc


def check_spacing(inputs: BlockArrayInputs, rows: int) -> None:
    """ValueError unless edges carrying in_valid and in_last are at least `rows` edges apart (spec 8.1)."""
    lasts = np.flatnonzero(inputs.in_valid & inputs.in_last)
    if lasts.size > 1 and int(np.diff(lasts).min()) < rows:
        t = int(lasts[np.argmin(np.diff(lasts)) + 1])
        raise ValueError(
            f"tiles end at edges less than ROWS = {rows} apart (edge {t}): a column's converter takes one result "
            "per edge; put bubbles before short tiles (schedule_block_gemm does)"
        )


def fp4_block_array(inputs: BlockArrayInputs, config: BlockConfig) -> BlockArrayOutputs:
    """Step the array over every edge of `inputs` (spec 8.6, 8.7); R and C come from the port shapes.

    Raises ValueError for a stream that breaks spec 8.1's spacing rule.
    """
    rows, cols = inputs.a_scale.shape[1], inputs.w_scale.shape[1]
    check_spacing(inputs, rows)
    line = [[None] * r for r in range(rows)]  # row r's skew stages: (a, scale, valid, last)
    column_line = [[None] * c for c in range(cols)]  # column c's skew stages: (w, scale)
    events: list[tuple[int, int, int, int]] = []
    pe = h_reg = v_reg = None
    for t in range(inputs.cycles):
        if t == 0 or inputs.rst[t]:
            pe = [[BlockPEState() for _ in range(cols)] for _ in range(rows)]
            h_reg = [[(np.zeros(BLOCK_GROUP, np.uint8), 0, 0, 0)] * cols for _ in range(rows)]
            v_reg = [[(np.zeros(BLOCK_GROUP, np.uint8), 0)] * cols for _ in range(rows)]
            line = [[h_reg[0][0]] * r for r in range(rows)]
            column_line = [[v_reg[0][0]] * c for c in range(cols)]
            if inputs.rst[t]:
                continue
        row_in = [(inputs.a_in[t, r], int(inputs.a_scale[t, r]), int(inputs.in_valid[t]), int(inputs.in_last[t]))
                  for r in range(rows)]  # fmt: skip
        col_in = [(inputs.w_in[t, c], int(inputs.w_scale[t, c])) for c in range(cols)]
        for c in range(cols):  # the drain reads the done flags before this edge updates them
            finished = [r for r in range(rows) if pe[r][c].done]
            if finished:
                events.append((t + 1, finished[0], c, drain_bits(pe[finished[0]][c], config)))
        new_h = [[None] * cols for _ in range(rows)]
        new_v = [[None] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                a, a_scale, valid, last = h_reg[r][c - 1] if c else (line[r][-1] if r else row_in[0])
                w, w_scale = v_reg[r - 1][c] if r else (column_line[c][-1] if c else col_in[0])
                term = fp4_block_term(a, w, a_scale, w_scale, config.nvfp4) if valid else None
                fp4_block_pe(pe[r][c], term, bool(last), config)
                new_h[r][c], new_v[r][c] = (a, a_scale, valid, last), (w, w_scale)
        h_reg, v_reg = new_h, new_v
        line = [[row_in[r], *line[r][:-1]] for r in range(rows)]
        column_line = [[col_in[c], *column_line[c][:-1]] for c in range(cols)]
    cycle, row, col, bits = (
        (np.array(x, dtype=np.int64) for x in zip(*events, strict=True)) if events else [np.zeros(0, np.int64)] * 4
    )
    return BlockArrayOutputs(cycle, row, col, bits.astype(np.uint32))


def _groups(t: BlockTensor) -> tuple[np.ndarray, np.ndarray]:
    """(rows, groups, 16) element codes zero-padded to whole groups, and (rows, groups) scale codes per group."""
    pad = -t.shape[1] % BLOCK_GROUP
    codes = np.pad(t.codes, ((0, 0), (0, pad))).reshape(t.shape[0], -1, BLOCK_GROUP)
    scales = np.repeat(t.scales, t.fmt.block_size // BLOCK_GROUP, axis=1)[:, : codes.shape[1]]
    return codes, scales


def schedule_block_gemm(
    a: BlockTensor, w: BlockTensor, rows: int, cols: int
) -> tuple[BlockArrayInputs, list[BlockTile]]:
    """The input stream of ``a @ w.T`` (spec 8.8): tiles row-major, bubbles before tiles shorter than R, a drain."""
    a_groups, a_scales = _groups(a)
    w_groups, w_scales = _groups(w)
    k_groups = a_groups.shape[1]
    period = max(k_groups, rows)
    origins = [(m0, n0) for m0 in range(0, a.shape[0], rows) for n0 in range(0, w.shape[0], cols)]
    stream = idle_block_inputs(len(origins) * period + rows + cols + 2, rows, cols)
    tiles = []
    for i, (m0, n0) in enumerate(origins):
        end = (i + 1) * period  # bubbles first: any stream may follow another and keep the spacing rule
        steps = slice(end - k_groups, end)
        a_tile, w_tile = a_groups[m0 : m0 + rows], w_groups[n0 : n0 + cols]
        stream.a_in[steps, : a_tile.shape[0]] = a_tile.transpose(1, 0, 2)
        stream.a_scale[steps, : a_tile.shape[0]] = a_scales[m0 : m0 + rows].T
        stream.w_in[steps, : w_tile.shape[0]] = w_tile.transpose(1, 0, 2)
        stream.w_scale[steps, : w_tile.shape[0]] = w_scales[n0 : n0 + cols].T
        stream.in_valid[steps] = 1
        stream.in_last[end - 1] = 1
        tiles.append(BlockTile(m0, n0, end - 1))
    return stream, tiles


def collect_block_tiles(
    outputs: BlockArrayOutputs, tiles: list[BlockTile], m_size: int, n_size: int, rows: int, cols: int
) -> np.ndarray:
    """The (M, N) float32 result: the j-th pulse of PE (row, col) belongs to tile j (spec 8.8)."""
    result = np.zeros((m_size, n_size), dtype=np.uint32)
    seen: dict[tuple[int, int], int] = {}
    for r, c, bits in zip(outputs.row.tolist(), outputs.col.tolist(), outputs.bits.tolist(), strict=True):
        j = seen.get((r, c), 0)
        seen[r, c] = j + 1
        tile = tiles[j]
        if tile.m0 + r < m_size and tile.n0 + c < n_size:
            result[tile.m0 + r, tile.n0 + c] = bits
    if len(seen) != rows * cols or any(count != len(tiles) for count in seen.values()):
        raise RuntimeError(f"expected {len(tiles)} outputs from every PE, got {sorted(seen.values())}")
    return result.view(np.float32)


def block_array_gemm(a: BlockTensor, w: BlockTensor, config: BlockConfig, rows: int = 4, cols: int = 4) -> np.ndarray:
    """``a @ w.T`` (a (M, K), w (N, K) BlockTensors) computed by stepping the array: FP32, before NVFP4's tensor
    scales; equal to ``block_gemm`` when those are 1 (spec 8.8).

    Raises:
        ValueError: operands of another format than `config`'s, shapes that are not (M, K) and (N, K), or
            K beyond config.k_max in exact mode.
    """
    if a.fmt != w.fmt or a.fmt.name != config.block_format:
        raise ValueError(f"operands are {a.fmt.name} and {w.fmt.name}; the array is built for {config.block_format}")
    if len(a.shape) != 2 or len(w.shape) != 2 or a.shape[1] != w.shape[1] or a.shape[1] == 0:
        raise ValueError(f"a must be (M, K) and w (N, K) with K >= 1; got {a.shape} and {w.shape}")
    if config.exact and a.shape[1] > config.k_max:
        raise ValueError(f"K = {a.shape[1]} exceeds the exact accumulator's K_MAX = {config.k_max}")
    if rows < 1 or cols < 1:
        raise ValueError(f"the array needs rows >= 1 and cols >= 1, got {rows} x {cols}")
    stream, tiles = schedule_block_gemm(a, w, rows, cols)
    outputs = fp4_block_array(stream, config)
    return collect_block_tiles(outputs, tiles, a.shape[0], w.shape[0], rows, cols)
