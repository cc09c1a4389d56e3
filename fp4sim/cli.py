"""The ``fp4sim`` command: one subcommand per job, each with --help."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .blockscaled import BLOCK_FORMATS, BlockFormat
from .formats import Format, format_names, get_format
from .llama import DEFAULT_MODEL, load_llama
from .quant.config import BIT_SETTINGS, METHODS, QuantConfig


def _describe(value) -> str:
    return f"{float(value):.10g}" if value is not None else "-"


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


def _cmd_formats(args: argparse.Namespace) -> int:
    names = args.names or [*format_names(), *BLOCK_FORMATS]
    for i, name in enumerate(names):
        if i:
            print()
        if name in BLOCK_FORMATS:
            print(block_format_report(BLOCK_FORMATS[name]))
        else:
            print(format_report(get_format(name, bias=args.bias)))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .perplexity import perplexity, tokenize_text

    if not args.text and not args.tasks:
        raise ValueError("give --text FILE (perplexity), --tasks NAMES (zero-shot), or both")
    text = _read_text(args.text) if args.text else None
    if args.quantized:
        from .quant.export import load_quantized

        model, tokenizer, _ = load_quantized(args.quantized, dtype=args.dtype, device=args.device)
        which = f"quantized {args.quantized}"
    else:
        model, tokenizer = load_llama(args.model, dtype=args.dtype, device=args.device)
        which = f"model {args.model}"
    if text is not None:
        result = perplexity(
            model, tokenize_text(tokenizer, text), context=args.context, stride=args.stride, batch_size=args.batch_size
        )
        context = args.context or model.config.max_position_embeddings
        stride = args.stride or context // 2
        print(
            f"perplexity {result.perplexity:.4f} over {result.tokens:,} tokens of {args.text} "
            f"({which}, {args.dtype}, context {context}, stride {stride})"
        )
    if args.tasks:
        from .tasks import zero_shot

        scores = zero_shot(model, tokenizer, args.tasks.split(","), batch_size=args.batch_size, limit=args.limit)
        for task, metrics in scores.items():
            print(f"{task}: " + ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())))
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from .quant.config import QuantConfig
    from .quant.quantize import quantize_checkpoint

    config = QuantConfig(
        method=args.method,
        bits=args.bits,
        grid_low=args.grid_low,
        grid_high=args.grid_high,
        grid_points=args.grid_points,
        rounds=args.rounds,
        calib_samples=args.calib_samples,
        calib_length=args.calib_length,
        search_tokens=args.search_tokens or None,
        quantize_attention=args.quantize_attention,
        seed=args.seed,
    )
    out = quantize_checkpoint(
        args.model,
        _read_text(args.calib),
        config,
        args.out,
        overwrite=args.overwrite,
        dtype=args.dtype,
        device=args.device,
    )
    print(f"quantized {args.model} ({config.method} {config.bits}) -> {out}")
    return 0


def _cmd_act_ranges(args: argparse.Namespace) -> int:
    from .perplexity import tokenize_text
    from .quant.ranges import channel_ranges, plot_channel_ranges

    model, tokenizer = load_llama(args.model)
    ids = tokenize_text(tokenizer, _read_text(args.text))[: args.tokens]
    peak = channel_ranges(model, ids, args.layer, model.config.max_position_embeddings)
    plot_channel_ranges(peak, args.layer, args.out)
    print(
        f"{args.layer}: max |x| per input channel over {ids.numel():,} tokens from {peak.min():.3g} to "
        f"{peak.max():.3g} ({peak.max() / peak.min().clamp(min=1e-30):.0f}x); plot written to {args.out}"
    )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .perplexity import perplexity, tokenize_text
    from .quant.export import load_quantized
    from .simulate import SimulationReport, simulate_model, write_report

    text = _read_text(args.text)
    model, tokenizer, metadata = load_quantized(args.quantized)
    ids = tokenize_text(tokenizer, text)[: args.tokens]
    window = {"context": args.context, "stride": args.stride, "batch_size": args.batch_size}
    source = args.model or metadata.get("source_model")
    fp32 = None
    if source and Path(source).is_dir():
        fp32_model, _ = load_llama(source)
        fp32 = perplexity(fp32_model, ids, **window).perplexity
        del fp32_model
    torch_result = perplexity(model, ids, **window)
    runs = [simulate_model(model, ids, accum, **window) for accum in args.accum.split(",")]
    report = SimulationReport(args.quantized, args.text, torch_result.tokens, fp32, torch_result.perplexity, runs)
    files = write_report(report, args.out)
    print(report.markdown().split("\n## ")[0].rstrip())
    print(f"report: {', '.join(str(f) for f in files)}")
    return 0 if all(run.all_identical for run in runs if run.accum == "exact") else 1


def _cmd_cosim(args: argparse.Namespace) -> int:
    from .cosim import run_cosim
    from .perplexity import tokenize_text
    from .quant.export import load_quantized

    model, tokenizer, _ = load_quantized(args.quantized)
    ids = tokenize_text(tokenizer, _read_text(args.text))[: model.config.max_position_embeddings]
    result = run_cosim(model, args.layer, ids, tiles=args.tiles, rows=args.rows, cols=args.cols)
    verdict = "all bit-identical" if result.passed else f"{result.mismatches} MISMATCHES"
    print(
        f"{result.layer}: {result.tiles} tiles of {args.rows} x {args.cols} through rtl/fp4_array.sv (Icarus, "
        f"{result.edges} edges): {result.outputs} outputs vs fp4sim.gemm, {verdict}; {result.pulses} output pulses "
        f"on the cycle-accurate model's edges\n{result.summary}"
    )
    return 0 if result.passed else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.out, tiles=args.tiles, overwrite=args.overwrite)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"text file {path!r} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"text file {path!r} is not UTF-8 text: {err}") from None


def _add_model_and_text(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="local checkpoint directory (default: bundled)")
    parser.add_argument("--text", required=True, help="UTF-8 text file, e.g. models/shakespeare/valid.txt")


def _add_windows(parser: argparse.ArgumentParser) -> None:
    """The sliding-window perplexity settings (docs/quantization.md, "Evaluation protocol")."""
    parser.add_argument("--context", type=int, help="window length in tokens (default: the model's context)")
    parser.add_argument("--stride", type=int, help="window step in tokens (default: half the context)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")


def _add_dtype_and_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fp4sim", description="Bit-accurate reference tools for FP4 inference hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formats = sub.add_parser(
        "formats",
        help="print formats with their value tables and limits",
        description="Print each format's layout, policies, max, min normal, min subnormal and every code's value.",
    )
    formats.add_argument(
        "names",
        nargs="*",
        help=f"formats to show (default: all presets: {', '.join([*format_names(), *BLOCK_FORMATS])})",
    )
    formats.add_argument("--bias", type=int, help="exponent bias for LLM-FP4 family names such as E2M1")
    formats.set_defaults(run=_cmd_formats)

    evaluate = sub.add_parser(
        "eval",
        help="perplexity of a LLaMA-family model on a text file (sliding windows)",
        description="Sliding-window perplexity: every token after the first scored once, with at least "
        "context - stride tokens of context (docs/quantization.md).",
    )
    evaluate.add_argument("--model", default=str(DEFAULT_MODEL), help="local checkpoint directory (default: bundled)")
    evaluate.add_argument("--text", help="UTF-8 text file for perplexity, e.g. models/shakespeare/valid.txt")
    evaluate.add_argument(
        "--tasks",
        help="comma-separated lm-evaluation-harness tasks (names with locally cached datasets, or YAML paths), 0-shot",
    )
    evaluate.add_argument("--limit", type=int, help="examples per task (default: all)")
    _add_windows(evaluate)
    evaluate.add_argument("--quantized", help="an export directory from fp4sim quantize (replaces --model)")
    _add_dtype_and_device(evaluate)
    evaluate.set_defaults(run=_cmd_eval)

    quantize = sub.add_parser(
        "quantize",
        help="quantize a LLaMA-family checkpoint with LLM-FP4, MXFP4 or NVFP4 and write the hardware export",
        description="Calibrate layer by layer on a text (format and exponent-bias search, docs/quantization.md) and "
        "write packed FP4 weight codes, per-input-channel shifts and FP32 scales (safetensors + JSON). "
        "--method mxfp4 / nvfp4 rounds to nearest in the block-scaled formats instead (block scales per 32 / 16 "
        "input channels; NVFP4's activation tensor scale from the calibration text).",
    )
    quantize.add_argument("--model", default=str(DEFAULT_MODEL), help="local checkpoint directory (default: bundled)")
    quantize.add_argument("--calib", required=True, help="UTF-8 calibration text, e.g. models/shakespeare/train.txt")
    quantize.add_argument("--out", required=True, help="export directory to create")
    quantize.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    quantize.add_argument(
        "--method",
        default="fpq",
        choices=METHODS,
        help="default: fpq (LLM-FP4); mxfp4 / nvfp4: block-scaled FP4, round to nearest",
    )
    quantize.add_argument("--bits", default="4/4/4", choices=BIT_SETTINGS, help="embedding/weight/activation bits")
    defaults = QuantConfig()
    quantize.add_argument("--grid-low", type=float, default=defaults.grid_low, help="bias grid start (x b~init)")
    quantize.add_argument("--grid-high", type=float, default=defaults.grid_high, help="bias grid end (x b~init)")
    quantize.add_argument("--grid-points", type=int, default=defaults.grid_points, help="bias grid intervals")
    quantize.add_argument("--rounds", type=int, default=defaults.rounds, help="search rounds")
    quantize.add_argument("--calib-samples", type=int, default=defaults.calib_samples, help="calibration windows")
    quantize.add_argument(
        "--calib-length", type=int, default=defaults.calib_length, help="window tokens (capped at the model's context)"
    )
    quantize.add_argument(
        "--search-tokens",
        type=int,
        default=defaults.search_tokens,
        help="tokens scoring activation candidates (0: all)",
    )
    quantize.add_argument(
        "--quantize-attention",
        action="store_true",
        help="also quantize the inputs of Q K^T and P V (paper: off for LLaMA)",
    )
    quantize.add_argument("--seed", type=int, default=defaults.seed)
    quantize.add_argument(
        "--device-map", help="accelerate device map for models larger than one device, e.g. auto (replaces --device)"
    )
    quantize.add_argument("--offload-folder", help="where accelerate offloads layers that fit nowhere else")
    _add_dtype_and_device(quantize)
    quantize.set_defaults(run=_cmd_quantize)

    simulate = sub.add_parser(
        "simulate",
        help="run a quantized export through the bit-accurate simulator and report accuracy per layer and end to end",
        description="Every quantized matmul runs on fp4sim.gemm, or fp4sim.block_gemm for MXFP4 / NVFP4 exports "
        "(activations encoded by the spec's encoders); each layer is compared bit for bit with the torch path on the "
        "same input; perplexity of FP32, torch and simulator. "
        "Exits 1 if exact mode disagrees with the torch path anywhere (docs/spec.md 6.2, 7.6).",
    )
    simulate.add_argument("--quantized", required=True, help="export directory from fp4sim quantize")
    simulate.add_argument("--text", required=True, help="UTF-8 text file, e.g. models/shakespeare/valid.txt")
    simulate.add_argument(
        "--accum",
        default="exact",
        help="comma-separated accumulation models: exact, aligned_truncate:N[:G], fp32_sequential (default: exact)",
    )
    simulate.add_argument("--model", help="the FP32 checkpoint (default: the export's source model, if present)")
    simulate.add_argument("--tokens", type=int, help="use only the text's first N tokens")
    _add_windows(simulate)
    simulate.add_argument("--out", default="simulation", help="report directory (report.md, .json, layer_error.png)")
    simulate.set_defaults(run=_cmd_simulate)

    cosim = sub.add_parser(
        "cosim",
        help="run real tiles of a quantized layer through the Verilog array (Icarus) and check them against fp4sim",
        description="Capture a layer's input on the first window of a text, encode it to FP4, and stream R x C output "
        "tiles (the layer's full K, its pre-shifted weights) through rtl/fp4_array.sv under Icarus via cocotb. Every "
        "output must equal fp4sim.gemm bit for bit. Needs the source tree, iverilog and cocotb.",
    )
    cosim.add_argument("--quantized", required=True, help="export directory from fp4sim quantize")
    cosim.add_argument("--layer", required=True, help="quantized linear layer, e.g. model.layers.0.mlp.down_proj")
    cosim.add_argument("--tiles", type=int, default=2, help="output tiles to run (default 2)")
    cosim.add_argument("--rows", type=int, default=4, help="array rows R (default 4)")
    cosim.add_argument("--cols", type=int, default=4, help="array columns C (default 4)")
    cosim.add_argument(
        "--text",
        default=str(DEFAULT_MODEL.parent / "shakespeare" / "valid.txt"),
        help="text whose first window feeds the layer",
    )
    cosim.set_defaults(run=_cmd_cosim)

    demo = sub.add_parser(
        "demo",
        help="the main job: quantize the bundled model (LLM-FP4 4/4/4), simulate it, run RTL tiles, print accuracy",
        description="Quantize the bundled LLaMA with fpq 4/4/4, run the export on torch and on the bit-accurate "
        "simulator (every layer compared bit for bit), report perplexity against FP32, and run real tiles through "
        "the Verilog array. Exits 1 if any check fails.",
    )
    demo.add_argument("--out", default="demo", help="directory for the export and the report (default: demo)")
    demo.add_argument("--tiles", type=int, default=2, help="RTL tiles to run (default 2)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo's export")
    demo.set_defaults(run=_cmd_demo)

    ranges = sub.add_parser(
        "act-ranges",
        help="plot one linear layer's per-input-channel activation ranges (PNG)",
        description="Run the model over a text and plot max |x| for every input channel of one linear layer: "
        "the inter-channel variance that LLM-FP4's per-channel exponent bias exploits.",
    )
    _add_model_and_text(ranges)
    ranges.add_argument("--layer", default="model.layers.1.mlp.down_proj", help="linear layer whose input to plot")
    ranges.add_argument("--tokens", type=int, default=8192, help="tokens of the text to run (default 8192)")
    ranges.add_argument("--out", default="activation_ranges.png", help="PNG file to write")
    ranges.set_defaults(run=_cmd_act_ranges)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"fp4sim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
