"""Block-scaled FP4: MXFP4 and NVFP4 tensors, their encoder and decoder (docs/spec.md, section 7).

A block format stores FP4 (E2M1) element codes and one scale code per block of
consecutive elements along the last axis (the reduction axis of a GEMM):

- MXFP4 (OCP MX v1.0): blocks of 32, an E8M0 scale ``2^E`` with the OCP floor
  rule ``E = floor(log2 amax) - 2``.
- NVFP4: blocks of 16, an E4M3 scale rounded half-even from ``amax / 6`` in
  units of an FP32 tensor scale ``s_t = amax_tensor / (6 * 448)``.

A last block shorter than the block size behaves as if padded with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from .._interop import first_index, is_torch_tensor, require_uint8, to_numpy
from ..formats import Format, get_format
from . import _kernels as kernels
from .elementwise import decode, encode
from .packing import pack_fp4, unpack_fp4

ELEMENT = get_format("float4_e2m1fn")
E8M0_BIAS = 127
E8M0_NAN = 0xFF
NVFP4_TENSOR_RANGE = 6 * 448  # max E2M1 element * max E4M3 block scale
ELEMENT_MAX = float(ELEMENT.max_value)
MX_SCALE_RULES = ("floor", "ceil", "even", "rceil")  # spec 7.2: OCP's rule first, then torchao's other three


@dataclass(frozen=True)
class BlockFormat:
    """A block-scaled FP4 format.

    Attributes:
        name: "mxfp4" or "nvfp4".
        element: the element format (E2M1).
        scale: the per-block scale format (E8M0, or E4M3 saturating to 448).
        block_size: elements per scale.
        tensor_scale: whether an FP32 per-tensor scale multiplies every block scale.
    """

    name: str
    element: Format
    scale: Format
    block_size: int
    tensor_scale: bool

    @property
    def bits_per_element(self) -> float:
        """Storage per element including the block scale (the FP32 tensor scale is not counted)."""
        return self.element.nbits + self.scale.nbits / self.block_size

    def blocks(self, k: int) -> int:
        """Blocks along an axis of `k` elements (the last one may be short)."""
        return -(-k // self.block_size)


MXFP4 = BlockFormat("mxfp4", ELEMENT, get_format("float8_e8m0fnu"), 32, tensor_scale=False)
NVFP4 = BlockFormat("nvfp4", ELEMENT, get_format("float8_e4m3fn_satfinite"), 16, tensor_scale=True)
BLOCK_FORMATS = {f.name: f for f in (MXFP4, NVFP4)}


def get_block_format(name: str | BlockFormat) -> BlockFormat:
    """``"mxfp4"`` or ``"nvfp4"`` (a BlockFormat passes through)."""
    if isinstance(name, BlockFormat):
        return name
    if not isinstance(name, str) or name not in BLOCK_FORMATS:
        raise ValueError(f"unknown block format {name!r}; valid: {', '.join(BLOCK_FORMATS)}")
    return BLOCK_FORMATS[name]


@dataclass(frozen=True, eq=False)
class BlockTensor:
    """Codes of a block-scaled tensor.

    Attributes:
        fmt: the block format.
        codes: (..., K) uint8 element codes, one per byte.
        scales: (..., ceil(K / block_size)) uint8 scale codes.
        tensor_scale: float32 per-tensor scale (1 for MXFP4).
    """

    fmt: BlockFormat
    codes: np.ndarray
    scales: np.ndarray
    tensor_scale: np.float32

    def __post_init__(self) -> None:
        require_uint8(self.codes, "codes")
        require_uint8(self.scales, "scales")
        if self.codes.ndim == 0:
            raise ValueError("a block tensor needs at least one axis")
        expected = (*self.codes.shape[:-1], self.fmt.blocks(self.codes.shape[-1]))
        if self.scales.shape != expected:
            raise ValueError(f"scales must have shape {expected} for codes of shape {self.codes.shape}")
        if self.codes.size and int(self.codes.max()) > 0xF:
            raise ValueError("element codes must be 4-bit (0..15); unpack packed data with fp4sim.unpack_fp4")
        if self.fmt.tensor_scale and self.scales.size and int(self.scales.max()) >= self.fmt.scale.max_code + 1:
            raise ValueError(
                f"{self.fmt.name} block scales are unsigned E4M3 (codes 0..0x{self.fmt.scale.max_code:02X}); "
                f"got 0x{int(self.scales.max()):02X}"
            )
        scale = np.float32(self.tensor_scale)
        if not (np.isfinite(scale) and scale > 0) or (not self.fmt.tensor_scale and scale != 1):
            raise ValueError(f"tensor_scale must be a finite float32 > 0 (1 for {self.fmt.name}), got {scale}")
        object.__setattr__(self, "tensor_scale", scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape


def nvfp4_tensor_scale(amax: float) -> np.float32:
    """The NVFP4 tensor scale for a tensor whose largest magnitude is `amax`: fp32(fp32(amax) / 2688), 1 for 0."""
    peak = np.float32(amax)
    if not (np.isfinite(peak) and peak >= 0):
        raise ValueError(f"amax must be finite and >= 0, got {amax}")
    if peak == 0:
        return np.float32(1)
    scale = peak / np.float32(NVFP4_TENSOR_RANGE)
    if scale == 0:
        raise ValueError(f"amax {amax} is too small for an FP32 NVFP4 tensor scale (it underflows to 0)")
    return scale


def block_quantize(
    x: Any, fmt: str | BlockFormat, *, tensor_scale: float | None = None, scale_rule: str = "floor"
) -> BlockTensor:
    """Encode float16 / bfloat16 / float32 values `x` (..., K) to a block-scaled tensor (spec 7.2, 7.3).

    Blocks run along the last axis. `tensor_scale` is NVFP4's FP32 tensor
    scale; by default it comes from the tensor's own amax (nvfp4_tensor_scale).
    `scale_rule` is MXFP4's shared-exponent rule (MX_SCALE_RULES, spec 7.2): "floor" (OCP, the default),
    "ceil", "even" or "rceil"; NVFP4 takes only the default. Non-finite input or an unknown rule raises
    ValueError.
    """
    fmt = get_block_format(fmt)
    if scale_rule not in MX_SCALE_RULES:
        raise ValueError(f"unknown scale rule {scale_rule!r}; MXFP4's rules: {', '.join(MX_SCALE_RULES)}")
    if fmt.tensor_scale and scale_rule != MX_SCALE_RULES[0]:
        raise ValueError(f"scale_rule {scale_rule!r} is an MXFP4 shared-exponent rule; {fmt.name} takes none")
    values = _block_view(_finite_float32(x), fmt.block_size)
    amax = np.abs(values).max(axis=-1)
    if fmt.tensor_scale:
        s_t = nvfp4_tensor_scale(amax.max(initial=0)) if tensor_scale is None else _positive_float32(tensor_scale)
        scales, codes = _nvfp4_codes(values, amax, s_t)
    else:
        if tensor_scale is not None:
            raise ValueError(f"{fmt.name} has no tensor scale")
        s_t = np.float32(1)
        scales, codes = _mx_codes(values, amax, fmt, scale_rule)
    k = np.shape(x)[-1]
    flat = codes.reshape(*values.shape[:-2], values.shape[-2] * fmt.block_size)
    return BlockTensor(fmt, flat[..., :k].copy(), scales, s_t)


def block_dequantize(t: BlockTensor, *, include_tensor_scale: bool = True) -> np.ndarray:
    """float32 values of a block tensor: ``fp32(value(q) * S_b * s_t)`` (spec 7.4); NaN for a NaN scale.

    ``value(q) * S_b`` is exact in float32 for every finite scale; the tensor
    scale rounds once. ``include_tensor_scale=False`` leaves it out.
    """
    k = t.shape[-1]
    block_values = _block_view(decode(t.codes, t.fmt.element), t.fmt.block_size)
    if t.fmt.tensor_scale:
        scaled = block_values * decode(t.scales, t.fmt.scale)[..., None]
        if include_tensor_scale:
            scaled *= t.tensor_scale
    else:
        exponent = t.scales.astype(np.int32) - E8M0_BIAS
        with np.errstate(over="ignore"):
            scaled = np.ldexp(block_values, exponent[..., None]).astype(np.float32)
        scaled[t.scales == E8M0_NAN] = np.nan
    return scaled.reshape(*t.shape[:-1], scaled.shape[-2] * t.fmt.block_size)[..., :k]


def nvfp4_fake_quantize(x: Any, tensor_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``block_dequantize(t, include_tensor_scale=False)`` and the decoded block scales ``S_b`` of
    ``t = block_quantize(x, "nvfp4", tensor_scale=tensor_scale)`` in one fused pass, never forming codes:
    float32 (rows, K) and (rows, blocks) for float32 `x` (rows, K). Same bits as the two calls (spec 7.3);
    the torch path's activations take it on the CPU. Raises ValueError on non-finite input or a tensor scale
    that is not a finite float32 > 0.
    """
    values = to_numpy(x, "x")
    if values.dtype != np.float32 or values.ndim != 2:
        raise TypeError(f"x must be a float32 matrix (rows, K), got {values.dtype} of shape {values.shape}")
    values = np.ascontiguousarray(values)
    s_t = np.float64(_positive_float32(tensor_scale))
    out = np.empty_like(values)
    scales = np.empty((values.shape[0], NVFP4.blocks(values.shape[1])), np.float32)
    kernel = kernels.nvfp4_fake_quant_kernel(values.size >= kernels.PARALLEL_MIN_SIZE)
    grids = kernels.grid_params(NVFP4.scale), kernels.grid_params(ELEMENT)
    if kernel(values, s_t, NVFP4.block_size, *grids, out, scales):
        raise ValueError("x has non-finite values; block formats encode finite input only")
    return out, scales


