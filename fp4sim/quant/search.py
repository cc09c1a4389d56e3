"""LLM-FP4's format and exponent-bias search for one linear layer (docs/quantization.md).

Every choice minimises the MSE of the layer output X W^T against full
precision. Weight biases are per output channel; the activation bias is one
per tensor (baseline) or, for FPQ, a per-channel bias b~_j split into a
searched real part rho and an integer part b_j^ori = clamp(round(b~_j - rho),
0, 2^e - 1) that becomes the hardware's exponent shift. Biases are carried as
FP32 scales (fakequant.py); candidates are b~init * linspace(low, high, n + 1).

The bias candidates of one choice (a weight row's, or the activation
tensor's) are scored in two stages when QuantConfig.shortlist is set: a
diagonal pre-score (the output error without the off-diagonal terms of its
quadratic form, O(size) per candidate) on a coarse-to-fine walk of the grid,
then the exact output error on the `shortlist` best. With shortlist None every
grid point gets the exact error, as the paper does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..formats import Format, llm_fp4_format
from .config import MINMAX_FORMATS, UNQUANTIZED, QuantConfig
from .fakequant import bias_to_scale, fake_quantize, format_candidates, max_to_scale

COARSE_STRIDE = 5  # grid points between the pre-score's first-pass candidates
ROW_BLOCK = 1024  # output channels searched at a time


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


class LinearInputs(NamedTuple):
    """What the search reads of one linear layer's inputs over the calibration tokens.

    channel_max: (in,) float32, max |x| per input channel over every calibration token (the biases' b~init).
    sample: (tokens, in) float32, the search tokens on which candidates are scored.
    """

    channel_max: torch.Tensor
    sample: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, config: QuantConfig) -> LinearInputs:
        """From every calibration token's input x (tokens, in): its maxima and config's search sample."""
        x = x.float()
        return cls(x.abs().amax(0), x[search_rows(x.shape[0], config)])


def search_rows(tokens: int, config: QuantConfig) -> torch.Tensor:
    """Indices (sorted) of the config's search tokens among `tokens` calibration tokens: seeded, all if fewer."""
    if config.search_tokens is None or tokens <= config.search_tokens:
        return torch.arange(tokens)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.randperm(tokens, generator=generator)[: config.search_tokens].sort().values


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


def shortlist_grid(prescore: Callable[[torch.Tensor], torch.Tensor], rows: int, size: int, keep: int) -> torch.Tensor:
    """The `keep` grid indices per row with the lowest pre-score, (keep, rows), ascending along the first axis.

    prescore(index) scores grid point index[r] for each row r, (rows,) -> (rows,).
    First every COARSE_STRIDE-th point (and the last), then the points between
    a row's best coarse point and its coarse neighbours; the shortlist comes
    from every point scored. A shortlist as long as the grid is the whole grid.
    """
    if keep >= size:
        return torch.arange(size)[:, None].expand(size, rows)
    coarse = sorted({*range(0, size, COARSE_STRIDE), size - 1})
    offsets = [o for o in range(1 - COARSE_STRIDE, COARSE_STRIDE) if o]
    if len(coarse) + len(offsets) >= size:  # a short grid: every point costs no more
        coarse, offsets = list(range(size)), []
    indices = [torch.full((rows,), i, dtype=torch.long) for i in coarse]
    values = [prescore(index) for index in indices]
    best = torch.as_tensor(coarse)[torch.stack(values).argmin(0)]
    for offset in offsets:
        index = (best + offset).clamp(0, size - 1)
        indices.append(index)
        values.append(prescore(index))
    indices, values = torch.stack(indices), torch.stack(values)
    # a point scored twice (clamped, or coarse) must not take two places: push repeats to the back
    order = indices.sort(dim=0, stable=True)
    repeat = torch.zeros_like(order.values, dtype=torch.bool)
    repeat[1:] = order.values[1:] == order.values[:-1]
    ranked = torch.where(repeat, torch.inf, values.gather(0, order.indices))
    chosen = order.values.gather(0, ranked.topk(keep, 0, largest=False).indices)
    return chosen.sort(0).values


class OutputError:
    """Per-output-channel e_k(q) = ||X w_k - Xq q_k||^2 - ||D w_k||^2 over the search tokens.

    Written in the weight error r = q - w_k with D = Xq - X (the input quantizer's error):
    ||X w_k - Xq q_k||^2 = r^T (Xq^T Xq) r + 2 r^T Xq^T D w_k + ||D w_k||^2. The last term
    is left out: no weight choice changes it. Every term kept is of the error's own size (no
    cancellation against ||X w_k||^2), so float32 products with float64 sums rank candidates
    whose errors differ by more than about 1e-5 relative, which is all a search needs (the
    chosen scale is then applied exactly). Rows are independent: `rows` gives the error of a
    block of output channels, and the search runs block by block.
    """

    def __init__(self, x: torch.Tensor, xq: torch.Tensor, weight: torch.Tensor) -> None:
        self.weight = weight.float()
        self.gram = xq.T @ xq
        self.cross = self.weight @ ((xq - x).T @ xq)  # row k: (Xq^T D w_k)^T
        self.diagonal = self.gram.diagonal()

    def rows(self, block: slice) -> OutputError:
        """The same error for output channels `block` only (shares the Gram matrix)."""
        part = copy.copy(self)
        part.weight, part.cross = self.weight[block], self.cross[block]
        return part

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """(rows,) float64 for a candidate q (rows, in)."""
        return torch.cat([self._exact(q[b], b) for b in _blocks(q.shape[0])]) if q.shape[0] else torch.zeros(0)

    def _exact(self, q: torch.Tensor, block: slice) -> torch.Tensor:
        r = q - self.weight[block]
        return (r * (r @ self.gram + 2 * self.cross[block])).sum(1, dtype=torch.float64)

    def prescore(self, q: torch.Tensor) -> torch.Tensor:
        """e_k without the Gram matrix's off-diagonal terms (a ranking only)."""
        r = q - self.weight
        return (r * (r * self.diagonal + 2 * self.cross)).sum(1)


def _blocks(rows: int) -> list[slice]:
    """Row blocks of ROW_BLOCK: every temporary of the search stays a block's size (cache, memory)."""
    return [slice(start, start + ROW_BLOCK) for start in range(0, rows, ROW_BLOCK)]


def search_weight(
    weight: torch.Tensor, fmt: Format, error: OutputError | None, grid: torch.Tensor, shortlist: int | None = None
) -> TensorQuant:
    """Per-output-channel scales minimising each channel's output error (or its own MSE when error is None).

    Ties go to the earlier grid point. With `shortlist`, only each row's
    shortlist best pre-scored points get the exact error (module docstring).
    Rows are searched block by block; the result does not depend on the blocks.
    """
    scales = [
        _search_rows(weight[b], fmt, None if error is None else error.rows(b), grid, shortlist)
        for b in _blocks(weight.shape[0])
    ]
    return TensorQuant(fmt, torch.cat(scales) if scales else torch.ones(0))


def _search_rows(
    weight: torch.Tensor, fmt: Format, error: OutputError | None, grid: torch.Tensor, shortlist: int | None
) -> torch.Tensor:
    base = paper_bias(weight.abs().amax(1), fmt)
    scales = torch.stack([bias_to_scale(base * factor, fmt) for factor in grid])  # (grid, out)
    rows = torch.arange(weight.shape[0])

    def quantized(index: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, fmt, scales[index, rows][:, None])

    if error is None:  # the row's own MSE: cheap enough to be its own pre-score
        exact = lambda q: (q - weight).square().sum(1, dtype=torch.float64)  # noqa: E731
        prescore = lambda index: exact(quantized(index))  # noqa: E731
        shortlist = None if shortlist is None else 1
    else:
        exact = error
        prescore = lambda index: error.prescore(quantized(index))  # noqa: E731
    if shortlist is None:
        candidates = torch.arange(len(grid))[:, None].expand(-1, len(rows))
    else:
        candidates = shortlist_grid(prescore, len(rows), len(grid), shortlist)
    if len(candidates) == 1:  # nothing left to decide
        return scales[candidates[0], rows]
    best_err = torch.full((len(rows),), float("inf"), dtype=torch.float64)
    best_scale = torch.ones(len(rows), dtype=torch.float32)
    for index in candidates:
        err = exact(quantized(index))
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scales[index, rows], best_scale)
    return best_scale


