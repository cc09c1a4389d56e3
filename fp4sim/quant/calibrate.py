"""Layer-by-layer calibration of a LLaMA-shaped model with cached inputs (docs/quantization.md).

The model runs once with stand-ins for its decoder layers, which keep the
first layer's hidden states and every layer's own keyword arguments (its
attention mask, full or sliding window by layer type; the rotary tables).
After that each layer runs once on the cached full-precision hidden states: hooks collect the
inputs of its seven linear layers, those are calibrated, and the layer's
full-precision output becomes the next layer's input. Cost grows linearly
with depth; memory holds one layer's activations beyond the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..codec.blockscaled import get_block_format
from ..models.checkpoint import input_device, onloaded
from .attention import STATE, AttentionQuant, AttentionRecorder, MatmulQuant, use_fp4sim_attention
from .blockquant import BlockEmbeddingQuant, BlockLinearQuant, calibrate_block_linear
from .config import QuantConfig
from .search import LinearQuant, TensorQuant, calibrate_embedding, calibrate_linear, calibrate_matmul

LAYER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


class _StopForward(Exception):
    """Raised by the last stand-in layer: the norm and lm_head need not run."""


class _LayerInputs(nn.Module):
    """Stands in for one decoder layer: keeps its hidden states and keyword arguments, passes the hidden states on."""

    def __init__(self, captured: list[tuple[torch.Tensor, dict]], last: bool) -> None:
        super().__init__()
        self.captured, self.last = captured, last

    def forward(self, hidden: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.captured.append((hidden, kwargs))
        if self.last:
            raise _StopForward
        return hidden


def calibration_windows(ids: torch.Tensor, samples: int, length: int, seed: int) -> torch.Tensor:
    """`samples` random windows of `length` tokens from a 1-D token stream, seeded (paper: random segments)."""
    if ids.numel() < length + 1:
        raise ValueError(
            f"the calibration text has {ids.numel()} tokens; it needs more than one window of {length} tokens"
        )
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - length, (samples,), generator=generator)
    return torch.stack([ids[s : s + length] for s in starts.tolist()])


def model_calibration_windows(context: int, ids: torch.Tensor, config: QuantConfig) -> torch.Tensor:
    """The config's calibration windows, their length capped at the model's context (max_position_embeddings)."""
    length = min(config.calib_length, context)
    return calibration_windows(ids, config.calib_samples, length, config.seed)


@torch.no_grad()
def calibrate_model(model: Any, windows: torch.Tensor, config: QuantConfig, progress: bool = True) -> dict:
    """Quantization parameters for every quantized tensor, keyed by module name (weights stay untouched).

    With config.quantize_attention the model runs fp4sim's eager attention
    during calibration (its implementation is restored afterwards), and each
    layer's ``self_attn`` gets an AttentionQuant for Q K^T and P V.
    """
    decoder = model.model
    implementation = model.config._attn_implementation
    if config.quantize_attention:
        use_fp4sim_attention(model)
    try:
        hidden, every_kwargs = layer_inputs(model, windows.to(input_device(model)))
        results: dict[str, LinearQuant | TensorQuant | AttentionQuant | BlockLinearQuant | BlockEmbeddingQuant] = {}
        layers = tqdm(decoder.layers, desc=f"calibrating ({config.method} {config.bits})", disable=not progress)
        for index, (layer, layer_kwargs) in enumerate(zip(layers, every_kwargs, strict=True)):
            recorder = _attach_recorder(layer, config, windows.shape[1])
            inputs = _linear_inputs(layer, hidden, layer_kwargs)
            for name in LAYER_LINEARS:
                linear = layer.get_submodule(name)
                with onloaded(linear):
                    results[f"model.layers.{index}.{name}"] = _calibrate_linear(linear.weight, inputs[name], config)
            if recorder is not None:
                delattr(layer.self_attn, STATE)
                results[f"model.layers.{index}.self_attn"] = AttentionQuant(
                    MatmulQuant(*calibrate_matmul(*recorder.stacked("scores"), config)),
                    MatmulQuant(*calibrate_matmul(*recorder.stacked("context"), config)),
                )
            output = layer(hidden, **layer_kwargs)
            hidden = output[0] if isinstance(output, tuple) else output
        head_input = decoder.norm(hidden).reshape(-1, hidden.shape[-1])
        with onloaded(model.lm_head):
            results["lm_head"] = _calibrate_linear(model.lm_head.weight, head_input, config)
        if config.is_block:
            results["model.embed_tokens"] = BlockEmbeddingQuant(get_block_format(config.method))
        else:
            with onloaded(decoder.embed_tokens):
                results["model.embed_tokens"] = calibrate_embedding(decoder.embed_tokens.weight, config)
    finally:
        model.set_attn_implementation(implementation)
    return results


def _calibrate_linear(weight: torch.Tensor, x: torch.Tensor, config: QuantConfig) -> LinearQuant | BlockLinearQuant:
    """LLM-FP4's search, or the block formats' round-to-nearest."""
    if config.is_block:
        return calibrate_block_linear(x, config)
    return calibrate_linear(weight, x, config)


def _attach_recorder(layer: nn.Module, config: QuantConfig, window_length: int) -> AttentionRecorder | None:
    """A recorder on the layer's attention for the first search_tokens // window_length windows, if wanted."""
    if not config.quantize_attention:
        return None
    tokens = config.search_tokens or 1 << 62
    recorder = AttentionRecorder(max_batch=max(1, tokens // window_length))
    setattr(layer.self_attn, STATE, recorder)
    return recorder


def layer_inputs(model: Any, windows: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """The first decoder layer's hidden states (batch, T, hidden) and each layer's keyword arguments, for `windows`.

    One pass of the model with every decoder layer replaced by a stand-in
    (put back afterwards): what the model computes before and between its
    layers (embedding, masks per layer type, rotary tables), none of the layers.
    """
    decoder = model.model
    captured: list[tuple[torch.Tensor, dict]] = []
    layers = decoder.layers
    decoder.layers = nn.ModuleList(_LayerInputs(captured, i == len(layers) - 1) for i in range(len(layers)))
    try:
        model(windows, use_cache=False)
    except _StopForward:
        pass
    finally:
        decoder.layers = layers
    return captured[0][0], [kwargs for _, kwargs in captured]


def _linear_inputs(layer: nn.Module, hidden: torch.Tensor, layer_kwargs: dict) -> dict[str, torch.Tensor]:
    """Each linear's input over all calibration tokens, (tokens, in_features), from one full-precision pass."""
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in LAYER_LINEARS:

        def hook(module: nn.Module, args: tuple, name: str = name) -> None:
            inputs[name] = args[0].reshape(-1, args[0].shape[-1]).detach()

        handles.append(layer.get_submodule(name).register_forward_pre_hook(hook))
    try:
        layer(hidden, **layer_kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return inputs
