"""Break the RTL on purpose and show the testbenches notice.

    python tb/mutation_check.py        (make mutation-check)

Each mutation edits one line of a copy of rtl/, runs the testbench that
should catch it under Icarus (FP4SIM_RTL_DIR points the benches at the
copy; an Icarus build takes about a second, a Verilator one several), and reports
whether it failed as it should. Exits non-zero if any mutation
survives. Not part of `make test`: every mutation costs a rebuild.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

TB = Path(__file__).resolve().parent
RTL = TB.parent / "rtl"


class Mutation(NamedTuple):
    name: str
    file: str
    original: str
    mutant: str
    bench: str  # pytest node selection under tb/


MUTATIONS = [
    Mutation(
        "drop the sticky bit",
        "fp4_round_to_float.sv",
        "if (drop >= 2 && drop <= MAG_BITS) sticky",
        "if (1'b0) sticky",
        "test_fp4_round_to_float.py::test_fp4_round_to_float[icarus-fp32]",
    ),
    Mutation(
        "flip the ties-to-even condition",
        "fp4_round_to_float.sv",
        "if (guard && (sticky || q[0]))",
        "if (guard && (sticky || !q[0]))",
        "test_fp4_encode.py::test_fp4_encode[icarus-E2M1]",
    ),
    Mutation(
        "ignore the rounding carry into the next binade",
        "fp4_round_to_float.sv",
        "if (q[QW-1]) begin",
        "if (1'b0) begin",
        "test_fp4_round_to_float.py::test_fp4_round_to_float[icarus-bf16]",
    ),
    Mutation(
        "off-by-one in the exponent-bias shift",
        "fp4_pe_product.sv",
        "if (SHIFT_BITS > 0) amount = amount - 32'(s);",
        "if (SHIFT_BITS > 0) amount = amount - 32'(s) + (s == 0 ? 0 : 1);",
        "test_fp4_pe_product.py::test_fp4_pe_product[icarus-E2M1-E2M1]",
    ),
    Mutation(
        "encoder shift off by one",
        "fp4_encode.sv",
        "if (SHIFT_BITS > 0) exponent = exponent + 32'(shift);",
        "if (SHIFT_BITS > 0) exponent = exponent + 32'(shift) + (shift == 3 ? 1 : 0);",
        "test_fp4_encode.py::test_fp4_encode[icarus-E2M1]",
    ),
    Mutation(
        "wrong row skew (one stage too many)",
        "fp4_array.sv",
        "fp4_delay_line #(.WIDTH(AH), .DEPTH(r)) skew",
        "fp4_delay_line #(.WIDTH(AH), .DEPTH(r + 1)) skew",
        "test_fp4_array.py::test_fp4_array[icarus-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "out_valid ignores in_valid (dishonest valid flag)",
        "fp4_pe.sv",
        "out_valid <= valid_left && last_left;",
        "out_valid <= last_left;",
        "test_fp4_array.py::test_fp4_array[icarus-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "reset leaves the accumulator alone",
        "fp4_pe.sv",
        "      acc <= '0;\n      out_valid <= 1'b0;",
        "      out_valid <= 1'b0;",
        "test_fp4_array.py::test_fp4_array[icarus-E2M1xE2M1-4x4-e8m23]",
    ),
    Mutation(
        "NaN keeps its sign",
        "fp4_encode.sv",
        "if (is_nan) code = {~sign,",
        "if (is_nan) code = {sign,",
        "test_fp4_encode.py::test_fp4_encode[icarus-E1M2]",
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
        "test_fp4_operand_decode.py::test_fp4_operand_decode[icarus-2-1]",
    ),
    Mutation(
        "skew line ignores reset",
        "fp4_delay_line.sv",
        "stages <= rst ? '0 : {stages[(DEPTH-1)*WIDTH-1:0], in};",
        "stages <= {stages[(DEPTH-1)*WIDTH-1:0], in};",
        "test_fp4_delay_line.py::test_fp4_delay_line[icarus-2]",
    ),
    Mutation(
        "out_valid ignores in_valid, at the PE's own bench",
        "fp4_pe.sv",
        "out_valid <= valid_left && last_left;",
        "out_valid <= last_left;",
        "test_fp4_pe.py::test_fp4_pe[icarus-E2M1xE2M1-s2-e8m23]",
    ),
    Mutation(
        "MAC accumulates while valid is low",
        "fp4_mac.sv",
        "else if (valid) acc <= acc + ACC_BITS'(product);",
        "else acc <= acc + ACC_BITS'(product);",
        "test_fp4_mac.py::test_fp4_mac[icarus-E2M1-E2M1-2]",
    ),
]


def run(mutation: Mutation) -> tuple[bool, str]:
    """(caught, first assertion line) for one mutation."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "rtl"
        shutil.copytree(RTL, copy)
        target = copy / mutation.file
        text = target.read_text()
        if text.count(mutation.original) != 1:
            raise SystemExit(f"{mutation.name}: the original text is not found exactly once in {mutation.file}")
        target.write_text(text.replace(mutation.original, mutation.mutant))
        env = {**os.environ, "FP4SIM_RTL_DIR": str(copy)}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", mutation.bench],
            cwd=TB,
            env=env,
            capture_output=True,
            text=True,
        )
    evidence = next((line.strip() for line in result.stdout.splitlines() if "AssertionError" in line), "")
    return result.returncode != 0, evidence


def main() -> None:
    print("| mutation | file | testbench | caught | first failure |")
    print("|---|---|---|---|---|")
    survivors = 0
    for mutation in MUTATIONS:
        caught, evidence = run(mutation)
        survivors += not caught
        verdict = "yes" if caught else "NO"
        print(f"| {mutation.name} | {mutation.file} | `{mutation.bench}` | {verdict} | {evidence[:110]} |")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
