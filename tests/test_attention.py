"""Quantized attention matmuls (Q K^T, P V): fp4sim's attention is eager attention when nothing is quantized,
the operand search picks what it claims, and the folded form gives the simulator's bits, alone and in an export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_llama
from transformers import AutoTokenizer

from fp4sim import get_format
from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.quant import search
from fp4sim.quant.attention import (
    STATE,
    AttentionQuant,
    MatmulQuant,
    matmul_config,
    matmul_simulator,
    matmul_torch,
    use_fp4sim_attention,
)
from fp4sim.quant.calibrate import calibrate_model, calibration_windows
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import export_quantized, load_export
from fp4sim.quant.fakequant import bias_to_scale
from fp4sim.quant.folded import exact_sum_dtype
from fp4sim.quant.modules import apply_fake_quant, set_backend
from fp4sim.quant.search import TensorQuant, activation_candidates, bias_grid, calibrate_matmul, paper_bias

FAST = {"grid_points": 4, "rounds": 1, "calib_samples": 2, "calib_length": 16}


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


@torch.no_grad()
def test_unquantized_fp4sim_attention_is_eager_attention() -> None:
    model = tiny_llama()
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    model.set_attn_implementation("eager")
    eager = model(ids).logits
    use_fp4sim_attention(model)
    assert torch.equal(model(ids).logits, eager)


def test_matmul_search_picks_the_best_candidate_and_beats_minmax() -> None:
    generator = torch.Generator().manual_seed(2)
    left = torch.randn(6, 16, 8, generator=generator) * torch.exp2(torch.randint(-2, 3, (8,), generator=generator))
    right = torch.randn(6, 8, 16, generator=generator)
    exact = left @ right

    def error(a: TensorQuant, b: TensorQuant) -> float:
        return ((a.apply(left) @ b.apply(right) - exact) ** 2).sum().item()

    minmax = calibrate_matmul(left, right, QuantConfig(method="minmax"))
    assert torch.equal(minmax[0].scale, left.abs().amax() / 6.0) and minmax[0].fmt.name == "E2M1(bias=1)"
    config = QuantConfig(method="fpq-baseline", grid_points=8, rounds=1, shortlist=None)
    searched = calibrate_matmul(left, right, config)
    # one round: the left side is searched against MinMax's right, then the right against the new left
    grid = bias_grid(config)
    formats = [get_format(n) for n in ("E3M0", "E2M1", "E1M2")]
    left_options = [c for f in formats for c in activation_candidates(left.abs().amax(), f, grid, per_channel=False)]
    best_left = min(error(c, minmax[1]) for c in left_options)
    assert error(searched[0], minmax[1]) == pytest.approx(best_left, rel=1e-6)
    right_options = [c for f in formats for c in activation_candidates(right.abs().amax(), f, grid, per_channel=False)]
    assert error(*searched) == pytest.approx(min(error(searched[0], c) for c in right_options), rel=1e-6)
    assert error(*searched) < error(*minmax)


def test_matmul_search_walks_a_long_grid_coarse_to_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a shortlist (the default) each format's 101-point grid is walked: fewer errors computed than points,
    and the pick is at least as good as every coarse point's (which the walk scores) and no better than the best
    of every point's."""
    generator = torch.Generator().manual_seed(3)
    left = torch.randn(4, 16, 8, generator=generator) * torch.exp2(torch.randint(-3, 4, (8,), generator=generator))
    right = torch.randn(4, 8, 16, generator=generator)
    config = QuantConfig(method="fpq-baseline", rounds=1)
    minmax = calibrate_matmul(left, right, QuantConfig(method="minmax"))
    calls = []
    original = search._matmul_error
    monkeypatch.setattr(search, "_matmul_error", lambda *args: calls.append(1) or original(*args))
    walked = calibrate_matmul(left, right, config)
    assert len(calls) < 2 * 3 * 101 // 3  # both sides, three formats: under a third of the points
    exact = left @ right
    error = lambda a: ((a.apply(left) @ minmax[1].apply(right) - exact) ** 2).sum().item()  # noqa: E731
    formats = [get_format(n) for n in ("E3M0", "E2M1", "E1M2")]
    grid = bias_grid(config)
    options = [activation_candidates(left.abs().amax(), f, grid, per_channel=False) for f in formats]
    every = min(error(c) for candidates in options for c in candidates)
    coarse = min(error(candidates[i]) for candidates in options for i in range(0, 101, search.COARSE_STRIDE))
    assert every <= error(walked[0]) <= coarse


