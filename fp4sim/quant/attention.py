"""Quantized attention matmuls: the inputs of Q K^T and P V, one scale per tensor (docs/quantization.md).

Optional (QuantConfig.quantize_attention), off by default: the paper leaves
them in floating point for LLaMA and quantizes them for BERT. The model runs
this module's attention function, registered with transformers as
``"fp4sim"``: eager attention (repeat_kv, scaled scores, additive mask,
float32 softmax; the same for every supported family: their q/k norms and
biases run before it, and sliding windows and encoders' padding arrive in
the mask) in which each
matmul goes through the attention module's ``fp4sim_attention`` state:

- None: plain float matmuls;
- AttentionRecorder: plain, and the operands are kept for calibration;
- AttentionQuant: unfolded fake quantization, ``fq(A) @ fq(B)``;
- FoldedAttention: the hardware form, ``fp32(alpha_A alpha_B) * sum(A_code B_code)``
  on torch ops or on the simulator (``fp4sim.gemm``, every accumulation model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..codec import encode
from ..gemm import gemm
from ..hw.fp4_pkg import PEConfig
from .fakequant import fake_quantize
from .folded import BACKENDS, exact_sum_dtype
from .search import TensorQuant

IMPLEMENTATION = "fp4sim"
STATE = "fp4sim_attention"  # attribute of each attention module


class MatmulQuant(NamedTuple):
    """Per-tensor quantization of both inputs of one matmul ``left @ right``."""

    left: TensorQuant
    right: TensorQuant


class AttentionQuant(NamedTuple):
    scores: MatmulQuant  # Q @ K^T
    context: MatmulQuant  # P @ V


@dataclass
class AttentionRecorder:
    """Operands seen by one attention module (query, key^T after repeat_kv, probabilities, value), first windows only.

    max_batch bounds memory: the probabilities are (batch, heads, T, T). It
    counts windows over all calls, so the model may run one window at a time.
    With `valid` (windows, T), 1 for real tokens, the model runs one window per
    call and each padded position is zeroed in every operand (its query and
    probability rows, its key and value): zeros are quantized exactly and move
    neither a maximum nor an error.
    """

    max_batch: int
    module: Any = None  # the attention module it is attached to
    valid: torch.Tensor | None = None
    operands: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=lambda: {"scores": [], "context": []}
    )

    def record(self, which: str, left: torch.Tensor, right: torch.Tensor) -> None:
        seen = sum(a.shape[0] for a, _ in self.operands[which])
        room = self.max_batch - seen
        if room <= 0:
            return
        left, right = left[:room].detach(), right[:room].detach()
        if self.valid is not None:
            pad = ~self.valid[seen].to(left.device)
            left = left.masked_fill(pad[:, None], 0)  # query rows, probability rows
            if which == "scores":
                right = right.masked_fill(pad, 0)  # key columns
            else:
                left, right = left.masked_fill(pad, 0), right.masked_fill(pad[:, None], 0)  # P columns, value rows
        self.operands[which].append((left, right))

    def stacked(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both operands over every recorded call, batch and head dimensions flattened: (N, m, k), (N, k, n)."""
        pairs = self.operands[which]
        left = torch.cat([a.reshape(-1, *a.shape[-2:]) for a, _ in pairs])
        right = torch.cat([b.reshape(-1, *b.shape[-2:]) for _, b in pairs])
        return left, right


# on_matmul(which, left, right, quant, output) -> the output the model goes on with ("scores" or "context")
MatmulHook = Callable[[str, torch.Tensor, torch.Tensor, MatmulQuant, torch.Tensor], torch.Tensor]


@dataclass
class FoldedAttention:
    """The hardware form of AttentionQuant, on `backend` "torch" or "simulator" under `accum`.

    on_matmul, when set, sees each matmul's operands and output and may replace the output, as a forward hook
    does for a layer (fp4sim.e2e.rtl_forward runs the matmuls on the RTL through it).
    """

    quant: AttentionQuant
    backend: str = "torch"
    accum: str = "exact"
    on_matmul: MatmulHook | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


