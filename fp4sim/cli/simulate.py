"""``fp4sim simulate``: an export on the bit-accurate simulator, every layer compared with the torch path."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import encoders, options

NAME = "simulate"
HELP = "run a quantized export through the bit-accurate simulator and report accuracy per layer and end to end"
DESCRIPTION = (
    "Every quantized matmul, attention matmuls included, runs on fp4sim.gemm, or fp4sim.block_gemm for MXFP4 / "
    "NVFP4 exports (activations encoded by the spec's encoders); each is compared bit for bit with the torch path on "
    "the same operands. End to end, the metric of FP32, torch and simulator: a decoder's perplexity (--text), an "
    "encoder's as fp4sim eval measures it (--text, --data or --images). "
    "Exits 1 if exact mode disagrees with the torch path anywhere (docs/spec.md 6.2, 6.3, 7.6)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_quantized(parser)
    options.add_text(parser, required=False, purpose=" (a decoder: perplexity; an encoder: one text per line)")
    encoders.add_inputs(parser)
    parser.add_argument("--limit", type=int, help="lines or images an encoder reads (default: all)")
    parser.add_argument(
        "--accum",
        default="exact",
        help="comma-separated accumulation models: exact, aligned_truncate:N[:G], fp32_sequential (default: exact)",
    )
    parser.add_argument(
        "--model", help="the FP32 checkpoint, directory or .gguf file (default: the export's source model, if present)"
    )
    options.add_gguf_file(parser)
    options.add_tokens(parser)
    options.add_windows(parser)
    parser.add_argument("--out", default="simulation", help="report directory (report.md, .json, layer_error.png)")


def run(args: argparse.Namespace) -> int:
    from ..e2e.simulate import SimulationReport, check_report_target, simulate_model, write_report
    from ..models.checkpoint import is_encoder
    from ..quant.export import load_export

    text = options.read_text(args.text) if args.text else None  # every input is read before the model loads
    encoder = is_encoder(options.checkpoint_config(args.quantized, "", None))
    if encoder:
        inputs = encoders.read_inputs(args)
    elif text is None or args.data or args.images:
        raise ValueError("a decoder is simulated on a text: give --text FILE (and no --data or --images)")
    check_report_target(args.out)  # before the long run, not after it
    model, tokenizer, metadata = load_export(args.quantized)
    source = args.model or metadata.get("source_model")
    if encoder:
        data, scored, measure, fp32 = _encoder_measure(args, model, tokenizer, metadata, inputs, source)
    else:
        data, scored, measure, fp32 = _decoder_measure(args, tokenizer, text, source)
    on_torch = measure(model)
    runs = [simulate_model(model, accum, measure) for accum in args.accum.split(",")]
    report = SimulationReport(args.quantized, data, scored, fp32, on_torch, runs)
    files = write_report(report, args.out)
    print(report.markdown().split("\n## ")[0].rstrip())
    print(f"report: {', '.join(str(f) for f in files)}")
    return 0 if all(run.all_identical for run in runs if run.accum == "exact") else 1


def _decoder_measure(args: argparse.Namespace, tokenizer: Any, text: str, source: str | None) -> tuple:
    """What a decoder is scored on (the text), how much of it, its perplexity as a Measure, and the FP32 model's
    perplexity (None without the model; the model is freed before the simulator runs)."""
    from ..e2e.simulate import perplexity_measure
    from ..models.checkpoint import load_model
    from ..models.perplexity import tokenize_text

    ids = tokenize_text(tokenizer, text)[: args.tokens]
    measure = perplexity_measure(ids, context=args.context, stride=args.stride, batch_size=args.batch_size)
    fp32 = None
    if source and Path(source).exists():
        fp32 = measure(load_model(source, gguf_file=args.gguf_file if args.model else None))
    return args.text, f"{max(ids.numel() - 1, 0):,} tokens", measure, fp32


def _encoder_measure(
    args: argparse.Namespace, model: Any, tokenizer: Any, metadata: dict, inputs: list, source: str | None
) -> tuple:
    """What an encoder is scored on, how much of it, its metric (cli.encoders.metric) as a Measure, and the FP32
    model's scores (None without the model, which stays loaded when the metric compares with it)."""
    from ..models.encoder_eval import result_scores

    data = encoders.input_path(args, model)
    reference = encoders.fp32_reference(source)
    metric = encoders.metric(model, reference, tokenizer, metadata, inputs, args.batch_size)

    def measure(measured: Any) -> dict:
        return result_scores(metric(measured))[0]

    noun = "images" if args.images else "examples" if args.data else "texts"
    return data, f"{len(inputs):,} {noun}", measure, None if reference is None else measure(reference)