def pack_block(t: BlockTensor) -> tuple[Any, Any]:
    """(packed element bytes (..., K/2), scale bytes) as torch tensors of dtypes float4_e2m1fn_x2 and
    float8_e8m0fnu / float8_e4m3fn, the layout torch and torchao use (element 0 in the low nibble).

    K must be even.
    """
    import torch

    scale_dtype = torch.float8_e8m0fnu if t.fmt.name == "mxfp4" else torch.float8_e4m3fn
    packed = torch.from_numpy(np.ascontiguousarray(pack_fp4(t.codes))).view(torch.float4_e2m1fn_x2)
    return packed, torch.from_numpy(np.ascontiguousarray(t.scales)).view(scale_dtype)


def unpack_block(packed: Any, scales: Any, fmt: str | BlockFormat, tensor_scale: float = 1.0) -> BlockTensor:
    """The BlockTensor of pack_block's output (torch tensors of those dtypes, or uint8 arrays)."""
    return BlockTensor(
        get_block_format(fmt), unpack_fp4(_bytes(packed, "packed")), _bytes(scales, "scales"), np.float32(tensor_scale)
    )


def _bytes(x: Any, what: str) -> np.ndarray:
    """uint8 bytes of a numpy array or of a torch tensor of any one-byte dtype."""
    if is_torch_tensor(x):
        import torch

        x = x.view(torch.uint8)
    return np.ascontiguousarray(to_numpy(x, what))


