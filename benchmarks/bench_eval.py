"""Perplexity speed: a quantized export (torch backend) vs its FP32 model, same text, same run.

    python benchmarks/bench_eval.py EXPORT [EXPORT ...] [--model DIR] [--text FILE] [--context N] [--repeats 3]

Each export's eval (``fp4sim eval --quantized``) is timed against the FP32
model it came from (``--model``, default the bundled one) on the same token
ids, windows and batch size; the runs alternate, FP32 first, and each side
keeps its best time after a warm-up pair, so a load spike on a shared machine costs both the same.
Model loading is not timed. Prints a markdown table with the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fp4sim.models.checkpoint import DEFAULT_MODEL, load_pretrained
from fp4sim.models.perplexity import perplexity, tokenize_text
from fp4sim.quant.export import METADATA_FILE, load_export

TEXT = DEFAULT_MODEL.parent / "shakespeare" / "valid.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("exports", nargs="+", help="export directories from fp4sim quantize")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="the FP32 checkpoint the exports came from")
    parser.add_argument("--text", default=str(TEXT), help="UTF-8 text to score")
    parser.add_argument("--chars", type=int, default=8000, help="characters of the text to score")
    parser.add_argument("--context", type=int, help="window tokens (default: the model's context)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load_pretrained(args.model)
    ids = tokenize_text(tokenizer, Path(args.text).read_text(encoding="utf-8")[: args.chars])

    def timed(m: object) -> tuple[float, float]:
        start = time.perf_counter()
        result = perplexity(m, ids, context=args.context, progress=False).perplexity
        return time.perf_counter() - start, result

    print(f"{ids.numel():,} tokens, context {args.context or model.config.max_position_embeddings}")
    print("| export | method | FP32 s | quantized s | ratio | perplexity FP32 / quantized |")
    print("|---|---|---|---|---|---|")
    for export in args.exports:
        quantized, _, _ = load_export(export)
        method = json.loads((Path(export) / METADATA_FILE).read_text())["quant_config"]["method"]
        fp32, quant = [timed(model)], [timed(quantized)]  # warm-up pair: first-call allocations
        for _ in range(args.repeats):  # alternate, so both sides see the same machine
            fp32.append(timed(model))
            quant.append(timed(quantized))
        fp32_s, quant_s = min(t for t, _ in fp32[1:]), min(t for t, _ in quant[1:])
        print(
            f"| {Path(export).name} | {method} | {fp32_s:.2f} | {quant_s:.2f} | {quant_s / fp32_s:.2f}x "
            f"| {fp32[0][1]:.2f} / {quant[0][1]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
