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


BLOCK_FORMAT_CODES = {"mxfp4": 0, "nvfp4": 1}  # rtl BLOCK_FORMAT parameter
ACC_MODE_CODES = {"exact": 0, "aligned_truncate": 1}  # rtl ACC_MODE parameter
BLOCK_GROUP = 16  # elements per exactly summed group: one K step of the block array (spec 8.1)
BLOCK_K_MAX_LIMIT = 1 << 16  # the package's 32-bit integer widths hold ceil(K_MAX / 16) * V_max up to here
_GROUP_SUM_MAX = 16 * 12 * 12  # |P| in units of 2^-2: sixteen products of twice E2M1's largest value, 6
_SCALE = {  # block format: (scale significand max, per-scale shift max, SCALE_LSB, KE) (spec 8.2, 8.3)
    "mxfp4": (1, 254, -127, 2),
    "nvfp4": (15, 14, -9, 8),
}


@dataclass(frozen=True)
class BlockConfig:
    """Parameters of the block-scaled dot-product array and the widths they imply (docs/spec.md 8.1-8.5).

    Attributes:
        block_format: ``"mxfp4"`` (E8M0 scales) or ``"nvfp4"`` (unsigned E4M3 scales).
        acc_mode: ``"exact"`` (fixed-point accumulator, 8.4) or ``"aligned_truncate"`` (8.5).
        frac_bits: N of aligned_truncate:N[:G] (1..48); ignored when exact.
        fused_groups: F = G / 16, groups per fused add; ignored when exact.
        k_max: the longest dot product in elements the exact accumulator holds (<= 65536).

    Raises:
        ValueError: for an unknown format or mode, or parameters outside the ranges above.
    """

    block_format: str
    acc_mode: str = "exact"
    frac_bits: int = 35
    fused_groups: int = 4
    k_max: int = K_MAX_DEFAULT

    def __post_init__(self) -> None:
        if self.block_format not in _SCALE:
            raise ValueError(f"block_format must be one of {list(_SCALE)}, got {self.block_format!r}")
        if self.acc_mode not in ACC_MODE_CODES:
            raise ValueError(f"acc_mode must be one of {list(ACC_MODE_CODES)}, got {self.acc_mode!r}")
        if not 1 <= self.k_max <= BLOCK_K_MAX_LIMIT:
            raise ValueError(f"k_max must lie in 1..{BLOCK_K_MAX_LIMIT}, got {self.k_max}")
        if self.acc_mode == "aligned_truncate":
            if self.fused_groups < 1 or not 1 <= self.frac_bits <= 48:
                raise ValueError(
                    f"aligned_truncate needs 1 <= N <= 48 and G = 16 F with F >= 1; got N = {self.frac_bits}, "
                    f"F = {self.fused_groups}"
                )
            if self.sum_bits > 64:
                raise ValueError(
                    f"N = {self.frac_bits} with F = {self.fused_groups} needs a {self.sum_bits}-bit fused adder; "
                    "spec 7.5 allows N + 12 + bitlength(F + 1) <= 63"
                )

    @property
    def nvfp4(self) -> bool:
        return self.block_format == "nvfp4"

    @property
    def exact(self) -> bool:
        return self.acc_mode == "exact"

    @property
    def scale_lsb(self) -> int:
        """SCALE_LSB: a scale is significand * 2^(shift + SCALE_LSB) (spec 8.2)."""
        return _SCALE[self.block_format][2]

    @property
    def term_lsb(self) -> int:
        """TERM_LSB = 2 SCALE_LSB - 2: the weight of V's LSB at shift 0, and the exact accumulator's LSB (8.3)."""
        return 2 * self.scale_lsb - 2

    @property
    def align_offset(self) -> int:
        """KE: a nonzero term's LSB lies KE binades below its alignment exponent (spec 8.3)."""
        return _SCALE[self.block_format][3]

    @property
    def shift_max(self) -> int:
        """Largest shift_a + shift_w."""
        return 2 * _SCALE[self.block_format][1]

    @property
    def value_max(self) -> int:
        """V_max: the largest |V| = |P| * significand_a * significand_w."""
        return _GROUP_SUM_MAX * _SCALE[self.block_format][0] ** 2

    @property
    def value_bits(self) -> int:
        """Width of the signed V."""
        return self.value_max.bit_length() + 1

    @property
    def acc_bits(self) -> int:
        """Width of the exact accumulator: bitlength(ceil(K_MAX / 16) * V_max) + SHIFT_MAX + 1 (spec 8.4)."""
        groups = -(-self.k_max // BLOCK_GROUP)
        return (groups * self.value_max).bit_length() + self.shift_max + 1

    @property
    def sum_bits(self) -> int:
        """Width of the fused adder of aligned_truncate: N + 12 + bitlength(F + 1) + 1 (spec 8.5)."""
        return self.frac_bits + 12 + (self.fused_groups + 1).bit_length() + 1

    def rtl_parameters(self, rows: int, cols: int) -> dict[str, int]:
        """rtl/fp4_block_array.sv's parameters for an R x C array of this configuration."""
        return {
            "BLOCK_FORMAT": BLOCK_FORMAT_CODES[self.block_format], "ACC_MODE": ACC_MODE_CODES[self.acc_mode],
            "FRAC_BITS": self.frac_bits, "FUSED_GROUPS": self.fused_groups, "K_MAX": self.k_max,
            "ROWS": rows, "COLS": cols,
        }  # fmt: skip
