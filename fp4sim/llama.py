"""Load LLaMA-family checkpoints from a local path, transformers-style, with errors that say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "tiny-llama-shakespeare"
LLAMA_MODEL_TYPES = ("llama",)  # LLaMA 1/2/3, TinyLlama, Vicuna...: all transformers' LlamaForCausalLM
_DTYPES = ("float32", "float16", "bfloat16")


def check_llama_dir(path: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, after checking it is a local LLaMA-family checkpoint."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model path {str(path)!r} is not a directory; pass a local Hugging Face checkpoint")
    config_file = root / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{root} has no config.json; it is not a Hugging Face checkpoint directory")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type")
    if model_type not in LLAMA_MODEL_TYPES:
        raise ValueError(
            f"{root} holds a {model_type!r} model ({', '.join(config.get('architectures', []))}); "
            f"fp4sim quantizes LLaMA-family models (model_type {', '.join(LLAMA_MODEL_TYPES)})"
        )
    return config


def load_llama(path: str | Path = DEFAULT_MODEL, *, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) from a local LLaMA-family checkpoint, in eval mode, offline."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
    return model.to(device).eval(), tokenizer


def load_tokenizer(path: str | Path = DEFAULT_MODEL) -> Any:
    """The tokenizer of a local LLaMA-family checkpoint, offline."""
    from transformers import AutoTokenizer

    check_llama_dir(path)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)
