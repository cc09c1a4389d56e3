"""fp4_pe_product against its golden twin fp4sim.hw.fp4_pe_product: every code pair x every shift, all 9 FP4
format pairs."""

from __future__ import annotations

import itertools

import cocotb
import pytest
from cocotb.triggers import Timer

from fp4sim import get_format
from fp4sim.hw.fp4_pe_product import product_table
from fp4sim.rtlsim.runner import run_testbench, tb_pe_config

FP4 = ("E3M0", "E2M1", "E1M2")


@cocotb.test()
async def every_code_pair_and_shift(dut) -> None:
    config = tb_pe_config()
    table = product_table(config)
    for s, a, w in itertools.product(range(config.max_shift + 1), range(16), range(16)):
        dut.a.value, dut.w.value, dut.s.value = a, w, s
        await Timer(1, unit="ns")
        got = dut.p.value
        assert got.is_resolvable, f"X/Z on p for a={a:#x} w={w:#x} s={s}"
        assert got.to_signed() == table[s, a, w], (
            f"a={a:#x} w={w:#x} s={s}: RTL {got.to_signed()}, model {table[s, a, w]}"
        )


@pytest.mark.parametrize(("fa", "fw"), list(itertools.product(FP4, FP4)))
def test_fp4_pe_product(fa: str, fw: str, simulator: str) -> None:
    a, w = get_format(fa), get_format(fw)
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits, "SHIFT_BITS": a.ebits}
    run_testbench("fp4_pe_product", "test_fp4_pe_product", params, simulator=simulator)
