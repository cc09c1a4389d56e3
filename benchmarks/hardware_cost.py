"""Hardware cost from Yosys: cell counts and transistor estimates for MACs, the PE and a small array.

    python benchmarks/hardware_cost.py          (make synth)
    python benchmarks/hardware_cost.py --block  the block-scaled PEs and arrays of spec 8 (minutes: the
                                                MXFP4 exact accumulator and its converter are 533 bits wide)
    python benchmarks/hardware_cost.py --accumulator-sweep docs/results/accumulator_cost.json
                                                the MXFP4 and NVFP4 PEs, exact and N = 13..35 at G = 64, with
                                                the LLM-FP4 PE and the INT4 MAC beside them, into a JSON file
                                                (rows already there are kept: an interrupted run resumes);
                                                benchmarks/accumulator_cost.py tables and plots it

Each design is synthesised flat with Yosys (`synth`), its flip-flops are
legalised to plain D flip-flops (enables and resets become gates), and ABC
maps the logic to NAND/NOR/NOT (`abc -g cmos2`). `-noalumacc` keeps every
design's multiply and add as separate operators (otherwise Yosys fuses the
INT4 multiply-add into one $macc cell and maps it worse, which would flatter
the FP4 designs). Transistors: Yosys'
`stat -tech cmos` for the gates (NAND2/NOR2 4, NOT 2) plus 20 per D flip-flop
(static master-slave), an estimate, not a layout. Prints markdown tables.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from fp4sim import PEConfig
from fp4sim.hw.fp4_pkg import BlockConfig
from fp4sim.rtlsim.runner import filelist

DFF_TRANSISTORS = 20
PAPER_MAC_AREA_UM2 = {"INT4": 410, "E2M1": 443, "E2M1 x E1M2": 432}  # LLM-FP4 Table 6, 40 nm
K_MAX = 4096  # accumulator depth for the MAC comparison

INT4_MULTIPLIER = """
module int4_mul (input logic signed [3:0] a, input logic signed [3:0] w, output logic signed [7:0] p);
  assign p = 8'(a) * 8'(w);
endmodule
"""


class Cost(NamedTuple):
    cells: int
    flip_flops: int
    transistors: int


def synthesize(top: str, sources: list[Path], params: dict[str, int]) -> Cost:
    """Yosys + ABC (cmos2) on one design; DFFs counted separately."""
    chparams = "".join(f"chparam -set {key} {_verilog_int(value)} {top}; " for key, value in params.items())
    reads = " ".join(str(path) for path in sources)
    script = (
        f"read_verilog -sv {reads}; {chparams}synth -noalumacc -flatten -top {top}; "
        "dfflegalize -cell $_DFF_P_ 01; abc -g cmos2; opt_clean; stat -tech cmos"
    )
    log = subprocess.run(["yosys", "-p", script], check=True, capture_output=True, text=True).stdout
    stats = log[log.rindex("Printing statistics") :]
    cells = int(re.search(r"Number of cells:\s+(\d+)", stats).group(1))
    dffs = sum(int(n) for n in re.findall(r"\$_DFF_P_\s+(\d+)", stats))
    gate_transistors = int(re.search(r"Estimated number of transistors:\s+(\d+)", stats).group(1))
    return Cost(cells, dffs, gate_transistors + DFF_TRANSISTORS * dffs)


def _verilog_int(value: int) -> str:
    """chparam reads no minus sign: negative values go in as 32-bit two's complement."""
    return str(value) if value >= 0 else f"32'sh{value & 0xFFFFFFFF:08X}"


def fp_params(fa: str, fw: str, shift_bits: int) -> tuple[dict[str, int], int]:
    config = PEConfig.make(fa, fw, shift_bits=shift_bits, k_max=K_MAX)
    a, w = config.fmt_a, config.fmt_w
    params = {"A_EBITS": a.ebits, "A_MBITS": a.mbits, "W_EBITS": w.ebits, "W_MBITS": w.mbits, "SHIFT_BITS": shift_bits}
    return params, config.acc_bits


