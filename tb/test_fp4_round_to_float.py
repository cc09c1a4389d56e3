"""fp4_round_to_float (the accumulator converter's rounding core) against its golden twin of the same name.

FP32 and FP16 results are also checked against numpy's float64 -> float32 / float16 casts (one IEEE
round-to-nearest-even from the exact value, which float64 holds for magnitudes below 2^53).
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.triggers import Timer

from fp4sim.hw.fp4_round_to_float import OUTPUT_FORMATS, fp4_round_to_float
from fp4sim.rtlsim.runner import run_testbench, tb_params

MAG_BITS = 40
NUMPY_CASTS = {(8, 23): (np.float32, np.uint32), (5, 10): (np.float16, np.uint16)}


async def check(dut, sign: int, mag: int, lsb_exp: int, p: dict) -> None:
    dut.sign.value = sign
    dut.mag.value = mag
    dut.lsb_exp.value = lsb_exp
    await Timer(1, unit="ns")
    expected = fp4_round_to_float(-mag if sign else mag, lsb_exp, p["EBITS"], p["MBITS"], False)
    if mag == 0:
        expected = sign << (p["EBITS"] + p["MBITS"])
    got = dut.bits.value
    assert got.is_resolvable, f"X/Z on bits for sign={sign} mag={mag} lsb_exp={lsb_exp}"
    assert int(got) == expected, f"sign={sign} mag={mag:#x} lsb_exp={lsb_exp}: RTL {int(got):#x}, model {expected:#x}"
    numpy_type = NUMPY_CASTS.get((p["EBITS"], p["MBITS"]))
    if numpy_type is not None:
        exact = np.float64(np.ldexp(float(mag), lsb_exp)) * (-1.0 if sign else 1.0)
        with np.errstate(over="ignore"):
            reference = int(exact.astype(numpy_type[0]).view(numpy_type[1]))
        assert int(got) == reference, (
            f"sign={sign} mag={mag:#x} lsb_exp={lsb_exp}: RTL {int(got):#x}, numpy {reference:#x}"
        )


@cocotb.test()
async def every_16_bit_magnitude(dut) -> None:
    """All 2^16 magnitudes, alternating signs, at LSB exponents that reach subnormals and (FP16) overflow."""
    p = tb_params()
    rng = np.random.default_rng(1)
    exponents = rng.integers(-40, 8, 1 << 16)
    for mag in range(1 << 16):
        await check(dut, mag & 1, mag, int(exponents[mag]), p)


@cocotb.test()
async def wide_magnitudes_and_ties(dut) -> None:
    """Random 40-bit magnitudes, and exact ties / near-ties at every drop position."""
    p = tb_params()
    rng = np.random.default_rng(2)
    for _ in range(20_000):
        bits = int(rng.integers(1, MAG_BITS + 1))
        await check(dut, int(rng.integers(2)), int(rng.integers(0, 1 << bits)), int(rng.integers(-60, 10)), p)
    for drop in range(1, MAG_BITS - p["MBITS"]):
        for q in (1 << p["MBITS"], (1 << p["MBITS"]) + 1, (1 << (p["MBITS"] + 1)) - 1):
            base = q << drop
            for delta in (-1, 0, 1):
                for half in (0, 1 << (drop - 1)):
                    mag = base + half + delta
                    if 0 < mag < 1 << MAG_BITS:
                        await check(dut, 0, mag, -20, p)


@pytest.mark.parametrize("out", list(OUTPUT_FORMATS))
def test_fp4_round_to_float(out: str, simulator: str) -> None:
    fmt = OUTPUT_FORMATS[out]
    bias = (1 << (fmt.ebits - 1)) - 1
    params = {"MAG_BITS": MAG_BITS, "EXP_BITS": 12, "EBITS": fmt.ebits, "MBITS": fmt.mbits, "BIAS": bias, "IEEE": 1}
    run_testbench("fp4_round_to_float", "test_fp4_round_to_float", params, simulator=simulator)
