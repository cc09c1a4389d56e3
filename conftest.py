"""Options every test run takes: the simulators the cocotb benches under tb/ run under (--sim), and every cocotb
regression summary printed at the end of the run. At the repository root so that a plain `pytest` (testpaths)
registers --sim before it parses the command line."""

from __future__ import annotations

import pytest

from fp4sim.rtlsim import runner


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim",
        default="icarus",
        help=f"simulators for the cocotb benches, comma-separated: {', '.join(runner.SIMULATORS)} (default icarus)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A bench that takes `simulator` runs once under each simulator named by --sim."""
    if "simulator" in metafunc.fixturenames:
        chosen = [name.strip() for name in metafunc.config.getoption("sim").split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(runner.SIMULATORS))
        if unknown or not chosen:
            raise pytest.UsageError(f"--sim takes {', '.join(runner.SIMULATORS)}, comma-separated; got {unknown}")
        metafunc.parametrize("simulator", chosen)


def pytest_terminal_summary(terminalreporter) -> None:
    if runner.SUMMARIES:
        terminalreporter.section("cocotb regressions")
        for line in runner.SUMMARIES:
            terminalreporter.write_line(line)
