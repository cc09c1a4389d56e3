"""Numba kernels behind :mod:`fp4sim.codec.elementwise`: float -> code and code -> float.

Encoding works on the bits of the input float: the magnitude's significand is
shifted right to the target format's quantum at that exponent and rounded,
then the code is assembled arithmetically (docs/spec.md section 1.4). Every
step is a branch-free select on integers as wide as the float, so LLVM
vectorises the loop: eight float32 lanes per AVX2 instruction.

Kernels are built per (compute float, rounding mode, parallel) so that what
would be a per-element branch is a compile-time constant; they compile on
first use.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..formats import Format

# Rounding modes as the kernels see them.
RNE, RTZ, STOCHASTIC = 0, 1, 2

# Below this many elements the thread pool costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16


@intrinsic
def _float_bits(typingctx, x):
    """Reinterpret a float32/float64 as int32/int64 (numba has no scalar bit cast)."""
    if x == types.float32:
        int_type, llvm_type = types.int32, ir.IntType(32)
    elif x == types.float64:
        int_type, llvm_type = types.int64, ir.IntType(64)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return int_type(x), codegen


@intrinsic
def _bits_float(typingctx, b):
    """Reinterpret an int32/int64 as a float32/float64."""
    if b == types.int32:
        float_type, llvm_type = types.float32, ir.FloatType()
    elif b == types.int64:
        float_type, llvm_type = types.float64, ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return float_type(b), codegen


class EncodeParams(NamedTuple):
    """A format's constants as the encode kernel needs them."""

    mbits: int  # target mantissa bits
    lowest_exponent: int  # exponent of the target's lowest binade (subnormals share it)
    below_lowest_offset: int  # 2**mbits for formats without subnormals, else 0
    max_code: int  # largest finite magnitude code
    overflow_code: int  # magnitude code for a result past max_code
    sign_bit: int  # value of the code's sign bit (0 for unsigned formats)
    invalid_code: int  # code for NaN (and, unsigned, for x <= 0) ...
    invalid_sign_delta: int  # ... plus sign * this
    unsigned: int  # 1 when negative values and zero are out of the domain


def encode_params(fmt: Format) -> EncodeParams:
    """Derive the encode kernel's constants from a format."""
    overflow_code = {"saturate": fmt.max_code, "inf": fmt.inf_code, "nan": fmt.nan_code}[fmt.overflow]
    if not fmt.signed:
        invalid, delta = fmt.nan_code, 0
    elif fmt.nan_code is not None:
        invalid, delta = fmt.nan_code, fmt.sign_mask
    else:
        # Formats without NaN: ml_dtypes' choice, zero with the NaN's sign inverted.
        invalid, delta = fmt.sign_mask, -fmt.sign_mask
    return EncodeParams(
        mbits=fmt.mbits,
        lowest_exponent=fmt.lowest_exponent,
        below_lowest_offset=0 if fmt.subnormals else 1 << fmt.mbits,
        max_code=fmt.max_code,
        overflow_code=overflow_code,
        sign_bit=fmt.sign_mask,
        invalid_code=invalid,
        invalid_sign_delta=delta,
        unsigned=int(not fmt.signed),
    )


def float32_is_exact_for(fmt: Format, max_shift: int) -> bool:
    """Whether the float32 pipeline is exact for `fmt` at shifts up to `max_shift`.

    float32 subnormal inputs are not normalised, which is harmless while the
    target's lowest binade (after the shift) is at or above float32's, 2**-126.
    """
    return fmt.lowest_exponent - max_shift >= -126


@numba.njit(inline="always")
def _random32(seed, index):
    """32 uniform bits for element `index`: splitmix64 of (seed, index), top half."""
    z = np.uint64(seed) + np.uint64(index + 1) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(32))


