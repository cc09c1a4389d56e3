"""The LLM-FP4 family against the paper's formula in exact arithmetic (tests/oracle.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from oracle import grid, paper_quantize

import fp4sim

FAMILY = [(3, 0), (2, 1), (1, 2), (4, 1), (3, 2), (2, 3), (5, 2), (1, 6)]
BIASES = [-2, 0, 1, 3, 6]


def probe_values(ebits: int, mbits: int, bias: int, rng: np.random.Generator) -> np.ndarray:
    """Grid points, midpoints, points just off them, out-of-range and random values (float64)."""
    points = np.array([float(v) for v in grid(ebits, mbits, bias)])
    mids = (points[:-1] + points[1:]) / 2
    edges = np.concatenate([points, mids, points * 2, [points[-1] * 1.5, 1e300, 1e-300]])
    near = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, 0)])
    spread = rng.standard_normal(3000) * points[-1] * np.exp2(rng.uniform(-12, 2, 3000))
    values = np.concatenate([near, spread])
    return np.concatenate([values, -values])


def oracle_values(x: np.ndarray, ebits: int, mbits: int, bias: int, mode: str = "nearest_even") -> np.ndarray:
    return np.array([float(paper_quantize(Fraction(float(v)), ebits, mbits, bias, mode)) for v in x])


@pytest.mark.parametrize(("ebits", "mbits"), FAMILY)
@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("mode", ["nearest_even", "toward_zero"])
def test_family_matches_the_paper_formula(ebits, mbits, bias, mode, rng):
    fmt = fp4sim.get_format(f"E{ebits}M{mbits}", bias=bias)
    x = probe_values(ebits, mbits, bias, rng)
    decoded = fp4sim.decode(fp4sim.encode(x, fmt, rounding=mode), fmt).astype(np.float64)
    np.testing.assert_array_equal(np.abs(decoded), np.abs(oracle_values(x, ebits, mbits, bias, mode)))
    # and the code keeps the input's sign, as hardware does (-0 for small negatives)
    codes = fp4sim.encode(x, fmt, rounding=mode)
    np.testing.assert_array_equal((codes & fmt.sign_mask) != 0, np.signbit(x))


@pytest.mark.parametrize(("ebits", "mbits"), [(3, 0), (2, 1), (1, 2)])
def test_float32_input_matches_the_formula(ebits, mbits, rng):
    fmt = fp4sim.get_format(f"E{ebits}M{mbits}", bias=2)
    with np.errstate(over="ignore"):
        x = probe_values(ebits, mbits, 2, rng).astype(np.float32)
    x[~np.isfinite(x)] = np.copysign(3e38, x[~np.isfinite(x)])
    decoded = fp4sim.decode(fp4sim.encode(x, fmt), fmt)
    np.testing.assert_array_equal(np.abs(decoded), np.abs(oracle_values(x, ebits, mbits, 2)))


@pytest.mark.parametrize(("ebits", "mbits"), [(3, 0), (2, 1), (1, 2), (4, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shift_is_a_bias_increase(ebits, mbits, dtype, rng):
    """encode(x, fmt, shift=s) == encode(x, fmt with bias + s), element by element."""
    fmt = fp4sim.get_format(f"E{ebits}M{mbits}", bias=1)
    x = (rng.standard_normal((64, 32)) * 4).astype(dtype)
    shift = rng.integers(0, 4, size=32)
    codes = fp4sim.encode(x, fmt, shift=shift)
    for s in range(4):
        cols = shift == s
        np.testing.assert_array_equal(codes[:, cols], fp4sim.encode(x[:, cols], fmt.with_bias(1 + s)))
    decoded = fp4sim.decode(codes, fmt, shift=shift)
    expected = oracle_values(x.ravel() * np.exp2(np.tile(shift, 64)), ebits, mbits, 1)
    np.testing.assert_array_equal(decoded.ravel(), expected * np.exp2(-np.tile(shift, 64).astype(float)))


def test_e8m0_against_exact_nearest(rng):
    """Unsigned, no zero: nearest power of two, ties (1.5 * 2**k) up; below 2**-127 -> 2**-127."""
    fmt = fp4sim.get_format("float8_e8m0fnu")
    x = np.exp2(rng.uniform(-160, 130, 20_000))
    x = np.concatenate([x, 1.5 * np.exp2(np.arange(-127.0, 127.0)), np.exp2(np.arange(-127.0, 128.0))])
    codes = fp4sim.encode(x, fmt).astype(np.int64)
    for value, code in zip(x, codes, strict=True):
        f = Fraction(float(value))
        k = f.numerator.bit_length() - f.denominator.bit_length()
        k = k if Fraction(2) ** k <= f else k - 1
        nearest = k + 1 if f >= Fraction(3, 2) * Fraction(2) ** k else k
        expected = 255 if nearest > 127 else max(nearest, -127) + 127
        assert code == expected, (value, code, expected)


def test_e3m0_ties_go_to_the_even_significand():
    """m = 0: between two nonzero values the significands are 1 and 2, so ties go up;
    between 0 and the smallest value they go to 0 (docs/spec.md 1.4)."""
    fmt = fp4sim.get_format("E3M0", bias=0)
    x = np.array([1.0, 3.0, 6.0, 12.0, 96.0, -3.0, 2.9, 3.1])
    np.testing.assert_array_equal(fp4sim.decode(fp4sim.encode(x, fmt), fmt), [0, 4, 8, 16, 128, -4, 2, 4])
