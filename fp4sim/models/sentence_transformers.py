"""sentence-transformers directories: where the transformer is, and how its token embeddings are pooled.

Such a directory lists its modules in ``modules.json``; the first is the
transformer (its files at the module's ``path``, often the directory itself),
then a Pooling module whose ``config.json`` names the pooling modes, then
optionally Normalize. fp4sim reads these files itself (sentence-transformers
need not be installed) and pools as sentence-transformers does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

MODULES_FILE = "modules.json"
TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"  # unit length: cosines do not change
# Pooling modes fp4sim computes, in the order sentence-transformers concatenates them.
POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
DEFAULT_POOLING = ("mean_tokens",)  # for a plain encoder directory: the mean over its real tokens


class SentenceTransformer(NamedTuple):
    transformer: Path  # the transformer's checkpoint directory
    pooling: tuple[str, ...]  # POOLING_MODES that are on, in concatenation order


def read_sentence_transformer(root: Path) -> SentenceTransformer | None:
    """The layout of the sentence-transformers directory `root`; None when it has no modules.json.

    Raises ValueError for an unreadable modules.json or pooling config, a first module that is not the
    transformer, modules other than Pooling and Normalize after it, or a pooling mode fp4sim does not compute.
    """
    modules_file = root / MODULES_FILE
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{modules_file} does not hold a list of modules")
    types = [module.get("type") for module in modules]
    if types[0] != TRANSFORMER:
        raise ValueError(f"{modules_file}: the first module is {types[0]!r}, not the transformer ({TRANSFORMER})")
    others = [t for t in types[1:] if t not in (POOLING, NORMALIZE)]
    if others or types.count(POOLING) != 1:
        raise ValueError(
            f"{modules_file}: fp4sim runs a transformer, one Pooling and an optional Normalize module; "
            f"this directory has {', '.join(map(str, types))}"
        )
    pooling_dir = root / str(modules[types.index(POOLING)].get("path", ""))
    return SentenceTransformer(root / str(modules[0].get("path", "")), _pooling_modes(pooling_dir / "config.json"))


def _pooling_modes(config_file: Path) -> tuple[str, ...]:
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")
    unknown = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k[13:] not in POOLING_MODES]
    if unknown:
        raise ValueError(
            f"{config_file}: pooling {', '.join(unknown)} is not one fp4sim computes ({', '.join(POOLING_MODES)})"
        )
    modes = tuple(mode for mode in POOLING_MODES if config.get(f"pooling_mode_{mode}"))
    if not modes:
        raise ValueError(f"{config_file} turns no pooling mode on")
    return modes


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path} is not a readable JSON file: {err}") from None


def pool(tokens: torch.Tensor, attention_mask: torch.Tensor, modes: tuple[str, ...]) -> torch.Tensor:
    """Sentence embeddings (batch, hidden * len(modes)) from token embeddings (batch, length, hidden), float32.

    Padding (attention_mask 0) takes no part: mean and max run over the real tokens only, and
    ``cls_token`` is position 0. The modes' results are concatenated in the order given.
    """
    tokens = tokens.float()
    mask = attention_mask.to(tokens.device, torch.bool)[..., None]
    count = mask.sum(1).clamp(min=1).float()
    total = tokens.masked_fill(~mask, 0).sum(1)
    pooled = {
        "cls_token": lambda: tokens[:, 0],
        "max_tokens": lambda: tokens.masked_fill(~mask, -torch.inf).amax(1),
        "mean_tokens": lambda: total / count,
        "mean_sqrt_len_tokens": lambda: total / count.sqrt(),
    }
    return torch.cat([pooled[mode]() for mode in modes], dim=-1)
