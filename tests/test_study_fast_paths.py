"""The study models' exact-safe fast paths (docs/spec.md 4.3) against the loops they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from operands import FP4, random_gemm
from study_reference import aligned_truncate_gemm

from fp4sim import PEConfig, gemm
from fp4sim.gemm.fast import exact_limit
from fp4sim.gemm.study import (
    ALIGNED_GROUP_DEFAULT,
    aligned_truncate_outputs,
    exponent_table,
    fp32_sequential_gemm,
    parse_accumulation,
)
from fp4sim.hw.fp4_pe_product import product_table

MODELS = (
    "fp32_sequential",
    "aligned_truncate:13",
    "aligned_truncate:25",
    "aligned_truncate:35",
    "aligned_truncate:9:8",
    "aligned_truncate:4:3",
    "aligned_truncate:55",
)


def previous_loop(a, w, s, config: PEConfig, accum: str) -> np.ndarray:
    """FP32 bits as the library computed them before the fast paths: one loop over every output and product."""
    model = parse_accumulation(accum)
    a_values, w_values = config.fmt_a.values().astype(np.float32), config.fmt_w.values().astype(np.float32)
    if model.kind == "fp32_sequential":
        shifted = (w_values[w] * np.ldexp(np.float32(1), -s.astype(np.int32))[:, None]).astype(np.float32)
        return fp32_sequential_gemm(a_values[a], shifted).view(np.uint32)
    exponents = exponent_table(config.fmt_a.values()), exponent_table(config.fmt_w.values())
    group = model.group or ALIGNED_GROUP_DEFAULT
    return aligned_truncate_gemm(
        product_table(config), s, a, w, *exponents, config.lsb_exponent, model.frac_bits, group
    )


def assert_same_as_previous_loop(a, w, s, config: PEConfig, accum: str) -> None:
    result = gemm(a, w, s, config.fmt_a, config.fmt_w, accum=accum)
    np.testing.assert_array_equal(result.view(np.uint32), previous_loop(a, w, s, config, accum), err_msg=accum)


@pytest.mark.parametrize("accum", MODELS)
def test_random_operands(accum: str) -> None:
    """Every format pair, K across the group sizes and past the bounds where the fast path stops applying."""
    rng = np.random.default_rng(sum(map(ord, accum)))
    for k in (1, 5, 31, 33, 200, 700):
        config, a, w, s = random_gemm(rng, 7, k, 6)
        assert_same_as_previous_loop(a, w, s, config, accum)


@pytest.mark.parametrize("accum", MODELS)
@pytest.mark.parametrize(("fa", "fw"), [(fa, fw) for fa in FP4 for fw in FP4])
def test_huge_running_sum_then_small_products(accum: str, fa: str, fw: str) -> None:
    """Largest products first (c grows past 2^(N+1) LSBs and 2^24), then the smallest, then cancellation."""
    config = PEConfig.make(fa, fw)
    big_a, big_w = config.fmt_a.sign_mask - 1, config.fmt_w.sign_mask - 1  # the largest positive codes
    k = 600
    a = np.full((4, k), big_a, np.uint8)
    w = np.full((k, 3), big_w, np.uint8)
    s = np.zeros(k, np.uint8)
    a[:, 300:] = 1  # the smallest subnormal
    w[300:, :] = 1
    s[300:] = config.max_shift
    a[1, 450:] = big_a | config.fmt_a.sign_mask  # row 1: a negative tail cancels part of the sum
    a[1, 450:] = np.where(np.arange(150) % 2, a[1, 450:], big_a)
    a[2] = 0  # an all-zero row
    a[3, ::2] ^= config.fmt_a.sign_mask  # alternating signs: exact cancellation to zero
    w[:, 2] = 0  # an all-zero column
    assert_same_as_previous_loop(a, w, s, config, accum)


@pytest.mark.parametrize("accum", MODELS)
@pytest.mark.parametrize("fmt", ["E2M1", "E3M0"])
def test_outputs_mixed_between_fast_and_slow(accum: str, fmt: str) -> None:
    """Rows of small codes (exact-safe by the row bound) next to rows of large ones (the loop), in one call."""
    rng = np.random.default_rng(3)
    config = PEConfig.make(fmt, fmt)
    k = 1000
    a = rng.integers(0, 16, (8, k), dtype=np.uint8)
    a[::2] &= 0x9  # even rows: codes 0, 1, 8, 9 (0 and the smallest subnormal, either sign)
    a[1::4, ::3] &= 0x9  # some large rows with more small codes
    w = rng.integers(0, 16, (k, 5), dtype=np.uint8)
    s = rng.integers(0, config.max_shift + 1, k, dtype=np.uint8)
    assert_same_as_previous_loop(a, w, s, config, accum)


def test_the_limit_follows_the_product_exponents() -> None:
    """E3M0 x E3M0 products reach 2^8 with the LSB at 2^-11: at N = 13 no sum is provably exact."""
    config = PEConfig.make("E3M0", "E3M0")
    exponents = exponent_table(config.fmt_a.values()), exponent_table(config.fmt_w.values())
    assert exact_limit(parse_accumulation("aligned_truncate:13"), *exponents, config.lsb_exponent) == 0
    assert exact_limit(parse_accumulation("aligned_truncate:19"), *exponents, config.lsb_exponent) == 2**20 - 1
    assert exact_limit(parse_accumulation("aligned_truncate:35"), *exponents, config.lsb_exponent) == 2**24
    assert exact_limit(parse_accumulation("fp32_sequential"), *exponents, config.lsb_exponent) == 2**24


def test_truncation_just_past_the_bound() -> None:
    """E2M1, N = 13: 32 products of 36 put c at 2^10 > 2^(L+N); the next 32 one-LSB products (2^-5) vanish.

    Sum of |products| = 36896 LSBs, within 3x of the bound 2^14 - 1: a looser bound would return the exact 1153.
    """
    config = PEConfig.make("E2M1", "E2M1")
    a = np.array([[0x7] * 32 + [0x1] * 32, [0x1] * 64], np.uint8)  # 6.0 then 0.5; all 0.5 (within the bound)
    w = a[:1].T.copy()
    s = np.array([0] * 32 + [3] * 32, np.uint8)
    assert gemm(a, w, s, "E2M1", "E2M1")[:, 0].tolist() == [1153.0, 97.0]
    result = gemm(a, w, s, "E2M1", "E2M1", accum="aligned_truncate:13")
    assert result[:, 0].tolist() == [1152.0, 97.0]
    np.testing.assert_array_equal(result.view(np.uint32), previous_loop(a, w, s, config, "aligned_truncate:13"))


@pytest.mark.parametrize("accum", ["aligned_truncate:13", "aligned_truncate:3:5", "aligned_truncate:55:8"])
@pytest.mark.parametrize(("fa", "fw"), [("E3M0", "E3M0"), ("E2M1", "E1M2"), ("E1M2", "E3M0")])
def test_the_loop_writes_exactly_the_selected_outputs(accum: str, fa: str, fw: str) -> None:
    """The kernel itself on a selection that skips whole rows, whole columns and single outputs: selected outputs get
    the reference loop's bits, the others keep what `out` held. Groups that do not divide K, N from 3 to the widest
    the adder takes at G = 8, shifts over the whole range."""
    rng = np.random.default_rng(len(accum) + len(fa + fw))
    config = PEConfig.make(fa, fw)
    model = parse_accumulation(accum)
    k = 203
    a = rng.integers(0, 16, (9, k), dtype=np.uint8)
    w = rng.integers(0, 16, (k, 7), dtype=np.uint8)
    s = rng.integers(0, config.max_shift + 1, k, dtype=np.uint8)
    a[4, 100:] = config.fmt_a.sign_mask - 1  # a large tail: the running sum grows late
    selected = rng.random((9, 7)) < 0.6
    selected[2] = False
    selected[:, 5] = False
    selected[6] = True
    out = np.full((9, 7), 0xDEADBEEF, np.uint32)
    exponents = exponent_table(config.fmt_a.values()), exponent_table(config.fmt_w.values())
    args = (*exponents, config.lsb_exponent, model.frac_bits, model.group or ALIGNED_GROUP_DEFAULT)
    aligned_truncate_outputs(product_table(config), s, a, w, *args, selected, out)
    reference = aligned_truncate_gemm(product_table(config), s, a, w, *args)
    np.testing.assert_array_equal(out[selected], reference[selected])
    assert (out[~selected] == 0xDEADBEEF).all()
    assert len(np.unique(reference[selected])) > selected.sum() // 2  # distinct sums, not one repeated value