def activation_candidates(channel_max: torch.Tensor, fmt: Format, grid: torch.Tensor, per_channel: bool):
    """Candidates from the inputs' max |x| per channel (in,) (or one maximum).

    Baseline: one scale from max|X| times the grid. FPQ: per-channel b~_j fixed, rho = min_j b~_j times the grid.
    Returns a list of TensorQuant, one per grid point.
    """
    if not per_channel:
        base = paper_bias(channel_max.amax(), fmt)
        return [TensorQuant(fmt, bias_to_scale(base * factor, fmt)) for factor in grid]
    channel_bias = paper_bias(channel_max, fmt)
    rho0 = channel_bias.min()
    candidates = []
    for factor in grid:
        rho = rho0 * factor
        shift = torch.clamp(torch.round(channel_bias - rho), 0, 2**fmt.ebits - 1).long()
        candidates.append(TensorQuant(fmt, bias_to_scale(rho, fmt), shift))
    return candidates


class ActivationError:
    """||Y - Xq Wq^T||^2 over the search tokens x (T, in) for candidate quantized inputs Xq, Y = x W^T.

    When the layer is wider out than in (lm_head, gate/up) it is evaluated as
    -2 <Xq, x W^T Wq> + <Xq Wq^T Wq, Xq>, i.e. less ||Y||^2, which no candidate
    changes: (T, in) x (in, in) products, never the (T, out) output, its sums in
    float64 (the terms cancel). The direct form's sum of squares is torch's
    cascaded float32 sum.
    """

    def __init__(self, x: torch.Tensor, weight: torch.Tensor, weight_q: torch.Tensor) -> None:
        self.weight_q = weight_q
        self.x = x
        self.gram = None
        if weight_q.shape[0] > weight_q.shape[1]:
            self.gram = weight_q.T @ weight_q
            self.y_w = x @ (weight.T @ weight_q)
        else:
            self.y = F.linear(x, weight)
        self.column_norms = weight_q.square().sum(0)

    def __call__(self, xq: torch.Tensor) -> float:
        if self.gram is None:
            return F.mse_loss(F.linear(xq, self.weight_q), self.y, reduction="sum").item()
        quadratic = ((xq @ self.gram) * xq).sum(dtype=torch.float64)
        return (quadratic - 2 * (xq * self.y_w).sum(dtype=torch.float64)).item()

    def prescore(self, xq: torch.Tensor) -> float:
        """||(Xq - X) Wq^T||^2 without Wq^T Wq's off-diagonal terms: the input error weighted by
        each channel's squared weight norm (a ranking only)."""
        d = xq - self.x
        return (d.square() * self.column_norms).sum(dtype=torch.float64).item()


