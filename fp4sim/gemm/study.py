"""Accumulation models for studies (docs/spec.md, section 2.6), shared by the fast GEMM and the block GEMM.

The array itself accumulates exactly (Kulisch, section 2.3). Two other models
say what cheaper datapaths would give on the same products:

- ``aligned_truncate:N[:G]``: per group of G products (default 32; 64 for
  block-scaled FP4, section 7.5) plus the
  running FP32 sum, align every term to the largest exponent, truncate each
  toward zero to N fractional bits, add exactly, truncate the result to FP32.
  This is NVIDIA's tensor-core behaviour as measured by MMA-Sim.
- ``fp32_sequential``: one FP32 round-to-nearest-even add per product, K order.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numba
import numpy as np

from ..hw.fp4_round_to_float import float32_parts, fp4_round_to_float

ALIGNED_GROUP_DEFAULT = 32  # products per fused group: the K of one m16n8k32 FP8/FP4 MMA instruction
_ALIGNED_RE = re.compile(r"^aligned_truncate:(\d+)(?::(\d+))?$")
NO_EXPONENT = -(1 << 20)  # exponent of a zero term: below every real one
NEGATIVE_ZERO = 0x80000000


class Accumulation(NamedTuple):
    """A parsed accumulation model: kind plus the aligned-truncate parameters."""

    kind: str  # "exact", "aligned_truncate" or "fp32_sequential"
    frac_bits: int = 0
    group: int = 0  # 0: the datapath's default group

    def __str__(self) -> str:
        if self.kind == "aligned_truncate":
            return f"aligned_truncate:{self.frac_bits}" + (f":{self.group}" if self.group else "")
        return self.kind


def parse_accumulation(spec: str | Accumulation) -> Accumulation:
    """``"exact"``, ``"fp32_sequential"`` or ``"aligned_truncate:N"`` / ``"aligned_truncate:N:G"``."""
    if isinstance(spec, Accumulation):
        return spec
    if spec in ("exact", "fp32_sequential"):
        return Accumulation(spec)
    match = _ALIGNED_RE.match(spec) if isinstance(spec, str) else None
    if match:
        frac_bits = int(match.group(1))
        group = int(match.group(2) or 0)
        if not 1 <= frac_bits <= 56 or (match.group(2) and group < 1):
            raise ValueError(f"aligned_truncate needs 1 <= N <= 56 fractional bits and a group >= 1, got {spec!r}")
        return Accumulation("aligned_truncate", frac_bits, group)
    raise ValueError(
        f"unknown accumulation model {spec!r}; use 'exact', 'fp32_sequential' or 'aligned_truncate:N[:G]' "
        f"(N fractional bits, e.g. 13, 25, 35; G products per group, default {ALIGNED_GROUP_DEFAULT}, "
        "64 for MXFP4 / NVFP4)"
    )


def check_aligned_width(model: Accumulation, significand_bits: int, terms: int) -> None:
    """ValueError unless an aligned add of `terms` terms plus c fits the golden model's 64-bit adder.

    A term is below ``2^significand_bits`` times 2^(its exponent), so after
    alignment each is below ``2^(N + significand_bits)`` units of the kept LSB.
    """
    needed = model.frac_bits + significand_bits + (terms + 1).bit_length()
    if needed > 63:
        largest = 63 - significand_bits - (terms + 1).bit_length()
        raise ValueError(
            f"{model} needs a {needed}-bit adder for {terms} terms per add; the golden model's is 63 bits: "
            f"use N <= {largest} at this group size"
        )


@numba.njit(cache=True, parallel=True)
def fp32_sequential_gemm(a_values: np.ndarray, w_values: np.ndarray) -> np.ndarray:
    """c[m, n] = fp32(c + a[m, k] * w[k, n]) for k = 0..K-1, from c = +0.

    Operands are float32 values that multiply exactly (FP4 products always
    do), so each step rounds once, in the add.
    """
    m_size, k_size = a_values.shape
    result = np.zeros((m_size, w_values.shape[1]), dtype=np.float32)
    for m in numba.prange(m_size):
        for k in range(k_size):
            a = a_values[m, k]
            for n in range(w_values.shape[1]):
                result[m, n] += a * w_values[k, n]
    return result


@numba.njit(cache=True, parallel=True)
def aligned_truncate_outputs(
    products: np.ndarray,
    shifts: np.ndarray,
    a_codes: np.ndarray,
    w_codes: np.ndarray,
    a_exponent: np.ndarray,
    w_exponent: np.ndarray,
    lsb_exponent: int,
    frac_bits: int,
    group: int,
    selected: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write the FP32 bits of every output with `selected[m, n]` into (M, N) uint32 `out` (spec 2.6, 4.3).

    Each group is :func:`aligned_sum` written out for products, which share
    the accumulator's LSB: one right shift truncates every term. When no term
    can lose a bit (every product's exponent and c's are at most
    ``lsb_exponent + frac_bits``; ``products_fit`` says the first holds for
    every product of the formats) every term is a multiple of the LSB, and the
    group is one exact integer sum truncated to FP32 (spec 4.3). One table
    lookup per product gives its value and its alignment exponent; W is read
    along K.
    """
    products_fit = a_exponent.max() + w_exponent.max() <= lsb_exponent + frac_bits
    m_size, k_size = a_codes.shape
    n_a, n_w = products.shape[1], products.shape[2]
    values = np.ascontiguousarray(products).ravel()  # [(shift * n_a + a) * n_w + w]
    exponents = np.empty(values.size, dtype=np.int64)  # a zero product takes no part in the maximum
    for s in range(products.shape[0]):
        for a in range(n_a):
            for w in range(n_w):
                index = (s * n_a + a) * n_w + w
                exponents[index] = a_exponent[a] + w_exponent[w] - s if values[index] else NO_EXPONENT
    w_by_n = np.ascontiguousarray(w_codes.T)  # (N, K)
    for m in numba.prange(m_size):
        if not selected[m].any():
            continue
        row = np.empty(k_size, dtype=np.int64)
        for k in range(k_size):
            row[k] = (np.int64(shifts[k]) * n_a + a_codes[m, k]) * n_w
        term = np.empty(group, dtype=np.int64)
        for n in range(w_by_n.shape[0]):
            if not selected[m, n]:
                continue
            w_row = w_by_n[n]
            c_bits = np.int64(0)
            for start in range(0, k_size, group):
                count = min(group, k_size - start)
                total = np.int64(0)
                top = np.int64(NO_EXPONENT)
                for j in range(count):
                    index = row[start + j] + w_row[start + j]
                    term[j] = values[index]
                    total += term[j]
                    top = max(top, exponents[index])
                c_sig, c_lsb = float32_parts(c_bits)
                if products_fit and (c_sig == 0 or c_lsb + 23 <= lsb_exponent + frac_bits):
                    # c is a multiple of the LSB (every earlier group kept whole multiples of it).
                    shift = c_lsb - lsb_exponent
                    c_int = c_sig << shift if shift >= 0 else c_sig >> -shift
                    bits = fp4_round_to_float(total + c_int, lsb_exponent, 8, 23, True)
                    c_bits = 0 if bits == NEGATIVE_ZERO else bits
                    continue
                if c_sig != 0:
                    top = max(top, c_lsb + 23)  # FP32 exponent; a subnormal sits at -126 with significand < 1
                if top == NO_EXPONENT:
                    continue  # every term is zero (and c is +0)
                kept = _truncate_to(c_sig, c_lsb + frac_bits - top)
                left_shift = lsb_exponent + frac_bits - top
                if left_shift >= 0:
                    kept += total << left_shift  # nothing truncated: the shifted sum is the sum of shifted terms
                elif left_shift >= -62:
                    right = -left_shift
                    for j in range(count):  # toward zero: shift the magnitude, then restore the sign
                        sign = term[j] >> 63
                        kept += ((((term[j] ^ sign) - sign) >> right) ^ sign) - sign
                bits = fp4_round_to_float(kept, top - frac_bits, 8, 23, True)
                c_bits = 0 if bits == NEGATIVE_ZERO else bits
            out[m, n] = c_bits


