"""An exact sum of int64 terms at any binary offsets, rounded once to FP32 (docs/spec.md 7.5).

The block GEMM's exact mode needs it when the terms of one output span more
bits than an int64 holds: the sum is kept in 24-bit bins, as wide as the
scale range requires, and rounded to nearest-even at the end.
"""

from __future__ import annotations

import numba
import numpy as np

from ..hw.fp4_round_to_float import fp4_round_to_float

SUPERACCUMULATOR_BIN = 24  # bits per bin of the exact sum below: a term shifted into a bin stays below 2^43
SUPERACCUMULATOR_ADDS = 1 << 19  # terms per output that can never overflow one int64 bin (each < 2^43)


@numba.njit(cache=True)
def superaccumulator_add(bins: np.ndarray, value: int, offset: int) -> None:
    """Add ``value * 2**offset`` (offset >= 0 above the bins' base) to a wide exact accumulator."""
    index = offset // SUPERACCUMULATOR_BIN
    bins[index] += value << (offset - index * SUPERACCUMULATOR_BIN)


@numba.njit(cache=True)
def superaccumulator_to_fp32(bins: np.ndarray, base: int) -> int:
    """FP32 bits of ``sum(bins[j] * 2**(base + 24 j))`` rounded once to nearest-even (+0 for zero).

    Carries are propagated so every bin holds 24 bits; the top 48 bits plus a
    sticky bit for everything below decide the rounding, which is then exact.
    """
    width = SUPERACCUMULATOR_BIN
    negative = _normalise(bins) < 0
    if negative:
        for j in range(bins.size):
            bins[j] = -bins[j]
        _normalise(bins)
    top = bins.size - 1
    while top >= 0 and bins[top] == 0:
        top -= 1
    if top < 0:
        return 0
    high = bins[top]
    sticky = 0
    lsb = base + top * width
    if top >= 1:
        high = (high << width) | bins[top - 1]
        lsb -= width
        for j in range(top - 1):
            if bins[j]:
                sticky = 1
    value = (high << 1) | sticky  # the sticky bit sits below every bit that can matter
    return fp4_round_to_float(-value if negative else value, lsb - 1, 8, 23, False)


@numba.njit(cache=True, inline="always")
def _normalise(bins: np.ndarray) -> int:
    """Propagate carries so each bin lies in [0, 2^24); returns the carry out of the top (its sign is the sum's)."""
    carry = np.int64(0)
    for j in range(bins.size):
        total = bins[j] + carry
        carry = total >> SUPERACCUMULATOR_BIN
        bins[j] = total - (carry << SUPERACCUMULATOR_BIN)
    return carry