def best_activation(candidates: list[TensorQuant], error: ActivationError, sample: torch.Tensor, shortlist: int | None):
    """The candidate with the least error on `sample` (the earlier on ties); shortlisted by pre-score if asked."""
    if shortlist is not None:
        scores = lambda index: torch.tensor([error.prescore(candidates[int(index)].apply(sample))])  # noqa: E731
        order = shortlist_grid(scores, 1, len(candidates), shortlist)[:, 0].tolist()
        candidates = [candidates[i] for i in order]
    if len(candidates) == 1:  # nothing left to decide
        return candidates[0]
    return min(candidates, key=lambda a: error(a.apply(sample)))


def calibrate_linear(weight: torch.Tensor, inputs: LinearInputs | None, config: QuantConfig) -> LinearQuant:
    """Quantization of one linear layer from its full-precision weight (out, in) and its calibration inputs.

    Each round searches the weight biases (every format), the activation bias
    (every format), then the weight format and the activation format. A round
    that ends where it started ends the search: the next one would repeat it exactly.
    inputs may be None where config.needs_data is False (weight-only MinMax).
    """
    w_bits, a_bits = config.weight_bits, config.activation_bits
    quantize_act = a_bits != UNQUANTIZED
    weight = weight.float()
    if config.method == "minmax":
        w_fmt = minmax_format(w_bits)
        w = TensorQuant(w_fmt, max_to_scale(weight.abs().amax(1), w_fmt))
        if not quantize_act:
            return LinearQuant(w, None)
        a_fmt = minmax_format(a_bits)
        return LinearQuant(w, TensorQuant(a_fmt, max_to_scale(inputs.channel_max.float().amax(), a_fmt)))
    channel_max, x = inputs.channel_max.float(), inputs.sample.float()
    grid = bias_grid(config)
    w_formats = formats_for(w_bits)
    a_formats = formats_for(a_bits) if quantize_act else []
    per_channel = config.method == "fpq"
    # Initial state: the MinMax formats, biases from the maxima (as the released code starts).
    best_w = {f: TensorQuant(f, max_to_scale(weight.abs().amax(1), f)) for f in w_formats}
    unit = torch.ones(1, dtype=torch.float64)
    best_a = {f: activation_candidates(channel_max, f, unit, per_channel)[0] for f in a_formats}
    w_choice = minmax_format(w_bits)
    a_choice = minmax_format(a_bits) if quantize_act else None

    def output_error() -> OutputError:
        act = best_a.get(a_choice)
        return OutputError(x, act.apply(x) if act is not None else x, weight)

    for _ in range(config.rounds):
        before = _round_inputs(best_a, w_choice, a_choice)
        error = output_error()
        for f in w_formats:
            best_w[f] = search_weight(weight, f, error, grid, config.shortlist)
        act_error = ActivationError(x, weight, best_w[w_choice].apply(weight, channel_axis=0))
        for f in a_formats:
            candidates = activation_candidates(channel_max, f, grid, per_channel)
            best_a[f] = best_activation(candidates, act_error, x, config.shortlist)
        error = output_error()
        w_choice = min(w_formats, key=lambda f: error(best_w[f].apply(weight, channel_axis=0)).sum().item())
        if quantize_act:
            act_error = ActivationError(x, weight, best_w[w_choice].apply(weight, channel_axis=0))
            a_choice = min(a_formats, key=lambda f: act_error(best_a[f].apply(x)))
        if _round_inputs(best_a, w_choice, a_choice) == before:
            break
    return LinearQuant(best_w[w_choice], best_a.get(a_choice) if quantize_act else None)


