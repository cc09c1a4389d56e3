"""The PE against the Fraction oracle: every code pair x every shift x all 9 FP4 format pairs."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import oracle
import pytest

from fp4sim import PEConfig, gemm, get_format
from fp4sim.hw.fp4_mac import fp4_mac
from fp4sim.hw.fp4_pe_product import fp4_pe_product, product_table
from fp4sim.hw.fp4_pkg import OperandParams

FP4 = ("E3M0", "E2M1", "E1M2")
PAIRS = list(itertools.product(FP4, FP4))


def _family(name: str) -> tuple[int, int, int]:
    fmt = get_format(name)
    return fmt.ebits, fmt.mbits, fmt.bias


@pytest.mark.parametrize(("fa", "fw"), PAIRS)
def test_every_product_is_exact(fa: str, fw: str) -> None:
    config = PEConfig.make(fa, fw)
    table = product_table(config)
    lsb = Fraction(2) ** config.lsb_exponent
    for s, a, w in itertools.product(range(config.max_shift + 1), range(16), range(16)):
        expected = oracle.mac_product(a, w, s, _family(fa), _family(fw))
        assert table[s, a, w] * lsb == expected, (s, a, w)
        assert fp4_pe_product(a, w, s, config.operand_params) == table[s, a, w]


@pytest.mark.parametrize(("fa", "fw"), PAIRS)
def test_every_product_through_gemm_with_k_1(fa: str, fw: str) -> None:
    """All 256 code pairs as one (16 x 1) @ (1 x 16) GEMM per shift, against the oracle in FP32."""
    config = PEConfig.make(fa, fw)
    codes = np.arange(16, dtype=np.uint8)
    for s in range(config.max_shift + 1):
        result = gemm(codes[:, None], codes[None, :], np.array([s]), fa, fw)
        expected = np.array(
            [
                [oracle.round_float(oracle.mac_product(a, w, s, _family(fa), _family(fw)), "fp32") for w in range(16)]
                for a in range(16)
            ],
            dtype=np.float32,
        )
        np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize(("fa", "fw"), PAIRS)
def test_widths_are_tight(fa: str, fw: str) -> None:
    """P_max is the largest |product|, and acc_bits is the narrowest signed width holding k_max of them."""
    config = PEConfig.make(fa, fw, k_max=1000)
    largest = (
        max(abs(oracle.mac_product(a, w, 0, _family(fa), _family(fw))) for a in range(16) for w in range(16))
        / Fraction(2) ** config.lsb_exponent
    )
    assert largest == config.product_max
    smallest = min(
        abs(p)
        for p in (
            oracle.mac_product(a, w, config.max_shift, _family(fa), _family(fw)) for a in range(16) for w in range(16)
        )
        if p
    )
    assert smallest == Fraction(2) ** config.lsb_exponent  # the smallest product lands on the LSB
    worst = 1000 * config.product_max
    assert worst <= 2 ** (config.acc_bits - 1) - 1
    assert worst > 2 ** (config.acc_bits - 2) - 1
    assert 2 ** (config.product_bits - 1) > config.product_max >= 2 ** (config.product_bits - 2)


def test_e2m1_widths_match_the_brief() -> None:
    """E2M1 x E2M1 without shifts: 9-bit signed product with 2 fraction bits (max 36)."""
    config = PEConfig.make("E2M1", "E2M1", shift_bits=0, k_max=1)
    assert (config.product_bits, config.lsb_exponent, config.product_max) == (9, -2, 144)


def test_kulisch_sum_is_order_independent(rng: np.random.Generator) -> None:
    params = OperandParams(2, 1, 2, 1, 3)
    a = rng.integers(0, 16, 500).astype(np.uint8)
    w = rng.integers(0, 16, 500).astype(np.uint8)
    s = rng.integers(0, 4, 500).astype(np.uint8)
    order = rng.permutation(500)
    exact = oracle.exact_sum(a, w, s, (2, 1, 1), (2, 1, 1))
    assert fp4_mac(a, w, s, params) * Fraction(2) ** -5 == exact
    assert fp4_mac(a[order], w[order], s[order], params) == fp4_mac(a, w, s, params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt_a": "float8_e4m3fn", "fmt_w": "E2M1"}, "no Inf/NaN"),
        ({"fmt_a": "E2M1", "fmt_w": "float8_e8m0fnu"}, "signed format"),
        ({"fmt_a": "E2M1", "fmt_w": "E2M1", "shift_bits": 9}, "shift_bits"),
        ({"fmt_a": "E2M1", "fmt_w": "E2M1", "k_max": 0}, "k_max"),
        ({"fmt_a": "E5M2", "fmt_w": "E5M2"}, "accumulator"),
        ({"fmt_a": get_format("E3M0", bias=120), "fmt_w": "E3M0"}, "FP32's normal range"),
    ],
)
def test_bad_configs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PEConfig.make(**kwargs)
