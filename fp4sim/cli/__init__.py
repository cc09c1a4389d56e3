"""The ``fp4sim`` command: one subcommand per job, each with --help; one module per subcommand here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import act_ranges, cosim, demo, evaluate, formats, quantize, simulate

SUBCOMMANDS = (formats, evaluate, quantize, simulate, cosim, demo, act_ranges)  # in --help order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fp4sim", description="Bit-accurate reference tools for FP4 inference hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:  # each module: NAME, HELP, DESCRIPTION, add_arguments(parser), run(args)
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION))
        sub.choices[command.NAME].set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"fp4sim {args.command}: error: {err}", file=sys.stderr)
        return 2
