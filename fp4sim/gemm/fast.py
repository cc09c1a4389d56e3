"""Fast GEMM with the array's bits, without stepping cycles (docs/spec.md, section 4).

Exact mode turns codes into integers at the accumulator's LSB (spec 2.1) and
multiplies them with BLAS in floating point, which is exact while every partial
sum stays below 2^24 (float32) or 2^53 (float64). In between, the weights are
split by exponent into two float32-exact pieces; past 2^53, K is split and the
pieces are added in int64 (spec 4.2). The study models reuse the exact result
wherever spec 4.3 proves it equal and loop in Numba over the other outputs.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .._interop import like_input, to_numpy
from ..formats import Format
from ..hw.fp4_array import check_operands
from ..hw.fp4_operand_decode import operand_table
from ..hw.fp4_pe_product import product_table
from ..hw.fp4_pkg import K_MAX_DEFAULT, PEConfig
from ..hw.fp4_round_to_float import FP32, OutputFormat, accumulators_to_float, float32_to_float, output_format
from .study import (
    ALIGNED_GROUP_DEFAULT,
    Accumulation,
    aligned_truncate_outputs,
    check_aligned_width,
    exponent_table,
    fp32_sequential_gemm,
    parse_accumulation,
)

FLOAT32_EXACT = 1 << 24  # every integer of magnitude <= 2^24 is a float32
FLOAT64_EXACT = 1 << 53
PRODUCT_SIGNIFICAND_BITS = 2  # a product of normalised operands has its significand in [1, 4)


def gemm(
    a_codes: Any,
    w_codes: Any,
    shifts: Any,
    fmt_a: str | Format,
    fmt_w: str | Format,
    *,
    accum: str | Accumulation = "exact",
    out: str = "fp32",
    scale: Any = None,
    shift_bits: int | None = None,
    k_max: int = K_MAX_DEFAULT,
) -> Any:
    """``A @ (W * 2^-shift)`` on FP4 codes, bit-identical to the array model.

    Args:
        a_codes: (M, K) uint8 activation codes of `fmt_a`.
        w_codes: (K, N) uint8 weight codes of `fmt_w`.
        shifts: (K,) unsigned per-input-channel exponent shifts in
            ``0 .. 2**shift_bits - 1``, or None for all zero.
        fmt_a, fmt_w: operand formats (E3M0, E2M1, E1M2, any bias).
        accum: ``"exact"`` (the array's Kulisch accumulator), ``"fp32_sequential"``
            or ``"aligned_truncate:N[:G]"`` (docs/spec.md 2.6).
        out: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        scale: None, a scalar or (N,) per-output-channel scales, rounded to FP32;
            the result is then ``out(fp32(fp32(sum) * scale[n]))``.
        shift_bits: shift port width; default ``fmt_a.ebits``.
        k_max: the accumulator's K_max (exact mode rejects K > k_max).

    Returns:
        (M, N) array of `out`'s dtype (numpy float32 / ml_dtypes.bfloat16 /
        float16), or a CPU tensor when `a_codes` is one.
    """
    config = PEConfig.make(fmt_a, fmt_w, shift_bits, k_max)
    model = parse_accumulation(accum)
    fmt_out = output_format(out)
    a, w, s = check_operands(a_codes, w_codes, shifts, config)
    if model.kind == "exact" and a.shape[1] > config.k_max:
        raise ValueError(
            f"K={a.shape[1]} exceeds the accumulator's K_max={config.k_max} ({config.describe()}); "
            "pass a larger k_max (one more accumulator bit per doubling) or split K outside the array"
        )
    scales = _output_scale(scale, w.shape[1])
    if model.kind == "exact":
        acc = exact_accumulators(a, w, s, config)
        if scales is None and fmt_out != FP32:
            result = accumulators_to_float(acc, config.lsb_exponent, fmt_out)  # one rounding (2.4)
        else:
            result = _epilogue(_accumulators_to_fp32(acc, config.lsb_exponent), scales, fmt_out)
    else:
        result = _epilogue(_study_model(a, w, s, config, model), scales, fmt_out)
    return like_input(result, a_codes)


def exact_accumulators(a: np.ndarray, w: np.ndarray, s: np.ndarray, config: PEConfig) -> np.ndarray:
    """The Kulisch accumulator of every output, (M, N), via integer-exact float GEMMs (spec 4.2).

    Returns float32 or float64 holding the exact integers, or int64 when K had to be split.
    """
    k = a.shape[1]
    # Every X is a short integer times a power of two, so float32 holds each operand exactly.
    a_int = operand_matrix(a, operand_table(config.fmt_a)[None, :].astype(np.float32), np.zeros(len(a), np.uint8))
    row_bound = k * int(np.abs(a_int).max(initial=0))  # >= every partial sum / max|W|
    w_table = weight_table(config)
    w_bound = int(np.abs(w_table).max())
    if row_bound * w_bound <= FLOAT32_EXACT:
        return _blas_matmul(a_int, operand_matrix(w, w_table.astype(np.float32), s))
    low, high, split = split_weight_table(config)
    if row_bound * max(int(np.abs(low).max()), int(np.abs(high).max())) <= FLOAT32_EXACT:
        # A @ (2^t high): every partial sum is 2^t times an integer of at most 24 bits, so float32 is exact.
        acc = _blas_matmul(a_int, operand_matrix(w, low.astype(np.float32), s)).astype(np.float64)
        acc += _blas_matmul(a_int, operand_matrix(w, (high << split).astype(np.float32), s))
        return acc  # both terms are integers below 2^24 * 2^t: their float64 sum is exact
    a64, w64 = a_int.astype(np.float64), operand_matrix(w, w_table.astype(np.float64), s)
    if row_bound * w_bound <= FLOAT64_EXACT:
        return _blas_matmul(a64, w64)
    chunk = max(FLOAT64_EXACT // (row_bound // k * w_bound), 1)
    acc = _blas_matmul(a64[:, :chunk], w64[:chunk]).astype(np.int64)
    for start in range(chunk, k, chunk):
        acc += _blas_matmul(a64[:, start : start + chunk], w64[start : start + chunk]).astype(np.int64)
    return acc


def weight_table(config: PEConfig) -> np.ndarray:
    """W_int for every (shift, code): X_W(code) * 2^(S_max - s), int64 (spec 4.1)."""
    shifts = config.max_shift - np.arange(config.max_shift + 1)
    return operand_table(config.fmt_w)[None, :] << shifts[:, None]


def split_weight_table(config: PEConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """W_int = low + 2^t * high, split by the product's left shift (spec 4.2), t chosen to balance the halves.

    An entry is +-significand << amount with amount = (E_W - 1) + (S_max - s); entries with amount >= t go
    to `high` divided by 2^t (exact), the rest stay in `low`.
    """
    fmt = config.fmt_w
    codes = np.arange(1 << fmt.nbits)
    field = (codes >> fmt.mbits) & ((1 << fmt.ebits) - 1)
    amount = np.maximum(field, 1)[None, :] - 1 + (config.max_shift - np.arange(config.max_shift + 1))[:, None]
    table = weight_table(config)
    best = None
    for t in range(1, int(amount.max()) + 1):
        low = np.where(amount < t, table, 0)
        high = np.where(amount >= t, table >> t, 0)  # floor shift is exact: 2^t divides these entries
        peak = max(int(np.abs(low).max()), int(np.abs(high).max()))
        if best is None or peak < best[0]:
            best = (peak, low, high, t)
    return best[1], best[2], best[3]


def _blas_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b through torch's BLAS, sharing one thread pool with the caller's torch work."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).matmul(torch.from_numpy(np.ascontiguousarray(b))).numpy()


def _accumulators_to_fp32(acc: np.ndarray, lsb_exponent: int) -> np.ndarray:
    """Section 2.4 to FP32, with the shortcuts spec 4.1 proves equal to it.

    2^lsb keeps every accumulator in FP32's normal range (2.3), so scaling by
    it is exact in either float type; an exact float32 is then its own
    rounding, and an exact float64 rounds once in the cast. Adding +0 turns
    the -0 a float sum of negative zero products can give into the
    accumulator's +0.
    """
    if acc.dtype in (np.float32, np.float64):
        acc *= acc.dtype.type(2.0**lsb_exponent)
        acc += 0.0
        return acc.astype(np.float32, copy=False)
    return accumulators_to_float(acc, lsb_exponent, FP32)


@numba.njit(cache=True, parallel=True)
def operand_matrix(codes: np.ndarray, tables: np.ndarray, row_table: np.ndarray) -> np.ndarray:
    """out[i, j] = tables[row_table[i], codes[i, j]]: codes to integers, one table per row."""
    result = np.empty(codes.shape, dtype=tables.dtype)
    for i in numba.prange(codes.shape[0]):
        table = tables[row_table[i]]
        for j in range(codes.shape[1]):
            result[i, j] = table[codes[i, j]]
    return result


def _study_model(a: np.ndarray, w: np.ndarray, s: np.ndarray, config: PEConfig, model: Accumulation) -> np.ndarray:
    """FP32 results of a non-exact accumulation model: the exact GEMM where spec 4.3 proves it equal, else loops."""
    group = model.group or ALIGNED_GROUP_DEFAULT
    if model.kind == "aligned_truncate":
        check_aligned_width(model, PRODUCT_SIGNIFICAND_BITS, group)
    a_exponent, w_exponent = exponent_table(config.fmt_a.values()), exponent_table(config.fmt_w.values())
    limit = exact_limit(model, a_exponent, w_exponent, config.lsb_exponent)
    if limit:
        result = _accumulators_to_fp32(exact_accumulators(a, w, s, config), config.lsb_exponent)
        slow = _beyond(limit, a, w, s, config)
        if slow is None:
            return result
    else:
        result = np.empty((a.shape[0], w.shape[1]), dtype=np.float32)
        slow = np.ones(result.shape, dtype=bool)
    if model.kind == "fp32_sequential":
        w_values = config.fmt_w.values().astype(np.float32)
        shifted = (w_values[w] * np.ldexp(np.float32(1), -s.astype(np.int32))[:, None]).astype(np.float32)
        rows = np.flatnonzero(slow.any(axis=1))  # the loop does whole rows
        a_values = config.fmt_a.values().astype(np.float32)[a[rows]]
        result[rows] = np.where(slow[rows], fp32_sequential_gemm(a_values, shifted), result[rows])
        return result
    args = (a_exponent, w_exponent, config.lsb_exponent, model.frac_bits, group, slow, result.view(np.uint32))
    aligned_truncate_outputs(product_table(config), s, a, w, *args)
    return result


def exact_limit(model: Accumulation, a_exponent: np.ndarray, w_exponent: np.ndarray, lsb_exponent: int) -> int:
    """The largest sum of |products| (in LSBs) for which `model` gives the exact sum's FP32 bits (spec 4.3).

    0 when no sum qualifies: aligned_truncate with products whose exponent
    lies above ``LSB * 2^N`` (they can truncate each other).
    """
    if model.kind == "fp32_sequential":
        return FLOAT32_EXACT
    if int(a_exponent.max()) + int(w_exponent.max()) > lsb_exponent + model.frac_bits:
        return 0
    return min((2 << model.frac_bits) - 1, FLOAT32_EXACT)


def _beyond(limit: int, a: np.ndarray, w: np.ndarray, s: np.ndarray, config: PEConfig) -> np.ndarray | None:
    """(M, N) bool: outputs whose sum of |products| in LSBs exceeds `limit`; None when none does.

    Three bounds, cheapest first: K max|A_int| max|W_int| from the tables; per row
    ``sum_k |A_int[m, k]| max_n |W_int[k, n]|`` in int64; the exact magnitude GEMM for the rows it leaves.
    """
    a_table = np.abs(operand_table(config.fmt_a))
    w_table = np.abs(weight_table(config))
    if a.shape[1] * int(a_table.max()) * int(w_table.max()) <= limit:
        return None
    w_peak = operand_matrix(w, w_table, s).max(axis=1)  # (K,) max_n |W_int[k, n]|
    rows = np.flatnonzero(_row_bounds(a, a_table, w_peak) > limit)
    if not rows.size:
        return None
    a_rows, w_all = _magnitude_codes(a[rows], config.fmt_a), _magnitude_codes(w, config.fmt_w)
    magnitude = exact_accumulators(a_rows, w_all, s, config)
    beyond = np.zeros((a.shape[0], w.shape[1]), dtype=bool)
    beyond[rows] = magnitude > limit
    return beyond if beyond.any() else None


@numba.njit(cache=True, parallel=True)
def _row_bounds(codes: np.ndarray, table: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """(M,) int64: sum_k table[codes[m, k]] * peaks[k]; each term is at most P_max (spec 2.2), so no overflow."""
    result = np.empty(codes.shape[0], dtype=np.int64)
    for m in numba.prange(codes.shape[0]):
        total = np.int64(0)
        for k in range(codes.shape[1]):
            total += table[codes[m, k]] * peaks[k]
        result[m] = total
    return result


def _magnitude_codes(codes: np.ndarray, fmt: Format) -> np.ndarray:
    """The codes of |value|: the sign bit cleared."""
    return codes & np.uint8(0xFF ^ fmt.sign_mask)


def _output_scale(scale: Any, n: int) -> np.ndarray | None:
    """Per-output-channel scales as float32 of shape (N,), or None."""
    if scale is None:
        return None
    s = to_numpy(scale, "scale")
    if s.dtype.kind not in "fiu":
        raise TypeError(f"scale must be real numbers, got {s.dtype}")
    s = s.astype(np.float32)
    if s.ndim == 0:
        s = np.full(n, s, dtype=np.float32)
    if s.shape != (n,):
        raise ValueError(f"scale must be a scalar or have shape ({n},), one per output channel; got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scale must be finite")
    return s


def _epilogue(z: np.ndarray, scales: np.ndarray | None, fmt_out: OutputFormat) -> np.ndarray:
    """Optional FP32 multiply by the per-output-channel scale, then rounding to the output format."""
    if scales is not None:
        z = z * scales  # float32 x float32: one IEEE rounding
    return float32_to_float(z, fmt_out)
