"""Fake quantization in torch, bit-identical to fp4sim.encode / decode (docs/spec.md 1.4, 1.6).

LLM-FP4 writes a real-valued exponent bias b~ per tensor or channel. Here it
is carried as the FP32 scale alpha = fp32(2^(bias - b~)) of a format at its
default integer bias, so that quantizing x is encode(x / alpha) and
dequantizing is decode(code) * alpha, each rounding once in FP32, on any
device. A per-channel integer shift s (the pre-shifted bias of LLM-FP4)
encodes x / alpha * 2^s and decodes value * 2^-s * alpha.
"""

from __future__ import annotations

import torch

from ..codec import quantize_dequantize_rows
from ..formats import Format


def max_to_scale(maxval: torch.Tensor, fmt: Format) -> torch.Tensor:
    """The FP32 scale that maps fmt's largest value onto `maxval` (the paper's b~ from max|x|).

    b~ = 2^e - log2(maxval) + log2(2 - 2^-m) - 1 makes the largest value
    (2 - 2^-m) 2^(2^e - 1 - b~) equal maxval, i.e. alpha = maxval / max_value.
    A zero maximum (an all-zero channel) gets scale 1.
    """
    maxval = maxval.double()
    scale = maxval / float(fmt.max_value)
    return torch.where(maxval > 0, scale, torch.ones_like(scale)).float()


def bias_to_scale(bias: torch.Tensor, fmt: Format) -> torch.Tensor:
    """alpha = fp32(2^(fmt.bias - b~)) for real biases b~."""
    return torch.exp2(fmt.bias - bias.double()).float()


def scale_to_bias(scale: torch.Tensor, fmt: Format) -> torch.Tensor:
    """The real bias b~ = fmt.bias - log2(alpha), float64."""
    return fmt.bias - torch.log2(scale.double())


def round_to_format(y: torch.Tensor, fmt: Format, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Round float32 values to `fmt`'s grid: nearest-even, saturating, signed zero kept (exact).

    For the LLM-FP4 family (finite, subnormals) at exponent bias ``fmt.bias + shift``
    (`shift` broadcasts against `y`): the largest value is ``max * 2^-shift`` and the
    step at |y| is ``2^(max(floor(log2 |y|), lowest_exponent - shift) - m)``, found
    exactly with frexp. Rounding in place, with no ``y * 2^shift`` first, keeps
    every step exact (a product could fall into FP32's subnormals and round twice).
    ValueError where a step or the largest value leaves FP32 (the codec covers those).
    """
    if not fmt.is_llm_fp4_family:
        raise ValueError(f"fake quantization supports the LLM-FP4 family (finite, signed, subnormals), not {fmt.name}")
    shift = torch.zeros((), dtype=torch.int32, device=y.device) if shift is None else shift.to(y.device, torch.int32)
    smallest_step = fmt.lowest_exponent - fmt.mbits - int(shift.max())
    if smallest_step < -126 or float(fmt.max_value) * 2.0 ** -int(shift.min()) >= 2.0**128:
        raise ValueError(
            f"{fmt.name} at these shifts has steps or values outside FP32's normal range; use fp4sim.encode"
        )
    # max = (2^(m+1) - 1) * 2^top_step: built from exact factors, never from max itself (FP32 may not hold it)
    significand = (1 << (fmt.mbits + 1)) - 1
    power = fmt.max_value / significand  # an exact power of two
    top_step = power.numerator.bit_length() - power.denominator.bit_length()
    largest = significand * pow2(top_step - shift)  # exact: an FP32 normal power of two times a 24-bit integer
    return round_to_grid(y, fmt.mbits, fmt.lowest_exponent - shift, largest)


def round_to_grid(y: torch.Tensor, mbits: int, lowest_exponent: torch.Tensor, largest: torch.Tensor) -> torch.Tensor:
    """Nearest-even onto the grid with `mbits` fraction bits, binades from `lowest_exponent` (subnormal steps
    below), saturating at `largest`; signed zero kept. Exact for float32 or float64 `y` whose steps are FP32
    normal numbers (the caller checks): frexp reads each binade from the bits, and every step is a power of two."""
    magnitude = torch.minimum(y.abs(), largest)  # clip before rounding: rounding then never overflows
    _, exponent = torch.frexp(magnitude)  # magnitude = f * 2^exponent, f in [0.5, 1); 0 for magnitude 0
    step = pow2(torch.maximum(exponent - 1, lowest_exponent) - mbits)
    return torch.copysign(torch.round(magnitude / step) * step, y)


def pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2^exponent as float32 for integer exponents in FP32's normal range, built from its bits (exact, fast)."""
    exponent = exponent.to(torch.int32)
    if exponent.numel() and (int(exponent.min()) < -126 or int(exponent.max()) > 127):
        raise ValueError("pow2 covers exponents -126..127 (FP32 normal numbers)")
    return ((exponent + 127) << 23).view(torch.float32)


def fake_quantize(x: torch.Tensor, fmt: Format, scale: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """decode(encode(x, fmt, scale=scale, shift=shift), fmt, scale=scale, shift=shift) in torch, float32.

    `scale` and `shift` broadcast against `x` (per-tensor, or per channel
    along any axis shaped accordingly); scales must be positive and finite.
    CPU tensors with one scale per row (or per tensor) and one shift per last-axis
    channel take the codec's fused kernel; the rest take the torch ops below (same bits).
    """
    fused = _fused_fake_quantize(x.float(), fmt, scale, shift)
    return fused if fused is not None else fake_quantize_ops(x, fmt, scale, shift)


def fake_quantize_ops(
    x: torch.Tensor, fmt: Format, scale: torch.Tensor, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """fake_quantize in plain torch ops (any device, any broadcast); the fused kernel's reference.

    Exact wherever it returns; ValueError where a rounding step would leave FP32's normal range.
    """
    return round_to_format(x.float() / scale, fmt, shift) * scale


def _fused_fake_quantize(
    x: torch.Tensor, fmt: Format, scale: torch.Tensor, shift: torch.Tensor | None
) -> torch.Tensor | None:
    """codec.quantize_dequantize_rows on a CPU tensor viewed as (rows, last axis), or None if it does not apply."""
    if x.device.type != "cpu" or x.ndim == 0 or (x.requires_grad and torch.is_grad_enabled()):
        return None
    matrix = x.reshape(-1, x.shape[-1])
    per_row = x.ndim == 2 and scale.shape == (x.shape[0], 1)
    if not (scale.numel() == 1 or per_row) or not (shift is None or shift.shape == (x.shape[-1],)):
        return None
    col_shift = None if shift is None else shift.cpu().numpy()
    result = quantize_dequantize_rows(matrix.detach().numpy(), fmt, scale.detach().cpu().numpy(), col_shift)
    return None if result is None else torch.from_numpy(result).reshape(x.shape)


def format_candidates(bits: int) -> list[tuple[int, int]]:
    """(ebits, mbits) the search tries for a bit width: all EeMm with e >= 1, or E5M2..E1M6 at 8 bits (paper)."""
    if bits == 8:
        return [(bits - 1 - m, m) for m in range(2, bits - 1)]
    return [(bits - 1 - m, m) for m in range(bits - 1)]
