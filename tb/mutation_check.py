"""Break the RTL on purpose and show the testbenches notice.

    python tb/mutation_check.py [--sim verilator|icarus]        (make mutation-check [MUTATION_SIM=icarus])

Each mutation edits one line of a copy of rtl/, runs the testbench that
should catch it under Verilator (default) or Icarus (FP4SIM_RTL_DIR points
the benches at the copy), and reports whether it failed as it should. The
copy lives in tb/sim_build/mutants/<digest of its sources>/, its builds
under it, so a rerun reuses every build whose sources are unchanged. Every
module of rtl/*.sv has at least one mutation (the check refuses to run
otherwise). fp4_pkg's bench evaluates the package's functions under Icarus
whatever --sim says. Exits non-zero if any mutation survives. Not part of
`make test`: every mutation costs a build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

TB = Path(__file__).resolve().parent
RTL = TB.parent / "rtl"
MUTANTS = TB / "sim_build" / "mutants"
SIMULATORS = ("verilator", "icarus")


class Mutation(NamedTuple):
    name: str
    file: str
    original: str
    mutant: str
    bench: str  # pytest node under tb/; {sim} stands for the simulator's parameter id


MUTATIONS = [
    Mutation(
        "drop the sticky bit",
        "fp4_round_to_float.sv",
        "if (drop >= 2 && drop <= MAG_BITS) sticky",
        "if (1'b0) sticky",
        "test_fp4_round_to_float.py::test_fp4_round_to_float[{sim}-fp32]",
    ),
    Mutation(
        "flip the ties-to-even condition",
        "fp4_round_to_float.sv",
        "if (guard && (sticky || q[0]))",
        "if (guard && (sticky || !q[0]))",
        "test_fp4_encode.py::test_fp4_encode[{sim}-E2M1]",
    ),
    Mutation(
        "ignore the rounding carry into the next binade",
        "fp4_round_to_float.sv",
        "if (q[QW-1]) begin",
        "if (1'b0) begin",
        "test_fp4_round_to_float.py::test_fp4_round_to_float[{sim}-bf16]",
    ),
    Mutation(
        "off-by-one in the exponent-bias shift",
        "fp4_pe_product.sv",
        "if (SHIFT_BITS > 0) amount = amount - 32'(s);",
        "if (SHIFT_BITS > 0) amount = amount - 32'(s) + (s == 0 ? 0 : 1);",
        "test_fp4_pe_product.py::test_fp4_pe_product[{sim}-E2M1-E2M1]",
    ),
    Mutation(
        "encoder shift off by one",
        "fp4_encode.sv",
        "if (SHIFT_BITS > 0) exponent = exponent + 32'(shift);",
        "if (SHIFT_BITS > 0) exponent = exponent + 32'(shift) + (shift == 3 ? 1 : 0);",
        "test_fp4_encode.py::test_fp4_encode[{sim}-E2M1]",
    ),
    Mutation(
        "wrong row skew (one stage too many)",
        "fp4_array.sv",
        "fp4_delay_line #(.WIDTH(AH), .DEPTH(r)) skew",
        "fp4_delay_line #(.WIDTH(AH), .DEPTH(r + 1)) skew",
        "test_fp4_array.py::test_fp4_array[{sim}-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "out_valid ignores in_valid (dishonest valid flag)",
        "fp4_pe.sv",
        "out_valid <= valid_left && last_left;",
        "out_valid <= last_left;",
        "test_fp4_array.py::test_fp4_array[{sim}-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "reset leaves the accumulator alone",
        "fp4_pe.sv",
        "      acc <= '0;\n      out_valid <= 1'b0;",
        "      out_valid <= 1'b0;",
        "test_fp4_array.py::test_fp4_array[{sim}-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "NaN keeps its sign",
        "fp4_encode.sv",
        "if (is_nan) code = {~sign,",
        "if (is_nan) code = {sign,",
        "test_fp4_encode.py::test_fp4_encode[{sim}-E1M2]",
    ),
    Mutation(
        "accumulator one bit narrow",
        "fp4_pkg.sv",
        "+ product_shift_max(a_ebits, w_ebits, shift_bits) + 1;",
        "+ product_shift_max(a_ebits, w_ebits, shift_bits);",
        "test_fp4_pkg.py::test_fp4_pkg",
    ),
    Mutation(
        "subnormal exponent taken as field - 1",
        "fp4_operand_decode.sv",
        "assign exp_m1 = normal ? field - 1'b1 : '0;",
        "assign exp_m1 = field - 1'b1;",
        "test_fp4_operand_decode.py::test_fp4_operand_decode[{sim}-2-1]",
    ),
    Mutation(
        "skew line ignores reset",
        "fp4_delay_line.sv",
        "stages <= rst ? '0 : {stages[(DEPTH-1)*WIDTH-1:0], in};",
        "stages <= {stages[(DEPTH-1)*WIDTH-1:0], in};",
        "test_fp4_delay_line.py::test_fp4_delay_line[{sim}-2]",
    ),
    Mutation(
        "out_valid ignores in_valid, at the PE's own bench",
        "fp4_pe.sv",
        "out_valid <= valid_left && last_left;",
        "out_valid <= last_left;",
        "test_fp4_pe.py::test_fp4_pe[{sim}-E2M1xE2M1-s2-e8m23]",
    ),
    Mutation(
        "MAC accumulates while valid is low",
        "fp4_mac.sv",
        "else if (valid) acc <= acc + ACC_BITS'(product);",
        "else acc <= acc + ACC_BITS'(product);",
        "test_fp4_mac.py::test_fp4_mac[{sim}-E2M1-E2M1-2]",
    ),
    Mutation(
        "block scale path: E4M3 subnormal scale given a hidden bit",
        "fp4_block_term.sv",
        "decode_scale = {1'b0, {1'b0, code[2:0]}, 8'd0, 10'h3FA};",
        "decode_scale = {1'b0, {1'b1, code[2:0]}, 8'd0, 10'h3FA};",
        "test_fp4_block_term.py::test_fp4_block_term[{sim}-nvfp4]",
    ),
    Mutation(
        "block scale path: E8M0 NaN code taken as 2^128",
        "fp4_block_term.sv",
        "if (nvfp4 == 0) decode_scale = (code == 8'hFF) ?",
        "if (nvfp4 == 0) decode_scale = (1'b0) ?",
        "test_fp4_block_array.py::test_fp4_block_array[{sim}-mxfp4-exact-3x2]",
    ),
    Mutation(
        "group adder drops lane 15",
        "fp4_block_term.sv",
        "for (j = 0; j < 16; j = j + 1) sum = sum",
        "for (j = 0; j < 15; j = j + 1) sum = sum",
        "test_fp4_block_term.py::test_fp4_block_term[{sim}-mxfp4]",
    ),
    Mutation(
        "fused add rounds to nearest instead of truncating",
        "fp4_block_fused_add.sv",
        ".IEEE(1), .TOWARD_ZERO(1)",
        ".IEEE(1), .TOWARD_ZERO(0)",
        "test_fp4_block_fused_add.py::test_fp4_block_fused_add[{sim}-nvfp4-N35-F4]",
    ),
    Mutation(
        "fused add keeps one fraction bit too many on each term",
        "fp4_block_fused_add.sv",
        "localparam TERM_LEFT = (FRAC_BITS > KE) ? FRAC_BITS - KE : 0;",
        "localparam TERM_LEFT = (FRAC_BITS > KE) ? FRAC_BITS - KE + 1 : 0;",
        "test_fp4_block_array.py::test_fp4_block_array[{sim}-nvfp4-aligned35x4-3x2]",
    ),
    Mutation(
        "truncation overflows to Inf, not the largest finite value",
        "fp4_round_to_float.sv",
        "if (IEEE != 0 && field >= MAX_FIELD && TOWARD_ZERO != 0) begin",
        "if (1'b0) begin",
        "test_fp4_block_fused_add.py::test_fp4_block_fused_add[{sim}-mxfp4-N35-F4]",
    ),
    Mutation(
        "drain: the next tile starts from the finished sum",
        "fp4_block_pe.sv",
        "assign base = done ? '0 : acc;",
        "assign base = acc;",
        "test_fp4_block_array.py::test_fp4_block_array[{sim}-nvfp4-exact-2x3]",
    ),
    Mutation(
        "drain: NaN forgotten after the group that brought it",
        "fp4_block_pe.sv",
        "nan  <= (done ? 1'b0 : nan) | (valid_left & term_nan);",
        "nan  <= valid_left & term_nan;",
        "test_fp4_block_pe.py::test_fp4_block_pe[{sim}-mxfp4-exact4096]",
    ),
    Mutation(
        "drain: out_row always names row 0",
        "fp4_block_array.sv",
        "row = RB'(i);",
        "row = RB'(0);",
        "test_fp4_block_array.py::test_fp4_block_array[{sim}-mxfp4-exact-3x2]",
    ),
    Mutation(
        "exact block accumulator one bit narrow",
        "fp4_pkg.sv",
        "+ block_shift_max(block_format) + 1;",
        "+ block_shift_max(block_format);",
        "test_fp4_pkg.py::test_fp4_pkg_block_widths",
    ),
    Mutation(
        "INT4 activation taken as unsigned",
        "fp4_int4_mac.sv",
        "assign product = 8'(a) * 8'(w);",
        "assign product = 8'($unsigned(a)) * 8'(w);",
        "test_fp4_int4_mac.py::test_fp4_int4_mac[{sim}]",
    ),
]


def mutant_copy(mutation: Mutation) -> Path:
    """rtl/ with `mutation` applied, in a directory named by the digest of its sources (made once)."""
    sources = {path.name: path.read_text() for path in sorted(RTL.iterdir()) if path.is_file()}
    if sources[mutation.file].count(mutation.original) != 1:
        raise SystemExit(f"{mutation.name}: the original text is not found exactly once in {mutation.file}")
    sources[mutation.file] = sources[mutation.file].replace(mutation.original, mutation.mutant)
    digest = hashlib.sha256(repr(sorted(sources.items())).encode()).hexdigest()[:16]
    copy = MUTANTS / digest / "rtl"
    if not copy.is_dir():
        staging = MUTANTS / digest / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, text in sources.items():
            (staging / name).write_text(text)
        staging.rename(copy)
    return copy


def run(mutation: Mutation, simulator: str) -> tuple[bool, str]:
    """(caught, first assertion line) for one mutation under `simulator`."""
    env = {**os.environ, "FP4SIM_RTL_DIR": str(mutant_copy(mutation))}
    node = mutation.bench.format(sim=simulator)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--sim", simulator, node]
    result = subprocess.run(command, cwd=TB, env=env, capture_output=True, text=True)
    evidence = next((line.strip() for line in result.stdout.splitlines() if "AssertionError" in line), "")
    return result.returncode != 0, evidence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)")
    simulator = parser.parse_args().sim
    modules = sorted(path.name for path in RTL.glob("*.sv"))
    uncovered = sorted(set(modules) - {mutation.file for mutation in MUTATIONS})
    if uncovered:
        raise SystemExit(f"no mutation for {', '.join(uncovered)}: every RTL module needs one")
    print("| mutation | file | testbench | caught | seconds | first failure |")
    print("|---|---|---|---|---|---|")
    survivors, start = 0, time.perf_counter()
    for mutation in MUTATIONS:
        began = time.perf_counter()
        caught, evidence = run(mutation, simulator)
        survivors += not caught
        verdict = "yes" if caught else "NO"
        bench = mutation.bench.format(sim=simulator)
        seconds = time.perf_counter() - began
        print(f"| {mutation.name} | {mutation.file} | `{bench}` | {verdict} | {seconds:.0f} | {evidence[:110]} |")
    print(
        f"\n{simulator}: {len(MUTATIONS) - survivors} of {len(MUTATIONS)} mutations caught, over all "
        f"{len(modules)} modules of rtl/ ({', '.join(modules)}), in {time.perf_counter() - start:.0f} s"
    )
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
