"""The fast GEMM against the Fraction oracle, for every accumulation model, output format and scale."""

from __future__ import annotations

import itertools
import zlib

import ml_dtypes
import numpy as np
import oracle
import pytest
from operands import random_gemm

from fp4sim import PEConfig, gemm, get_format
from fp4sim.gemm.fast import FLOAT32_EXACT, exact_accumulators, split_weight_table, weight_table
from fp4sim.hw.fp4_operand_decode import operand_table

MODELS = ("exact", "fp32_sequential", "aligned_truncate:13", "aligned_truncate:25", "aligned_truncate:35")
OUT_DTYPES = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16, "fp16": np.float16}


def _family(name: str) -> tuple[int, int, int]:
    fmt = get_format(name)
    return fmt.ebits, fmt.mbits, fmt.bias


def _oracle_gemm(model: str, a, w, s, fa: str, fw: str) -> np.ndarray:
    kind, _, params = model.partition(":")
    frac_bits, _, group = params.partition(":")
    return np.array(
        [
            [
                oracle.dot(kind, a[i], w[:, j], s, _family(fa), _family(fw), int(frac_bits or 0), int(group or 32))
                for j in range(w.shape[1])
            ]
            for i in range(a.shape[0])
        ],
        dtype=np.float32,
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_ten_thousand_random_dot_products(model: str) -> None:
    """20 GEMMs of 23 x 23 outputs = 10580 dot products, K from 1 to 96, random formats and shifts."""
    rng = np.random.default_rng(zlib.crc32(model.encode()))
    checked = 0
    for _ in range(20):
        config, a, w, s = random_gemm(rng, 23, int(rng.integers(1, 97)), 23)
        fa, fw = config.fmt_a, config.fmt_w
        result = gemm(a, w, s, fa, fw, accum=model)
        expected = _oracle_gemm(model, a, w, s, fa, fw)
        np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32), err_msg=f"{fa} x {fw}")
        checked += result.size
    assert checked >= 10_000


@pytest.mark.parametrize("model", ["exact", "aligned_truncate:25:8", "aligned_truncate:4:3"])
def test_groups_and_cancellation(model: str) -> None:
    """Short groups, very few fractional bits, and sums that cancel to zero through the running FP32 value."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        config, a, w, s = random_gemm(rng, 9, int(rng.integers(1, 40)), 9)
        fa, fw = config.fmt_a, config.fmt_w
        w = np.concatenate([w, w ^ 0x8], axis=0)  # every product again with the sign flipped
        a, s = np.concatenate([a, a], axis=1), np.concatenate([s, s])
        result = gemm(a, w, s, fa, fw, accum=model)
        np.testing.assert_array_equal(result.view(np.uint32), _oracle_gemm(model, a, w, s, fa, fw).view(np.uint32))


@pytest.mark.parametrize(("out", "model"), list(itertools.product(OUT_DTYPES, ["exact", "aligned_truncate:13"])))
def test_output_formats_and_scale(out: str, model: str, rng: np.random.Generator) -> None:
    """out(acc) with one rounding when unscaled; out(fp32(fp32(sum) * scale)) when scaled (spec 2.5)."""
    config, a, w, s = random_gemm(rng, 17, 64, 19)
    fa, fw = config.fmt_a, config.fmt_w
    scale = (rng.standard_normal(19) * 2.0 ** rng.integers(-20, 20, 19)).astype(np.float32)
    z = _oracle_gemm(model, a, w, s, fa, fw)
    kind = model.partition(":")[0]
    unscaled = gemm(a, w, s, fa, fw, accum=model, out=out)
    assert unscaled.dtype == OUT_DTYPES[out]
    if kind == "exact":
        family_a, family_w = _family(fa), _family(fw)
        sums = [[oracle.exact_sum(a[i], w[:, j], s, family_a, family_w) for j in range(19)] for i in range(17)]
        expected = [[oracle.round_float(total, out) for total in row] for row in sums]
    else:
        expected = [[oracle.round_float(oracle.Fraction(float(v)), out) for v in row] for row in z]
    np.testing.assert_array_equal(unscaled.astype(np.float64), np.array(expected))
    scaled = gemm(a, w, s, fa, fw, accum=model, out=out, scale=scale)
    expected_scaled = [
        [
            oracle.round_float(oracle.Fraction(oracle.fp32_times(float(z[i, j]), float(scale[j]))), out)
            for j in range(19)
        ]
        for i in range(17)
    ]
    np.testing.assert_array_equal(scaled.astype(np.float64), np.array(expected_scaled))


EXACT_PATHS = [
    ("E2M1", 1, "f32"),
    ("E2M1", 40, "f32"),
    ("E3M0", 40, "f32x2"),
    ("E3M0", 5000, "f64"),
    ("E4M3", 10_000, "i64"),
]


def _path(config: PEConfig, k: int, a_max: int) -> str:
    """Which branch of spec 4.2 applies, from the spec's bounds."""
    w_max = int(np.abs(weight_table(config)).max())
    low, high, _ = split_weight_table(config)
    if k * a_max * w_max <= FLOAT32_EXACT:
        return "f32"
    if k * a_max * max(int(np.abs(low).max()), int(np.abs(high).max())) <= FLOAT32_EXACT:
        return "f32x2"
    return "f64" if k * a_max * w_max <= 2**53 else "i64"


