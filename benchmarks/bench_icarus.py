"""RTL simulation speed: the default fp4_array under Icarus Verilog vs the golden cycle-accurate model.

    python benchmarks/bench_icarus.py [--cycles 20000]

Two rates for the same 4 x 4 E2M1 array, in array cycles per second: Icarus
running a plain Verilog stimulus loop (no Python in the loop) and
fp4sim.hw.fp4_array (its golden twin). (The cocotb testbenches, which drive and check every
edge from Python, print their own rate in the regression summary.)
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import best_time

from fp4sim import PEConfig
from fp4sim.hw.fp4_array import fp4_array, schedule_gemm
from fp4sim.rtlsim.runner import filelist

ROWS = COLS = 4

STIMULUS = """
module bench;
  logic clk = 0, rst = 1, in_valid = 0, in_last = 0;
  logic [15:0] a_in = 0, w_in = 0;
  logic [1:0] s_in = 0;
  logic [15:0] out_valid;
  logic [511:0] out_data;
  integer t, pulses = 0;
  fp4_array dut (.*);
  always #5 clk = ~clk;
  initial begin
    @(negedge clk) rst = 0;
    for (t = 0; t < CYCLES; t = t + 1) begin
      in_valid = 1; in_last = ($random % 16) == 0;
      a_in = $random; w_in = $random; s_in = $random;
      @(negedge clk) pulses = pulses + $countones(out_valid);
    end
    $display("pulses %0d", pulses);
    $finish;
  end
endmodule
"""


def icarus_rate(cycles: int) -> float:
    """Array cycles per second of vvp on a plain Verilog stimulus loop (compile time excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp) / "bench.sv"
        bench.write_text(STIMULUS.replace("CYCLES", str(cycles)))
        binary = Path(tmp) / "bench.vvp"
        sources = [str(path) for path in filelist("fp4_array")]
        subprocess.run(["iverilog", "-g2012", "-s", "bench", "-o", str(binary), str(bench), *sources], check=True)
        start = time.perf_counter()
        subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True)
        return cycles / (time.perf_counter() - start)


def model_rate(cycles: int) -> float:
    config = PEConfig.make("E2M1", "E2M1")
    rng = np.random.default_rng(0)
    k = 16
    tiles = max(1, cycles // k)
    a = rng.integers(0, 16, (ROWS * tiles, k), dtype=np.uint8)
    w = rng.integers(0, 16, (k, COLS), dtype=np.uint8)
    stream, _ = schedule_gemm(a, w, np.zeros(k, np.uint8), ROWS, COLS)
    return stream.cycles / best_time(lambda: fp4_array(stream, config), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    args = parser.parse_args()
    icarus = icarus_rate(args.cycles)
    model = model_rate(args.cycles * 50)
    print(f"4 x 4 E2M1 array (shift 0..3, K_max 65536, FP32 out), {args.cycles:,} Icarus cycles")
    print()
    print("| simulator | array cycles/s | PE-cycles/s | vs Icarus |")
    print("|---|---|---|---|")
    print(f"| Icarus Verilog 11, plain Verilog stimulus | {icarus:,.0f} | {icarus * ROWS * COLS:.2e} | 1x |")
    ratio = model / icarus
    print(f"| fp4sim.hw.fp4_array (Numba, 1 thread) | {model:,.0f} | {model * ROWS * COLS:.2e} | {ratio:,.0f}x |")


if __name__ == "__main__":
    main()
