"""Golden twin of rtl/fp4_pe_product.sv: the exact product of two FP4 codes and a shift (docs/spec.md 2.2)."""

from __future__ import annotations

import numba
import numpy as np

from .fp4_operand_decode import fp4_operand_decode
from .fp4_pkg import OperandParams, PEConfig


@numba.njit(cache=True)
def fp4_pe_product(a: int, w: int, s: int, p: OperandParams) -> int:
    """The exact product a * w * 2^-s in accumulator LSB units (spec 2.2).

    X_a * X_w * 2^(S_max - s): the smallest possible product lands on the
    LSB, the largest on P_max, and nothing is ever rounded.
    """
    return (fp4_operand_decode(a, p.a_ebits, p.a_mbits) * fp4_operand_decode(w, p.w_ebits, p.w_mbits)) << (
        p.max_shift - s
    )


def product_table(config: PEConfig) -> np.ndarray:
    """Every product, indexed [shift, a, w], as int64 LSB units, built from :func:`fp4_pe_product`."""
    return _product_table(config.operand_params, 1 << config.fmt_a.nbits, 1 << config.fmt_w.nbits)


@numba.njit(cache=True)
def _product_table(p: OperandParams, n_a: int, n_w: int) -> np.ndarray:
    table = np.empty((p.max_shift + 1, n_a, n_w), dtype=np.int64)
    for s in range(p.max_shift + 1):
        for a in range(n_a):
            for w in range(n_w):
                table[s, a, w] = fp4_pe_product(a, w, s, p)
    return table
