"""``fp4sim formats``: every format's layout, policies, limits and value table."""

from __future__ import annotations

import argparse

from ..codec.blockscaled import BLOCK_FORMATS, BlockFormat
from ..formats import Format, format_names, get_format

NAME = "formats"
HELP = "print formats with their value tables and limits"
DESCRIPTION = "Print each format's layout, policies, max, min normal, min subnormal and every code's value."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        help=f"formats to show (default: all presets: {', '.join([*format_names(), *BLOCK_FORMATS])})",
    )
    parser.add_argument("--bias", type=int, help="exponent bias for LLM-FP4 family names such as E2M1")


def run(args: argparse.Namespace) -> int:
    names = args.names or [*format_names(), *BLOCK_FORMATS]
    for i, name in enumerate(names):
        if i:
            print()
        if name in BLOCK_FORMATS:
            print(block_format_report(BLOCK_FORMATS[name]))
        else:
            print(format_report(get_format(name, bias=args.bias)))
    return 0


def format_report(fmt: Format) -> str:
    """A format's layout, policies, limits and full value table, as text."""
    lines = [
        f"{fmt.name}: {'sign + ' if fmt.signed else 'unsigned, '}{fmt.ebits} exponent + {fmt.mbits} mantissa bits, "
        f"bias {fmt.bias}, specials {fmt.specials}, overflow {fmt.overflow}, "
        f"{'subnormals' if fmt.subnormals else 'no subnormals, no zero'}",
        f"  max {_describe(fmt.max_value)}   min normal {_describe(fmt.min_normal)}   "
        f"min subnormal {_describe(fmt.min_subnormal)}",
    ]
    values = fmt.values()
    half = 1 << fmt.magnitude_bits
    cells = [f"0x{code:02X}={values[code]:.6g}" for code in range(half)]
    if fmt.signed:
        cells += [f"0x{code:02X}={values[code]:.6g}" for code in range(half, 2 * half)]
    width = max(len(c) for c in cells) + 2
    per_row = max(1, 100 // width)
    for start in range(0, len(cells), per_row):
        lines.append("  " + "".join(c.ljust(width) for c in cells[start : start + per_row]).rstrip())
    return "\n".join(lines)


def block_format_report(fmt: BlockFormat) -> str:
    """A block format's element and scale formats, block size and storage cost, as text."""
    tensor = ", times one FP32 tensor scale" if fmt.tensor_scale else ""
    return (
        f"{fmt.name}: {fmt.element.name} elements, one {fmt.scale.name} scale per {fmt.block_size} "
        f"consecutive elements along K{tensor}; {fmt.bits_per_element:g} bits per element (docs/spec.md 7)"
    )


def _describe(value) -> str:
    return f"{float(value):.10g}" if value is not None else "-"
