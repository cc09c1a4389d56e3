"""Number formats: sign + exponent + mantissa + integer bias, and their policies.

One type, :class:`Format`, describes every format fp4sim knows (docs/spec.md,
section 1). A format's value table is derived from its fields alone, so the
codecs, the golden MAC and the tests all read the same definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from typing import Literal

import numpy as np

Specials = Literal["finite", "ieee", "fn"]
Overflow = Literal["saturate", "inf", "nan"]

_SPECIALS = ("finite", "ieee", "fn")
BIAS_LIMIT = 256  # keeps bias + shift well inside float64's exponent range
_OVERFLOWS = ("saturate", "inf", "nan")


@dataclass(frozen=True)
class Format:
    """A binary floating-point format of at most 8 bits.

    Attributes:
        ebits: exponent field width.
        mbits: mantissa (fraction) field width.
        bias: integer exponent bias; a normal code with exponent field p has
            exponent ``p - bias``.
        signed: whether the top bit is a sign bit (False only for e8m0).
        subnormals: whether exponent field 0 holds subnormals (implicit 0,
            exponent ``1 - bias``). Without them field 0 is an ordinary binade.
        specials: ``"finite"`` (every code is a number), ``"ieee"`` (all-ones
            exponent is Inf when the mantissa is 0, else NaN) or ``"fn"``
            (only the all-ones code is NaN; no Inf).
        overflow: what a result beyond the largest finite value becomes:
            ``"saturate"`` (largest finite), ``"inf"`` or ``"nan"``.
        name: label only; two formats with equal fields are equal.
    """

    ebits: int
    mbits: int
    bias: int
    signed: bool = True
    subnormals: bool = True
    specials: Specials = "finite"
    overflow: Overflow = "saturate"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.ebits < 1 or self.mbits < 0:
            raise ValueError(f"need ebits >= 1 and mbits >= 0, got E{self.ebits}M{self.mbits}")
        if self.nbits > 8:
            raise ValueError(f"formats are at most 8 bits wide; E{self.ebits}M{self.mbits} needs {self.nbits}")
        if abs(self.bias) > BIAS_LIMIT:
            raise ValueError(f"bias must lie in [-{BIAS_LIMIT}, {BIAS_LIMIT}], got {self.bias}")
        if self.specials not in _SPECIALS:
            raise ValueError(f"specials must be one of {_SPECIALS}, got {self.specials!r}")
        if self.overflow not in _OVERFLOWS:
            raise ValueError(f"overflow must be one of {_OVERFLOWS}, got {self.overflow!r}")
        if self.overflow == "inf" and self.specials != "ieee":
            raise ValueError("overflow='inf' needs specials='ieee' (the format must have an Inf code)")
        if self.overflow == "nan" and self.specials == "finite":
            raise ValueError("overflow='nan' needs a NaN code (specials 'ieee' or 'fn')")
        if self.specials == "ieee" and (self.ebits < 2 or self.mbits < 1):
            raise ValueError("IEEE-style specials need at least 2 exponent bits and 1 mantissa bit")
        if not self.name:
            object.__setattr__(self, "name", f"E{self.ebits}M{self.mbits}(bias={self.bias})")

    # ---- layout -------------------------------------------------------------
    @property
    def nbits(self) -> int:
        """Total code width in bits."""
        return int(self.signed) + self.ebits + self.mbits

    @property
    def magnitude_bits(self) -> int:
        """Width of the exponent and mantissa fields together."""
        return self.ebits + self.mbits

    @property
    def sign_mask(self) -> int:
        """The sign bit of a code (0 for unsigned formats)."""
        return (1 << self.magnitude_bits) if self.signed else 0

    @property
    def nan_code(self) -> int | None:
        """The canonical positive NaN code, or None when the format has none."""
        exp_ones = ((1 << self.ebits) - 1) << self.mbits
        if self.specials == "fn":
            return exp_ones | ((1 << self.mbits) - 1)
        if self.specials == "ieee":
            return exp_ones | (1 << max(self.mbits - 1, 0))
        return None

    @property
    def inf_code(self) -> int | None:
        """The positive Inf code, or None when the format has none."""
        if self.specials == "ieee":
            return ((1 << self.ebits) - 1) << self.mbits
        return None

    @property
    def max_code(self) -> int:
        """The code of the largest finite positive value."""
        if self.specials == "fn":
            return self.nan_code - 1
        if self.specials == "ieee":
            return self.inf_code - 1
        return (1 << self.magnitude_bits) - 1

    # ---- values -------------------------------------------------------------
    def exact_value(self, code: int) -> Fraction | float:
        """The value of one code: a Fraction, or float NaN / +-Inf for specials."""
        if not 0 <= code < (1 << self.nbits):
            raise ValueError(f"code {code} is outside the {self.nbits}-bit format {self.name}")
        negative = bool(code & self.sign_mask)
        mag = code & ((1 << self.magnitude_bits) - 1)
        if self.nan_code is not None and self.specials == "fn" and mag == self.nan_code:
            return float("nan")
        if self.specials == "ieee" and mag >= self.inf_code:
            if mag == self.inf_code:
                return float("-inf") if negative else float("inf")
            return float("nan")
        p, d = mag >> self.mbits, mag & ((1 << self.mbits) - 1)
        if p == 0 and self.subnormals:
            value = Fraction(d, 1 << self.mbits) * Fraction(2) ** (1 - self.bias)
        else:
            value = (1 + Fraction(d, 1 << self.mbits)) * Fraction(2) ** (p - self.bias)
        return -value if negative else value

    def values(self) -> np.ndarray:
        """Every code's value as float64, indexed by code (NaN/Inf where special, -0.0 for -0)."""
        values = np.array([float(self.exact_value(c)) for c in range(1 << self.nbits)], dtype=np.float64)
        negative = (np.arange(values.size) & self.sign_mask) != 0
        return np.where(negative, -np.abs(values), values)

    @cached_property
    def max_value(self) -> Fraction:
        """Largest finite value (cached: encoders read it on every call)."""
        return self.exact_value(self.max_code)

    @property
    def min_normal(self) -> Fraction:
        """Smallest positive normal value."""
        return self.exact_value(1 << self.mbits) if self.subnormals else self.exact_value(0)

    @property
    def min_subnormal(self) -> Fraction | None:
        """Smallest positive subnormal value, or None when the format has none."""
        if not self.subnormals or self.mbits == 0:
            return None
        return self.exact_value(1)

    @property
    def lowest_exponent(self) -> int:
        """Exponent of the lowest binade: ``1 - bias`` with subnormals (they share it), else ``-bias`` (field 0)."""
        return (1 if self.subnormals else 0) - self.bias

    @property
    def is_llm_fp4_family(self) -> bool:
        """Signed, with subnormals and every code finite (so overflow saturates): the LLM-FP4 family's shape.

        The MAC array (spec 2.1) and the fused fake-quantization path (spec 1.9) take only these formats.
        """
        return self.signed and self.subnormals and self.specials == "finite"

    @property
    def has_zero(self) -> bool:
        """Whether code 0 is the value zero."""
        return self.subnormals

    def with_bias(self, bias: int) -> Format:
        """The same format with another exponent bias."""
        return replace(self, bias=bias, name=_family_name(self.ebits, self.mbits, bias))


