"""Quantized models: linear layers and the embedding replaced in place.

`FakeQuantLinear` is the unfolded form used during calibration (quantize x and
W, then a float linear); `QuantizedLinear` runs the folded hardware form of an
export (folded.py) on torch ops or on the simulator.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import STATE, AttentionQuant, FoldedAttention, use_fp4sim_attention
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
        if isinstance(module, QuantizedLinear):
            module.set_backend(backend, accum)
        state = getattr(module, STATE, None)
        if isinstance(state, FoldedAttention):
            setattr(module, STATE, FoldedAttention(state.quant, backend, accum))
    return model


class QuantizedLinear(nn.Module):
    """A folded linear layer: FP4 codes, shifts and FP32 scales, on `backend` "torch" or "simulator"."""

    def __init__(self, folded: FoldedLinear, backend: str = "torch", accum: str = "exact") -> None:
        super().__init__()
        self.folded = folded
        self.register_buffer("weight_values", code_values(folded.weight_format, folded.weight_codes), persistent=False)
        self.set_backend(backend, accum)

    def set_backend(self, backend: str, accum: str = "exact") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "simulator":
            self.folded.pe_config()  # raises for layers the array cannot run
        self.backend, self.accum = backend, accum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "simulator":
            return forward_simulator(self.folded, x, self.accum).to(x.device, x.dtype)
        return forward_torch(self.folded, x, self.weight_values).to(x.dtype)

    def extra_repr(self) -> str:
        f = self.folded
        act = f.input_format.name if f.input_format is not None else "float"
        return f"{f.in_features} -> {f.out_features}, W {f.weight_format.name}, A {act}, backend {self.backend}"
