"""Golden twin of rtl/fp4_int4_mac.sv, the INT4 baseline of docs/hardware.md: two's complement products summed."""

from __future__ import annotations

import numpy as np


def fp4_int4_mac(a: np.ndarray, w: np.ndarray) -> int:
    """sum(a[k] * w[k]) for INT4 operands (-8..7), exact; ValueError outside that range."""
    a64, w64 = np.asarray(a, dtype=np.int64), np.asarray(w, dtype=np.int64)
    if a64.shape != w64.shape:
        raise ValueError(f"a and w must have one shape, got {a64.shape} and {w64.shape}")
    if a64.size and (min(a64.min(), w64.min()) < -8 or max(a64.max(), w64.max()) > 7):
        raise ValueError("INT4 operands lie in -8..7")
    return int(np.dot(a64, w64))
