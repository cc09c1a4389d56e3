"""Block-scaled FP4: MXFP4 and NVFP4 tensors, their encoder and decoder (docs/spec.md, section 7).

A block format stores FP4 (E2M1) element codes and one scale code per block of
consecutive elements along the last axis (the reduction axis of a GEMM):

- MXFP4 (OCP MX v1.0): blocks of 32, an E8M0 scale ``2^E`` with the OCP floor
  rule ``E = floor(log2 amax) - 2``.
- NVFP4: blocks of 16, an E4M3 scale rounded half-even from ``amax / 6`` in
  units of an FP32 tensor scale ``s_t = amax_tensor / (6 * 448)``; or, under
  Four Over Six (``scale_rule="4over6"``), the better of ``amax / 4`` and
  ``amax / 6`` per block with ``s_t = amax_tensor / (6 * 256)``; optionally one
  scale per 16 x 16 tile of a matrix (``block_2d``).

A last block shorter than the block size behaves as if padded with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
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
# spec 7.3: NVFP4's rule (every block's amax to 6; fouroversix's name) first, then Four Over Six (arXiv 2512.02010)
NVFP4_SCALE_RULES = ("static_6", "4over6")
SCALE_RULES = {"mxfp4": MX_SCALE_RULES, "nvfp4": NVFP4_SCALE_RULES}  # each format's rules, its default first
FOUR_OVER_SIX = "4over6"
FOUR_OVER_SIX_SCALE_MAX = 256  # 4over6's tensor scale maps amax to 6 * 256, so a 4-candidate scale stays <= 384
FOUR_OVER_SIX_TARGET = 4.0  # the other candidate maps the block's amax to 4 instead of 6
TILE_ROWS = 16  # block_2d: one scale per 16 rows x 16 columns (TransformerEngine's NVFP4 weight tiles)
# A float64 error comparison is trusted when it clears this fraction of its terms' magnitudes (spec 7.3).
_CERTAIN = 2.0**-40


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


def block_scale_rule(fmt: str | BlockFormat, rule: str | None = None) -> str:
    """The scale rule `rule` names under block format `fmt` (SCALE_RULES); None gives the format's default
    ("floor" for MXFP4, "static_6" for NVFP4). A rule the format does not have raises ValueError."""
    fmt = get_block_format(fmt)
    rules = SCALE_RULES[fmt.name]
    if rule is None:
        return rules[0]
    if rule not in rules:
        others = {r for name, rs in SCALE_RULES.items() if name != fmt.name for r in rs}
        kind = "an MXFP4 rule" if rule in MX_SCALE_RULES else "an NVFP4 rule" if rule in others else "unknown"
        raise ValueError(f"scale rule {rule!r} is {kind}; {fmt.name}'s rules: {', '.join(rules)}")
    return rule


def nvfp4_tensor_scale(amax: float, scale_rule: str | None = None) -> np.float32:
    """The NVFP4 tensor scale for a tensor whose largest magnitude is `amax`: fp32(fp32(amax) / 2688), or under
    scale rule "4over6" fp32(fp32(amax) / 1536) (spec 7.3); 1 for 0. Raises ValueError for a negative or
    non-finite amax, an amax too small for a float32 scale, or a rule NVFP4 does not have."""
    tensor_range = 6 * (FOUR_OVER_SIX_SCALE_MAX if block_scale_rule(NVFP4, scale_rule) == FOUR_OVER_SIX else 448)
    peak = np.float32(amax)
    if not (np.isfinite(peak) and peak >= 0):
        raise ValueError(f"amax must be finite and >= 0, got {amax}")
    if peak == 0:
        return np.float32(1)
    scale = peak / np.float32(tensor_range)
    if scale == 0:
        raise ValueError(f"amax {amax} is too small for an FP32 NVFP4 tensor scale (it underflows to 0)")
    return scale


def block_quantize(
    x: Any,
    fmt: str | BlockFormat,
    *,
    tensor_scale: float | None = None,
    scale_rule: str | None = None,
    block_2d: bool = False,
) -> BlockTensor:
    """Encode float16 / bfloat16 / float32 values `x` (..., K) to a block-scaled tensor (spec 7.2, 7.3).

    Blocks run along the last axis. `tensor_scale` is NVFP4's FP32 tensor
    scale; by default it comes from the tensor's own amax (nvfp4_tensor_scale
    under the same rule). `scale_rule` picks how each block's scale is chosen
    (SCALE_RULES; None: the format's default): MXFP4's shared-exponent rules
    "floor" (OCP, the default), "ceil", "even", "rceil" (spec 7.2); NVFP4's
    "static_6" (the default) or "4over6" (Four Over Six: per block, the scale
    mapping amax to 4 or to 6, whichever gives the smaller squared error; spec
    7.3). `block_2d` (NVFP4 only, `x` a matrix (N, K)) gives every 16 x 16 tile
    one scale from the tile's amax (4over6: the tile's error), stored in each
    of the tile's rows: the result is an ordinary (N, ceil(K / 16)) NVFP4
    tensor (spec 7.3). Raises TypeError for another dtype, ValueError for
    non-finite input or a rule or option the format does not have.
    """
    fmt = get_block_format(fmt)
    rule = block_scale_rule(fmt, scale_rule)
    values = _finite_float32(x)
    if block_2d and (not fmt.tensor_scale or values.ndim != 2):
        raise ValueError(
            f"block_2d takes NVFP4 and a matrix (N, K); got {fmt.name} and shape {values.shape} "
            "(16 x 16 tiles are TransformerEngine's NVFP4 weight layout)"
        )
    values = _block_view(values, fmt.block_size)
    amax = np.abs(values).max(axis=-1)
    tile_rows = TILE_ROWS if block_2d else 1
    if block_2d:
        amax = _spread_tiles(_tile_reduce(amax, tile_rows, np.maximum), amax.shape[0])
    if fmt.tensor_scale:
        if tensor_scale is None:
            s_t = nvfp4_tensor_scale(amax.max(initial=0), rule)
        else:
            s_t = _positive_float32(tensor_scale)
        if rule == FOUR_OVER_SIX:
            scales, codes = _four_over_six_codes(values, amax, s_t, tile_rows)
        else:
            scales, codes = _nvfp4_codes(values, amax, s_t)
    else:
        if tensor_scale is not None:
            raise ValueError(f"{fmt.name} has no tensor scale")
        s_t = np.float32(1)
        scales, codes = _mx_codes(values, amax, fmt, rule)
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


def nvfp4_fake_quantize(x: Any, tensor_scale: float, scale_rule: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``block_dequantize(t, include_tensor_scale=False)`` and the decoded block scales ``S_b`` of
    ``t = block_quantize(x, "nvfp4", tensor_scale=tensor_scale, scale_rule=scale_rule)`` in one fused pass, never
    forming codes: float32 (rows, K) and (rows, blocks) for float32 `x` (rows, K). Same bits as the two calls
    (spec 7.3; under "4over6" the blocks whose float64 comparison is not certain are redone by the codec); the
    torch path's activations take it on the CPU. Raises TypeError for another dtype or shape, ValueError on
    non-finite input, a tensor scale that is not a finite float32 > 0 or a rule NVFP4 does not have.
    """
    values = to_numpy(x, "x")
    if values.dtype != np.float32 or values.ndim != 2:
        raise TypeError(f"x must be a float32 matrix (rows, K), got {values.dtype} of shape {values.shape}")
    values = np.ascontiguousarray(values)
    rule = block_scale_rule(NVFP4, scale_rule)
    s_t = np.float64(_positive_float32(tensor_scale))
    out = np.empty_like(values)
    scales = np.empty((values.shape[0], NVFP4.blocks(values.shape[1])), np.float32)
    parallel = values.size >= kernels.PARALLEL_MIN_SIZE
    grids = kernels.grid_params(NVFP4.scale), kernels.grid_params(ELEMENT)
    unsure = np.zeros(scales.shape if rule == FOUR_OVER_SIX else (0, 0), bool)
    kernel = kernels.nvfp4_fake_quant_kernel(parallel, rule == FOUR_OVER_SIX)
    bad = kernel(values, s_t, NVFP4.block_size, *grids, _CERTAIN, out, scales, unsure)
    if bad:
        raise ValueError("x has non-finite values; block formats encode finite input only")
    if rule == FOUR_OVER_SIX and unsure.any():  # near-ties: the codec's exact comparison, on those rows
        rows = np.nonzero(unsure.any(-1))[0]
        exact = block_quantize(values[rows], NVFP4, tensor_scale=np.float32(s_t), scale_rule=rule)
        out[rows] = block_dequantize(exact, include_tensor_scale=False)
        scales[rows] = decode(exact.scales, NVFP4.scale)
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