def _family_name(ebits: int, mbits: int, bias: int) -> str:
    return f"E{ebits}M{mbits}(bias={bias})"


def llm_fp4_format(ebits: int, mbits: int, bias: int | None = None) -> Format:
    """An LLM-FP4 family format EeMm: no Inf/NaN, saturating, any integer bias.

    The default bias is the IEEE one, ``2**(ebits-1) - 1``.
    """
    if bias is None:
        bias = (1 << (ebits - 1)) - 1
    return Format(ebits, mbits, int(bias), name=_family_name(ebits, mbits, int(bias)))


# OCP / NVIDIA formats, named as ml_dtypes names them. float8_e4m3fn follows
# ml_dtypes (overflow -> NaN); float8_e4m3fn_satfinite follows torch (saturate).
_PRESETS: dict[str, Format] = {
    "float4_e2m1fn": Format(2, 1, 1, name="float4_e2m1fn"),
    "float6_e2m3fn": Format(2, 3, 1, name="float6_e2m3fn"),
    "float6_e3m2fn": Format(3, 2, 3, name="float6_e3m2fn"),
    "float8_e4m3fn": Format(4, 3, 7, specials="fn", overflow="nan", name="float8_e4m3fn"),
    "float8_e4m3fn_satfinite": Format(4, 3, 7, specials="fn", overflow="saturate", name="float8_e4m3fn_satfinite"),
    "float8_e5m2": Format(5, 2, 15, specials="ieee", overflow="inf", name="float8_e5m2"),
    "float8_e8m0fnu": Format(
        8, 0, 127, signed=False, subnormals=False, specials="fn", overflow="nan", name="float8_e8m0fnu"
    ),
}

# The LLM-FP4 4-bit family; any EeMm with 1 + e + m <= 8 is accepted too.
LLM_FP4_NAMES = ("E3M0", "E2M1", "E1M2")
_FAMILY_RE = re.compile(r"^E(\d)M(\d)$", re.IGNORECASE)


def format_names() -> list[str]:
    """Every preset name (the LLM-FP4 family first, then the OCP/NVIDIA formats)."""
    return [*LLM_FP4_NAMES, *_PRESETS]


def get_format(name: str | Format, bias: int | None = None) -> Format:
    """Look a format up by name.

    ``"E2M1"``-style names give the LLM-FP4 family member (``bias`` optional);
    ``"float8_e4m3fn"``-style names give the OCP/NVIDIA presets (fixed bias).
    A :class:`Format` passes through (re-biased if ``bias`` is given).
    """
    if isinstance(name, Format):
        return name if bias is None else name.with_bias(bias)
    if not isinstance(name, str):
        raise TypeError(f"format must be a name or a Format, got {type(name).__name__}")
    if name in _PRESETS:
        if bias is not None and bias != _PRESETS[name].bias:
            raise ValueError(f"{name} has a fixed bias of {_PRESETS[name].bias}; use an 'EeMm' name for another bias")
        return _PRESETS[name]
    match = _FAMILY_RE.match(name)
    if match:
        ebits, mbits = int(match.group(1)), int(match.group(2))
        if ebits >= 1 and 1 + ebits + mbits <= 8:
            return llm_fp4_format(ebits, mbits, bias)
    raise ValueError(
        f"unknown format {name!r}; valid names: {', '.join(format_names())}, "
        "or any 'E<e>M<m>' with e >= 1 and 1 + e + m <= 8 (LLM-FP4 family)"
    )
