"""MXFP4 / NVFP4 encoders and decoders against the fractions reference and ml_dtypes (docs/spec.md 7.1-7.4)."""

from __future__ import annotations

from fractions import Fraction

import block_oracle as ref
import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from oracle import code_value

from fp4sim.codec import decode
from fp4sim.codec.blockscaled import (
    MX_SCALE_RULES,
    MXFP4,
    NVFP4,
    BlockTensor,
    block_dequantize,
    block_quantize,
    get_block_format,
    nvfp4_fake_quantize,
    nvfp4_tensor_scale,
    pack_block,
    unpack_block,
)


def element_values(codes: np.ndarray) -> list[Fraction]:
    return [code_value(int(c), 2, 1, 1) for c in codes]


def e4m3_value(code: int) -> Fraction:
    return code_value(code, 4, 3, 7)


def spread_blocks(seed: int, rows: int, k: int, span: int = 40) -> np.ndarray:
    """Normal values with per-block magnitudes 2^[-span, span], exact zeros and a few zero blocks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)) * np.exp2(rng.integers(-span, span, (rows, k // 8 + 1))).repeat(8, 1)[:, :k]
    x[rng.random((rows, k)) < 0.05] = 0
    x[0, :16] = 0
    return x.astype(np.float32)


def check_mx_against_oracle(x: np.ndarray, rule: str = "floor") -> None:
    t = block_quantize(x, "mxfp4", scale_rule=rule)
    for r, row in enumerate(x):
        for b, start in enumerate(range(0, row.size, 32)):
            shared, elements = ref.mx_block([Fraction(float(v)) for v in row[start : start + 32]], rule)
            assert int(t.scales[r, b]) == shared + 127, (r, b)
            assert element_values(t.codes[r, start : start + 32]) == elements, (r, b)


def refuses_an_underflowing_tensor_scale(x: np.ndarray, tensor_scale: float | None, rule: str = "static_6") -> bool:
    """Whether x's own tensor scale underflows FP32 (spec 7.3: refused); if so, checks that it is."""
    amax = max((abs(Fraction(float(v))) for v in x.ravel()), default=Fraction(0))
    if tensor_scale is not None or amax == 0 or ref.nv_tensor_scale(amax, rule) != 0:
        return False
    with pytest.raises(ValueError, match="too small for an FP32 NVFP4 tensor scale"):
        block_quantize(x, "nvfp4", scale_rule=rule)
    return True


def check_nv_against_oracle(x: np.ndarray, tensor_scale: float | None = None) -> None:
    if refuses_an_underflowing_tensor_scale(x, tensor_scale):
        return
    t = block_quantize(x, "nvfp4", tensor_scale=tensor_scale)
    if tensor_scale is None:
        s_t = ref.nv_tensor_scale(max(abs(Fraction(float(v))) for v in x.ravel()))
        assert Fraction(float(t.tensor_scale)) == s_t
    else:
        s_t = Fraction(float(np.float32(tensor_scale)))
    for r, row in enumerate(x):
        for b, start in enumerate(range(0, row.size, 16)):
            scale, elements = ref.nv_block([Fraction(float(v)) for v in row[start : start + 16]], s_t)
            assert e4m3_value(int(t.scales[r, b])) == scale, (r, b)
            assert element_values(t.codes[r, start : start + 16]) == elements, (r, b)


@pytest.mark.parametrize("k", [32, 96, 50, 7])
def test_mxfp4_matches_fraction_reference(k):
    check_mx_against_oracle(spread_blocks(k, 6, k))


@pytest.mark.parametrize("k", [16, 64, 50, 7])
def test_nvfp4_matches_fraction_reference(k):
    check_nv_against_oracle(spread_blocks(k, 6, k, span=6))


