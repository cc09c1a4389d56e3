"""MXFP4 / NVFP4 quantization of a model's linear layers: round to nearest, no search (docs/quantization.md).

Weights are block-quantized along the input axis once (NVFP4's tensor scale
from the weight's amax). Activations are block-quantized on the fly, one
block scale per 16 or 32 input channels of each token, as block-scaled
hardware does; NVFP4's activation tensor scale is static, from the amax of
the calibration inputs.

Two forward paths compute ``y = alpha * sum_b S_a S_w sum_i q_a q_w``.
``simulator`` runs ``fp4sim.block_gemm`` (any accumulation model). ``torch``
multiplies the block-dequantized operands (exact float32 values) in float64
and rounds to float32; that is the exact sum, rounded once, whenever float64
holds every partial sum exactly, which the simulate report measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.blockscaled import (
    BlockFormat,
    BlockTensor,
    block_dequantize,
    block_quantize,
    get_block_format,
    nvfp4_tensor_scale,
)
from ..gemm.block import block_gemm
from .config import UNQUANTIZED, QuantConfig


@dataclass(frozen=True)
class BlockLinearQuant:
    """Calibration result of one linear layer under a block format.

    Attributes:
        fmt: the block format of weights and activations.
        quantize_input: False for weight-only quantization (A = 16 bits).
        input_tensor_scale: NVFP4's static activation tensor scale (1 for MXFP4).
    """

    fmt: BlockFormat
    quantize_input: bool
    input_tensor_scale: float = 1.0


@dataclass(frozen=True)
class BlockEmbeddingQuant:
    """The embedding table block-quantized along the hidden axis, one row per token."""

    fmt: BlockFormat


def calibrate_block_linear(channel_max: torch.Tensor | None, config: QuantConfig) -> BlockLinearQuant:
    """Round-to-nearest needs nothing from the data but NVFP4's activation tensor scale: amax(x) / 2688.

    channel_max: (in,) max |x| per input channel over the calibration tokens; None where not needed.
    """
    fmt = get_block_format(config.method)
    quantize_input = config.activation_bits != UNQUANTIZED
    scale = 1.0
    if fmt.tensor_scale and quantize_input:
        scale = float(nvfp4_tensor_scale(float(channel_max.max())))
    return BlockLinearQuant(fmt, quantize_input, scale)


@dataclass(frozen=True, eq=False)
class BlockLinear:
    """One block-quantized linear layer as hardware holds it.

    Attributes:
        weight: (out, in) block tensor, blocks along the input axis.
        input_format: the activations' block format, or None (weight-only).
        input_tensor_scale: float32 activation tensor scale (1 for MXFP4 and weight-only).
        bias: (out,) float32, or None.
    """

    weight: BlockTensor
    input_format: BlockFormat | None
    input_tensor_scale: np.float32
    bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format != self.weight.fmt:
            raise ValueError(f"activations in {self.input_format.name} cannot meet {self.weight.fmt.name} weights")
        scale = np.float32(self.input_tensor_scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"input_tensor_scale must be a finite float32 > 0, got {scale}")
        if (self.input_format is None or not self.input_format.tensor_scale) and scale != 1:
            raise ValueError(f"input_tensor_scale must be 1 without NVFP4 activations, got {scale}")
        object.__setattr__(self, "input_tensor_scale", scale)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


def fold_block_linear(weight: torch.Tensor, quant: BlockLinearQuant, bias: torch.Tensor | None = None) -> BlockLinear:
    """The hardware form of a linear layer (weight (out, in), as nn.Linear holds it)."""
    return BlockLinear(
        weight=block_quantize(weight.detach().float().cpu(), quant.fmt),
        input_format=quant.fmt if quant.quantize_input else None,
        input_tensor_scale=np.float32(quant.input_tensor_scale),
        bias=None if bias is None else bias.detach().float().cpu(),
    )


def weight_operand(layer: BlockLinear) -> torch.Tensor:
    """The torch path's weight: element values times block scales, exact in float32; float64 when
    activations are quantized (the sum is formed there), else the full float32 dequantized weight."""
    if layer.input_format is None:
        return torch.from_numpy(block_dequantize(layer.weight))
    return torch.from_numpy(block_dequantize(layer.weight, include_tensor_scale=False)).double()


def quantize_input(layer: BlockLinear, x: torch.Tensor) -> BlockTensor:
    """The activations (..., in) as a (tokens, in) block tensor, with the layer's static tensor scale."""
    rows = x.detach().float().cpu().reshape(-1, layer.in_features)
    scale = layer.input_tensor_scale if layer.input_format.tensor_scale else None
    return block_quantize(rows, layer.input_format, tensor_scale=scale)


def forward_torch(layer: BlockLinear, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer in torch ops; `weight` is weight_operand(layer) on x's device. float32 out."""
    if layer.input_format is None:
        y = F.linear(x.float(), weight)
    else:
        a = torch.from_numpy(block_dequantize(quantize_input(layer, x), include_tensor_scale=False))
        acc = F.linear(a.to(x.device, torch.float64), weight) + 0.0  # +0, never -0 (spec 7.5)
        alpha = np.float32(layer.input_tensor_scale * layer.weight.tensor_scale)
        y = acc.float().reshape(*x.shape[:-1], layer.out_features) * float(alpha)
    return y if layer.bias is None else y + layer.bias.to(x.device)


def forward_simulator(layer: BlockLinear, x: torch.Tensor, accum: str = "exact") -> torch.Tensor:
    """The layer through fp4sim.block_gemm under `accum`; CPU, float32 out."""
    if layer.input_format is None:
        raise ValueError("this layer keeps its input in floating point; block_gemm needs quantized activations")
    y = torch.from_numpy(block_gemm(quantize_input(layer, x), layer.weight, accum=accum))
    y = y.reshape(*x.shape[:-1], layer.out_features)
    return y if layer.bias is None else y + layer.bias
