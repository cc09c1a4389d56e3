"""``fp4sim check``: a compressed-tensors or ModelOpt FP4 checkpoint decoded both ways a runtime could read it."""

from __future__ import annotations

import argparse

NAME = "check"
HELP = "check how a compressed-tensors or ModelOpt FP4 checkpoint is encoded, and what runtimes could misread"
DESCRIPTION = (
    "Decodes every quantized tensor of a compressed-tensors (MXFP4 / NVFP4) or ModelOpt (NVFP4) checkpoint with its "
    "per-tensor scale read as a divisor (compressed-tensors' global scale) and as a multiplier (ModelOpt's "
    "weight_scale_2), its block scales in the linear and the swizzled layout, and flags scale codes with the sign "
    "bit or the NaN code, all-zero blocks with a nonzero scale, widths that are not whole blocks and tied embeddings "
    "stored twice with different values (docs/spec.md 7.8). Prints a table; exits 1 if anything is an error."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="DIR", help="compressed-tensors or ModelOpt checkpoint directory")


def run(args: argparse.Namespace) -> int:
    from ..quant.compressed.check import check_checkpoint

    report = check_checkpoint(args.checkpoint)
    print(report.markdown())
    return 1 if report.errors else 0
