#!/usr/bin/env python3
"""Train the bundled tiny LLaMA model on the Shakespeare corpus (CPU, reproducible).

Run from the repository root; the defaults reproduce ``models/tiny-llama-shakespeare/``::

    .venv/bin/python models/train_tiny_llama.py

Steps:

1. Train a byte-level BPE tokenizer (``tokenizers``) on ``models/shakespeare/train.txt`` and wrap it as a
   ``transformers.PreTrainedTokenizerFast`` so that ``AutoTokenizer.from_pretrained(out)`` works offline.
2. Build a small ``LlamaForCausalLM`` (4 layers, hidden 256, 8 query heads, 4 key/value heads, so the
   grouped-query-attention code paths are exercised; untied input/output embeddings; fp32 weights).
3. Train it with AdamW and a linear-warmup + cosine learning-rate schedule on random fixed-length windows of
   the tokenized training split. Every window is ``[<s>] + (context - 1)`` consecutive corpus tokens, so the
   model always sees the BOS token at position 0, exactly as it does at inference time (the tokenizer
   prepends ``<s>``). Window positions come from a seeded ``torch.Generator``: the data order is fixed.
4. Evaluate validation perplexity on ``models/shakespeare/valid.txt``: the tokenized split is cut into
   non-overlapping chunks of ``context - 1`` tokens, each chunk is scored as ``[<s>] + chunk`` (one
   training-length window), and perplexity is ``exp(total NLL / number of scored tokens)``. Every validation
   token is scored exactly once, but a token early in a chunk sees little context, so this is a pessimistic
   (upper-bound-ish) figure compared with a sliding-window evaluation.
5. Save the model (safetensors), the tokenizer and ``training_log.json`` into the output directory.

Reproducibility: Python, NumPy and torch are seeded, ``torch.use_deterministic_algorithms(True)`` is on and
the thread count is fixed (default 2). Bit-identical weights are expected for the same torch version, CPU
kind and thread count; other combinations may differ in the last bits of floating-point sums.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent

# Special tokens, LLaMA style. Byte-level BPE can encode any byte sequence, so <unk> is never produced; it is
# kept for compatibility with code that expects an unk token. <pad> is only used for batched generation.
BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD]  # ids 0, 1, 2, 3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-file", type=Path, default=HERE / "shakespeare" / "train.txt")
    p.add_argument("--valid-file", type=Path, default=HERE / "shakespeare" / "valid.txt")
    p.add_argument("--out", type=Path, default=HERE / "tiny-llama-shakespeare", help="output directory")
    # Tokenizer.
    p.add_argument("--vocab-size", type=int, default=4096)
    # Model.
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=688)
    p.add_argument("--max-positions", type=int, default=256, help="max_position_embeddings: the trained context")
    # Training.
    p.add_argument("--context", type=int, default=256, help="training window length in tokens, BOS included")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps (default: ~22 min on 2 cores)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final learning rate as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--log-every", type=int, default=50, help="print the mean training loss every N steps")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--eval-batch-size", type=int, default=16)
    return p.parse_args()


def seed_everything(seed: int, threads: int) -> None:
    """Seed every RNG in play and make torch pick deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG, in case library code draws from it
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.use_deterministic_algorithms(True)
    except RuntimeError as exc:  # pragma: no cover - only on builds without deterministic support
        print(f"warning: deterministic algorithms unavailable: {exc}")


def train_tokenizer(train_file: Path, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE tokenizer and wrap it for ``transformers``."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # No prefix space: the corpus is one long stream, and "ROMEO" at the start of a prompt should tokenize the
    # same way as after a newline.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=False,
    )
    tok.train([str(train_file)], trainer)
    # Like LLaMA's tokenizer, prepend <s> to every encoded sequence (and to each of a pair).
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=None,  # set from the model config below
        clean_up_tokenization_spaces=False,
        # LLaMA takes no token_type_ids; transformers 4 would otherwise return them and generate() rejects them.
        model_input_names=["input_ids", "attention_mask"],
    )


def encode_stream(tokenizer: PreTrainedTokenizerFast, path: Path) -> torch.Tensor:
    """Tokenize a whole text file as one stream of token ids, without special tokens."""
    text = path.read_text(encoding="utf-8")
    # The backend tokenizer directly: the wrapper would warn that the stream exceeds model_max_length.
    ids = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.long)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warmup to ``args.lr``, then cosine decay to ``args.lr * args.min_lr_ratio`` at the last step."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_ratio + (1.0 - args.min_lr_ratio) * cosine)


def make_batch(stream: torch.Tensor, starts: torch.Tensor, body: int, bos_id: int) -> torch.Tensor:
    """Build ``[<s>] + stream[s : s + body]`` for each start ``s``; returns (batch, body + 1) token ids."""
    offsets = torch.arange(body)
    tokens = stream[starts[:, None] + offsets[None, :]]
    bos = torch.full((len(starts), 1), bos_id, dtype=torch.long)
    return torch.cat([bos, tokens], dim=1)


