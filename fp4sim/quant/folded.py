"""The folded (hardware) form of a quantized linear layer, and its two forward paths (docs/quantization.md).

LLM-FP4 quantizes the input of layer ``y = x W^T`` with a tensor scale
``alpha_X`` and, under FPQ, an integer bias ``s_j`` per input channel; the
weight with one scale ``alpha_W[k]`` per output channel. Folding moves every
factor the MAC array does not compute out of the sum:

    y[k] = fp32(alpha_X * alpha_W[k]) * sum_j A[j] * 2^-s_j * W[j, k]

with ``A = encode(x / alpha_X * 2^s)`` and ``W`` the weight codes. The
``2^-s_j`` is the array's per-input-channel exponent shift (docs/spec.md 2.2):
the pre-shifted exponent bias of the paper, folded into the weights.

Two forward paths compute that sum. ``simulator`` runs ``fp4sim.gemm`` (the
array's bits, any accumulation model). ``torch`` is the same formula in torch
ops on any device: code values times ``2^-s`` are exact floats, and the BLAS
sum is exact in float32 when every partial sum stays below ``2^24`` LSBs (else
float64 is used), so in exact mode both paths give the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..codec import encode
from ..formats import Format
from ..gemm.fast import FLOAT32_EXACT, gemm
from ..hw.fp4_operand_decode import operand_table
from ..hw.fp4_pkg import PEConfig
from .fakequant import fake_quantize
from .search import LinearQuant

BACKENDS = ("torch", "simulator")


@dataclass(frozen=True, eq=False)
class FoldedLinear:
    """One quantized linear layer as FP4 hardware holds it.

    Attributes:
        weight_format: format of the weight codes (default bias).
        weight_codes: (out, in) uint8 codes, row k quantized with ``weight_scale[k]``.
        weight_scale: (out,) float32 ``alpha_W``.
        input_format: activation format, or None when activations stay in floating point.
        input_scale: 0-d float32 ``alpha_X`` (1 when the input is not quantized).
        input_shift: (in,) uint8 per-input-channel exponent shift ``s_j`` (zeros without FPQ).
        bias: (out,) float32, or None.
    """

    weight_format: Format
    weight_codes: torch.Tensor
    weight_scale: torch.Tensor
    input_format: Format | None
    input_scale: torch.Tensor
    input_shift: torch.Tensor
    bias: torch.Tensor | None = None

    @property
    def in_features(self) -> int:
        return self.weight_codes.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight_codes.shape[0]

    @property
    def output_scale(self) -> torch.Tensor:
        """fp32(alpha_X * alpha_W[k]): the per-output-channel scale the array's epilogue applies (spec 2.5)."""
        return self.input_scale * self.weight_scale

    def pe_config(self) -> PEConfig:
        """The MAC array that runs this layer: its formats, a shift port as wide as its shifts need, K_max = in.

        The output bits do not depend on the port width or K_max (the sum is
        exact either way, spec 2.3); sizing both to the layer keeps the
        Kulisch accumulator as narrow as the layer allows.
        """
        if self.input_format is None:
            raise ValueError("this layer keeps its input in floating point; the MAC array needs quantized activations")
        shift_bits = int(self.input_shift.max()).bit_length() if self.input_shift.numel() else 0
        return PEConfig.make(self.input_format, self.weight_format, shift_bits=shift_bits, k_max=self.in_features)


def fold_linear(weight: torch.Tensor, quant: LinearQuant, bias: torch.Tensor | None = None) -> FoldedLinear:
    """The folded form of a calibrated linear layer (weight (out, in), as nn.Linear holds it)."""
    w = quant.weight
    codes = encode(weight.detach().float().cpu(), w.fmt, scale=w.scale.cpu(), axis=0)
    act = quant.activation
    if act is None:
        input_scale, shift = torch.tensor(1.0), torch.zeros(weight.shape[1], dtype=torch.uint8)
    else:
        input_scale = act.scale.detach().float().cpu().reshape(())
        shift = torch.zeros(weight.shape[1], dtype=torch.uint8) if act.shift is None else act.shift.to(torch.uint8)
    return FoldedLinear(
        weight_format=w.fmt,
        weight_codes=codes,
        weight_scale=w.scale.detach().float().cpu(),
        input_format=None if act is None else act.fmt,
        input_scale=input_scale,
        input_shift=shift.cpu(),
        bias=None if bias is None else bias.detach().float().cpu(),
    )


