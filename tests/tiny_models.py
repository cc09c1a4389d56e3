"""Tiny random decoders for quantizer tests: every code path of the real architectures, in milliseconds."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

# What each family's tiny model sets beyond the common shape, so that the family's own code paths run: attention
# biases (qwen2 always has them), sliding windows shorter than the calibration windows (on every layer, or on some
# so that layers get different masks), layers without RoPE (smollm3), granite's multipliers, partial rotary (stablelm),
# q/k norms (qwen3, olmo2, exaone4, cohere); special token ids beyond a tiny vocabulary are dropped.
_SLIDING_THEN_FULL = {"sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"]}
FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "llama": {"attention_bias": True},
    "mistral": {"sliding_window": 8},
    "qwen2": {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    "qwen3": {},
    "smollm3": {"no_rope_layer_interval": 2, "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    "cohere": {"use_qk_norm": True, "eos_token_id": None},
    "ernie4_5": {"use_bias": True},
    "exaone4": _SLIDING_THEN_FULL,
    "granite": {
        "embedding_multiplier": 2.0,
        "attention_multiplier": 0.25,
        "residual_multiplier": 0.5,
        "logits_scaling": 4.0,
    },
    "helium": {},
    "hunyuan_v1_dense": {},
    "ministral": {"sliding_window": 8},
    "olmo": {"eos_token_id": None},
    "olmo2": {"eos_token_id": None},
    "olmo3": {**_SLIDING_THEN_FULL, "eos_token_id": None},
    "seed_oss": {"attention_bias": True},
    "stablelm": {"use_qkv_bias": True, "partial_rotary_factor": 0.5},
}


# The linear layers of every LLaMA-shaped decoder layer, in module order (what calibration must quantize).
LAYER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


TINY_SHAPE = {"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "max_position_embeddings": 64}


def tiny_decoder(
    model_type: str, layers: int = 2, vocab: int = 64, tie_word_embeddings: bool = False, **settings: Any
) -> Any:
    """A random `model_type` causal LM from transformers' own config class, in eval mode, seeded.

    Hidden 32, grouped-query attention (4 heads of 8, 2 KV heads), context 64; `settings` go to the config (and
    may replace TINY_SHAPE's sizes).
    """
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        num_hidden_layers=layers,
        num_key_value_heads=2,
        head_dim=8,
        tie_word_embeddings=tie_word_embeddings,
        **{**TINY_SHAPE, **settings},
    )
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_llama(layers: int = 2, vocab: int = 64, tie_word_embeddings: bool = False) -> Any:
    """tiny_decoder's plain LLaMA (no biases): the default model of the quantizer tests."""
    return tiny_decoder("llama", layers, vocab, tie_word_embeddings)


# A WordPiece vocabulary for the tiny encoders: BERT's special tokens, letters and letter continuations, digits and
# punctuation, so that any English text tokenizes (mostly letter by letter) into ids below ENCODER_VOCAB.
WORDPIECE = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-")
    + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    + ["the", "and", "of", "to", "a", "in", "that", "is", "my", "you"]
)
ENCODER_VOCAB = len(WORDPIECE)


def wordpiece_tokenizer(directory: Any, max_length: int) -> Any:
    """A BertTokenizerFast over WORDPIECE (written to `directory`), inputs capped at `max_length` tokens."""
    from pathlib import Path

    from transformers import BertTokenizerFast

    vocab = Path(directory) / "vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(WORDPIECE) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), model_max_length=max_length)


def tiny_encoder(model_type: str, architecture: str, labels: int = 3, **settings: Any) -> Any:
    """A random `model_type` encoder as the transformers class `architecture` (e.g. BertForMaskedLM), eval mode,
    seeded: hidden 32, 2 layers of 4 heads, GELU MLP of 48, 64 positions, padding id 0 (the tokenizer's)."""
    import transformers

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=ENCODER_VOCAB,
        num_hidden_layers=2,
        **TINY_SHAPE,
        pad_token_id=0,
        num_labels=labels,
        **settings,
    )
    return getattr(transformers, architecture)(config).eval()


def tiny_vision(model_type: str, architecture: str, classes: tuple[str, ...] = ("cat", "dog")) -> Any:
    """A random `model_type` vision transformer as the class `architecture`, eval mode, seeded: 32 x 32 images in
    8 x 8 patches (16 patches and [CLS]), hidden 32, 2 layers of 4 heads; class names `classes`."""
    import transformers

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        id2label=dict(enumerate(classes)),
        label2id={name: index for index, name in enumerate(classes)},
        **{k: v for k, v in TINY_SHAPE.items() if k != "max_position_embeddings"},
    )
    return getattr(transformers, architecture)(config).eval()
