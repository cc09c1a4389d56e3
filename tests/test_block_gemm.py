"""block_gemm against the fractions reference under every accumulation model (docs/spec.md 7.5)."""

from __future__ import annotations

from fractions import Fraction

import block_oracle as ref
import numpy as np
import pytest
from oracle import code_value, fp32_times, round_float

from fp4sim.codec.blockscaled import MXFP4, BlockTensor, block_quantize
from fp4sim.gemm.block import block_gemm

MODELS = [
    ("exact", 0, 0),
    ("fp32_sequential", 0, 0),
    ("aligned_truncate:35", 35, 64),  # NVIDIA's FP4 MMA: K = 64 per instruction, n = 35
    ("aligned_truncate:13:16", 13, 16),
    ("aligned_truncate:25:32", 25, 32),
    ("aligned_truncate:8:128", 8, 128),
]


def operand(seed: int, rows: int, k: int, span: int) -> np.ndarray:
    """Normal values whose 16-element groups carry magnitudes 2^[-span, span]."""
    rng = np.random.default_rng(seed)
    magnitude = np.exp2(rng.integers(-span, span + 1, (rows, k // 16 + 1))).repeat(16, axis=1)[:, :k]
    x = rng.standard_normal((rows, k)) * magnitude
    x[rng.random((rows, k)) < 0.1] = 0
    return x.astype(np.float32)


def scales_as_fractions(t: BlockTensor) -> list[list[Fraction]]:
    if t.fmt is MXFP4:
        return [[Fraction(2) ** (int(c) - 127) for c in row] for row in t.scales]
    return [[code_value(int(c), 4, 3, 7) for c in row] for row in t.scales]


def expected(a: BlockTensor, w: BlockTensor, model: str, frac_bits: int, fused: int) -> np.ndarray:
    a_vals = [[code_value(int(c), 2, 1, 1) for c in row] for row in a.codes]
    w_vals = [[code_value(int(c), 2, 1, 1) for c in row] for row in w.codes]
    a_sc, w_sc = scales_as_fractions(a), scales_as_fractions(w)
    min_exponent = -127 if a.fmt is MXFP4 else -6
    kind = model.split(":")[0]
    alpha = float(np.float32(a.tensor_scale * w.tensor_scale))
    out = np.empty((len(a_vals), len(w_vals)), np.float32)
    for m, (av, asc) in enumerate(zip(a_vals, a_sc, strict=True)):
        for n, (wv, wsc) in enumerate(zip(w_vals, w_sc, strict=True)):
            y = ref.block_dot(kind, av, asc, wv, wsc, a.fmt.block_size, min_exponent, frac_bits, fused)
            out[m, n] = fp32_times(y, alpha) if a.fmt.tensor_scale else y
    return out


@pytest.mark.parametrize(("model", "frac_bits", "fused"), MODELS)
@pytest.mark.parametrize("name", ["mxfp4", "nvfp4"])
@pytest.mark.parametrize("k", [16, 100, 192])
def test_block_gemm_matches_fraction_reference(name, k, model, frac_bits, fused):
    span = 50 if name == "mxfp4" else 4  # MX scales span 2^100 here: the exact sum needs more than 64 bits
    a = block_quantize(operand(k, 3, k, span), name)
    w = block_quantize(operand(k + 1, 4, k, span), name)
    got = block_gemm(a, w, accum=model)
    np.testing.assert_array_equal(got.view(np.uint32), expected(a, w, model, frac_bits, fused).view(np.uint32))


def test_exact_sum_keeps_a_remainder_below_cancelling_terms():
    x = np.zeros((1, 96), np.float32)
    x[0, 0], x[0, 32], x[0, 64] = 2.0**100, -(2.0**100), 2.0**-100  # three blocks; the big products cancel
    w = np.ones((1, 96), np.float32)
    a_t, w_t = block_quantize(x, "mxfp4"), block_quantize(w, "mxfp4")
    assert block_gemm(a_t, w_t)[0, 0] == np.float32(2.0**-100)
    assert block_gemm(a_t, w_t, accum="fp32_sequential")[0, 0] == np.float32(2.0**-100)
    # One 35-bit aligned add over all three blocks truncates 2^-100 away next to terms at 2^100.
    assert block_gemm(a_t, w_t, accum="aligned_truncate:35:128")[0, 0] == 0
    assert block_gemm(a_t, w_t, accum="aligned_truncate:35:64")[0, 0] == np.float32(2.0**-100)


def test_zero_result_is_positive_zero():
    a = block_quantize(np.array([[1.0, -1.0] * 8], np.float32), "nvfp4")
    w = block_quantize(np.ones((2, 16), np.float32), "nvfp4")
    for model, _, _ in MODELS:
        assert not block_gemm(a, w, accum=model).view(np.uint32).any(), model


def test_narrow_outputs_round_once_from_fp32():
    a = block_quantize(operand(5, 3, 64, 3), "nvfp4")
    w = block_quantize(operand(6, 5, 64, 3), "nvfp4")
    fp32 = block_gemm(a, w)
    for out in ("bf16", "fp16"):
        got = block_gemm(a, w, out=out).astype(np.float64)
        want = [round_float(Fraction(float(v)), out) for v in fp32.ravel()]
        np.testing.assert_array_equal(got.ravel(), want)


def test_nan_block_scale_poisons_its_row():
    a = block_quantize(operand(7, 2, 64, 3), "mxfp4")
    w = block_quantize(operand(8, 3, 64, 3), "mxfp4")
    scales = a.scales.copy()
    scales[1, 1] = 0xFF
    poisoned = BlockTensor(a.fmt, a.codes, scales, a.tensor_scale)
    for model, _, _ in MODELS:
        y = block_gemm(poisoned, w, accum=model)
        assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()


@pytest.mark.parametrize(
    ("a_name", "w_name", "w_k", "accum"),
    [
        ("mxfp4", "nvfp4", 32, "exact"),
        ("mxfp4", "mxfp4", 64, "exact"),
        ("nvfp4", "nvfp4", 32, "aligned_truncate:35:24"),
        ("nvfp4", "nvfp4", 32, "fp64"),
    ],
)
def test_bad_operands_are_rejected(a_name, w_name, w_k, accum):
    a = block_quantize(np.ones((2, 32), np.float32), a_name)
    w = block_quantize(np.ones((2, w_k), np.float32), w_name)
    with pytest.raises(ValueError):
        block_gemm(a, w, accum=accum)


@pytest.mark.parametrize("seed", range(12))
def test_hand_built_scales_match_fraction_reference(seed):
    """Scale codes drawn across each format's whole range: zero and subnormal E4M3, E8M0 extremes."""
    rng = np.random.default_rng(seed)
    name = "nvfp4" if seed % 2 else "mxfp4"
    k = int(rng.choice([16, 40, 64, 100]))
    fmt = block_quantize(np.zeros((1, 1), np.float32), name).fmt

    def random_tensor(rows: int) -> BlockTensor:
        codes = rng.integers(0, 16, (rows, k), dtype=np.uint8)
        if name == "nvfp4":
            choices = np.array([0, 1, 3, 7, 8, 9, 40, 56, 100, 0x7E], np.uint8)  # 0, subnormals, 2^-6, ..., 448
        else:
            choices = np.array([0, 1, 60, 127, 140, 200, 253, 254], np.uint8)  # 2^-127 .. 2^127
        scales = rng.choice(choices, (rows, fmt.blocks(k))).astype(np.uint8)
        return BlockTensor(fmt, codes, scales, np.float32(rng.uniform(0.5, 2)) if fmt.tensor_scale else 1.0)

    a, w = random_tensor(2), random_tensor(3)
    for model, frac_bits, fused in MODELS:
        with np.errstate(over="ignore"):
            got = block_gemm(a, w, accum=model)
        want = expected(a, w, model, frac_bits, fused)
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, model)  # NaN payloads and signs are not specified
        np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan], model)


