"""Write a transformers LLaMA as a float32 GGUF file the way llama.cpp's converter does, for the GGUF input tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from transformers import LlamaForCausalLM

CONTROL, NORMAL = 3, 1  # llama.cpp token types

LAYER_TENSORS = {  # llama.cpp's name of each decoder-layer weight
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def rope_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows for its RoPE (transformers undoes it on load)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_llama_gguf(model: LlamaForCausalLM, tokenizer_dir: Path, path: Path) -> Path:
    """`model` as a float32 GGUF at `path` (llama architecture, tensors named and permuted the llama.cpp way), with
    the byte-level BPE tokenizer of `tokenizer_dir` (its tokenizer.json) as "gpt2" tokenizer metadata. No output.weight
    when the model ties its embeddings."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokenizer_dir)
    for name, array in _tensors(model).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tensors(model: LlamaForCausalLM) -> dict[str, np.ndarray]:
    config = model.config
    state = {name: value.detach().float().numpy() for name, value in model.state_dict().items()}
    tensors = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not config.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    for index in range(config.num_hidden_layers):
        for hf_name, gguf_name in LAYER_TENSORS.items():
            weight = state[f"model.layers.{index}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weight = rope_permute(weight, config.num_attention_heads)
            elif gguf_name == "attn_k":
                weight = rope_permute(weight, config.num_key_value_heads)
            tensors[f"blk.{index}.{gguf_name}.weight"] = weight
    return tensors


def _add_tokenizer(writer: Any, tokenizer_dir: Path) -> None:
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {token["content"]: token["id"] for token in spec["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if token in special else NORMAL for token in tokens])
    writer.add_token_merges(
        [" ".join(merge) if isinstance(merge, list) else merge for merge in spec["model"]["merges"]]
    )
    writer.add_unk_token_id(special["<unk>"])
    writer.add_bos_token_id(special["<s>"])
    writer.add_eos_token_id(special["</s>"])
    writer.add_pad_token_id(special["<pad>"])
    writer.add_add_bos_token(True)  # as the bundled tokenizer does
