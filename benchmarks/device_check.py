"""LLaMA-7B-shaped layers on a CUDA device: the torch path there against the golden model on the CPU, bit for bit.

    python benchmarks/device_check.py [--tokens 128] [--out results.md]

For the three linear shapes of a LLaMA-7B decoder layer (q/k/v/o 4096 x 4096,
gate/up 4096 -> 11008, down 11008 -> 4096), random weights and LLM-like
activations (a few outlier channels, per-token spread):

- MXFP4 and NVFP4 layers (blockquant.py): the torch path on CUDA (float64
  cuBLAS) against block_gemm exact on the CPU;
- LLM-FP4 folded layers (folded.py, E3M0 / E2M1 activations with shifts
  0..2^e - 1, E2M1 weights): the torch path on CUDA against fp4sim.gemm exact on
  the CPU.

Counts bit-identical outputs and times both paths. `--device cpu` runs the
same comparison without a GPU (a dry run of the script).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from fp4sim.codec.blockscaled import get_block_format, nvfp4_tensor_scale
from fp4sim.formats import get_format
from fp4sim.quant import blockquant, folded
from fp4sim.quant.search import LinearQuant, TensorQuant

SHAPES = {"q_proj": (4096, 4096), "up_proj": (11008, 4096), "down_proj": (4096, 11008)}  # (out, in)


def activations(tokens: int, features: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(tokens, features, generator=generator) * torch.rand(tokens, 1, generator=generator) * 2
    x[:, torch.randint(0, features, (6,), generator=generator)] *= 60  # outlier channels
    return x


def compare(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[int, int]:
    same = reference.float().cpu().view(torch.int32) == candidate.float().cpu().view(torch.int32)
    return int(same.sum()), same.numel()


def timed(fn: Callable[..., torch.Tensor], *args: object) -> tuple[torch.Tensor, float]:
    fn(*args)  # warm-up: compilation, cuBLAS handles
    _synchronize()
    start = time.perf_counter()
    result = fn(*args)
    _synchronize()
    return result, time.perf_counter() - start


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def block_rows(tokens: int, generator: torch.Generator, device: str) -> list[str]:
    rows = []
    for method in ("mxfp4", "nvfp4"):
        fmt = get_block_format(method)
        for name, (out_f, in_f) in SHAPES.items():
            weight = torch.randn(out_f, in_f, generator=generator) * 0.02
            x = activations(tokens, in_f, generator)
            scale = float(nvfp4_tensor_scale(float(x.abs().max()))) if fmt.tensor_scale else 1.0
            layer = blockquant.fold_block_linear(weight, blockquant.BlockLinearQuant(fmt, True, scale))
            operand = blockquant.weight_operand(layer).to(device)
            x_gpu = x.to(device)
            gpu, gpu_s = timed(blockquant.forward_torch, layer, x_gpu, operand)
            cpu, cpu_s = timed(blockquant.forward_simulator, layer, x)
            same, total = compare(cpu, gpu)
            rows.append(f"| {method} | {name} | {same:,} / {total:,} | {gpu_s:.3f} | {cpu_s:.3f} |")
            print(rows[-1], flush=True)
    return rows


def folded_rows(tokens: int, generator: torch.Generator, device: str) -> list[str]:
    rows = []
    for act in ("E3M0", "E2M1"):
        for name, (out_f, in_f) in SHAPES.items():
            weight = torch.randn(out_f, in_f, generator=generator) * 0.02
            x = activations(tokens, in_f, generator)
            fmt_a, fmt_w = get_format(act), get_format("E2M1")
            shift = torch.randint(0, 2**fmt_a.ebits, (in_f,), generator=generator)  # the export allows 0..2^e - 1
            w_scale = weight.abs().amax(1) / float(fmt_w.max_value)
            a_scale = x.abs().max() / float(fmt_a.max_value) / 8
            quant = LinearQuant(TensorQuant(fmt_w, w_scale), TensorQuant(fmt_a, a_scale, shift))
            layer = folded.fold_linear(weight, quant)
            values = folded.code_values(layer.weight_format, layer.weight_codes).to(device)
            x_gpu = x.to(device)
            gpu, gpu_s = timed(folded.forward_torch, layer, x_gpu, values)
            cpu, cpu_s = timed(folded.forward_simulator, layer, x)
            same, total = compare(cpu, gpu)
            rows.append(f"| LLM-FP4, A {act} | {name} | {same:,} / {total:,} | {gpu_s:.3f} | {cpu_s:.3f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda", help="where the torch path runs (cpu: a dry run)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; pass --device cpu for a dry run")
    torch.backends.cuda.matmul.allow_tf32 = False  # spec 6.2: float32 sums must be full precision
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    generator = torch.Generator().manual_seed(0)
    header = [
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.tokens} tokens per layer",
        "",
        "| layers | shape (out, in) | bit-identical, torch path vs golden model | torch path (s) | golden model (s) |",
        "|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows = block_rows(args.tokens, generator, args.device) + folded_rows(args.tokens, generator, args.device)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write("\n".join(header + rows) + "\n")


if __name__ == "__main__":
    main()
