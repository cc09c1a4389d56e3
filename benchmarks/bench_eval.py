"""Perplexity speed: a quantized export (torch backend) vs its FP32 model, same text, same run.

    python benchmarks/bench_eval.py EXPORT [EXPORT ...] [--model DIR] [--text FILE] [--context N] [--repeats 3]
        [--breakdown]

Each export's eval (``fp4sim eval --quantized``) is timed against the FP32
model it came from (``--model``, default the bundled one) on the same token
ids, windows and batch size; the runs alternate, FP32 first, and each side
keeps its best time after a warm-up pair, so a load spike on a shared machine costs both the same.
Model loading is not timed. Prints a markdown table with the ratio.

``--breakdown`` then runs each block-format export's eval once more with its
block layers' stages timed (activation block quantization, the float32 test,
the exact products) and times the same products, shape by shape, as plain
float32 ``sgemm`` (not exact): the float64 products' cost over float32, which
bounds how close to the FP32 eval an exact CPU path can come.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch.nn.functional as F
from timing import best_time

from fp4sim.models.checkpoint import DEFAULT_MODEL, load_pretrained
from fp4sim.models.perplexity import perplexity, tokenize_text
from fp4sim.quant import blockquant
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
    parser.add_argument("--breakdown", action="store_true", help="time the block layers' stages (see above)")
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
        if args.breakdown and method in ("mxfp4", "nvfp4"):
            breakdown(lambda q=quantized: timed(q), fp32_s)


def breakdown(run: Callable[[], tuple[float, float]], fp32_s: float) -> None:
    """One more eval with blockquant's stages wrapped in timers; then each product shape as one sgemm."""
    seconds: Counter[str] = Counter()
    calls: Counter[tuple[int, int, int]] = Counter()
    operands = {}
    originals = {name: getattr(blockquant, name) for name in ("fake_quantize_blocks", "float32_rows", "exact_product")}

    def wrap(name: str) -> object:
        def timed_stage(*args: object) -> object:
            start = time.perf_counter()
            result = originals[name](*args)
            seconds[name] += time.perf_counter() - start
            if name == "exact_product":
                a, w = args[0], args[1]
                shape = (a.shape[0], a.shape[1], w.shape[0])
                calls[shape] += 1
                operands[shape] = (a, w)  # one pair per shape, to time as sgemm afterwards
            return result

        return timed_stage

    for name in originals:
        setattr(blockquant, name, wrap(name))
    try:
        total, _ = run()
    finally:
        for name, fn in originals.items():
            setattr(blockquant, name, fn)
    sgemm = sum(calls[shape] * best_time(lambda a=a, w=w: F.linear(a, w), 2) for shape, (a, w) in operands.items())
    floor = total - seconds["exact_product"] + sgemm
    print(
        f"\nblock layers' stages in one more eval ({total:.2f} s; {sum(calls.values())} products, "
        f"{len(calls)} shapes):\n"
    )
    print("| stage | s |\n|---|---|")
    print(f"| activation block quantization (fake_quantize_blocks) | {seconds['fake_quantize_blocks']:.2f} |")
    print(f"| float32 test (float32_rows) | {seconds['float32_rows']:.2f} |")
    print(f"| exact products (exact_product) | {seconds['exact_product']:.2f} |")
    print(f"| the same products as float32 sgemm, not exact | {sgemm:.2f} |")
    print(
        f"\nwith sgemm's cost for the products this eval would take {floor:.2f} s: "
        f"{floor / fp32_s:.2f}x the FP32 eval\n",
        flush=True,
    )


if __name__ == "__main__":
    main()
