"""Shared test helpers: the oracle module is imported by path, seeds are fixed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LLaMA (GQA, hidden 32, tied embeddings) with the bundled tokenizer, saved as a local checkpoint."""
    from tiny_models import tiny_llama
    from transformers import AutoTokenizer

    from fp4sim.models.checkpoint import DEFAULT_MODEL

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_llama(vocab=4096, tie_word_embeddings=True).save_pretrained(path)
    AutoTokenizer.from_pretrained(DEFAULT_MODEL).save_pretrained(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231016)
