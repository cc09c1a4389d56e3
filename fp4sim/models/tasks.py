"""Zero-shot tasks through lm-evaluation-harness, offline (docs/quantization.md, "Evaluation protocol").

fp4sim never downloads: the task datasets must already be in the local
Hugging Face cache, or the task must be a YAML file that reads local data
files. Missing pieces get a message that says what to do.
"""

from __future__ import annotations

import os
from typing import Any

from . import BATCH_SIZE


def zero_shot(
    model: Any, tokenizer: Any, tasks: list[str], *, batch_size: int = BATCH_SIZE, limit: int | None = None
) -> dict:
    """{task: {metric: value}} for lm-eval task names or YAML paths, 0-shot, on an in-memory model."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from lm_eval.evaluator import evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError(
            "zero-shot tasks need lm-evaluation-harness, which is not installed: pip install 'fp4sim[tasks]'"
        ) from None
    try:
        task_dict = TaskManager().load(tasks)
    except KeyError as err:
        raise ValueError(f"unknown lm-eval task: {err.args[0]}") from None
    except (OSError, ValueError) as err:
        raise ValueError(
            f"the datasets of {', '.join(tasks)} are not available locally ({type(err).__name__}: {err}). "
            "fp4sim runs offline: copy a Hugging Face datasets cache that holds them (HF_DATASETS_CACHE), "
            "or pass a task YAML that reads local data files"
        ) from None
    for task in task_dict["tasks"].values():
        task.set_config(key="num_fewshot", value=0)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0, log_samples=False, verbosity="ERROR")
    return {
        task: {metric.split(",")[0]: value for metric, value in scores.items() if isinstance(value, float)}
        for task, scores in results["results"].items()
    }
