"""fp4_pe against its golden twin: random operands, valid and last flags and resets, every port checked every edge.

The accumulator, out_valid and out_data follow fp4sim.hw.fp4_pe (out_data holds the last result and is 0
after reset, spec 3.3); the pass-through ports are the inputs one edge later. While valid_left is low the data
inputs are X under Icarus (random junk under two-state Verilator), and out_valid / out_data must never be X.
"""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from fp4sim import PEConfig
from fp4sim.hw.fp4_pe import fp4_pe
from fp4sim.hw.fp4_pe_product import product_table
from fp4sim.rtlsim.mac_driver import four_state
from fp4sim.rtlsim.runner import run_testbench, tb_params, tb_pe_config

PASS_THROUGH = ("a", "valid", "last", "w", "s")  # input x_left / x_top leaves as x_right / x_down


@cocotb.test()
async def random_tiles_and_resets(dut) -> None:
    p, config = tb_params(), tb_pe_config()
    products = product_table(config)
    rng = np.random.default_rng(8)
    x_when_idle = four_state()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    acc, out_data, held = 0, 0, dict.fromkeys(PASS_THROUGH, 0)
    for t in range(3000):
        rst = t == 0 or rng.random() < 0.01
        drive = {
            "a": int(rng.integers(0, 1 << config.fmt_a.nbits)),
            "valid": int(rng.random() < 0.8),
            "last": int(rng.random() < 0.1),
            "w": int(rng.integers(0, 1 << config.fmt_w.nbits)),
            "s": int(rng.integers(0, config.max_shift + 1)),
        }
        dut.rst.value, dut.valid_left.value = int(rst), drive["valid"]
        for port, name in ((dut.a_left, "a"), (dut.last_left, "last"), (dut.w_top, "w"), (dut.s_top, "s")):
            port.value = drive[name] if drive["valid"] or not x_when_idle else LogicArray("X" * len(port))
        await FallingEdge(dut.clk)
        if rst:
            acc, out_valid, out_data, held = 0, False, 0, dict.fromkeys(PASS_THROUGH, 0)
        else:
            acc, out_valid, bits = fp4_pe(
                acc, drive["a"], drive["w"], drive["s"], bool(drive["valid"]), bool(drive["last"]),
                products, config.lsb_exponent, p["OUT_EBITS"], p["OUT_MBITS"],
            )  # fmt: skip
            out_data = int(bits) if out_valid else out_data
            held = drive
        got = {
            "out_valid": dut.out_valid.value, "out_data": dut.out_data.value,
            "a": dut.a_right.value, "valid": dut.valid_right.value, "last": dut.last_right.value,
            "w": dut.w_down.value, "s": dut.s_down.value,
        }  # fmt: skip
        assert got["out_valid"].is_resolvable and got["out_data"].is_resolvable, f"X/Z on a result at edge {t}"
        if (
            not rst and not drive["valid"] and x_when_idle
        ):  # X went in, so X comes out of the pass-through data registers
            got = {k: v for k, v in got.items() if k in ("out_valid", "out_data", "valid")}
        assert all(v.is_resolvable for v in got.values()), f"X/Z on an output at edge {t}"
        expected = {"out_valid": int(out_valid), "out_data": out_data, **held}
        expected = {k: v for k, v in expected.items() if k in got}
        assert {k: int(v) for k, v in got.items()} == expected, f"edge {t}: RTL {got}, model {expected}"


PE_BUILDS = [
    # (A, W, shift bits, K_max, output (ebits, mbits))
    ("E2M1", "E2M1", 2, 65536, (8, 23)),
    ("E3M0", "E1M2", 3, 4096, (8, 7)),
    ("E1M2", "E2M1", 0, 300, (5, 10)),
]


@pytest.mark.parametrize("build", PE_BUILDS, ids=lambda b: f"{b[0]}x{b[1]}-s{b[2]}-e{b[4][0]}m{b[4][1]}")
def test_fp4_pe(build: tuple, simulator: str) -> None:
    fa, fw, shift_bits, k_max, (out_e, out_m) = build
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=k_max)
    a, w = config.fmt_a, config.fmt_w
    params = {
        "A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits, "SHIFT_BITS": shift_bits,
        "ACC_BITS": config.acc_bits, "LSB_EXP": config.lsb_exponent, "OUT_EBITS": out_e, "OUT_MBITS": out_m,
    }  # fmt: skip
    run_testbench("fp4_pe", "test_fp4_pe", params, simulator=simulator)
