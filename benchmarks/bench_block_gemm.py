"""Block-scaled GEMM speed: block_gemm under each accumulation model vs the torch path on the same operands.

    python benchmarks/bench_block_gemm.py [--m 2048] [--k 688] [--n 256] [--repeats 3]

The reference, timed right before each row, is what the torch path of a quantized
layer does: a float64 torch.matmul of the block-dequantized operands, rounded
to float32 and scaled. Exact mode is checked bit-identical to it first (the
operands are LLM-like: normal values, a few outlier channels). Prints a
markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from timing import best_time

from fp4sim.codec.blockscaled import BlockTensor, block_dequantize, block_quantize
from fp4sim.gemm.block import block_gemm

MODELS = ("exact", "fp32_sequential", "aligned_truncate:35")


def torch_path(a: BlockTensor, w: BlockTensor) -> np.ndarray:
    a_hat = torch.from_numpy(block_dequantize(a, include_tensor_scale=False)).double()
    w_hat = torch.from_numpy(block_dequantize(w, include_tensor_scale=False)).double()
    y = (a_hat @ w_hat.T + 0.0).float()
    return (y * float(np.float32(a.tensor_scale * w.tensor_scale))).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--m", type=int, default=2048, help="tokens")
    parser.add_argument("--k", type=int, default=688, help="input features (the bundled model's down_proj)")
    parser.add_argument("--n", type=int, default=256, help="output features")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.m, args.k)).astype(np.float32)
    x[:, rng.integers(0, args.k, 4)] *= 50  # outlier channels, as in LLM activations
    weight = (rng.standard_normal((args.n, args.k)) * 0.05).astype(np.float32)
    macs = args.m * args.k * args.n
    print(f"M={args.m} K={args.k} N={args.n}; {torch.get_num_threads()} threads\n")
    print("| format | accumulation | block_gemm (s) | torch path (s) | ratio | GMAC/s |")
    print("|---|---|---|---|---|---|")
    for name in ("mxfp4", "nvfp4"):
        a, w = block_quantize(x, name), block_quantize(weight, name)
        assert np.array_equal(block_gemm(a, w).view(np.uint32), torch_path(a, w).view(np.uint32))
        for model in MODELS:
            reference = best_time(lambda a=a, w=w: torch_path(a, w), args.repeats)  # right before: load drifts
            seconds = best_time(lambda a=a, w=w, model=model: block_gemm(a, w, accum=model), args.repeats)
            print(
                f"| {name} | {model} | {seconds:.3f} | {reference:.3f} | {seconds / reference:.1f}x "
                f"| {macs / seconds / 1e9:.2f} |"
            )


if __name__ == "__main__":
    main()
