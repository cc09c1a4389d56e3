"""Exact reference quantizers written from the formulas, with `fractions` only.

Independent of fp4sim's code: nothing here imports the package. Used as the
oracle where ml_dtypes and torch do not define the format (the LLM-FP4 family,
shifts, rounding modes other than nearest-even).
"""

from __future__ import annotations

import math
from fractions import Fraction


def code_value(code: int, ebits: int, mbits: int, bias: int, subnormals: bool = True) -> Fraction:
    """Value of a finite code: (-1)^s 2^(p-b) (1 + d/2^m), p = 0 subnormal (BRIEF section 1)."""
    sign = -1 if code >> (ebits + mbits) & 1 else 1
    p = (code >> mbits) & ((1 << ebits) - 1)
    d = code & ((1 << mbits) - 1)
    if p == 0 and subnormals:
        return sign * Fraction(d, 1 << mbits) * Fraction(2) ** (1 - bias)
    return sign * (1 + Fraction(d, 1 << mbits)) * Fraction(2) ** (p - bias)


def floor_log2(x: Fraction) -> int:
    """floor(log2(x)) for x > 0, exactly."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    return e if Fraction(2) ** e <= x else e - 1


def round_half_even(x: Fraction) -> int:
    """Nearest integer, ties to even."""
    fl = math.floor(x)
    rest = x - fl
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and fl % 2):
        return fl + 1
    return fl


def paper_quantize(x: Fraction, ebits: int, mbits: int, bias: int, mode: str = "nearest_even") -> Fraction:
    """LLM-FP4's quantizer with an integer bias: clip to +-Qmax, q = v * round(x / v).

    v = 2^(max(floor(log2|x|) + b, 1) - m - b); `mode` picks round half-even
    (the paper) or truncation toward zero.
    """
    qmax = (2 - Fraction(1, 1 << mbits)) * Fraction(2) ** ((1 << ebits) - 1 - bias)
    x = max(-qmax, min(qmax, x))
    if x == 0:
        return Fraction(0)
    exponent = max(floor_log2(abs(x)) + bias, 1) - mbits - bias
    step = Fraction(2) ** exponent
    ratio = x / step
    n = round_half_even(ratio) if mode == "nearest_even" else math.trunc(ratio)
    return n * step


def grid(ebits: int, mbits: int, bias: int) -> list[Fraction]:
    """Every non-negative value of a finite, signed format with subnormals, ascending."""
    return sorted({code_value(c, ebits, mbits, bias) for c in range(1 << (ebits + mbits))})
