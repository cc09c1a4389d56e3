"""Calibration cost: wall time per stage and peak memory of `fp4sim quantize`, against a baseline commit.

    python benchmarks/bench_calibrate.py [--model DIR] [--layers 30] [--methods fpq minmax nvfp4 mxfp4]
        [--baseline COMMIT --baseline-layers 1] [--threads N]

Each run is a fresh `python -m fp4sim quantize` process on the bundled
calibration text, with the method's default settings; a wrapper reports the
process's peak resident memory (ru_maxrss). Without --model the checkpoint is
a synthetic LLaMA of SmolLM2-135M's shape (hidden 576, 9 / 3 heads,
intermediate 1536, vocabulary 49152, tied embeddings, context 8192) with
random weights and --layers decoder layers: time does not depend on the
weights. --baseline runs the same commands on a git commit of this repository
(a temporary worktree) on a copy of the model cut to --baseline-layers layers,
beside the current code on that same copy: the ratio is like for like, and
the baseline's per-layer time scales to the full depth.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT / "models/shakespeare/train.txt"
WRAPPER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['fp4sim', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('fp4sim.cli', run_name='__main__')\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "else:\n"
    "    code = 0\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def synthetic_model(out: Path, layers: int) -> Path:
    """A random LLaMA of SmolLM2-135M's shape, saved with the bundled tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from fp4sim.models.checkpoint import DEFAULT_MODEL

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(DEFAULT_MODEL).save_pretrained(out)
    return out


def cut_model(source: Path, out: Path, layers: int) -> Path:
    """A copy of `source` keeping its first `layers` decoder layers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def quantize(tree: Path, model: Path, method: str, out: Path, threads: int | None) -> dict:
    """One `fp4sim quantize` process from source tree `tree`: wall seconds, peak RSS, its stage table."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    command = [sys.executable, "-c", WRAPPER, "quantize", "--model", str(model), "--calib", str(CALIB)]
    command += ["--out", str(out), "--overwrite", "--method", method]
    start = time.perf_counter()
    run = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(f"{tree}: quantize --method {method} failed:\n{run.stderr[-3000:]}")
    peak = int(re.search(r"PEAK_RSS_KIB (\d+)", run.stdout).group(1)) * 1024
    stages = dict(re.findall(r"^\| ([a-z_ ]+) \| ([0-9.]+) \|", run.stdout, re.M))
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(peak / 2**30, 2), "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: synthetic SmolLM2-135M shape)")
    parser.add_argument("--layers", type=int, default=30, help="decoder layers of the synthetic model")
    parser.add_argument("--methods", nargs="+", default=["fpq", "minmax", "nvfp4", "mxfp4"])
    parser.add_argument("--baseline", help="git commit to compare against, e.g. aa0f14d")
    parser.add_argument("--baseline-methods", nargs="+", help="methods for the baseline (default: --methods)")
    parser.add_argument("--baseline-layers", type=int, default=1, help="layers of the model copy both trees run")
    parser.add_argument("--threads", type=int, help="OMP / MKL / Numba threads (default: theirs)")
    args = parser.parse_args()
    results: dict = {"current": {}, "baseline": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or synthetic_model(tmp / "synthetic", args.layers)
        for method in args.methods:
            results["current"][method] = quantize(ROOT, model, method, tmp / "q", args.threads)
            print(f"current {method}: {json.dumps(results['current'][method])}", flush=True)
        if args.baseline:
            tree = tmp / "baseline"
            git = ["git", "-C", str(ROOT), "worktree"]
            subprocess.run([*git, "add", "--detach", str(tree), args.baseline], check=True)
            try:
                small = cut_model(model, tmp / "cut", args.baseline_layers)
                for method in args.baseline_methods or args.methods:
                    for name, source in (("baseline", tree), ("current-cut", ROOT)):
                        result = quantize(source, small, method, tmp / "q", args.threads)
                        results.setdefault(name, {})[method] = result
                        print(f"{name} {method} ({args.baseline_layers} layers): {json.dumps(result)}", flush=True)
            finally:
                subprocess.run([*git, "remove", "--force", str(tree)], check=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