@cache
def encode_kernel(compute: type, mode: int, with_shift: bool, parallel: bool):
    """The encode loop for floats computed as `compute` (np.float32 or np.float64).

    With `with_shift`, `shifts` holds one int8 per value; else it is ignored.
    """
    width = np.dtype(compute).itemsize * 8
    ints = np.int32 if width == 32 else np.int64
    mant_bits = 23 if width == 32 else 52
    src_bias = 127 if width == 32 else 1023
    # Typed constants keep numba from widening the arithmetic to int64.
    zero, one = ints(0), ints(1)
    mbits_src, top, bias = ints(mant_bits), ints(width - 1), ints(src_bias)
    mant_mask = ints((1 << mant_bits) - 1)
    abs_mask = ints((1 << (width - 1)) - 1)
    inf_bits = ints(((1 << (width - 1 - mant_bits)) - 1) << mant_bits)

    @numba.njit(inline="always")
    def element(value, shift, index, seed, p):
        bits = _float_bits(compute(value))
        sign = (bits >> top) & one
        mag = bits & abs_mask
        exp_field = mag >> mbits_src
        sig = (mag & mant_mask) | (min(exp_field, one) << mbits_src)
        # Binades above the target's lowest; a positive shift raises the bias.
        above = max(exp_field, one) - (ints(p.lowest_exponent) + bias - shift)
        rshift = mbits_src - ints(p.mbits) + max(-above, zero)
        capped = min(rshift, top)
        kept = sig >> capped
        if mode == RNE:
            n = (sig + ((one << (capped - one)) - one) + (kept & one)) >> capped
        elif mode == RTZ:
            n = kept
        else:
            # Round up with probability (dropped bits) / 2**rshift, to 32 bits.
            dropped = np.int64(sig & ((one << capped) - one))
            r64 = np.int64(rshift)
            frac32 = (dropped << (32 - r64)) if r64 <= 32 else (dropped >> min(r64 - 32, 63))
            n = kept + (_random32(seed, index) < frac32)
        code = max(n + (max(above, zero) << ints(p.mbits)) - ints(p.below_lowest_offset), zero)
        # Round toward zero never rounds a finite value up past the largest one.
        past_max = ints(p.overflow_code) if (mode != RTZ or mag == inf_bits) else ints(p.max_code)
        code = past_max if code > ints(p.max_code) else code
        code = code | (sign * ints(p.sign_bit))
        invalid = (mag > inf_bits) | ((p.unsigned == 1) & ((sign == one) | (mag == zero)))
        code = (ints(p.invalid_code) + sign * ints(p.invalid_sign_delta)) if invalid else code
        return code, invalid

    def loop(values, shifts, out, seed, p):
        n_invalid = 0
        for i in numba.prange(values.size):
            shift = ints(shifts[i]) if with_shift else zero
            code, invalid = element(values[i], shift, i, seed, p)
            out[i] = np.uint8(code)
            n_invalid += np.int64(invalid)
        return n_invalid

    return numba.njit(nogil=True, parallel=parallel)(loop)


# The table path: for float32 input, nearest-even and toward-zero codes depend
# on the bits only through the top 16 (sign, exponent, 7 mantissa bits) and
# whether any lower bit is set, whenever the target has <= 6 mantissa bits
# (the rounding bit sits at bit 22 - mbits >= 16). So the generic kernel,
# run once on one representative per class, fills a 2**17-entry table.
TABLE_MAX_MBITS = 6
TABLE_CLASSES = 1 << 17
TABLE_SHIFT_SPAN = 16  # most distinct shift values given tables; more go generic


def table_applies(fmt: Format, mode: int, shift_lo: int, shift_hi: int) -> bool:
    """Whether the lookup-table path gives the generic kernel's codes for float32 input."""
    return (
        mode != STOCHASTIC
        and fmt.mbits <= TABLE_MAX_MBITS
        and float32_is_exact_for(fmt, shift_hi)
        and shift_hi - shift_lo < TABLE_SHIFT_SPAN
    )