def code_values(fmt: Format, codes: torch.Tensor) -> torch.Tensor:
    """Every code's exact value as float32, by table lookup (any device)."""
    table = torch.from_numpy(fmt.values().astype(np.float32)).to(codes.device)
    return table[codes.long()]


def input_values(layer: FoldedLinear, x: torch.Tensor) -> torch.Tensor:
    """value(A[j]) * 2^-s_j for float32 inputs x (..., in): the activation as the array sees it, exact."""
    y = x / layer.input_scale.to(x.device)  # one float32 rounding, as encode(x, scale=alpha_X) does
    return fake_quantize(y, layer.input_format, torch.ones((), device=x.device), layer.input_shift.to(x.device))


@lru_cache(maxsize=256)  # called on every forward; the bound depends only on the formats, shifts and K
def exact_sum_dtype(fmt_a: Format, fmt_w: Format, max_shift: int, k: int) -> torch.dtype:
    """float32 when every partial sum is an integer below 2^24 LSBs (spec 4.2, 6.2), else float64.

    The bound is K * max|X_A| * max|X_W| * 2^max_shift in LSB units. Past 2^53
    float64 is not exact either; such layers also exceed the golden model's
    64-bit accumulator, so the simulator refuses them.
    """
    bound = k * int(np.abs(operand_table(fmt_a)).max()) * int(np.abs(operand_table(fmt_w)).max()) << max_shift
    return torch.float32 if bound <= FLOAT32_EXACT else torch.float64


def check_full_float32(x: torch.Tensor) -> None:
    """RuntimeError for a CUDA input while TF32 may round float32 matmuls (spec 6.2)."""
    if x.is_cuda and (torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        raise RuntimeError("TF32 matmuls are on; exact float32 sums need fp4sim.models.checkpoint.use_full_float32()")


def forward_torch(layer: FoldedLinear, x: torch.Tensor, weight_values: torch.Tensor) -> torch.Tensor:
    """The folded layer in torch ops; `weight_values` is code_values(weight_codes) on x's device. float32 out."""
    check_full_float32(x)
    x = x.float()
    if layer.input_format is None:  # weight-only quantization
        y = F.linear(x, weight_values * layer.weight_scale.to(x.device)[:, None])
    else:
        dtype = exact_sum_dtype(
            layer.input_format, layer.weight_format, int(layer.input_shift.max()), layer.in_features
        )
        acc = F.linear(input_values(layer, x).to(dtype), weight_values.to(dtype)).add_(0.0)  # +0, never -0 (2.4)
        y = acc.float().mul_(layer.output_scale.to(x.device))
    return y if layer.bias is None else y.add_(layer.bias.to(x.device))


def forward_simulator(layer: FoldedLinear, x: torch.Tensor, accum: str = "exact") -> torch.Tensor:
    """The folded layer through fp4sim.gemm (the array's bits under `accum`); CPU, float32 out."""
    config = layer.pe_config()
    y = gemm(
        input_codes(layer, x),
        weight_codes_kn(layer),
        layer.input_shift.numpy(),
        layer.input_format,
        layer.weight_format,
        accum=accum,
        scale=layer.output_scale.numpy(),
        k_max=config.k_max,
    )
    y = torch.from_numpy(y).reshape(*x.shape[:-1], layer.out_features)
    return y if layer.bias is None else y + layer.bias


def input_codes(layer: FoldedLinear, x: torch.Tensor) -> np.ndarray:
    """`x` (..., in) encoded as the array takes its activations (spec 6.1): (M, K) uint8 codes, M = x.numel() / in."""
    rows = x.detach().float().cpu().reshape(-1, layer.in_features).numpy()
    return encode(rows, layer.input_format, scale=layer.input_scale.numpy(), shift=layer.input_shift.numpy()[None, :])


def weight_codes_kn(layer: FoldedLinear) -> np.ndarray:
    """The weight codes as the array takes them: (K, N) = (in, out), C-contiguous."""
    return np.ascontiguousarray(layer.weight_codes.numpy().T)
