"""Zero-shot tasks through lm-evaluation-harness: a local task gives the accuracy a direct log-likelihood count
gives, and missing datasets, unknown tasks and a missing harness get clear errors."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch

from fp4sim.models.checkpoint import load_pretrained
from fp4sim.models.tasks import zero_shot

DOCS = [
    {"question": "To be, or not to", "choices": ["be", "dog", "the"], "label": 0},
    {"question": "My lord, I", "choices": ["will", "blue", "am"], "label": 0},
    {"question": "What say you,", "choices": ["my lord", "xq zz"], "label": 1},
    {"question": "Now is the winter of our", "choices": ["discontent", "lord", "of"], "label": 2},
]


def _local_task(tmp_path: Path) -> Path:
    data = tmp_path / "cloze.jsonl"
    data.write_text("\n".join(json.dumps(doc) for doc in DOCS) + "\n")
    task = tmp_path / "cloze.yaml"
    task.write_text(
        f"task: cloze\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        'output_type: multiple_choice\ndoc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\nmetric_list:\n  - metric: acc\n'
    )
    return task


@torch.no_grad()
def _direct_accuracy(model, tokenizer) -> float:
    """Pick the choice with the highest summed log-probability of its tokens after the question.

    As the harness scores a multiple-choice doc: question + " " + choice, tokenized whole without special tokens,
    the choice's tokens being those past the question's own tokenization.
    """
    correct = 0
    for doc in DOCS:
        context = tokenizer(doc["question"], add_special_tokens=False)["input_ids"]
        scores = []
        for choice in doc["choices"]:
            whole = tokenizer(doc["question"] + " " + choice, add_special_tokens=False)["input_ids"]
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0, :-1].double(), -1)
            scores.append(sum(logp[i - 1, whole[i]].item() for i in range(len(context), len(whole))))
        correct += max(range(len(scores)), key=scores.__getitem__) == doc["label"]
    return correct / len(DOCS)


@pytest.mark.slow
def test_local_task_accuracy_matches_a_direct_count(tmp_path: Path) -> None:
    model, tokenizer = load_pretrained()
    scores = zero_shot(model, tokenizer, [str(_local_task(tmp_path))], batch_size=2)
    assert scores["cloze"]["acc"] == pytest.approx(_direct_accuracy(model, tokenizer))


def test_missing_datasets_and_unknown_tasks_are_explained() -> None:
    model, tokenizer = load_pretrained()
    with pytest.raises(ValueError, match="not available locally"):
        zero_shot(model, tokenizer, ["piqa"])
    with pytest.raises(ValueError, match="unknown lm-eval task"):
        zero_shot(model, tokenizer, ["no_such_task"])


def test_missing_harness_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_lm_eval(name: str, *args, **kwargs):
        if name.startswith("lm_eval"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lm_eval)
    with pytest.raises(ValueError, match=r"pip install 'fp4sim\[tasks\]'"):
        zero_shot(None, None, ["piqa"])
