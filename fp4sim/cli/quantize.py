"""``fp4sim quantize``: calibrate a checkpoint and write the hardware export."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..codec.blockscaled import SCALE_RULES
from ..quant.config import BIT_SETTINGS, EXPORT_FORMATS, METHODS, PAPER_EXACT, QuantConfig
from . import options

NAME = "quantize"
HELP = "quantize a decoder (or GGUF file), a text or vision encoder with LLM-FP4, MXFP4 or NVFP4; write the export"
DESCRIPTION = (
    "Calibrate layer by layer on a text (format and exponent-bias search, docs/quantization.md) and "
    "write packed FP4 weight codes, per-input-channel shifts and FP32 scales (safetensors + JSON). "
    "--method mxfp4 / nvfp4 rounds to nearest in the block-scaled formats instead (block scales per 32 / 16 "
    "input channels; NVFP4's activation tensor scale from the calibration text)."
)


# One option per QuantConfig field, named after it, defaulting to the config's own default.
CONFIG_OPTIONS = {
    "method": ("minmax / fpq-baseline / fpq: LLM-FP4; mxfp4 / nvfp4: block-scaled FP4, round to nearest", METHODS),
    "bits": ("embedding/weight/activation bits", BIT_SETTINGS),
    "grid_low": ("bias grid start (x b~init)", None),
    "grid_high": ("bias grid end (x b~init)", None),
    "grid_points": ("bias grid intervals", None),
    "rounds": ("search rounds", None),
    "shortlist": ("bias candidates per choice scored exactly after a diagonal pre-score (0: all, the paper)", None),
    "calib_samples": ("calibration windows (0: the method's own, 32 for the searches, 8 for minmax / nvfp4)", None),
    "calib_length": ("window tokens (capped at the model's context)", None),
    "search_tokens": ("tokens on which candidates are scored (0: all)", None),
    "quantize_attention": ("also quantize the inputs of Q K^T and P V (paper: off for LLaMA)", None),
    "scale_rule": (
        "block scale rule for weights, embedding and activations: MXFP4 floor (OCP, its default), or torchao's "
        "ceil / even / rceil (spec 7.2); NVFP4 static_6 (its default), or 4over6, Four Over Six (spec 7.3)",
        tuple(rule for rules in SCALE_RULES.values() for rule in rules),
    ),
    "block_2d": ("NVFP4 weights in 16 x 16 tiles, one E4M3 scale each (TransformerEngine's; spec 7.3)", None),
    "seed": ("window sampling and token subsampling", None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_model(parser)
    parser.add_argument(
        "--calib",
        required=True,
        help="UTF-8 calibration text, e.g. models/shakespeare/train.txt (an encoder: one text per line); "
        "a vision model: a directory of images",
    )
    parser.add_argument("--out", required=True, help="export directory to create")
    parser.add_argument(
        "--export-format",
        default=EXPORT_FORMATS[0],
        choices=EXPORT_FORMATS,
        help="fp4sim: fp4sim's own export (every method); compressed-tensors: vLLM's checkpoint format "
        "(--method mxfp4 / nvfp4; docs/quantization.md, 'Bringing your own FP4 checkpoint') (default: fp4sim)",
    )
    options.add_overwrite(parser, "an existing export directory")
    for field in fields(QuantConfig):
        help_text, choices = CONFIG_OPTIONS[field.name]
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif choices is not None and field.default is None:  # a name, None: the method's own
            parser.add_argument(flag, default=None, choices=choices, help=help_text + " (default: the method's own)")
        else:
            default = 0 if field.default is None else field.default  # 0 stands for None on the command line
            help_text += f" (default: {default})"
            parser.add_argument(flag, type=type(default), default=default, choices=choices, help=help_text)
    parser.add_argument(
        "--paper-exact",
        action="store_true",
        help="the paper's search as written: every grid point scored exactly on all 32 x 2048 calibration tokens "
        "(sets --shortlist 0 --search-tokens 0 --calib-samples 32; many times slower than the default)",
    )
    parser.add_argument(
        "--device-map", help="accelerate device map for models larger than one device, e.g. auto (replaces --device)"
    )
    parser.add_argument("--offload-folder", help="where accelerate offloads layers that fit nowhere else")
    options.add_dtype_and_device(parser)


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import check_checkpoint, is_vision
    from ..quant.quantize import quantize_checkpoint
    from ..quant.stages import StageTimes

    settings = {field.name: getattr(args, field.name) for field in fields(QuantConfig)}
    optional = {name: settings[name] or None for name in ("shortlist", "calib_samples", "search_tokens")}
    config = QuantConfig(**{**settings, **optional, **(PAPER_EXACT if args.paper_exact else {})})
    times = StageTimes()
    vision = is_vision(check_checkpoint(args.model, args.gguf_file))
    out = quantize_checkpoint(
        args.model,
        args.calib if vision else options.read_text(args.calib),
        config,
        args.out,
        gguf_file=args.gguf_file,
        overwrite=args.overwrite,
        dtype=args.dtype,
        device=args.device,
        device_map=args.device_map,
        offload_folder=args.offload_folder,
        times=times,
        export_format=args.export_format,
    )
    print(f"quantized {args.model} ({config.method} {config.bits}) -> {out}\n{times.table()}")
    return 0