def register() -> None:
    """Make ``"fp4sim"`` an attention implementation transformers knows (eager-style additive masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def use_fp4sim_attention(model: Any) -> None:
    register()
    model.set_attn_implementation(IMPLEMENTATION)


def attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers.models.llama.modeling_llama import repeat_kv  # every supported decoder's is this function

    state = getattr(module, STATE, None)
    groups = getattr(module, "num_key_value_groups", 1)  # encoders: one key-value head per query head
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scores = _matmul(state, "scores", query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = _matmul(state, "context", probs, value)
    return output.transpose(1, 2).contiguous(), probs


def _matmul(state: Any, which: str, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    if isinstance(state, AttentionRecorder):
        state.record(which, left, right)
    if isinstance(state, AttentionQuant):
        quant = getattr(state, which)
        return torch.matmul(quant.left.apply(left), quant.right.apply(right)).to(left.dtype)
    if isinstance(state, FoldedAttention):
        quant = getattr(state.quant, which)
        run = matmul_simulator if state.backend == "simulator" else matmul_torch
        output = run(left, right, quant, state.accum).to(left.dtype)
        return output if state.on_matmul is None else state.on_matmul(which, left, right, quant, output)
    return torch.matmul(left, right)


def matmul_config(quant: MatmulQuant, k: int) -> PEConfig:
    """The MAC array for one quantized matmul: no per-channel shifts, K_max at least the inner dimension."""
    return PEConfig.make(quant.left.fmt, quant.right.fmt, shift_bits=0, k_max=k)


def matmul_torch(left: torch.Tensor, right: torch.Tensor, quant: MatmulQuant, accum: str = "exact") -> torch.Tensor:
    """fp32(alpha_L alpha_R) * (values(L) @ values(R)), the sum exact (float32 or float64): the simulator's bits."""
    if accum != "exact":
        raise ValueError("the torch path computes the exact accumulation only; use the simulator for study models")
    one = torch.ones((), device=left.device)
    values_l = fake_quantize(left.float() / quant.left.scale.to(left.device), quant.left.fmt, one)
    values_r = fake_quantize(right.float() / quant.right.scale.to(left.device), quant.right.fmt, one)
    dtype = exact_sum_dtype(quant.left.fmt, quant.right.fmt, 0, left.shape[-1])
    acc = torch.matmul(values_l.to(dtype), values_r.to(dtype)) + 0.0  # +0, never -0 (spec 2.4)
    return acc.float() * (quant.left.scale * quant.right.scale).to(left.device)


def matmul_codes(
    left: torch.Tensor, right: torch.Tensor, quant: MatmulQuant
) -> tuple[np.ndarray, np.ndarray, PEConfig, np.ndarray]:
    """Both operands encoded (spec 6.3), batch and head dimensions flattened: (S, m, k) and (S, k, n) codes, the
    MAC array that multiplies them, and the epilogue's scale fp32(alpha_L alpha_R) (0-d float32)."""
    codes_l = encode(left.detach().float().cpu(), quant.left.fmt, scale=quant.left.scale.cpu().numpy())
    codes_r = encode(right.detach().float().cpu(), quant.right.fmt, scale=quant.right.scale.cpu().numpy())
    scale = (quant.left.scale * quant.right.scale).cpu().numpy()
    flat_l = codes_l.reshape(-1, *codes_l.shape[-2:]).numpy()
    flat_r = codes_r.reshape(-1, *codes_r.shape[-2:]).numpy()
    return flat_l, flat_r, matmul_config(quant, left.shape[-1]), scale


def matmul_simulator(left: torch.Tensor, right: torch.Tensor, quant: MatmulQuant, accum: str = "exact") -> torch.Tensor:
    """The same matmul through fp4sim.gemm, one call per batch x head slice (CPU)."""
    flat_l, flat_r, config, scale = matmul_codes(left, right, quant)
    out = np.stack(
        [
            gemm(a, w, None, config.fmt_a, config.fmt_w, accum=accum, scale=scale, shift_bits=0, k_max=config.k_max)
            for a, w in zip(flat_l, flat_r, strict=True)
        ]
    )
    return torch.from_numpy(out).reshape(*left.shape[:-1], right.shape[-1]).to(left.device)
