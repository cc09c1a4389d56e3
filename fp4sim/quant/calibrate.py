"""Layer-by-layer calibration with streamed layer inputs (docs/quantization.md, "Calibration").

The model runs once per window (a decoder's token window, an encoder's padded
text line, an image) with stand-ins for its transformer layers, which keep the
first layer's hidden states and every layer's own arguments (its attention
mask, full or sliding window by layer type, or an encoder's padding; the
rotary tables). After that each layer runs once per window on the cached
full-precision hidden states. Hooks on its linear layers keep only what the
search reads (search.LinearInputs): the running max |x| per input channel over
every real token, and the rows of the search tokens. The layer's
full-precision output becomes the next layer's input. The linears outside the
layers (lm_head, pooler, heads, a patch embedding) see one more pass per
window that replays the last layer's output through the model's own code.
Cost grows linearly with depth; memory holds two copies of the hidden states
and one layer's search rows beyond the model. A method that reads nothing from
the data (MXFP4, weight-only round to nearest) runs no forward pass at all. The
forward passes run where the model is; the search runs on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..codec.blockscaled import get_block_format
from ..models.checkpoint import input_device, onloaded
from ..models.images import image_files, pixel_values
from ..models.sentences import max_tokens, text_lines, tokenize_sentences
from .attention import STATE, AttentionQuant, AttentionRecorder, MatmulQuant, use_fp4sim_attention
from .blockquant import BlockEmbeddingQuant, BlockLinearQuant, calibrate_block_linear
from .config import QuantConfig
from .patches import is_patch_conv, linear_weight, to_patches
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

Quant = LinearQuant | TensorQuant | AttentionQuant | BlockLinearQuant | BlockEmbeddingQuant
Call = tuple[tuple, dict]  # a layer's positional arguments after the hidden states, and its keyword arguments


class _StopForward(Exception):
    """Raised once the rest of the forward pass is not needed (the last stand-in, or the last outside linear)."""


class _StandIn(nn.Module):
    """Stands in for one transformer layer: keeps its inputs, passes the hidden states on (or `output`'s window)."""

    def __init__(self, captured: list[tuple[torch.Tensor, Call]] | None, last: bool, output: torch.Tensor | None):
        super().__init__()
        self.captured, self.last, self.output, self.window = captured, last, output, 0

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.captured is not None:
            self.captured.append((hidden, (args, kwargs)))
        if self.last and self.output is None:
            raise _StopForward
        return hidden if self.output is None else self.output[self.window : self.window + 1]


@contextmanager
def _layers_replaced(model: Any, stand_ins: list[nn.Module]) -> Iterator[None]:
    """The model's transformer layers replaced by `stand_ins` inside, put back afterwards."""
    name, layers = layer_stack(model)
    owner_name, _, attribute = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    setattr(owner, attribute, nn.ModuleList(stand_ins))
    try:
        yield
    finally:
        setattr(owner, attribute, layers)


def layer_stack(model: Any) -> tuple[str, nn.ModuleList]:
    """(name in the model, module list) of the transformer layers: a decoder's ``model.layers``, an encoder's
    ``<base>.encoder.layer``."""
    base = model.base_model
    layers = base.layers if hasattr(base, "layers") else base.encoder.layer
    return next(name for name, module in model.named_modules() if module is layers), layers


def linear_names(module: nn.Module, skip: nn.Module | None = None) -> list[str]:
    """Names (relative to `module`) of every linear layer in it, in module order, none inside `skip`: each
    nn.Linear, and each patch-embedding convolution (patches.is_patch_conv, a linear layer on image patches)."""
    inside = set() if skip is None else {id(m) for m in skip.modules()}
    return [
        name
        for name, m in module.named_modules()
        if (isinstance(m, nn.Linear) or is_patch_conv(m)) and id(m) not in inside
    ]


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


def calibration_samples(items: list, samples: int, seed: int) -> list:
    """`samples` of `items` drawn without replacement, seeded, in their order; every item when there are fewer.

    An encoder's calibration samples: one text line or one image each, as the model is used (paper: 128 for
    BERT; for ViT, 32 images)."""
    if len(items) <= samples:
        return list(items)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:samples]
    return [items[i] for i in order.sort().values.tolist()]


