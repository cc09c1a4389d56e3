"""Layer-by-layer calibration with streamed layer inputs (docs/quantization.md, "Calibration").

The model runs once per window with stand-ins for its decoder layers, which
keep the first layer's hidden states and every layer's own keyword arguments
(its attention mask, full or sliding window by layer type; the rotary tables).
After that each layer runs once per window on the cached full-precision hidden states. Hooks on
its linear layers keep only what the search reads (search.LinearInputs): the
running max |x| per input channel over every token, and the rows of the search
tokens. The layer's full-precision output becomes the next layer's input. Cost
grows linearly with depth; memory holds two copies of the hidden states and one
layer's search rows beyond the model. A method that reads nothing from the data
(MXFP4, weight-only round to nearest) runs no forward pass at all. The forward
passes run where the model is; the search runs on the CPU.
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
from .search import (
    LinearInputs,
    LinearQuant,
    TensorQuant,
    calibrate_embedding,
    calibrate_linear,
    calibrate_matmul,
    search_rows,
)
from .stages import StageTimes

LAYER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
Quant = LinearQuant | TensorQuant | AttentionQuant | BlockLinearQuant | BlockEmbeddingQuant


class _StopForward(Exception):
    """Raised by the last stand-in layer: the norm and lm_head need not run."""


class _StandIn(nn.Module):
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
    return torch.stack([ids[s : s + length] for s in starts.tolist()]).reshape(samples, length)


def model_calibration_windows(context: int, ids: torch.Tensor | None, config: QuantConfig) -> torch.Tensor:
    """The config's calibration windows (config.windows of them), their length capped at the model's context.

    ids may be None where the config reads no data (no windows)."""
    length = min(config.calib_length, context)
    if config.windows == 0:
        return torch.empty(0, length, dtype=torch.long)
    return calibration_windows(ids, config.windows, length, config.seed)


@torch.no_grad()
def calibrate_model(
    model: Any, windows: torch.Tensor, config: QuantConfig, progress: bool = True, times: StageTimes | None = None
) -> dict[str, Quant]:
    """Quantization parameters for every quantized tensor, keyed by module name (weights stay untouched).

    windows: (samples, length) token ids; may be empty when not config.needs_data.
    With config.quantize_attention the model runs fp4sim's eager attention
    during calibration (its implementation is restored afterwards), and each
    layer's ``self_attn`` gets an AttentionQuant for Q K^T and P V. `times`
    receives the wall time of each stage (forward passes, searches).
    """
    times = times or StageTimes()
    if config.needs_data and windows.shape[0] == 0:
        raise ValueError(f"{config.method} {config.bits} reads the calibration data; got no windows")
    decoder = model.model
    implementation = model.config._attn_implementation
    if config.quantize_attention:
        use_fp4sim_attention(model)
    try:
        hidden = rows = None
        every_kwargs = [{}] * len(decoder.layers)
        if config.needs_data:
            with times("forward passes"):
                hidden, every_kwargs = layer_inputs(model, windows.to(input_device(model)))
            rows = _window_rows(windows.shape, config)
        results: dict[str, Quant] = {}
        layers = tqdm(decoder.layers, desc=f"calibrating ({config.method} {config.bits})", disable=not progress)
        for index, (layer, kwargs) in enumerate(zip(layers, every_kwargs, strict=True)):
            inputs = {}
            recorder = _attach_recorder(layer, config, windows.shape[1])
            if hidden is not None:
                with times("forward passes"), _LayerInputs(layer, rows) as collected:
                    hidden = _run_layer(layer, hidden, kwargs, collected)
                inputs = collected.inputs()
            with times("weight and activation search"):
                for name in LAYER_LINEARS:
                    linear = layer.get_submodule(name)
                    with onloaded(linear):
                        results[f"model.layers.{index}.{name}"] = _calibrate_linear(
                            linear.weight, inputs.get(name), config
                        )
            if recorder is not None:
                delattr(layer.self_attn, STATE)
                with times("attention search"):
                    results[f"model.layers.{index}.self_attn"] = AttentionQuant(
                        MatmulQuant(*calibrate_matmul(*recorder.stacked("scores"), config)),
                        MatmulQuant(*calibrate_matmul(*recorder.stacked("context"), config)),
                    )
        with times("lm_head"):
            head_inputs = None
            if hidden is not None:
                head = decoder.norm(hidden).reshape(-1, hidden.shape[-1]).float().cpu()
                head_inputs = LinearInputs(head.abs().amax(0), head[rows.flatten()])
            with onloaded(model.lm_head):
                results["lm_head"] = _calibrate_linear(model.lm_head.weight, head_inputs, config)
        with times("embedding"):
            if config.is_block:
                results["model.embed_tokens"] = BlockEmbeddingQuant(get_block_format(config.method))
            else:
                with onloaded(decoder.embed_tokens):
                    results["model.embed_tokens"] = calibrate_embedding(decoder.embed_tokens.weight.cpu(), config)
    finally:
        model.set_attn_implementation(implementation)
    return results


def _calibrate_linear(
    weight: torch.Tensor, inputs: LinearInputs | None, config: QuantConfig
) -> LinearQuant | BlockLinearQuant:
    """LLM-FP4's search, or the block formats' round-to-nearest; inputs None where the method reads no data."""
    if config.is_block:
        return calibrate_block_linear(None if inputs is None else inputs.channel_max, config)
    return calibrate_linear(weight.cpu(), inputs, config)


def _window_rows(shape: torch.Size, config: QuantConfig) -> torch.Tensor:
    """The search tokens as (window, position) pairs, (n, 2), window-major; none for round to nearest."""
    samples, length = shape
    if not config.is_search:
        return torch.empty(0, 2, dtype=torch.long)
    flat = search_rows(samples * length, config)
    return torch.stack([flat // length, flat % length], 1)


class _LayerInputs:
    """Hooks on a layer's linears, fed one window at a time: per-channel max |x| and the search tokens' rows."""

    def __init__(self, layer: nn.Module, rows: torch.Tensor) -> None:
        self.layer = layer
        self.rows = rows
        self.window = 0
        self.channel_max: dict[str, torch.Tensor] = {}
        self.sample: dict[str, list[torch.Tensor]] = {name: [] for name in LAYER_LINEARS}
        self.handles: list[Any] = []

    def __enter__(self) -> _LayerInputs:
        for name in LAYER_LINEARS:
            hook = lambda module, args, name=name: self._record(name, args[0])  # noqa: E731
            self.handles.append(self.layer.get_submodule(name).register_forward_pre_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def _record(self, name: str, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        peak = x.abs().amax(0).float().cpu()
        self.channel_max[name] = torch.maximum(self.channel_max[name], peak) if name in self.channel_max else peak
        positions = self.rows[self.rows[:, 0] == self.window, 1]
        if positions.numel():
            self.sample[name].append(x[positions.to(x.device)].float().cpu())

    def inputs(self) -> dict[str, LinearInputs]:
        return {name: LinearInputs(self.channel_max[name], self._stacked(name)) for name in LAYER_LINEARS}

    def _stacked(self, name: str) -> torch.Tensor:
        rows = self.sample[name]
        return torch.cat(rows) if rows else torch.empty(0, self.channel_max[name].numel())


def _run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict, collected: _LayerInputs) -> torch.Tensor:
    """The layer's full-precision output for each window of hidden (windows, length, hidden), one at a time."""
    out = torch.empty_like(hidden)
    for window in range(hidden.shape[0]):
        collected.window = window
        output = layer(hidden[window : window + 1], **kwargs)
        out[window] = (output[0] if isinstance(output, tuple) else output)[0]
    return out