def _round_inputs(best_a: dict, w_choice: Format, a_choice: Format | None) -> tuple:
    """Everything a search round's results depend on, as comparable values: the chosen formats and the
    chosen activation quantizer (the weight searches start from the output error it leaves, the
    activation searches from the chosen format's searched weights). A round that ends where it
    started is a fixed point: the next would repeat it exactly."""
    act = best_a.get(a_choice)
    tensors = () if act is None else (act.scale, act.shift)
    return (w_choice, a_choice, tuple(None if t is None else tuple(t.reshape(-1).tolist()) for t in tensors))


def calibrate_matmul(left: torch.Tensor, right: torch.Tensor, config: QuantConfig) -> tuple[TensorQuant, TensorQuant]:
    """Per-tensor quantization of both inputs of ``left @ right`` (attention's Q K^T and P V), activation bits.

    MinMax: the fixed format, scales from the maxima. Otherwise each round
    searches one side's format and bias jointly (every format x the bias grid)
    with the other side quantized as it stands, minimising the MSE of the
    product; MinMax is the starting point, and a round that changes nothing ends it.
    With QuantConfig.shortlist set, each format's grid is walked coarse to fine
    on that MSE (shortlist_grid) instead of scored at every point.
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
            error = lambda q, other=other, on_left=index == 0: _matmul_error(q, other, on_left, exact)  # noqa: E731
            current[index] = _search_operand(side, error, formats, grid, walk=config.shortlist is not None)
        if all(a.fmt == b.fmt and torch.equal(a.scale, b.scale) for a, b in zip(before, current, strict=True)):
            break
    return current[0], current[1]


def _search_operand(
    side: torch.Tensor,
    error: Callable[[torch.Tensor], float],
    formats: list[Format],
    grid: torch.Tensor,
    walk: bool,
) -> TensorQuant:
    """The per-tensor format and scale of `side` with the lowest error(quantized side): every grid point of every
    format scored, or each format's grid walked coarse to fine (shortlist_grid). Ties go to the earlier format and
    grid point."""
    peak = side.abs().amax()
    best: tuple[float, TensorQuant] | None = None
    for fmt in formats:
        candidates = activation_candidates(peak, fmt, grid, per_channel=False)
        seen: dict[int, float] = {}

        def score(i: int, candidates: list[TensorQuant] = candidates, seen: dict[int, float] = seen) -> float:
            if i not in seen:
                seen[i] = error(candidates[i].apply(side))
            return seen[i]

        if walk:
            prescore = lambda index: torch.tensor([score(int(index[0]))], dtype=torch.float64)  # noqa: E731
            pick = int(shortlist_grid(prescore, 1, len(candidates), 1)[0, 0])
        else:
            pick = min(range(len(candidates)), key=score)
        if best is None or score(pick) < best[0]:
            best = (score(pick), candidates[pick])
    return best[1]


def _matmul_error(quantized: torch.Tensor, other: torch.Tensor, on_left: bool, exact: torch.Tensor) -> float:
    product = quantized @ other if on_left else other @ quantized
    return F.mse_loss(product, exact, reduction="sum").item()


def calibrate_embedding(weight: torch.Tensor, config: QuantConfig) -> TensorQuant:
    """Per-row (vocabulary entry) scales minimising each row's MSE; format by total MSE (MinMax: fixed).

    With a shortlist the grid is walked coarse to fine on the MSE itself (shortlist_grid).
    """
    bits = config.embedding_bits
    if config.method == "minmax":
        fmt = minmax_format(bits)
        return TensorQuant(fmt, max_to_scale(weight.abs().amax(1), fmt))
    grid = bias_grid(config)
    options = [search_weight(weight.float(), f, None, grid, config.shortlist) for f in formats_for(bits)]
    return min(options, key=lambda t: ((t.apply(weight.float(), 0) - weight.float()) ** 2).sum().item())
