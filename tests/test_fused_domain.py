"""Fake quantization is exact at the edges of the format space (spec 1.9).

The fused path (codec.quantize_dequantize_rows) gives encode + decode's bits for every LLM-FP4 family format, bias,
shift and scale the API accepts: fused inside its domain, the two calls outside it. The torch ops path
(fake_quantize_ops, any device) gives the same bits or refuses with ValueError; it is never silently different."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import paper_quantize, round_float

import fp4sim
from fp4sim.codec import elementwise, quantize_dequantize_rows
from fp4sim.formats import BIAS_LIMIT, llm_fp4_format
from fp4sim.quant.fakequant import fake_quantize_ops

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Inf results at the largest scales are right


def encode_decode(x: np.ndarray, fmt, row_scale: np.ndarray, shift: np.ndarray | None) -> np.ndarray | None:
    """The reference: the two public calls, one scale per row, one shift per column; None where decode refuses."""
    scale = row_scale[0] if row_scale.size == 1 else row_scale
    shifts = None if shift is None else np.broadcast_to(shift.astype(np.int8), x.shape)
    try:
        return fp4sim.decode(
            fp4sim.encode(x, fmt, scale=scale, axis=0, shift=shifts), fmt, scale=scale, axis=0, shift=shifts
        )
    except ValueError:
        return None


def fused(x: np.ndarray, fmt, row_scale: np.ndarray, shift: np.ndarray | None) -> np.ndarray | None:
    try:
        result = quantize_dequantize_rows(x, fmt, row_scale, shift)
    except ValueError:
        return None
    assert result is not None, "a NaN-free float32 matrix in an LLM-FP4 family format must be handled"
    return result


def assert_same(x, fmt, row_scale, shift) -> None:
    expected, got = encode_decode(x, fmt, row_scale, shift), fused(x, fmt, row_scale, shift)
    assert (expected is None) == (got is None), (
        f"{fmt.name}: encode/decode {'refuses' if expected is None else 'works'}"
    )
    if expected is not None:
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32), err_msg=fmt.name)


def test_negative_shift_into_float32_subnormals():
    """Regression (issue 19, case 1): x / scale * 2^-3 is an FP32 subnormal; rounding it there landed on a midpoint."""
    fmt = fp4sim.get_format("E1M2", bias=126)
    x, scale, shift = np.array([[8.228461e-39]], np.float32), np.float32([0.35]), np.int8([-3])
    np.testing.assert_array_equal(quantize_dequantize_rows(x, fmt, scale, shift), [[np.float32(1.645692e-38)]])
    assert_same(x, fmt, scale, shift)


def test_very_negative_bias():
    """Regression (issue 19, case 2): the subnormal-rounding constant overflowed to Inf; small values became NaN."""
    fmt = fp4sim.get_format("E2M1", bias=-120)
    x = np.array([[0.0, -0.0, 2.0**120, 3e36]], np.float32)
    got = quantize_dequantize_rows(x, fmt, np.float32([1.0]), None)
    np.testing.assert_array_equal(
        got.view(np.uint32), np.array([[0.0, -0.0, 2.0**120, 2.0**121]], np.float32).view(np.uint32)
    )
    assert_same(x, fmt, np.float32([1.0]), None)


def test_the_usual_formats_stay_on_the_fused_path(monkeypatch, rng):
    """Inside the domain (the formats and shifts the quantizer uses) the two calls are never made."""

    def refuse(*args, **kwargs):
        raise AssertionError("left the fused path")

    monkeypatch.setattr(elementwise, "encode", refuse)
    for name in ("E3M0", "E2M1", "E1M2", "E4M3", "E5M2", "E1M6"):
        fmt = fp4sim.get_format(name)
        x = (rng.standard_normal((32, 24)) * np.exp2(rng.integers(-20, 20, (32, 24)))).astype(np.float32)
        shift = rng.integers(0, 2**fmt.ebits, 24)
        assert quantize_dequantize_rows(x, fmt, rng.uniform(0.01, 10, 32).astype(np.float32), shift) is not None


@st.composite
def cases(draw):
    """A family format at any bias, shifts anywhere in [-127, 127], scales from the smallest normal up, and values
    placed on the format's grid, its midpoints and their FP32 neighbours, as well as anywhere in FP32."""
    ebits = draw(st.integers(1, 7))
    fmt = llm_fp4_format(ebits, draw(st.integers(0, 7 - ebits)), draw(st.integers(-BIAS_LIMIT, BIAS_LIMIT)))
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low, high = draw(st.integers(-127, 127)), draw(st.integers(-127, 127))
    shift = None if draw(st.booleans()) else rng.integers(min(low, high), max(low, high) + 1, cols)
    scale_exponent = draw(st.integers(-126, 127))
    row_scale = np.ldexp(rng.uniform(1, 2, rows), scale_exponent).astype(np.float32)
    row_scale = np.where(np.isfinite(row_scale), row_scale, np.float32(2.0**127))
    if draw(st.booleans()):
        row_scale = row_scale[:1]
    values = np.abs(fmt.values())
    with np.errstate(over="ignore", under="ignore"):
        grid = np.concatenate([values, (values[:-1] + values[1:]) / 2])
        col_shift = np.zeros(cols) if shift is None else shift
        on_grid = rng.choice(grid, (rows, cols)) * np.exp2(-col_shift) * row_scale.reshape(-1, 1)
        near = on_grid.astype(np.float32)
        near = np.where(rng.random((rows, cols)) < 0.3, np.nextafter(near, np.float32(np.inf)), near)
        anywhere = rng.integers(0, 2**32, (rows, cols), dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.where(rng.random((rows, cols)) < 0.7, near, anywhere) * rng.choice(np.float32([-1, 1]), (rows, cols))
    x = np.where(np.isnan(x), np.float32(0), x).astype(np.float32)
    return x, fmt, row_scale, shift


@settings(max_examples=400, deadline=None)
@given(cases())
def test_fused_path_equals_encode_decode_everywhere(case):
    assert_same(*case)


@pytest.mark.parametrize("bias", [-256, -120, -104, 0, 104, 125, 126, 127, 256])
@pytest.mark.parametrize("shift", [-127, -3, 0, 3, 127])
def test_format_space_corners(bias: int, shift: int, rng):
    """The corners of the space on every family shape: extreme biases with extreme shifts, over FP32's whole range."""
    for ebits in range(1, 8):
        for mbits in range(0, 8 - ebits):
            fmt = llm_fp4_format(ebits, mbits, bias)
            bits = rng.integers(0, 2**32, (4, 64), dtype=np.uint64).astype(np.uint32)
            x = bits.view(np.float32).copy()
            x[np.isnan(x)] = 0
            assert_same(x, fmt, np.float32([0.75, 1.0, 2.0**-126, 3e30]), np.full(64, shift))


def torch_ops(x: np.ndarray, fmt, row_scale: np.ndarray, shift: np.ndarray | None) -> np.ndarray | None:
    scale = torch.from_numpy(row_scale).reshape(-1, 1) if row_scale.size > 1 else torch.tensor(row_scale[0])
    shifts = None if shift is None else torch.from_numpy(np.asarray(shift, np.int64))
    try:
        return fake_quantize_ops(torch.from_numpy(x), fmt, scale, shifts).numpy()
    except ValueError:
        return None


def test_torch_ops_do_not_round_twice_in_fp32_subnormals():
    """x * 2^-3 = 2^-127 + 2^-150 is an FP32 tie that rounds onto the format's midpoint 2^-127; the exact value is above
    it, so the answer is the format's step 2^-126 (times 2^3), not 0."""
    fmt = fp4sim.get_format("E1M2", bias=125)
    x = np.array([[2.0**-124 + 2.0**-147]], np.float32)
    expected = np.array([[2.0**-123]], np.float32)
    np.testing.assert_array_equal(torch_ops(x, fmt, np.float32([1.0]), np.array([-3])), expected)
    np.testing.assert_array_equal(encode_decode(x, fmt, np.float32([1.0]), np.array([-3])), expected)


def fraction_reference(x: np.ndarray, fmt, row_scale: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Exact arithmetic (tests/oracle.py): q = fp32(x / scale), rounded on the format's grid after * 2^shift,
    * 2^-shift, * scale, rounded once to FP32. Zeros come out unsigned: compare values, not bits."""
    shifts = np.zeros(x.shape[1], np.int64) if shift is None else np.asarray(shift, np.int64)
    qmax = fmt.max_value
    out = np.empty(x.shape, np.float64)
    for r, c in np.ndindex(*x.shape):
        scale = row_scale[r if row_scale.size > 1 else 0]
        q = x[r, c] / scale  # float32 / float32: the one rounding both paths make
        power = Fraction(2) ** int(shifts[c])
        if np.isinf(q):
            value = qmax if q > 0 else -qmax
        else:
            value = paper_quantize(Fraction(float(q)) * power, fmt.ebits, fmt.mbits, fmt.bias)
        out[r, c] = round_float(value / power * Fraction(float(scale)), "fp32")
    return out


def test_torch_ops_where_fp32_cannot_hold_the_unshifted_largest_value():
    """Regressions from review: the clip value was built as fp32(max) * 2^-shift, wrong when max itself leaves FP32."""
    cases = [
        (llm_fp4_format(1, 2, -128), [1.5 * 2.0**127, -3e38], 3, [1.75 * 2.0**126, -1.75 * 2.0**126]),
        (llm_fp4_format(2, 1, 160), [2.0**-57, 2.0**-58], -100, [2.0**-57, 2.0**-58]),
        (llm_fp4_format(4, 3, 163), [1.875 * 2.0**-43, 2.0**-42], -105, [1.875 * 2.0**-43, 1.875 * 2.0**-43]),
    ]
    for fmt, x, shift, expected in cases:
        got = torch_ops(np.array([x], np.float32), fmt, np.float32([1.0]), np.full(len(x), shift))
        np.testing.assert_array_equal(got, np.array([expected], np.float32), err_msg=fmt.name)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_torch_ops_are_exact_or_refuse(case):
    """The same bits as encode / decode where both answer; where only the ops do (decode's unshifted value table
    leaves FP32), the exact-arithmetic oracle's values."""
    got, expected = torch_ops(*case), encode_decode(*case)
    if got is not None and expected is not None:
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    elif got is not None:
        np.testing.assert_array_equal(got, fraction_reference(*case).astype(np.float32))
