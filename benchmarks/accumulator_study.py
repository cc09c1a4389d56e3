"""The README's accumulator study: an export's perplexity on the simulator under each accumulation model, timed.

What `fp4sim simulate --quantized EXPORT --text TEXT --accum A,B,...` computes (the same functions: the FP32 model
and the torch path once, then `simulate_model` per accumulation model, every quantized matmul checked against the
torch path), with two differences for runs of an hour: the report (report.md, report.json, layer_error.png, the
format of `fp4sim simulate`'s) is rewritten after every accumulation model, so a run stopped early keeps what it
measured, and each pass's wall and CPU time go into wall_time.json and a table at the end of report.md.
`--resume` keeps the passes a report at --out already holds and runs the others (a stopped run goes on, or a
later pass runs with other code or on another machine: its times say so).

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
    LayerAgreement,
    SimulationReport,
    SimulationResult,
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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the passes a report already at --out holds (same export, text and tokens) and run the rest",
    )
    args = parser.parse_args()

    check_report_target(args.out)
    model, tokenizer, metadata = load_export(args.quantized)
    ids = tokenize_text(tokenizer, Path(args.text).read_text(encoding="utf-8"))[: args.tokens]
    measure = perplexity_measure(ids, progress=False)
    scored = f"{max(ids.numel() - 1, 0):,} tokens"
    threads = {"torch": torch.get_num_threads(), "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", "default")}
    earlier = load_earlier(Path(args.out), args.quantized, args.text, scored) if args.resume else None
    walls: list[dict] = earlier["walls"] if earlier else []

    def timed(label: str, run: Callable[[], Any]) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        result = run()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        walls.append({"pass": label, "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1)})
        print(f"{label}: {walls[-1]['seconds']} s wall, {walls[-1]['cpu_seconds']} s CPU", flush=True)
        return result

    if earlier:
        fp32, on_torch, runs = earlier["fp32"], earlier["torch"], earlier["runs"]
    else:
        source = metadata.get("source_model")
        fp32 = timed("FP32", lambda: measure(load_model(source))) if source and Path(source).exists() else None
        on_torch = timed("torch path", lambda: measure(model))
        runs = []
    done = {run.accum for run in runs}
    for accum in args.accum.split(","):
        if accum in done:
            continue
        runs.append(timed(f"simulator {accum}", lambda accum=accum: simulate_model(model, accum, measure)))
        print(runs[-1].scores, flush=True)
        report = SimulationReport(args.quantized, args.text, scored, fp32, on_torch, runs)
        write_report(report, args.out)
        write_wall_times(Path(args.out), walls, threads, os.getloadavg())
    return 0 if all(run.all_identical for run in runs if run.accum == "exact") else 1


def load_earlier(out: Path, export: str, text: str, scored: str) -> dict | None:
    """The scores, simulator runs and wall times of a report at `out` (None if there is none); ValueError if it
    measured another export, text or number of tokens."""
    if not (out / "report.json").is_file():
        return None
    report = json.loads((out / "report.json").read_text())
    if (report["export"], report["data"], report["scored"]) != (export, text, scored):
        raise ValueError(f"{out} holds a report of {report['export']} on {report['data']} ({report['scored']})")
    names = [name for name in report if name not in ("export", "data", "scored", "simulator")]
    runs = []
    for run in report["simulator"]:
        fields = ("name", "outputs", "identical", "max_abs", "max_rel")
        layers = [LayerAgreement(**{key: layer[key] for key in fields}) for layer in run["layers"]]
        runs.append(SimulationResult(run["accum"], {name: run[name] for name in names}, layers))
    fp32 = None if report[names[0]]["fp32"] is None else {name: report[name]["fp32"] for name in names}
    walls = json.loads((out / "wall_time.json").read_text())["passes"]
    return {"fp32": fp32, "torch": {name: report[name]["torch"] for name in names}, "runs": runs, "walls": walls}


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
        "| pass | wall time (s) | CPU time, all threads (s) |",
        "|---|---|---|",
        *(
            f"| {wall['pass']} | {wall['seconds']:.1f} | {wall.get('cpu_seconds', float('nan')):.1f} |"
            for wall in walls
        ),
    ]
    with open(out / "report.md", "a", encoding="utf-8") as report:
        report.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
