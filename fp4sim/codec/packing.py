"""Two 4-bit codes per byte: element 2i in the low nibble, 2i+1 in the high one.

This is the layout of torch's ``float4_e2m1fn_x2`` and of OCP MX packed data.
Packing runs along the last axis, which must have even length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._interop import first_index, is_torch_tensor, like_input, require_uint8, to_numpy


def pack_fp4(codes: Any) -> Any:
    """Pack uint8 4-bit codes (..., 2n) into bytes (..., n)."""
    cs = to_numpy(codes, "codes")
    require_uint8(cs, "codes")
    if cs.ndim == 0 or cs.shape[-1] % 2:
        raise ValueError(
            f"pack_fp4 packs pairs along the last axis, which must have even length; got shape {cs.shape}. "
            "Pad the last axis with a zero code first."
        )
    over = cs > 0xF
    if over.any():
        where = first_index(over)
        raise ValueError(f"codes must be 4-bit (0..15); found {int(cs[where])} at index {where}")
    packed = cs[..., 0::2] | (cs[..., 1::2] << 4)
    return like_input(packed, codes)


def unpack_fp4(packed: Any) -> Any:
    """Unpack bytes (..., n) into uint8 4-bit codes (..., 2n)."""
    ps = to_numpy(packed, "packed")
    require_uint8(ps, "packed")
    if ps.ndim == 0:
        raise ValueError("unpack_fp4 needs at least one axis")
    codes = np.empty((*ps.shape[:-1], 2 * ps.shape[-1]), dtype=np.uint8)
    codes[..., 0::2] = ps & 0xF
    codes[..., 1::2] = ps >> 4
    return like_input(codes, packed)


def as_float4_e2m1fn_x2(packed: Any) -> Any:
    """A zero-copy ``torch.float4_e2m1fn_x2`` view of packed bytes (needs torch >= 2.8)."""
    import torch

    if not hasattr(torch, "float4_e2m1fn_x2"):
        raise RuntimeError(f"torch {torch.__version__} has no float4_e2m1fn_x2 dtype; it needs torch >= 2.8")
    tensor = packed if is_torch_tensor(packed) else torch.from_numpy(np.asarray(packed))
    if tensor.dtype != torch.uint8:
        raise TypeError(f"packed must be uint8 bytes from pack_fp4, got {tensor.dtype}")
    return tensor.view(torch.float4_e2m1fn_x2)
