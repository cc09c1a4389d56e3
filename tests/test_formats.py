"""Format definitions: value tables, limits, names and validation."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from oracle import code_value

import fp4sim
from fp4sim.formats import Format

# Presets that ml_dtypes defines under the same name.
ML_DTYPES_NAMES = [
    "float4_e2m1fn",
    "float6_e2m3fn",
    "float6_e3m2fn",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e8m0fnu",
]


@pytest.mark.parametrize("name", ML_DTYPES_NAMES)
def test_value_table_matches_ml_dtypes(name):
    fmt = fp4sim.get_format(name)
    codes = np.arange(1 << fmt.nbits, dtype=np.uint8)
    expected = codes.view(getattr(ml_dtypes, name)).astype(np.float64)
    np.testing.assert_array_equal(fmt.values(), expected)


@pytest.mark.parametrize(
    ("name", "max_value", "min_normal", "min_subnormal"),
    [
        ("float4_e2m1fn", 6, 1, Fraction(1, 2)),
        ("float6_e2m3fn", Fraction(15, 2), 1, Fraction(1, 8)),
        ("float6_e3m2fn", 28, Fraction(1, 4), Fraction(1, 16)),
        ("float8_e4m3fn", 448, Fraction(1, 64), Fraction(1, 512)),
        ("float8_e4m3fn_satfinite", 448, Fraction(1, 64), Fraction(1, 512)),
        ("float8_e5m2", 57344, Fraction(1, 2**14), Fraction(1, 2**16)),
        ("float8_e8m0fnu", Fraction(2**127), Fraction(1, 2**127), None),
    ],
)
def test_limits_match_the_ocp_tables(name, max_value, min_normal, min_subnormal):
    fmt = fp4sim.get_format(name)
    assert fmt.max_value == max_value
    assert fmt.min_normal == min_normal
    assert fmt.min_subnormal == min_subnormal


@pytest.mark.parametrize(
    ("name", "bias", "positive_grid"),
    [
        ("E2M1", 1, [0, 0.5, 1, 1.5, 2, 3, 4, 6]),
        ("E1M2", 0, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]),
        ("E3M0", 0, [0, 2, 4, 8, 16, 32, 64, 128]),
    ],
)
def test_paper_example_grids(name, bias, positive_grid):
    fmt = fp4sim.get_format(name, bias=bias)
    np.testing.assert_array_equal(fmt.values()[:8], positive_grid)
    np.testing.assert_array_equal(fmt.values()[8:], [-v for v in positive_grid])


@pytest.mark.parametrize(("ebits", "mbits"), [(3, 0), (2, 1), (1, 2), (4, 1), (2, 3), (5, 2), (1, 6)])
@pytest.mark.parametrize("bias", [-3, 0, 1, 4, 9])
def test_family_values_follow_the_formula(ebits, mbits, bias):
    fmt = fp4sim.get_format(f"E{ebits}M{mbits}", bias=bias)
    expected = [code_value(c, ebits, mbits, bias) for c in range(1 << fmt.nbits)]
    assert [fmt.exact_value(c) for c in range(1 << fmt.nbits)] == expected
    assert fmt.max_value == (2 - Fraction(1, 1 << mbits)) * Fraction(2) ** ((1 << ebits) - 1 - bias)


def test_family_default_bias_is_ieee_and_e2m1_equals_ocp():
    assert fp4sim.get_format("E2M1").bias == 1
    assert fp4sim.get_format("E3M0").bias == 3
    assert fp4sim.get_format("e1m2").bias == 0
    assert fp4sim.get_format("E2M1") == fp4sim.get_format("float4_e2m1fn")


def test_special_codes():
    e5m2 = fp4sim.get_format("float8_e5m2")
    assert (e5m2.inf_code, e5m2.nan_code, e5m2.max_code) == (0x7C, 0x7E, 0x7B)
    e4m3 = fp4sim.get_format("float8_e4m3fn")
    assert (e4m3.inf_code, e4m3.nan_code, e4m3.max_code) == (None, 0x7F, 0x7E)
    e8m0 = fp4sim.get_format("float8_e8m0fnu")
    assert (e8m0.nan_code, e8m0.max_code, e8m0.sign_mask, e8m0.has_zero) == (0xFF, 0xFE, 0, False)
    e2m1 = fp4sim.get_format("E2M1")
    assert (e2m1.nan_code, e2m1.inf_code, e2m1.max_code, e2m1.sign_mask) == (None, None, 7, 8)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown format 'fp5'") as err:
        fp4sim.get_format("fp5")
    for name in fp4sim.format_names():
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["E0M3", "E4M4", "E9M0"])
def test_family_names_outside_8_bits_are_rejected(name):
    with pytest.raises(ValueError, match="unknown format"):
        fp4sim.get_format(name)


def test_preset_bias_is_fixed():
    with pytest.raises(ValueError, match="fixed bias"):
        fp4sim.get_format("float8_e4m3fn", bias=3)
    assert fp4sim.get_format("float8_e4m3fn", bias=7).bias == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ebits": 2, "mbits": 1, "bias": 1, "overflow": "inf"}, "needs specials='ieee'"),
        ({"ebits": 2, "mbits": 1, "bias": 1, "overflow": "nan"}, "needs a NaN code"),
        ({"ebits": 5, "mbits": 3, "bias": 1}, "at most 8 bits"),
        ({"ebits": 2, "mbits": 1, "bias": 1, "specials": "weird"}, "specials must be one of"),
        ({"ebits": 3, "mbits": 0, "bias": 1, "specials": "ieee"}, "IEEE-style"),
        ({"ebits": 2, "mbits": 1, "bias": 1000}, "bias"),
    ],
)
def test_bad_formats_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Format(**kwargs)


def test_with_bias_and_equality():
    fmt = fp4sim.get_format("E2M1").with_bias(3)
    assert fmt == fp4sim.get_format("E2M1", bias=3)
    assert fmt != fp4sim.get_format("E2M1")
    assert fmt.name == "E2M1(bias=3)"
    assert fp4sim.get_format(fmt) is fmt
    with pytest.raises(TypeError):
        fp4sim.get_format(3)
