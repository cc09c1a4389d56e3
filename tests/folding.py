"""The pre-shifted exponent bias checked on a whole model: what each folded layer feeds its MAC array equals the
paper's unfolded per-channel quantizer on the same input (LLM-FP4, Section 3.2; docs/spec.md 6.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fp4sim import decode
from fp4sim.quant.fakequant import fake_quantize_ops
from fp4sim.quant.folded import input_codes
from fp4sim.quant.modules import QuantizedLinear


def shifted_layers_feed_unfolded_inputs(model: Any, run: Callable[[], Any]) -> int:
    """Run `run()` (a forward of `model`) and check, for every quantized linear with quantized inputs, that the
    codec's encode/decode of its input with shifts s_j and scale alpha (the array's view, folded) has the bits of
    the torch quantizer with one scale alpha 2^-s_j per input channel (unfolded). Returns how many layers have a
    nonzero shift, so that a caller can show the check was not vacuous."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: inputs.setdefault(name, args[0].detach().clone()))
        for name, module in model.named_modules()
        if isinstance(module, QuantizedLinear) and module.folded.input_format is not None
    ]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    shifted = 0
    for name, x in inputs.items():
        layer = model.get_submodule(name).folded
        rows = x.float().reshape(-1, layer.in_features)
        shift = layer.input_shift.numpy()
        folded = decode(input_codes(layer, rows), layer.input_format, scale=layer.input_scale.numpy(), shift=shift)
        per_channel = layer.input_scale * torch.exp2(-layer.input_shift.float())
        unfolded = fake_quantize_ops(rows, layer.input_format, per_channel).numpy()
        assert np.array_equal(np.asarray(folded).view(np.uint32), unfolded.view(np.uint32)), name
        shifted += bool(shift.any())
    return shifted