@pytest.mark.parametrize(("fmt", "k", "path"), EXACT_PATHS)
def test_every_exact_path_matches_the_oracle(fmt: str, k: int, path: str, rng: np.random.Generator) -> None:
    f = get_format(fmt)
    config = PEConfig.make(f, f, shift_bits=3)
    a = rng.integers(0, 1 << f.nbits, (3, k), dtype=np.uint8)
    w = rng.integers(0, 1 << f.nbits, (k, 4), dtype=np.uint8)
    a[:, 0], w[0] = f.max_code, f.max_code  # the largest magnitudes are present
    s = rng.integers(0, 8, k, dtype=np.uint8)
    s[0] = 0
    assert _path(config, k, int(np.abs(operand_table(f)).max())) == path
    expected = _oracle_gemm("exact", a, w, s, fmt, fmt)
    np.testing.assert_array_equal(gemm(a, w, s, fmt, fmt, shift_bits=3).view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize(("fmt", "k", "path"), EXACT_PATHS)
@pytest.mark.parametrize("out", list(OUT_DTYPES))
def test_zero_sums_are_positive_zero_on_every_path(fmt: str, k: int, path: str, out: str) -> None:
    """Even rows: zero codes (+0 or -0) against weights of both signs: every product is a signed zero, and
    a float sum of them can be -0. Odd rows: the largest value and its negation (K > 1). The spec says +0.
    """
    f = get_format(fmt)
    config = PEConfig.make(f, f, shift_bits=3)
    big = f.max_code
    a = np.zeros((5, k), np.uint8)
    a[2] = f.sign_mask  # -0 times negative weights gives +0, times positive -0
    a[1::2] = np.resize([big, big | f.sign_mask], k) if k > 1 else big
    w = np.tile(np.linspace(1, big, 7).astype(np.uint8), (k, 1))  # distinct nonzero codes, one per column
    w[:, ::2] |= f.sign_mask
    assert _path(config, k, int(np.abs(operand_table(f)).max())) == path
    result = gemm(a, w, np.zeros(k, np.uint8), fmt, fmt, shift_bits=3, out=out).astype(np.float32)
    zero_rows = result[0::2] if k == 1 else result
    assert not zero_rows.any()
    assert not np.signbit(zero_rows).any()


def test_negative_scale_gives_negative_zero() -> None:
    zero = np.zeros((1, 1), np.uint8)
    result = gemm(zero, zero, None, "E2M1", "E2M1", scale=np.float32(-2.0))
    assert np.signbit(result[0, 0]) and result[0, 0] == 0


def test_float32_blas_path_ends_where_the_bound_says(rng: np.random.Generator) -> None:
    """E2M1 x E2M1 with shifts 0..3: |product| <= 1152 LSBs, so float32 is exact up to K = 14563."""
    config = PEConfig.make("E2M1", "E2M1")
    assert FLOAT32_EXACT // config.product_max == 14563
    k = 20_000  # past the one-sgemm bound: the two-piece path must still be exact
    a = np.full((2, k), 0x7, np.uint8)  # 6.0
    w = np.full((k, 3), 0x7, np.uint8)
    a[1, ::2] = 0xF  # -6.0 on even k
    acc = exact_accumulators(a, w, np.zeros(k, np.uint8), config)
    assert acc[0, 0] == k * config.product_max
    assert acc[1, 0] == 0


class TestAlignedTruncateBehaviour:
    """Constructed cases for the published tensor-core behaviour (MMA-Sim, arXiv 2511.10909)."""

    E3M0_16, E3M0_QUARTER = 0x7, 0x1  # E3M0 (bias 3): 2^4 and 2^-2

    def test_small_addends_vanish_beside_a_large_one(self) -> None:
        # 16 * 16 = 2^8 beside 31 products 2^-2 * 2^-2 * 2^-2 = 2^-6 (shift 2): 14 exponents apart.
        a = np.array([[self.E3M0_16] + [self.E3M0_QUARTER] * 31], np.uint8)
        w = np.array([[self.E3M0_16] + [self.E3M0_QUARTER] * 31], np.uint8).T
        s = np.array([0] + [2] * 31, np.uint8)
        exact = 256 + 31 * 2.0**-6
        assert gemm(a, w, s, "E3M0", "E3M0")[0, 0] == exact
        assert gemm(a, w, s, "E3M0", "E3M0", accum="fp32_sequential")[0, 0] == exact
        assert gemm(a, w, s, "E3M0", "E3M0", accum="aligned_truncate:25")[0, 0] == exact
        assert gemm(a, w, s, "E3M0", "E3M0", accum="aligned_truncate:13")[0, 0] == 256.0  # each 2^-6 truncated away

    def test_the_running_sum_swallows_later_groups(self) -> None:
        # Group 1 (32 products of 2^8) leaves c = 2^13; group 2's 2^-6 products sit 19 below it.
        k = 64
        a = np.array([[self.E3M0_16] * 32 + [self.E3M0_QUARTER] * 32], np.uint8)
        s = np.array([0] * 32 + [2] * 32, np.uint8)
        result = gemm(a, a.T.copy(), s, "E3M0", "E3M0", accum="aligned_truncate:13")
        assert result[0, 0] == 2.0**13
        assert gemm(a, a.T.copy(), s, "E3M0", "E3M0")[0, 0] == 2.0**13 + 32 * 2.0**-6
        assert k == a.shape[1]

    def test_order_inside_a_group_does_not_matter(self, rng: np.random.Generator) -> None:
        # Two 2^-11 products and 32 of 2^8: FP32 sequential addition depends on the order, a fused group does not.
        small, big = (self.E3M0_QUARTER, 7), (self.E3M0_16, 0)  # (code, shift): 2^-2 * 2^-2 * 2^-7 and 2^8
        order_small_first = [small] * 2 + [big] * 32
        order_big_first = [big] * 32 + [small] * 2
        results = {}
        for name, order in (("small_first", order_small_first), ("big_first", order_big_first)):
            a = np.array([[code for code, _ in order]], np.uint8)
            s = np.array([shift for _, shift in order], np.uint8)
            results[name] = (
                gemm(a, a.T.copy(), s, "E3M0", "E3M0", accum="fp32_sequential")[0, 0],
                gemm(a, a.T.copy(), s, "E3M0", "E3M0", accum="aligned_truncate:25:64")[0, 0],
            )
        assert results["small_first"][0] == 2.0**13 + 2.0**-10  # the two small ones add first, exactly
        assert results["big_first"][0] == 2.0**13  # each 2^-11 is half an ulp of 2^13: ties to even, lost
        assert results["small_first"][1] == results["big_first"][1] == 2.0**13 + 2.0**-10
        config, a, w, s = random_gemm(rng, 4, 32, 4)
        fa, fw = config.fmt_a, config.fmt_w
        perm = rng.permutation(32)
        for model in ("aligned_truncate:13", "aligned_truncate:25"):
            np.testing.assert_array_equal(
                gemm(a, w, s, fa, fw, accum=model).view(np.uint32),
                gemm(a[:, perm], w[perm], s[perm], fa, fw, accum=model).view(np.uint32),
            )


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda z: gemm(z((2, 3)), z((4, 2)), None, "E2M1", "E2M1"), ValueError, "inner dimensions"),
        (lambda z: gemm(z((2, 3)), z((3,)), None, "E2M1", "E2M1"), ValueError, r"\(M, K\)"),
        (lambda z: gemm(z((2, 0)), z((0, 2)), None, "E2M1", "E2M1"), ValueError, "K must be at least 1"),
        (lambda z: gemm(z((2, 3)).astype(np.int32), z((3, 2)), None, "E2M1", "E2M1"), TypeError, "uint8"),
        (lambda z: gemm(z((2, 3)) + 16, z((3, 2)), None, "E2M1", "E2M1"), ValueError, "outside the 4-bit"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), np.array([0, 4, 0]), "E2M1", "E2M1"), ValueError, r"0\.\.3"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), np.array([0, 1]), "E2M1", "E2M1"), ValueError, r"shape \(3,\)"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), np.array([0.0, 1, 0]), "E2M1", "E2M1"), TypeError, "integers"),
        (lambda z: gemm(z((2, 5)), z((5, 2)), None, "E2M1", "E2M1", k_max=4), ValueError, "K_max=4"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "E2M1", out="fp64"), ValueError, "out must be"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "E2M1", accum="kahan"), ValueError, "accumulation"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "E2M1", accum="aligned_truncate:0"), ValueError, "N"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "E2M1", scale=np.ones(3)), ValueError, r"\(2,\)"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "E2M1", scale=np.inf), ValueError, "finite"),
        (lambda z: gemm(z((2, 3)), z((3, 2)), None, "E2M1", "nope"), ValueError, "unknown format"),
    ],
)
def test_bad_input_is_rejected(call, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call(lambda shape: np.zeros(shape, np.uint8))


def test_torch_tensors_in_and_out() -> None:
    import torch

    a = torch.tensor([[0x2, 0x7]], dtype=torch.uint8)  # 1.0, 6.0
    w = torch.tensor([[0x3], [0xC]], dtype=torch.uint8)  # 1.5, -2.0
    result = gemm(a, w, None, "E2M1", "E2M1")
    assert isinstance(result, torch.Tensor)
    assert result.tolist() == [[1.5 - 12.0]]


def test_aligned_truncate_adder_width_limit():
    a = np.full((1, 256), 7, np.uint8)  # E2M1 6.0
    exact = gemm(a, a.T.copy(), None, "E2M1", "E2M1")
    assert gemm(a, a.T.copy(), None, "E2M1", "E2M1", accum="aligned_truncate:55")[0, 0] == exact[0, 0] == 9216
    with pytest.raises(ValueError, match="use N <= 55"):
        gemm(a, a.T.copy(), None, "E2M1", "E2M1", accum="aligned_truncate:56")
