"""Golden twin of rtl/fp4_mac.sv: products summed in a Kulisch accumulator (docs/spec.md 2.2, 2.3)."""

from __future__ import annotations

import numba
import numpy as np

from .fp4_pe_product import fp4_pe_product
from .fp4_pkg import OperandParams


@numba.njit(cache=True)
def fp4_mac(a: np.ndarray, w: np.ndarray, s: np.ndarray, p: OperandParams) -> int:
    """The exact integer sum of products a[k] * w[k] * 2^-s[k] in LSB units (any order gives the same)."""
    acc = np.int64(0)
    for k in range(a.size):
        acc += fp4_pe_product(a[k], w[k], s[k], p)
    return acc
