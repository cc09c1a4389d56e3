"""fp4_block_pe against its golden twin fp4sim.hw.fp4_block_pe (docs/spec.md 8.4-8.6): random groups with extreme
and NaN scales, valid and last flags and resets; done, the drain port and the pass-through registers checked on
every edge. While valid_left is low the data inputs are X under Icarus (junk under two-state Verilator), and done
and drain must never be X."""

from __future__ import annotations

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from cocotb.types import LogicArray

from fp4sim.hw.fp4_block_pe import BlockPEState, fp4_block_pe
from fp4sim.hw.fp4_block_term import fp4_block_term
from fp4sim.hw.fp4_pkg import BlockConfig
from fp4sim.rtlsim.mac_driver import four_state
from fp4sim.rtlsim.runner import run_testbench, tb_block_config

DATA = ("a_left", "a_scale_left", "last_left", "w_top", "w_scale_top")
SCALES = {"mxfp4": (0x00, 0x7F, 0x80, 0xFE, 0xFF), "nvfp4": (0x00, 0x01, 0x38, 0x7E, 0x7F, 0xB8)}


def random_inputs(rng: np.random.Generator, config: BlockConfig) -> dict[str, int]:
    def scale() -> int:
        return int(rng.choice(SCALES[config.block_format])) if rng.random() < 0.1 else int(rng.integers(0x70, 0x88))

    return {
        "a_left": int(rng.integers(0, 1 << 63)) << 1 | int(rng.integers(2)),
        "w_top": int(rng.integers(0, 1 << 63)) << 1 | int(rng.integers(2)),
        "a_scale_left": scale(), "w_scale_top": scale(),
        "valid_left": int(rng.random() < 0.8), "last_left": int(rng.random() < 0.15),
    }  # fmt: skip


def lanes(bus: int) -> list[int]:
    return [bus >> (4 * j) & 0xF for j in range(16)]


@cocotb.test()
async def random_tiles_and_resets(dut) -> None:
    config = tb_block_config()
    width = config.acc_bits if config.exact else 32
    rng = np.random.default_rng(41)
    x_when_idle = four_state()
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    state, held = BlockPEState(), None
    for t in range(1500):
        rst = t == 0 or rng.random() < 0.01
        drive = random_inputs(rng, config)
        dut.rst.value, dut.valid_left.value = int(rst), drive["valid_left"]
        for name in DATA:
            port = getattr(dut, name)
            port.value = drive[name] if drive["valid_left"] or not x_when_idle else LogicArray("X" * len(port))
        await FallingEdge(dut.clk)
        if rst:
            state, held = BlockPEState(), None
        else:
            valid = bool(drive["valid_left"])
            term = None
            if valid:
                a, w = lanes(drive["a_left"]), lanes(drive["w_top"])
                term = fp4_block_term(a, w, drive["a_scale_left"], drive["w_scale_top"], config.nvfp4)
            fp4_block_pe(state, term, bool(drive["last_left"]), config)
            held = drive if valid or not x_when_idle else None
        done, drain = dut.done.value, dut.drain.value
        assert done.is_resolvable and drain.is_resolvable, f"X/Z on done or drain at edge {t}"
        want_drain = (int(state.nan) << width | state.acc & ((1 << width) - 1)) if state.done else 0
        assert (int(done), int(drain)) == (int(state.done), want_drain), (
            f"edge {t}: RTL done {int(done)} drain {int(drain):#x}, model {int(state.done)} {want_drain:#x}"
        )
        outputs = {"a_right": "a_left", "a_scale_right": "a_scale_left", "last_right": "last_left",
                   "w_down": "w_top", "w_scale_down": "w_scale_top", "valid_right": "valid_left"}  # fmt: skip
        for out, name in outputs.items():
            if held is None and out != "valid_right":
                continue  # reset clears them to 0; X went in on an idle edge under Icarus
            want = 0 if rst else drive[name]
            assert int(getattr(dut, out).value) == want, f"edge {t}: {out}"


PE_BUILDS = [  # (block format, accumulator, N, F, K_MAX)
    (0, 0, 35, 4, 4096),
    (1, 0, 35, 4, 65536),
    (1, 1, 35, 4, 65536),
    (0, 1, 13, 1, 65536),
    (1, 1, 25, 3, 65536),
]


def build_id(build: tuple) -> str:
    block_format, acc_mode, frac_bits, fused, k_max = build
    mode = f"aligned{frac_bits}x{fused}" if acc_mode else f"exact{k_max}"
    return f"{('mxfp4', 'nvfp4')[block_format]}-{mode}"


@pytest.mark.parametrize("build", PE_BUILDS, ids=build_id)
def test_fp4_block_pe(build: tuple, simulator: str) -> None:
    block_format, acc_mode, frac_bits, fused, k_max = build
    params = {"BLOCK_FORMAT": block_format, "ACC_MODE": acc_mode, "FRAC_BITS": frac_bits, "FUSED_GROUPS": fused,
              "K_MAX": k_max}  # fmt: skip
    run_testbench("fp4_block_pe", "test_fp4_block_pe", params, simulator=simulator)