@numba.njit(cache=True)
def aligned_sum(
    c_bits: int, values: np.ndarray, lsbs: np.ndarray, exponents: np.ndarray, frac_bits: int, zero_c_exponent: int
) -> int:
    """One fused group: FP32 c plus exact terms, aligned, truncated, summed, truncated to FP32.

    Term i is ``values[i] * 2**lsbs[i]``; ``exponents[i]`` is the exponent the
    adder aligns it by (for a product, e_a + e_w of the normalised operands, so
    its significand lies in [1, 4)). Every term keeps `frac_bits` bits below the
    largest exponent, truncated toward zero; the exact sum is truncated to FP32.
    A zero c takes part in the maximum with `zero_c_exponent` (-126 in the
    block-scaled datapath; NO_EXPONENT to leave it out).
    """
    c_sig, c_lsb = float32_parts(c_bits)
    top = zero_c_exponent
    if c_sig != 0:
        top = c_lsb + 23  # FP32 exponent; a subnormal sits at -126 with significand < 1
    for i in range(values.size):
        top = max(top, exponents[i])
    if top == NO_EXPONENT:
        return c_bits  # every term is zero
    total = _truncate_to(c_sig, c_lsb + frac_bits - top)
    for i in range(values.size):
        total += _truncate_to(values[i], lsbs[i] + frac_bits - top)
    bits = fp4_round_to_float(total, top - frac_bits, 8, 23, True)
    return 0 if bits == NEGATIVE_ZERO else bits  # truncation leaves an integer 0: +0 (MMA-Sim's math.trunc)


@numba.njit(cache=True, inline="always")
def _truncate_to(value: int, left_shift: int) -> int:
    """value * 2**left_shift truncated toward zero to an integer."""
    if left_shift >= 0:
        return value << left_shift
    if left_shift < -62:
        return 0
    magnitude = (-value if value < 0 else value) >> -left_shift
    return -magnitude if value < 0 else magnitude


def exponent_table(values: np.ndarray) -> np.ndarray:
    """floor(log2 |value|) for every code's value (a subnormal operand is normalised, as in MMA-Sim)."""
    magnitudes = np.abs(values)
    _, exponents = np.frexp(np.where(magnitudes > 0, magnitudes, 1.0))
    return np.where(magnitudes > 0, exponents - 1, NO_EXPONENT).astype(np.int64)