@lru_cache(maxsize=16)  # entries are at most 4 MB
def encode_table(fmt: Format, mode: int, shift_lo: int, shift_hi: int) -> np.ndarray:
    """uint16 entries: code in the low byte, 1 << 8 when the input is invalid.

    Indexed by ``(shift - shift_lo) << 17 | top16 << 1 | sticky``.
    """
    top = np.arange(1 << 16, dtype=np.uint32) << 16
    representatives = np.stack([top, top | 1], axis=1).reshape(-1)
    n_shifts = shift_hi - shift_lo + 1
    values = np.tile(representatives, n_shifts).view(np.float32)
    shifts = np.repeat(np.arange(shift_lo, shift_hi + 1, dtype=np.int8), TABLE_CLASSES)
    codes = np.empty(values.size, dtype=np.uint8)
    encode_kernel(np.float32, mode, True, False)(values, shifts, codes, 0, encode_params(fmt))
    invalid = np.isnan(values) | (not fmt.signed) & (values <= 0)
    table = codes.astype(np.uint16) | (invalid.astype(np.uint16) << 8)
    table.flags.writeable = False
    return table


@cache
def table_kernel(with_shift: bool, parallel: bool):
    """The lookup loop over float32 bits (as int32)."""

    def loop(bits, shifts, shift_lo, table, out):
        n_invalid = 0
        for i in numba.prange(bits.size):
            b = bits[i]
            index = (((b >> 16) & 0xFFFF) << 1) | ((b & 0xFFFF) != 0)
            if with_shift:
                index += (np.int64(shifts[i]) - shift_lo) << 17
            entry = table[index]
            out[i] = np.uint8(entry & 0xFF)
            n_invalid += entry >> 8
        return n_invalid

    return numba.njit(nogil=True, parallel=parallel)(loop)


@cache
def decode_kernel(with_shift: bool, parallel: bool):
    """Look codes up in a value table, times 2**-shift (exact; codes and shifts checked by the caller)."""

    def loop(codes, shifts, table, pow2, out):
        for i in numba.prange(codes.size):
            value = table[codes[i]]
            if with_shift:
                value = value * pow2[np.int64(shifts[i]) + 128]
            out[i] = value

    return numba.njit(nogil=True, parallel=parallel)(loop)


def run_encode(values, shifts, out, mode, seed, fmt: Format) -> int:
    """Encode flat float32/float64 `values` into `out`; returns the invalid-input count."""
    lo, hi = (int(shifts.min()), int(shifts.max())) if shifts.size else (0, 0)
    parallel = values.size >= PARALLEL_MIN_SIZE
    if values.dtype == np.float32 and table_applies(fmt, mode, lo, hi):
        kernel = table_kernel(shifts.size > 0, parallel)
        return kernel(values.view(np.int32), shifts, lo, encode_table(fmt, mode, lo, hi), out)
    compute = np.float32 if values.dtype == np.float32 and float32_is_exact_for(fmt, hi) else np.float64
    kernel = encode_kernel(compute, mode, shifts.size > 0, parallel)
    return kernel(values, shifts, out, seed, encode_params(fmt))


def run_decode(codes, shifts, table, pow2, out) -> int:
    """Decode flat `codes` into `out`; returns how many codes were outside the table (then `out` is untouched).

    The range check is numpy's vectorised max, a separate pass over the codes
    (one byte each) that costs less than checking inside the lookup loop.
    """
    if codes.size and int(codes.max()) >= table.size:
        return int(np.count_nonzero(codes >= table.size))
    decode_kernel(shifts.size > 0, codes.size >= PARALLEL_MIN_SIZE)(codes, shifts, table, pow2, out)
    return 0


