"""Golden twin of rtl/fp4_pe.sv: one PE's accumulator and output on a rising edge (docs/spec.md 3.2).

The pass-through registers (activation right, weight and shift down) are
plain one-edge delays; :mod:`fp4sim.hw.fp4_array` wires them.
"""

from __future__ import annotations

import numba
import numpy as np

from .fp4_round_to_float import fp4_round_to_float


@numba.njit(cache=True, inline="always")
def fp4_pe(
    acc: int,
    a: int,
    w: int,
    s: int,
    valid: bool,
    last: bool,
    products: np.ndarray,
    lsb_exponent: int,
    out_ebits: int,
    out_mbits: int,
) -> tuple[int, bool, int]:
    """(accumulator after the edge, out_valid, out_data bits) for one PE.

    A valid product is added exactly (Kulisch, spec 2.3); on a tile's last
    product the sum leaves through the converter (spec 2.4) and the
    accumulator restarts at 0. `products` is fp4_pe_product.product_table.
    """
    if not valid:
        return acc, False, np.int64(0)
    total = acc + products[s, a, w]
    if last:
        return np.int64(0), True, fp4_round_to_float(total, lsb_exponent, out_ebits, out_mbits, False)
    return total, False, np.int64(0)
