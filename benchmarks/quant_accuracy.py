"""Perplexity of every quantization method x bit setting on a model (the README's accuracy table).

Each setting runs `fp4sim quantize`'s pipeline into a temporary export, then
the export's sliding-window perplexity; FP32 is the unquantized model. Writes
a markdown table and a JSON file.

    python benchmarks/quant_accuracy.py --out docs/results/quant_accuracy
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fp4sim.models.checkpoint import DEFAULT_MODEL, load_pretrained
from fp4sim.models.perplexity import perplexity, tokenize_text
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.quantize import quantize_checkpoint

ROOT = Path(__file__).resolve().parent.parent
METHOD_NAMES = {"minmax": "MinMax FP", "fpq-baseline": "FPQ baseline", "fpq": "FPQ (LLM-FP4)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--calib", default=str(ROOT / "models/shakespeare/train.txt"))
    parser.add_argument("--text", default=str(ROOT / "models/shakespeare/valid.txt"))
    parser.add_argument("--bits", nargs="+", default=["4/4/4", "4/4/8", "8/8/8"])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    parser.add_argument("--out", default="quant_accuracy", help="writes OUT.md and OUT.json")
    args = parser.parse_args()

    model, tokenizer = load_pretrained(args.model)
    ids = tokenize_text(tokenizer, Path(args.text).read_text(encoding="utf-8"))
    rows = [{"method": "FP32", "bits": "-", "perplexity": perplexity(model, ids, progress=False).perplexity}]
    print(rows[-1], flush=True)
    calib = Path(args.calib).read_text(encoding="utf-8")
    for bits in args.bits:
        for method in args.methods:
            config = QuantConfig(method=method, bits=bits)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                quantize_checkpoint(args.model, calib, config, Path(tmp) / "export", progress=False)
                seconds = time.perf_counter() - start
                quantized, _, _ = load_export(Path(tmp) / "export")
                ppl = perplexity(quantized, ids, progress=False).perplexity
            rows.append({"method": METHOD_NAMES[method], "bits": bits, "perplexity": ppl, "quantize_s": seconds})
            print(rows[-1], flush=True)
            write_table(rows, args.out)  # after every row: a long run keeps what it measured
    print(Path(f"{args.out}.md").read_text())


def write_table(rows: list[dict], out: str) -> None:
    lines = ["| method | E/W/A | perplexity | quantize time (s) |", "|---|---|---|---|"]
    for row in rows:
        seconds = f"{row['quantize_s']:.0f}" if "quantize_s" in row else "-"
        lines.append(f"| {row['method']} | {row['bits']} | {row['perplexity']:.2f} | {seconds} |")
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    Path(f"{out}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
