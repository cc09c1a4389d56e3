"""Fake-quantized model: linear layers and the embedding replaced in place (torch path)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


def apply_fake_quant(model: Any, params: dict[str, LinearQuant | TensorQuant]) -> Any:
    """Replace every calibrated module of `model` by its fake-quantized form; returns the model."""
    for name, quant in params.items():
        if isinstance(quant, TensorQuant):  # the embedding: weight only
            embedding = model.get_submodule(name)
            embedding.weight.data = quant.apply(embedding.weight.data, channel_axis=0).to(embedding.weight.dtype)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, FakeQuantLinear(getattr(parent, child), quant))
    return model
