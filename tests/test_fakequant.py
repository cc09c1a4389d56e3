"""Torch fake quantization against the codecs: the same bits, per-tensor and per-channel, with shifts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fp4sim
from fp4sim import get_format
from fp4sim.codec import quantize_dequantize_rows
from fp4sim.quant.fakequant import (
    bias_to_scale,
    fake_quantize,
    format_candidates,
    max_to_scale,
    round_to_format,
    scale_to_bias,
)

FORMATS = ["E3M0", "E2M1", "E1M2", "E2M3", "E4M3", "E5M2"]
SEARCHED = [f"E{e}M{m}" for bits in (4, 6, 8) for e, m in format_candidates(bits)]  # every format the search tries


def _codec(x: np.ndarray, fmt, scale: np.ndarray, shift: np.ndarray | None, axis: int) -> np.ndarray:
    codes = fp4sim.encode(x, fmt, scale=scale, axis=axis, shift=shift)
    return fp4sim.decode(codes, fmt, scale=scale, axis=axis, shift=shift)


def _values(rng: np.random.Generator, fmt, shape: tuple[int, ...]) -> np.ndarray:
    """Log-uniform magnitudes over the format's range and beyond, plus exact grid points and midpoints."""
    x = np.exp2(rng.uniform(-12, 10, shape)) * rng.choice([-1, 1], shape)
    grid = np.abs(fmt.values())
    flat = x.reshape(-1)
    flat[: grid.size] = grid * 0.7  # lands on grid points once the 0.7 scale below is applied
    flat[grid.size : 2 * grid.size - 1] = (grid[:-1] + grid[1:]) / 2 * 0.7
    return x.astype(np.float32)


@pytest.mark.parametrize("name", FORMATS)
def test_per_channel_scales_and_shifts_match_the_codec(name: str, rng: np.random.Generator) -> None:
    fmt = get_format(name)
    x = _values(rng, fmt, (64, 48))
    scale = (0.7 * np.exp2(rng.integers(-3, 3, 48)) * rng.uniform(0.5, 2.0, 48)).astype(np.float32)
    scale[:4] = 0.7  # exact grid points and midpoints on the first channels
    shift = rng.integers(0, 4, 48).astype(np.int8)
    expected = _codec(x, fmt, scale, np.broadcast_to(shift, x.shape), axis=1)
    got = fake_quantize(torch.from_numpy(x), fmt, torch.from_numpy(scale), torch.from_numpy(shift.astype(np.int64)))
    np.testing.assert_array_equal(got.numpy().view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("name", FORMATS)
def test_per_tensor_scale_matches_the_codec(name: str, rng: np.random.Generator) -> None:
    fmt = get_format(name)
    x = _values(rng, fmt, (4096,))
    scale = np.float32(rng.uniform(0.01, 10))
    expected = _codec(x, fmt, scale, None, axis=-1)
    got = fake_quantize(torch.from_numpy(x), fmt, torch.tensor(scale))
    np.testing.assert_array_equal(got.numpy().view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("name", SEARCHED)
def test_fused_kernel_matches_the_codec(name: str, rng: np.random.Generator) -> None:
    """The one-pass kernel behind fake_quantize (a scale per row, a shift per column) against encode + decode."""
    fmt = get_format(name)
    x = _values(rng, fmt, (64, 48))
    x[-1, :6] = [np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e38]
    row_scale = (0.7 * np.exp2(rng.integers(-3, 3, 64)) * rng.uniform(0.5, 2.0, 64)).astype(np.float32)
    row_scale[:2] = 0.7  # grid points and midpoints sit in the first rows
    shift = rng.integers(0, 2**fmt.ebits, 48)
    expected = _codec(x, fmt, row_scale, np.broadcast_to(shift, x.shape).astype(np.int8), axis=0).view(np.uint32)
    np.testing.assert_array_equal(quantize_dequantize_rows(x, fmt, row_scale, shift).view(np.uint32), expected)
    through_torch = fake_quantize(torch.from_numpy(x), fmt, torch.from_numpy(row_scale)[:, None], torch.tensor(shift))
    np.testing.assert_array_equal(through_torch.numpy().view(np.uint32), expected)


def test_fused_kernel_leaves_nan_and_other_formats_to_the_torch_ops() -> None:
    x = np.array([[np.nan, 1.0]], np.float32)
    assert quantize_dequantize_rows(x, get_format("E2M1"), np.float32([1.0]), None) is None
    assert quantize_dequantize_rows(np.ones((1, 2), np.float32), get_format("float8_e4m3fn"), np.ones(1), None) is None
    assert torch.isnan(fake_quantize(torch.from_numpy(x), get_format("E2M1"), torch.tensor(1.0))[0, 0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_quantize_as_their_float32_values(dtype: torch.dtype, rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.standard_normal(1000).astype(np.float32) * 4).to(dtype)
    scale = torch.tensor(0.37)
    fmt = get_format("E2M1")
    np.testing.assert_array_equal(fake_quantize(x, fmt, scale).numpy(), fake_quantize(x.float(), fmt, scale).numpy())


@given(value=st.floats(-1e4, 1e4, width=32), scale=st.floats(2**-10, 2**10, width=32), name=st.sampled_from(FORMATS))
def test_single_values(value: float, scale: float, name: str) -> None:
    fmt = get_format(name)
    x = np.array([value], np.float32)
    expected = _codec(x, fmt, np.float32(scale), None, axis=-1)
    got = fake_quantize(torch.from_numpy(x), fmt, torch.tensor(np.float32(scale)))
    assert got.numpy().view(np.uint32)[0] == expected.view(np.uint32)[0]


def test_signed_zeros_and_saturation() -> None:
    fmt = get_format("E2M1")
    y = torch.tensor([-0.0, 0.0, -0.1, 1e30, -np.inf, 5.0, 7.0])
    result = round_to_format(y, fmt)
    assert result.tolist() == [0.0, 0.0, 0.0, 6.0, -6.0, 4.0, 6.0]  # 5 is a tie between 4 and 6: even mantissa
    assert torch.signbit(result).tolist() == [True, False, True, False, True, False, False]


def test_scale_from_the_paper_bias_formula() -> None:
    """alpha from max|x| makes the format's top value equal max|x|; b~ <-> alpha round-trips."""
    fmt = get_format("E2M1")
    maxval = torch.tensor([6.0, 3.0, 0.0, 100.0])
    scale = max_to_scale(maxval, fmt)
    assert scale.tolist() == [1.0, 0.5, 1.0, pytest.approx(100 / 6)]
    paper_bias = 2**fmt.ebits - torch.log2(maxval[[0, 1, 3]].double()) + np.log2(2 - 2.0**-fmt.mbits) - 1
    np.testing.assert_allclose(scale_to_bias(scale[[0, 1, 3]], fmt).numpy(), paper_bias.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bias_to_scale(paper_bias, fmt).numpy(), scale[[0, 1, 3]].numpy(), rtol=1e-6)


def test_format_candidates_follow_the_paper() -> None:
    assert format_candidates(4) == [(3, 0), (2, 1), (1, 2)]
    assert format_candidates(6) == [(5, 0), (4, 1), (3, 2), (2, 3), (1, 4)]
    assert format_candidates(8) == [(5, 2), (4, 3), (3, 4), (2, 5), (1, 6)]


def test_formats_outside_the_family_are_refused() -> None:
    with pytest.raises(ValueError, match="LLM-FP4 family"):
        round_to_format(torch.zeros(2), get_format("float8_e4m3fn"))