@cache
def fake_quant_kernel(parallel: bool, negative_shifts: bool):
    """decode(encode(x)) fused for LLM-FP4 family formats over a float32 matrix.

    Row r has scale ``scale[r]`` (or one for all), column c the shift ``2**shift_c``
    given as ``up[c] = 2**shift_c`` and ``down[c] = 2**-shift_c``. Each element is
    ``round(x / scale * up) * down * scale`` with round = nearest-even to the
    format's grid, saturating: the same roundings as encode followed by decode.
    The rounding works on the float's bits (normal binades: drop ``23 - mbits``
    significand bits; subnormal binade: add and subtract a power of two whose ulp
    is the subnormal step), branch-free so the column loop vectorises.

    Returns how many elements it could not do exactly: NaN input, and products
    ``x / scale * 2**shift`` that FP32 cannot hold (a negative shift into its
    subnormal range, where a second rounding could land on a midpoint). The
    caller discards the result when that count is not zero. Without
    `negative_shifts` no product can be inexact (a shift >= 0 only scales up;
    an overflow saturates either way) and the test is compiled out.
    """
    int_one = np.int32(1)

    def loop(x, row_scale, up, down, mbits, min_normal, max_value, magic, out):
        n_inexact = 0
        drop = np.int32(23 - mbits)
        half = (int_one << (drop - int_one)) - int_one
        # The kept significand's last bit decides ties; with mbits = 0 it is the implicit 1 (ties go up, spec 1.4).
        implicit_odd = np.int32(mbits == 0)
        row_step = 1 if row_scale.size > 1 else 0
        for r in numba.prange(x.shape[0]):
            scale = row_scale[r * row_step]
            for c in range(x.shape[1]):
                quotient = np.float32(x[r, c] / scale)
                y = quotient * up[c]
                if negative_shifts:  # y is exact iff scaling it back restores the quotient
                    n_inexact += (y != y) | ((y * down[c] != quotient) & (abs(y) != np.inf))
                else:
                    n_inexact += y != y
                mag = min(abs(y), max_value)
                b = _float_bits(mag)
                odd = ((b >> drop) & int_one) | implicit_odd
                normal = _bits_float(np.int32(((b + half + odd) >> drop) << drop))
                subnormal = (mag + magic) - magic
                rounded = subnormal if mag < min_normal else normal
                out[r, c] = np.float32(np.copysign(rounded, y) * down[c]) * scale
        return n_inexact

    return numba.njit(nogil=True, parallel=parallel, fastmath=False)(loop)


def grid_params(fmt: Format) -> tuple[int, float, float, float]:
    """(mbits, smallest normal, magic, largest) of `fmt` as _round_to_grid64 takes them; adding and
    subtracting ``magic = 2^(lowest_exponent - mbits + 52)`` rounds a float64 below the smallest normal
    half-even to the subnormal step."""
    low = fmt.lowest_exponent
    return fmt.mbits, math.ldexp(1.0, low), math.ldexp(1.0, low - fmt.mbits + 52), float(fmt.max_value)


@numba.njit(inline="always")
def _round_to_grid64(magnitude, grid):
    """Nearest-even of a float64 `magnitude` >= 0 onto a format's grid (grid_params), saturating at its
    largest value: on the bits in normal binades, by the magic constant below them (as fake_quant_kernel)."""
    mbits, min_normal, magic, largest = grid
    clipped = min(magnitude, largest)
    one = np.int64(1)
    drop = np.int64(52 - mbits)
    b = _float_bits(clipped)
    odd = ((b >> drop) & one) | np.int64(mbits == 0)  # mbits = 0: the implicit 1 decides ties (spec 1.4)
    normal = _bits_float(((b + (one << (drop - one)) - one + odd) >> drop) << drop)
    subnormal = (clipped + magic) - magic
    return subnormal if clipped < min_normal else normal


@numba.njit(inline="always")
def _block_amax(x, r, lo, hi):
    """(max |x[r, lo:hi]| as float32, count of non-finite values there)."""
    amax = np.float32(0)
    bad = 0
    for c in range(lo, hi):
        magnitude = abs(x[r, c])
        bad += not np.isfinite(magnitude)
        amax = max(amax, magnitude)
    return amax, bad


