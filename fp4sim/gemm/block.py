"""Block-scaled FP4 GEMM under every accumulation model (docs/spec.md, section 7.5).

``block_gemm(a, w)`` computes ``a @ w.T`` for block tensors that share K:
each 16-element group's products are summed exactly (an integer in units of
2^-2), scaled by the two block scales, and the scaled group sums are combined
by the accumulation model; NVFP4's tensor scales multiply the FP32 result.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..codec.blockscaled import E8M0_NAN, BlockTensor, block_dequantize
from ..hw.fp4_round_to_float import float32_parts, float32_to_float, fp4_round_to_float, output_format
from .study import (
    NEGATIVE_ZERO,
    Accumulation,
    aligned_sum,
    check_aligned_width,
    fp32_sequential_gemm,
    parse_accumulation,
)
from .superaccumulator import (
    SUPERACCUMULATOR_ADDS,
    SUPERACCUMULATOR_BIN,
    superaccumulator_add,
    superaccumulator_to_fp32,
)

GROUP = 16  # elements per exactly summed group (MMA-Sim's mxf4nvf4 datapath, also for 32-element MX blocks)
BLOCK_FUSED_DEFAULT = 64  # elements per fused add: the K of one m16n8k64 FP4 MMA instruction
ZERO_EXPONENT = -126  # what a zero scale or a zero c contributes to the adder's maximum exponent (MMA-Sim)
_PRODUCT_LSB = -2  # E2M1 values are multiples of 2^-1, their products of 2^-2
TERM_SIGNIFICAND_BITS = 12  # |group sum| <= 16 * 36 = 576, times two scale significands < 2 each: < 2^12
TERM_VALUE_BITS = 19  # the same term as an integer at its LSB: |P| * 4 <= 2304, times two integer significands <= 15
FLOAT64_SIGNIFICAND_BITS = 53
_CHUNK_ELEMENTS = 1 << 20  # group sums held at once (float32, 4 MB): stays in cache, bounds memory
_FUSED_CHUNK_ELEMENTS = 1 << 22  # fused sums held at once (float64, 32 MB): fewer, larger batched BLAS calls


def block_gemm(a: BlockTensor, w: BlockTensor, *, accum: str | Accumulation = "exact", out: str = "fp32") -> np.ndarray:
    """``a @ w.T`` for block tensors a (M, K) and w (N, K) of one block format.

    Args:
        a, w: BlockTensors (e.g. from block_quantize), K along the last axis.
        accum: ``"exact"`` (one rounding of the exact sum), ``"fp32_sequential"``
            or ``"aligned_truncate:N[:G]"`` (G elements per fused add, a multiple
            of 16; default 64, NVIDIA's FP4 MMA: ``aligned_truncate:35``).
        out: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        (M, N) array of `out`'s dtype: the FP32 sum times ``fp32(s_a * s_w)``
        (NVFP4's tensor scales), rounded to `out`. A NaN block scale anywhere
        in row m of a or row n of w makes output (m, n) NaN.
    """
    _check_pair(a, w)
    model = parse_accumulation(accum)
    fmt_out = output_format(out)
    if model.kind == "fp32_sequential":
        a_hat = block_dequantize(a, include_tensor_scale=False)
        w_hat = block_dequantize(w, include_tensor_scale=False)
        y = fp32_sequential_gemm(np.ascontiguousarray(a_hat), np.ascontiguousarray(w_hat.T))
    else:
        if -(-a.shape[1] // GROUP) > SUPERACCUMULATOR_ADDS:
            raise ValueError(f"K = {a.shape[1]} exceeds the golden model's {SUPERACCUMULATOR_ADDS * GROUP} elements")
        y = _exact_gemm(a, w) if model.kind == "exact" else _aligned_gemm(a, w, model)
    if a.fmt.tensor_scale:
        y *= np.float32(a.tensor_scale * w.tensor_scale)  # alpha rounded once, then one FP32 multiply
    nan = _nan_rows(a)[:, None] | _nan_rows(w)[None, :]
    result = float32_to_float(np.where(nan, 0, y), fmt_out)
    result[nan] = np.nan
    return result


def _check_pair(a: BlockTensor, w: BlockTensor) -> None:
    if not (isinstance(a, BlockTensor) and isinstance(w, BlockTensor)):
        raise TypeError("block_gemm takes two BlockTensors (fp4sim.block_quantize makes them)")
    if a.fmt != w.fmt:
        raise ValueError(f"operands have different block formats: {a.fmt.name} and {w.fmt.name}")
    if len(a.shape) != 2 or len(w.shape) != 2:
        raise ValueError(f"a must be (M, K) and w (N, K); got shapes {a.shape} and {w.shape}")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"a and w must share K (the last axis): {a.shape} and {w.shape}")
    if a.shape[1] == 0:
        raise ValueError("K must be at least 1")


def _exact_gemm(a: BlockTensor, w: BlockTensor) -> np.ndarray:
    """FP32 results of the exact model: one float64 BLAS product wherever spec 7.5 proves it exact.

    Every product of output (m, n) is a multiple of ``2^L``, L = -2 plus the
    lowest scale LSB of row m of a and of row n of w, and every partial sum
    a BLAS forms is at most ``K max|a_hat[m]| max|w_hat[n]|``; when that is at
    most ``2^(53 + L)`` the float64 sum is exact and its cast to float32 is
    the one rounding. Rows with an output beyond the bound take the group path.
    """
    a_hat, a_low = _dequantized64(a)
    w_hat, w_low = _dequantized64(w)
    y = (_float64_matmul(a_hat, w_hat) + 0.0).astype(np.float32)  # + 0.0: a zero sum is +0
    peak = a.shape[1] * np.abs(a_hat).max(axis=1)[:, None] * np.abs(w_hat).max(axis=1)[None, :]
    exact = peak <= np.ldexp(1.0, 53 + _PRODUCT_LSB + a_low[:, None] + w_low[None, :])
    rows = np.flatnonzero(~exact.all(axis=1))
    if rows.size:
        subset = BlockTensor(a.fmt, a.codes[rows], a.scales[rows], a.tensor_scale)
        y[rows] = _scaled_group_gemm(subset, w)
    return y


def _dequantized64(t: BlockTensor) -> tuple[np.ndarray, np.ndarray]:
    """``value(q) * S_b`` in float64, exact (NaN scales as 0, masked later), and each row's lowest scale LSB exponent.

    An element has 2 significand bits and a scale at most 4, so every value
    and every product of two is exact in float64, as is its range (scales
    within 2^+-127).
    """
    significand, lsb, _ = scale_parts(t)
    scales = np.ldexp(significand.astype(np.float64), lsb.astype(np.int32))
    values = t.fmt.element.values()[t.codes]
    pad = -values.shape[1] % t.fmt.block_size
    blocks = np.pad(values, ((0, 0), (0, pad))).reshape(values.shape[0], -1, t.fmt.block_size)
    scaled = (blocks * scales[:, :, None]).reshape(values.shape[0], -1)[:, : values.shape[1]]
    return scaled, lsb.min(axis=1, initial=1 << 20)


def _float64_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a @ w.T in float64 through torch's BLAS (one thread pool with the caller's torch work)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).matmul(torch.from_numpy(np.ascontiguousarray(w)).T).numpy()


def _scaled_group_gemm(a: BlockTensor, w: BlockTensor) -> np.ndarray:
    """FP32 results of the exact model from exact 16-element group sums (the rows the float64 bound leaves)."""
    a_sig, a_lsb, _ = scale_parts(a)
    w_sig, w_lsb, _ = scale_parts(w)
    per_group = a.fmt.block_size // GROUP
    a_int, w_int = _element_integers(a), _element_integers(w)
    m_size, n_size = a_int.shape[1], w_int.shape[1]
    result = np.empty((m_size, n_size), dtype=np.uint32)
    # Rows per chunk: enough for the kernels' threads (one row each), else as many as fit the chunk.
    rows = max(numba.get_num_threads(), _CHUNK_ELEMENTS // max(n_size * a_int.shape[0], 1))
    headroom = 62 - TERM_VALUE_BITS - a_int.shape[0].bit_length()  # LSB spread one int64 sum can take
    for start in range(0, m_size, rows):
        stop = min(start + rows, m_size)
        sums = _group_sums(a_int[:, start:stop], w_int)
        result[start:stop] = _exact_kernel(
            sums, a_sig[start:stop], a_lsb[start:stop], w_sig, w_lsb, per_group, headroom
        )
    return result.view(np.float32)


def _aligned_gemm(a: BlockTensor, w: BlockTensor, model: Accumulation) -> np.ndarray:
    """FP32 results of a block aligned_truncate model (spec 7.5), from exact fused sums where no bit is truncated.

    One fused add covers `fused` elements. Its exact sum F comes from a float64
    BLAS product; the kernel uses it when every term is a multiple of the
    truncation step, and sums the groups one by one otherwise.
    """
    fused = model.group or BLOCK_FUSED_DEFAULT
    if fused % GROUP:
        raise ValueError(f"block-scaled aligned_truncate needs a group that is a multiple of {GROUP}, got {fused}")
    check_aligned_width(model, TERM_SIGNIFICAND_BITS, fused // GROUP)
    # |a_hat * w_hat| < 2^(e_max + 8) per element: F's partial sums stay within 53 bits above the step.
    exact_fused = model.frac_bits + 8 + fused.bit_length() <= FLOAT64_SIGNIFICAND_BITS
    a_parts, w_parts = scale_parts(a), scale_parts(w)
    a_bounds = _fused_bounds(a_parts, a, fused)
    w_bounds_t = tuple(np.ascontiguousarray(x.T) for x in _fused_bounds(w_parts, w, fused))  # (adds, N): n innermost
    k = a.shape[1]
    pad = -k % fused
    a_hat = np.pad(_dequantized64(a)[0], ((0, 0), (0, pad)))
    w_hat = np.pad(_dequantized64(w)[0], ((0, 0), (0, pad)))
    a_codes = np.pad(a.codes, ((0, 0), (0, pad)))  # code 0 is +0
    w_codes = np.pad(w.codes, ((0, 0), (0, pad)))
    table = (a.fmt.element.values() * 2).astype(np.int64)  # element values in units of 2^-1
    per_group = a.fmt.block_size // GROUP
    m_size, n_size, adds = a.shape[0], w.shape[0], a_hat.shape[1] // fused
    w_fused = np.ascontiguousarray(w_hat.reshape(n_size, adds, fused).transpose(1, 2, 0))
    result = np.empty((m_size, n_size), dtype=np.uint32)
    rows = max(numba.get_num_threads(), _FUSED_CHUNK_ELEMENTS // max(n_size * adds, 1))
    for start in range(0, m_size, rows):
        stop = min(start + rows, m_size)
        a_fused = np.ascontiguousarray(a_hat[start:stop].reshape(stop - start, adds, fused).transpose(1, 0, 2))
        sums = _fused_sums(a_fused, w_fused)
        parts = tuple(p[start:stop] for p in (*a_parts, *a_bounds)) + w_parts + w_bounds_t
        shape = (-(-k // GROUP), per_group, model.frac_bits, fused // GROUP, exact_fused)
        result[start:stop] = _aligned_kernel(sums, a_codes[start:stop], w_codes, table, *parts, *shape)
    return result.view(np.float32)


def _fused_bounds(parts: tuple[np.ndarray, ...], t: BlockTensor, fused: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row and fused add: the largest alignment exponent and the smallest LSB exponent of its blocks' scales."""
    _, lsb, align = parts
    groups = -(-t.shape[1] // GROUP)
    per_fused = fused // GROUP
    block = np.arange(-(-groups // per_fused) * per_fused) // (t.fmt.block_size // GROUP)
    block = np.minimum(block, lsb.shape[1] - 1)  # past the last group: repeat the last block (a bound still)
    shape = (t.shape[0], -1, per_fused)
    return align[:, block].reshape(shape).max(axis=2), lsb[:, block].reshape(shape).min(axis=2)  # (rows, adds)


def _fused_sums(a_fused: np.ndarray, w_fused: np.ndarray) -> np.ndarray:
    """(adds, M, N) float64 sums of each fused add's element products: a batched BLAS product."""
    import torch

    return torch.bmm(torch.from_numpy(a_fused), torch.from_numpy(w_fused)).numpy()


def scale_parts(t: BlockTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each block scale as (integer significand, exponent of its LSB, exponent the adder aligns by).

    scale = significand * 2**lsb. The alignment exponent is the scale's
    exponent with its significand in [1, 2), clamped up to the format's
    smallest normal exponent for subnormals; a zero scale aligns at -126
    (MMA-Sim's extract_significand_exponent). NaN scales give 0 (masked later).
    """
    fmt = t.fmt.scale
    values = np.nan_to_num(t.fmt.scale.values(), nan=0.0)[t.scales]
    _, exponent = np.frexp(values)
    align = np.maximum(exponent - 1, fmt.lowest_exponent)
    lsb = align - fmt.mbits
    significand = np.ldexp(values, -lsb).astype(np.int64)  # exact: every scale is an integer at its LSB
    return significand, lsb.astype(np.int64), np.where(values > 0, align, ZERO_EXPONENT).astype(np.int64)


def _element_integers(t: BlockTensor) -> np.ndarray:
    """Element values times 2 (integers), (groups, rows, 16) float32, zero-padded to whole groups."""
    table = (t.fmt.element.values() * 2).astype(np.float32)
    values = table[t.codes]
    pad = -values.shape[1] % GROUP
    values = np.pad(values, ((0, 0), (0, pad)))
    return np.ascontiguousarray(values.reshape(values.shape[0], -1, GROUP).transpose(1, 0, 2))


def _group_sums(a_int: np.ndarray, w_int: np.ndarray) -> np.ndarray:
    """(M, N, groups) exact group sums in units of 2^-2: |sum| <= 16 * 144, exact in float32 BLAS.

    Groups last, so the kernels read each output's sums contiguously.
    """
    import torch

    sums = torch.bmm(torch.from_numpy(a_int), torch.from_numpy(w_int).transpose(1, 2))
    return sums.permute(1, 2, 0).contiguous().numpy()


@numba.njit(cache=True, inline="always")
def _scaled_group_sum(
    sums: np.ndarray,
    m: int,
    n: int,
    g: int,
    per_group: int,
    a_sig: np.ndarray,
    a_lsb: np.ndarray,
    w_sig: np.ndarray,
    w_lsb: np.ndarray,
) -> tuple[int, int]:
    """Group g of output (m, n) times both of its block scales, exactly: (integer, exponent of its LSB)."""
    b = g // per_group
    return np.int64(sums[m, n, g]) * a_sig[m, b] * w_sig[n, b], _PRODUCT_LSB + a_lsb[m, b] + w_lsb[n, b]


@numba.njit(cache=True, parallel=True)
def _exact_kernel(
    sums: np.ndarray,
    a_sig: np.ndarray,
    a_lsb: np.ndarray,
    w_sig: np.ndarray,
    w_lsb: np.ndarray,
    per_group: int,
    headroom: int,
) -> np.ndarray:
    """FP32 bits of every exact block-scaled dot product (one rounding of the exact sum).

    An output whose nonzero terms' LSBs lie within `headroom` bits of each
    other is summed in one int64; a wider one goes through the superaccumulator.
    """
    m_size, n_size, groups = sums.shape
    base = _PRODUCT_LSB + a_lsb.min() + w_lsb.min()
    span = a_lsb.max() + w_lsb.max() + _PRODUCT_LSB - base + 64  # room for the largest term and the carries
    n_bins = span // SUPERACCUMULATOR_BIN + 3
    result = np.empty((m_size, n_size), dtype=np.uint32)
    for m in numba.prange(m_size):
        bins = np.empty(n_bins, dtype=np.int64)
        values = np.empty(groups, dtype=np.int64)
        offsets = np.empty(groups, dtype=np.int64)
        for n in range(n_size):
            low, high = np.int64(1) << 40, -(np.int64(1) << 40)
            for g in range(groups):
                values[g], lsb = _scaled_group_sum(sums, m, n, g, per_group, a_sig, a_lsb, w_sig, w_lsb)
                offsets[g] = lsb - base
                if values[g] != 0:
                    low, high = min(low, offsets[g]), max(high, offsets[g])
            if low > high:
                result[m, n] = 0
            elif high - low <= headroom:  # the usual case: one int64 holds the exact sum
                total = np.int64(0)
                for g in range(groups):
                    if values[g] != 0:
                        total += values[g] << (offsets[g] - low)
                result[m, n] = fp4_round_to_float(total, low + base, 8, 23, False)
            else:
                bins[:] = 0
                for g in range(groups):
                    if values[g] != 0:
                        superaccumulator_add(bins, values[g], offsets[g])
                result[m, n] = superaccumulator_to_fp32(bins, base)
    return result


@numba.njit(cache=True, parallel=True)
def _aligned_kernel(
    sums: np.ndarray,
    a_codes: np.ndarray,
    w_codes: np.ndarray,
    table: np.ndarray,
    a_sig: np.ndarray,
    a_lsb: np.ndarray,
    a_align: np.ndarray,
    a_top: np.ndarray,
    a_low: np.ndarray,
    w_sig: np.ndarray,
    w_lsb: np.ndarray,
    w_align: np.ndarray,
    w_top: np.ndarray,
    w_low: np.ndarray,
    groups: int,
    per_group: int,
    frac_bits: int,
    fused: int,
    exact_fused: bool,
) -> np.ndarray:
    """FP32 bits under aligned_truncate: c plus `fused` scaled group sums per fused add (spec 7.5).

    A fused add whose terms (c included) are all multiples of the truncation
    step ``2^(e_max - N)`` loses nothing: it is ``c + F`` truncated to FP32,
    with F the exact fused sum `sums[f, m, n]`. Any other goes through
    :func:`aligned_sum` with group sums from the codes.
    """
    adds, m_size, n_size = sums.shape
    result = np.empty((m_size, n_size), dtype=np.uint32)
    for m in numba.prange(m_size):
        values = np.empty(fused, dtype=np.int64)
        lsbs = np.empty(fused, dtype=np.int64)
        exponents = np.empty(fused, dtype=np.int64)
        scratch = np.empty(1, dtype=np.float32)
        scratch_bits = scratch.view(np.uint32)
        c_row = np.zeros(n_size, dtype=np.int64)  # c of every output of row m, one fused add at a time
        for f in range(adds):
            count = min(fused, groups - f * fused)
            for n in range(n_size):
                c_bits = c_row[n]
                c_sig, c_lsb = float32_parts(c_bits)
                # A step from upper bounds of the exponents: terms that are multiples of it are whole under e_max.
                top = max(c_lsb + 23 if c_sig != 0 else ZERO_EXPONENT, a_top[m, f] + w_top[f, n])
                step = top - frac_bits
                low = _PRODUCT_LSB + a_low[m, f] + w_low[f, n]
                if exact_fused and low >= step and _multiple_of(c_sig, c_lsb, step):
                    # c and F are multiples of 2^step below 2^(step + 53): their float64 sum is exact.
                    exact = math.ldexp(np.float64(c_sig), c_lsb) + sums[f, m, n]
                    scratch[0] = np.float32(exact)  # nearest; one ulp toward zero if that rounded away
                    bits = np.int64(scratch_bits[0]) - (1 if abs(np.float64(scratch[0])) > abs(exact) else 0)
                    c_row[n] = 0 if bits == NEGATIVE_ZERO else bits
                    continue
                for i in range(count):
                    g = f * fused + i
                    b = g // per_group
                    exponents[i] = a_align[m, b] + w_align[n, b]
                    lsbs[i] = _PRODUCT_LSB + a_lsb[m, b] + w_lsb[n, b]
                    total = np.int64(0)
                    for j in range(g * GROUP, (g + 1) * GROUP):
                        total += table[a_codes[m, j]] * table[w_codes[n, j]]
                    values[i] = total * a_sig[m, b] * w_sig[n, b]
                terms = (values[:count], lsbs[:count], exponents[:count])
                c_row[n] = aligned_sum(c_bits, *terms, frac_bits, ZERO_EXPONENT)
        result[m] = c_row
    return result


@numba.njit(cache=True, inline="always")
def _multiple_of(significand: int, lsb: int, step: int) -> bool:
    """Whether significand * 2**lsb (|significand| < 2^24) is an integer multiple of 2**step."""
    if significand == 0 or lsb >= step:
        return True
    if step - lsb > 23:
        return False
    return (abs(significand) & ((np.int64(1) << (step - lsb)) - 1)) == 0


def _nan_rows(t: BlockTensor) -> np.ndarray:
    """Rows holding a NaN block scale (only MX's E8M0 has one)."""
    if t.fmt.tensor_scale:
        return np.zeros(t.shape[0], dtype=bool)
    return (t.scales == E8M0_NAN).any(axis=1)
