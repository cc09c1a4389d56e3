"""``fp4sim simulate``: an export on the bit-accurate simulator, every layer compared with the torch path."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options

NAME = "simulate"
HELP = "run a quantized export through the bit-accurate simulator and report accuracy per layer and end to end"
DESCRIPTION = (
    "Every quantized matmul runs on fp4sim.gemm, or fp4sim.block_gemm for MXFP4 / NVFP4 exports "
    "(activations encoded by the spec's encoders); each layer is compared bit for bit with the torch path on the "
    "same input; perplexity of FP32, torch and simulator. "
    "Exits 1 if exact mode disagrees with the torch path anywhere (docs/spec.md 6.2, 7.6)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_quantized(parser)
    options.add_text(parser)
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
    from ..models.checkpoint import is_encoder, load_model
    from ..models.perplexity import perplexity, tokenize_text
    from ..quant.export import load_export

    text = options.read_text(args.text)
    check_report_target(args.out)  # before the long run, not after it
    if is_encoder(options.checkpoint_config(args.quantized, "", None)):
        raise ValueError(
            f"{args.quantized} is an encoder; fp4sim simulate scores decoders by perplexity. Run its metric on the "
            "simulator with fp4sim eval --quantized DIR --backend simulator"
        )
    model, tokenizer, metadata = load_export(args.quantized)
    ids = tokenize_text(tokenizer, text)[: args.tokens]
    window = {"context": args.context, "stride": args.stride, "batch_size": args.batch_size}
    source = args.model or metadata.get("source_model")
    fp32 = None
    if source and Path(source).exists():
        fp32_model = load_model(source, gguf_file=args.gguf_file if args.model else None)
        fp32 = perplexity(fp32_model, ids, **window).perplexity
        del fp32_model
    torch_result = perplexity(model, ids, **window)
    runs = [simulate_model(model, ids, accum, **window) for accum in args.accum.split(",")]
    report = SimulationReport(args.quantized, args.text, torch_result.tokens, fp32, torch_result.perplexity, runs)
    files = write_report(report, args.out)
    print(report.markdown().split("\n## ")[0].rstrip())
    print(f"report: {', '.join(str(f) for f in files)}")
    return 0 if all(run.all_identical for run in runs if run.accum == "exact") else 1