@settings(max_examples=150, deadline=None)
@given(arrays(np.float32, (2, 40), elements=st.floats(-(2.0**100), 2.0**100, width=32, allow_subnormal=True)))
def test_mxfp4_property_matches_reference(x):
    check_mx_against_oracle(x)


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.float32, (2, 24), elements=st.floats(-(2.0**13), 2.0**13, width=32, allow_subnormal=True)),
    st.one_of(st.none(), st.floats(2.0**-20, 8.0, width=32)),
)
def test_nvfp4_property_matches_reference(x, tensor_scale):
    check_nv_against_oracle(x, tensor_scale)


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.float32, (2, 24), elements=st.floats(-(2.0**13), 2.0**13, width=32, allow_subnormal=True)),
    st.floats(2.0**-20, 8.0, width=32),
    st.sampled_from(["static_6", "4over6"]),
)
def test_nvfp4_fake_quantize_matches_reference(x, tensor_scale, rule):
    values, scales = nvfp4_fake_quantize(x, tensor_scale, rule)
    s_t = Fraction(float(np.float32(tensor_scale)))
    pick = ref.nv_four_over_six if rule == "4over6" else ref.nv_block
    for r, row in enumerate(x):
        for b, start in enumerate(range(0, row.size, 16)):
            scale, elements = pick([Fraction(float(v)) for v in row[start : start + 16]], s_t)
            assert Fraction(float(scales[r, b])) == scale, (r, b)
            assert [Fraction(float(v)) for v in values[r, start : start + 16]] == [e * scale for e in elements]


@pytest.mark.parametrize("rule", ["static_6", "4over6"])
@pytest.mark.parametrize("k", [7, 50, 2048])
def test_nvfp4_fake_quantize_equals_quantize_then_dequantize_bit_for_bit(k, rule):
    """Every bit, the signs of zeros included, on the serial and the threaded kernel (64 x 2048 elements); under
    4over6 with rows of exact ties (one value at the tensor's amax), which the kernel hands to the codec."""
    x = spread_blocks(k, 64, k, span=12)
    x[1, : min(k, 5)] = -0.0
    x[2:4] = 0
    x[2:4, 0] = np.abs(x).max()
    for tensor_scale in (float(nvfp4_tensor_scale(np.abs(x).max(), rule)), 2.0**-140, 0.37):
        values, scales = nvfp4_fake_quantize(x, tensor_scale, rule)
        t = block_quantize(x, "nvfp4", tensor_scale=tensor_scale, scale_rule=rule)
        expected = block_dequantize(t, include_tensor_scale=False)
        assert np.array_equal(values.view(np.uint32), expected.view(np.uint32))
        assert np.array_equal(scales.view(np.uint32), decode(t.scales, NVFP4.scale).astype(np.float32).view(np.uint32))


@pytest.mark.parametrize(
    "x, tensor_scale, error",
    [
        (np.array([[1.0, np.inf]], np.float32), 1.0, ValueError),
        (np.array([[np.nan]], np.float32), 1.0, ValueError),
        (np.ones((2, 3), np.float32), 0.0, ValueError),
        (np.ones((2, 3), np.float32), float("nan"), ValueError),
        (np.ones((2, 3), np.float64), 1.0, TypeError),
        (np.ones(3, np.float32), 1.0, TypeError),
    ],
)
def test_nvfp4_fake_quantize_rejects_bad_input(x, tensor_scale, error):
    with pytest.raises(error):
        nvfp4_fake_quantize(x, tensor_scale)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, (3, 64), elements=st.floats(-(2.0**66), 2.0**66, width=32)))
def test_mxfp4_requantizing_is_identity(x):
    once = block_dequantize(block_quantize(x, "mxfp4"))
    twice = block_dequantize(block_quantize(once, "mxfp4"))
    np.testing.assert_array_equal(once, twice)


