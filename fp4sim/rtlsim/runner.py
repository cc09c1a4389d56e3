"""Build and run one cocotb testbench under Icarus Verilog, for tb/ (pytest, `make sim`) and `fp4sim cosim`.

A top's sources are the files its filelist ``rtl/<top>.f`` names, in order.
One build directory per (toplevel, parameter set), under tb/sim_build/. The
parameters also reach the testbench as JSON in FP4SIM_TB_PARAMS, so the
Python model is configured from the same values as the RTL. WAVES=1 in the
environment writes an FST waveform into the build directory.
FP4SIM_RTL_DIR points the benches at another copy of rtl/ (builds go under
that directory); tb/mutation_check.py uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from ..formats import get_format
from ..hw.fp4_pkg import K_MAX_DEFAULT, PEConfig

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the source tree: rtl/ and tb/ beside fp4sim/
TB_DIR = SOURCE_ROOT / "tb"
RTL_DIR = Path(os.environ.get("FP4SIM_RTL_DIR", SOURCE_ROOT / "rtl"))
BUILD_ROOT = RTL_DIR / "sim_build" if "FP4SIM_RTL_DIR" in os.environ else TB_DIR / "sim_build"
PARAMS_ENV = "FP4SIM_TB_PARAMS"
SUMMARIES: list[str] = []  # one line per testbench run, printed by tb/conftest.py


def filelist(toplevel: str, rtl_dir: Path = RTL_DIR) -> list[Path]:
    """The sources of `toplevel` in compile order: rtl/<toplevel>.f, one file name per line, // comments."""
    listing = rtl_dir / f"{toplevel}.f"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} does not exist: every RTL top has a filelist in {rtl_dir}")
    names = [line.strip() for line in listing.read_text().splitlines()]
    return [rtl_dir / name for name in names if name and not name.startswith("//")]


def run_testbench(
    toplevel: str,
    test_module: str,
    parameters: dict[str, int],
    extra_env: dict[str, str] | None = None,
    build_root: Path = BUILD_ROOT,
) -> str:
    """Compile `toplevel`'s filelist with `parameters` and run `test_module`'s cocotb tests (a module in tb/).

    Returns the regression summary line (TESTS/PASS/FAIL/SKIP); a failing test raises.
    """
    from cocotb_tools.runner import get_runner

    waves = os.environ.get("WAVES", "0") not in ("", "0")
    tag = "-".join(f"{key}{value}" for key, value in sorted(parameters.items())) or "default"
    build_dir = build_root / f"{toplevel}-{tag}{'-waves' if waves else ''}"  # waves need their own build
    runner = get_runner("icarus")
    runner.build(
        sources=filelist(toplevel),
        hdl_toplevel=toplevel,
        parameters=parameters,
        build_dir=build_dir,
        timescale=("1ns", "1ps"),
        waves=waves,
    )
    results = runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        test_dir=TB_DIR,
        extra_env={PARAMS_ENV: json.dumps(parameters), **(extra_env or {})},
        waves=waves,
        results_xml=str(build_dir / f"{test_module}.results.xml"),
    )
    summary = f"{build_dir.name}: {_summary(results)}"
    SUMMARIES.append(summary)
    return summary


def _summary(results_xml: Path) -> str:
    cases = list(ET.parse(results_xml).getroot().iter("testcase"))
    failed = sum(case.find("failure") is not None or case.find("error") is not None for case in cases)
    skipped = sum(case.find("skipped") is not None for case in cases)
    passed = len(cases) - failed - skipped
    return f"TESTS={len(cases)} PASS={passed} FAIL={failed} SKIP={skipped}"


def tb_params() -> dict[str, int]:
    """Inside a running testbench: the parameters the RTL was built with."""
    return json.loads(os.environ[PARAMS_ENV])


def tb_pe_config() -> PEConfig:
    """Inside a running testbench: the golden model's PEConfig for the RTL's A_/W_ format and shift parameters."""
    p = tb_params()
    fmt_a = get_format(f"E{p['A_EBITS']}M{p['A_MBITS']}", bias=p.get("A_BIAS"))
    fmt_w = get_format(f"E{p['W_EBITS']}M{p['W_MBITS']}", bias=p.get("W_BIAS"))
    return PEConfig(fmt_a, fmt_w, p["SHIFT_BITS"], p.get("K_MAX", K_MAX_DEFAULT))


def check_tools() -> None:
    """FileNotFoundError unless the source tree, Icarus Verilog and cocotb are all here."""
    if not (RTL_DIR / "fp4_array.f").is_file() or not TB_DIR.is_dir():
        raise FileNotFoundError(f"the RTL flow needs the fp4sim source tree (rtl/ and tb/ in {SOURCE_ROOT})")
    if shutil.which("iverilog") is None:
        raise FileNotFoundError("the RTL flow needs Icarus Verilog: apt-get install iverilog (or make sysdeps)")
    try:
        import cocotb_tools  # noqa: F401
    except ImportError:
        raise FileNotFoundError("the RTL flow needs cocotb: pip install 'fp4sim[rtl]'") from None
