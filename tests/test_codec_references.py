"""encode/decode bit-exact against ml_dtypes and torch casts where they define the format."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

import fp4sim
from fp4sim.codec import _kernels as codec_kernels

# Presets that ml_dtypes defines under the same name (its e8m0 is tested apart).
NAMES = ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "float8_e4m3fn", "float8_e5m2"]


def reference_codes(x: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(getattr(ml_dtypes, name)).view(np.uint8)


def assert_codes_equal(ours: np.ndarray, expected: np.ndarray, x: np.ndarray) -> None:
    bad = np.flatnonzero(ours != expected)
    if bad.size:
        i = bad[0]
        raise AssertionError(
            f"{bad.size} mismatches; first x={x.ravel()[i]!r} (bits {x.ravel()[i : i + 1].view(np.uint8)}) "
            f"ours=0x{ours.ravel()[i]:02X} expected=0x{expected.ravel()[i]:02X}"
        )


def every_pattern(dtype) -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_every_16_bit_pattern(name, dtype):
    """All 65536 float16 / bfloat16 patterns, NaNs included (nan='encode')."""
    x = every_pattern(dtype)
    assert_codes_equal(fp4sim.encode(x, name, nan="encode"), reference_codes(x, name), x)


def float32_boundaries(fmt: fp4sim.Format) -> np.ndarray:
    """Each value, each midpoint between neighbours, one float32 ulp either side, and the edges."""
    values = np.unique(np.abs(fmt.values()[np.isfinite(fmt.values())]))
    midpoints = (values[:-1] + values[1:]) / 2  # exact in float64
    ulp_past_max = float(fmt.max_value) * 2.0 ** -(fmt.mbits + 1)  # half an ulp of max
    points = np.concatenate(
        [values, midpoints, [float(fmt.max_value) + ulp_past_max, float(fmt.max_value) * 2, 1e30]]
    ).astype(np.float32)
    around = np.concatenate([points, np.nextafter(points, np.float32(np.inf)), np.nextafter(points, np.float32(0))])
    tiny = np.array([0.0, 1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, np.inf], dtype=np.float32)
    both_signs = np.concatenate([around, tiny])
    return np.concatenate([both_signs, -both_signs])


@pytest.mark.parametrize("name", NAMES)
def test_float32_boundaries(name):
    fmt = fp4sim.get_format(name)
    x = float32_boundaries(fmt)
    assert_codes_equal(fp4sim.encode(x, name, nan="encode"), reference_codes(x, name), x)


def random_float32(rng: np.random.Generator, n: int) -> np.ndarray:
    """Half random bit patterns (every exponent), half scaled normals (the format's range)."""
    bits = rng.integers(0, 1 << 32, size=n // 2, dtype=np.uint64).astype(np.uint32).view(np.float32)
    scaled = (rng.standard_normal(n - n // 2) * np.exp2(rng.uniform(-20, 20, n - n // 2))).astype(np.float32)
    return np.concatenate([bits, scaled])


@pytest.mark.parametrize("name", NAMES)
def test_a_million_random_float32(name, rng):
    x = random_float32(rng, 1_000_000)
    assert_codes_equal(fp4sim.encode(x, name, nan="encode"), reference_codes(x, name), x)


@pytest.mark.parametrize("name", NAMES)
def test_float64_inputs_that_float32_holds(name, rng):
    with np.errstate(invalid="ignore"):
        x = random_float32(rng, 200_000).astype(np.float64)
    assert_codes_equal(fp4sim.encode(x, name, nan="encode"), reference_codes(x, name), x)


@pytest.mark.parametrize("name", NAMES)
def test_float64_is_rounded_once(name):
    """Just off a midpoint, float64 input goes to the nearer neighbour. ml_dtypes casts
    float64 through float32 first, which lands on the midpoint and rounds it again."""
    fmt = fp4sim.get_format(name)
    values = np.unique(np.abs(fmt.values()[np.isfinite(fmt.values())]))
    mid = (values[:-1] + values[1:]) / 2
    above, below = mid * (1 + 2.0**-40), mid * (1 - 2.0**-40)
    up = fp4sim.decode(fp4sim.encode(np.concatenate([above, -above]), fmt), fmt)
    down = fp4sim.decode(fp4sim.encode(np.concatenate([below, -below]), fmt), fmt)
    np.testing.assert_array_equal(up, np.concatenate([values[1:], -values[1:]]))
    np.testing.assert_array_equal(down, np.concatenate([values[:-1], -values[:-1]]))


@pytest.mark.parametrize("name", NAMES)
def test_decode_every_code(name):
    fmt = fp4sim.get_format(name)
    codes = np.arange(1 << fmt.nbits, dtype=np.uint8)
    expected = codes.view(getattr(ml_dtypes, name)).astype(np.float32)
    np.testing.assert_array_equal(fp4sim.decode(codes, name), expected)


@pytest.mark.parametrize("name", NAMES)
def test_table_path_equals_generic_kernel(name, rng):
    """The float32 lookup table and the arithmetic kernel agree, shifts included."""
    fmt = fp4sim.get_format(name)
    x = random_float32(rng, 300_000)
    shifts = rng.integers(-3, 4, size=x.size).astype(np.int8)
    for mode in (codec_kernels.RNE, codec_kernels.RTZ):
        assert codec_kernels.table_applies(fmt, mode, -3, 3)
        table = codec_kernels.encode_table(fmt, mode, -3, 3)
        via_table = np.empty(x.size, np.uint8)
        codec_kernels.table_kernel(True, True)(x.view(np.int32), shifts, -3, table, via_table)
        generic = np.empty(x.size, np.uint8)
        codec_kernels.encode_kernel(np.float32, mode, True, True)(
            x, shifts, generic, 0, codec_kernels.encode_params(fmt)
        )
        via_float64 = np.empty(x.size, np.uint8)
        codec_kernels.encode_kernel(np.float64, mode, True, True)(
            x, shifts, via_float64, 0, codec_kernels.encode_params(fmt)
        )
        assert_codes_equal(via_table, generic, x)
        assert_codes_equal(via_float64, generic, x)


def test_e4m3fn_saturating_matches_torch(rng):
    fmt = fp4sim.get_format("float8_e4m3fn_satfinite")
    x = np.concatenate([random_float32(rng, 1_000_000), float32_boundaries(fmt)])
    expected = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    assert_codes_equal(fp4sim.encode(x, fmt, nan="encode"), expected, x)


def test_e4m3fn_flavours_differ_only_past_max(rng):
    x = random_float32(rng, 200_000)
    x = x[~np.isnan(x)]
    nan_flavour = fp4sim.encode(x, "float8_e4m3fn")
    sat_flavour = fp4sim.encode(x, "float8_e4m3fn_satfinite")
    past = np.abs(x) > 464
    assert np.array_equal(nan_flavour[~past], sat_flavour[~past])
    assert np.all(nan_flavour[past] & 0x7F == 0x7F) and np.all(sat_flavour[past] & 0x7F == 0x7E)


def test_e8m0_matches_ml_dtypes_on_positive_normal_float32(rng):
    """ml_dtypes agrees for positive normal float32; its float32-subnormal rounding is
    documented as different (docs/spec.md 1.6) and checked against the oracle instead."""
    e = rng.integers(1, 255, size=500_000)
    bits = (e.astype(np.uint32) << 23) | rng.integers(0, 1 << 23, size=e.size).astype(np.uint32)
    x = bits.view(np.float32)
    x[:3] = [1.5, 3.0, 2.0**127 * 1.5]  # ties up, and a tie that overflows to NaN
    assert_codes_equal(fp4sim.encode(x, "float8_e8m0fnu"), x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8), x)


def test_e8m0_below_the_smallest_scale_rounds_to_it():
    x = np.array([2.0**-127 * 1.4, 2.0**-127 * 1.5, 2.0**-128, 1e-45, 2.0**-127], dtype=np.float32)
    # 1.4 * 2**-127 is nearer 2**-127 (code 0); the 1.5 tie goes up to 2**-126 (code 1).
    np.testing.assert_array_equal(fp4sim.encode(x, "float8_e8m0fnu"), [0, 1, 0, 0, 0])