def test_element_casts_match_ml_dtypes():
    x = spread_blocks(1, 8, 256)
    mx = block_quantize(x, "mxfp4")
    exponent = (mx.scales.astype(np.int32) - 127).repeat(32, axis=1)
    scaled = np.ldexp(x, -exponent)  # exact: a power-of-two scale
    np.testing.assert_array_equal(mx.codes, scaled.astype(ml_dtypes.float4_e2m1fn).view(np.uint8))

    nv = block_quantize(x, "nvfp4")
    s_t = np.float64(nv.tensor_scale)
    amax = np.abs(x.reshape(8, -1, 16)).max(-1).astype(np.float64)
    scale_codes = (amax / (6 * s_t)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    np.testing.assert_array_equal(nv.scales, scale_codes)  # the data stays below 448: no saturation here
    divisor = (nv.scales.view(ml_dtypes.float8_e4m3fn).astype(np.float64) * s_t).repeat(16, axis=1)
    elements = np.where(divisor > 0, x / np.where(divisor > 0, divisor, 1), 0)
    np.testing.assert_array_equal(nv.codes, elements.astype(ml_dtypes.float4_e2m1fn).view(np.uint8))


def test_decode_matches_reference():
    x = spread_blocks(2, 4, 64, span=10)
    mx = block_quantize(x, "mxfp4")
    expected = [
        float(code_value(int(c), 2, 1, 1) * Fraction(2) ** (int(mx.scales[r, j // 32]) - 127))
        for r in range(4)
        for j, c in enumerate(mx.codes[r])
    ]
    np.testing.assert_array_equal(block_dequantize(mx).ravel(), np.array(expected, np.float32))
    nv = block_quantize(x, "nvfp4")
    s_t = Fraction(float(nv.tensor_scale))
    expected = [
        ref.round_float(code_value(int(c), 2, 1, 1) * e4m3_value(int(nv.scales[r, j // 16])) * s_t, "fp32")
        for r in range(4)
        for j, c in enumerate(nv.codes[r])
    ]
    np.testing.assert_array_equal(block_dequantize(nv).ravel(), np.array(expected, np.float32))


# ---- scale edge cases ----------------------------------------------------------------------------


def test_all_zero_block():
    x = np.zeros((1, 32), np.float32)
    x[0, 16:] = [3.0, -1.5] * 8  # the second NVFP4 block is not zero
    mx = block_quantize(x[:, :16].copy(), "mxfp4")
    assert int(mx.scales[0, 0]) == 0  # 2^-127, E8M0's smallest (OCP leaves it open; microxcaling and torchao agree)
    assert not mx.codes.any()
    nv = block_quantize(x, "nvfp4")
    assert int(nv.scales[0, 0]) == 0 and not nv.codes[0, :16].any()
    assert not block_dequantize(nv)[0, :16].any()
    zero = block_quantize(np.zeros((2, 16), np.float32), "nvfp4")
    assert zero.tensor_scale == 1 and not zero.scales.any() and not block_dequantize(zero).any()


@pytest.mark.parametrize("power", [-100, -1, 0, 3, 20, 120])
def test_mx_block_max_just_below_a_power_of_two(power):
    below = np.nextafter(np.float32(2.0**power), np.float32(0))  # e.g. 7.9999995 for 2^3
    mx = block_quantize(np.array([[below, below / 3]], np.float32), "mxfp4")
    assert int(mx.scales[0, 0]) - 127 == power - 3  # floor(log2) = power - 1, minus emax_elem = 2
    # The element saturates to 6; microxcaling's float32 log2 rounds up to `power` and gives 4 * 2^(E+1).
    assert block_dequantize(mx)[0, 0] == np.float32(6 * 2.0 ** (power - 3))
    at_power = block_quantize(np.array([[2.0**power]], np.float32), "mxfp4")
    assert int(at_power.scales[0, 0]) - 127 == power - 2


def test_mx_elements_saturate():
    x = np.array([[7.0, 6.9, -7.9, 5.0, 0.2]], np.float32)  # amax in [4, 8): E = 0, so 7.x saturates to 6
    np.testing.assert_array_equal(block_dequantize(block_quantize(x, "mxfp4")), [[6, 6, -6, 4, 0]])


def test_nvfp4_scale_saturates_under_a_static_tensor_scale():
    x = np.array([[1000.0, -3.0] + [0.0] * 14], np.float32)
    nv = block_quantize(x, "nvfp4", tensor_scale=1.0)  # amax / 6 = 166.7 -> E4M3 160
    assert e4m3_value(int(nv.scales[0, 0])) == 160
    big = block_quantize(x * 100, "nvfp4", tensor_scale=1.0)  # amax / 6 > 464: saturates to 448, not NaN
    assert e4m3_value(int(big.scales[0, 0])) == 448
    assert block_dequantize(big)[0, 0] == 6 * 448  # the element saturates too
    check_nv_against_oracle(x * 100, 1.0)


def test_nvfp4_tensor_scale_rounding_can_saturate_the_block_scale():
    # amax / 2688 rounds down in FP32 for this amax, so amax / (6 s_t) lands just above 448.
    for amax in np.float32(2688) * (1 + np.arange(1, 200, dtype=np.float32) * np.float32(2**-23)):
        s_t = nvfp4_tensor_scale(amax)
        if Fraction(float(amax)) / (6 * Fraction(float(s_t))) > 448:
            break
    else:
        pytest.fail("no amax found whose tensor scale rounds down")
    x = np.array([[amax] + [1.0] * 15], np.float32)
    nv = block_quantize(x, "nvfp4")
    assert e4m3_value(int(nv.scales[0, 0])) == 448 and int(nv.codes[0, 0]) == 7  # 6.0
    check_nv_against_oracle(x)


def test_nan_scale_decodes_to_nan():
    t = BlockTensor(MXFP4, np.full((1, 32), 2, np.uint8), np.array([[0xFF]], np.uint8), np.float32(1))
    assert np.isnan(block_dequantize(t)).all()


# ---- API ------------------------------------------------------------------------------------------


def test_bits_per_element():
    assert MXFP4.bits_per_element == 4.25 and NVFP4.bits_per_element == 4.5


def test_half_precision_inputs_and_torch_tensors():
    x = spread_blocks(3, 2, 64, span=5)
    expected = block_quantize(x.astype(ml_dtypes.bfloat16).astype(np.float32), "nvfp4")
    got = block_quantize(torch.from_numpy(x).bfloat16(), "nvfp4")
    np.testing.assert_array_equal(got.codes, expected.codes)
    np.testing.assert_array_equal(got.scales, expected.scales)


def test_pack_block_uses_torch_layout():
    x = spread_blocks(4, 3, 64, span=5)
    for name, scale_dtype in (("mxfp4", torch.float8_e8m0fnu), ("nvfp4", torch.float8_e4m3fn)):
        t = block_quantize(x, name)
        packed, scales = pack_block(t)
        assert packed.dtype == torch.float4_e2m1fn_x2 and scales.dtype == scale_dtype
        raw = packed.view(torch.uint8).numpy()
        np.testing.assert_array_equal(raw & 0xF, t.codes[:, 0::2])  # element 0 in the low nibble
        np.testing.assert_array_equal(scales.float().numpy(), t.fmt.scale.values()[t.scales])
        back = unpack_block(packed, scales, name, t.tensor_scale)
        np.testing.assert_array_equal(block_dequantize(back), block_dequantize(t))


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: block_quantize(np.ones(4, np.float64), "mxfp4"), TypeError),
        (lambda: block_quantize(np.array([1.0, np.inf], np.float32), "mxfp4"), ValueError),
        (lambda: block_quantize(np.array([np.nan], np.float32), "nvfp4"), ValueError),
        (lambda: block_quantize(np.ones(4, np.float32), "mxfp8"), ValueError),
        (lambda: block_quantize(np.ones(4, np.float32), "mxfp4", tensor_scale=2.0), ValueError),
        (lambda: block_quantize(np.ones(4, np.float32), "nvfp4", tensor_scale=0.0), ValueError),
        (lambda: BlockTensor(NVFP4, np.zeros((1, 16), np.uint8), np.array([[0x80]], np.uint8), 1.0), ValueError),
        (lambda: BlockTensor(NVFP4, np.zeros((1, 16), np.uint8), np.zeros((1, 2), np.uint8), 1.0), ValueError),
        (lambda: BlockTensor(MXFP4, np.full((1, 4), 16, np.uint8), np.zeros((1, 1), np.uint8), 1.0), ValueError),
    ],
)
def test_bad_input_is_rejected(call, error):
    with pytest.raises(error):
        call()


def test_get_block_format():
    assert get_block_format("nvfp4") is NVFP4 and get_block_format(MXFP4) is MXFP4


# ---- the other MX scale rules (spec 7.2): torchao's CEIL, EVEN and RCEIL beside OCP's floor


@pytest.mark.parametrize("rule", MX_SCALE_RULES)
@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (2, 40), elements=st.floats(-(2.0**120), 2.0**120, width=32, allow_subnormal=True)))
def test_mx_scale_rules_match_reference(rule, x):
    check_mx_against_oracle(x, rule)


# block maxima at every rule's edges: powers of two, significands 1.75 and just below 2, 6 and just above,
# 6 * 2^k, subnormals and the clamp at both ends of E8M0
EDGES = [2.0**-149, 2.0**-127, 1.0, 1.75, 1.7499999, 3.5, 6.0, 6.0000005, 5.9999995, 7.9999995, 12.0, 2.0**127, 3.4e38]


@pytest.mark.parametrize("rule", MX_SCALE_RULES)
@pytest.mark.parametrize("peak", EDGES)
def test_mx_scale_rules_at_their_edges(rule, peak):
    x = np.zeros((2, 32), np.float32)
    x[0, 0], x[0, 1:] = peak, np.float32(peak) / np.arange(2, 33, dtype=np.float32)
    x[1, 5] = -np.float32(peak)
    check_mx_against_oracle(x, rule)


def test_mx_scale_rules_differ_as_written():
    """One block each where the rules part ways (spec 7.2's examples)."""
    peaks = np.array([7.9999995, 3.5, 6.0, 6.0000005, 4.0], np.float32)
    x = np.zeros((peaks.size, 32), np.float32)
    x[:, 0] = peaks
    exponents = {
        rule: block_quantize(x, "mxfp4", scale_rule=rule).scales[:, 0].astype(int) - 127 for rule in MX_SCALE_RULES
    }
    assert exponents["floor"].tolist() == [0, -1, 0, 0, 0]
    assert exponents["ceil"].tolist() == [1, 0, 1, 1, 0]
    assert exponents["even"].tolist() == [1, 0, 0, 0, 0]
    assert exponents["rceil"].tolist() == [1, 0, 0, 1, 0]


def test_scale_rules_are_refused_where_they_do_not_apply():
    x = np.ones((1, 32), np.float32)
    with pytest.raises(ValueError, match="'nearest' is unknown; mxfp4's rules: floor, ceil, even, rceil"):
        block_quantize(x, "mxfp4", scale_rule="nearest")
    with pytest.raises(ValueError, match="'rceil' is an MXFP4 rule; nvfp4's rules: static_6, 4over6"):
        block_quantize(x, "nvfp4", scale_rule="rceil")
    with pytest.raises(ValueError, match="'4over6' is an NVFP4 rule; mxfp4's rules"):
        block_quantize(x, "mxfp4", scale_rule="4over6")
    with pytest.raises(ValueError, match="block_2d takes NVFP4 and a matrix"):
        block_quantize(x, "mxfp4", block_2d=True)
    for shape in ((32,), (2, 1, 32)):
        with pytest.raises(ValueError, match="block_2d takes NVFP4 and a matrix"):
            block_quantize(np.ones(shape, np.float32), "nvfp4", block_2d=True)
    with pytest.raises(ValueError, match="an MXFP4 rule"):
        nvfp4_tensor_scale(1.0, "floor")


# ---- NVFP4's other scale rules (spec 7.3): Four Over Six, 16 x 16 tiles


def check_nv_rule_against_oracle(x: np.ndarray, rule: str, tensor_scale: float | None = None) -> BlockTensor | None:
    """block_quantize(x, "nvfp4", scale_rule=rule) block by block against the reference; returns the tensor (None
    where x's own tensor scale underflows, and is refused)."""
    if refuses_an_underflowing_tensor_scale(x, tensor_scale, rule):
        return None
    t = block_quantize(x, "nvfp4", tensor_scale=tensor_scale, scale_rule=rule)
    if tensor_scale is None:
        s_t = ref.nv_tensor_scale(max(abs(Fraction(float(v))) for v in x.ravel()), rule)
        assert Fraction(float(t.tensor_scale)) == s_t
    else:
        s_t = Fraction(float(np.float32(tensor_scale)))
    pick = ref.nv_four_over_six if rule == "4over6" else ref.nv_block
    for r, row in enumerate(x):
        for b, start in enumerate(range(0, row.size, 16)):
            scale, elements = pick([Fraction(float(v)) for v in row[start : start + 16]], s_t)
            assert e4m3_value(int(t.scales[r, b])) == scale, (r, b)
            assert element_values(t.codes[r, start : start + 16]) == elements, (r, b)
    return t


def check_tiles_against_oracle(x: np.ndarray, rule: str) -> BlockTensor:
    t = block_quantize(x, "nvfp4", scale_rule=rule, block_2d=True)
    s_t = ref.nv_tensor_scale(max((abs(Fraction(float(v))) for v in x.ravel()), default=Fraction(0)), rule)
    assert Fraction(float(t.tensor_scale)) == s_t
    blocks = t.scales.shape[1]
    expected = ref.nv_tiles([[Fraction(float(v)) for v in row] for row in x], s_t, rule)
    for r, row in enumerate(expected):
        assert [e4m3_value(int(c)) for c in t.scales[r]] == row[:blocks], r
        assert element_values(t.codes[r]) == row[blocks:], r
    return t


def four_over_six_candidates(t: BlockTensor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ml_dtypes' E4M3 casts of amax / (4 s_t) and amax / (6 s_t) per block (float64 quotients, spec 7.3)."""
    blocks = np.abs(np.pad(x, ((0, 0), (0, -x.shape[1] % 16)))).reshape(x.shape[0], -1, 16).max(-1)
    quotient = blocks.astype(np.float64) / float(t.tensor_scale)
    return tuple((quotient / target).astype(ml_dtypes.float8_e4m3fn).view(np.uint8) for target in (4, 6))


@pytest.mark.parametrize("k", [16, 96, 50, 7])
def test_four_over_six_matches_fraction_reference(k):
    x = spread_blocks(k + 1, 8, k)
    t = check_nv_rule_against_oracle(x, "4over6")
    four, six = four_over_six_candidates(t, x)
    assert np.all((t.scales == four) | (t.scales == six))  # every scale is one of the two E4M3 candidates


def test_four_over_six_picks_both_candidates():
    """On 256 blocks of normal values each candidate wins somewhere: the choice is made, not fixed."""
    x = np.random.default_rng(11).standard_normal((16, 256)).astype(np.float32)
    t = block_quantize(x, "nvfp4", scale_rule="4over6")
    four, six = four_over_six_candidates(t, x)
    differ = four != six
    assert 20 < (t.scales == four)[differ].sum() < differ.sum() - 20


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.float32, (3, 32), elements=st.floats(-(2.0**60), 2.0**60, width=32, allow_subnormal=True)),
    st.sampled_from([None, 2.0**-140, 0.37, 1.0e6]),
)
def test_four_over_six_property_matches_reference(x, tensor_scale):
    check_nv_rule_against_oracle(x, "4over6", tensor_scale)


def test_four_over_six_tensor_scale_maps_amax_to_1536():
    """s_t = fp32(amax / 1536): the largest block's 4 candidate is E4M3 384, below 448, so it never saturates."""
    x = np.zeros((1, 16), np.float32)
    x[0, 0] = np.float32(3.3)
    t = block_quantize(x, "nvfp4", scale_rule="4over6")
    assert Fraction(float(t.tensor_scale)) == ref.nv_tensor_scale(Fraction(float(x[0, 0])), "4over6")
    assert nvfp4_tensor_scale(3.3, "4over6") == t.tensor_scale != nvfp4_tensor_scale(3.3)
    four, six = four_over_six_candidates(t, x)
    assert (e4m3_value(int(four[0, 0])), e4m3_value(int(six[0, 0]))) in {(384, 256), (384, 240), (384, 272)}


def test_four_over_six_tie_keeps_six():
    """A block whose only nonzero value is the tensor's amax: both candidates are exact (6 * 256 s_t and
    4 * 384 s_t), errors 0 and 0: the tie keeps the 6 candidate. Power-of-two maxima give the same tie."""
    for peak in (1.0, 2.0**-20, 3.0, 1536.0, 5.5):
        x = np.zeros((1, 16), np.float32)
        x[0, 3] = -peak
        t = check_nv_rule_against_oracle(x, "4over6")
        assert e4m3_value(int(t.scales[0, 0])) == 256, peak
        assert element_values(t.codes[0])[3] == -6


def test_four_over_six_ties_with_nonzero_error_keep_six():
    """Blocks of two values found (by the reference) to give both candidates the same nonzero squared error."""
    s_t = Fraction(1)
    grid = [Fraction(n, 8) for n in range(1, 49)]
    ties = []
    for a in grid:
        for b in grid:
            xs = [Fraction(24), a, b] + [Fraction(0)] * 13
            four, six = ref.nv_block(xs, s_t, 4), ref.nv_block(xs, s_t, 6)
            e4, e6 = ref.squared_error(xs, *four, s_t), ref.squared_error(xs, *six, s_t)
            if e4 == e6 != 0 and four[0] != six[0]:
                ties.append((a, b, six[0]))
    assert ties  # the grid has some
    x = np.array([[24.0, float(a), float(b)] + [0.0] * 13 for a, b, _ in ties], np.float32)
    t = block_quantize(x, "nvfp4", tensor_scale=1.0, scale_rule="4over6")
    assert [e4m3_value(int(c)) for c in t.scales[:, 0]] == [s for _, _, s in ties]


def test_four_over_six_edge_blocks():
    """All-zero blocks, subnormal scales (a static tensor scale far above the block), saturating scales (far below)."""
    x = spread_blocks(3, 4, 64)
    x[1, 16:32] = 0
    x[2] *= np.float32(2.0**-30)
    t = check_nv_rule_against_oracle(x, "4over6", tensor_scale=2.0**-20)
    assert t.scales[1, 1] == 0 and not t.codes[1, 16:32].any()
    assert (t.scales[2] < 0x08).any()  # E4M3 subnormal scales (exponent field 0)
    assert (t.scales == 0x7E).any()  # 448: saturated
    assert block_quantize(np.zeros((2, 16), np.float32), "nvfp4", scale_rule="4over6").scales.tolist() == [[0], [0]]


@pytest.mark.parametrize("rule", ["static_6", "4over6"])
@pytest.mark.parametrize("shape", [(16, 16), (37, 70), (1, 5), (17, 33), (48, 32)])
def test_tiles_match_fraction_reference(rule, shape):
    x = spread_blocks(sum(shape), *shape, span=6)
    t = check_tiles_against_oracle(x, rule)
    n = t.scales.shape[0]
    for top in range(0, n, 16):  # one scale per 16 x 16 tile, in each of its rows
        assert (t.scales[top : top + 16] == t.scales[top]).all()


def test_tiles_are_shared_by_the_transpose():
    """W and W^T quantized in 16 x 16 tiles give the same codes, transposed (one scale per tile either way)."""
    x = spread_blocks(5, 40, 56, span=8)
    for rule in ("static_6", "4over6"):
        t = block_quantize(x, "nvfp4", scale_rule=rule, block_2d=True)
        u = block_quantize(np.ascontiguousarray(x.T), "nvfp4", scale_rule=rule, block_2d=True)
        assert np.array_equal(t.codes, u.codes.T)
        assert np.array_equal(t.scales[::16, :], u.scales[::16, :].T)


def test_tiles_give_a_zero_row_block_its_tile_scale():
    x = np.zeros((16, 16), np.float32)
    x[5, 7] = 3.0
    t = block_quantize(x, "nvfp4", block_2d=True)
    assert (t.scales == t.scales[5, 0]).all() and t.scales[0, 0] != 0
    assert np.array_equal(block_dequantize(t)[5], block_dequantize(block_quantize(x, "nvfp4"))[5])


def test_default_rules_are_the_formats_own():
    x = spread_blocks(9, 4, 64)
    for fmt, rule in (("mxfp4", "floor"), ("nvfp4", "static_6")):
        a, b = block_quantize(x, fmt), block_quantize(x, fmt, scale_rule=rule)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.scales, b.scales)
