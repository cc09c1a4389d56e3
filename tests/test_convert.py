"""The accumulator -> FP32/BF16/FP16 converter against the Fraction oracle, ml_dtypes and numpy casts."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import oracle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fp4sim.hw.fp4_round_to_float import OUTPUT_FORMATS, accumulators_to_float, float32_to_float, fp4_round_to_float

OUTS = list(OUTPUT_FORMATS)


def _bits_of(value: float, out: str) -> int:
    fmt = OUTPUT_FORMATS[out]
    return int(np.array(value, dtype=np.float64).astype(np.float32).astype(fmt.dtype).view(fmt.bits_dtype))


def _edge_integers(mbits: int) -> list[int]:
    """Integers around every rounding decision of a (mbits+1)-bit significand: ties, odd/even, carries."""
    values = []
    for extra in range(1, 6):
        base = 1 << (mbits + extra)
        step = 1 << extra
        for q in (1 << mbits, (1 << mbits) + 1, (1 << (mbits + 1)) - 1):
            for delta in (-1, 0, 1, step // 2 - 1, step // 2, step // 2 + 1, step - 1):
                values.append(q * step + delta)
        values.append(base)
    return values


@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("toward_zero", [False, True])
def test_rounding_edges(out: str, toward_zero: bool) -> None:
    fmt = OUTPUT_FORMATS[out]
    for value in _edge_integers(fmt.mbits):
        for exponent in (-30, -12, 0, 5):
            for signed in (value, -value):
                expected = oracle.round_float(Fraction(signed) * Fraction(2) ** exponent, out, toward_zero)
                got = fp4_round_to_float(signed, exponent, fmt.ebits, fmt.mbits, toward_zero)
                assert got == _bits_of(expected, out), (signed, exponent)


@pytest.mark.parametrize("out", OUTS)
@given(value=st.integers(-(2**62), 2**62), exponent=st.integers(-180, 100), toward_zero=st.booleans())
def test_any_integer_and_exponent(out: str, value: int, exponent: int, toward_zero: bool) -> None:
    """Includes FP16 overflow (-> Inf, or max toward zero) and subnormal / underflow results."""
    fmt = OUTPUT_FORMATS[out]
    expected = oracle.round_float(Fraction(value) * Fraction(2) ** exponent, out, toward_zero)
    assert fp4_round_to_float(value, exponent, fmt.ebits, fmt.mbits, toward_zero) == _bits_of(expected, out)


def test_zero_is_positive() -> None:
    for out in OUTS:
        assert accumulators_to_float(np.zeros(3, np.int64), -5, OUTPUT_FORMATS[out]).view(
            OUTPUT_FORMATS[out].bits_dtype
        ).tolist() == [0, 0, 0]


def test_fp16_overflows_to_inf() -> None:
    result = accumulators_to_float(np.array([65519, 65520, -70000], np.int64), 0, OUTPUT_FORMATS["fp16"])
    assert result.tolist() == [65504.0, np.inf, -np.inf]


def test_float32_rounding_matches_ml_dtypes_and_numpy(rng: np.random.Generator) -> None:
    """FP32 -> BF16 / FP16 on random finite bit patterns: ml_dtypes and numpy round half-even too."""
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(
            float32_to_float(x, OUTPUT_FORMATS["bf16"]).view(np.uint16), x.astype(ml_dtypes.bfloat16).view(np.uint16)
        )
        np.testing.assert_array_equal(
            float32_to_float(x, OUTPUT_FORMATS["fp16"]).view(np.uint16), x.astype(np.float16).view(np.uint16)
        )
