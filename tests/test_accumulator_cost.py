"""The cost-vs-accuracy scripts: the Yosys sweep resumes where it stopped, the table and plot read what runs wrote."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_sweep_lists_every_width_per_format_and_the_references(monkeypatch: pytest.MonkeyPatch) -> None:
    hardware_cost = load_script("hardware_cost", monkeypatch)
    keys = [(fmt, accum, n) for fmt, accum, n, _ in hardware_cost.accumulator_sweep_designs()]
    for fmt in ("mxfp4", "nvfp4"):
        widths = [n for f, accum, n in keys if f == fmt and accum != "exact"]
        assert widths == [13, 16, 20, 25, 35]
        assert (fmt, "exact", None) in keys
    assert keys[-2:] == [("LLM-FP4 PE", "exact", None), ("INT4 MAC", "exact", None)]


def test_sweep_synthesises_only_what_the_file_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hardware_cost = load_script("hardware_cost", monkeypatch)
    ran: list[str] = []

    def design(name: str, transistors: int) -> Callable[[], object]:
        def run() -> object:
            ran.append(name)
            return hardware_cost.Cost(transistors // 4, 1, transistors)

        return run

    fake = [("mxfp4", "aligned_truncate:13", 13, design("a", 400)), ("mxfp4", "exact", None, design("b", 800))]
    monkeypatch.setattr(hardware_cost, "accumulator_sweep_designs", lambda: fake)
    monkeypatch.setattr(hardware_cost, "_yosys_version", lambda: "Yosys test")
    path = tmp_path / "cost.json"
    old = {"format": "mxfp4", "accum": "aligned_truncate:13", "frac_bits": 13, "cells": 1, "flip_flops": 2}
    path.write_text(json.dumps({"designs": [{**old, "transistors": 3, "seconds": 0}]}))
    hardware_cost.accumulator_sweep(path)
    assert ran == ["b"]
    rows = json.loads(path.read_text())["designs"]
    assert [(row["accum"], row["transistors"]) for row in rows] == [("aligned_truncate:13", 3), ("exact", 800)]


def test_table_and_plot_read_the_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accumulator_cost = load_script("accumulator_cost", monkeypatch)
    cost = {
        "designs": [
            {"format": "nvfp4", "accum": "exact", "cells": 10, "flip_flops": 2, "transistors": 56766},
            {"format": "nvfp4", "accum": "aligned_truncate:13", "cells": 11, "flip_flops": 3, "transistors": 84410},
            {"format": "INT4 MAC", "accum": "exact", "cells": 5, "flip_flops": 20, "transistors": 2530},
        ]
    }
    report = {
        "scored": "95,320 tokens",
        "perplexity": {"fp32": 60.0, "torch": 61.5},
        "simulator": [{"accum": "exact", "perplexity": 61.5}, {"accum": "aligned_truncate:13", "perplexity": 61.75}],
    }
    (tmp_path / "nv").mkdir()
    (tmp_path / "nv" / "report.json").write_text(json.dumps(report))
    studies = {"nvfp4": accumulator_cost.load_study(tmp_path / "nv")}
    text = accumulator_cost.tables(cost, studies)
    assert "| exact | 10 | 2 | 56766 | 61.5000 |" in text
    assert "| aligned_truncate:13 | 11 | 3 | 84410 | 61.7500 |" in text
    assert "| aligned_truncate:35 | not synthesised | not synthesised | not synthesised | not run |" in text
    assert "| INT4 MAC | 5 | 20 | 2530 |" in text and "| LLM-FP4 PE | not synthesised" in text
    assert "95,320 tokens scored" in text
    png = tmp_path / "plot.png"
    accumulator_cost.plot(cost, studies, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
