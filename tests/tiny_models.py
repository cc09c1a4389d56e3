"""Tiny random decoders for quantizer tests: every code path of the real architectures, in milliseconds."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

# What each family's tiny model sets beyond the common shape, so that the family's own code paths run:
# attention biases (qwen2 always has them, llama optionally), a sliding window shorter than the calibration windows
# (mistral: every layer; qwen2: layer 1 only, so layers get different masks), layers without RoPE (smollm3: layer 1;
# its default special token ids lie beyond a tiny vocabulary).
FAMILY_SETTINGS: dict[str, dict[str, Any]] = {
    "llama": {"attention_bias": True},
    "mistral": {"sliding_window": 8},
    "qwen2": {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    "qwen3": {},  # q_norm / k_norm inside attention
    "smollm3": {"no_rope_layer_interval": 2, "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
}


def tiny_decoder(
    model_type: str, layers: int = 2, vocab: int = 64, tie_word_embeddings: bool = False, **settings: Any
) -> Any:
    """A random `model_type` causal LM from transformers' own config class, in eval mode, seeded.

    Hidden 32, grouped-query attention (4 heads of 8, 2 KV heads), context 64; `settings` go to the config.
    """
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        tie_word_embeddings=tie_word_embeddings,
        **settings,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def tiny_llama(layers: int = 2, vocab: int = 64, tie_word_embeddings: bool = False) -> Any:
    """tiny_decoder's plain LLaMA (no biases): the default model of the quantizer tests."""
    return tiny_decoder("llama", layers, vocab, tie_word_embeddings)
