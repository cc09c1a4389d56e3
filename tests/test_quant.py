"""LLM-FP4 quantizer: the search picks what it claims (exactly, or from a shortlist that holds the pre-score's
best), FPQ's folded bias equals the unfolded one, calibration runs each layer once per window (linear in
depth, none for methods that read no data), and the fake-quantized model computes what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import LAYER_LINEARS, tiny_llama

from fp4sim import get_format
from fp4sim.quant import search
from fp4sim.quant.calibrate import calibrate_model, calibration_windows, model_calibration_windows
from fp4sim.quant.config import PAPER_EXACT, QuantConfig
from fp4sim.quant.fakequant import bias_to_scale, fake_quantize, max_to_scale
from fp4sim.quant.modules import FakeQuantLinear, apply_fake_quant
from fp4sim.quant.search import (
    ActivationError,
    LinearInputs,
    LinearQuant,
    OutputError,
    TensorQuant,
    activation_candidates,
    bias_grid,
    calibrate_linear,
    paper_bias,
    search_weight,
    shortlist_grid,
)

E2M1 = get_format("E2M1")


def _data(seed: int = 0, tokens: int = 512, d_in: int = 32, d_out: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    channel_range = torch.exp2(torch.randint(-3, 4, (d_in,), generator=generator).float())  # inter-channel variance
    x = torch.randn(tokens, d_in, generator=generator) * channel_range
    w = torch.randn(d_out, d_in, generator=generator) * 0.1
    return x, w


def test_output_error_equals_the_direct_sum_less_what_no_weight_changes() -> None:
    x, w = _data()
    xq = fake_quantize(x, E2M1, torch.tensor(0.5))
    q = fake_quantize(w, E2M1, torch.full((24, 1), 0.02))
    direct = ((x.double() @ w.double().T - xq.double() @ q.double().T) ** 2).sum(0)
    input_error_only = (((xq.double() - x.double()) @ w.double().T) ** 2).sum(0)  # ||D w_k||^2
    torch.testing.assert_close(OutputError(x, xq, w)(q) + input_error_only, direct, rtol=1e-5, atol=0)


def _every_candidates_error(w: torch.Tensor, error: OutputError, grid: torch.Tensor) -> torch.Tensor:
    base = paper_bias(w.abs().amax(1), E2M1)
    return torch.stack([error(fake_quantize(w, E2M1, bias_to_scale(base * f, E2M1)[:, None])) for f in grid])


def test_weight_search_picks_each_channels_best_candidate() -> None:
    x, w = _data()
    error = OutputError(x, x, w)
    grid = bias_grid(QuantConfig(method="fpq-baseline", grid_points=20))
    chosen = search_weight(w, E2M1, error, grid)
    got = error(fake_quantize(w, E2M1, chosen.scale[:, None]))
    torch.testing.assert_close(got, _every_candidates_error(w, error, grid).min(0).values)


@pytest.mark.parametrize("shortlist", [1, 2, 4])
def test_shortlisted_weight_search_picks_the_best_of_its_shortlist(shortlist: int) -> None:
    x, w = _data(seed=3)
    xq = fake_quantize(x, E2M1, torch.tensor(0.4))
    error = OutputError(x, xq, w)
    grid = bias_grid(QuantConfig(grid_points=40))
    base = paper_bias(w.abs().amax(1), E2M1)
    scales = torch.stack([bias_to_scale(base * f, E2M1) for f in grid])
    rows = torch.arange(w.shape[0])

    def prescore(index: torch.Tensor) -> torch.Tensor:
        return error.prescore(fake_quantize(w, E2M1, scales[index, rows][:, None]))

    listed = shortlist_grid(prescore, w.shape[0], len(grid), shortlist)
    chosen = search_weight(w, E2M1, error, grid, shortlist)
    every = _every_candidates_error(w, error, grid)
    torch.testing.assert_close(
        error(fake_quantize(w, E2M1, chosen.scale[:, None])), every.gather(0, listed).min(0).values
    )
    assert (every.gather(0, listed).min(0).values >= every.min(0).values).all()


def test_a_shortlist_as_long_as_the_grid_is_the_exact_search() -> None:
    x, w = _data(seed=4)
    error = OutputError(x, fake_quantize(x, E2M1, torch.tensor(0.4)), w)
    grid = bias_grid(QuantConfig(grid_points=9))
    exact = search_weight(w, E2M1, error, grid)
    assert torch.equal(search_weight(w, E2M1, error, grid, shortlist=len(grid)).scale, exact.scale)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("size", [2, 7, 101])
def test_shortlist_holds_the_minimum_of_a_unimodal_prescore(seed: int, size: int) -> None:
    """Coarse points, then every point between the best coarse point's neighbours: a unimodal score's minimum
    is always scored; the shortlist is distinct grid indices, ascending."""
    generator = torch.Generator().manual_seed(seed)
    rows = 6
    centre = torch.randint(0, size, (rows,), generator=generator)
    slope = torch.rand(rows, 2, generator=generator) + 0.1
    positions = torch.arange(size)[:, None]
    table = torch.where(positions < centre, (centre - positions) * slope[:, 0], (positions - centre) * slope[:, 1])
    calls = []

    def prescore(index: torch.Tensor) -> torch.Tensor:
        calls.append(index)
        return table[index, torch.arange(rows)]

    for keep in (1, 3):
        listed = shortlist_grid(prescore, rows, size, keep)
        assert listed.shape == (min(keep, size), rows)
        assert (listed[1:] > listed[:-1]).all()
        assert ((listed == centre).any(0)).all()
    if size > 50:
        assert len(calls) < size  # two shortlists of a long grid cost fewer pre-scores than the grid


def test_paper_bias_is_the_max_scale() -> None:
    maxval = torch.tensor([0.3, 6.0, 100.0])
    torch.testing.assert_close(bias_to_scale(paper_bias(maxval, E2M1), E2M1), max_to_scale(maxval, E2M1))


def test_fpq_folded_bias_equals_per_channel_bias() -> None:
    """rho as the tensor scale plus the integer shift == a per-channel bias rho + b_j^ori, value for value."""
    x, _ = _data()
    for candidate in activation_candidates(x.abs().amax(0), E2M1, bias_grid(QuantConfig(grid_points=10)), True):
        assert int(candidate.shift.min()) >= 0 and int(candidate.shift.max()) <= 2**E2M1.ebits - 1
        per_channel_scale = candidate.scale / torch.exp2(candidate.shift.float())  # 2^(bias - rho - b_j)
        unfolded = fake_quantize(x, E2M1, per_channel_scale)
        folded = fake_quantize(x, E2M1, candidate.scale, candidate.shift)
        assert torch.equal(folded.view(torch.int32), unfolded.view(torch.int32))


def test_fpq_shifts_follow_the_paper_split() -> None:
    x, _ = _data()
    grid = bias_grid(QuantConfig(grid_points=4))
    channel_bias = paper_bias(x.abs().amax(0), E2M1)
    for factor, candidate in zip(grid, activation_candidates(x.abs().amax(0), E2M1, grid, True), strict=True):
        rho = channel_bias.min() * factor
        assert torch.equal(candidate.shift, torch.clamp(torch.round(channel_bias - rho), 0, 3).long())
        torch.testing.assert_close(candidate.scale, bias_to_scale(rho, E2M1))


@pytest.mark.parametrize("method", ["minmax", "fpq-baseline", "fpq"])
def test_calibrate_linear_gives_valid_settings(method: str) -> None:
    x, w = _data()
    config = QuantConfig(method=method, grid_points=10, rounds=2)
    quant = calibrate_linear(w, LinearInputs.of(x, config), config)
    assert quant.weight.scale.shape == (24,) and quant.weight.fmt.nbits == 4
    assert quant.activation.scale.ndim == 0 and quant.activation.fmt.nbits == 4
    assert (quant.activation.shift is not None) == (method == "fpq")
    if method == "minmax":
        torch.testing.assert_close(quant.weight.scale, w.abs().amax(1) / 6.0)


def test_fpq_beats_minmax_on_inter_channel_variance() -> None:
    x, w = _data()
    y = F.linear(x, w)

    def mse(quant: LinearQuant) -> float:
        return F.mse_loss(F.linear(quant.activation.apply(x), quant.weight.apply(w, 0)), y).item()

    minmax = mse(calibrate_linear(w, LinearInputs.of(x, QuantConfig()), QuantConfig(method="minmax")))
    fpq = mse(calibrate_linear(w, LinearInputs.of(x, QuantConfig()), QuantConfig(method="fpq", rounds=1)))
    assert fpq < minmax


def test_activations_at_16_bits_are_not_quantized() -> None:
    x, w = _data()
    config = QuantConfig(bits="4/4/16", grid_points=5, rounds=1)
    assert calibrate_linear(w, LinearInputs.of(x, config), config).activation is None


def test_calibration_windows_are_seeded_and_checked() -> None:
    ids = torch.arange(1000)
    a = calibration_windows(ids, 4, 100, seed=1)
    assert a.shape == (4, 100) and torch.equal(a, calibration_windows(ids, 4, 100, seed=1))
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(4, 99, dtype=torch.long))  # contiguous segments
    with pytest.raises(ValueError, match="calibration text has"):
        calibration_windows(torch.arange(50), 4, 100, seed=1)


def test_window_length_is_capped_at_the_models_context() -> None:
    windows = model_calibration_windows(64, torch.arange(1000), QuantConfig(calib_samples=5))  # asks for 2048
    assert windows.shape == (5, 64)
    shorter = model_calibration_windows(64, torch.arange(1000), QuantConfig(calib_length=20, calib_samples=5))
    assert shorter.shape == (5, 20)


@pytest.mark.parametrize("layers", [2, 4, 8])
@pytest.mark.parametrize(
    ("method", "bits", "passes"), [("fpq", "4/4/4", 1), ("nvfp4", "4/4/4", 1), ("mxfp4", "4/4/4", 0)]
)
def test_each_layer_runs_once_per_window_whatever_the_depth(layers: int, method: str, bits: str, passes: int) -> None:
    """Cost linear in depth: one pass per layer and window (the pass that collects the layers' inputs runs
    stand-ins, not the layers); none at all for a method that reads no data."""
    model = tiny_llama(layers)
    calls = [0] * layers
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    config = QuantConfig(method=method, bits=bits, grid_points=4, rounds=1, calib_samples=3)
    windows = model_calibration_windows(16, torch.arange(64).repeat(10), config)
    params = calibrate_model(model, windows, config, progress=False)
    assert calls == [3 * passes] * layers
    assert len(params) == 7 * layers + 2
    assert set(params) >= {f"model.layers.{layers - 1}.{name}" for name in LAYER_LINEARS}


@pytest.mark.parametrize(
    ("kwargs", "windows"),
    [
        ({"method": "fpq"}, 32),
        ({"method": "fpq-baseline", "bits": "4/4/16"}, 32),
        ({"method": "minmax"}, 8),
        ({"method": "nvfp4"}, 8),
        ({"method": "minmax", "bits": "4/4/16"}, 0),
        ({"method": "nvfp4", "bits": "4/4/16"}, 0),
        ({"method": "mxfp4"}, 0),
        ({"method": "minmax", "calib_samples": 32}, 32),
        ({"method": "mxfp4", "calib_samples": 32}, 0),
        ({"method": "fpq", **PAPER_EXACT}, 32),
    ],
)
def test_calibration_data_is_sized_to_what_the_method_reads(kwargs: dict, windows: int) -> None:
    assert QuantConfig(**kwargs).windows == windows


def test_fake_quant_model_computes_quantized_linears() -> None:
    model = tiny_llama(2)
    windows = calibration_windows(torch.arange(64).repeat(10), 3, 16, seed=0)
    config = QuantConfig(method="fpq", grid_points=5, rounds=1)
    params = calibrate_model(model, windows, config, progress=False)
    again = calibrate_model(tiny_llama(2), windows, config, progress=False)
    assert all(torch.equal(params[k].weight.scale, again[k].weight.scale) for k in params if k != "model.embed_tokens")
    original = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    embed = model.model.embed_tokens.weight.detach().clone()
    apply_fake_quant(model, params)
    layer = model.model.layers[0].mlp.up_proj
    assert isinstance(layer, FakeQuantLinear)
    x = torch.randn(5, 32)
    quant = params["model.layers.0.mlp.up_proj"]
    expected = F.linear(quant.activation.apply(x), quant.weight.apply(original, 0))
    assert torch.equal(layer(x), expected)
    embedding = params["model.embed_tokens"]
    assert isinstance(embedding, TensorQuant)
    assert torch.equal(model.model.embed_tokens.weight, embedding.apply(embed, 0))
    assert torch.isfinite(model(windows).logits).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "gptq"}, "method"),
        ({"bits": "4/4/5"}, "bits"),
        ({"grid_low": 2.0}, "grid_low"),
        ({"calib_samples": 0}, "calib_samples"),
        ({"shortlist": 0}, "shortlist"),
        ({"search_tokens": 0}, "search_tokens"),
    ],
)
def test_bad_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantConfig(**kwargs)


@pytest.mark.parametrize(("d_in", "d_out"), [(32, 24), (16, 48)])
def test_activation_error_ranks_inputs_as_the_direct_output_error(d_in: int, d_out: int) -> None:
    """Narrow layers: the output error itself; wide ones: the same less ||Y||^2, which no candidate changes."""
    x, w = _data(seed=5, tokens=256, d_in=d_in, d_out=d_out)
    wq = fake_quantize(w, E2M1, w.abs().amax(1, keepdim=True) / 6)
    error = ActivationError(x, w, wq)
    candidates = [fake_quantize(x, E2M1, torch.tensor(s)) for s in (0.3, 0.5, 1.0)]
    direct = [((x.double() @ w.double().T - xq.double() @ wq.double().T) ** 2).sum().item() for xq in candidates]
    offset = 0.0 if d_out <= d_in else ((x.double() @ w.double().T) ** 2).sum().item()
    for xq, expected in zip(candidates, direct, strict=True):
        assert error(xq) + offset == pytest.approx(expected, rel=1e-5)


def test_the_weight_search_does_not_depend_on_its_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    x, w = _data(seed=6)
    error = OutputError(x, fake_quantize(x, E2M1, torch.tensor(0.4)), w)
    grid = bias_grid(QuantConfig(grid_points=30))
    whole = {k: search_weight(w, E2M1, error, grid, k).scale for k in (None, 2)}
    monkeypatch.setattr(search, "ROW_BLOCK", 5)
    assert all(torch.equal(search_weight(w, E2M1, error, grid, k).scale, scale) for k, scale in whole.items())
