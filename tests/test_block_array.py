"""The block-scaled array's golden twin (fp4sim.hw.fp4_block_array, docs/spec.md 8) against block_gemm and the
fractions reference: every accumulator mode, both formats, ragged K, extreme and NaN scales, timing, reset."""

from __future__ import annotations

import zlib
from fractions import Fraction

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given
from oracle import code_value, floor_log2, round_float
from test_block_gemm import expected, operand

from fp4sim.codec.blockscaled import BlockTensor, block_quantize, get_block_format
from fp4sim.gemm.block import block_gemm
from fp4sim.hw.fp4_block_array import (
    FP32_NAN,
    block_array_gemm,
    fp4_block_array,
    idle_block_inputs,
    schedule_block_gemm,
)
from fp4sim.hw.fp4_block_fused_add import fp4_block_fused_add
from fp4sim.hw.fp4_block_term import decode_scale, fp4_block_term
from fp4sim.hw.fp4_pkg import BlockConfig

# (block_gemm's accum, N, F = G / 16); exact ignores N and F
MODES = [
    ("exact", 35, 4),
    ("aligned_truncate:35", 35, 4),
    ("aligned_truncate:13:16", 13, 1),
    ("aligned_truncate:25:48", 25, 3),
]
SHAPES = [(1, 1), (3, 2), (4, 4)]


def config_for(name: str, accum: str, frac_bits: int, fused: int) -> BlockConfig:
    kind = accum.split(":")[0]
    return BlockConfig(name, kind, frac_bits, fused)


def quantized(name: str, x: np.ndarray) -> BlockTensor:
    return block_quantize(x, name, tensor_scale=1.0) if name == "nvfp4" else block_quantize(x, name)


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("accum", "frac_bits", "fused"), MODES)
@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_twin_matches_block_gemm(name, accum, frac_bits, fused, shape):
    rng = np.random.default_rng(zlib.crc32(f"{name}{accum}{shape}".encode()))
    span = 120 if name == "mxfp4" else 6  # MX scales 2^-240..2^240 apart: the exact sum spans far past 64 bits
    for k in (1, 15, 17, 40, 100):
        m, n = (int(v) for v in rng.integers(1, 2 * max(shape) + 2, 2))
        a = quantized(name, operand(int(rng.integers(1 << 30)), m, k, span))
        w = quantized(name, operand(int(rng.integers(1 << 30)), n, k, span))
        got = block_array_gemm(a, w, config_for(name, accum, frac_bits, fused), *shape)
        np.testing.assert_array_equal(bits(got), bits(block_gemm(a, w, accum=accum)), err_msg=f"K = {k}")


EXTREME_SCALES = {
    "mxfp4": [0, 1, 126, 127, 128, 253, 254],  # 2^-127, 2^-126, 1/2, 1, 2, 2^126, 2^127
    "nvfp4": [0, 1, 3, 7, 8, 0x38, 0x7D, 0x7E],  # zero, subnormals 2^-9..7 * 2^-9, 2^-6, 1, 416, 448
}


@pytest.mark.parametrize(("accum", "frac_bits", "fused"), MODES)
@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
def test_twin_matches_fraction_reference_at_extreme_scales(name, accum, frac_bits, fused):
    fmt = get_block_format(name)
    rng = np.random.default_rng(7)
    k = 3 * fmt.block_size + 5
    blocks = fmt.blocks(k)

    def tensor(rows: int) -> BlockTensor:
        codes = rng.integers(0, 16, (rows, k), dtype=np.uint8)
        scales = rng.choice(EXTREME_SCALES[name], (rows, blocks)).astype(np.uint8)
        return BlockTensor(fmt, codes, scales, np.float32(1))

    a, w = tensor(5), tensor(4)
    got = block_array_gemm(a, w, config_for(name, accum, frac_bits, fused), 2, 3)
    want = expected(a, w, accum, frac_bits, 16 * fused)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_mx_nan_scale_makes_its_row_and_column_nan():
    fmt = get_block_format("mxfp4")
    rng = np.random.default_rng(3)
    a = BlockTensor(fmt, rng.integers(0, 16, (3, 70), dtype=np.uint8), np.full((3, 3), 127, np.uint8), np.float32(1))
    w = BlockTensor(fmt, rng.integers(0, 16, (2, 70), dtype=np.uint8), np.full((2, 3), 127, np.uint8), np.float32(1))
    a.scales[1, 2] = 0xFF  # only the last (short) block of row 1 of a
    w.scales[0, 0] = 0xFF
    for accum in ("exact", "aligned_truncate:35"):
        got = bits(block_array_gemm(a, w, config_for("mxfp4", accum, 35, 4), 2, 2))
        nan = np.zeros((3, 2), bool)
        nan[1, :], nan[:, 0] = True, True
        assert (got[nan] == FP32_NAN).all()
        assert not np.isnan(got.view(np.float32)[~nan]).any()
        assert np.isnan(block_gemm(a, w, accum=accum)[nan]).all()


