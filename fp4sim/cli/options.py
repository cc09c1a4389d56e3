"""Options more than one subcommand takes, each defined once, with its default read from the code that uses it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import BATCH_SIZE
from ..models.checkpoint import DEFAULT_MODEL, DTYPES


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="local checkpoint directory or .gguf file (default: bundled)"
    )
    add_gguf_file(parser)


def add_gguf_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gguf-file", help="GGUF file inside the --model directory to load (needs fp4sim[gguf])")


def add_text(parser: argparse.ArgumentParser, *, required: bool = True, purpose: str = "") -> None:
    parser.add_argument(
        "--text", required=required, help=f"UTF-8 text file{purpose}, e.g. models/shakespeare/valid.txt"
    )


def add_quantized(parser: argparse.ArgumentParser, *, required: bool = True, extra: str = "") -> None:
    parser.add_argument(
        "--quantized",
        required=required,
        help="export directory from fp4sim quantize, a compressed-tensors MXFP4 / NVFP4 or ModelOpt NVFP4 "
        f"checkpoint{extra}",
    )


def add_tokens(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, help="use only the text's first N tokens (default: all)")


def add_windows(parser: argparse.ArgumentParser) -> None:
    """The sliding-window perplexity settings (docs/quantization.md, "Evaluation protocol")."""
    parser.add_argument("--context", type=int, help="window length in tokens (default: the model's context)")
    parser.add_argument("--stride", type=int, help="window step in tokens (default: half the context)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"most windows per forward pass (default {BATCH_SIZE}; fewer when their logits would pass 1 GiB)",
    )


def add_dtype_and_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default=DTYPES[0], choices=DTYPES)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def read_text(path: str) -> str:
    """A UTF-8 text file's contents; ValueError naming the file when it is missing, unreadable or not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"text file {path!r} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"text file {path!r} is not UTF-8 text: {err}") from None
    except OSError as err:
        raise ValueError(f"text file {path!r} cannot be read: {err.strerror or err}") from None


def checkpoint_config(quantized: str | None, model: str, gguf_file: str | None) -> dict:
    """The config of the export `quantized` (checked as an export, unless it is a compressed-tensors or ModelOpt
    checkpoint, first) or else of the checkpoint `model`:
    cheap checks that run before any model loads."""
    from ..models.checkpoint import check_checkpoint

    if quantized:
        from ..quant.export import read_metadata, third_party_format

        if third_party_format(Path(quantized)) is None:
            read_metadata(Path(quantized))  # not an export: say so first
        return check_checkpoint(quantized)
    return check_checkpoint(model, gguf_file)


def require_text_input(config: dict, command: str) -> None:
    """ValueError for a vision model in a command that feeds the model a text."""
    from ..models.checkpoint import is_vision

    if is_vision(config):
        raise ValueError(f"fp4sim {command} feeds the model a text; a {config['model_type']} model takes images")
