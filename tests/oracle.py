"""Exact reference quantizers written from the formulas, with `fractions` only.

Independent of fp4sim's code: nothing here imports the package. Used as the
oracle where ml_dtypes and torch do not define the format (the LLM-FP4 family,
shifts, rounding modes other than nearest-even).
"""

from __future__ import annotations

import functools
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


# ---- MAC array oracle (docs/spec.md section 2), Fractions only ----------------

FLOAT_FORMATS = {"fp32": (8, 23), "bf16": (8, 7), "fp16": (5, 10)}


def round_float(x: Fraction, out: str, toward_zero: bool = False) -> float:
    """x rounded once to an IEEE format (subnormals, overflow -> inf / max), as a Python float."""
    ebits, mbits = FLOAT_FORMATS[out]
    if x == 0:
        return 0.0
    bias = (1 << (ebits - 1)) - 1
    step = Fraction(2) ** (max(floor_log2(abs(x)), 1 - bias) - mbits)
    units = abs(x) / step
    n = math.floor(units) if toward_zero else round_half_even(units)
    largest = (2 - Fraction(1, 1 << mbits)) * Fraction(2) ** bias
    result = n * step
    if result > largest:
        result_float = float(largest) if toward_zero else math.inf
    else:
        result_float = float(result)
    return -result_float if x < 0 else result_float


def fp32_times(z: float, scale: float) -> float:
    """fp32(z * scale) with IEEE zero signs (z and scale are FP32 values)."""
    if z == 0 or scale == 0:
        return math.copysign(0.0, z) * math.copysign(1.0, scale)
    return round_float(Fraction(z) * Fraction(scale), "fp32")


@functools.cache
def mac_product(a: int, w: int, s: int, fa: tuple[int, int, int], fw: tuple[int, int, int]) -> Fraction:
    """value(a) * value(w) * 2^-s for codes of LLM-FP4 family formats (ebits, mbits, bias)."""
    return code_value(a, *fa) * code_value(w, *fw) / Fraction(2) ** s


def exact_sum(a, w, s, fa, fw) -> Fraction:
    """The exact dot product of code vectors a, w with shifts s."""
    return sum((mac_product(int(x), int(y), int(z), fa, fw) for x, y, z in zip(a, w, s, strict=True)), Fraction(0))


@functools.cache
def exponent_of(x: Fraction) -> int:
    """floor(log2 |x|), the exponent a multiplier sees for a nonzero operand (normalised)."""
    return floor_log2(abs(x))


def dot(model: str, a, w, s, fa, fw, frac_bits: int = 0, group: int = 32) -> float:
    """One dot product under an accumulation model, as an FP32 value (a Python float).

    exact: the exact sum rounded once to nearest-even (the unscaled FP32 output).
    fp32_sequential: c = fp32(c + p_k), k in order, from +0.
    aligned_truncate: per group of `group` products plus c, every term keeps
    `frac_bits` bits below the largest exponent (product exponent: the sum of
    the operands' exponents), truncated toward zero; the sum is truncated to FP32.
    """
    if model == "exact":
        return round_float(exact_sum(a, w, s, fa, fw), "fp32")
    products = [mac_product(int(x), int(y), int(z), fa, fw) for x, y, z in zip(a, w, s, strict=True)]
    c = Fraction(0)
    if model == "fp32_sequential":
        for p in products:
            c = Fraction(round_float(c + p, "fp32"))
        return float(c)
    for start in range(0, len(products), group):
        terms, exponents = ([c], [max(exponent_of(c), -126)]) if c else ([], [])
        for k in range(start, min(start + group, len(products))):
            if products[k]:
                terms.append(products[k])
                exponents.append(
                    exponent_of(code_value(int(a[k]), *fa)) + exponent_of(code_value(int(w[k]), *fw)) - int(s[k])
                )
        if not terms:
            continue
        unit = Fraction(2) ** (max(exponents) - frac_bits)
        total = sum((math.trunc(t / unit) * unit for t in terms), Fraction(0))
        c = Fraction(round_float(total, "fp32", toward_zero=True))
    return float(c)