def _mx_codes(values: np.ndarray, amax: np.ndarray, fmt: BlockFormat, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """E by `rule` (mx_shared_exponent); elements RNE of x * 2^-E."""
    shared = mx_shared_exponent(amax, rule)
    codes = encode(values, fmt.element, shift=-shared[..., None].astype(np.int8))
    return (shared + E8M0_BIAS).astype(np.uint8), codes


def mx_shared_exponent(amax: np.ndarray, rule: str) -> np.ndarray:
    """int shared exponents E of MXFP4 blocks with float32 maxima `amax` (any shape) under an MX scale rule
    (MX_SCALE_RULES, spec 7.2), clamped to E8M0's [-127, 127], -127 for amax 0. With emax_elem = floor(log2 6) = 2:
    "floor" floor(log2 amax) - 2 (OCP); "ceil" ceil(log2 amax) - 2; "even" floor(log2 amax) - 2, plus 1 when
    amax's significand is at least 1.75; "rceil" ceil(log2 fp32(amax / 6)), -127 where that quotient underflows.

    Every log2 is read from exponent bits (frexp), so each is exact; "rceil"'s quotient is the float32 one.
    """
    amax = np.asarray(amax, np.float32)
    shared = np.where(amax > 0, _unclamped_exponent(amax, rule), -E8M0_BIAS)
    return shared.clip(-E8M0_BIAS, E8M0_BIAS)


def _unclamped_exponent(amax: np.ndarray, rule: str) -> np.ndarray:
    emax_elem = int(np.floor(np.log2(ELEMENT_MAX)))
    if rule == "rceil":
        quotient = (amax / np.float32(ELEMENT_MAX)).astype(np.float32)
        fraction, exponent = np.frexp(quotient)  # ceil(log2 q): q = fraction * 2^exponent, fraction in [0.5, 1)
        return np.where(quotient > 0, exponent - (fraction == 0.5), -E8M0_BIAS)  # an underflowed q: log2 0 = -inf
    fraction, exponent = np.frexp(amax)  # amax = fraction * 2^exponent: floor(log2 amax) = exponent - 1
    floor = exponent - 1 - emax_elem
    if rule == "ceil":
        return floor + (fraction != 0.5)
    if rule == "even":
        return floor + (fraction >= 0.875)  # significand 2 * fraction >= 1.75 rounds up to the next binade
    return floor


def _nvfp4_codes(values: np.ndarray, amax: np.ndarray, s_t: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """S = E4M3(amax / (6 s_t)) and q = E2M1(x / (S s_t)), each the exact quotient rounded once.

    Both quotients are formed in float64 from float32 operands: the divisor is
    exact there, and the quotient is never close enough to a rounding
    boundary of a format this narrow for float64's rounding to move it
    across one (docs/spec.md 7.3). A zero scale gives zero codes.
    """
    s64 = np.float64(s_t)
    scales = encode(amax.astype(np.float64) / (ELEMENT_MAX * s64), NVFP4.scale)
    divisor = decode(scales, NVFP4.scale).astype(np.float64) * s64
    safe = np.where(divisor > 0, divisor, 1.0)
    codes = encode(values.astype(np.float64) / safe[..., None], ELEMENT)
    codes[divisor == 0] = 0
    return scales, codes


def _finite_float32(x: Any) -> np.ndarray:
    xs = to_numpy(x, "x")
    if xs.dtype not in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32)):
        raise TypeError(
            f"x must be float16, bfloat16 or float32 (the formats these blocks quantize), got {xs.dtype}; "
            "cast it with x.astype(np.float32)"
        )
    if xs.ndim == 0:
        raise ValueError("x needs at least one axis (blocks run along the last)")
    values = xs.astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        where = first_index(bad)
        raise ValueError(f"x has {int(bad.sum())} non-finite value(s), first {values[where]} at index {where}")
    return values


def _positive_float32(value: float) -> np.float32:
    scale = np.float32(value)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"tensor_scale must be a finite float32 > 0, got {value}")
    return scale


def _block_view(x: np.ndarray, block: int) -> np.ndarray:
    """(..., K) -> (..., nb, block), zero-padded at the end of K."""
    k = x.shape[-1]
    pad = -k % block
    if pad:
        x = np.concatenate([x, np.zeros((*x.shape[:-1], pad), x.dtype)], axis=-1)
    return x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
