"""Golden twin of rtl/fp4_block_fused_add.sv: one fused add of aligned_truncate:N (docs/spec.md 8.5).

The running FP32 sum c and up to F scaled group terms are aligned to the
largest exponent, each truncated toward zero N bits below it, summed exactly,
and the sum truncated to FP32.
"""

from __future__ import annotations

from collections.abc import Sequence

from .fp4_round_to_float import fp4_round_to_float

FP32_MAGNITUDE = 0x7FFFFFFF


def truncate_shift(value: int, amount: int) -> int:
    """value * 2^amount truncated toward zero (a right shift of the magnitude when amount < 0)."""
    magnitude = abs(value) << amount if amount >= 0 else abs(value) >> -amount
    return -magnitude if value < 0 else magnitude


def fp32_significand(c_bits: int) -> tuple[int, int]:
    """(signed 24-bit significand, exponent E_c) of finite FP32 bits: |c| = |sig| * 2^(E_c - 23)."""
    field, mantissa = (c_bits >> 23) & 0xFF, c_bits & 0x7FFFFF
    significand = mantissa | (0x800000 if field else 0)
    return (-significand if c_bits >> 31 else significand), max(field, 1) - 127


def fp4_block_fused_add(c_bits: int, terms: Sequence[tuple[int, int]], frac_bits: int, align_offset: int) -> int:
    """FP32 bits of c + the terms under aligned_truncate:N (spec 8.5).

    `terms` are (V, E) pairs (fp4_block_term's value and exponent); a term is
    V * 2^(E - align_offset) (KE of spec 8.3). Truncation toward zero at every
    step; a result that truncates to zero is +0.
    """
    c_sig, c_exponent = fp32_significand(c_bits)
    top = max([c_exponent, *(e for _, e in terms)])
    total = truncate_shift(c_sig, frac_bits - 23 - (top - c_exponent))
    for value, exponent in terms:
        total += truncate_shift(value, frac_bits - align_offset - (top - exponent))
    bits = int(fp4_round_to_float(total, top - frac_bits, 8, 23, True))
    return bits if bits & FP32_MAGNITUDE else 0
