"""Cost against accuracy for the block datapath (issue #17 step 5): PE transistors beside perplexity, per format.

Reads the Yosys sweep (`hardware_cost.py --accumulator-sweep`) and the accumulator studies
(`accumulator_study.py`, one report per export on the whole validation split), prints one markdown table per block
format (accumulator | PE transistors | perplexity) with the LLM-FP4 PE and the INT4 MAC for reference, and plots
transistors (x) against perplexity (y), one series per format.

    python benchmarks/accumulator_cost.py --cost docs/results/accumulator_cost.json \\
        --study mxfp4=docs/results/accumulator_study_mxfp4 nvfp4=docs/results/accumulator_study_nvfp4 \\
        "LLM-FP4=docs/results/accumulator_study" --plot docs/img/accumulator_cost.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ("exact", "aligned_truncate:35", "aligned_truncate:25", "aligned_truncate:20", "aligned_truncate:16")
ORDER += ("aligned_truncate:13",)
FORMATS = ("mxfp4", "nvfp4")
REFERENCES = ("LLM-FP4 PE", "INT4 MAC")


def load_study(directory: Path) -> dict:
    """{accum: perplexity} and what was scored, from a study's report.json."""
    report = json.loads((directory / "report.json").read_text())
    return {
        "scored": report["scored"],
        "torch": report["perplexity"]["torch"],
        "fp32": report["perplexity"]["fp32"],
        "perplexity": {run["accum"]: run["perplexity"] for run in report["simulator"]},
    }


def tables(cost: dict, studies: dict[str, dict]) -> str:
    designs = {(row["format"], row["accum"]): row for row in cost["designs"]}
    lines: list[str] = []
    for name in FORMATS:
        study = studies.get(name)
        scored = f", {study['scored']} scored" if study else ""
        lines += [
            f"**{name.upper()}** (PE: `fp4_block_pe`, G = 64, no converter; perplexity: the bundled model's "
            f"{name} export on the simulator{scored})",
            "",
            "| accumulator | PE cells | PE flip-flops | PE transistors | perplexity |",
            "|---|---|---|---|---|",
        ]
        for accum in ORDER:
            row = designs.get((name, accum))
            ppl = study["perplexity"].get(accum) if study else None
            lines.append(
                f"| {accum} | {_cell(row, 'cells')} | {_cell(row, 'flip_flops')} | {_cell(row, 'transistors')} "
                f"| {'not run' if ppl is None else f'{ppl:.4f}'} |"
            )
        lines.append("")
    llm = studies.get("LLM-FP4")
    lines += ["For reference (the designs of `make synth`):", "", "| design | cells | flip-flops | transistors |"]
    lines.append("|---|---|---|---|")
    for name in REFERENCES:
        row = designs.get((name, "exact"))
        lines.append(f"| {name} | {_cell(row, 'cells')} | {_cell(row, 'flip_flops')} | {_cell(row, 'transistors')} |")
    if llm:
        values = ", ".join(f"{accum} {ppl:.4f}" for accum, ppl in llm["perplexity"].items())
        lines += ["", f"LLM-FP4 (fpq 4/4/4) export on the simulator, {llm['scored']}: {values}."]
    return "\n".join(lines) + "\n"


def _cell(row: dict | None, key: str) -> str:
    return "not synthesised" if row is None else str(row[key])


def plot(cost: dict, studies: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = {(row["format"], row["accum"]): row for row in cost["designs"]}
    fig, ax = plt.subplots(figsize=(8, 5))
    scored = {studies[name]["scored"] for name in FORMATS if name in studies}
    for name, marker in zip(FORMATS, ("o", "s"), strict=True):
        points = [
            (designs[(name, accum)]["transistors"], studies[name]["perplexity"][accum], accum)
            for accum in ORDER
            if (name, accum) in designs and name in studies and accum in studies[name]["perplexity"]
        ]
        if not points:
            continue
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=name.upper())
        for x, y, accum in points:
            label = "exact" if accum == "exact" else f"N={accum.split(':')[1]}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(
        xlabel="PE transistors (Yosys, abc -g cmos2; no converter)",
        ylabel=f"perplexity on the simulator ({', '.join(sorted(scored))} of valid.txt)",
        title="Block-scaled FP4 PE: accumulator cost vs the bundled model's perplexity",
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cost", required=True, help="JSON from hardware_cost.py --accumulator-sweep")
    parser.add_argument("--study", nargs="+", default=[], help="NAME=DIR: a report of accumulator_study.py")
    parser.add_argument("--plot", help="PNG to write")
    args = parser.parse_args()
    cost = json.loads(Path(args.cost).read_text())
    studies = {}
    for item in args.study:
        name, _, directory = item.partition("=")
        studies[name] = load_study(Path(directory))
    print(tables(cost, studies))
    if args.plot:
        plot(cost, studies, Path(args.plot))
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
