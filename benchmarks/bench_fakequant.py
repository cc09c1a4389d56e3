"""Fake quantization speed: the fused one-pass kernel vs the same maths in torch ops.

    python benchmarks/bench_fakequant.py [--repeats 7]

The quantizer's search runs decode(encode(x)) for every bias candidate; this
times that step on the shapes the bundled model's search sees (2048 search
tokens x the layer width, with FPQ's per-channel shifts; a weight matrix with
per-row scales), both paths checked bit-identical first. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from timing import best_time

from fp4sim import get_format
from fp4sim.quant.fakequant import fake_quantize, fake_quantize_ops

CASES = [
    ("activations, scale + per-channel shift", (2048, 688), "shift"),
    ("activations, scale only", (2048, 256), "tensor"),
    ("weights, per-row scale", (688, 256), "row"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    print("| case | format | shape | fused ms | torch ops ms | speed-up |")
    print("|---|---|---|---|---|---|")
    for label, shape, kind in CASES:
        x = torch.randn(shape, generator=generator) * 3
        shift = torch.randint(0, 4, (shape[1],), generator=generator) if kind == "shift" else None
        scale = torch.rand(shape[0], 1, generator=generator) + 0.1 if kind == "row" else torch.tensor(0.37)
        for name in ("E2M1", "E4M3"):
            fmt = get_format(name)
            fused = fake_quantize(x, fmt, scale, shift)
            reference = fake_quantize_ops(x, fmt, scale, shift)
            assert np.array_equal(fused.numpy().view(np.uint32), reference.numpy().view(np.uint32))
            t_fused = best_time(lambda: fake_quantize(x, fmt, scale, shift), args.repeats)  # noqa: B023
            t_ops = best_time(lambda: fake_quantize_ops(x, fmt, scale, shift), args.repeats)  # noqa: B023
            print(
                f"| {label} | {name} | {shape[0]}x{shape[1]} | {t_fused * 1e3:.2f} | {t_ops * 1e3:.2f} "
                f"| {t_ops / t_fused:.1f}x |"
            )


if __name__ == "__main__":
    main()
