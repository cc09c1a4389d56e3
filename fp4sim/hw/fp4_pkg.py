"""The MAC array's parameters and every width derived from them (docs/spec.md 2.1-2.3; RTL: rtl/fp4_pkg.sv).

:class:`PEConfig` fixes the hardware parameters (operand formats, shift width,
K_max) and derives the widths the RTL computes with the functions of
``fp4_pkg.sv``: S_max, the product's largest left shift, P_max, the product
and accumulator widths and the accumulator's LSB exponent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..formats import Format, get_format

K_MAX_DEFAULT = 1 << 16  # LLaMA-70B's widest input (28672) fits; 17 accumulator bits over the product
ACC_BITS_LIMIT = 64  # the golden model keeps accumulators in int64


class OperandParams(NamedTuple):
    """What the Numba kernels need to know about the two operand formats and the shift."""

    a_ebits: int
    a_mbits: int
    w_ebits: int
    w_mbits: int
    max_shift: int


@dataclass(frozen=True)
class PEConfig:
    """Hardware parameters of one MAC and the widths they imply.

    Attributes:
        fmt_a: activation operand format (left edge of the array).
        fmt_w: weight operand format (top edge of the array).
        shift_bits: width of the unsigned per-input-channel exponent shift;
            shifts run over ``0 .. 2**shift_bits - 1``. Default: ``fmt_a.ebits``,
            the range LLM-FP4 clamps its integer activation bias to.
        k_max: the longest dot product the accumulator holds exactly.
    """

    fmt_a: Format
    fmt_w: Format
    shift_bits: int
    k_max: int = K_MAX_DEFAULT

    def __post_init__(self) -> None:
        for role, fmt in (("fmt_a", self.fmt_a), ("fmt_w", self.fmt_w)):
            if not fmt.is_llm_fp4_family:
                raise ValueError(
                    f"{role} must be a signed format with subnormals and no Inf/NaN (the LLM-FP4 family, "
                    f"e.g. 'E2M1'), got {fmt.name}"
                )
        if not isinstance(self.shift_bits, (int, np.integer)) or not 0 <= self.shift_bits <= 7:
            raise ValueError(f"shift_bits must be an integer in 0..7, got {self.shift_bits!r}")
        if not isinstance(self.k_max, (int, np.integer)) or self.k_max < 1:
            raise ValueError(f"k_max must be a positive integer, got {self.k_max!r}")
        if self.acc_bits > ACC_BITS_LIMIT:
            raise ValueError(
                f"{self.fmt_a.name} x {self.fmt_w.name} with {self.shift_bits} shift bits and k_max={self.k_max} "
                f"needs a {self.acc_bits}-bit accumulator; the golden model holds at most {ACC_BITS_LIMIT}. "
                "Lower k_max or use narrower exponents."
            )
        lowest, highest = self.lsb_exponent, self.lsb_exponent + self.acc_bits
        if lowest < -126 or highest > 127:
            raise ValueError(
                f"products of {self.fmt_a.name} x {self.fmt_w.name} span 2^{lowest}..2^{highest}, outside "
                "FP32's normal range 2^-126..2^127; choose biases nearer the IEEE ones"
            )

    @classmethod
    def make(
        cls, fmt_a: str | Format, fmt_w: str | Format, shift_bits: int | None = None, k_max: int = K_MAX_DEFAULT
    ) -> PEConfig:
        """A config from format names; `shift_bits` defaults to the activation format's exponent width."""
        fa, fw = get_format(fmt_a), get_format(fmt_w)
        return cls(fa, fw, fa.ebits if shift_bits is None else shift_bits, k_max)

    @property
    def max_shift(self) -> int:
        """S_max: the largest shift the port can carry (spec 2.2)."""
        return (1 << self.shift_bits) - 1

    @property
    def product_shift_max(self) -> int:
        """Largest left shift of a significand product: (Ea-1) + (Ew-1) + (max_shift - s) at its maximum."""
        return ((1 << self.fmt_a.ebits) - 2) + ((1 << self.fmt_w.ebits) - 2) + self.max_shift

    @property
    def product_max(self) -> int:
        """Largest product magnitude in LSB units (spec: P_max)."""
        sig_a = (1 << (self.fmt_a.mbits + 1)) - 1
        sig_w = (1 << (self.fmt_w.mbits + 1)) - 1
        return (sig_a * sig_w) << self.product_shift_max

    @property
    def product_bits(self) -> int:
        """Width of the signed product."""
        return self.product_max.bit_length() + 1

    @property
    def acc_bits(self) -> int:
        """Width of the signed Kulisch accumulator: holds any sum of k_max products."""
        return (self.k_max * self.product_max).bit_length() + 1

    @property
    def lsb_exponent(self) -> int:
        """log2 of the accumulator's LSB weight: 2 - (bias_a + m_a) - (bias_w + m_w) - max_shift."""
        fa, fw = self.fmt_a, self.fmt_w
        return 2 - (fa.bias + fa.mbits) - (fw.bias + fw.mbits) - self.max_shift

    @property
    def operand_params(self) -> OperandParams:
        """The formats and S_max as the Numba kernels take them."""
        fa, fw = self.fmt_a, self.fmt_w
        return OperandParams(fa.ebits, fa.mbits, fw.ebits, fw.mbits, self.max_shift)

    def describe(self) -> str:
        """One line with the derived widths, for reports and error messages."""
        return (
            f"{self.fmt_a.name} x {self.fmt_w.name}, shift 0..{self.max_shift}, K_max {self.k_max}: "
            f"product {self.product_bits} bits, accumulator {self.acc_bits} bits, LSB 2^{self.lsb_exponent}"
        )
