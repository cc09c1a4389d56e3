"""Whole-model forward: the bit-accurate simulator vs the torch fake-quant path, on the bundled model.

    python benchmarks/bench_simulate.py [--repeats 3] [--windows 8] [--quantized EXPORT]

Quantizes the bundled model (fpq 4/4/4, one search round: the forward's cost
does not depend on the search) into a temporary export, then times one
forward of `windows` x 256 tokens on each backend, best of `repeats`, after
checking the two give bit-identical logits in exact mode. Every row's torch
reference is timed right before it, so each ratio is measured in one stretch.
`--quantized` times an existing fpq export instead (two code trees on one export).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import best_time

from fp4sim.models.checkpoint import DEFAULT_MODEL
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.modules import set_backend
from fp4sim.quant.quantize import quantize_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--windows", type=int, default=8)
    study = ["fp32_sequential", "aligned_truncate:35", "aligned_truncate:25", "aligned_truncate:13"]
    parser.add_argument("--accum", nargs="*", default=study)
    parser.add_argument("--quantized", help="an fp4sim export to time (default: quantize one, one search round)")
    args = parser.parse_args()
    if args.quantized:
        model, _, _ = load_export(args.quantized)
    else:
        calib = (ROOT / "models/shakespeare/train.txt").read_text(encoding="utf-8")
        with tempfile.TemporaryDirectory() as tmp:
            out = quantize_checkpoint(DEFAULT_MODEL, calib, QuantConfig(rounds=1), Path(tmp) / "q", progress=False)
            model, _, _ = load_export(out)
    ids = torch.randint(0, model.config.vocab_size, (args.windows, 256), generator=torch.Generator().manual_seed(0))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(ids).logits

    reference = forward()
    print(f"{args.windows} x 256 tokens, bundled model, fpq 4/4/4\n")
    print("| accumulation | simulator ms | torch fake-quant ms, same row | ratio to torch |")
    print("|---|---|---|---|")
    for accum in ["exact", *args.accum]:
        set_backend(model, "torch")  # each row's reference right before it: the machine's load drifts
        t_torch = best_time(forward, args.repeats)
        set_backend(model, "simulator", accum)
        if accum == "exact":
            assert np.array_equal(forward().numpy().view(np.uint32), reference.numpy().view(np.uint32))
        t_sim = best_time(forward, args.repeats)
        print(f"| {accum} | {t_sim * 1e3:.0f} | {t_torch * 1e3:.0f} | {t_sim / t_torch:.2f}x |")


if __name__ == "__main__":
    main()
