"""Load LLaMA-family checkpoints from a local path, transformers-style, with errors that say what is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-llama-shakespeare"  # bundled, in the source tree
DEFAULT_CORPUS = DEFAULT_MODEL.parent / "shakespeare"  # its train.txt / valid.txt
LLAMA_MODEL_TYPES = ("llama",)  # LLaMA 1/2/3, TinyLlama, Vicuna...: all transformers' LlamaForCausalLM
DTYPES = ("float32", "float16", "bfloat16")  # what a checkpoint loads as (--dtype)


def check_llama_dir(path: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, after checking it is a local LLaMA-family checkpoint."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model path {str(path)!r} is not a directory; pass a local Hugging Face checkpoint")
    config_file = root / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{root} has no config.json; it is not a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{config_file} is not a readable JSON file: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")
    model_type = config.get("model_type")
    if model_type not in LLAMA_MODEL_TYPES:
        architectures = config.get("architectures")
        names = ", ".join(map(str, architectures)) if isinstance(architectures, list) else ""
        raise ValueError(
            f"{root} holds a {model_type!r} model ({names}); "
            f"fp4sim quantizes LLaMA-family models (model_type {', '.join(LLAMA_MODEL_TYPES)})"
        )
    return config


def load_llama(
    path: str | Path = DEFAULT_MODEL,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) from a local LLaMA-family checkpoint, in eval mode, offline.

    With `device_map` (e.g. "auto") accelerate places the layers across devices,
    CPU memory and `offload_folder` on disk, for models larger than one device;
    `device` is then ignored.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    tokenizer = load_tokenizer(path)
    placement = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype), **placement)
    return (model if device_map is not None else model.to(device)).eval(), tokenizer


@contextmanager
def onloaded(module: Any) -> Iterator[None]:
    """Inside, every parameter of `module` is a real tensor, also where accelerate offloaded it to CPU or disk."""
    from accelerate.utils import align_module_device, has_offloaded_params

    with ExitStack() as stack:
        for sub in module.modules():
            if has_offloaded_params(sub):
                stack.enter_context(align_module_device(sub))
        yield


def input_device(model: Any) -> Any:
    """Where to put input ids: the embedding's device, or the CPU when accelerate moves inputs itself."""
    import torch

    weight = model.get_input_embeddings().weight
    return torch.device("cpu") if weight.is_meta else weight.device


def load_tokenizer(path: str | Path = DEFAULT_MODEL) -> Any:
    """The tokenizer of a local LLaMA-family checkpoint, offline."""
    from transformers import AutoTokenizer

    check_llama_dir(path)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)
