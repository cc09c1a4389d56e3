"""The README's accumulator study: an export's perplexity on the simulator under each accumulation model, timed.

What `fp4sim simulate --quantized EXPORT --text TEXT --accum A,B,...` computes (the same functions: the FP32 model
and the torch path once, then `simulate_model` per accumulation model, every quantized matmul checked against the
torch path), with two differences for runs of an hour: the report (report.md, report.json, layer_error.png, the
format of `fp4sim simulate`'s) is rewritten after every accumulation model, so a run stopped early keeps what it
measured, and each pass's wall time goes into wall_time.json and a table at the end of report.md.

    python benchmarks/accumulator_study.py --quantized demo/export --out docs/results/accumulator_study
    python benchmarks/accumulator_study.py --quantized nvfp4/ --out docs/results/accumulator_study_nvfp4 \\
        --accum exact,fp32_sequential,aligned_truncate:35,aligned_truncate:25,aligned_truncate:20,\\
aligned_truncate:16,aligned_truncate:13

Exits 1 if exact mode disagrees with the torch path anywhere, as `fp4sim simulate` does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fp4sim.e2e.simulate import (
    SimulationReport,
    check_report_target,
    perplexity_measure,
    simulate_model,
    write_report,
)
from fp4sim.models.checkpoint import load_model
from fp4sim.models.perplexity import tokenize_text
from fp4sim.quant.export import load_export

ROOT = Path(__file__).resolve().parent.parent
STUDY = "exact,fp32_sequential,aligned_truncate:35,aligned_truncate:25,aligned_truncate:13"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quantized", required=True, help="export directory from fp4sim quantize")
    parser.add_argument("--text", default=str(ROOT / "models/shakespeare/valid.txt"))
    parser.add_argument("--accum", default=STUDY, help=f"comma-separated accumulation models (default {STUDY})")
    parser.add_argument("--tokens", type=int, help="the text's first N tokens only (default: all)")
    parser.add_argument("--out", required=True, help="report directory")
    args = parser.parse_args()

    check_report_target(args.out)
    model, tokenizer, metadata = load_export(args.quantized)
    ids = tokenize_text(tokenizer, Path(args.text).read_text(encoding="utf-8"))[: args.tokens]
    measure = perplexity_measure(ids, progress=False)
    scored = f"{max(ids.numel() - 1, 0):,} tokens"
    threads = {"torch": torch.get_num_threads(), "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "default")}
    walls: list[dict] = []

    def timed(label: str, run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = run()
        walls.append({"pass": label, "seconds": round(time.perf_counter() - start, 1)})
        print(f"{label}: {walls[-1]['seconds']} s", flush=True)
        return result

    source = metadata.get("source_model")
    fp32 = timed("FP32", lambda: measure(load_model(source))) if source and Path(source).exists() else None
    on_torch = timed("torch path", lambda: measure(model))
    runs = []
    for accum in args.accum.split(","):
        runs.append(timed(f"simulator {accum}", lambda accum=accum: simulate_model(model, accum, measure)))
        print(runs[-1].scores, flush=True)
        report = SimulationReport(args.quantized, args.text, scored, fp32, on_torch, runs)
        write_report(report, args.out)
        write_wall_times(Path(args.out), walls, threads, os.getloadavg())
    return 0 if all(run.all_identical for run in runs if run.accum == "exact") else 1


def write_wall_times(out: Path, walls: list[dict], threads: dict, load: tuple) -> None:
    """wall_time.json, and the same as a table appended to report.md."""
    (out / "wall_time.json").write_text(json.dumps({"threads": threads, "passes": walls}, indent=2) + "\n")
    lines = [
        "",
        "## Wall time per pass",
        "",
        f"Threads: torch {threads['torch']}, Numba {threads['NUMBA_NUM_THREADS']}; load average at the last write "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min). A simulator pass includes the torch path "
        "that the per-layer check runs on the same operands.",
        "",
        "| pass | wall time (s) |",
        "|---|---|",
        *(f"| {wall['pass']} | {wall['seconds']:.1f} |" for wall in walls),
    ]
    with open(out / "report.md", "a", encoding="utf-8") as report:
        report.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
