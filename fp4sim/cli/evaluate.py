"""``fp4sim eval``: sliding-window perplexity and zero-shot tasks of a checkpoint or an export."""

from __future__ import annotations

import argparse

from . import options

NAME = "eval"
HELP = "perplexity of a LLaMA-shaped model on a text file (sliding windows)"
DESCRIPTION = (
    "Sliding-window perplexity: every token after the first scored once, with at least "
    "context - stride tokens of context (docs/quantization.md)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_model(parser)
    options.add_text(parser, required=False, purpose=" for perplexity")
    parser.add_argument(
        "--tasks",
        help="comma-separated lm-evaluation-harness tasks (names with locally cached datasets, or YAML paths), 0-shot",
    )
    parser.add_argument("--limit", type=int, help="examples per task (default: all)")
    options.add_tokens(parser)
    options.add_windows(parser)
    options.add_quantized(parser, required=False, extra=" (replaces --model)")
    options.add_dtype_and_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import load_causal_lm
    from ..models.perplexity import perplexity, tokenize_text

    if not args.text and not args.tasks:
        raise ValueError("give --text FILE (perplexity), --tasks NAMES (zero-shot), or both")
    text = options.read_text(args.text) if args.text else None
    if args.quantized:
        from ..quant.export import load_quantized

        model, tokenizer, _ = load_quantized(args.quantized, dtype=args.dtype, device=args.device)
        which = f"quantized {args.quantized}"
    else:
        model, tokenizer = load_causal_lm(args.model, gguf_file=args.gguf_file, dtype=args.dtype, device=args.device)
        which = f"model {args.model}"
    if text is not None:
        result = perplexity(
            model,
            tokenize_text(tokenizer, text)[: args.tokens],
            context=args.context,
            stride=args.stride,
            batch_size=args.batch_size,
        )
        context = args.context or model.config.max_position_embeddings
        stride = args.stride or context // 2
        print(
            f"perplexity {result.perplexity:.4f} over {result.tokens:,} tokens of {args.text} "
            f"({which}, {args.dtype}, context {context}, stride {stride})"
        )
    if args.tasks:
        from ..models.tasks import zero_shot

        scores = zero_shot(model, tokenizer, args.tasks.split(","), batch_size=args.batch_size, limit=args.limit)
        for task, metrics in scores.items():
            print(f"{task}: " + ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())))
    return 0
