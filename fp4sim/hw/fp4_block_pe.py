"""Golden twin of rtl/fp4_block_pe.sv: one block-scaled PE's accumulator on a rising edge (docs/spec.md 8.4-8.6).

The pass-through registers (group and scale right, group and scale down) are
plain one-edge delays; :mod:`fp4sim.hw.fp4_block_array` wires them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fp4_block_fused_add import fp4_block_fused_add
from .fp4_block_term import Term
from .fp4_pkg import BlockConfig


@dataclass
class BlockPEState:
    """The PE's accumulator registers; all zero after reset (spec 8.7).

    acc: the exact accumulator (units of 2^TERM_LSB) or, when aligned, c's FP32 bits.
    buffer: the (V, E) terms of the current fused run not yet added (aligned only).
    nan: a NaN scale has been seen in this tile. done: the tile finished on the last edge.
    """

    acc: int = 0
    buffer: list[tuple[int, int]] = field(default_factory=list)
    nan: bool = False
    done: bool = False


def fp4_block_pe(state: BlockPEState, term: Term | None, last: bool, config: BlockConfig) -> None:
    """One rising edge of the PE, in place; `term` is None on a bubble (valid low).

    A finished tile's accumulator and nan stay for the edge after `done` is
    set (the column's drain reads them), then restart at zero (spec 8.6).
    """
    acc, nan = (0, False) if state.done else (state.acc, state.nan)
    state.done = term is not None and last
    if term is None:
        state.acc, state.nan = acc, nan
        return
    state.nan = nan or term.nan
    if config.exact:
        state.acc = acc + (term.value << term.shift)
    elif last or len(state.buffer) == config.fused_groups - 1:
        terms = [*state.buffer, (term.value, term.exponent)]
        state.acc = fp4_block_fused_add(acc, terms, config.frac_bits, config.align_offset)
        state.buffer = []
    else:
        state.acc = acc
        state.buffer.append((term.value, term.exponent))
