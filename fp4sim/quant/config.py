"""Quantization settings: a serializable config, validated, defaulting to the paper's (docs/quantization.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..codec.blockscaled import SCALE_RULES, block_scale_rule

BLOCK_METHODS = ("mxfp4", "nvfp4")  # round-to-nearest block-scaled FP4 (docs/quantization.md, "Block formats")
METHODS = ("minmax", "fpq-baseline", "fpq", *BLOCK_METHODS)
EXPORT_FORMATS = ("fp4sim", "compressed-tensors")  # fp4sim quantize --export-format: ours, vLLM's
BLOCK_BITS = ("4/4/4", "4/4/16")  # block formats are FP4; activations may stay in floating point
BIT_SETTINGS = ("4/4/4", "4/4/8", "8/8/8", "6/6/6", "4/4/16")  # embedding / weight / activation bits
# MinMax FP's fixed format per width (the released code's --qbits exponent bits; OCP-style at 6 and 8 bits).
MINMAX_FORMATS = {4: (2, 1), 6: (3, 2), 8: (4, 3)}
UNQUANTIZED = 16  # activations at 16 bits stay in floating point
SEARCH_SAMPLES = 32  # calibration windows of the searches (the paper's 32 x 2048 tokens)
ROUND_TO_NEAREST_SAMPLES = 8  # minmax and NVFP4 read only activation maxima from them
# The paper's search as written: every grid point scored exactly, on every calibration token.
PAPER_EXACT = {"shortlist": None, "search_tokens": None, "calib_samples": SEARCH_SAMPLES}


@dataclass(frozen=True)
class QuantConfig:
    """What `quantize_model` does. Defaults are LLM-FP4's (Liu et al. 2023) unless docs/quantization.md says why not.

    Attributes:
        method: "minmax" (bias from max|x|, fixed format), "fpq-baseline" (format and bias search), "fpq"
            (search plus per-channel activation bias pre-shifted into the weights), or "mxfp4" / "nvfp4"
            (round-to-nearest block-scaled FP4; the search parameters do not apply).
        bits: "E/W/A": embedding, weight and activation bits.
        grid_low, grid_high, grid_points: bias candidates b~init * linspace(grid_low, grid_high, grid_points + 1).
        rounds: search rounds (weight biases, activation bias, weight format, activation format).
        shortlist: bias candidates per choice scored on the exact output error, the best by a diagonal
            pre-score (search.py); None scores every grid point exactly (the paper).
        calib_samples, calib_length: random calibration windows of the calibration text;
            calibrate.model_calibration_windows caps the length at the model's context. calib_samples None:
            the method's own (`windows`).
        search_tokens: calibration tokens on which candidates are scored (None: all of them); the
            biases' starting points always come from every token's maxima. Attention operands are
            searched on the first search_tokens // window-length windows.
        quantize_attention: also quantize the inputs of Q K^T and P V at the activation bits, one scale per
            tensor (the paper does for BERT and ViT, not for LLaMA).
        scale_rule: the block formats' scale rule for weights, embedding and activations alike (SCALE_RULES,
            docs/spec.md 7.2, 7.3); None, the default, is the format's own: MXFP4 "floor" (OCP), or "ceil",
            "even", "rceil"; NVFP4 "static_6", or "4over6" (Four Over Six). LLM-FP4's methods take None.
        block_2d: NVFP4's weights in 16 x 16 tiles, one scale each (docs/spec.md 7.3; the embedding and the
            activations keep 1 x 16 blocks).
        seed: window sampling and token subsampling.
    """

    method: str = "fpq"
    bits: str = "4/4/4"
    grid_low: float = 0.01
    grid_high: float = 1.2
    grid_points: int = 100
    rounds: int = 3
    shortlist: int | None = 2
    calib_samples: int | None = None
    calib_length: int = 2048
    search_tokens: int | None = 2048
    quantize_attention: bool = False
    scale_rule: str | None = None
    block_2d: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.bits not in BIT_SETTINGS:
            raise ValueError(f"bits must be one of {', '.join(BIT_SETTINGS)} (E/W/A), got {self.bits!r}")
        if self.is_block and self.bits not in BLOCK_BITS:
            raise ValueError(f"{self.method} is a 4-bit format: bits must be one of {', '.join(BLOCK_BITS)}")
        if self.is_block and self.quantize_attention:
            raise ValueError(f"{self.method} quantizes the linear layers and the embedding, not the attention matmuls")
        if self.scale_rule is not None:
            if not self.is_block:
                rules = ", ".join(f"{name}: {' / '.join(rs)}" for name, rs in SCALE_RULES.items())
                raise ValueError(f"scale_rule is a block format's ({rules}); {self.method} takes none")
            block_scale_rule(self.method, self.scale_rule)  # ValueError: not this format's rule
        if self.block_2d and self.method != "nvfp4":
            raise ValueError(f"block_2d (16 x 16 weight tiles) is an NVFP4 option; {self.method} takes none")
        if not 0 < self.grid_low < self.grid_high or self.grid_points < 1 or self.rounds < 1:
            raise ValueError("need 0 < grid_low < grid_high, grid_points >= 1 and rounds >= 1")
        if (self.calib_samples is not None and self.calib_samples < 1) or self.calib_length < 2:
            raise ValueError("need calib_samples >= 1 and calib_length >= 2")
        if self.shortlist is not None and self.shortlist < 1:
            raise ValueError("shortlist must be positive (or None to score every candidate exactly)")
        if self.search_tokens is not None and self.search_tokens < 1:
            raise ValueError("search_tokens must be positive (or None for all calibration tokens)")
        if self.quantize_attention and self.activation_bits == UNQUANTIZED:
            raise ValueError(f"quantize_attention needs quantized activations; bits {self.bits} keeps them at 16")

    @property
    def is_block(self) -> bool:
        """Whether the method is a block-scaled format (MXFP4 / NVFP4) rather than LLM-FP4's."""
        return self.method in BLOCK_METHODS

    @property
    def is_search(self) -> bool:
        """Whether the method searches formats and biases on the data (fpq, fpq-baseline)."""
        return self.method in ("fpq", "fpq-baseline")

    @property
    def needs_data(self) -> bool:
        """Whether calibration reads anything from the text: searches do; round to nearest only for activations,
        and MXFP4 not even then (its block scales come from each block as it streams)."""
        quantized_input = self.activation_bits != UNQUANTIZED
        return self.is_search or (quantized_input and self.method != "mxfp4")

    @property
    def windows(self) -> int:
        """Calibration windows: calib_samples, else what the method needs (0 when it reads no data)."""
        if not self.needs_data:
            return 0
        if self.calib_samples is not None:
            return self.calib_samples
        return SEARCH_SAMPLES if self.is_search else ROUND_TO_NEAREST_SAMPLES

    @property
    def embedding_bits(self) -> int:
        return int(self.bits.split("/")[0])

    @property
    def weight_bits(self) -> int:
        return int(self.bits.split("/")[1])

    @property
    def activation_bits(self) -> int:
        return int(self.bits.split("/")[2])

    def to_dict(self) -> dict:
        return asdict(self)