def mac_table() -> list[tuple[str, str, Cost, Cost]]:
    """(name, accumulator description, multiplier cost, MAC cost) for INT4 and the FP4 MACs."""
    with tempfile.NamedTemporaryFile("w", suffix=".sv") as int4_mul:
        int4_mul.write(INT4_MULTIPLIER)
        int4_mul.flush()
        rows = [("INT4", "20 bits", synthesize("int4_mul", [Path(int4_mul.name)], {}), None)]
    rows[0] = (*rows[0][:3], synthesize("fp4_int4_mac", filelist("fp4_int4_mac"), {"ACC_BITS": 20}))
    for name, fa, fw, shift_bits in (
        ("E2M1", "E2M1", "E2M1", 0),
        ("E2M1 + shifter", "E2M1", "E2M1", 2),
        ("E2M1 x E1M2", "E2M1", "E1M2", 0),
        ("E2M1 x E1M2 + shifter", "E2M1", "E1M2", 2),
    ):
        params, acc_bits = fp_params(fa, fw, shift_bits)
        product = synthesize("fp4_pe_product", filelist("fp4_pe_product"), params)
        mac = synthesize("fp4_mac", filelist("fp4_mac"), {**params, "ACC_BITS": acc_bits})
        rows.append((name, f"{acc_bits} bits", product, mac))
    return rows


LLM_FP4_PE = "fp4_pe (E2M1, shift 0..3, K_max 65536, FP32 out)"


def llm_fp4_pe() -> Cost:
    """The LLM-FP4 PE of spec 3.2 with its converter, E2M1 x E2M1."""
    config = PEConfig.make("E2M1", "E2M1")
    return synthesize("fp4_pe", filelist("fp4_pe"), {"ACC_BITS": config.acc_bits, "LSB_EXP": config.lsb_exponent})


def array_table() -> list[tuple[str, Cost]]:
    """The PE with its converter, and a 2 x 2 array, E2M1 x E2M1, FP32 output."""
    rows = [(LLM_FP4_PE, llm_fp4_pe())]
    rows.append(("fp4_array 2x2 (same PE)", synthesize("fp4_array", filelist("fp4_array"), {"ROWS": 2, "COLS": 2})))
    return rows


BLOCK_PES = [  # (block format, accumulator mode, N, F): spec 8
    ("nvfp4", "exact", 35, 4),
    ("nvfp4", "aligned_truncate", 35, 4),
    ("mxfp4", "exact", 35, 4),
    ("mxfp4", "aligned_truncate", 35, 4),
]


ACCUMULATOR_WIDTHS = (13, 16, 20, 25)  # N of aligned_truncate: Hopper FP8 is 13, f16 and f8f6f4 25


def block_name(config: BlockConfig) -> str:
    mode = "exact" if config.exact else f"aligned_truncate:{config.frac_bits}:{16 * config.fused_groups}"
    return f"{config.block_format.upper()} {mode}"


def block_table() -> list[tuple[str, Cost]]:
    """Block-scaled group terms, a fused add, PEs (spec 8), each exact accumulator's converter, 2 x 2 NVFP4 arrays."""
    rows = [
        (
            f"fp4_block_term {name.upper()}",
            synthesize("fp4_block_term", filelist("fp4_block_term"), {"BLOCK_FORMAT": code}),
        )
        for name, code in (("mxfp4", 0), ("nvfp4", 1))
    ]
    fused = {"BLOCK_FORMAT": 1, "FRAC_BITS": 35, "TERMS": 4}
    rows.append(
        (
            "fp4_block_fused_add NVFP4 N 35, 4 terms",
            synthesize("fp4_block_fused_add", filelist("fp4_block_fused_add"), fused),
        )
    )
    for block_format, acc_mode, frac_bits, fused in BLOCK_PES:
        config = BlockConfig(block_format, acc_mode, frac_bits, fused)
        params = config.rtl_parameters(1, 1)
        del params["ROWS"], params["COLS"]
        rows.append(
            (f"fp4_block_pe {block_name(config)}", synthesize("fp4_block_pe", filelist("fp4_block_pe"), params))
        )
        if config.exact:
            converter = {"MAG_BITS": config.acc_bits, "EXP_BITS": 12}
            name = f"its converter (fp4_round_to_float, {config.acc_bits}-bit magnitude)"
            rows.append((name, synthesize("fp4_round_to_float", filelist("fp4_round_to_float"), converter)))
    for frac_bits in ACCUMULATOR_WIDTHS:  # the NVFP4 PE's cost against N (35 is in BLOCK_PES)
        config = BlockConfig("nvfp4", "aligned_truncate", frac_bits, 4)
        params = {key: v for key, v in config.rtl_parameters(1, 1).items() if key not in ("ROWS", "COLS")}
        rows.append(
            (f"fp4_block_pe {block_name(config)}", synthesize("fp4_block_pe", filelist("fp4_block_pe"), params))
        )
    for acc_mode in ("exact", "aligned_truncate"):
        config = BlockConfig("nvfp4", acc_mode)
        cost = synthesize("fp4_block_array", filelist("fp4_block_array"), config.rtl_parameters(2, 2))
        rows.append((f"fp4_block_array 2x2 {block_name(config)}", cost))
    return rows


