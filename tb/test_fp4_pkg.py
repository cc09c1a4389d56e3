"""rtl/fp4_pkg.sv's width functions against their golden twins fp4sim.hw.fp4_pkg.PEConfig (a sweep of formats,
biases, shift widths and K_max) and BlockConfig (both block formats, K_MAX, N and F), evaluated by Icarus Verilog
(a package has no ports: no cocotb needed)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from fp4sim.formats import llm_fp4_format
from fp4sim.hw.fp4_pkg import BLOCK_FORMAT_CODES, BlockConfig, PEConfig
from fp4sim.rtlsim.runner import RTL_DIR

FUNCTIONS = ("s_max", "product_shift_max", "product_bits", "acc_bits", "lsb_exp")


def configs() -> list[PEConfig]:
    """Every PEConfig the golden model accepts among 4-, 6- and 8-bit formats at three biases each."""
    shapes = [(e, m) for e in range(1, 8) for m in range(0, 7) if 1 + e + m in (4, 6, 8)]
    found = []
    for (ea, ma), (ew, mw) in itertools.product(shapes, shapes):
        for shift_bits, k_max, delta in itertools.product((0, 1, 3), (1, 300, 65536), (-2, 0, 3)):
            a, w = llm_fp4_format(ea, ma), llm_fp4_format(ew, mw)
            try:
                found.append(PEConfig(a.with_bias(a.bias + delta), w, shift_bits, k_max))
            except ValueError:  # accumulator over 64 bits or outside FP32's range: the golden model refuses it
                continue
    return found


def widths(config: PEConfig) -> tuple[int, ...]:
    return (config.max_shift, config.product_shift_max, config.product_bits, config.acc_bits, config.lsb_exponent)


def calls(config: PEConfig) -> list[str]:
    a, w, sb = config.fmt_a, config.fmt_w, config.shift_bits
    return [
        f"fp4_pkg::s_max({sb})",
        f"fp4_pkg::product_shift_max({a.ebits}, {w.ebits}, {sb})",
        f"fp4_pkg::product_bits({a.ebits}, {a.mbits}, {w.ebits}, {w.mbits}, {sb})",
        f"fp4_pkg::acc_bits({a.ebits}, {a.mbits}, {w.ebits}, {w.mbits}, {sb}, {config.k_max})",
        f"fp4_pkg::lsb_exp({a.bias}, {a.mbits}, {w.bias}, {w.mbits}, {sb})",
    ]


def evaluate(tmp_path: Path, rows: list[list[str]]) -> list[tuple[int, ...]]:
    """Each row's package calls evaluated by Icarus, one tuple of integers per row."""
    width = len(rows[0])
    # Each result goes through an integer variable: Icarus prints a function call in $display as unsigned.
    body = [
        "    "
        + " ".join(f"v[{i}] = {call};" for i, call in enumerate(row))
        + f' $display("{" ".join(["%0d"] * width)}", '
        + ", ".join(f"v[{i}]" for i in range(width))
        + ");"
        for row in rows
    ]
    top = f"module widths;\n  integer v[0:{width - 1}];\n  initial begin\n" + "\n".join(body) + "\n  end\nendmodule\n"
    (tmp_path / "widths.sv").write_text(top)
    binary = tmp_path / "widths.vvp"
    sources = [str(RTL_DIR / "fp4_pkg.sv"), str(tmp_path / "widths.sv")]
    subprocess.run(["iverilog", "-g2012", "-s", "widths", "-o", str(binary), *sources], check=True)
    printed = subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True, text=True).stdout
    return [tuple(int(v) for v in line.split()) for line in printed.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (make sysdeps)")
def test_fp4_pkg(tmp_path: Path) -> None:
    sweep = configs()
    assert len(sweep) > 1000  # the sweep reaches well past the defaults
    rows = evaluate(tmp_path, [calls(c) for c in sweep])
    assert len(rows) == len(sweep)
    for config, row in zip(sweep, rows, strict=True):
        assert row == widths(config), f"{config.describe()}: fp4_pkg {dict(zip(FUNCTIONS, row, strict=True))}"


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog (make sysdeps)")
def test_fp4_pkg_block_widths(tmp_path: Path) -> None:
    sweep = [
        BlockConfig(name, "aligned_truncate", n, f, k)
        for name in BLOCK_FORMAT_CODES
        for k in (1, 16, 17, 4096, 65535, 65536)
        for n, f in ((1, 1), (13, 1), (35, 4), (48, 4), (20, 7))
    ]
    rows = []
    for c in sweep:
        fmt = BLOCK_FORMAT_CODES[c.block_format]
        rows.append([
            f"fp4_pkg::block_value_bits({fmt})", f"fp4_pkg::block_shift_max({fmt})",
            f"fp4_pkg::block_term_lsb({fmt})", f"fp4_pkg::block_align_offset({fmt})",
            f"fp4_pkg::block_acc_bits({fmt}, {c.k_max})",
            f"fp4_pkg::block_sum_bits({c.frac_bits}, {c.fused_groups})",
        ])  # fmt: skip
    got = evaluate(tmp_path, rows)
    for config, row in zip(sweep, got, strict=True):
        want = (config.value_bits, config.shift_max, config.term_lsb, config.align_offset, config.acc_bits,
                config.sum_bits)  # fmt: skip
        assert row == want, f"{config}: fp4_pkg {row}, BlockConfig {want}"
