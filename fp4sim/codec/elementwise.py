"""encode / decode: floats <-> format codes, one code per element, bit-exact (docs/spec.md section 1).

Both take numpy arrays or CPU torch tensors of any shape and return the same
kind. Codes are uint8, one per element; `fp4sim.codec.packing` packs 4-bit
codes two to a byte.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np

from .._interop import first_index, like_input, require_float, require_uint8, to_numpy
from ..formats import Format, get_format
from . import _kernels as kernels

Rounding = Literal["nearest_even", "stochastic", "toward_zero"]
NanPolicy = Literal["raise", "encode"]

_ROUNDING_MODES = {"nearest_even": kernels.RNE, "toward_zero": kernels.RTZ, "stochastic": kernels.STOCHASTIC}
SHIFT_LIMIT = 127  # |shift| bound: keeps bias + shift far inside float64's exponent range
_NO_SHIFT = np.zeros(0, dtype=np.int8)


def encode(
    x: Any,
    fmt: str | Format,
    *,
    rounding: Rounding = "nearest_even",
    seed: int | None = None,
    scale: Any = None,
    axis: int = -1,
    shift: Any = None,
    nan: NanPolicy = "raise",
    out: Any = None,
) -> Any:
    """Encode floats to codes of `fmt` (uint8, same shape as `x`).

    Args:
        x: float16, bfloat16, float32 or float64 array or CPU tensor.
        fmt: a :class:`Format` or a name accepted by :func:`fp4sim.get_format`.
        rounding: ``"nearest_even"``, ``"stochastic"`` (needs `seed`) or
            ``"toward_zero"``.
        seed: integer seed for stochastic rounding; the same seed, input and
            shape give the same codes on any number of threads.
        scale: positive scalar, or 1-D per-channel scales along `axis`; the
            value encoded is ``x / scale`` rounded once in the working precision
            (float32, or float64 for float64 input).
        axis: the channel axis for a 1-D `scale`.
        shift: integers broadcastable to ``x.shape``; each element is encoded
            with exponent bias ``fmt.bias + shift`` (i.e. ``x * 2**shift``
            with no intermediate rounding).
        nan: ``"raise"`` (ValueError naming the first NaN) or ``"encode"``
            (NaN -> the format's NaN code; see docs/spec.md for formats without one).
        out: optional C-contiguous uint8 array of ``x``'s shape to write into.
    """
    fmt = get_format(fmt)
    mode = _rounding_mode(rounding, seed)
    if nan not in ("raise", "encode"):
        raise ValueError(f"nan must be 'raise' or 'encode', got {nan!r}")
    xs = to_numpy(x, "x")
    require_float(xs, "x")
    work = np.float64 if xs.dtype == np.float64 else np.float32
    values = xs.astype(work, copy=False)
    if scale is not None:
        values = values / _channel_scale(scale, xs.shape, axis, work)
    shifts = _element_shift(shift, xs.shape)
    flat = np.ascontiguousarray(values).reshape(-1)
    result = _output(out, xs.shape, np.uint8)
    n_invalid = kernels.run_encode(flat, shifts, result.reshape(-1), mode, _seed64(seed), fmt)
    if n_invalid and nan == "raise":
        raise ValueError(_invalid_message(values, fmt, n_invalid))
    return out if out is not None else like_input(result, x)


def decode(
    codes: Any, fmt: str | Format, *, scale: Any = None, axis: int = -1, shift: Any = None, out: Any = None
) -> Any:
    """Decode uint8 codes of `fmt` to float32 values (same shape as `codes`).

    The result is ``value(code) * 2**-shift * scale``: the first product is
    exact (checked), the multiply by `scale` rounds once in float32. `out`, if
    given, is a C-contiguous float32 array of ``codes``' shape to write into.
    """
    fmt = get_format(fmt)
    cs = to_numpy(codes, "codes")
    require_uint8(cs, "codes")
    table = _float32_table(fmt)
    shifts = _element_shift(shift, cs.shape)
    if shifts.size:
        _check_shift_exact(fmt, int(shifts.min()), int(shifts.max()))
    flat = np.ascontiguousarray(cs).reshape(-1)
    result = _output(out, cs.shape, np.float32)
    n_bad = kernels.run_decode(flat, shifts, table, _POW2_NEG, result.reshape(-1))
    if n_bad:
        bad = cs >= (1 << fmt.nbits)
        where = first_index(bad)
        raise ValueError(
            f"codes has {n_bad} value(s) outside the {fmt.nbits}-bit format {fmt.name} "
            f"(first: {int(cs[where])} at index {where}); valid codes are 0..{(1 << fmt.nbits) - 1}. "
            "Packed 4-bit data must go through fp4sim.unpack_fp4 first."
        )
    if scale is not None:
        result *= _channel_scale(scale, cs.shape, axis, np.float32)
    return out if out is not None else like_input(result, codes)


def quantize_dequantize_rows(
    x: np.ndarray, fmt: Format, row_scale: np.ndarray, col_shift: np.ndarray | None
) -> np.ndarray | None:
    """``decode(encode(x, scale=row_scale, axis=0, shift=col_shift), ...)``: the same bits, or None.

    For a float32 matrix (M, N) with one scale per row (M,) or one in all (1,)
    and one integer shift per column (N,) or none, in an LLM-FP4 family format
    (finite, signed, with subnormals, saturating). Inside the fused kernel's
    domain (spec 1.9) one pass without the code array in between; outside it,
    the two calls themselves. None for other formats and for input holding
    NaN (the caller takes its own path); ValueError where decode would raise.
    """
    if x.dtype != np.float32 or x.ndim != 2 or not fmt.is_llm_fp4_family or fmt.mbits > 22:
        return None
    shifts = np.zeros(x.shape[1], np.int64) if col_shift is None else np.asarray(col_shift).astype(np.int64)
    if shifts.shape != (x.shape[1],):
        raise ValueError(f"col_shift must have one shift per column, shape ({x.shape[1]},); got {shifts.shape}")
    lo, hi = (int(shifts.min()), int(shifts.max())) if shifts.size else (0, 0)
    if lo < -SHIFT_LIMIT or hi > SHIFT_LIMIT:
        raise ValueError(f"shift must lie in [-{SHIFT_LIMIT}, {SHIFT_LIMIT}], got [{lo}, {hi}]")
    _check_shift_exact(fmt, lo, hi)
    row_scale = np.ascontiguousarray(row_scale, dtype=np.float32).reshape(-1)
    if row_scale.size not in (1, x.shape[0]) or not np.all(np.isfinite(row_scale) & (row_scale > 0)):
        raise ValueError(f"row_scale must hold 1 or {x.shape[0]} finite scales > 0; got {row_scale.size} values")
    if fused_domain(fmt):
        up, down = (np.ldexp(np.float32(1), sign * shifts).astype(np.float32) for sign in (1, -1))
        min_normal = np.float32(2.0**fmt.lowest_exponent)
        magic = np.float32(2.0 ** (fmt.lowest_exponent - fmt.mbits + 23))  # its ulp is the subnormal step
        out = np.empty_like(x)
        kernel = kernels.fake_quant_kernel(x.size >= kernels.PARALLEL_MIN_SIZE, lo < 0)
        if not kernel(x, row_scale, up, down, fmt.mbits, min_normal, np.float32(fmt.max_value), magic, out):
            return out
    if np.isnan(x).any():
        return None
    scale = row_scale[0] if row_scale.size == 1 else row_scale
    shift = None if col_shift is None else shifts[None, :]
    return decode(encode(x, fmt, scale=scale, axis=0, shift=shift), fmt, scale=scale, axis=0, shift=shift)


def fused_domain(fmt: Format) -> bool:
    """Whether the fused kernel's constants exist for `fmt` (spec 1.9): its smallest normal is an FP32 normal,
    its largest value is finite in FP32, and the power of two whose ulp is its subnormal step is too."""
    step_exponent = fmt.lowest_exponent - fmt.mbits
    return fmt.lowest_exponent >= -126 and step_exponent + 23 <= 127 and float(fmt.max_value) < 2.0**128


def _output(out: Any, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A fresh result array, or the caller's `out` checked for shape, dtype and layout."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    result = to_numpy(out, "out")
    if result.shape != shape or result.dtype != dtype or not result.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}; "
            f"got {result.dtype} {result.shape}{'' if result.flags.c_contiguous else ' (not contiguous)'}"
        )
    return result


# 2**-s as float32 for s in [-128, 127], indexed by s + 128 (inf/0 outside
# float32's range; _check_shift_exact keeps lookups inside it).
with np.errstate(over="ignore"):
    _POW2_NEG = np.ldexp(np.float32(1), -np.arange(-128, 128)).astype(np.float32)


def _rounding_mode(rounding: str, seed: int | None) -> int:
    if rounding not in _ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {list(_ROUNDING_MODES)}, got {rounding!r}")
    if rounding == "stochastic" and seed is None:
        raise ValueError("rounding='stochastic' needs seed=<int>; the same seed reproduces the same codes")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return _ROUNDING_MODES[rounding]


def _seed64(seed: int | None) -> int:
    """The seed folded into int64 range (the kernel reinterprets it as uint64)."""
    value = int(seed or 0) & ((1 << 64) - 1)
    return value - (1 << 64) if value >= 1 << 63 else value


def _channel_scale(scale: Any, shape: tuple[int, ...], axis: int, dtype: type) -> np.ndarray:
    """`scale` as an array that broadcasts over `shape`, along `axis` if 1-D."""
    s = to_numpy(scale, "scale")
    if s.dtype.kind not in "fiu":
        raise TypeError(f"scale must be real numbers, got {s.dtype}")
    s = s.astype(dtype)
    if s.ndim > 1:
        raise ValueError(f"scale must be a scalar or 1-D per-channel, got shape {s.shape}")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"scale must be finite and > 0 (in {np.dtype(dtype).name}); got min {s.min()}")
    if s.ndim == 0:
        return s
    if not shape:
        raise ValueError("a 1-D scale needs an array with a channel axis, got a scalar")
    ax = axis % len(shape) if -len(shape) <= axis < len(shape) else None
    if ax is None:
        raise ValueError(f"axis {axis} is out of range for shape {shape}")
    if s.size != shape[ax]:
        raise ValueError(f"scale has {s.size} entries but axis {axis} of shape {shape} has {shape[ax]} channels")
    return s.reshape([-1 if i == ax else 1 for i in range(len(shape))])


def _element_shift(shift: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`shift` broadcast to `shape`, flat int8, range-checked; empty when None."""
    if shift is None:
        return _NO_SHIFT
    s = to_numpy(shift, "shift")
    if s.dtype.kind not in "iu":
        raise TypeError(f"shift must hold integers, got {s.dtype}")
    if s.size and (s.min() < -SHIFT_LIMIT or s.max() > SHIFT_LIMIT):
        raise ValueError(f"shift must lie in [-{SHIFT_LIMIT}, {SHIFT_LIMIT}], got [{s.min()}, {s.max()}]")
    try:
        full = np.broadcast_to(s, shape)
    except ValueError:
        raise ValueError(f"shift of shape {s.shape} does not broadcast to {shape}") from None
    return np.ascontiguousarray(full, dtype=np.int8).reshape(-1)


@lru_cache(maxsize=256)
def _float32_table(fmt: Format) -> np.ndarray:
    """Every code's value as float32; ValueError if any does not fit exactly."""
    exact = fmt.values()
    with np.errstate(over="ignore"):
        table = exact.astype(np.float32)
    if not np.array_equal(table.astype(np.float64), exact, equal_nan=True):
        raise ValueError(f"{fmt.name} has values float32 cannot hold exactly; choose a bias nearer the IEEE one")
    table.flags.writeable = False
    return table


def _check_shift_exact(fmt: Format, lo: int, hi: int) -> None:
    """ValueError unless every value * 2**-shift, shift in [lo, hi], is a float32."""
    finest_step = fmt.lowest_exponent - fmt.mbits - hi  # log2 of the smallest ulp after shifting
    largest = float(fmt.max_value) * 2.0**-lo
    if finest_step < -149 or largest >= 2.0**128:
        raise ValueError(
            f"shifts in [{lo}, {hi}] take {fmt.name} values outside what float32 holds exactly; "
            "decode with a smaller shift range"
        )


def _invalid_message(values: np.ndarray, fmt: Format, count: int) -> str:
    if fmt.signed:
        where = first_index(np.isnan(values))
        return (
            f"x has {count} NaN value(s), first at index {where}; remove them, or pass "
            f"nan='encode' to map NaN to code {_nan_target(fmt)} (docs/spec.md, section 1.5)"
        )
    bad = np.isnan(values) | (values <= 0)
    where = first_index(bad)
    return (
        f"x has {count} value(s) that {fmt.name} cannot represent (NaN, zero or negative), "
        f"first {values[where]} at index {where}; pass nan='encode' to map them to the NaN code "
        f"0x{fmt.nan_code:02X}"
    )


def _nan_target(fmt: Format) -> str:
    if fmt.nan_code is not None:
        return f"0x{fmt.nan_code:02X} (the format's NaN; 0x{fmt.nan_code | fmt.sign_mask:02X} for -NaN)"
    return f"0x{fmt.sign_mask:02X} (-0; +0 for -NaN, as ml_dtypes does)"
