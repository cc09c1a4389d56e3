"""Print every cocotb regression summary (tests, pass, fail) at the end of the pytest run."""

from __future__ import annotations

from fp4sim.rtlsim import runner


def pytest_terminal_summary(terminalreporter) -> None:
    if runner.SUMMARIES:
        terminalreporter.section("cocotb regressions (Icarus Verilog)")
        for line in runner.SUMMARIES:
            terminalreporter.write_line(line)