def _nvfp4_codes(
    values: np.ndarray, amax: np.ndarray, s_t: np.float32, target: float = ELEMENT_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """S = E4M3(amax / (target s_t)) and q = E2M1(x / (S s_t)), each the exact quotient rounded once; `target` is
    6 (NVFP4) or 4 (4over6's other candidate).

    Both quotients are formed in float64 from float32 operands: the divisor is
    exact there, and the quotient is never close enough to a rounding
    boundary of a format this narrow for float64's rounding to move it
    across one (docs/spec.md 7.3). A zero scale gives zero codes.
    """
    s64 = np.float64(s_t)
    scales = encode(amax.astype(np.float64) / (target * s64), NVFP4.scale)
    divisor = decode(scales, NVFP4.scale).astype(np.float64) * s64
    safe = np.where(divisor > 0, divisor, 1.0)
    codes = encode(values.astype(np.float64) / safe[..., None], ELEMENT)
    codes[divisor == 0] = 0
    return scales, codes


def _four_over_six_codes(
    values: np.ndarray, amax: np.ndarray, s_t: np.float32, tile_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Four Over Six (spec 7.3): both candidates of every block (target 4 and 6), the one whose squared error over
    the block (over its tile of `tile_rows` rows when 2-D) is strictly smaller; a tie keeps the 6 candidate."""
    four = _nvfp4_codes(values, amax, s_t, FOUR_OVER_SIX_TARGET)
    six = _nvfp4_codes(values, amax, s_t)
    pick = _spread_tiles(_four_wins(values, (four, six), s_t, tile_rows), amax.shape[0] if tile_rows > 1 else 0)
    return np.where(pick, four[0], six[0]), np.where(pick[..., None], four[1], six[1])


def _four_wins(values: np.ndarray, candidates: tuple, s_t: np.float32, tile_rows: int) -> np.ndarray:
    """bool per block (per tile when tile_rows > 1): E4 < E6 for `candidates` ((scales, codes) of the 4 and the 6
    candidate), where E = sum_i (value(q_i) S s_t - x_i)^2 exactly.

    E4 - E6 has the sign of D = (s_t S4^2 Q4 - 2 S4 C4) - (s_t S6^2 Q6 - 2 S6 C6), Q = sum q^2, C = sum q x
    (the sum of x^2 cancels). D is formed in float64; its rounding error is below 2^-44.9 of T = the sum of
    its terms' magnitudes (at most 256 products summed, then five operations), so where |D| > 2^-40 T its
    sign is D's. Identical candidates tie; every other block is compared with exact fractions.
    """
    x = values.astype(np.float64)
    s64 = np.float64(s_t)
    terms = []
    for scales, codes in candidates:
        scale = decode(scales, NVFP4.scale).astype(np.float64)
        q = decode(codes, ELEMENT).astype(np.float64)
        products = q * x
        square, cross, size = (
            _tile_reduce(a, tile_rows, np.add) for a in ((q * q).sum(-1), products.sum(-1), np.abs(products).sum(-1))
        )
        scale = _tile_reduce(scale, tile_rows, np.maximum)  # one scale per tile: every row holds it
        energy = s64 * (scale * scale) * square
        terms.append((energy - 2 * scale * cross, energy + 2 * scale * size))
    (d4, t4), (d6, t6) = terms
    difference = d4 - d6
    (scales4, codes4), (scales6, codes6) = candidates
    same = _tile_reduce((scales4 == scales6) & (codes4 == codes6).all(-1), tile_rows, np.logical_and)
    unsure = (np.abs(difference) <= _CERTAIN * (t4 + t6)) & ~same
    wins = (difference < 0) & ~same
    for index in zip(*np.nonzero(unsure), strict=True):
        wins[index] = _four_wins_exactly(values, candidates, s_t, tile_rows, index)
    return wins


def _four_wins_exactly(values: np.ndarray, candidates: tuple, s_t: np.float32, tile_rows: int, index: tuple) -> bool:
    """E4 < E6 for one block or tile (its index in _four_wins' result), in exact fractions."""
    where = (slice(index[0] * tile_rows, (index[0] + 1) * tile_rows), index[1]) if tile_rows > 1 else index
    x = [Fraction(float(v)) for v in np.ravel(values[where])]
    errors = []
    for scales, codes in candidates:
        unit = Fraction(float(decode(np.ravel(scales[where])[:1], NVFP4.scale)[0])) * Fraction(float(s_t))
        q = decode(np.ravel(codes[where]), ELEMENT)
        errors.append(sum(((Fraction(float(v)) * unit - xi) ** 2 for v, xi in zip(q, x, strict=True)), Fraction(0)))
    return errors[0] < errors[1]


def _tile_reduce(a: np.ndarray, rows: int, op: np.ufunc) -> np.ndarray:
    """(N, ...) -> (ceil(N / rows), ...): `op` over each run of `rows` rows (the last may be short); rows 1: a."""
    if rows == 1:
        return a
    starts = np.arange(0, a.shape[0], rows)
    return op.reduceat(a, starts, axis=0)


def _spread_tiles(a: np.ndarray, n: int) -> np.ndarray:
    """(ceil(n / 16), ...) -> (n, ...): each tile's entry repeated on its rows; n 0: a unchanged (1-D blocks)."""
    return a if n == 0 else np.repeat(a, TILE_ROWS, axis=0)[:n]


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
