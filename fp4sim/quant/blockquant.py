"""MXFP4 / NVFP4 quantization of a model's linear layers: round to nearest, no search (docs/quantization.md).

Weights are block-quantized along the input axis once (NVFP4's tensor scale
from the weight's amax). Activations are block-quantized on the fly, one
block scale per 16 or 32 input channels of each token, as block-scaled
hardware does; NVFP4's activation tensor scale is static, from the amax of
the calibration inputs.

Two forward paths compute ``y = alpha * sum_b S_a S_w sum_i q_a q_w``.
``simulator`` runs ``fp4sim.block_gemm`` (any accumulation model). ``torch``
block-quantizes the activations on their device (the codec's bits) and
multiplies the operands ``value(q) * S_b`` (exact float32 values): in
float32 for the rows where a bound on the data shows every partial sum is
exact (docs/spec.md 7.6), else in float64, then rounds to float32 once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..codec import decode
from ..codec.blockscaled import (
    E8M0_BIAS,
    ELEMENT,
    ELEMENT_MAX,
    FOUR_OVER_SIX,
    BlockFormat,
    BlockTensor,
    block_dequantize,
    block_quantize,
    block_scale_rule,
    get_block_format,
    mx_shared_exponent,
    nvfp4_fake_quantize,
    nvfp4_tensor_scale,
)
from ..gemm.block import block_gemm
from .config import UNQUANTIZED, QuantConfig
from .fakequant import fake_quantize, pow2, round_to_grid
from .folded import check_full_float32

FLOAT32_SUM_LIMIT = 2.0**24  # integers up to 2^24 are exact in float32
FLOAT32_TINY = 2.0**-149  # FP32's smallest subnormal: a grid step below it underflows
FLOAT32_GRID_MAX = 2.0**103  # a grid step whose 2^24 multiples stay below FP32's 2^128


@dataclass(frozen=True)
class BlockLinearQuant:
    """Calibration result of one linear layer under a block format.

    Attributes:
        fmt: the block format of weights and activations.
        quantize_input: False for weight-only quantization (A = 16 bits).
        input_tensor_scale: NVFP4's static activation tensor scale (1 for MXFP4).
        scale_rule: the block scale rule (SCALE_RULES of fmt; None: the format's default) for the weight and the
            activations (spec 7.2, 7.3).
        block_2d: NVFP4 only: the weight in 16 x 16 tiles, one scale each (spec 7.3); activations keep 1 x 16.
    """

    fmt: BlockFormat
    quantize_input: bool
    input_tensor_scale: float = 1.0
    scale_rule: str | None = None
    block_2d: bool = False


@dataclass(frozen=True)
class BlockEmbeddingQuant:
    """The embedding table block-quantized along the hidden axis, one row per token, under `scale_rule` (None: the
    format's default; 1 x B blocks, whatever the linear layers' tiles)."""

    fmt: BlockFormat
    scale_rule: str | None = None


def calibrate_block_linear(channel_max: torch.Tensor | None, config: QuantConfig) -> BlockLinearQuant:
    """Round-to-nearest needs nothing from the data but NVFP4's activation tensor scale: amax(x) / 2688 (under
    scale rule 4over6 amax(x) / 1536).

    channel_max: (in,) max |x| per input channel over the calibration tokens; None where not needed.
    """
    fmt = get_block_format(config.method)
    quantize_input = config.activation_bits != UNQUANTIZED
    scale = 1.0
    if fmt.tensor_scale and quantize_input:
        scale = float(nvfp4_tensor_scale(float(channel_max.max()), config.scale_rule))
    return BlockLinearQuant(fmt, quantize_input, scale, config.scale_rule, config.block_2d)


@dataclass(frozen=True, eq=False)
class BlockLinear:
    """One block-quantized linear layer as hardware holds it.

    Attributes:
        weight: (out, in) block tensor, blocks along the input axis.
        input_format: the activations' block format, or None (weight-only).
        input_tensor_scale: float32 activation tensor scale (1 for MXFP4 and weight-only).
        bias: (out,) float32, or None.
        input_scale_rule: the activations' block scale rule (SCALE_RULES of input_format, spec 7.2, 7.3); None:
            the format's default ("floor" MXFP4, "static_6" NVFP4), and always None for weight-only layers.
    """

    weight: BlockTensor
    input_format: BlockFormat | None
    input_tensor_scale: np.float32
    bias: torch.Tensor | None = None
    input_scale_rule: str | None = None

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format != self.weight.fmt:
            raise ValueError(f"activations in {self.input_format.name} cannot meet {self.weight.fmt.name} weights")
        scale = np.float32(self.input_tensor_scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"input_tensor_scale must be a finite float32 > 0, got {scale}")
        if (self.input_format is None or not self.input_format.tensor_scale) and scale != 1:
            raise ValueError(f"input_tensor_scale must be 1 without NVFP4 activations, got {scale}")
        object.__setattr__(self, "input_tensor_scale", scale)
        if self.input_format is None:
            if self.input_scale_rule is not None:
                raise ValueError(f"input_scale_rule {self.input_scale_rule!r} needs quantized activations")
        else:
            object.__setattr__(self, "input_scale_rule", block_scale_rule(self.input_format, self.input_scale_rule))

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


def fold_block_linear(weight: torch.Tensor, quant: BlockLinearQuant, bias: torch.Tensor | None = None) -> BlockLinear:
    """The hardware form of a linear layer (weight (out, in), as nn.Linear holds it)."""
    weight = weight.detach().float().cpu()
    return BlockLinear(
        weight=block_quantize(weight, quant.fmt, scale_rule=quant.scale_rule, block_2d=quant.block_2d),
        input_format=quant.fmt if quant.quantize_input else None,
        input_tensor_scale=np.float32(quant.input_tensor_scale),
        bias=None if bias is None else bias.detach().float().cpu(),
        input_scale_rule=quant.scale_rule if quant.quantize_input else None,
    )


class WeightOperand(NamedTuple):
    """The torch path's weight, built once per layer.

    values: (out, in) float32 ``value(q) * S_b``, exact (times the tensor scale, rounded, when weight-only).
    grid: float64 (3,): over rows n with a nonzero scale, max of max|w_n| / L_n, min L_n and max L_n, where
        L_n is a power of two every element of row n is a multiple of (block_lsb).
    """

    values: torch.Tensor
    grid: torch.Tensor

    def to(self, device: torch.device | str) -> WeightOperand:
        return WeightOperand(self.values.to(device), self.grid.to(device))


def weight_operand(layer: BlockLinear) -> WeightOperand:
    """The layer's WeightOperand, on the CPU."""
    weight = layer.weight
    zero = torch.tensor([0.0, math.inf, 0.0], dtype=torch.float64)  # the grid of an all-zero weight
    if layer.input_format is None:
        return WeightOperand(torch.from_numpy(block_dequantize(weight)), zero)
    values = torch.from_numpy(block_dequantize(weight, include_tensor_scale=False))
    ratio, finest = row_grid(values, block_lsb(weight.fmt, torch.from_numpy(decode_scales(weight))))
    nonzero = torch.isfinite(finest)
    if not nonzero.any():
        return WeightOperand(values, zero)
    return WeightOperand(values, torch.stack([ratio.max(), finest[nonzero].min(), finest[nonzero].max()]))


