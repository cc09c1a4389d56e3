"""Perplexity of a causal LM on a text, with sliding windows (docs/quantization.md).

The text is tokenized once (the tokenizer's BOS at the very start only) and
scored with windows of `context` tokens advancing by `stride`: each window
scores only the tokens no earlier window scored, so every token after the
first is predicted exactly once, with at least `context - stride` tokens of
context (fewer in the first window). With `stride == context` the windows do
not overlap and each window's first token, having no context, is not scored.
Perplexity = exp(mean negative log-likelihood), accumulated in float64.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import math
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from . import BATCH_SIZE
from .checkpoint import input_device

LOGITS_BUDGET = 1 << 30  # bytes of float32 logits one forward may hold: caps the windows per forward


class Perplexity(NamedTuple):
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token, nats
    tokens: int  # tokens scored


def tokenize_text(tokenizer: Any, text: str) -> torch.Tensor:
    """The whole text as one 1-D tensor of token ids (no length warnings: windows cut it later).

    A fast tokenizer's encode_batch_fast gives encode's ids without character offsets: half the time,
    three quarters of the memory (4.4 MB of text: 0.55 GiB instead of 0.75)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    encoding = backend.encode_batch_fast([text])[0] if backend is not None else None
    ids = torch.tensor(encoding.ids if encoding is not None else tokenizer(text)["input_ids"], dtype=torch.long)
    del encoding
    _return_freed_memory()
    return ids


def _return_freed_memory() -> None:
    """Hand the heap that tokenizing freed back to the OS (glibc keeps it otherwise: 0.3 GiB of resident
    memory for 4.4 MB of text, carried into every later stage's peak). A no-op off glibc."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@torch.no_grad()
def perplexity(
    model: Any,
    ids: torch.Tensor,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> Perplexity:
    """Sliding-window perplexity of `model` on token ids; context defaults to the model's, stride to half of it.

    At most `batch_size` windows go through one forward, fewer when their float32 logits (windows x context x
    vocabulary) would pass LOGITS_BUDGET; models that take ``logits_to_keep`` (transformers' causal LMs) form
    logits only from the first scored position on. Neither changes which tokens are scored or how."""
    context = context or model.config.max_position_embeddings
    stride = stride or context // 2
    if not 0 < stride <= context:
        raise ValueError(f"need 0 < stride <= context, got stride {stride}, context {context}")
    if ids.numel() < 2:
        raise ValueError("the text is too short: it needs at least 2 tokens to score one")
    windows = []  # (begin, end, first scored position within the window)
    scored_until = 1  # token 0 has nothing before it
    for begin in range(0, ids.numel(), stride):
        end = min(begin + context, ids.numel())
        windows.append((begin, end, max(scored_until - begin, 1)))
        scored_until = end
        if end == ids.numel():
            break
    vocabulary = getattr(model.config, "vocab_size", None) or 1
    batch_size = max(1, min(batch_size, LOGITS_BUDGET // (context * vocabulary * 4)))
    trims = "logits_to_keep" in inspect.signature(model.forward).parameters
    device = input_device(model)
    total, count = 0.0, 0
    for start in tqdm(range(0, len(windows), batch_size), desc="perplexity", disable=not progress, unit="batch"):
        batch = windows[start : start + batch_size]
        for length in sorted({end - begin for begin, end, _ in batch}):  # equal lengths stack into one forward
            same = [(begin, end, first) for begin, end, first in batch if end - begin == length]
            inputs = torch.stack([ids[begin:end] for begin, end, _ in same]).to(device)
            keep = length - min(first for _, _, first in same) + 1 if trims else length  # positions first - 1 ..
            logits = model(inputs, logits_to_keep=keep).logits if trims else model(inputs).logits
            for row, (_, _, first) in enumerate(same):  # one window's scored positions at a time: vocab-wide rows
                log_probs = torch.log_softmax(logits[row, first - 1 - (length - keep) : -1].float(), dim=-1)
                total -= log_probs.gather(-1, inputs[row, first:, None])[:, 0].double().sum().item()
                count += length - first
    nll = total / count
    return Perplexity(math.exp(nll), nll, count)