def test_scale_decode_gives_every_code_its_value():
    """All 256 codes of both scale formats: value = significand * 2^(shift + SCALE_LSB), NaN where spec 8.2 says."""
    for name, lsb in (("mxfp4", -127), ("nvfp4", -9)):
        for code in range(256):
            parts = decode_scale(code, name == "nvfp4")
            if name == "mxfp4":
                is_nan, value = code == 0xFF, Fraction(2) ** (code - 127)
            else:
                is_nan, value = code >= 0x7F, code_value(code & 0x7F, 4, 3, 7)
            assert parts.nan == is_nan, (name, code)
            if not is_nan:
                assert parts.significand * Fraction(2) ** (parts.shift + lsb) == value, (name, code)
                lowest = -127 if name == "mxfp4" else -6
                assert parts.exponent == (-126 if value == 0 else max(floor_log2(value), lowest)), (name, code)


def test_nvfp4_sign_bit_scale_is_nan():
    stream = idle_block_inputs(8, 1, 1)
    stream.rst[0] = 1
    stream.in_valid[1] = stream.in_last[1] = 1
    stream.a_in[1, 0, :] = 2  # 1.0
    stream.w_in[1, 0, :] = 2
    stream.a_scale[1, 0], stream.w_scale[1, 0] = 0xB8, 0x38  # -1 (sign bit set) and 1
    out = fp4_block_array(stream, BlockConfig("nvfp4"))
    assert out.bits.tolist() == [FP32_NAN]
    stream.a_scale[1, 0] = 0x38
    assert fp4_block_array(stream, BlockConfig("nvfp4")).bits.view(np.float32).tolist() == [16.0]


@pytest.mark.parametrize("accum", ["exact", "aligned_truncate:35"])
def test_pulse_timing_and_one_result_per_column_per_edge(accum):
    rows, cols = 3, 4
    rng = np.random.default_rng(5)
    a = quantized("nvfp4", rng.standard_normal((7, 33)).astype(np.float32))  # 3 groups per tile: at the limit R
    w = quantized("nvfp4", rng.standard_normal((6, 33)).astype(np.float32))
    stream, tiles = schedule_block_gemm(a, w, rows, cols)
    out = fp4_block_array(stream, config_for("nvfp4", accum, 35, 4))
    assert out.cycle.size == len(tiles) * rows * cols
    pulses = sorted(zip(out.col.tolist(), out.cycle.tolist(), out.row.tolist(), strict=True))
    want = sorted((c, tile.last_cycle + r + c + 2, r) for tile in tiles for r in range(rows) for c in range(cols))
    assert pulses == want
    assert len({(c, t) for c, t, _ in pulses}) == len(pulses)


def test_short_tiles_get_bubbles_and_a_short_spacing_is_refused():
    a = quantized("mxfp4", np.ones((4, 16), np.float32))
    stream, tiles = schedule_block_gemm(a, a, 4, 1)  # K = 1 group, R = 4: three bubbles before every tile
    assert [t.last_cycle for t in tiles] == [3, 7, 11, 15]
    stream.in_last[:], stream.in_valid[:] = 0, 0
    stream.in_valid[[0, 3]] = stream.in_last[[0, 3]] = 1
    with pytest.raises(ValueError, match="less than ROWS = 4 apart"):
        fp4_block_array(stream, BlockConfig("mxfp4"))


@pytest.mark.parametrize("accum", ["exact", "aligned_truncate:13:16"])
def test_reset_mid_tile_drops_it_and_the_next_gemm_is_clean(accum):
    rng = np.random.default_rng(9)
    a1, w1 = (quantized("mxfp4", rng.standard_normal((2, 80)).astype(np.float32)) for _ in range(2))
    a2, w2 = (quantized("mxfp4", rng.standard_normal((2, 50)).astype(np.float32)) for _ in range(2))
    first, _ = schedule_block_gemm(a1, w1, 2, 2)
    second, tiles = schedule_block_gemm(a2, w2, 2, 2)
    cut = type(first)(*(field[:3] for field in first))  # 3 of the tile's 5 groups, then a reset edge
    reset = idle_block_inputs(1, 2, 2)
    reset.rst[0] = 1
    stream = type(first)(*(np.concatenate(parts) for parts in zip(reset, cut, reset, second, strict=True)))
    out = fp4_block_array(stream, config_for("mxfp4", accum, int(accum.split(":")[1]) if ":" in accum else 35, 1))
    assert out.cycle.size == 4 and out.cycle.min() == 5 + tiles[0].last_cycle + 2
    got = np.zeros((2, 2), np.uint32)
    got[out.row, out.col] = out.bits
    np.testing.assert_array_equal(got, bits(block_gemm(a2, w2, accum=accum)))


