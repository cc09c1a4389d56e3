"""Encoder inputs from text files: one text per line (or ``text<TAB>label``), tokenized and padded per batch."""

from __future__ import annotations

from typing import Any

import torch


def text_lines(text: str, where: str) -> list[str]:
    """The non-empty lines of `text`, stripped; ValueError naming `where` when there are none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{where} has no non-empty line; an encoder reads one text per line")
    return lines


def labelled_lines(text: str, where: str) -> list[tuple[str, str]]:
    """(text, label) per non-empty line ``text<TAB>label`` (the label after the last tab); ValueError naming
    `where` and the line for a line without a tab or with an empty text or label, or for no line at all."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sentence, tab, label = line.rstrip("\r\n").rpartition("\t")
        if not tab or not sentence.strip() or not label.strip():
            raise ValueError(f"{where}, line {number}: expected text<TAB>label, got {line[:60]!r}")
        pairs.append((sentence.strip(), label.strip()))
    if not pairs:
        raise ValueError(f"{where} has no text<TAB>label line")
    return pairs


def max_tokens(tokenizer: Any, positions: int) -> int:
    """The most tokens one input may have: the tokenizer's limit, capped at the model's `positions` (RoBERTa's
    table holds two more rows than its tokenizer's 512 allow: padding_idx + 1 offsets its positions)."""
    return int(min(tokenizer.model_max_length, positions))


def tokenize_sentences(tokenizer: Any, sentences: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (len(sentences), longest) int64: each text with the model's special
    tokens, truncated to `length` tokens, padded on the right; the mask is 1 on real tokens, 0 on padding."""
    batch = tokenizer(
        sentences, padding=True, truncation=True, max_length=length, padding_side="right", return_tensors="pt"
    )
    return batch["input_ids"], batch["attention_mask"]
