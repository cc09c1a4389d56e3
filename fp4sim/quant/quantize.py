"""Checkpoint in, export directory out: what ``fp4sim quantize`` runs."""

from __future__ import annotations

from pathlib import Path

from ..models.checkpoint import check_checkpoint, load_model, load_tokenizer, source_name
from ..models.perplexity import tokenize_text
from .calibrate import calibrate_model, model_calibration_windows
from .config import QuantConfig
from .export import check_target, export_quantized
from .stages import StageTimes


def quantize_checkpoint(
    model_path: str | Path,
    calib_text: str,
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
) -> Path:
    """Calibrate a local checkpoint on `calib_text` and write the hardware export to `out`.

    `model_path` is a checkpoint directory of a supported family, a ``.gguf``
    file, or a directory holding `gguf_file` (models.checkpoint.check_checkpoint);
    the export's ``source_model`` names the directory or the GGUF file. The
    checkpoint, the target and the calibration text are checked before the
    model loads; the export appears whole or not at all. `device_map` and
    `offload_folder` go to accelerate (load_model) for models larger than one device.
    `times` receives the wall time of each stage (tokenize, load, forward passes, searches, export).
    """
    times = times or StageTimes()
    context = check_checkpoint(model_path, gguf_file).get("max_position_embeddings", config.calib_length)
    check_target(Path(out), overwrite)
    with times("tokenize"):
        tokenizer = load_tokenizer(model_path, gguf_file)
        ids = tokenize_text(tokenizer, calib_text) if config.needs_data else None  # MXFP4 reads no text
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
    params = calibrate_model(model, windows, config, progress=progress, times=times)
    source = source_name(model_path, gguf_file)
    with times("export"):
        return export_quantized(model, tokenizer, params, config, out, source=source, overwrite=overwrite)
