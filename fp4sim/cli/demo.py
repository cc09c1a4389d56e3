"""``fp4sim demo``: the main job on the bundled model."""

from __future__ import annotations

import argparse

from ..e2e import COSIM_TILES, DEMO_DIR
from . import options

NAME = "demo"
HELP = "the main job: quantize the bundled model (LLM-FP4 4/4/4), simulate it, run RTL tiles, print accuracy"
DESCRIPTION = (
    "Quantize the bundled LLaMA with fpq 4/4/4, run the export on torch and on the bit-accurate "
    "simulator (every layer compared bit for bit), report perplexity against FP32, and run real tiles through "
    "the Verilog array. Exits 1 if any check fails."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default=DEMO_DIR, help=f"directory for the export and the report (default: {DEMO_DIR})"
    )
    parser.add_argument("--tiles", type=int, default=COSIM_TILES, help=f"RTL tiles to run (default {COSIM_TILES})")
    options.add_overwrite(parser, "an earlier demo's export")


def run(args: argparse.Namespace) -> int:
    from ..e2e.demo import run_demo

    return run_demo(args.out, tiles=args.tiles, overwrite=args.overwrite)