def print_block_table() -> None:
    print("## Block-scaled PEs and arrays (MXFP4 / NVFP4, spec 8; K_MAX 65536)")
    print()
    print("| design | cells | flip-flops | transistors |")
    print("|---|---|---|---|")
    for name, cost in block_table():
        print(f"| {name} | {cost.cells} | {cost.flip_flops} | {cost.transistors} |", flush=True)


SWEEP_WIDTHS = (*ACCUMULATOR_WIDTHS, 35)


def accumulator_sweep_designs() -> list[tuple[str, str, int | None, Callable[[], Cost]]]:
    """(format, accumulator, N, synthesis) per design of the cost-vs-accuracy sweep (issue #17 step 5).

    Each block format's PE (no converter: exact PEs drain to one per column, spec 8.6) at N = 13..35 with G = 64,
    then exact; then the LLM-FP4 PE of `make synth` (with its own converter) and the INT4 MAC, for reference.
    """
    designs: list[tuple[str, str, int | None, Callable[[], Cost]]] = []
    for block_format in ("mxfp4", "nvfp4"):
        configs = [BlockConfig(block_format, "aligned_truncate", n, 4) for n in SWEEP_WIDTHS]
        for config in [*configs, BlockConfig(block_format, "exact")]:
            params = {key: v for key, v in config.rtl_parameters(1, 1).items() if key not in ("ROWS", "COLS")}
            accum = "exact" if config.exact else f"aligned_truncate:{config.frac_bits}"
            designs.append(
                (
                    block_format,
                    accum,
                    None if config.exact else config.frac_bits,
                    lambda params=params: synthesize("fp4_block_pe", filelist("fp4_block_pe"), params),
                )
            )
    designs.append(("LLM-FP4 PE", "exact", None, llm_fp4_pe))
    designs.append(
        ("INT4 MAC", "exact", None, lambda: synthesize("fp4_int4_mac", filelist("fp4_int4_mac"), {"ACC_BITS": 20}))
    )
    return designs


def accumulator_sweep(path: Path) -> None:
    """Synthesise every design of accumulator_sweep_designs() not yet in the JSON file at `path`, rewriting it after
    each (rows: format, accum, frac_bits, cells, flip_flops, transistors, seconds)."""
    rows = json.loads(path.read_text())["designs"] if path.exists() else []
    done = {(row["format"], row["accum"]) for row in rows}
    for block_format, accum, frac_bits, run in accumulator_sweep_designs():
        if (block_format, accum) in done:
            continue
        start = time.perf_counter()
        cost = run()
        rows.append(
            {
                "format": block_format,
                "accum": accum,
                "frac_bits": frac_bits,
                **cost._asdict(),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        path.write_text(json.dumps({"yosys": _yosys_version(), "designs": rows}, indent=2) + "\n")
        print(rows[-1], flush=True)


def _yosys_version() -> str:
    return subprocess.run(["yosys", "-V"], check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    if "--block" in sys.argv[1:]:
        print_block_table()
        return
    if "--accumulator-sweep" in sys.argv[1:]:
        accumulator_sweep(Path(sys.argv[sys.argv.index("--accumulator-sweep") + 1]))
        return
    rows = mac_table()
    int4_mac = rows[0][3].transistors
    print(f"## MACs (accumulators sized for K_max = {K_MAX}; Yosys + ABC cmos2)")
    print()
    print(
        "| MAC | accumulator | multiplier cells | multiplier transistors | MAC cells | MAC flip-flops "
        "| MAC transistors | vs INT4 MAC | paper area vs INT4 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, acc, product, mac in rows:
        paper = PAPER_MAC_AREA_UM2.get(name)
        paper_ratio = f"{paper / PAPER_MAC_AREA_UM2['INT4']:.2f}" if paper else "-"
        print(
            f"| {name} | {acc} | {product.cells} | {product.transistors} | {mac.cells} | {mac.flip_flops} | "
            f"{mac.transistors} | {mac.transistors / int4_mac:.2f} | {paper_ratio} |"
        )
    print()
    print("## PE and arrays")
    print()
    print("| design | cells | flip-flops | transistors |")
    print("|---|---|---|---|")
    for name, cost in array_table():
        print(f"| {name} | {cost.cells} | {cost.flip_flops} | {cost.transistors} |")


if __name__ == "__main__":
    main()
