"""encode/decode as an array API: shapes, dtypes, torch, scales, shifts and bad input."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

import fp4sim


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 3, 4)])
def test_any_shape(shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    codes = fp4sim.encode(x, "E2M1")
    assert codes.shape == x.shape and codes.dtype == np.uint8
    np.testing.assert_array_equal(fp4sim.encode(x.ravel(), "E2M1").reshape(shape), codes)
    assert fp4sim.decode(codes, "E2M1").shape == x.shape


def test_non_contiguous_input(rng):
    x = rng.standard_normal((16, 16)).astype(np.float32)
    np.testing.assert_array_equal(fp4sim.encode(x.T, "E2M1"), fp4sim.encode(np.ascontiguousarray(x.T), "E2M1"))


def test_every_float_dtype_gives_the_same_codes(rng):
    x = rng.standard_normal(10_000).astype(ml_dtypes.bfloat16)  # exact in every wider type
    expected = fp4sim.encode(x, "float6_e3m2fn")
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(fp4sim.encode(x.astype(dtype), "float6_e3m2fn"), expected)
    y = x.astype(np.float16)
    np.testing.assert_array_equal(fp4sim.encode(y, "E2M1"), fp4sim.encode(y.astype(np.float32), "E2M1"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_torch_tensors_in_and_out(dtype, rng):
    t = torch.from_numpy(rng.standard_normal((4, 6)).astype(np.float32)).to(dtype)
    codes = fp4sim.encode(t, "E2M1")
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8
    np.testing.assert_array_equal(codes.numpy(), fp4sim.encode(t.float().numpy(), "E2M1"))
    values = fp4sim.decode(codes, "E2M1")
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float32


def test_torch_requires_grad_is_fine():
    t = torch.ones(3, requires_grad=True)
    assert fp4sim.encode(t, "E2M1").tolist() == [2, 2, 2]


def test_per_channel_scale_divides_along_the_axis(rng):
    x = rng.standard_normal((8, 5)).astype(np.float32)
    scale = np.array([0.5, 1.0, 3.0, 0.1, 7.0], dtype=np.float32)
    codes = fp4sim.encode(x, "E2M1", scale=scale, axis=1)
    np.testing.assert_array_equal(codes, fp4sim.encode(x / scale, "E2M1"))
    row_scale = np.linspace(0.5, 2, 8)
    np.testing.assert_array_equal(
        fp4sim.encode(x, "E2M1", scale=row_scale, axis=0),
        fp4sim.encode(x / row_scale.astype(np.float32)[:, None], "E2M1"),
    )
    decoded = fp4sim.decode(codes, "E2M1", scale=scale, axis=1)
    np.testing.assert_array_equal(decoded, fp4sim.decode(codes, "E2M1") * scale)


def test_scalar_scale_and_float64_working_precision():
    x = np.array([1.0, 2.5], dtype=np.float64)
    np.testing.assert_array_equal(fp4sim.encode(x, "E2M1", scale=0.5), fp4sim.encode(x / 0.5, "E2M1"))


@pytest.mark.parametrize(
    ("scale", "axis", "message"),
    [
        (0.0, -1, "finite and > 0"),
        (-1.0, -1, "finite and > 0"),
        (np.inf, -1, "finite and > 0"),
        (np.ones(3), -1, "has 3 entries but axis -1"),
        (np.ones(4), 2, "out of range"),
        (np.ones((2, 2)), -1, "scalar or 1-D"),
    ],
)
def test_bad_scale(scale, axis, message):
    with pytest.raises(ValueError, match=message):
        fp4sim.encode(np.ones((2, 4), np.float32), "E2M1", scale=scale, axis=axis)


def test_shift_broadcasts_and_is_checked():
    x = np.full((2, 4), 1.0, np.float32)
    codes = fp4sim.encode(x, "E2M1", shift=np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(codes[0], [2, 4, 6, 7])  # 1, 2, 4, then 8 saturates at 6
    np.testing.assert_array_equal(fp4sim.decode(codes, "E2M1", shift=[0, 1, 2, 3])[0], [1, 1, 1, 0.75])
    with pytest.raises(ValueError, match="does not broadcast"):
        fp4sim.encode(x, "E2M1", shift=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"shift must lie in \[-127, 127\]"):
        fp4sim.encode(x, "E2M1", shift=200)
    with pytest.raises(TypeError, match="shift must hold integers"):
        fp4sim.encode(x, "E2M1", shift=0.5)


def test_decode_refuses_shifts_float32_cannot_hold():
    with pytest.raises(ValueError, match="outside what float32 holds exactly"):
        fp4sim.decode(np.array([1], np.uint8), "float8_e5m2", shift=np.array([-120]))


def test_nan_raises_with_count_and_first_index():
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = x[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN value\(s\), first at index \(1, 2\).*nan='encode'"):
        fp4sim.encode(x, "E2M1")


@pytest.mark.parametrize(
    ("name", "nan_codes"),
    [("E2M1", [0x8, 0x0]), ("float8_e4m3fn", [0x7F, 0xFF]), ("float8_e5m2", [0x7E, 0xFE])],
)
def test_nan_encode_policy(name, nan_codes):
    x = np.array([np.nan, -np.nan], np.float32)
    np.testing.assert_array_equal(fp4sim.encode(x, name, nan="encode"), nan_codes)


def test_e8m0_rejects_zero_and_negatives():
    x = np.array([1.0, 0.0, -2.0], np.float32)
    with pytest.raises(ValueError, match=r"2 value\(s\) that float8_e8m0fnu cannot represent"):
        fp4sim.encode(x, "float8_e8m0fnu")
    np.testing.assert_array_equal(fp4sim.encode(x, "float8_e8m0fnu", nan="encode"), [127, 255, 255])


def test_infinities_follow_the_overflow_policy():
    x = np.array([np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(fp4sim.encode(x, "E2M1"), [0x7, 0xF])
    np.testing.assert_array_equal(fp4sim.encode(x, "float8_e4m3fn"), [0x7F, 0xFF])
    np.testing.assert_array_equal(fp4sim.encode(x, "float8_e5m2", rounding="toward_zero"), [0x7C, 0xFC])
    # toward zero, a finite overflow stays at the largest finite value
    np.testing.assert_array_equal(fp4sim.encode(np.array([1e6]), "float8_e5m2", rounding="toward_zero"), [0x7B])


@pytest.mark.parametrize("bad", [np.arange(4, dtype=np.int32), np.array([True]), np.array(["a"])])
def test_wrong_input_dtype_is_a_type_error(bad):
    with pytest.raises(TypeError, match="must be float16, bfloat16, float32 or float64"):
        fp4sim.encode(bad, "E2M1")


def test_decode_checks_codes():
    with pytest.raises(TypeError, match="must be uint8"):
        fp4sim.decode(np.array([1, 2], np.int64), "E2M1")
    with pytest.raises(ValueError, match=r"1 value\(s\) outside the 4-bit format.*first: 31 at index \(1,\)"):
        fp4sim.decode(np.array([1, 31, 3], np.uint8), "E2M1")


def test_decode_with_bad_codes_leaves_out_untouched():
    """Every bad code is counted (the parallel size too) and `out` keeps what it held."""
    codes = np.zeros(1 << 17, np.uint8)
    codes[[5, 70_000, -1]] = [16, 200, 255]
    out = np.full(codes.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"3 value\(s\) outside the 4-bit format.*first: 16 at index \(5,\)"):
        fp4sim.decode(codes, "E2M1", out=out)
    assert (out == 7.0).all()


def test_rounding_arguments_are_checked():
    x = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="rounding must be one of"):
        fp4sim.encode(x, "E2M1", rounding="up")
    with pytest.raises(ValueError, match="needs seed"):
        fp4sim.encode(x, "E2M1", rounding="stochastic")
    with pytest.raises(ValueError, match="nan must be"):
        fp4sim.encode(x, "E2M1", nan="zero")


def test_out_arrays(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    codes = np.empty((3, 4), np.uint8)
    assert fp4sim.encode(x, "E2M1", out=codes) is codes
    np.testing.assert_array_equal(codes, fp4sim.encode(x, "E2M1"))
    values = np.empty((3, 4), np.float32)
    assert fp4sim.decode(codes, "E2M1", out=values) is values
    np.testing.assert_array_equal(values, fp4sim.decode(codes, "E2M1"))
    with pytest.raises(ValueError, match="out must be a C-contiguous uint8 array of shape"):
        fp4sim.encode(x, "E2M1", out=np.empty((4, 3), np.uint8))
