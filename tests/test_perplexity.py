"""Sliding-window perplexity against transformers' own loss, and model loading errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fp4sim.cli import main
from fp4sim.models.checkpoint import DEFAULT_MODEL, check_checkpoint, load_pretrained
from fp4sim.models.perplexity import perplexity, tokenize_text

TEXT = "ROMEO.\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n" * 6


@pytest.fixture(scope="module")
def bundled():
    return load_pretrained(DEFAULT_MODEL)


def test_tokenize_text_gives_the_tokenizers_own_ids(bundled) -> None:
    _, tokenizer = bundled
    text = (DEFAULT_MODEL.parent / "shakespeare" / "valid.txt").read_text(encoding="utf-8")[:20000] + " café — ½\n\n"
    assert tokenize_text(tokenizer, text).tolist() == tokenizer(text)["input_ids"]


def test_one_window_equals_the_models_own_loss(bundled) -> None:
    """Context longer than the text: one window, every token after the first scored, as labels=input_ids does."""
    model, tokenizer = bundled
    ids = tokenize_text(tokenizer, TEXT)
    assert ids[0].item() == tokenizer.bos_token_id
    with torch.no_grad():
        reference = model(ids[None], labels=ids[None]).loss.item()
    result = perplexity(model, ids, context=ids.numel(), progress=False)
    assert result.tokens == ids.numel() - 1
    assert result.nll == pytest.approx(reference, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(reference), rel=1e-5)


def test_windows_score_every_token_once(bundled) -> None:
    model, tokenizer = bundled
    ids = tokenize_text(tokenizer, TEXT)
    n = ids.numel()
    overlapping = perplexity(model, ids, context=32, stride=8, batch_size=3, progress=False)
    assert overlapping.tokens == n - 1
    disjoint = perplexity(model, ids, context=32, stride=32, progress=False)
    assert disjoint.tokens == n - math.ceil(n / 32)  # each window's first token has no context
    # The first window is scored exactly as a model call on it alone
    with torch.no_grad():
        first = model(ids[None, :32], labels=ids[None, :32]).loss.item()
    assert perplexity(model, ids[:32], context=32, progress=False).nll == pytest.approx(first, rel=1e-5)


def test_batching_does_not_change_the_result(bundled) -> None:
    model, tokenizer = bundled
    ids = tokenize_text(tokenizer, TEXT)
    one = perplexity(model, ids, context=24, stride=10, batch_size=1, progress=False)
    many = perplexity(model, ids, context=24, stride=10, batch_size=7, progress=False)
    assert one.tokens == many.tokens
    assert one.nll == pytest.approx(many.nll, rel=1e-6)


def test_overlapping_windows_equal_full_logits_per_window(bundled, monkeypatch) -> None:
    """Logits trimmed to the scored positions, and windows per forward capped by the logits budget, score
    exactly what each window's full logits score: every token after the first once, with its window's context."""
    model, tokenizer = bundled
    ids = tokenize_text(tokenizer, TEXT)
    context, stride = 40, 16
    expected, scored_until = 0.0, 1
    with torch.no_grad():
        for begin in range(0, ids.numel(), stride):
            end = min(begin + context, ids.numel())
            window = ids[begin:end]
            log_probs = torch.log_softmax(model(window[None]).logits[0].double(), -1)
            first = max(scored_until - begin, 1)
            expected -= float(log_probs[first - 1 : -1].gather(-1, window[first:, None]).sum())
            scored_until = end
            if end == ids.numel():
                break
    forwards = []  # windows per forward
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: forwards.append(len(out)))
    try:
        result = perplexity(model, ids, context=context, stride=stride, batch_size=4, progress=False)
        assert max(forwards) == 4
        monkeypatch.setattr("fp4sim.models.perplexity.LOGITS_BUDGET", 2 * context * model.config.vocab_size * 4)
        forwards.clear()
        capped = perplexity(model, ids, context=context, stride=stride, batch_size=4, progress=False)
        assert max(forwards) == 2
    finally:
        hook.remove()
    assert result.tokens == capped.tokens == ids.numel() - 1
    assert result.nll == pytest.approx(expected / result.tokens, rel=1e-6)
    assert capped.nll == pytest.approx(result.nll, rel=1e-6)


def test_bad_arguments(bundled) -> None:
    model, _ = bundled
    with pytest.raises(ValueError, match="too short"):
        perplexity(model, torch.tensor([1]), progress=False)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, torch.arange(10), context=4, stride=5, progress=False)


def test_loading_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        check_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        check_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match="LLaMA-shaped decoders"):
        check_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        load_pretrained(DEFAULT_MODEL, dtype="int8")


def test_eval_command(tmp_path, capsys) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert main(["eval", "--text", str(text), "--context", "32"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["eval", "--text", str(tmp_path / "none.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path), "--text", str(text)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_act_ranges_command(tmp_path, capsys, bundled) -> None:
    from fp4sim.quant.ranges import channel_ranges

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = tmp_path / "ranges.png"
    assert main(["act-ranges", "--text", str(text), "--layer", "model.layers.0.mlp.down_proj", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "max |x| per input channel" in capsys.readouterr().out
    model, tokenizer = bundled
    ids = tokenize_text(tokenizer, TEXT)
    captured = []
    layer = model.get_submodule("model.layers.0.mlp.down_proj")
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].abs().amax((0, 1))))
    peak = channel_ranges(model, ids, "model.layers.0.mlp.down_proj", context=ids.numel())
    handle.remove()
    assert torch.equal(peak, captured[0])  # one window: the hook saw exactly that pass
    assert main(["act-ranges", "--text", str(text), "--layer", "model.norm", "--out", str(out)]) == 2
    assert "not a linear layer" in capsys.readouterr().err
