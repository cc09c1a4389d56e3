"""Hypothesis properties of the encoder, for formats of every kind."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fp4sim
from fp4sim.codec import _kernels as codec_kernels

FORMATS = [
    fp4sim.get_format("E2M1"),
    fp4sim.get_format("E3M0", bias=0),
    fp4sim.get_format("E1M2", bias=2),
    fp4sim.get_format("E3M2", bias=5),
    fp4sim.get_format("float8_e4m3fn_satfinite"),
    fp4sim.get_format("float8_e5m2"),
]
IDS = [f.name for f in FORMATS]


def finite_magnitudes(fmt: fp4sim.Format) -> np.ndarray:
    values = fmt.values()
    return np.unique(np.abs(values[np.isfinite(values)]))


def in_range(fmt: fp4sim.Format):
    """float64 values up to twice the format's max (past it for saturating formats only)."""
    limit = float(fmt.max_value) * (2 if fmt.overflow == "saturate" else 1)
    return st.floats(min_value=-limit, max_value=limit, allow_nan=False, width=64)


def roundtrip(x: float, fmt: fp4sim.Format, **kwargs) -> float:
    return float(fp4sim.decode(fp4sim.encode(np.array([x]), fmt, **kwargs), fmt)[0])


def neighbours(x: float, fmt: fp4sim.Format) -> tuple[float, float]:
    """The representable magnitudes just below-or-at and at-or-above |x| (clipped to max)."""
    mags = finite_magnitudes(fmt)
    a = min(abs(x), mags[-1])
    return mags[mags <= a].max(), mags[mags >= a].min()


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@given(data=st.data())
def test_nearest_even_is_nearest_with_ties_to_even(fmt, data):
    x = data.draw(in_range(fmt))
    lo, hi = neighbours(x, fmt)
    got = abs(roundtrip(x, fmt))
    a = min(abs(x), hi)
    if a - lo != hi - a:
        assert got == (lo if a - lo < hi - a else hi)
    else:
        # A tie: the even significand. With no mantissa bits that is the upper
        # neighbour (significand 2 against 1), unless the lower one is zero.
        code_of = {float(v): c for c, v in enumerate(fmt.values()[: 1 << fmt.magnitude_bits])}
        expected = hi if fmt.mbits == 0 and lo != 0 else (lo if code_of[lo] % 2 == 0 else hi)
        assert got == expected


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@given(data=st.data())
def test_monotone(fmt, data):
    x, y = sorted([data.draw(in_range(fmt)), data.draw(in_range(fmt))])
    assert roundtrip(x, fmt) <= roundtrip(y, fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@given(data=st.data())
def test_sign_symmetric(fmt, data):
    x = data.draw(in_range(fmt))
    pos = fp4sim.encode(np.array([x]), fmt)[0]
    neg = fp4sim.encode(np.array([-x]), fmt)[0]
    assert pos ^ neg == fmt.sign_mask


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_idempotent_on_every_code(fmt):
    codes = np.arange(1 << fmt.nbits, dtype=np.uint8)
    values = fp4sim.decode(codes, fmt)
    again = fp4sim.encode(values, fmt, nan="encode")
    finite = np.isfinite(values) | np.isinf(values)
    np.testing.assert_array_equal(again[finite], codes[finite])


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.overflow == "saturate"], ids=lambda f: f.name)
@given(scale=st.floats(min_value=1.0, max_value=1e300))
def test_saturating(fmt, scale):
    x = np.array([float(fmt.max_value) * scale, np.inf])
    for sign in (1, -1):
        codes = fp4sim.encode(sign * x, fmt)
        np.testing.assert_array_equal(codes & (0xFF ^ fmt.sign_mask), fmt.max_code)


def test_e5m2_overflows_to_inf_past_the_rounding_edge():
    fmt = fp4sim.get_format("float8_e5m2")
    edge = 57344 + 4096  # max (significand 1.11, odd) + half an ulp: the tie goes up, to Inf
    codes = fp4sim.encode(np.array([np.nextafter(edge, 0), edge, 1e6, np.inf, -1e6]), fmt)
    np.testing.assert_array_equal(codes, [0x7B, 0x7C, 0x7C, 0x7C, 0xFC])


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@given(data=st.data())
def test_toward_zero_is_the_largest_magnitude_not_above(fmt, data):
    x = data.draw(in_range(fmt))
    lo, _ = neighbours(x, fmt)
    got = roundtrip(x, fmt, rounding="toward_zero")
    assert abs(got) == lo and (got == 0 or np.sign(got) == np.sign(x))


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
@given(data=st.data(), seed=st.integers(0, 2**64 - 1))
def test_stochastic_returns_a_neighbour(fmt, data, seed):
    x = data.draw(in_range(fmt))
    lo, hi = neighbours(x, fmt)
    got = abs(roundtrip(x, fmt, rounding="stochastic", seed=seed))
    assert got in (lo, hi)


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_stochastic_is_unbiased(fmt, rng):
    mags = finite_magnitudes(fmt)
    for _ in range(5):
        i = rng.integers(0, mags.size - 1)
        lo, hi = mags[i], mags[i + 1]
        x = lo + (hi - lo) * rng.uniform(0.05, 0.95)
        n = 40_000
        got = fp4sim.decode(fp4sim.encode(np.full(n, x), fmt, rounding="stochastic", seed=int(i)), fmt)
        p = (x - lo) / (hi - lo)
        sigma = (hi - lo) * np.sqrt(p * (1 - p) / n)
        assert abs(got.astype(np.float64).mean() - x) < 5 * sigma


def test_stochastic_is_reproducible_and_thread_count_independent(rng):
    x = rng.standard_normal(codec_kernels.PARALLEL_MIN_SIZE * 2).astype(np.float32)
    first = fp4sim.encode(x, "E2M1", rounding="stochastic", seed=7)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = fp4sim.encode(x, "E2M1", rounding="stochastic", seed=7)
    finally:
        numba.set_num_threads(threads)
    serial_head = fp4sim.encode(x[:1000], "E2M1", rounding="stochastic", seed=7)  # serial kernel
    np.testing.assert_array_equal(first, single)
    np.testing.assert_array_equal(first[:1000], serial_head)
    other = fp4sim.encode(x, "E2M1", rounding="stochastic", seed=8)
    assert np.count_nonzero(other != first) > x.size // 20