def test_candidates_are_the_paper_grid() -> None:
    x = torch.randn(4, 8)
    fmt = get_format("E2M1")
    grid = bias_grid(QuantConfig(grid_points=4))
    scales = [c.scale for c in activation_candidates(x.abs().amax(0), fmt, grid, per_channel=False)]
    expected = [bias_to_scale(paper_bias(x.abs().amax(), fmt) * f, fmt) for f in grid]
    assert all(torch.equal(a, b) for a, b in zip(scales, expected, strict=True))


def test_calibration_quantizes_every_attention_and_restores_the_model() -> None:
    model = tiny_llama()
    model.set_attn_implementation("sdpa")
    windows = calibration_windows(torch.arange(64).repeat(10), 3, 16, seed=0)
    config = QuantConfig(method="fpq", quantize_attention=True, **FAST)
    params = calibrate_model(model, windows, config, progress=False)
    for index in range(2):
        quant = params[f"model.layers.{index}.self_attn"]
        assert isinstance(quant, AttentionQuant)
        assert all(t.scale.ndim == 0 and t.fmt.nbits == 4 for m in quant for t in m)
        assert not hasattr(model.model.layers[index].self_attn, STATE)
    assert model.config._attn_implementation == "sdpa"
    assert "model.layers.0.self_attn" not in calibrate_model(model, windows, QuantConfig(**FAST), progress=False)


@torch.no_grad()
def test_fake_quantized_attention_quantizes_q_k_p_v() -> None:
    model = tiny_llama()
    model.set_attn_implementation("eager")
    ids = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(3))
    fmt = get_format("E2M1")
    coarse = TensorQuant(fmt, torch.tensor(8.0))  # grid step 4: most values of q and k round to 0
    quant = AttentionQuant(MatmulQuant(coarse, coarse), MatmulQuant(coarse, coarse))
    reference = model(ids).logits
    apply_fake_quant(model, {"model.layers.0.self_attn": quant})
    assert not torch.equal(model(ids).logits, reference)
    assert model.config._attn_implementation == "fp4sim"


@pytest.mark.parametrize(
    ("fmt_l", "fmt_r", "k", "dtype"), [("E2M1", "E2M1", 300, torch.float32), ("E3M0", "E3M0", 4200, torch.float64)]
)
def test_folded_matmul_is_the_simulators_bits(fmt_l: str, fmt_r: str, k: int, dtype: torch.dtype) -> None:
    """float32 sums while K * max|products| <= 2^24 LSBs, float64 beyond (E3M0 x E3M0: 4096 per product)."""
    generator = torch.Generator().manual_seed(4)
    left = torch.randn(2, 3, 5, k, generator=generator)
    right = torch.randn(2, 3, k, 7, generator=generator)
    quant = MatmulQuant(
        TensorQuant(get_format(fmt_l), torch.tensor(0.31)), TensorQuant(get_format(fmt_r), torch.tensor(0.77))
    )
    on_torch = matmul_torch(left, right, quant)
    on_simulator = matmul_simulator(left, right, quant)
    assert on_torch.shape == (2, 3, 5, 7)
    assert np.array_equal(bits(on_torch), bits(on_simulator))
    assert exact_sum_dtype(quant.left.fmt, quant.right.fmt, 0, k) == dtype
    assert matmul_config(quant, k).k_max == k
    with pytest.raises(ValueError, match="exact accumulation only"):
        matmul_torch(left, right, quant, accum="fp32_sequential")


def test_attention_export_round_trip_and_simulator_bits(tmp_path: Path) -> None:
    model = tiny_llama(vocab=4096)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    windows = calibration_windows(torch.arange(4096), 2, 16, seed=0)
    config = QuantConfig(method="fpq", quantize_attention=True, **FAST)
    params = calibrate_model(model, windows, config, progress=False)
    export_quantized(model, tokenizer, params, config, tmp_path / "q")
    loaded, _, metadata = load_export(tmp_path / "q")
    assert metadata["modules"]["model.layers.1.self_attn"]["kind"] == "attention"
    state = getattr(loaded.model.layers[1].self_attn, STATE)
    for got, expected in zip(state.quant, params["model.layers.1.self_attn"], strict=True):
        for side_got, side_expected in zip(got, expected, strict=True):
            assert side_got.fmt == side_expected.fmt and torch.equal(side_got.scale, side_expected.scale)
    ids = torch.randint(0, 4096, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        on_torch = loaded(ids).logits
        on_simulator = set_backend(loaded, "simulator")(ids).logits
    assert np.array_equal(bits(on_torch), bits(on_simulator))


def test_attention_quantization_needs_quantized_activations() -> None:
    with pytest.raises(ValueError, match="quantize_attention needs quantized activations"):
        QuantConfig(bits="4/4/16", quantize_attention=True)
