"""fp4_operand_decode against its golden twin: every code of every small format, as the signed integer X (spec 2.1)."""

from __future__ import annotations

import cocotb
import pytest
from cocotb.triggers import Timer

from fp4sim.hw.fp4_operand_decode import fp4_operand_decode
from fp4sim.rtlsim.runner import run_testbench, tb_params


@cocotb.test()
async def every_code(dut) -> None:
    p = tb_params()
    ebits, mbits = p["EBITS"], p["MBITS"]
    for code in range(1 << (1 + ebits + mbits)):
        dut.code.value = code
        await Timer(1, unit="ns")
        sign, significand, exp_m1 = dut.sign.value, dut.significand.value, dut.exp_m1.value
        assert sign.is_resolvable and significand.is_resolvable and exp_m1.is_resolvable, f"X/Z for code {code:#x}"
        got = (-1 if int(sign) else 1) * (int(significand) << int(exp_m1))
        expected = fp4_operand_decode(code, ebits, mbits)
        assert got == expected, (
            f"code {code:#x}: RTL sign {int(sign)} significand {int(significand)} E-1 {int(exp_m1)} = {got}, "
            f"model {expected}"
        )
        assert int(sign) == code >> (ebits + mbits), f"code {code:#x}: sign bit {int(sign)}"


@pytest.mark.parametrize(("ebits", "mbits"), [(3, 0), (2, 1), (1, 2), (4, 3), (5, 2), (2, 3)])
def test_fp4_operand_decode(ebits: int, mbits: int, simulator: str) -> None:
    params = {"EBITS": ebits, "MBITS": mbits}
    run_testbench("fp4_operand_decode", "test_fp4_operand_decode", params, simulator=simulator)
