"""What ``fp4sim eval`` measures on an encoder (docs/quantization.md, "Encoders"), by the class it loads as.

- ``<Family>Model`` (an embedding model): the cosine of each text's pooled
  embedding to the FP32 model's (mean and minimum over the texts);
- ``<Family>ForSequenceClassification``, ``<Family>ForImageClassification``:
  accuracy on labelled texts or images, and how often the prediction equals
  the FP32 model's;
- ``<Family>ForMaskedLM``: pseudo-perplexity (Salazar et al. 2020): each real
  token masked in turn and scored, ``exp`` of the mean negative log-likelihood.

Texts are batched with padding; padding takes no part in any pooling or score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import BATCH_SIZE
from .checkpoint import input_device
from .images import pixel_values
from .sentence_transformers import pool
from .sentences import max_tokens, tokenize_sentences

HEADS = {
    "Model": "embedding",
    "ForSequenceClassification": "classifier",
    "ForMaskedLM": "masked-lm",
    "ForImageClassification": "image-classifier",
    "ForImageClassificationWithTeacher": "image-classifier",
}
Batches = Callable[[], Iterator[dict[str, torch.Tensor]]]  # a fresh pass over the inputs, batch by batch (CPU)


def encoder_kind(model: Any) -> str:
    """A HEADS kind ("embedding", "classifier"...), from the model's class name (checkpoint.TEXT_HEADS,
    VISION_HEADS)."""
    name = type(model).__name__
    return next(kind for head, kind in HEADS.items() if name.endswith(head))


class Agreement(NamedTuple):
    mean: float
    min: float
    texts: int


class Accuracy(NamedTuple):
    accuracy: float
    agreement: float | None  # share of predictions equal to the FP32 model's; None without it
    examples: int


class PseudoPerplexity(NamedTuple):
    pseudo_perplexity: float
    nll: float  # mean negative log-likelihood per masked token, nats
    tokens: int


def text_batches(tokenizer: Any, texts: list[str], positions: int, batch_size: int = BATCH_SIZE) -> Batches:
    """`texts` tokenized and padded batch by batch (input_ids, attention_mask), each at most the tokenizer's limit
    within `positions` tokens."""
    length = max_tokens(tokenizer, positions)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(texts), batch_size):
            ids, mask = tokenize_sentences(tokenizer, texts[start : start + batch_size], length)
            yield {"input_ids": ids, "attention_mask": mask}

    return batches


def image_batches(processor: Any, paths: list[Path], batch_size: int = BATCH_SIZE) -> Batches:
    """The images at `paths` through the image processor, batch by batch (pixel_values), decoded as they go."""

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(paths), batch_size):
            yield {"pixel_values": pixel_values(processor, paths[start : start + batch_size])}

    return batches


@torch.no_grad()
def embeddings(
    model: Any, tokenizer: Any, texts: list[str], pooling: tuple[str, ...], batch_size: int = BATCH_SIZE
) -> torch.Tensor:
    """Pooled sentence embeddings (len(texts), width) float32 of an embedding model (sentence_transformers.pool)."""
    device = input_device(model)
    out = []
    for batch in text_batches(tokenizer, texts, model.config.max_position_embeddings, batch_size)():
        mask = batch["attention_mask"].to(device)
        hidden = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
        out.append(pool(hidden, mask, pooling).cpu())
    return torch.cat(out)


def embedding_agreement(
    model: Any,
    reference: Any,
    tokenizer: Any,
    texts: list[str],
    pooling: tuple[str, ...],
    batch_size: int = BATCH_SIZE,
) -> Agreement:
    """Cosine similarity of each text's pooled embedding under `model` to the one under `reference` (FP32)."""
    ours = embeddings(model, tokenizer, texts, pooling, batch_size).double()
    theirs = embeddings(reference, tokenizer, texts, pooling, batch_size).double()
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    return Agreement(float(cosine.mean()), float(cosine.min()), len(texts))


