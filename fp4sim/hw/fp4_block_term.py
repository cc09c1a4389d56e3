"""Golden twin of rtl/fp4_block_term.sv: one 16-element group times its two block scales (docs/spec.md 8.2, 8.3).

:func:`fp4_block_term` gives ``(nan, V, shift, E)``: the exact group sum of the
E2M1 products times both scale significands, the left shift that places it
in units of 2^TERM_LSB, and the term's alignment exponent for aligned_truncate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

MXFP4_NAN = 0xFF  # E8M0's NaN code
E4M3_NAN = 0x7F  # E4M3's NaN code (without the sign bit)
ZERO_SCALE_EXPONENT = -126  # what a zero (or NaN) scale contributes to a term's alignment exponent (MMA-Sim)
E4M3_MIN_EXPONENT = -6  # a subnormal E4M3 scale aligns at the smallest normal exponent
_E2M1_TWICE = (0, 1, 2, 3, 4, 6, 8, 12)  # twice the E2M1 magnitudes of codes 0..7: integers


class ScaleParts(NamedTuple):
    """A decoded block scale: value = significand * 2^(shift + SCALE_LSB) (spec 8.2)."""

    nan: bool
    significand: int
    shift: int
    exponent: int  # alignment exponent of aligned_truncate


class Term(NamedTuple):
    """A scaled group: term = value * 2^(shift + TERM_LSB) (spec 8.3)."""

    nan: bool
    value: int  # V, signed
    shift: int
    exponent: int  # E = exponent_a + exponent_w


def decode_scale(code: int, nvfp4: bool) -> ScaleParts:
    """An 8-bit scale code as spec 8.2 decodes it: E8M0 (MXFP4) or unsigned E4M3 (NVFP4)."""
    if not nvfp4:
        if code == MXFP4_NAN:
            return ScaleParts(True, 0, 0, ZERO_SCALE_EXPONENT)
        return ScaleParts(False, 1, code, code - 127)
    if code >> 7 or code == E4M3_NAN:  # the sign bit is not part of an unsigned scale
        return ScaleParts(True, 0, 0, ZERO_SCALE_EXPONENT)
    field, mantissa = code >> 3, code & 7
    if field:
        return ScaleParts(False, 8 + mantissa, field - 1, field - 7)
    return ScaleParts(False, mantissa, 0, E4M3_MIN_EXPONENT if mantissa else ZERO_SCALE_EXPONENT)


def e2m1_twice(code: int) -> int:
    """Twice the value of an E2M1 code (bit 3 the sign): an integer in -12..12; -0 gives 0."""
    magnitude = _E2M1_TWICE[code & 7]
    return -magnitude if code & 8 else magnitude


def group_sum(a_codes: Sequence[int], w_codes: Sequence[int]) -> int:
    """P: the exact sum of the 16 E2M1 products in units of 2^-2 (|P| <= 2304)."""
    return sum(e2m1_twice(int(a)) * e2m1_twice(int(w)) for a, w in zip(a_codes, w_codes, strict=True))


def fp4_block_term(a_codes: Sequence[int], w_codes: Sequence[int], a_scale: int, w_scale: int, nvfp4: bool) -> Term:
    """The group's term: V = P * significand_a * significand_w, shift_a + shift_w, E, and the NaN flag."""
    sa, sw = decode_scale(int(a_scale), nvfp4), decode_scale(int(w_scale), nvfp4)
    value = group_sum(a_codes, w_codes) * sa.significand * sw.significand
    return Term(sa.nan or sw.nan, value, sa.shift + sw.shift, sa.exponent + sw.exponent)
