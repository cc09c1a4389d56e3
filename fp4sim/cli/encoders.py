"""What ``fp4sim eval`` and ``fp4sim simulate`` share for encoders: the input each kind takes, read and checked
before any model loads, and the metric that scores it (models.encoder_eval)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import options

INPUT_OF_KIND = {"classifier": "data", "image-classifier": "images"}  # every other kind reads --text


def add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="text<TAB>label file, one example per line, for an encoder classifier")
    parser.add_argument("--images", help="image directory, one subdirectory per class, for an image classifier")


def read_inputs(args: argparse.Namespace) -> list:
    """The encoder's texts (--text), (text, label) pairs (--data) or (image, class) pairs (--images), at most
    --limit of them. ValueError unless exactly one is given, or for a file that is empty, unreadable or unlabelled."""
    from ..models.images import labelled_images
    from ..models.sentences import labelled_lines, text_lines

    if sum(map(bool, (args.text, args.data, args.images))) != 1:
        raise ValueError(
            "an encoder takes one of --text FILE (one text per line), --data FILE (text<TAB>label) or --images DIR"
        )
    if args.images:
        return labelled_images(args.images)[: args.limit]
    if args.data:
        return labelled_lines(options.read_text(args.data), args.data)[: args.limit]
    return text_lines(options.read_text(args.text), args.text)[: args.limit]


def input_path(args: argparse.Namespace, model: Any) -> str:
    """The --text, --data or --images path that `model`'s kind reads; ValueError when the user gave another."""
    from ..models.encoder_eval import encoder_kind

    kind = encoder_kind(model)
    if kind == "embedding" and model.main_input_name == "pixel_values":
        raise ValueError(f"fp4sim measures image classifiers; a {type(model).__name__} has no classes")
    wanted = INPUT_OF_KIND.get(kind, "text")
    if not getattr(args, wanted):
        raise ValueError(f"a {type(model).__name__} is evaluated with --{wanted}")
    return getattr(args, wanted)


def fp32_reference(source: str | None, device: str = "cpu") -> Any | None:
    """The FP32 model at `source` (an export's source model) where it exists; None otherwise."""
    from ..models.checkpoint import load_model

    if not source or not Path(source).exists():
        return None
    return load_model(source, device=device)


def metric(
    model: Any, reference: Any | None, tokenizer: Any, metadata: dict, inputs: list, batch_size: int
) -> Callable[[Any], Any]:
    """The metric of `model`'s kind on `inputs`, as a function of the model it measures (`model`, its FP32
    `reference`, or the same export on another backend): an encoder_eval Agreement, Accuracy or PseudoPerplexity.

    Raises ValueError for an embedding model without a reference (its metric is the cosine to FP32)."""
    from ..models import encoder_eval
    from ..models.sentence_transformers import DEFAULT_POOLING

    kind = encoder_eval.encoder_kind(model)
    if kind == "embedding":
        if reference is None:
            raise ValueError("an embedding model's cosine to FP32 needs --quantized EXPORT whose source model exists")
        pooling = tuple(metadata.get("pooling", DEFAULT_POOLING))  # a plain encoder: the mean of its real tokens
        return lambda measured: encoder_eval.embedding_agreement(
            measured, reference, tokenizer, inputs, pooling, batch_size
        )
    if kind == "masked-lm":
        return lambda measured: encoder_eval.pseudo_perplexity(measured, tokenizer, inputs, batch_size)
    if kind == "classifier":
        positions = model.config.max_position_embeddings
        batches = encoder_eval.text_batches(tokenizer, [text for text, _ in inputs], positions, batch_size)
    else:
        batches = encoder_eval.image_batches(tokenizer, [path for path, _ in inputs], batch_size)
    labels = [label for _, label in inputs]
    return lambda measured: encoder_eval.classification_accuracy(measured, reference, batches, labels)