def decode_scales(t: BlockTensor) -> np.ndarray:
    """float32 block scales ``S_b`` of a block tensor (NaN for MXFP4's NaN code)."""
    return decode(t.scales, t.fmt.scale).astype(np.float32)


def block_lsb(fmt: BlockFormat, scales: torch.Tensor) -> torch.Tensor:
    """Per block, a power of two every ``value(q) * S_b`` is a multiple of: half the scale's last place
    (E2M1 values are multiples of 1/2); +inf for a zero scale (its elements are all zero)."""
    if fmt.tensor_scale:  # E4M3: 1 + 3 fraction bits at the scale's binade, subnormal steps below
        _, exponent = torch.frexp(scales)
        floor = torch.full_like(exponent, fmt.scale.lowest_exponent)
        lsb = pow2(torch.maximum(exponent - 1, floor) - fmt.scale.mbits - 1)
    else:  # E8M0: the scale is a power of two; halving it is exact down to 2^-128
        lsb = scales * 0.5
    return torch.where(scales > 0, lsb.double(), math.inf)


def row_grid(values: torch.Tensor, lsb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of `values` (rows, K) with block LSBs `lsb` (rows, blocks), float64: (max|v| / L, L), with L
    the row's finest block LSB (0 and +inf for an all-zero row)."""
    finest = lsb.amin(-1)
    return values.abs().amax(-1).double() / finest, finest


def float32_rows(fmt: BlockFormat, scales: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(rows,) bool: whether the float32 product of an activation row with block scales `scales` (rows,
    blocks) and the weight of WeightOperand.grid `grid` is exact (docs/spec.md 7.6).

    Every product ``a_k w_k`` of output (m, n) is a multiple of ``L = L_m L_n`` and every partial sum, in any
    order, is at most ``sum_k |a_k| max|w_n| <= B * 6 * sum_b S_b * max|w_n|``; when that is at most
    ``2^24 L``, each partial sum is an integer multiple of L below 2^24 L, exact in float32 as long as L
    neither underflows nor overflows. The scales are multiples of L_m, so their float64 sum is exact up to
    2^53 L_m, far past the 2^24 L_m tested here: rounding cannot turn a failing row into a passing one.
    """
    smallest = torch.where(scales > 0, scales, math.inf).amin(-1)  # block_lsb grows with the scale
    finest = block_lsb(fmt, torch.where(torch.isinf(smallest), 0.0, smallest))
    total = scales.sum(-1, dtype=torch.float64) * (fmt.block_size * ELEMENT_MAX) / finest
    ratio, lsb_min, lsb_max = grid
    zero = torch.isinf(finest)  # an all-zero row: every product is 0
    return zero | (
        (total * ratio <= FLOAT32_SUM_LIMIT)
        & (finest * lsb_min >= FLOAT32_TINY)
        & (finest * lsb_max <= FLOAT32_GRID_MAX)
    )


def exact_product(a: torch.Tensor, w: torch.Tensor, float32: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` (float32 operands) summed exactly and rounded once to float32: in float32 for the rows
    `float32` marks, in float64 for the rest; ``+0`` for a zero sum (spec 7.5, 7.6)."""
    if bool(float32.all()):
        return F.linear(a, w).add_(0.0)
    if not bool(float32.any()):
        return float64_product(a, w)
    y = torch.empty(a.shape[0], w.shape[0], device=a.device)
    y[float32] = F.linear(a[float32], w).add_(0.0)
    y[~float32] = float64_product(a[~float32], w)
    return y


FLOAT64_TILE = (512, 2048)  # rows x outputs: an 8 MB float64 tile, large enough that BLAS's packing is cheap


def float64_product(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``fp32(a @ w.T + 0.0)`` with the products and sums in float64 (float32 operands (M, K) and (N, K); exact
    where spec 7.6's float64 bound holds), (M, N) float32 out. Tile by tile through one reused float64
    buffer: a whole float64 result (1.6 GB for 4,096 tokens through a 49,152-token lm_head) costs fresh pages
    and two more passes over it, about a third of the dgemm's own time there (docs/benchmarks.md)."""
    rows, cols = FLOAT64_TILE
    y = torch.empty(a.shape[0], w.shape[0], device=a.device)
    a64 = a.double()
    buffer = torch.empty(min(rows, a.shape[0]) * min(cols, w.shape[0]), dtype=torch.float64, device=a.device)
    for j in range(0, w.shape[0], cols):
        w64 = w[j : j + cols].double()
        for i in range(0, a.shape[0], rows):
            a_tile = a64[i : i + rows]
            tile = buffer[: a_tile.shape[0] * w64.shape[0]].view(a_tile.shape[0], w64.shape[0])
            torch.mm(a_tile, w64.T, out=tile)
            y[i : i + rows, j : j + cols] = tile.add_(0.0)
    return y


def fake_quantize_blocks(
    x: torch.Tensor, fmt: BlockFormat, tensor_scale: np.float32, scale_rule: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``block_dequantize(block_quantize(x, fmt, tensor_scale=..., scale_rule=...), include_tensor_scale=False)``
    for float32 `x` (rows, K) on x's device: the values ``value(q) * S_b`` (rows, K) and the block scales ``S_b``
    (rows, blocks). NVFP4 on the CPU takes the codec's fused kernel (nvfp4_fake_quantize) on a view of x (its
    float64 quotients cost torch ops several times more there), and so does NVFP4 under 4over6 on any device,
    through the CPU (its exact error comparison has no torch form); the rest takes fake_quantize_blocks_ops
    (the same bits)."""
    four_over_six = fmt.tensor_scale and block_scale_rule(fmt, scale_rule) == FOUR_OVER_SIX
    if fmt.tensor_scale and (x.device.type == "cpu" or four_over_six):
        values, scales = nvfp4_fake_quantize(x.detach().cpu().numpy(), tensor_scale, scale_rule)
        return torch.from_numpy(values).to(x.device), torch.from_numpy(scales).to(x.device)
    return fake_quantize_blocks_ops(x, fmt, tensor_scale, scale_rule)


def fake_quantize_blocks_ops(
    x: torch.Tensor, fmt: BlockFormat, tensor_scale: np.float32, scale_rule: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """fake_quantize_blocks in torch ops on any device, for every rule but NVFP4's 4over6 (ValueError). Non-finite
    input raises ValueError, as the codec does."""
    scale_rule = block_scale_rule(fmt, scale_rule)
    if scale_rule == FOUR_OVER_SIX:
        raise ValueError("4over6 has no torch-ops form; fake_quantize_blocks takes it through the codec")
    rows, k = x.shape
    pad = -k % fmt.block_size
    blocks = (F.pad(x, (0, pad)) if pad else x).reshape(rows, -1, fmt.block_size)
    amax = blocks.abs().amax(-1)
    if not bool(torch.isfinite(amax).all()):
        raise ValueError("x has non-finite values; block formats encode finite input only")
    if fmt.tensor_scale:
        values, scales = _nvfp4_values(blocks, amax, tensor_scale)
    else:
        values, scales = _mxfp4_values(blocks, amax, scale_rule)
    return values.reshape(rows, -1)[:, :k], scales


def _mxfp4_values(blocks: torch.Tensor, amax: torch.Tensor, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """spec 7.2: E from amax's exponent bits, elements E2M1(x / 2^E) * 2^E (a power-of-two division: exact,
    except where it falls below FP32's normal range, and those values round to zero either way)."""
    if rule == "floor":  # OCP's floor in torch ops, on amax's device
        _, exponent = torch.frexp(amax)  # amax = f * 2^exponent, f in [0.5, 1)
        emax = math.floor(math.log2(ELEMENT_MAX))
        shared = torch.where(amax > 0, exponent - 1 - emax, -E8M0_BIAS).clamp(-E8M0_BIAS, E8M0_BIAS)
    else:  # the other rules from the codec's one definition, through the CPU
        shared = torch.from_numpy(mx_shared_exponent(amax.cpu().numpy(), rule)).to(amax.device)
    # 2^E from the bits; 2^-127 is a float32 subnormal, which pow2 leaves out
    scales = torch.where(shared > -E8M0_BIAS, pow2(shared.clamp(min=1 - E8M0_BIAS)), 2.0**-E8M0_BIAS)
    values = fake_quantize(blocks.reshape(-1, blocks.shape[-1]), ELEMENT, scales.reshape(-1, 1))
    return values.reshape(blocks.shape), scales


def _nvfp4_values(
    blocks: torch.Tensor, amax: torch.Tensor, tensor_scale: np.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """spec 7.3, with the codec's float64 quotients (exact divisors, one rounding each)."""
    s_t = torch.tensor(float(tensor_scale), dtype=torch.float64, device=blocks.device)
    fmt = get_block_format("nvfp4").scale
    scales = _round(amax.double() / (ELEMENT_MAX * s_t), fmt.mbits, fmt.lowest_exponent, float(fmt.max_value))
    scales = scales.float()
    divisor = (scales.double() * s_t)[..., None]  # exact: 4 x 24 significant bits
    quotient = blocks.double() / torch.where(divisor > 0, divisor, 1.0)
    elements = _round(quotient, ELEMENT.mbits, ELEMENT.lowest_exponent, ELEMENT_MAX)
    values = torch.where(divisor > 0, elements * scales[..., None], 0.0)  # a zero scale gives +0 codes
    return values.float(), scales


def _round(y: torch.Tensor, mbits: int, lowest_exponent: int, largest: float) -> torch.Tensor:
    """round_to_grid with a format's constants as tensors on y's device."""
    return round_to_grid(
        y,
        mbits,
        torch.tensor(lowest_exponent, dtype=torch.int32, device=y.device),
        torch.tensor(largest, dtype=y.dtype, device=y.device),
    )


def quantize_input(layer: BlockLinear, x: torch.Tensor) -> BlockTensor:
    """The activations (..., in) as a (tokens, in) block tensor, with the layer's static tensor scale."""
    rows = x.detach().float().cpu().reshape(-1, layer.in_features)
    scale = layer.input_tensor_scale if layer.input_format.tensor_scale else None
    return block_quantize(rows, layer.input_format, tensor_scale=scale, scale_rule=layer.input_scale_rule)


def forward_torch(layer: BlockLinear, x: torch.Tensor, weight: WeightOperand) -> torch.Tensor:
    """The layer in torch ops on x's device; `weight` is weight_operand(layer) there. float32 out."""
    check_full_float32(x)
    rows = x.detach().float().reshape(-1, layer.in_features)
    if layer.input_format is None:
        y = F.linear(rows, weight.values)
    else:
        fmt = layer.input_format
        a, scales = fake_quantize_blocks(rows, fmt, layer.input_tensor_scale, layer.input_scale_rule)
        y = exact_product(a, weight.values, float32_rows(fmt, scales, weight.grid))
        if fmt.tensor_scale:
            y.mul_(float(np.float32(layer.input_tensor_scale * layer.weight.tensor_scale)))
    y = y.reshape(*x.shape[:-1], layer.out_features)
    return y if layer.bias is None else y.add_(layer.bias.to(x.device))


def forward_simulator(layer: BlockLinear, x: torch.Tensor, accum: str = "exact") -> torch.Tensor:
    """The layer through fp4sim.block_gemm under `accum`; CPU, float32 out."""
    if layer.input_format is None:
        raise ValueError("this layer keeps its input in floating point; block_gemm needs quantized activations")
    y = torch.from_numpy(block_gemm(quantize_input(layer, x), layer.weight, accum=accum))
    y = y.reshape(*x.shape[:-1], layer.out_features)
    return y if layer.bias is None else y + layer.bias
