"""Codec throughput: fp4sim.encode/decode vs ml_dtypes casts, in the same run.

    python benchmarks/bench_codec.py [--n 16777216] [--repeats 7] [--format float4_e2m1fn]

Prints one markdown table: best-of-N time for each side on 1 thread and on
all threads, elements per second, and the speed-up over ml_dtypes (which is
single-threaded). Rows marked ``out=`` write into a preallocated array, so
they leave out the page faults of a fresh result that every row else pays.
The last row times ``np.ones`` of the decoded size on one thread: the first
touch of a fresh float32 result (page faults, the kernel zeroing each page)
and one write, which any decode returning a fresh array pays; ml_dtypes'
time over it is the ceiling for such a decode's speed-up. Both sides'
outputs are checked bit-identical first.
"""

from __future__ import annotations

import argparse

import ml_dtypes
import numba
import numpy as np
from timing import best_time

import fp4sim

# fp4sim presets that ml_dtypes defines under the same name.
ML_DTYPES_NAMES = ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn", "float8_e4m3fn", "float8_e5m2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 24, help="elements (default 16M)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--format", default="float4_e2m1fn", choices=ML_DTYPES_NAMES)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.n) * 3).astype(np.float32)
    target = getattr(ml_dtypes, args.format)
    reference_codes = x.astype(target).view(np.uint8)
    codes = fp4sim.encode(x, args.format)
    assert np.array_equal(codes, reference_codes), "encode disagrees with ml_dtypes"
    assert np.array_equal(fp4sim.decode(codes, args.format), reference_codes.view(target).astype(np.float32))

    t_ref_enc = best_time(lambda: x.astype(target), args.repeats)
    t_ref_dec = best_time(lambda: reference_codes.view(target).astype(np.float32), args.repeats)
    rows = []
    codes_out = np.empty_like(codes)
    values_out = np.empty(x.shape, dtype=np.float32)
    all_threads = numba.config.NUMBA_NUM_THREADS
    for threads in sorted({1, all_threads}):
        numba.set_num_threads(threads)
        t_enc = best_time(lambda: fp4sim.encode(x, args.format), args.repeats)
        t_dec = best_time(lambda: fp4sim.decode(codes, args.format), args.repeats)
        t_enc_out = best_time(lambda: fp4sim.encode(x, args.format, out=codes_out), args.repeats)
        t_dec_out = best_time(lambda: fp4sim.decode(codes, args.format, out=values_out), args.repeats)
        rows.append(("encode", threads, t_enc, t_ref_enc))
        rows.append(("encode, out=", threads, t_enc_out, t_ref_enc))
        rows.append(("decode", threads, t_dec, t_ref_dec))
        rows.append(("decode, out=", threads, t_dec_out, t_ref_dec))
    numba.set_num_threads(1)
    t_touch = best_time(lambda: np.ones(x.shape, dtype=np.float32), args.repeats)
    rows.append(("fresh float32 array: np.ones (the floor)", 1, t_touch, t_ref_dec))
    numba.set_num_threads(all_threads)

    print(f"{args.n:,} float32 elements, {args.format}, best of {args.repeats}")
    print()
    print("| op | fp4sim threads | fp4sim ms | fp4sim Melem/s | ml_dtypes ms | ml_dtypes Melem/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for op, threads, ours, ref in rows:
        print(
            f"| {op} | {threads} | {ours * 1e3:.1f} | {args.n / ours / 1e6:,.0f} | "
            f"{ref * 1e3:.1f} | {args.n / ref / 1e6:,.0f} | {ref / ours:.1f}x |"
        )


if __name__ == "__main__":
    main()
