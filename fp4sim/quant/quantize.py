"""Checkpoint in, export directory out: what ``fp4sim quantize`` runs."""

from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import (
    check_checkpoint,
    gguf_location,
    is_encoder,
    is_vision,
    load_model,
    load_preprocessor,
    source_name,
)
from ..models.perplexity import tokenize_text
from ..models.sentence_transformers import read_sentence_transformer
from .calibrate import calibrate_model, image_windows, model_calibration_windows, sentence_windows
from .compressed.write import export_compressed_tensors
from .config import EXPORT_FORMATS, UNQUANTIZED, QuantConfig
from .export import check_target, export_quantized
from .stages import StageTimes


def quantize_checkpoint(
    model_path: str | Path,
    calib: str,
    config: QuantConfig,
    out: str | Path,
    *,
    gguf_file: str | None = None,
    overwrite: bool = False,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
    progress: bool = True,
    times: StageTimes | None = None,
    export_format: str = "fp4sim",
) -> Path:
    """Calibrate a local checkpoint on `calib` and write the hardware export to `out`.

    `calib` is the calibration text itself, or for a vision model (models.checkpoint.is_vision) the path of a
    directory of images (any layout below it; models.images.image_files).

    `model_path` is a checkpoint directory of a supported family (a decoder, an
    encoder, a sentence-transformers directory), a ``.gguf`` file, or a
    directory holding `gguf_file` (models.checkpoint.check_checkpoint); the
    export's ``source_model`` names the directory or the GGUF file, and a
    sentence-transformers directory's pooling modes go into its metadata. A
    decoder calibrates on random windows of the token stream, a text encoder on
    lines of the text, one sample each (calibrate.sentence_windows), a vision
    model on images (calibrate.image_windows). The
    checkpoint, the target and the calibration data are checked before the
    model loads; the export appears whole or not at all. `device_map` and
    `offload_folder` go to accelerate (load_model) for models larger than one device.
    `times` receives the wall time of each stage (tokenize, load, forward passes, searches, export).
    `export_format`: "fp4sim" (fp4sim's own export) or "compressed-tensors" (vLLM's format, MXFP4 / NVFP4
    only, a decoder or encoder of text; compressed.write); ValueError for another value or method, or for
    compressed-tensors with 4over6 activations (a scheme the format cannot record).
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if export_format == "compressed-tensors" and config.method not in ("mxfp4", "nvfp4"):
        raise ValueError(f"--export-format compressed-tensors takes --method mxfp4 or nvfp4, not {config.method}")
    four_over_six_inputs = config.scale_rule == "4over6" and config.activation_bits != UNQUANTIZED
    if export_format == "compressed-tensors" and four_over_six_inputs:
        raise ValueError(
            "--export-format compressed-tensors has no 4over6 activation scheme: export 4over6 weight-only "
            "(--bits 4/4/16) or use --export-format fp4sim (docs/spec.md 7.8)"
        )
    times = times or StageTimes()
    model_config = check_checkpoint(model_path, gguf_file)
    layout = None if gguf_location(model_path, gguf_file) else read_sentence_transformer(Path(model_path))
    check_target(Path(out), overwrite)
    masks = None
    with times("preprocess images" if is_vision(model_config) else "tokenize"):
        tokenizer = load_preprocessor(model_path, gguf_file)
        if is_vision(model_config):
            windows = image_windows(tokenizer, calib, config)
        elif is_encoder(model_config):
            windows, masks = sentence_windows(tokenizer, calib, config, model_config)
        else:
            ids = tokenize_text(tokenizer, calib) if config.needs_data else None  # MXFP4 reads no text
            context = model_config.get("max_position_embeddings", config.calib_length)
            windows = model_calibration_windows(context, ids, config)
    with times("load"):
        model = load_model(
            model_path,
            gguf_file=gguf_file,
            dtype=dtype,
            device=device,
            device_map=device_map,
            offload_folder=offload_folder,
        )
    params = calibrate_model(model, windows, config, progress=progress, times=times, masks=masks)
    source = source_name(model_path, gguf_file)
    pooling = None if layout is None else layout.pooling
    with times("export"):
        if export_format == "compressed-tensors":
            return export_compressed_tensors(model, tokenizer, params, config, out, overwrite=overwrite)
        return export_quantized(
            model, tokenizer, params, config, out, source=source, overwrite=overwrite, pooling=pooling
        )
