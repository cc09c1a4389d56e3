"""The ``fp4sim`` command: one subcommand per job, each with --help; one module per subcommand here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import act_ranges, check, cosim, demo, evaluate, formats, quantize, simulate

SUBCOMMANDS = (formats, evaluate, quantize, simulate, check, cosim, demo, act_ranges)  # in --help order


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where help is, not the whole usage."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fp4sim", description="Bit-accurate reference tools for FP4 inference hardware.")
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
    except (ValueError, TypeError, OSError) as err:  # bad input or a file that cannot be read or written
        print(f"fp4sim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what was being written is left as before (exports and reports are atomic)
        print(f"fp4sim {args.command}: interrupted", file=sys.stderr)
        return 130
