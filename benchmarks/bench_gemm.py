"""Golden-model GEMM speed: fast exact GEMM vs torch.matmul, the cycle-accurate array, a naive MAC loop.

    python benchmarks/bench_gemm.py [--size 1024] [--repeats 5]

Prints markdown tables. Every row is timed in the same run as its reference:
the fast GEMM against torch.matmul in float32 on the dequantized operands
(the same numbers, as floats), the cycle-accurate array in PE-cycles per
second, and both against a naive Numba loop that calls the scalar PE
function once per multiply-accumulate. Results are checked bit-identical
before timing.
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
import torch
from timing import best_time

import fp4sim
from fp4sim.hw.fp4_array import fp4_array, schedule_gemm
from fp4sim.hw.fp4_pe_product import fp4_pe_product
from fp4sim.hw.fp4_pkg import OperandParams, PEConfig
from fp4sim.hw.fp4_round_to_float import fp4_round_to_float

MMA_SIM_MACS_PER_S = 7.5e4  # MMA-Sim's bit-accurate tensor-core model on this machine (issue #3)


@numba.njit(cache=True)
def naive_gemm(a, w, s, params: OperandParams, lsb: int) -> np.ndarray:
    """The baseline: one scalar PE product per MAC, K-ordered Kulisch sum, FP32 conversion."""
    m_size, k_size = a.shape
    out = np.empty((m_size, w.shape[1]), dtype=np.uint32)
    for m in range(m_size):
        for n in range(w.shape[1]):
            acc = np.int64(0)
            for k in range(k_size):
                acc += fp4_pe_product(a[m, k], w[k, n], s[k], params)
            out[m, n] = fp4_round_to_float(acc, lsb, 8, 23, False)
    return out


def operands(rng: np.random.Generator, fa: str, fw: str, m: int, k: int, n: int):
    config = PEConfig.make(fa, fw)
    a = rng.integers(0, 16, (m, k), dtype=np.uint8)
    w = rng.integers(0, 16, (k, n), dtype=np.uint8)
    s = rng.integers(0, config.max_shift + 1, k, dtype=np.uint8)
    return config, a, w, s


def dequantized(config: PEConfig, a, w, s) -> tuple[torch.Tensor, torch.Tensor]:
    a_values = torch.from_numpy(fp4sim.decode(a, config.fmt_a))
    w_values = torch.from_numpy(fp4sim.decode(w, config.fmt_w, shift=s[:, None].astype(np.int16)))
    return a_values, w_values


def gemm_rows(size: int, repeats: int, rng: np.random.Generator) -> list[tuple]:
    rows = []
    cases = [
        ("E2M1", "E2M1", "exact", "one float32 sgemm"),
        ("E2M1", "E1M2", "exact", "one float32 sgemm"),
        ("E3M0", "E3M0", "exact", "two float32 sgemms (weights split)"),
        ("E3M0", "E2M1", "exact", "two float32 sgemms (weights split)"),
        ("E2M1", "E2M1", "fp32_sequential", "exact sgemm, bound holds (spec 4.3)"),
        ("E2M1", "E2M1", "aligned_truncate:25", "exact sgemm, bound holds (spec 4.3)"),
        ("E2M1", "E2M1", "aligned_truncate:35", "exact sgemm, bound holds (spec 4.3)"),
        ("E2M1", "E2M1", "aligned_truncate:13", "magnitude sgemm, then the Numba loop (bound fails)"),
    ]
    for fa, fw, accum, path in cases:
        config, a, w, s = operands(rng, fa, fw, size, size, size)
        ta, tw = dequantized(config, a, w, s)
        result = fp4sim.gemm(a, w, s, fa, fw, accum=accum)
        if accum == "exact" and path == "one float32 sgemm":
            assert np.array_equal(result, (ta @ tw).numpy()), "exact float32 path disagrees with torch"
        ours = best_time(lambda: fp4sim.gemm(a, w, s, fa, fw, accum=accum), repeats)  # noqa: B023
        ref = best_time(lambda: ta @ tw, repeats)  # noqa: B023
        rows.append((f"{fa} x {fw}", accum, path, ours, ref))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="M = N = K of the GEMM (default 1024)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    macs = args.size**3

    print(f"## Fast GEMM, {args.size}^3, shifts over the full port range, best of {args.repeats}")
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads; fp4sim: torch BLAS + Numba, same threads)")
    print()
    print("| A x W | accum | path | fp4sim ms | torch.matmul fp32 ms | ratio | fp4sim GMAC/s |")
    print("|---|---|---|---|---|---|---|")
    for pair, accum, path, ours, ref in gemm_rows(args.size, args.repeats, rng):
        times = f"{ours * 1e3:.1f} | {ref * 1e3:.1f} | {ours / ref:.2f}x"
        print(f"| {pair} | {accum} | {path} | {times} | {macs / ours / 1e9:.2f} |")

    # Naive per-MAC loop vs fast GEMM vs the cycle-accurate array, one thread each.
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    config, a, w, s = operands(rng, "E2M1", "E2M1", 256, 256, 256)
    naive = naive_gemm(a, w, s, config.operand_params, config.lsb_exponent)
    assert np.array_equal(naive.view(np.float32), fp4sim.gemm(a, w, s, "E2M1", "E2M1"))
    t_naive = best_time(lambda: naive_gemm(a, w, s, config.operand_params, config.lsb_exponent), args.repeats)
    t_fast = best_time(lambda: fp4sim.gemm(a, w, s, "E2M1", "E2M1"), args.repeats)
    naive_rate = 256**3 / t_naive

    rows, cols = 16, 16
    config, a, w, s = operands(rng, "E2M1", "E2M1", 4 * rows, 2048, 4 * cols)
    stream, _ = schedule_gemm(a, w, s, rows, cols)
    assert np.array_equal(
        fp4sim.array_gemm(a, w, s, "E2M1", "E2M1", rows=rows, cols=cols), fp4sim.gemm(a, w, s, "E2M1", "E2M1")
    )
    t_array = best_time(lambda: fp4_array(stream, config), args.repeats)
    pe_cycles = stream.cycles * rows * cols

    print()
    print(f"## One thread: E2M1 x E2M1, best of {args.repeats}")
    print()
    print("| model | work | seconds | rate | vs naive loop |")
    print("|---|---|---|---|---|")
    print(f"| naive Numba loop, `fp4_pe_product` per MAC | 256^3 MACs | {t_naive:.3f} | {naive_rate:.2e} MAC/s | 1x |")
    print(f"| fast exact GEMM | 256^3 MACs | {t_fast:.4f} | {256**3 / t_fast:.2e} MAC/s | {t_naive / t_fast:.0f}x |")
    print(
        f"| cycle-accurate array {rows}x{cols} | {stream.cycles:,} cycles | {t_array:.3f} | "
        f"{pe_cycles / t_array:.2e} PE-cycles/s | {pe_cycles / t_array / naive_rate:.1f}x |"
    )
    print(
        f"| MMA-Sim (issue #3's figure) | | | {MMA_SIM_MACS_PER_S:.1e} MAC/s | {MMA_SIM_MACS_PER_S / naive_rate:.4f}x |"
    )


if __name__ == "__main__":
    main()
