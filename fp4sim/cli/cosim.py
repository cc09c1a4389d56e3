"""``fp4sim cosim``: real tiles of a quantized layer through the Verilog array, checked against the simulator."""

from __future__ import annotations

import argparse

from ..e2e import COSIM_TILES
from ..hw.fp4_array import ARRAY_COLS, ARRAY_ROWS
from ..models.checkpoint import DEFAULT_CORPUS
from . import options

NAME = "cosim"
HELP = "run real tiles of a quantized layer through the Verilog array (Icarus) and check them against fp4sim"
DESCRIPTION = (
    "Capture a layer's input on the first window of a text, encode it to FP4, and stream R x C output "
    "tiles (the layer's full K, its pre-shifted weights) through rtl/fp4_array.sv under Icarus via cocotb. Every "
    "output must equal fp4sim.gemm bit for bit. Needs the source tree, iverilog and cocotb."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_quantized(parser)
    parser.add_argument("--layer", required=True, help="quantized linear layer, e.g. model.layers.0.mlp.down_proj")
    parser.add_argument("--tiles", type=int, default=COSIM_TILES, help=f"output tiles to run (default {COSIM_TILES})")
    parser.add_argument("--rows", type=int, default=ARRAY_ROWS, help=f"array rows R (default {ARRAY_ROWS})")
    parser.add_argument("--cols", type=int, default=ARRAY_COLS, help=f"array columns C (default {ARRAY_COLS})")
    parser.add_argument(
        "--text", default=str(DEFAULT_CORPUS / "valid.txt"), help="text whose first window feeds the layer"
    )


def run(args: argparse.Namespace) -> int:
    from ..e2e.cosim import run_cosim
    from ..models.perplexity import tokenize_text
    from ..quant.export import load_export

    options.require_text_input(options.checkpoint_config(args.quantized, "", None), NAME)
    model, tokenizer, _ = load_export(args.quantized)
    ids = tokenize_text(tokenizer, options.read_text(args.text))[: model.config.max_position_embeddings]
    result = run_cosim(model, args.layer, ids, tiles=args.tiles, rows=args.rows, cols=args.cols)
    verdict = "all bit-identical" if result.passed else f"{result.mismatches} MISMATCHES"
    print(
        f"{result.layer}: {result.tiles} tiles of {args.rows} x {args.cols} through rtl/fp4_array.sv (Icarus, "
        f"{result.edges} edges): {result.outputs} outputs vs fp4sim.gemm, {verdict}; {result.pulses} output pulses "
        f"on the cycle-accurate model's edges\n{result.summary}"
    )
    return 0 if result.passed else 1
