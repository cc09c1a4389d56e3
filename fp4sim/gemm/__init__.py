"""GEMMs with the hardware's bits at BLAS speed: the array's exact GEMM, the study accumulation models,
and the block-scaled GEMM (docs/spec.md 2.6, 4, 7.5)."""

from .block import block_gemm
from .fast import gemm
from .study import Accumulation, parse_accumulation

__all__ = ["Accumulation", "block_gemm", "gemm", "parse_accumulation"]
