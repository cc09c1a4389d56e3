"""The layout rules of docs/spec.md section 5: every RTL module, its golden twin and its testbench share one name,
and every top has a filelist that compiles it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fp4sim.rtlsim.runner import RTL_DIR, TB_DIR, filelist

HW_DIR = Path(__file__).resolve().parents[1] / "fp4sim" / "hw"
MODULES = sorted(path.stem for path in RTL_DIR.glob("*.sv") if path.stem != "fp4_pkg")


def test_the_rtl_is_all_there():
    assert len(MODULES) >= 9 and (RTL_DIR / "fp4_pkg.sv").is_file()


@pytest.mark.parametrize("name", MODULES)
def test_module_twin_and_testbench_share_the_name(name: str) -> None:
    source = (RTL_DIR / f"{name}.sv").read_text()
    assert re.findall(r"^module (\w+)", source, re.M) == [name], f"{name}.sv must hold exactly module {name}"
    assert name.startswith("fp4_"), "every RTL module carries the fp4_ prefix"
    twin = HW_DIR / f"{name}.py"
    assert twin.is_file(), f"no golden twin fp4sim/hw/{name}.py"
    assert f"rtl/{name}.sv" in twin.read_text(), f"fp4sim/hw/{name}.py does not name the module it models"
    assert (TB_DIR / f"test_{name}.py").is_file(), f"no testbench tb/test_{name}.py"
    assert re.search(rf"^def test_{name}\(", (TB_DIR / f"test_{name}.py").read_text(), re.M)


@pytest.mark.parametrize("name", MODULES)
def test_filelist_names_existing_sources_ending_with_the_top(name: str) -> None:
    sources = filelist(name)
    assert all(path.is_file() for path in sources), f"rtl/{name}.f names a missing file"
    assert sources[-1].name == f"{name}.sv" and len(set(sources)) == len(sources)
    used = set(re.findall(r"^\s*(fp4_\w+)\s+#\(", (RTL_DIR / f"{name}.sv").read_text(), re.M))
    listed = {path.stem for path in sources}
    assert used <= listed, f"rtl/{name}.f lacks the modules {name} instantiates: {sorted(used - listed)}"
    if "fp4_pkg::" in (RTL_DIR / f"{name}.sv").read_text() or any("fp4_pkg::" in path.read_text() for path in sources):
        assert sources[0].name == "fp4_pkg.sv", f"rtl/{name}.f must list the package first"


def test_width_formulas_live_only_in_the_package():
    """No module spells out the product-shift or accumulator-width formula itself (docs/spec.md 5)."""
    for name in MODULES:
        source = (RTL_DIR / f"{name}.sv").read_text()
        assert "(1 << A_EBITS) - 2" not in source and "$clog2(K_MAX" not in source, f"{name}.sv repeats a width"
