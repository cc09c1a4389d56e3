"""Exact reference for block-scaled FP4 (docs/spec.md section 7), written from the formulas with `fractions`.

Imports nothing from fp4sim. Values are Fractions; floats come in as the
exact values they hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

from oracle import floor_log2, paper_quantize, round_float

E4M3_MAX = Fraction(448)
TWO = Fraction(2)


def e2m1(x: Fraction) -> Fraction:
    """OCP E2M1: round half to even, saturate at +-6."""
    return paper_quantize(x, 2, 1, 1)


def e4m3(x: Fraction) -> Fraction:
    """E4M3 (fn) with saturation: round half to even on the E4M3 grid, then clip at 448 (480 is NaN's slot)."""
    return max(-E4M3_MAX, min(E4M3_MAX, paper_quantize(x, 4, 3, 7)))


def mx_block(xs: list[Fraction], rule: str = "floor") -> tuple[int, list[Fraction]]:
    """MX: E by `rule`, clamped to [-127, 127] (-127 for an all-zero block); elements E2M1(x / 2^E).

    floor (OCP): floor(log2 amax) - 2. ceil: ceil(log2 amax) - 2. even: floor(log2 amax) - 2, one more when
    amax / 2^floor(log2 amax) >= 7/4. rceil: ceil(log2 q) for q = amax / 6 rounded to float32 (-127 if q is 0).
    """
    amax = max(abs(x) for x in xs)
    if amax == 0:
        return -127, [e2m1(x / TWO**-127) for x in xs]
    low = floor_log2(amax)
    if rule == "floor":
        shared = low - 2
    elif rule == "ceil":
        shared = low - 2 + (amax != TWO**low)
    elif rule == "even":
        shared = low - 2 + (amax / TWO**low >= Fraction(7, 4))
    else:  # rceil
        q = Fraction(round_float(amax / 6, "fp32"))
        shared = -127 if q == 0 else floor_log2(q) + (q != TWO ** floor_log2(q))
    shared = max(-127, min(127, shared))
    return shared, [e2m1(x / TWO**shared) for x in xs]


def nv_tensor_scale(amax: Fraction, rule: str = "static_6") -> Fraction:
    """fp32(amax / 2688) (4over6: fp32(amax / 1536), 1536 = 6 * 256), or 1 for an all-zero tensor."""
    tensor_range = 1536 if rule == "4over6" else 2688
    return Fraction(1) if amax == 0 else Fraction(round_float(amax / tensor_range, "fp32"))


def nv_block(xs: list[Fraction], tensor_scale: Fraction, target: int = 6) -> tuple[Fraction, list[Fraction]]:
    """NVFP4: S = E4M3(amax / (target s_t)) (target 6; 4over6's other candidate 4); elements E2M1(x / (S s_t)),
    all zero when S is zero."""
    scale = e4m3(max(abs(x) for x in xs) / (target * tensor_scale))
    if scale == 0:
        return scale, [Fraction(0)] * len(xs)
    return scale, [e2m1(x / (scale * tensor_scale)) for x in xs]


def squared_error(xs: list[Fraction], scale: Fraction, elements: list[Fraction], tensor_scale: Fraction) -> Fraction:
    """sum (q S s_t - x)^2, exactly."""
    return sum(((q * scale * tensor_scale - x) ** 2 for q, x in zip(elements, xs, strict=True)), Fraction(0))


def nv_four_over_six(xs: list[Fraction], tensor_scale: Fraction) -> tuple[Fraction, list[Fraction]]:
    """Four Over Six on one block (or the elements of one 16 x 16 tile, in any order): the target-4 candidate if
    its exact squared error is strictly below the target-6 candidate's, else the target-6 one."""
    four, six = nv_block(xs, tensor_scale, 4), nv_block(xs, tensor_scale, 6)
    better = squared_error(xs, *four, tensor_scale) < squared_error(xs, *six, tensor_scale)
    return four if better else six


def nv_tiles(rows: list[list[Fraction]], tensor_scale: Fraction, rule: str = "static_6") -> list[list[Fraction]]:
    """NVFP4 with 16 x 16 tiles over a matrix (rows of Fractions): per tile (16 rows x 16 columns, fewer at the
    edges) one scale from the tile's amax (4over6: the tile's squared error). Returns per row its blocks' scales
    followed by its elements: [[S_0, S_1, ..., q_0, q_1, ...], ...]."""
    n, k = len(rows), len(rows[0])
    scales = [[Fraction(0)] * -(-k // 16) for _ in range(n)]
    elements = [[Fraction(0)] * k for _ in range(n)]
    for top in range(0, n, 16):
        for left in range(0, k, 16):
            cells = [(r, c) for r in range(top, min(top + 16, n)) for c in range(left, min(left + 16, k))]
            xs = [rows[r][c] for r, c in cells]
            scale, qs = nv_four_over_six(xs, tensor_scale) if rule == "4over6" else nv_block(xs, tensor_scale)
            for (r, c), q in zip(cells, qs, strict=True):
                scales[r][c // 16] = scale
                elements[r][c] = q
    return [s + e for s, e in zip(scales, elements, strict=True)]


def fp32_op(u: float, v: float, op: Callable[[object, object], object]) -> float:
    """An FP32 add or multiply of FP32 values: exact then rounded once; Inf / NaN by IEEE arithmetic."""
    if math.isfinite(u) and math.isfinite(v):
        return round_float(op(Fraction(u), Fraction(v)), "fp32")
    return op(u, v)


def scale_exponent(scale: Fraction, min_exponent: int) -> int:
    """The exponent an adder aligns a block scale by: floor(log2), at least the smallest normal's; -126 for 0."""
    return -126 if scale == 0 else max(floor_log2(scale), min_exponent)


def block_dot(
    model: str,
    a: list[Fraction],
    a_scales: list[Fraction],
    w: list[Fraction],
    w_scales: list[Fraction],
    block: int,
    min_exponent: int,
    frac_bits: int = 0,
    fused: int = 64,
) -> float:
    """One block-scaled dot product (before the tensor scales) as an FP32 value.

    exact: the exact sum rounded once. fp32_sequential: c = fp32(c + fp32(fp32(a_i S_a) * fp32(w_i S_w))).
    aligned_truncate: 16-element group sums times both scales, `fused` // 16 of them plus c per
    add; each term truncated toward zero `frac_bits` bits below the largest exponent (a term's
    exponent is the sum of its scales' exponents; c's is its own, -126 when zero or subnormal);
    the sum truncated to FP32.
    """
    scaled = [(x * a_scales[i // block], y * w_scales[i // block]) for i, (x, y) in enumerate(zip(a, w, strict=True))]
    if model == "exact":
        return round_float(sum((x * y for x, y in scaled), Fraction(0)), "fp32")
    if model == "fp32_sequential":
        c = 0.0
        for x, y in scaled:
            a_k, w_k = round_float(x, "fp32"), round_float(y, "fp32")  # dequantized operands (Inf past FP32's range)
            p = fp32_op(a_k, w_k, lambda u, v: u * v)
            c = fp32_op(c, p, lambda u, v: u + v)
        return c
    terms = []
    for start in range(0, len(a), 16):
        b = start // block
        group = sum(x * y for x, y in zip(a[start : start + 16], w[start : start + 16], strict=True))
        exponent = scale_exponent(a_scales[b], min_exponent) + scale_exponent(w_scales[b], min_exponent)
        terms.append((group * a_scales[b] * w_scales[b], exponent))
    c = Fraction(0)
    for start in range(0, len(terms), fused // 16):
        chunk = [(c, -126 if c == 0 else max(floor_log2(abs(c)), -126)), *terms[start : start + fused // 16]]
        unit = TWO ** (max(e for _, e in chunk) - frac_bits)
        total = sum((math.trunc(t / unit) * unit for t, _ in chunk), Fraction(0))
        c = Fraction(round_float(total, "fp32", toward_zero=True))
    return float(c)
