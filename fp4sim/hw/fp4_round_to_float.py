"""Golden twin of rtl/fp4_round_to_float.sv: the accumulator -> IEEE float converter (docs/spec.md 2.4).

:func:`fp4_round_to_float` rounds ``integer * 2**exponent`` to an IEEE binary
format with one rounding (nearest-even, or toward zero for the
aligned-truncate model). The same function converts the exact accumulator,
rounds FP32 to BF16/FP16 (the output stage), and normalises the
aligned-truncate group sums.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ml_dtypes
import numba
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros


class OutputFormat(NamedTuple):
    """An IEEE binary output format (with subnormals, Inf and NaN)."""

    name: str
    ebits: int
    mbits: int
    dtype: Any
    bits_dtype: Any


OUTPUT_FORMATS = {
    "fp32": OutputFormat("fp32", 8, 23, np.dtype(np.float32), np.dtype(np.uint32)),
    "bf16": OutputFormat("bf16", 8, 7, np.dtype(ml_dtypes.bfloat16), np.dtype(np.uint16)),
    "fp16": OutputFormat("fp16", 5, 10, np.dtype(np.float16), np.dtype(np.uint16)),
}
FP32 = OUTPUT_FORMATS["fp32"]


def output_format(name: str) -> OutputFormat:
    """Look an output format up by name ('fp32', 'bf16' or 'fp16')."""
    if name not in OUTPUT_FORMATS:
        raise ValueError(f"out must be one of {list(OUTPUT_FORMATS)}, got {name!r}")
    return OUTPUT_FORMATS[name]


@numba.njit(cache=True)
def fp4_round_to_float(value: int, exponent: int, ebits: int, mbits: int, toward_zero: bool) -> int:
    """IEEE bits of ``value * 2**exponent`` rounded once (nearest-even or toward zero).

    `value` is a signed integer with |value| < 2**63. Overflow gives Inf when
    rounding to nearest and the largest finite value toward zero; zero is +0.
    """
    if value == 0:
        return 0
    negative = value < 0
    magnitude = -value if negative else value
    bias = (1 << (ebits - 1)) - 1
    top = 63 - leading_zeros(np.int64(magnitude)) + exponent  # floor(log2 |x|)
    quantum = max(top, 1 - bias) - mbits  # exponent of one ulp at x (subnormal ulp below the normal range)
    drop = quantum - exponent
    if drop <= 0:
        q = magnitude << -drop
    elif drop > 62:
        q = 0  # below half the smallest step: rounds to zero either way
    else:
        q = magnitude >> drop
        rest = magnitude - (q << drop)
        half = np.int64(1) << (drop - 1)
        if not toward_zero and (rest > half or (rest == half and q & 1)):
            q += 1
    if q >> (mbits + 1):  # rounding carried into the next binade
        q >>= 1
        quantum += 1
    if q >> mbits:
        field = quantum + mbits + bias
        mantissa = q - (np.int64(1) << mbits)
    else:
        field = 0  # subnormal (or zero)
        mantissa = q
    if field >= (1 << ebits) - 1:
        field, mantissa = (((1 << ebits) - 2), (np.int64(1) << mbits) - 1) if toward_zero else ((1 << ebits) - 1, 0)
    bits = (np.int64(field) << mbits) | mantissa
    return bits | (np.int64(negative) << (ebits + mbits))


@numba.njit(cache=True, inline="always")
def float32_parts(bits: int) -> tuple[int, int]:
    """(signed integer significand, exponent of its LSB) of finite FP32 bits: value = sig * 2**exp."""
    field = (bits >> 23) & 0xFF
    significand = bits & 0x7FFFFF
    if field:
        significand |= 0x800000
    exponent = max(field, 1) - 127 - 23
    return (-significand if bits >> 31 else significand), exponent


@numba.njit(cache=True, parallel=True)
def accumulators_to_bits(acc: np.ndarray, exponent: int, ebits: int, mbits: int, out: np.ndarray) -> None:
    """The output converter on a flat array of int64 accumulators (nearest-even)."""
    for i in numba.prange(acc.size):
        out[i] = fp4_round_to_float(acc[i], exponent, ebits, mbits, False)


@numba.njit(cache=True, parallel=True)
def float32_to_bits(bits32: np.ndarray, ebits: int, mbits: int, out: np.ndarray) -> None:
    """Round flat FP32 bits to a narrower IEEE format (nearest-even); NaN is not expected here."""
    for i in numba.prange(bits32.size):
        significand, exponent = float32_parts(np.int64(bits32[i]))
        out[i] = fp4_round_to_float(significand, exponent, ebits, mbits, False)


def accumulators_to_float(acc: np.ndarray, lsb_exponent: int, fmt: OutputFormat) -> np.ndarray:
    """``acc * 2**lsb_exponent`` rounded to `fmt` (nearest-even), same shape, as `fmt.dtype`."""
    flat = np.ascontiguousarray(acc, dtype=np.int64).reshape(-1)
    bits = np.empty(flat.size, dtype=fmt.bits_dtype)
    accumulators_to_bits(flat, lsb_exponent, fmt.ebits, fmt.mbits, bits)
    return bits.view(fmt.dtype).reshape(np.shape(acc))


def float32_to_float(x: np.ndarray, fmt: OutputFormat) -> np.ndarray:
    """Finite FP32 values rounded to `fmt` (nearest-even, overflow to Inf)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fmt.name == "fp32":
        return x
    bits = np.empty(x.size, dtype=fmt.bits_dtype)
    float32_to_bits(x.reshape(-1).view(np.uint32), fmt.ebits, fmt.mbits, bits)
    return bits.view(fmt.dtype).reshape(x.shape)
