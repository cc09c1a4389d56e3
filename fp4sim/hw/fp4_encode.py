"""Golden twin of rtl/fp4_encode.sv: FP32 -> FP4 with the per-input-channel shift (docs/spec.md 1.4, 1.5)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codec import encode
from ..formats import Format


def fp4_encode(x: Any, fmt: str | Format, shift: Any = None) -> np.ndarray:
    """The encoder's codes for float32 `x`: ``encode(x * 2**shift)`` rounded once, nearest-even, saturating.

    NaN becomes zero with the sign inverted (the format has no NaN code) and
    Inf saturates, as the RTL does; `shift` broadcasts against `x`.
    """
    return encode(np.asarray(x, dtype=np.float32), fmt, shift=shift, nan="encode")
