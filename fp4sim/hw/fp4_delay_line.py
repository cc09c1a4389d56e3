"""Golden twin of rtl/fp4_delay_line.sv: the array's skew lines (docs/spec.md 3.2)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def fp4_delay_line(stages: np.ndarray, value: int, rst: bool) -> None:
    """One rising edge of a DEPTH = stages.size shift register, in place.

    Stage d takes stage d - 1, stage 0 takes `value`; a synchronous reset
    clears every stage. The line's output is ``stages[-1]``: the value that
    entered DEPTH edges ago (spec 3.2).
    """
    if rst:
        stages[:] = 0
        return
    for d in range(stages.size - 1, 0, -1):
        stages[d] = stages[d - 1]
    stages[0] = value
