"""LLM-FP4's format and exponent-bias search for one linear layer (docs/quantization.md).

Every choice minimises the MSE of the layer output X W^T against full
precision. Weight biases are per output channel; the activation bias is one
per tensor (baseline) or, for FPQ, a per-channel bias b~_j split into a
searched real part rho and an integer part b_j^ori = clamp(round(b~_j - rho),
0, 2^e - 1) that becomes the hardware's exponent shift. Biases are carried as
FP32 scales (fakequant.py); candidates are b~init * linspace(low, high, n + 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..formats import Format, llm_fp4_format
from .config import MINMAX_FORMATS, UNQUANTIZED, QuantConfig
from .fakequant import bias_to_scale, fake_quantize, format_candidates, max_to_scale


class TensorQuant(NamedTuple):
    """How one tensor is quantized: format (default bias), FP32 scale(s), optional per-channel shift."""

    fmt: Format
    scale: torch.Tensor  # (channels,) or scalar, float32
    shift: torch.Tensor | None = None  # (in_features,) int64: activations under FPQ

    def apply(self, x: torch.Tensor, channel_axis: int = -1) -> torch.Tensor:
        scale = self.scale if self.scale.ndim == 0 or channel_axis == -1 else self.scale[:, None]
        return fake_quantize(x, self.fmt, scale, self.shift)


class LinearQuant(NamedTuple):
    weight: TensorQuant  # per output channel
    activation: TensorQuant | None  # None: activations stay in floating point


def paper_bias(maxval: torch.Tensor, fmt: Format) -> torch.Tensor:
    """b~ = 2^e - log2(maxval) + log2(2 - 2^-m) - 1, float64 (a zero maximum gets the format's own bias)."""
    maxval = maxval.double()
    bias = 2**fmt.ebits - torch.log2(maxval) + torch.log2(torch.tensor(2 - 2.0**-fmt.mbits)) - 1
    return torch.where(maxval > 0, bias, torch.full_like(bias, float(fmt.bias)))


def bias_grid(config: QuantConfig) -> torch.Tensor:
    return torch.linspace(config.grid_low, config.grid_high, config.grid_points + 1, dtype=torch.float64)


def formats_for(bits: int) -> list[Format]:
    return [llm_fp4_format(e, m) for e, m in format_candidates(bits)]


def minmax_format(bits: int) -> Format:
    return llm_fp4_format(*MINMAX_FORMATS[bits])


class OutputError:
    """Per-output-channel ||X w_k - Xq q_k||^2 from Gram matrices: exact for all calibration tokens at once."""

    def __init__(self, x: torch.Tensor, xq: torch.Tensor, weight: torch.Tensor) -> None:
        x64, xq64, w64 = x.double(), xq.double(), weight.double()
        gram_qx = xq64.T @ x64
        self.gram_qq = xq64.T @ xq64
        self.cross = w64 @ gram_qx.T  # row k: Xq^T X w_k
        self.const = ((w64 @ (x64.T @ x64)) * w64).sum(1)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        q64 = q.double()
        return self.const - 2 * (q64 * self.cross).sum(1) + ((q64 @ self.gram_qq) * q64).sum(1)


def search_weight(weight: torch.Tensor, fmt: Format, error: OutputError | None, grid: torch.Tensor) -> TensorQuant:
    """Per-output-channel scales minimising each channel's output error (or its own MSE when error is None)."""
    base = paper_bias(weight.abs().amax(1), fmt)
    best_err = torch.full((weight.shape[0],), float("inf"), dtype=torch.float64)
    best_scale = torch.ones(weight.shape[0], dtype=torch.float32)
    for factor in grid:
        scale = bias_to_scale(base * factor, fmt)
        q = fake_quantize(weight, fmt, scale[:, None])
        err = error(q) if error is not None else ((q.double() - weight.double()) ** 2).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    return TensorQuant(fmt, best_scale)


def activation_candidates(x: torch.Tensor, fmt: Format, grid: torch.Tensor, per_channel: bool) -> list[TensorQuant]:
    """Baseline: one scale from max|X| times the grid. FPQ: per-channel b~_j fixed, rho = min_j b~_j times the grid."""
    if not per_channel:
        base = paper_bias(x.abs().amax(), fmt)
        return [TensorQuant(fmt, bias_to_scale(base * factor, fmt)) for factor in grid]
    channel_bias = paper_bias(x.abs().amax(0), fmt)
    rho0 = channel_bias.min()
    candidates = []
    for factor in grid:
        rho = rho0 * factor
        shift = torch.clamp(torch.round(channel_bias - rho), 0, 2**fmt.ebits - 1).long()
        candidates.append(TensorQuant(fmt, bias_to_scale(rho, fmt), shift))
    return candidates


class ActivationError:
    """||Y - Xq Wq^T||^2 over the search tokens for candidate quantized inputs Xq, Y the full-precision output.

    When the layer is wider out than in (lm_head, gate/up) it is evaluated as
    ||Y||^2 - 2 <Xq, Y Wq> + <Xq Wq^T Wq, Xq>: a (T, in) x (in, in) product per
    candidate instead of (T, in) x (in, out), its sums in float64 (the terms cancel); the direct form's
    sum of squares is torch's cascaded float32 sum.
    """

    def __init__(self, y: torch.Tensor, weight_q: torch.Tensor) -> None:
        self.weight_q = weight_q
        self.y = y
        self.gram = None
        if weight_q.shape[0] > weight_q.shape[1]:
            self.gram = weight_q.T @ weight_q
            self.y_w = y @ weight_q
            self.const = y.square().sum(dtype=torch.float64)

    def __call__(self, xq: torch.Tensor) -> float:
        if self.gram is None:
            return F.mse_loss(F.linear(xq, self.weight_q), self.y, reduction="sum").item()
        quadratic = ((xq @ self.gram) * xq).sum(dtype=torch.float64)
        return (self.const - 2 * (xq * self.y_w).sum(dtype=torch.float64) + quadratic).item()


def calibrate_linear(weight: torch.Tensor, x: torch.Tensor, config: QuantConfig) -> LinearQuant:
    """Quantization of one linear layer from its full-precision weight and calibration inputs x (T, in).

    Each round searches the weight biases (every format), the activation bias
    (every format), then the weight format and the activation format. A round
    that changes nothing ends the search: the next one would repeat it exactly.
    """
    w_bits, a_bits = config.weight_bits, config.activation_bits
    quantize_act = a_bits != UNQUANTIZED
    weight = weight.float()
    x = x.float()
    if config.method == "minmax":
        w_fmt = minmax_format(w_bits)
        w = TensorQuant(w_fmt, max_to_scale(weight.abs().amax(1), w_fmt))
        if not quantize_act:
            return LinearQuant(w, None)
        a_fmt = minmax_format(a_bits)
        return LinearQuant(w, TensorQuant(a_fmt, max_to_scale(x.abs().amax(), a_fmt)))
    grid = bias_grid(config)
    sample = _search_sample(x, config)
    y_sample = F.linear(sample, weight)
    w_formats = formats_for(w_bits)
    a_formats = formats_for(a_bits) if quantize_act else []
    per_channel = config.method == "fpq"
    # Initial state: the MinMax formats, biases from the maxima (as the released code starts).
    best_w = {f: TensorQuant(f, max_to_scale(weight.abs().amax(1), f)) for f in w_formats}
    unit = torch.ones(1, dtype=torch.float64)
    best_a = {f: activation_candidates(x, f, unit, per_channel)[0] for f in a_formats}
    w_choice = minmax_format(w_bits)
    a_choice = minmax_format(a_bits) if quantize_act else None

    def output_error() -> OutputError:
        act = best_a.get(a_choice)
        return OutputError(x, act.apply(x) if act is not None else x, weight)

    for _ in range(config.rounds):
        before = _search_state(best_w, best_a, w_choice, a_choice)
        error = output_error()
        for f in w_formats:
            best_w[f] = search_weight(weight, f, error, grid)
        act_error = ActivationError(y_sample, best_w[w_choice].apply(weight, channel_axis=0))
        for f in a_formats:
            best_a[f] = min(activation_candidates(x, f, grid, per_channel), key=lambda a: act_error(a.apply(sample)))
        error = output_error()
        w_choice = min(w_formats, key=lambda f: error(best_w[f].apply(weight, channel_axis=0)).sum().item())
        if quantize_act:
            act_error = ActivationError(y_sample, best_w[w_choice].apply(weight, channel_axis=0))
            a_choice = min(a_formats, key=lambda f: act_error(best_a[f].apply(sample)))
        if _search_state(best_w, best_a, w_choice, a_choice) == before:
            break
    return LinearQuant(best_w[w_choice], best_a.get(a_choice) if quantize_act else None)


def _search_state(best_w: dict, best_a: dict, w_choice: Format, a_choice: Format | None) -> tuple:
    """Everything a search round starts from, as comparable values."""
    tensors = [t for quant in [*best_w.values(), *best_a.values()] for t in (quant.scale, quant.shift)]
    return (w_choice, a_choice, tuple(None if t is None else tuple(t.reshape(-1).tolist()) for t in tensors))


def calibrate_matmul(left: torch.Tensor, right: torch.Tensor, config: QuantConfig) -> tuple[TensorQuant, TensorQuant]:
    """Per-tensor quantization of both inputs of ``left @ right`` (attention's Q K^T and P V), activation bits.

    MinMax: the fixed format, scales from the maxima. Otherwise each round
    searches one side's format and bias jointly (every format x the bias grid)
    with the other side quantized as it stands, minimising the MSE of the
    product; MinMax is the starting point, and a round that changes nothing ends it.
    """
    left, right = left.float(), right.float()
    fmt = minmax_format(config.activation_bits)
    current = [TensorQuant(fmt, max_to_scale(side.abs().amax(), fmt)) for side in (left, right)]
    if config.method == "minmax":
        return current[0], current[1]
    exact = left @ right
    grid = bias_grid(config)
    formats = formats_for(config.activation_bits)
    for _ in range(config.rounds):
        before = list(current)
        for index, side in enumerate((left, right)):
            other = current[1 - index].apply((right, left)[index])
            candidates = [c for f in formats for c in activation_candidates(side, f, grid, per_channel=False)]
            errors = [_matmul_error(c.apply(side), other, index == 0, exact) for c in candidates]
            current[index] = candidates[errors.index(min(errors))]
        if all(a.fmt == b.fmt and torch.equal(a.scale, b.scale) for a, b in zip(before, current, strict=True)):
            break
    return current[0], current[1]


def _matmul_error(quantized: torch.Tensor, other: torch.Tensor, on_left: bool, exact: torch.Tensor) -> float:
    product = quantized @ other if on_left else other @ quantized
    return F.mse_loss(product, exact, reduction="sum").item()


def calibrate_embedding(weight: torch.Tensor, config: QuantConfig) -> TensorQuant:
    """Per-row (vocabulary entry) scales minimising each row's MSE; format by total MSE (MinMax: fixed)."""
    bits = config.embedding_bits
    if config.method == "minmax":
        fmt = minmax_format(bits)
        return TensorQuant(fmt, max_to_scale(weight.abs().amax(1), fmt))
    grid = bias_grid(config)
    options = [search_weight(weight.float(), f, None, grid) for f in formats_for(bits)]
    return min(options, key=lambda t: ((t.apply(weight.float(), 0) - weight.float()) ** 2).sum().item())


def _search_sample(x: torch.Tensor, config: QuantConfig) -> torch.Tensor:
    if config.search_tokens is None or x.shape[0] <= config.search_tokens:
        return x
    generator = torch.Generator().manual_seed(config.seed)
    return x[torch.randperm(x.shape[0], generator=generator)[: config.search_tokens].sort().values]
