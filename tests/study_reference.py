"""The element-wise aligned_truncate loop the library used before its exact-safe fast paths (docs/spec.md 2.6, 4.3).

Kept unchanged as the reference the fast paths are tested against: every
output, every group, every product through `aligned_sum`.
"""

from __future__ import annotations

import numba
import numpy as np

from fp4sim.gemm.study import NO_EXPONENT, aligned_sum


@numba.njit(cache=True, parallel=True)
def aligned_truncate_gemm(
    products: np.ndarray,
    shifts: np.ndarray,
    a_codes: np.ndarray,
    w_codes: np.ndarray,
    a_exponent: np.ndarray,
    w_exponent: np.ndarray,
    lsb_exponent: int,
    frac_bits: int,
    group: int,
) -> np.ndarray:
    """FP32 bits of every output under aligned_truncate (see :func:`aligned_sum`)."""
    m_size, k_size = a_codes.shape
    n_size = w_codes.shape[1]
    result = np.zeros((m_size, n_size), dtype=np.uint32)
    term = np.empty((m_size, group), dtype=np.int64)
    exponent = np.empty((m_size, group), dtype=np.int64)
    lsb = np.full(group, lsb_exponent, dtype=np.int64)  # every product shares the accumulator's LSB
    for m in numba.prange(m_size):
        for n in range(n_size):
            c_bits = np.int64(0)
            for start in range(0, k_size, group):
                stop = min(start + group, k_size)
                for i in range(stop - start):
                    k = start + i
                    a, w, s = a_codes[m, k], w_codes[k, n], shifts[k]
                    term[m, i] = products[s, a, w]
                    exponent[m, i] = a_exponent[a] + w_exponent[w] - s if term[m, i] else NO_EXPONENT
                count = stop - start
                c_bits = aligned_sum(c_bits, term[m, :count], lsb[:count], exponent[m, :count], frac_bits, NO_EXPONENT)
            result[m, n] = c_bits
    return result
