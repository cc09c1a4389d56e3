"""A tiny random LLaMA for quantizer tests: every code path of the real architecture, in milliseconds."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(layers: int = 2, vocab: int = 64, tie_word_embeddings: bool = False) -> LlamaForCausalLM:
    """Hidden 32, grouped-query attention (4 heads, 2 KV heads), context 64, seeded weights, eval mode."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie_word_embeddings,
    )
    return LlamaForCausalLM(config).eval()