@numba.njit(inline="always")
def _write_block(x, r, lo, hi, scale, s_t, element_grid, out):
    """out[r, lo:hi] = E2M1(x / (scale s_t)) * scale as float32 (the quotient in float64 from exact operands: the
    divisor has 4 x 24 significant bits), +0 throughout for a zero scale."""
    divisor = scale * s_t
    nonzero = divisor > 0
    safe = divisor if nonzero else 1.0
    for c in range(lo, hi):
        element = _round_to_grid64(abs(np.float64(x[r, c])) / safe, element_grid)
        value = math.copysign(element, x[r, c]) * scale
        out[r, c] = np.float32(value) if nonzero else np.float32(0)


@numba.njit(inline="always")
def _four_over_six_pick(x, r, lo, hi, four, six, s_t, element_grid, certain):
    """Four Over Six on x[r, lo:hi] (docs/spec.md 7.3): (the scale kept, whether the float64 comparison was not
    certain). D = (s_t S_4^2 Q_4 - 2 S_4 C_4) - (s_t S_6^2 Q_6 - 2 S_6 C_6) decides where |D| exceeds `certain`
    times its terms' magnitudes (the codec's rule); equal candidates, and uncertain ones, keep 6."""
    if four == six:
        return six, False
    terms = np.zeros(2)
    sizes = np.zeros(2)
    for i in range(2):
        scale = four if i == 0 else six
        divisor = scale * s_t
        if divisor == 0:
            continue
        square, cross, size = 0.0, 0.0, 0.0
        for c in range(lo, hi):
            q = math.copysign(_round_to_grid64(abs(np.float64(x[r, c])) / divisor, element_grid), x[r, c])
            square += q * q
            cross += q * np.float64(x[r, c])
            size += abs(q * np.float64(x[r, c]))
        energy = s_t * (scale * scale) * square
        terms[i] = energy - 2.0 * scale * cross
        sizes[i] = energy + 2.0 * scale * size
    difference = terms[0] - terms[1]
    if abs(difference) <= certain * (sizes[0] + sizes[1]):
        return six, True
    return (four if difference < 0 else six), False


@cache
def nvfp4_fake_quant_kernel(parallel: bool, four_over_six: bool = False):
    """NVFP4 block_quantize then block_dequantize without the tensor scale, fused over a float32 matrix
    (docs/spec.md 7.3): per block of `block` elements along a row, ``S = E4M3(amax / (6 s_t))`` and each
    element ``E2M1(x / (S s_t)) * S``, both quotients formed in float64 from exact operands and rounded once,
    as the codec does. `scale_grid` and `element_grid` are grid_params of E4M3 and E2M1. Writes the float32
    values into `out` (rows, K) and ``S`` into `scales` (rows, blocks); a zero scale gives +0 elements.
    `four_over_six`: ``S`` is Four Over Six's pick between ``E4M3(amax / (4 s_t))`` and the above
    (_four_over_six_pick, `certain` its threshold); a block it cannot decide for certain is written with the
    6 candidate and marked in `unsure` (rows, blocks) for the caller's exact comparison (otherwise `certain`
    and `unsure` are unused). Returns the count of non-finite inputs (the caller raises)."""

    def loop(x, s_t, block, scale_grid, element_grid, certain, out, scales, unsure):
        n_bad = 0
        k = x.shape[1]
        element_max = element_grid[3]
        for r in numba.prange(x.shape[0]):
            for b in range(scales.shape[1]):
                lo, hi = b * block, min(b * block + block, k)
                amax, bad = _block_amax(x, r, lo, hi)
                n_bad += bad
                scale = _round_to_grid64(np.float64(amax) / (element_max * s_t), scale_grid)
                if four_over_six:
                    four = _round_to_grid64(np.float64(amax) / (4.0 * s_t), scale_grid)
                    scale, unsure[r, b] = _four_over_six_pick(x, r, lo, hi, four, scale, s_t, element_grid, certain)
                scales[r, b] = np.float32(scale)
                _write_block(x, r, lo, hi, scale, s_t, element_grid, out)
        return n_bad

    return numba.njit(nogil=True, parallel=parallel, fastmath=False)(loop)
