"""LLM-FP4 quantizer: the search picks what it claims, FPQ's folded bias equals the unfolded one, calibration
runs each layer a fixed number of times (linear in depth), and the fake-quantized model computes what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_llama

from fp4sim import get_format
from fp4sim.quant.calibrate import LAYER_LINEARS, calibrate_model, calibration_windows, model_calibration_windows
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.fakequant import bias_to_scale, fake_quantize, max_to_scale
from fp4sim.quant.modules import FakeQuantLinear, apply_fake_quant
from fp4sim.quant.search import (
    LinearQuant,
    OutputError,
    TensorQuant,
    activation_candidates,
    bias_grid,
    calibrate_linear,
    paper_bias,
    search_weight,
)

E2M1 = get_format("E2M1")


def _data(seed: int = 0, tokens: int = 512, d_in: int = 32, d_out: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    channel_range = torch.exp2(torch.randint(-3, 4, (d_in,), generator=generator).float())  # inter-channel variance
    x = torch.randn(tokens, d_in, generator=generator) * channel_range
    w = torch.randn(d_out, d_in, generator=generator) * 0.1
    return x, w


def test_output_error_equals_the_direct_sum() -> None:
    x, w = _data()
    xq = fake_quantize(x, E2M1, torch.tensor(0.5))
    q = fake_quantize(w, E2M1, torch.full((24, 1), 0.02))
    direct = ((x.double() @ w.double().T - xq.double() @ q.double().T) ** 2).sum(0)
    torch.testing.assert_close(OutputError(x, xq, w)(q), direct, rtol=1e-9, atol=1e-9)


def test_weight_search_picks_each_channels_best_candidate() -> None:
    x, w = _data()
    error = OutputError(x, x, w)
    config = QuantConfig(method="fpq-baseline", grid_points=20)
    chosen = search_weight(w, E2M1, error, bias_grid(config))
    base = paper_bias(w.abs().amax(1), E2M1)
    candidates = torch.stack(
        [error(fake_quantize(w, E2M1, bias_to_scale(base * f, E2M1)[:, None])) for f in bias_grid(config)]
    )
    got = error(fake_quantize(w, E2M1, chosen.scale[:, None]))
    torch.testing.assert_close(got, candidates.min(0).values)


def test_paper_bias_is_the_max_scale() -> None:
    maxval = torch.tensor([0.3, 6.0, 100.0])
    torch.testing.assert_close(bias_to_scale(paper_bias(maxval, E2M1), E2M1), max_to_scale(maxval, E2M1))


def test_fpq_folded_bias_equals_per_channel_bias() -> None:
    """rho as the tensor scale plus the integer shift == a per-channel bias rho + b_j^ori, value for value."""
    x, _ = _data()
    for candidate in activation_candidates(x, E2M1, bias_grid(QuantConfig(grid_points=10)), per_channel=True):
        assert int(candidate.shift.min()) >= 0 and int(candidate.shift.max()) <= 2**E2M1.ebits - 1
        per_channel_scale = candidate.scale / torch.exp2(candidate.shift.float())  # 2^(bias - rho - b_j)
        unfolded = fake_quantize(x, E2M1, per_channel_scale)
        folded = fake_quantize(x, E2M1, candidate.scale, candidate.shift)
        assert torch.equal(folded.view(torch.int32), unfolded.view(torch.int32))


def test_fpq_shifts_follow_the_paper_split() -> None:
    x, _ = _data()
    grid = bias_grid(QuantConfig(grid_points=4))
    channel_bias = paper_bias(x.abs().amax(0), E2M1)
    for factor, candidate in zip(grid, activation_candidates(x, E2M1, grid, per_channel=True), strict=True):
        rho = channel_bias.min() * factor
        assert torch.equal(candidate.shift, torch.clamp(torch.round(channel_bias - rho), 0, 3).long())
        torch.testing.assert_close(candidate.scale, bias_to_scale(rho, E2M1))


@pytest.mark.parametrize("method", ["minmax", "fpq-baseline", "fpq"])
def test_calibrate_linear_gives_valid_settings(method: str) -> None:
    x, w = _data()
    quant = calibrate_linear(w, x, QuantConfig(method=method, grid_points=10, rounds=2))
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

    minmax = mse(calibrate_linear(w, x, QuantConfig(method="minmax")))
    fpq = mse(calibrate_linear(w, x, QuantConfig(method="fpq", rounds=1)))
    assert fpq < minmax


def test_activations_at_16_bits_are_not_quantized() -> None:
    x, w = _data()
    assert calibrate_linear(w, x, QuantConfig(bits="4/4/16", grid_points=5, rounds=1)).activation is None


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
def test_each_layer_runs_twice_whatever_the_depth(layers: int) -> None:
    """Cost linear in depth: two passes per layer (inputs, outputs); the pass that collects the layers' inputs runs
    stand-ins, not the layers."""
    model = tiny_llama(layers)
    calls = [0] * layers
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    windows = calibration_windows(torch.arange(64).repeat(10), 3, 16, seed=0)
    params = calibrate_model(model, windows, QuantConfig(method="minmax"), progress=False)
    assert calls == [2] * layers
    assert len(params) == 7 * layers + 2
    assert set(params) >= {f"model.layers.{layers - 1}.{name}" for name in LAYER_LINEARS}


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
        ({"search_tokens": 0}, "search_tokens"),
    ],
)
def test_bad_configs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuantConfig(**kwargs)
