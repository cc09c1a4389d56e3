"""Build and run one cocotb testbench under Icarus Verilog, from pytest or `make sim`.

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
import xml.etree.ElementTree as ET
from pathlib import Path

from cocotb_tools.runner import get_runner

from fp4sim import PEConfig, get_format
from fp4sim.pe import K_MAX_DEFAULT

TB_DIR = Path(__file__).resolve().parent
RTL_DIR = Path(os.environ.get("FP4SIM_RTL_DIR", TB_DIR.parent / "rtl"))
BUILD_ROOT = RTL_DIR / "sim_build" if "FP4SIM_RTL_DIR" in os.environ else TB_DIR / "sim_build"
PARAMS_ENV = "FP4SIM_TB_PARAMS"
SUMMARIES: list[str] = []  # one line per testbench run, printed by tb/conftest.py


def run_testbench(
    toplevel: str,
    test_module: str,
    parameters: dict[str, int],
    sources: list[str],
    extra_env: dict[str, str] | None = None,
    build_root: Path = BUILD_ROOT,
) -> str:
    """Compile `sources` (file names under rtl/) with `parameters` and run `test_module`'s cocotb tests.

    Returns the regression summary line (TESTS/PASS/FAIL/SKIP); a failing test raises.
    """
    waves = os.environ.get("WAVES", "0") not in ("", "0")
    tag = "-".join(f"{key}{value}" for key, value in sorted(parameters.items())) or "default"
    build_dir = build_root / f"{toplevel}-{tag}{'-waves' if waves else ''}"  # waves need their own build
    runner = get_runner("icarus")
    runner.build(
        sources=[RTL_DIR / name for name in sources],
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