def test_accumulator_widths_hold_the_largest_sum():
    """ACC_BITS (spec 8.4): the largest |sum| of K_MAX / 16 terms in units of 2^TERM_LSB, plus a sign bit."""
    for name, smax, lsb in (("mxfp4", Fraction(2) ** 127, -256), ("nvfp4", Fraction(448), -20)):
        config = BlockConfig(name)
        largest = 4096 * 16 * 36 * smax * smax / Fraction(2) ** lsb  # 4096 groups of 16 products 6 * 6
        assert largest.denominator == 1
        assert config.acc_bits == int(largest).bit_length() + 1
    assert (BlockConfig("mxfp4").acc_bits, BlockConfig("nvfp4").acc_bits) == (533, 60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_format": "int4"}, "block_format"),
        ({"block_format": "mxfp4", "acc_mode": "kahan"}, "acc_mode"),
        ({"block_format": "mxfp4", "k_max": 1 << 17}, "k_max"),
        ({"block_format": "nvfp4", "acc_mode": "aligned_truncate", "frac_bits": 0}, "1 <= N <= 48"),
        ({"block_format": "nvfp4", "acc_mode": "aligned_truncate", "frac_bits": 48, "fused_groups": 8}, "N \\+ 12"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BlockConfig(**kwargs)


def scale_value(code: int, nvfp4: bool) -> Fraction:
    return code_value(code, 4, 3, 7) if nvfp4 else Fraction(2) ** (code - 127)


@given(
    a=st.lists(st.integers(0, 15), min_size=16, max_size=16),
    w=st.lists(st.integers(0, 15), min_size=16, max_size=16),
    a_scale=st.integers(0, 0xFE),
    w_scale=st.integers(0, 0xFE),
    nvfp4=st.booleans(),
)
def test_group_term_is_the_exact_scaled_group_sum(a, w, a_scale, w_scale, nvfp4):
    """Spec 8.3: V * 2^(shift + TERM_LSB) = sum value(a_j) value(w_j) * S_a * S_w, exactly (every non-NaN code)."""
    if nvfp4:  # unsigned E4M3: codes 0..0x7E
        a_scale, w_scale = a_scale % 0x7F, w_scale % 0x7F
    term = fp4_block_term(a, w, a_scale, w_scale, nvfp4)
    exact = sum(code_value(x, 2, 1, 1) * code_value(y, 2, 1, 1) for x, y in zip(a, w, strict=True))
    exact *= scale_value(a_scale, nvfp4) * scale_value(w_scale, nvfp4)
    term_lsb = BlockConfig("nvfp4" if nvfp4 else "mxfp4").term_lsb
    assert not term.nan
    assert term.value * Fraction(2) ** (term.shift + term_lsb) == exact


@given(
    c=st.floats(width=32, allow_nan=False, allow_infinity=False),
    terms=st.lists(st.tuples(st.integers(-518400, 518400), st.integers(-252, 16)), min_size=1, max_size=4),
    frac_bits=st.integers(1, 48),
)
def test_fused_add_follows_the_truncation_rule(c, terms, frac_bits):
    """Spec 8.5 restated with fractions: each term truncated toward zero N bits below the largest exponent, the exact
    sum truncated to FP32 (+0 for a zero result); NVFP4 terms are V * 2^(E - 8)."""
    c = float(np.float32(c))
    c = 0.0 if c == 0 else c  # the running sum is never -0
    c_bits = int(np.float32(c).view(np.uint32))
    c_exponent = -126 if c == 0 else max(floor_log2(abs(Fraction(c))), -126)
    top = max([c_exponent, *(e for _, e in terms)])
    unit = Fraction(2) ** (top - frac_bits)
    values = [Fraction(c), *(v * Fraction(2) ** (e - 8) for v, e in terms)]
    total = sum((int(x / unit) * unit for x in values), Fraction(0))  # int() truncates toward zero
    want = round_float(total, "fp32", toward_zero=True)
    want_bits = 0 if want == 0 else int(np.float32(want).view(np.uint32))
    assert fp4_block_fused_add(c_bits, terms, frac_bits, 8) == want_bits