def label_ids(model_config: Any, labels: list[str]) -> torch.Tensor:
    """Class ids of `labels`: names from the config's label2id, or integers 0 .. num_labels - 1.

    Raises ValueError naming the first label that is neither."""
    names = {str(name): int(index) for name, index in (model_config.label2id or {}).items()}
    ids = []
    for label in labels:
        if label in names:
            ids.append(names[label])
        elif label.lstrip("-").isdigit() and 0 <= int(label) < model_config.num_labels:
            ids.append(int(label))
        else:
            raise ValueError(
                f"label {label!r} is neither a class id 0..{model_config.num_labels - 1} "
                f"nor a label name of the model ({', '.join(names)})"
            )
    return torch.tensor(ids)


@torch.no_grad()
def predictions(model: Any, batches: Batches) -> torch.Tensor:
    """The class each input is given (argmax of the logits), (inputs,) int64."""
    device = input_device(model)
    return torch.cat([model(**{k: v.to(device) for k, v in b.items()}).logits.argmax(-1).cpu() for b in batches()])


def classification_accuracy(model: Any, reference: Any | None, batches: Batches, labels: list[str]) -> Accuracy:
    """Accuracy of `model` on the inputs `batches` gives, whose true classes are `labels` (label_ids), and
    agreement with `reference`'s predictions (None without one). Raises what label_ids raises."""
    truth = label_ids(model.config, labels)
    ours = predictions(model, batches)
    agreement = None if reference is None else float((ours == predictions(reference, batches)).double().mean())
    return Accuracy(float((ours == truth).double().mean()), agreement, len(labels))


@torch.no_grad()
def pseudo_perplexity(model: Any, tokenizer: Any, texts: list[str], batch_size: int = BATCH_SIZE) -> PseudoPerplexity:
    """Pseudo-perplexity of a masked LM: every real token of every text (not [CLS], [SEP] or padding) replaced by
    the mask token in a copy of its text, and the log-probability of the true token read there.

    Raises ValueError for a tokenizer without a mask token or texts without a real token."""
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token; pseudo-perplexity masks each token in turn")
    length = max_tokens(tokenizer, model.config.max_position_embeddings)
    total, count = 0.0, 0
    for text in texts:
        batch = tokenizer([text], truncation=True, max_length=length, return_special_tokens_mask=True)
        ids = torch.tensor(batch["input_ids"])
        positions = (torch.tensor(batch["special_tokens_mask"][0]) == 0).nonzero()[:, 0]
        for start in range(0, positions.numel(), batch_size):
            chosen = positions[start : start + batch_size]
            masked = ids.repeat(chosen.numel(), 1)
            masked[torch.arange(chosen.numel()), chosen] = tokenizer.mask_token_id
            logits = model(input_ids=masked.to(input_device(model))).logits.float().cpu()
            scored = torch.log_softmax(logits[torch.arange(chosen.numel()), chosen], dim=-1)
            total -= scored.gather(-1, ids[0, chosen, None]).double().sum().item()
            count += chosen.numel()
    if count == 0:
        raise ValueError("the texts hold no token to score (only special tokens)")
    return PseudoPerplexity(math.exp(total / count), total / count, count)


def result_scores(result: Agreement | Accuracy | PseudoPerplexity) -> tuple[dict[str, float | None], str]:
    """An encoder metric's values by name (None where there is no FP32 model to agree with), and what they were
    counted over, e.g. "3 texts"."""
    if isinstance(result, Agreement):
        return {"cosine_to_fp32_mean": result.mean, "cosine_to_fp32_min": result.min}, f"{result.texts:,} texts"
    if isinstance(result, Accuracy):
        return {"accuracy": result.accuracy, "agreement_with_fp32": result.agreement}, f"{result.examples:,} examples"
    return {"pseudo_perplexity": result.pseudo_perplexity, "nll": result.nll}, f"{result.tokens:,} masked tokens"