@torch.no_grad()
def evaluate_ppl(
    model: LlamaForCausalLM, stream: torch.Tensor, context: int, bos_id: int, batch_size: int
) -> tuple[float, int]:
    """Perplexity over non-overlapping ``[<s>] + chunk`` windows (``len(chunk) == context - 1``).

    The last, shorter chunk is scored too, so every token of ``stream`` is predicted exactly once.
    Returns ``(perplexity, number of scored tokens)``.
    """
    model.eval()
    body = context - 1
    chunks = list(torch.split(stream, body))
    total_nll, total_tokens = 0.0, 0
    for i in tqdm(range(0, len(chunks), batch_size), desc="eval", leave=False):
        group = chunks[i : i + batch_size]
        for length in sorted({len(c) for c in group}):  # the final chunk may be shorter: its own batch
            same = [c for c in group if len(c) == length]
            ids = torch.cat([torch.full((len(same), 1), bos_id, dtype=torch.long), torch.stack(same)], dim=1)
            logits = model(input_ids=ids).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="sum"
            )
            total_nll += nll.item()
            total_tokens += ids[:, 1:].numel()
    model.train()
    return math.exp(total_nll / total_tokens), total_tokens


def main() -> None:
    args = parse_args()
    assert args.context <= args.max_positions, "--context must fit in --max-positions"
    seed_everything(args.seed, args.threads)
    t_start = time.perf_counter()

    # 1. Tokenizer.
    tokenizer = train_tokenizer(args.train_file, args.vocab_size)
    tokenizer.model_max_length = args.max_positions
    bos_id, eos_id, pad_id = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    train_ids = encode_stream(tokenizer, args.train_file)
    valid_ids = encode_stream(tokenizer, args.valid_file)
    print(
        f"tokenizer: vocab {len(tokenizer)}, train {train_ids.numel():,} tokens, valid {valid_ids.numel():,} "
        f"tokens ({time.perf_counter() - t_start:.1f} s)"
    )

    # 2. Model.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_positions,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config.pad_token_id = pad_id
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters ({n_params * 4 / 2**20:.1f} MiB in fp32)")

    # 3. Training. Weight decay on matrices only (not on RMSNorm gains).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    data_gen = torch.Generator().manual_seed(args.seed)  # fixed data order, independent of model init
    body = args.context - 1  # corpus tokens per window; the window is <s> + body
    max_start = train_ids.numel() - body

    model.train()
    t_train = time.perf_counter()
    recent: list[float] = []
    history: list[dict[str, float]] = []
    progress = tqdm(range(args.steps), desc="train", mininterval=5.0)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        starts = torch.randint(0, max_start + 1, (args.batch_size,), generator=data_gen)
        ids = make_batch(train_ids, starts, body, bos_id)
        loss = model(input_ids=ids, labels=ids).loss  # transformers shifts the labels internally
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()

        recent.append(loss.item())
        progress.set_postfix(loss=f"{recent[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            mean = sum(recent) / len(recent)
            elapsed = time.perf_counter() - t_train
            history.append({"step": step + 1, "loss": round(mean, 4), "elapsed_s": round(elapsed, 1)})
            tqdm.write(f"step {step + 1:5d}/{args.steps}  loss {mean:.4f}  ({elapsed / (step + 1):.2f} s/step)")
            recent = []
    train_time = time.perf_counter() - t_train
    final_train_loss = history[-1]["loss"]

    # 4. Validation perplexity (non-overlapping training-length windows, see the module docstring).
    t_eval = time.perf_counter()
    val_ppl, val_tokens = evaluate_ppl(model, valid_ids, args.context, bos_id, args.eval_batch_size)
    eval_time = time.perf_counter() - t_eval
    print(f"validation perplexity {val_ppl:.3f} over {val_tokens:,} tokens ({eval_time:.1f} s)")

    # 5. Save. transformers 5 always writes safetensors; safe_serialization=True keeps transformers 4 on it.
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    # transformers 5 records its own class name ("TokenizersBackend"), which transformers 4 does not know; the
    # generic name loads as the fast tokenizer class under both.
    tok_cfg_path = args.out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    wall_time = time.perf_counter() - t_start
    log = {
        "script": "models/train_tiny_llama.py",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model_config": config.to_diff_dict(),
        "parameters": n_params,
        "train_tokens": train_ids.numel(),
        "valid_tokens": valid_ids.numel(),
        "steps": args.steps,
        "tokens_seen": args.steps * args.batch_size * args.context,
        "seed": args.seed,
        "final_train_loss": final_train_loss,
        "final_train_loss_note": f"mean training loss over the last {args.log_every} steps",
        "loss_history": history,
        "val_ppl": round(val_ppl, 4),
        "val_ppl_method": (
            f"non-overlapping windows of {args.context} tokens (<s> + {body} text tokens) over valid.txt; "
            "every token scored once; exp(sum NLL / tokens)"
        ),
        "val_scored_tokens": val_tokens,
        "train_time_s": round(train_time, 1),
        "eval_time_s": round(eval_time, 1),
        "wall_time_s": round(wall_time, 1),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "python_version": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    (args.out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"saved to {os.path.relpath(args.out)} ({size / 2**20:.1f} MiB); wall time {wall_time / 60:.1f} min")


if __name__ == "__main__":
    main()
