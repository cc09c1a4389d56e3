"""Seeded random GEMM operands shared by the golden-model tests."""

from __future__ import annotations

import numpy as np

from fp4sim import PEConfig

FP4 = ("E3M0", "E2M1", "E1M2")


def random_gemm(
    rng: np.random.Generator, m: int, k: int, n: int
) -> tuple[PEConfig, np.ndarray, np.ndarray, np.ndarray]:
    """A random FP4 format pair (default shift width) and (M, K), (K, N) codes with (K,) shifts over the full range."""
    config = PEConfig.make(FP4[rng.integers(3)], FP4[rng.integers(3)])
    a = rng.integers(0, 16, (m, k), dtype=np.uint8)
    w = rng.integers(0, 16, (k, n), dtype=np.uint8)
    s = rng.integers(0, config.max_shift + 1, k, dtype=np.uint8)
    return config, a, w, s
