"""``fp4sim eval``: perplexity and zero-shot tasks of a decoder, agreement and accuracy of an encoder; a checkpoint
or an export."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options

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
    parser.add_argument("--data", help="text<TAB>label file, one example per line, for an encoder classifier")
    parser.add_argument("--images", help="image directory, one subdirectory per class, for an image classifier")
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
    inputs = _encoder_inputs(args) if encoder else None  # read before the model loads: bad files fail at once
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


def _encoder_inputs(args: argparse.Namespace) -> list:
    """The encoder's texts (--text), (text, label) pairs (--data) or (image, class) pairs (--images), at most
    --limit of them."""
    from ..models.images import labelled_images
    from ..models.sentences import labelled_lines, text_lines

    if args.tasks:
        raise ValueError("zero-shot tasks (--tasks) are for decoders")
    if sum(map(bool, (args.text, args.data, args.images))) != 1:
        raise ValueError(
            "an encoder takes one of --text FILE (one text per line), --data FILE (text<TAB>label) or --images DIR"
        )
    if args.images:
        return labelled_images(args.images)[: args.limit]
    if args.data:
        return labelled_lines(options.read_text(args.data), args.data)[: args.limit]
    return text_lines(options.read_text(args.text), args.text)[: args.limit]


def _evaluate_encoder(
    args: argparse.Namespace, model: Any, tokenizer: Any, metadata: dict, inputs: list, which: str
) -> str:
    """The metric of the encoder's kind (models.encoder_eval), as one line."""
    from ..models import encoder_eval
    from ..models.sentence_transformers import DEFAULT_POOLING

    kind = encoder_eval.encoder_kind(model)
    if kind == "embedding" and model.main_input_name == "pixel_values":
        raise ValueError(f"fp4sim eval measures image classifiers; a {type(model).__name__} has no classes")
    wanted = {"classifier": "data", "image-classifier": "images"}.get(kind, "text")
    if not getattr(args, wanted):
        raise ValueError(f"a {type(model).__name__} is evaluated with --{wanted}")
    reference = _fp32_reference(metadata, args)
    where = getattr(args, wanted)
    if kind == "embedding":
        if reference is None:
            raise ValueError("an embedding model's cosine to FP32 needs --quantized EXPORT whose source model exists")
        pooling = tuple(metadata.get("pooling", DEFAULT_POOLING))  # a plain encoder: the mean of its real tokens
        result = encoder_eval.embedding_agreement(model, reference, tokenizer, inputs, pooling, args.batch_size)
        return (
            f"pooled embedding cosine to FP32 over {result.texts:,} texts of {where} ({'+'.join(pooling)} pooling; "
            f"{which}): mean {result.mean:.6f}, min {result.min:.6f}"
        )
    if kind in ("classifier", "image-classifier"):
        batches = (
            encoder_eval.text_batches(
                tokenizer, [t for t, _ in inputs], model.config.max_position_embeddings, args.batch_size
            )
            if kind == "classifier"
            else encoder_eval.image_batches(tokenizer, [path for path, _ in inputs], args.batch_size)
        )
        labels = [label for _, label in inputs]
        result = encoder_eval.classification_accuracy(model, reference, batches, labels)
        agreement = "" if result.agreement is None else f", agreement with FP32 {result.agreement:.4f}"
        return f"accuracy {result.accuracy:.4f} over {result.examples:,} examples of {where}{agreement} ({which})"
    result = encoder_eval.pseudo_perplexity(model, tokenizer, inputs, args.batch_size)
    line = f"pseudo-perplexity {result.pseudo_perplexity:.4f} over {result.tokens:,} masked tokens of {where} ({which})"
    if reference is not None:
        line += f"; FP32: {encoder_eval.pseudo_perplexity(reference, tokenizer, inputs, args.batch_size)[0]:.4f}"
    return line


def _fp32_reference(metadata: dict, args: argparse.Namespace) -> Any | None:
    """The export's source model in FP32 where it still exists; None for a checkpoint or a missing source."""
    from ..models.checkpoint import load_model

    source = metadata.get("source_model")
    if not source or not Path(source).exists():
        return None
    return load_model(source, device=args.device)