def test_sign_of_a_sum_that_underflows():
    """-2^-156 exactly: exact rounds it to -0 (IEEE); aligned truncation yields +0, as MMA-Sim's integer trunc does."""
    codes = np.array([[9]], np.uint8)  # -0.5
    scale = np.array([[50]], np.uint8)  # 2^-77
    a = BlockTensor(MXFP4, codes, scale, 1.0)
    w = BlockTensor(MXFP4, np.array([[1]], np.uint8), scale, 1.0)  # +0.5
    assert block_gemm(a, w).view(np.uint32)[0, 0] == 0x80000000
    assert block_gemm(a, w, accum="aligned_truncate:35").view(np.uint32)[0, 0] == 0
    assert block_gemm(a, w, accum="fp32_sequential").view(np.uint32)[0, 0] == 0  # fp32(+0 + -0) = +0


def test_adder_width_limit():
    six = block_quantize(np.full((1, 64), 6.0, np.float32), "nvfp4")
    exact = block_gemm(six, six)
    assert block_gemm(six, six, accum="aligned_truncate:48") == exact  # the widest the 63-bit adder takes at G = 64
    with pytest.raises(ValueError, match="use N <= 48"):
        block_gemm(six, six, accum="aligned_truncate:49")
    with pytest.raises(ValueError, match="use N <= 44"):
        block_gemm(six, six, accum="aligned_truncate:45:1024")
