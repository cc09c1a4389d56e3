"""``fp4sim act-ranges``: one linear layer's per-input-channel activation ranges, plotted."""

from __future__ import annotations

import argparse

from . import options

DEFAULT_LAYER = "model.layers.1.mlp.down_proj"
DEFAULT_TOKENS = 8192


NAME = "act-ranges"
HELP = "plot one linear layer's per-input-channel activation ranges (PNG)"
DESCRIPTION = (
    "Run the model over a text and plot max |x| for every input channel of one linear layer: "
    "the inter-channel variance that LLM-FP4's per-channel exponent bias exploits."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_model(parser)
    options.add_text(parser)
    parser.add_argument("--layer", default=DEFAULT_LAYER, help="linear layer whose input to plot")
    parser.add_argument(
        "--tokens", type=int, default=DEFAULT_TOKENS, help=f"tokens of the text to run (default {DEFAULT_TOKENS})"
    )
    parser.add_argument("--out", default="activation_ranges.png", help="PNG file to write")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import load_pretrained
    from ..models.perplexity import tokenize_text
    from ..quant.ranges import channel_ranges, plot_channel_ranges

    text = options.read_text(args.text)  # before the model loads: a bad path fails at once
    options.require_text_input(options.checkpoint_config(None, args.model, args.gguf_file), NAME)
    model, tokenizer = load_pretrained(args.model, gguf_file=args.gguf_file)
    ids = tokenize_text(tokenizer, text)[: args.tokens]
    peak = channel_ranges(model, ids, args.layer, model.config.max_position_embeddings)
    plot_channel_ranges(peak, args.layer, args.out)
    print(
        f"{args.layer}: max |x| per input channel over {ids.numel():,} tokens from {peak.min():.3g} to "
        f"{peak.max():.3g} ({peak.max() / peak.min().clamp(min=1e-30):.0f}x); plot written to {args.out}"
    )
    return 0