def _attach_recorder(layer: nn.Module, config: QuantConfig, window_length: int) -> AttentionRecorder | None:
    """A recorder on the layer's attention for the first search_tokens // window_length windows, if wanted."""
    if not config.quantize_attention:
        return None
    tokens = config.search_tokens or 1 << 62
    recorder = AttentionRecorder(max_batch=max(1, tokens // window_length))
    setattr(layer.self_attn, STATE, recorder)
    return recorder


def layer_inputs(model: Any, windows: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """The first decoder layer's hidden states for every window (windows, length, hidden), and each layer's
    keyword arguments for one window: every window has the same length and no padding.

    One pass per window with every decoder layer replaced by a stand-in (put back afterwards): what the
    model computes before and between its layers (embedding, masks per layer type, rotary tables), none
    of the layers.
    """
    decoder = model.model
    layers = decoder.layers
    hidden, every_kwargs = [], None
    try:
        for window in windows:
            captured: list[tuple[torch.Tensor, dict]] = []
            decoder.layers = nn.ModuleList(_StandIn(captured, i == len(layers) - 1) for i in range(len(layers)))
            try:
                model(window[None], use_cache=False)
            except _StopForward:
                pass
            hidden.append(captured[0][0])
            every_kwargs = every_kwargs or [kwargs for _, kwargs in captured]
    finally:
        decoder.layers = layers
    return torch.cat(hidden), every_kwargs
