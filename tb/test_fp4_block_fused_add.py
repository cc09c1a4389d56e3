"""fp4_block_fused_add against its golden twin fp4sim.hw.fp4_block_fused_add (docs/spec.md 8.5): random FP32 running
sums (zero, subnormal, normal, near the largest) with random terms and masks, exponents near each other (the
truncation matters) and far apart (terms vanish), overflow to the largest finite value, sums that truncate to +0."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.triggers import Timer

from fp4sim.hw.fp4_block_fused_add import fp4_block_fused_add
from fp4sim.hw.fp4_pkg import BlockConfig
from fp4sim.rtlsim.runner import run_testbench, tb_block_config, tb_params

EXPONENT_RANGE = {"mxfp4": (-254, 254), "nvfp4": (-252, 16)}  # sums of two scale exponents (spec 8.2)


def random_c(rng: np.random.Generator, near: int) -> int:
    kind = rng.integers(5)
    sign = int(rng.integers(2)) << 31
    if kind == 0:
        return 0
    if kind == 1:
        return sign | int(rng.integers(1, 1 << 23))  # subnormal
    if kind == 2:
        mantissa = 0x7FFFFF if rng.random() < 0.5 else int(rng.integers(1 << 23))
        return sign | (254 << 23) | mantissa  # at or near the largest finite value
    field = int(np.clip(near + 127 + rng.integers(-30, 31), 1, 254))
    return sign | (field << 23) | int(rng.integers(1 << 23))


def random_terms(rng: np.random.Generator, config: BlockConfig, count: int) -> tuple[list[int], list[int], int]:
    low, high = EXPONENT_RANGE[config.block_format]
    centre = int(rng.integers(low, high + 1))
    values, exponents = [], []
    for _ in range(count):
        limit = config.value_max if rng.random() < 0.8 else 4
        values.append(int(rng.integers(-limit, limit + 1)))
        spread = 3 if rng.random() < 0.6 else 300
        exponents.append(int(np.clip(centre + rng.integers(-spread, spread + 1), low, high)))
    return values, exponents, centre


@cocotb.test()
async def random_fused_adds(dut) -> None:
    config, terms = tb_block_config(), tb_params()["TERMS"]
    rng = np.random.default_rng(31)
    vb = config.value_bits
    outcomes = {"+0 from nonzero terms": 0}
    if config.frac_bits >= 23:  # below that, c itself loses bits and cannot stay the largest value
        outcomes["largest finite"] = 0
    for trial in range(2000):
        values, exponents, centre = random_terms(rng, config, terms)
        mask = [bool(m) for m in rng.random(terms) < 0.7]
        c = random_c(rng, centre)
        dut.c.value = c
        dut.values.value = sum((v & ((1 << vb) - 1)) << (i * vb) for i, v in enumerate(values))
        dut.exponents.value = sum((e & 0x3FF) << (i * 10) for i, e in enumerate(exponents))
        dut.mask.value = sum(int(m) << i for i, m in enumerate(mask))
        await Timer(1, unit="ns")
        picked = [(v, e) for v, e, m in zip(values, exponents, mask, strict=True) if m]
        want = fp4_block_fused_add(c, picked, config.frac_bits, config.align_offset)
        got = dut.sum.value
        assert got.is_resolvable, f"X/Z on sum, trial {trial}"
        assert int(got) == want, f"c={c:#010x} terms {picked}: RTL {int(got):#010x}, model {want:#010x}"
        if "largest finite" in outcomes:
            outcomes["largest finite"] += want & 0x7FFFFFFF == 0x7F7FFFFF
        outcomes["+0 from nonzero terms"] += want == 0 and any(v for v, _ in picked)
    assert all(outcomes.values()), f"the random cases missed an outcome: {outcomes}"


BUILDS = [  # (block format, N, F)
    (0, 35, 4),
    (1, 35, 4),  # Blackwell's FP4 datapath
    (1, 13, 1),
    (1, 3, 2),  # N below KE: terms shift right
    (0, 48, 4),  # the widest adder spec 7.5 allows at G = 64
]


@pytest.mark.parametrize("build", BUILDS, ids=lambda b: f"{('mxfp4', 'nvfp4')[b[0]]}-N{b[1]}-F{b[2]}")
def test_fp4_block_fused_add(build: tuple, simulator: str) -> None:
    block_format, frac_bits, terms = build
    params = {"BLOCK_FORMAT": block_format, "FRAC_BITS": frac_bits, "TERMS": terms}
    run_testbench("fp4_block_fused_add", "test_fp4_block_fused_add", params, simulator=simulator)
