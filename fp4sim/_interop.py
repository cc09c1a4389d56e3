"""Accept numpy arrays and CPU torch tensors alike; hand results back as the caller's type.

torch is never imported here: a tensor can only exist if the caller imported it.
"""

from __future__ import annotations

import sys
from typing import Any

import ml_dtypes
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32), np.dtype(np.float64))


def is_torch_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, what: str) -> np.ndarray:
    """A numpy view (or copy, for array-likes) of `x`; CPU tensors only."""
    if is_torch_tensor(x):
        import torch

        if x.device.type != "cpu":
            raise TypeError(f"{what} is a {x.device.type} tensor; fp4sim runs on the CPU: pass {what}.cpu()")
        x = x.detach()
        if x.dtype == torch.bfloat16:
            return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        try:
            return x.numpy()
        except TypeError as err:
            raise TypeError(f"{what} has torch dtype {x.dtype}, which numpy cannot hold: {err}") from None
    return np.asarray(x)


def like_input(result: np.ndarray, template: Any) -> Any:
    """`result` as a torch tensor when `template` was one, else as numpy."""
    if is_torch_tensor(template):
        import torch

        return torch.from_numpy(np.ascontiguousarray(result))
    return result


def require_float(x: np.ndarray, what: str) -> None:
    """TypeError unless `x` holds float16, bfloat16, float32 or float64."""
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{what} must be float16, bfloat16, float32 or float64, got {x.dtype}; "
            f"cast it first, e.g. {what}.astype(np.float32)"
        )


def require_uint8(x: np.ndarray, what: str) -> None:
    """TypeError unless `x` holds uint8 codes."""
    if x.dtype != np.uint8:
        raise TypeError(
            f"{what} must be uint8 codes, got {x.dtype}; codes come from fp4sim.encode, "
            f"or cast with {what}.astype(np.uint8) once they are known to be in range"
        )


def first_index(mask: np.ndarray) -> tuple[int, ...]:
    """The multi-index of the first True element of `mask` (C order)."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))
