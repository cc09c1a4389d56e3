"""fp4_block_term against its golden twin fp4sim.hw.fp4_block_term: every E2M1 pair in every lane, each against
the scale extremes (E8M0 2^-127, 1, 2^127, NaN 0xFF; E4M3 zero, subnormals, 448, NaN 0x7F, the sign bit), every
scale code on each side, and random groups (docs/spec.md 8.2, 8.3)."""

from __future__ import annotations

import itertools

import cocotb
import numpy as np
import pytest
from cocotb.triggers import Timer

from fp4sim.hw.fp4_block_term import fp4_block_term
from fp4sim.rtlsim.runner import run_testbench, tb_block_config

SCALE_EXTREMES = {
    "mxfp4": (0x00, 0x01, 0x7F, 0xFE, 0xFF),  # 2^-127, 2^-126, 1, 2^127, NaN
    "nvfp4": (0x00, 0x01, 0x07, 0x08, 0x38, 0x7E, 0x7F, 0x80, 0xB8, 0xFF),  # 0, subnormals, 2^-6, 1, 448, NaN, signed
}


def lanes(codes: np.ndarray) -> int:
    """Sixteen 4-bit codes as one 64-bit bus, lane j at bits [4j +: 4]."""
    return sum(int(c) << (4 * j) for j, c in enumerate(codes))


async def check(dut, a: np.ndarray, w: np.ndarray, a_scale: int, w_scale: int, nvfp4: bool) -> None:
    dut.a.value, dut.w.value, dut.a_scale.value, dut.w_scale.value = lanes(a), lanes(w), a_scale, w_scale
    await Timer(1, unit="ns")
    ports = (dut.nan.value, dut.value.value, dut.shift.value, dut.exponent.value)
    assert all(p.is_resolvable for p in ports), f"X/Z for scales {a_scale:#x} {w_scale:#x}"
    got = (bool(int(ports[0])), ports[1].to_signed(), int(ports[2]), ports[3].to_signed())
    want = fp4_block_term(a, w, a_scale, w_scale, nvfp4)
    want = (want.nan, want.value, want.shift, want.exponent)
    assert got == want, f"a={a.tolist()} w={w.tolist()} scales {a_scale:#x} {w_scale:#x}: RTL {got}, model {want}"


@cocotb.test()
async def every_pair_every_lane_at_scale_extremes(dut) -> None:
    config = tb_block_config()
    pairs = np.array(list(itertools.product(range(16), range(16))), dtype=np.uint8)  # 256 pairs
    for shift in range(16):  # 16 groups of 16 lanes; rolling puts each pair in every lane once
        group = np.roll(pairs, 16 * shift, axis=0).reshape(16, 16, 2)
        for a_scale, w_scale in itertools.product(SCALE_EXTREMES[config.block_format], repeat=2):
            g = group[(shift + a_scale + w_scale) % 16]
            await check(dut, g[:, 0], g[:, 1], a_scale, w_scale, config.nvfp4)


@cocotb.test()
async def every_scale_code_and_random_groups(dut) -> None:
    config = tb_block_config()
    rng = np.random.default_rng(21)
    for code in range(256):
        a, w = rng.integers(0, 16, 16, dtype=np.uint8), rng.integers(0, 16, 16, dtype=np.uint8)
        await check(dut, a, w, code, int(rng.integers(256)), config.nvfp4)
        await check(dut, a, w, int(rng.integers(256)), code, config.nvfp4)
    for _ in range(300):  # largest magnitudes too: all lanes +-6 x +-6
        a = rng.choice([0x7, 0xF], 16).astype(np.uint8) if rng.random() < 0.2 else rng.integers(0, 16, 16, np.uint8)
        w = rng.choice([0x7, 0xF], 16).astype(np.uint8) if rng.random() < 0.2 else rng.integers(0, 16, 16, np.uint8)
        await check(dut, a, w, int(rng.integers(256)), int(rng.integers(256)), config.nvfp4)


@pytest.mark.parametrize("block_format", [0, 1], ids=["mxfp4", "nvfp4"])
def test_fp4_block_term(block_format: int, simulator: str) -> None:
    run_testbench("fp4_block_term", "test_fp4_block_term", {"BLOCK_FORMAT": block_format}, simulator=simulator)
