"""``fp4sim eval``: perplexity and zero-shot tasks of a decoder, agreement and accuracy of an encoder; a checkpoint
or an export."""

from __future__ import annotations

import argparse
from typing import Any

from . import encoders, options

NAME = "eval"
HELP = "perplexity of a decoder on a text; embedding cosine, accuracy or pseudo-perplexity of an encoder"
DESCRIPTION = (
    "Decoders: sliding-window perplexity, every token after the first scored once, with at least "
    "context - stride tokens of context, and zero-shot tasks. Encoders, one text per line: an embedding model's "
    "pooled-embedding cosine to FP32 (--text), a classifier's accuracy and agreement with FP32 (--data), a "
    "masked LM's pseudo-perplexity (--text). Agreement with FP32 reads the export's source model "
    "(docs/quantization.md)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_model(parser)
    options.add_text(parser, required=False, purpose=" for perplexity (an encoder: one text per line)")
    encoders.add_inputs(parser)
    parser.add_argument(
        "--tasks",
        help="comma-separated lm-evaluation-harness tasks (names with locally cached datasets, or YAML paths), 0-shot",
    )
    parser.add_argument("--limit", type=int, help="examples per task, or lines of an encoder's file (default: all)")
    options.add_tokens(parser)
    options.add_windows(parser)
    options.add_quantized(parser, required=False, extra=" (replaces --model)")
    parser.add_argument(
        "--backend", default="torch", choices=("torch", "simulator"), help="where an export's quantized layers run"
    )
    options.add_dtype_and_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import is_encoder

    if not (args.text or args.tasks or args.data or args.images):
        raise ValueError(
            "give --text FILE (perplexity), --data FILE.tsv (a text classifier), --images DIR (an image classifier) "
            "or --tasks NAMES"
        )
    encoder = is_encoder(options.checkpoint_config(args.quantized, args.model, args.gguf_file))
    if encoder and args.tasks:
        raise ValueError("zero-shot tasks (--tasks) are for decoders")
    inputs = encoders.read_inputs(args) if encoder else None  # read before the model loads: bad files fail at once
    text = options.read_text(args.text) if args.text and not encoder else None
    metadata: dict = {}
    if args.quantized:
        from ..quant.export import load_export

        model, tokenizer, metadata = load_export(
            args.quantized, backend=args.backend, dtype=args.dtype, device=args.device
        )
        which = f"quantized {args.quantized}, {args.backend}"
    else:
        from ..models.checkpoint import load_pretrained

        model, tokenizer = load_pretrained(args.model, gguf_file=args.gguf_file, dtype=args.dtype, device=args.device)
        which = f"model {args.model}"
    if encoder:
        print(_evaluate_encoder(args, model, tokenizer, metadata, inputs, which))
        return 0
    if text is not None:
        from ..models.perplexity import perplexity, tokenize_text

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
    if args.data:
        raise ValueError("--data is for encoder classifiers; a decoder takes --text (perplexity) or --tasks")
    if args.tasks:
        from ..models.tasks import zero_shot

        scores = zero_shot(model, tokenizer, args.tasks.split(","), batch_size=args.batch_size, limit=args.limit)
        for task, metrics in scores.items():
            print(f"{task}: " + ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())))
    return 0


def _evaluate_encoder(
    args: argparse.Namespace, model: Any, tokenizer: Any, metadata: dict, inputs: list, which: str
) -> str:
    """The metric of the encoder's kind (models.encoder_eval), as one line."""
    from ..models.encoder_eval import Accuracy, Agreement

    where = encoders.input_path(args, model)
    reference = encoders.fp32_reference(metadata.get("source_model"), args.device)
    measure = encoders.metric(model, reference, tokenizer, metadata, inputs, args.batch_size)
    result = measure(model)
    if isinstance(result, Agreement):
        from ..models.sentence_transformers import DEFAULT_POOLING

        pooling = "+".join(metadata.get("pooling", DEFAULT_POOLING))
        return (
            f"pooled embedding cosine to FP32 over {result.texts:,} texts of {where} ({pooling} pooling; "
            f"{which}): mean {result.mean:.6f}, min {result.min:.6f}"
        )
    if isinstance(result, Accuracy):
        agreement = "" if result.agreement is None else f", agreement with FP32 {result.agreement:.4f}"
        return f"accuracy {result.accuracy:.4f} over {result.examples:,} examples of {where}{agreement} ({which})"
    line = f"pseudo-perplexity {result.pseudo_perplexity:.4f} over {result.tokens:,} masked tokens of {where} ({which})"
    if reference is not None:
        line += f"; FP32: {measure(reference).pseudo_perplexity:.4f}"
    return line
