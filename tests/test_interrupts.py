"""Commands killed mid-run (SIGINT and SIGKILL, at seeded random points) leave no half-written export or report
where the user asked for one, and a re-run then succeeds without --overwrite (issue 19)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fp4sim.quant.export import TENSORS_FILE, load_export

TEXT = Path(__file__).resolve().parents[1] / "models" / "shakespeare" / "valid.txt"
QUICK = ["--method", "minmax", "--calib-samples", "2", "--calib-length", "32"]


def fp4sim(*args: str) -> list[str]:
    return [sys.executable, "-m", "fp4sim.cli", *args]


def run_killed(argv: list[str], after: float, sig: int) -> None:
    """Start `argv`, send `sig` after `after` seconds (if it is still running), wait for it to end."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(sig)
        process.wait(timeout=60)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def kill_points(duration: float, count: int, seed: int) -> list[tuple[float, int]]:
    """`count` (seconds, signal) pairs over the whole run, SIGINT and SIGKILL alternately."""
    times = np.random.default_rng(seed).uniform(0.2, 1.0, count) * duration
    return [(float(t), signal.SIGINT if i % 2 else signal.SIGKILL) for i, t in enumerate(times)]


def test_killed_quantize_leaves_no_partial_export(checkpoint: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    duration = timed(
        fp4sim("quantize", "--model", str(checkpoint), "--calib", str(TEXT), "--out", str(reference), *QUICK)
    )
    expected = (reference / TENSORS_FILE).read_bytes()
    for i, (after, sig) in enumerate(kill_points(duration, 3, seed=19)):
        out = tmp_path / f"q{i}"
        argv = fp4sim("quantize", "--model", str(checkpoint), "--calib", str(TEXT), "--out", str(out), *QUICK)
        run_killed(argv, after, sig)
        if out.exists():  # the kill came after the export was complete: it is whole
            assert (out / TENSORS_FILE).read_bytes() == expected
            load_export(out)
            continue
        assert subprocess.run(argv, capture_output=True).returncode == 0, "a re-run after the kill failed"
        assert (out / TENSORS_FILE).read_bytes() == expected


def test_killed_simulate_leaves_no_partial_report(checkpoint: Path, tmp_path: Path) -> None:
    export = tmp_path / "q"
    subprocess.run(
        fp4sim("quantize", "--model", str(checkpoint), "--calib", str(TEXT), "--out", str(export), *QUICK),
        check=True,
        capture_output=True,
    )
    args = ["simulate", "--quantized", str(export), "--text", str(TEXT), "--tokens", "96", "--context", "32"]
    duration = timed(fp4sim(*args, "--out", str(tmp_path / "reference")))
    for i, (after, sig) in enumerate(kill_points(duration, 3, seed=20)):
        out = tmp_path / f"report{i}"
        run_killed(fp4sim(*args, "--out", str(out)), after, sig)
        if out.exists():
            assert sorted(p.name for p in out.iterdir()) == ["layer_error.png", "report.json", "report.md"]
            json.loads((out / "report.json").read_text())
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.") and sig == signal.SIGINT]
        assert not leftovers, f"Ctrl-C left staging directories: {leftovers}"


def test_a_report_never_replaces_a_foreign_directory(tmp_path: Path) -> None:
    from fp4sim.e2e.simulate import check_report_target

    foreign = tmp_path / "existing"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an fp4sim report"):
        check_report_target(foreign)
    check_report_target(tmp_path / "new")  # a new directory, or an empty one, is fine
    (tmp_path / "empty").mkdir()
    check_report_target(tmp_path / "empty")