def sentence_windows(
    tokenizer: Any, text: str, config: QuantConfig, model_config: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An encoder's calibration samples as (ids, masks), (samples, length) int64: config.windows lines of the
    text (calibration_samples), each with the model's special tokens, at most calib_length tokens (and the
    model's limit), padded on the right (masks 0). None masks and no samples where the config reads no data."""
    if config.windows == 0:
        return torch.empty(0, 1, dtype=torch.long), None
    lines = calibration_samples(text_lines(text, "the calibration text"), config.windows, config.seed)
    limit = max_tokens(tokenizer, model_config.get("max_position_embeddings", config.calib_length))
    return tokenize_sentences(tokenizer, lines, min(config.calib_length, limit))


def image_windows(processor: Any, directory: str | Path, config: QuantConfig) -> torch.Tensor:
    """A vision model's calibration samples: config.windows images below `directory` (calibration_samples), through
    the checkpoint's image processor: (samples, channels, height, width) float32; none where the config reads no
    data. Raises ValueError for a directory without images or an image that does not decode."""
    if config.windows == 0:
        return torch.empty(0, 1)
    return pixel_values(processor, calibration_samples(image_files(directory), config.windows, config.seed))


@torch.no_grad()
def calibrate_model(
    model: Any,
    windows: torch.Tensor,
    config: QuantConfig,
    progress: bool = True,
    times: StageTimes | None = None,
    masks: torch.Tensor | None = None,
) -> dict[str, Quant]:
    """Quantization parameters for every quantized tensor, keyed by module name (weights stay untouched).

    Quantized: every linear layer (linear_names: in the transformer layers and outside them: ``lm_head``,
    a pooler, a classifier, a masked-LM head, a patch embedding), every nn.Embedding, and with
    config.quantize_attention the inputs of each layer's Q K^T and P V (the model then runs fp4sim's eager
    attention during calibration; its implementation is restored afterwards).
    windows: (samples, length) token ids, int64, or a vision model's (samples, channels, height, width)
    pixel values, float; may be empty when not config.needs_data. masks: None (no padding: every window is
    real text, or an image, of one length), or (samples, length), 1 for real tokens and 0 for padding:
    padding feeds no statistic. `times` receives the wall time of each stage (forward passes, searches).
    Raises ValueError when the config reads data and there are no windows.
    """
    times = times or StageTimes()
    if config.needs_data and windows.shape[0] == 0:
        raise ValueError(f"{config.method} {config.bits} reads the calibration data; got no windows")
    stack_name, layers = layer_stack(model)
    implementation = model.config._attn_implementation
    if config.quantize_attention:
        use_fp4sim_attention(model)
    try:
        hidden = rows = None
        calls: list[list[Call]] = [[]] * len(layers)
        valid = None if masks is None else masks.bool()
        if config.needs_data:
            windows = windows.to(input_device(model))
            with times("forward passes"):
                hidden, calls = layer_inputs(model, windows, masks)
            rows = _window_rows(hidden.shape[:2], valid, config)
        results: dict[str, Quant] = {}
        bar = tqdm(layers, desc=f"calibrating ({config.method} {config.bits})", disable=not progress)
        for index, layer in enumerate(bar):
            names = linear_names(layer)
            inputs = {}
            recorder = _attach_recorder(layer, config, 0 if hidden is None else hidden.shape[1], valid)
            if hidden is not None:
                with times("forward passes"), _LinearInputs(layer, names, rows, valid) as collected:
                    hidden = _run_layer(layer, hidden, calls[index], collected)
                inputs = collected.inputs()
            with times("weight and activation search"):
                for name in names:
                    results[f"{stack_name}.{index}.{name}"] = _calibrate_linear(
                        layer.get_submodule(name), inputs.get(name), config
                    )
            if recorder is not None:
                attention = recorder.module
                delattr(attention, STATE)
                with times("attention search"):
                    results[f"{stack_name}.{index}.{_name_in(layer, attention)}"] = AttentionQuant(
                        MatmulQuant(*calibrate_matmul(*recorder.stacked("scores"), config)),
                        MatmulQuant(*calibrate_matmul(*recorder.stacked("context"), config)),
                    )
        with times("linears outside the layers"):
            outside = linear_names(model, skip=layers)
            inputs = {} if hidden is None else outside_inputs(model, windows, masks, hidden, outside, rows)
            for name in outside:
                results[name] = _calibrate_linear(model.get_submodule(name), inputs.get(name), config)
        with times("embedding"):
            for name, embedding in model.named_modules():
                if isinstance(embedding, nn.Embedding):
                    results[name] = _calibrate_embedding(embedding, config)
    finally:
        model.set_attn_implementation(implementation)
    return results


def _calibrate_linear(linear: nn.Module, inputs: LinearInputs | None, config: QuantConfig) -> Quant:
    """LLM-FP4's search, or the block formats' round-to-nearest; inputs None where the method reads no data."""
    with onloaded(linear):
        if config.is_block:
            return calibrate_block_linear(None if inputs is None else inputs.channel_max, config)
        weight = linear_weight(linear) if is_patch_conv(linear) else linear.weight
        return calibrate_linear(weight.cpu(), inputs, config)


def _calibrate_embedding(embedding: nn.Embedding, config: QuantConfig) -> Quant:
    if config.is_block:
        return BlockEmbeddingQuant(get_block_format(config.method), config.scale_rule)
    with onloaded(embedding):
        return calibrate_embedding(embedding.weight.cpu(), config)


def _name_in(root: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in root.named_modules() if m is module)


def _window_rows(shape: torch.Size, valid: torch.Tensor | None, config: QuantConfig) -> torch.Tensor:
    """The search tokens as (window, position) pairs, (n, 2), window-major, drawn from the real tokens (valid
    where given, else every position); none for round to nearest."""
    if not config.is_search:
        return torch.empty(0, 2, dtype=torch.long)
    real = torch.ones(shape, dtype=torch.bool) if valid is None else valid.cpu()
    pairs = real.nonzero()
    return pairs[search_rows(pairs.shape[0], config)]


class _LinearInputs:
    """Hooks on named linears of `root`, fed one window at a time: per-channel max |x| and the search tokens' rows.

    An input shaped like the window's tokens (1, length, in) counts its real tokens only (`valid`, when
    given); any other input (one pooled row per window) counts whole. A patch convolution's input counts as
    its rows of patches (patches.to_patches). With `stop`, the forward pass stops once every linear has seen
    the window: nothing after them is needed.
    """

    def __init__(
        self, root: nn.Module, names: list[str], rows: torch.Tensor, valid: torch.Tensor | None, stop: bool = False
    ) -> None:
        self.root, self.names, self.rows, self.valid, self.stop = root, names, rows, valid, stop
        self.window = 0
        self.seen: set[str] = set()
        self.channel_max: dict[str, torch.Tensor] = {}
        self.sample: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        self.handles: list[Any] = []

    def __enter__(self) -> _LinearInputs:
        for name in self.names:
            hook = lambda module, args, name=name: self._record(name, _rows_of(module, args[0]))  # noqa: E731
            self.handles.append(self.root.get_submodule(name).register_forward_pre_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def start(self, window: int) -> None:
        self.window = window
        self.seen = set()

    def _record(self, name: str, x: torch.Tensor) -> None:
        per_token = x.dim() == 3 and x.shape[0] == 1 and (self.valid is None or x.shape[1] == self.valid.shape[1])
        x = x.reshape(-1, x.shape[-1])
        real = x if not per_token or self.valid is None else x[self.valid[self.window].to(x.device)]
        peak = real.abs().amax(0).float().cpu()
        self.channel_max[name] = torch.maximum(self.channel_max[name], peak) if name in self.channel_max else peak
        if not per_token:
            self.sample[name].append(x.float().cpu())
        elif self.rows.numel():
            positions = self.rows[self.rows[:, 0] == self.window, 1]
            positions = positions[positions < x.shape[0]]  # patches: one row fewer than tokens ([CLS])
            self.sample[name].append(x[positions.to(x.device)].float().cpu())
        self.seen.add(name)
        if self.stop and len(self.seen) == len(self.names):
            raise _StopForward

    def inputs(self) -> dict[str, LinearInputs]:
        missing = [name for name in self.names if name not in self.channel_max]
        if missing:
            raise ValueError(f"the calibration forward pass never ran {', '.join(missing)}: it cannot be calibrated")
        return {name: LinearInputs(self.channel_max[name], self._stacked(name)) for name in self.names}

    def _stacked(self, name: str) -> torch.Tensor:
        rows = self.sample[name]
        return torch.cat(rows) if rows else torch.empty(0, self.channel_max[name].numel())


def _rows_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What multiplies the module's weight: its input, or a patch convolution's rows of patches."""
    return to_patches(module.kernel_size, x) if is_patch_conv(module) else x


def _run_layer(layer: nn.Module, hidden: torch.Tensor, calls: list[Call], collected: _LinearInputs) -> torch.Tensor:
    """The layer's full-precision output for each window of hidden (windows, length, hidden), one at a time."""
    out = torch.empty_like(hidden)
    for window, (args, kwargs) in enumerate(calls):
        collected.start(window)
        output = layer(hidden[window : window + 1], *args, **kwargs)
        out[window] = (output[0] if isinstance(output, tuple) else output)[0]
    return out


def _attach_recorder(
    layer: nn.Module, config: QuantConfig, window_length: int, valid: torch.Tensor | None
) -> AttentionRecorder | None:
    """A recorder on the layer's attention for the first search_tokens // window_length windows, if wanted."""
    if not config.quantize_attention:
        return None
    tokens = config.search_tokens or 1 << 62
    attention = next(m for m in layer.modules() if hasattr(m, "scaling"))  # what calls the attention function
    recorder = AttentionRecorder(max_batch=max(1, tokens // max(window_length, 1)), module=attention, valid=valid)
    setattr(attention, STATE, recorder)
    return recorder


def _model_inputs(windows: torch.Tensor, masks: torch.Tensor | None, window: int) -> dict[str, Any]:
    if windows.is_floating_point():
        return {"pixel_values": windows[window : window + 1]}
    inputs = {"input_ids": windows[window : window + 1], "use_cache": False}
    if masks is not None:
        inputs["attention_mask"] = masks[window : window + 1].to(windows.device)
    return inputs


def layer_inputs(
    model: Any, windows: torch.Tensor, masks: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[list[Call]]]:
    """The first layer's hidden states for every window (windows, length, hidden), and each layer's arguments per
    window: ``calls[layer][window]`` = (positional arguments after the hidden states, keyword arguments).

    One pass per window with every layer replaced by a stand-in (put back afterwards): what the model
    computes before and between its layers (embeddings, masks per layer type, rotary tables), none of the
    layers. Without `masks` every window has the same length and no padding, so the first window's
    arguments serve every window; with masks (samples, length) each window has its own padding mask.
    """
    count = len(layer_stack(model)[1])
    hidden, calls = [], []
    for window in range(windows.shape[0]):
        captured: list[tuple[torch.Tensor, Call]] = []
        with _layers_replaced(model, [_StandIn(captured, i == count - 1, None) for i in range(count)]):
            try:
                model(**_model_inputs(windows, masks, window))
            except _StopForward:
                pass
        hidden.append(captured[0][0])
        if masks is not None or not calls:
            calls.append([call for _, call in captured])
    per_layer = [list(layer_calls) for layer_calls in zip(*calls, strict=True)]
    if masks is None:
        per_layer = [layer_calls * windows.shape[0] for layer_calls in per_layer]
    return torch.cat(hidden), per_layer


def outside_inputs(
    model: Any,
    windows: torch.Tensor,
    masks: torch.Tensor | None,
    final: torch.Tensor,
    names: list[str],
    rows: torch.Tensor,
) -> dict[str, LinearInputs]:
    """What the linears outside the transformer layers (``lm_head``, pooler, heads) see in full precision.

    One pass per window with the layers replaced by stand-ins that hand on the last layer's output
    `final` (windows, length, hidden): the model's own code runs its final norm, pooling and heads,
    and stops once every linear in `names` has seen the window.
    """
    if not names:
        return {}
    count = len(layer_stack(model)[1])
    replay = _StandIn(None, False, final)
    with (
        _layers_replaced(model, [replay] + [_StandIn(None, False, None) for _ in range(count - 1)]),
        _LinearInputs(model, names, rows, None if masks is None else masks.bool(), stop=True) as collected,
    ):
        for window in range(windows.shape[0]):
            replay.window = window
            collected.start(window)
            try:
                model(**_model_inputs(windows, masks, window))
            except _StopForward:
                pass
    return collected.inputs()
