"""Quantized models: linear layers and the embedding replaced in place.

`FakeQuantLinear` is the unfolded form used during calibration (quantize x and
W, then a float linear); `QuantizedLinear` runs the folded hardware form of an
export (folded.py) on torch ops or on the simulator, and `BlockQuantizedLinear`
an MXFP4 / NVFP4 layer (blockquant.py) the same two ways. Both offer
``reference(x)``: the torch path, which the simulate report compares with.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import blockquant
from .attention import STATE, AttentionQuant, FoldedAttention, use_fp4sim_attention
from .blockquant import BlockLinear
from .folded import BACKENDS, FoldedLinear, code_values, forward_simulator, forward_torch
from .search import LinearQuant, TensorQuant


class FakeQuantLinear(nn.Module):
    """A linear layer computing F.linear(quantize(x), quantize(W)) in the input's dtype."""

    def __init__(self, linear: nn.Linear, quant: LinearQuant) -> None:
        super().__init__()
        self.quant = quant
        weight = quant.weight.apply(linear.weight.data, channel_axis=0)
        self.weight = nn.Parameter(weight.to(linear.weight.dtype), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant.activation is not None:
            x = self.quant.activation.apply(x).to(x.dtype)
        return F.linear(x, self.weight, self.bias)


def apply_fake_quant(model: Any, params: dict[str, LinearQuant | TensorQuant | AttentionQuant]) -> Any:
    """Replace every calibrated module of `model` by its fake-quantized form; returns the model."""
    for name, quant in params.items():
        if isinstance(quant, TensorQuant):  # the embedding: weight only
            embedding = model.get_submodule(name)
            embedding.weight.data = quant.apply(embedding.weight.data, channel_axis=0).to(embedding.weight.dtype)
        elif isinstance(quant, AttentionQuant):
            setattr(model.get_submodule(name), STATE, quant)
            use_fp4sim_attention(model)
        else:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, FakeQuantLinear(getattr(parent, child), quant))
    return model


def set_backend(model: Any, backend: str, accum: str = "exact") -> Any:
    """Run every folded layer and attention of a loaded export on `backend` ("torch" or "simulator")."""
    for module in model.modules():
        if isinstance(module, SimulatedLinear):
            module.set_backend(backend, accum)
        state = getattr(module, STATE, None)
        if isinstance(state, FoldedAttention):
            setattr(module, STATE, FoldedAttention(state.quant, backend, accum))
    return model


class SimulatedLinear(nn.Module):
    """What the two hardware layers share: a backend ("torch" or "simulator"), an accumulation model, and
    ``reference(x)``, the torch path that the simulate report compares the simulator with."""

    def set_backend(self, backend: str, accum: str = "exact") -> None:
        """Run on `backend` under accumulation model `accum`; ValueError if the simulator cannot run this layer."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "simulator":
            self.check_simulable()
        self.backend, self.accum = backend, accum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "simulator":
            return self.simulate(x).to(x.device, x.dtype)
        return self.reference(x).to(x.dtype)

    @property
    def in_features(self) -> int:
        return self.hardware.in_features

    @property
    def out_features(self) -> int:
        return self.hardware.out_features

    @property
    def input_format(self) -> Any:
        return self.hardware.input_format

    def extra_repr(self) -> str:
        act = self.input_format.name if self.input_format is not None else "float"
        return (
            f"{self.in_features} -> {self.out_features}, W {self.weight_format.name}, A {act}, backend {self.backend}"
        )


class QuantizedLinear(SimulatedLinear):
    """A folded linear layer: FP4 codes, shifts and FP32 scales, on `backend` "torch" or "simulator"."""

    def __init__(self, folded: FoldedLinear, backend: str = "torch", accum: str = "exact") -> None:
        super().__init__()
        self.folded = folded
        self.register_buffer("weight_values", code_values(folded.weight_format, folded.weight_codes), persistent=False)
        self.set_backend(backend, accum)

    @property
    def hardware(self) -> FoldedLinear:
        return self.folded

    @property
    def weight_format(self) -> Any:
        return self.folded.weight_format

    def check_simulable(self) -> None:
        self.folded.pe_config()  # raises for layers the array cannot run

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The simulator path on `x`, float32 on the CPU."""
        return forward_simulator(self.folded, x, self.accum)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The torch path on `x`, float32."""
        return forward_torch(self.folded, x, self.weight_values)


class BlockQuantizedLinear(SimulatedLinear):
    """An MXFP4 / NVFP4 linear layer: element codes, block scales and tensor scales, on "torch" or "simulator"."""

    def __init__(self, layer: BlockLinear, backend: str = "torch", accum: str = "exact") -> None:
        super().__init__()
        self.layer = layer
        operand = blockquant.weight_operand(layer)
        self.register_buffer("weight_values", operand.values, persistent=False)
        self.register_buffer("weight_grid", operand.grid, persistent=False)
        self.set_backend(backend, accum)

    @property
    def hardware(self) -> BlockLinear:
        return self.layer

    @property
    def weight_format(self) -> Any:
        return self.layer.weight.fmt

    def check_simulable(self) -> None:
        if self.layer.input_format is None:
            raise ValueError("weight-only layers keep floating-point activations; the simulator needs both in FP4")

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        """The simulator path on `x`, float32 on the CPU."""
        return blockquant.forward_simulator(self.layer, x, self.accum)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The torch path on `x`, float32."""
        return blockquant.forward_torch(self.layer, x, blockquant.WeightOperand(self.weight_values, self.weight_grid))
