"""The block-scaled aligned_truncate path the library used before its fused-sum fast path (docs/spec.md 7.5).

Kept unchanged as the reference the fast path is tested against: exact
16-element group sums from float32 BLAS, then every group of every output
scaled and aligned through `aligned_sum`.
"""

from __future__ import annotations

import numba
import numpy as np

from fp4sim.codec.blockscaled import BlockTensor
from fp4sim.gemm.block import (
    _CHUNK_ELEMENTS,
    BLOCK_FUSED_DEFAULT,
    GROUP,
    ZERO_EXPONENT,
    _element_integers,
    _group_sums,
    _scaled_group_sum,
    scale_parts,
)
from fp4sim.gemm.study import Accumulation, aligned_sum


def aligned_group_gemm(a: BlockTensor, w: BlockTensor, model: Accumulation) -> np.ndarray:
    """FP32 bits (M, N) of a @ w.T under a block aligned_truncate model, before the block tensor scales."""
    a_sig, a_lsb, a_align = scale_parts(a)
    w_sig, w_lsb, w_align = scale_parts(w)
    per_group = a.fmt.block_size // GROUP
    fused = model.group or BLOCK_FUSED_DEFAULT
    a_int, w_int = _element_integers(a), _element_integers(w)
    m_size, n_size = a_int.shape[1], w_int.shape[1]
    result = np.empty((m_size, n_size), dtype=np.uint32)
    rows = max(numba.get_num_threads(), _CHUNK_ELEMENTS // max(n_size * a_int.shape[0], 1))
    for start in range(0, m_size, rows):
        stop = min(start + rows, m_size)
        sums = _group_sums(a_int[:, start:stop], w_int)
        rows_a = (a_sig[start:stop], a_lsb[start:stop])
        aligned = (a_align[start:stop], w_sig, w_lsb, w_align, per_group, model.frac_bits, fused // GROUP)
        result[start:stop] = aligned_kernel(sums, *rows_a, *aligned)
    return result


@numba.njit(cache=True, parallel=True)
def aligned_kernel(
    sums: np.ndarray,
    a_sig: np.ndarray,
    a_lsb: np.ndarray,
    a_align: np.ndarray,
    w_sig: np.ndarray,
    w_lsb: np.ndarray,
    w_align: np.ndarray,
    per_group: int,
    frac_bits: int,
    fused: int,
) -> np.ndarray:
    """FP32 bits under aligned_truncate: `fused` scaled group sums plus c per fused add (spec 7.5)."""
    m_size, n_size, groups = sums.shape
    result = np.empty((m_size, n_size), dtype=np.uint32)
    for m in numba.prange(m_size):
        values = np.empty(fused, dtype=np.int64)
        lsbs = np.empty(fused, dtype=np.int64)
        exponents = np.empty(fused, dtype=np.int64)
        for n in range(n_size):
            c_bits = np.int64(0)
            for start in range(0, groups, fused):
                count = min(fused, groups - start)
                for i in range(count):
                    g = start + i
                    values[i], lsbs[i] = _scaled_group_sum(sums, m, n, g, per_group, a_sig, a_lsb, w_sig, w_lsb)
                    exponents[i] = a_align[m, g // per_group] + w_align[n, g // per_group]
                c_bits = aligned_sum(c_bits, values[:count], lsbs[:count], exponents[:count], frac_bits, ZERO_EXPONENT)
            result[m, n] = c_bits
    return result
