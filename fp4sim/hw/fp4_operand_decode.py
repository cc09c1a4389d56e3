"""Golden twin of rtl/fp4_operand_decode.sv: an FP4 code as a signed integer (docs/spec.md 2.1)."""

from __future__ import annotations

import numba
import numpy as np

from ..formats import Format


@numba.njit(cache=True, inline="always")
def fp4_operand_decode(code: int, ebits: int, mbits: int) -> int:
    """A code as the signed integer X = +-significand * 2^(E-1), its value in units of 2^(1-bias-m) (spec 2.1).

    The significand has the implicit 1 for normals (exponent field E >= 1);
    a subnormal (field 0) has none and takes E = 1, the lowest binade's exponent.
    """
    negative = (code >> (ebits + mbits)) & 1
    field = (code >> mbits) & ((1 << ebits) - 1)
    significand = np.int64(code & ((1 << mbits) - 1))
    if field:
        significand |= 1 << mbits
    magnitude = significand << (max(field, 1) - 1)
    return -magnitude if negative else magnitude


def operand_table(fmt: Format) -> np.ndarray:
    """X(code) for every code of `fmt` (spec 2.1), int64, indexed by code."""
    return np.array([fp4_operand_decode(c, fmt.ebits, fmt.mbits) for c in range(1 << fmt.nbits)], dtype=np.int64)
